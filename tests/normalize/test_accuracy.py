"""The accuracy targets of issue 3 on the gold set (bench/accuracy.py); real stores skip without fixtures."""

from __future__ import annotations

import json

import pytest

from bench.accuracy import GOLD_DIR, STORES_DIR, evaluate, load_cases

_STORES = sorted(p.stem for p in GOLD_DIR.glob("*.json") if p.stem != "synthetic")


def _check(name: str) -> None:
    cases, _used, skipped = load_cases(only=name)
    if not cases:
        pytest.skip(f"{name}: " + ("; ".join(skipped) or "no gold products"))
    rep = evaluate(cases)
    assert rep.failures() == [], json.dumps(rep.to_json()["failures"], indent=1)


@pytest.mark.parametrize("store", _STORES)
def test_store_targets(store: str) -> None:
    gold = json.loads((GOLD_DIR / f"{store}.json").read_text(encoding="utf-8"))
    if not (STORES_DIR / gold["store_file"]).exists():
        pytest.skip(f"{store}: fixture {STORES_DIR / gold['store_file']} absent")
    _check(store)


def test_synthetic_targets() -> None:
    _check("synthetic")


@pytest.mark.parametrize("held_out", ["heldout", "heldout2"])
def test_held_out_targets(held_out: str) -> None:
    """Sets labelled blind to the code; heldout2 was never used to tune a rule (a regression guard only)."""
    cases, _used, _skipped = load_cases(gold_dir=GOLD_DIR / held_out)
    assert len(cases) == 60
    rep = evaluate(cases)
    assert rep.failures() == [], json.dumps(rep.to_json()["failures"], indent=1)


def test_all_gold_together() -> None:
    cases, _used, _skipped = load_cases()
    if not cases:
        pytest.skip("no gold set")
    assert evaluate(cases).failures() == []
