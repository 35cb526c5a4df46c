# coffee-scraper — every command a newcomer needs. `make help` lists them.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: help run demo test lint typecheck bench accuracy clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(STAMP)

run: $(STAMP)  ## migrate the SQLite database and scrape the roasters in roasters.toml
	$(BIN)/coffee-scraper db upgrade
	$(BIN)/coffee-scraper roasters import coffee_scraper/roasters.toml
	$(BIN)/coffee-scraper scrape

demo: $(STAMP)  ## the same job offline, against the bundled demo shops on 127.0.0.1
	$(BIN)/coffee-scraper demo

test: $(DEV_STAMP)  ## run the whole test suite (PostgreSQL tests start a throwaway cluster when needed)
	$(BIN)/python -m pytest

lint: $(DEV_STAMP)  ## ruff + mypy
	$(BIN)/ruff check coffee_scraper tests bench
	$(BIN)/ruff format --check coffee_scraper tests bench
	$(BIN)/mypy

bench: $(DEV_STAMP)  ## run the benchmarks (results go in bench/README.md by hand)
	$(BIN)/python -m bench.throughput
	$(BIN)/python -m bench.crawl
	$(BIN)/python -m bench.normalize_speed
	$(BIN)/python -m bench.scaling

accuracy: $(DEV_STAMP)  ## normalizer accuracy against the hand-labelled gold set
	$(BIN)/python -m bench.accuracy

clean:  ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
