"""Docs generated from code stay in step with it."""

from __future__ import annotations

from pathlib import Path

from coffee_scraper.settings import settings_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_settings_reference_is_generated_from_the_settings_module() -> None:
    committed = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert committed == settings_markdown(), "run `coffee-scraper settings --markdown > docs/settings.md`"


def test_readme_quick_start_is_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick = readme.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick.splitlines() if line.startswith("make ")]
    assert commands == ["make run", "make test"]
