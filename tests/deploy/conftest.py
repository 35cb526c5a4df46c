"""Shared helpers of the deploy tests: repo paths and promtool (fails in CI when missing, else skips)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


@pytest.fixture(scope="session")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        message = "promtool not found (Debian: apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must run the promtool checks")
        pytest.skip(message)
    return found


CliRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def run_cli() -> CliRunner:
    """``run_cli(*args)`` runs ``coffee-scraper ARGS`` in a subprocess (the console script's entry point)."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", "from coffee_scraper.cli import main; main()", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run
