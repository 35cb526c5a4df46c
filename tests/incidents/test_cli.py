"""``coffee-scraper incidents ...`` with Typer's CliRunner against a real SQLite file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from coffee_scraper.catalog.models import utcnow
from coffee_scraper.cli import app
from coffee_scraper.settings import get_settings
from tests.incidents.core_support import Store, am_alert, am_body


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("COFFEE_SCRAPER_DATABASE_URL", url)
    monkeypatch.setenv("COFFEE_SCRAPER_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("USER", "tester")
    get_settings.cache_clear()
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> Any:
        result = runner.invoke(app, ["incidents", *args])
        assert result.exit_code == code, (args, result.exit_code, result.output)
        return result

    run.url = url  # type: ignore[attr-defined]
    yield run
    get_settings.cache_clear()


def as_json(result: Any) -> Any:
    return json.loads(result.stdout)


def test_declare_ack_update_resolve_show_list(cli: Any) -> None:
    declared = as_json(
        cli("declare", "--severity", "P1", "--title", "Catalog not updating", "--impact", "prices stale", "--json")
    )
    iid = declared["id"]
    assert declared["severity"] == "P1" and declared["timeline"][0]["actor"] == "tester"
    assert "acknowledged" in cli("ack", iid, "--by", "bob").stdout
    assert "already acknowledged" in cli("ack", iid).stdout
    updated = as_json(
        cli(
            "update",
            iid,
            "--status",
            "working",
            "--actions",
            "restarted worker",
            "--next",
            "watch",
            "--eta",
            "30 min",
            "--json",
        )
    )
    assert (updated["status"], updated["eta"], updated["owner"]) == ("working", "30 min", "bob")
    cli("severity", iid, "P0", "--reason", "every shop")
    cli("comment", iid, "looking at the database")
    rows = as_json(cli("list", "--open", "--severity", "P0", "--json"))
    assert [r["id"] for r in rows] == [iid]
    assert as_json(cli("list", "--severity", "P3", "--json")) == []
    missing = cli("resolve", iid, "--root-cause", "disk full", "--resolution", "cleaned", code=2)
    assert "--prevention" in missing.output
    cli("resolve", iid, "--root-cause", "disk full", "--resolution", "cleaned", "--prevention", "alert at 85%")
    shown = cli("show", iid)
    assert "Root Cause: disk full" in shown.stdout and "Timeline" in shown.stdout
    detail = as_json(cli("show", iid, "--json"))
    assert [e["kind"] for e in detail["timeline"]] == [
        "opened",
        "acknowledged",
        "owner_changed",
        "status_update",
        "severity_changed",
        "comment",
        "resolved",
    ]
    again = cli("resolve", iid, "--root-cause", "a", "--resolution", "b", "--prevention", "c", code=2)
    assert "already resolved" in again.output
    assert "reopened" in cli("reopen", iid, "--reason", "it came back").stdout
    stats = as_json(cli("stats", "--json"))
    assert stats["incidents"] == 1 and stats["acknowledged"] == 1


def test_errors_say_what_to_do(cli: Any) -> None:
    assert "incidents list" in cli("show", "INC-20990101-001", code=2).output
    assert "P0, P1, P2, P3" in cli("declare", "--severity", "P7", "--title", "x", code=2).output
    assert "not one of P0" in cli("list", "--severity", "P9", code=2).output
    iid = as_json(cli("declare", "-s", "P3", "-t", "x", "--json"))["id"]
    assert "use `incidents resolve`" in cli("update", iid, "--status", "resolved", code=2).output
    assert "nothing to update" in cli("update", iid, code=2).output


def test_silences_and_maintenance(cli: Any) -> None:
    added = as_json(
        cli("silence", "add", "alertname=DiskUsageWarning", "component=~db.*", "-d", "2h", "-c", "disk swap", "--json")
    )
    assert added["state"] == "active" and added["matchers_text"] == "alertname=DiskUsageWarning, component=~db.*"
    assert [s["id"] for s in as_json(cli("silence", "list", "--json"))] == [added["id"]]
    assert "one of --duration" in cli("silence", "add", "a=b", "-c", "x", code=2).output
    assert "NAME=VALUE" in cli("silence", "add", "nonsense", "-d", "1h", "-c", "x", code=2).output
    cli("silence", "expire", str(added["id"]))
    assert as_json(cli("silence", "list", "--json")) == []
    assert len(as_json(cli("silence", "list", "--all", "--json"))) == 1
    window = as_json(cli("maintenance", "add", "--component", "db", "-d", "1h", "-c", "upgrade", "--json"))
    assert window["components"] == ["db"] and window["state"] == "active"
    assert "maintenance window" in cli("maintenance", "end", str(window["id"])).stdout
    assert "no silence 99" in cli("silence", "expire", "99", code=2).output


def test_sweep_and_the_alert_path(cli: Any) -> None:
    store = Store(cli.url)
    t = utcnow() - timedelta(days=1)  # `sweep` uses the wall clock: a day later the quiet period and P2 target passed
    store.am(am_body(am_alert("HighErrorRate", status="firing", starts=t, component="x")), t)
    store.am(am_body(am_alert("HighErrorRate", status="resolved", starts=t, ends=t, component="x")), t)
    store.close()
    rows = as_json(cli("list", "--json"))
    assert rows[0]["resolve_pending"] is True and rows[0]["alerts_resolved"] == 1
    swept = as_json(cli("sweep", "--json"))
    assert swept["auto_resolved"] == [rows[0]["id"]] and swept["response_breached"] == [rows[0]["id"]]
    assert "Alerts" in cli("show", rows[0]["id"]).stdout


def test_a_separate_incident_store_is_used(cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store_url = f"sqlite:///{tmp_path / 'incidents.db'}"
    monkeypatch.setenv("COFFEE_SCRAPER_INCIDENTS_DATABASE_URL", store_url)
    get_settings.cache_clear()
    iid = as_json(cli("declare", "-s", "P2", "-t", "in the incident store", "--json"))["id"]
    store = Store(store_url)
    assert [i.id for i in store.incidents()] == [iid]
    store.close()
    catalog = Store(cli.url)
    assert catalog.incidents() == []
    catalog.close()
