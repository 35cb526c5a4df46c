"""The runbook is rendered from the configuration the system runs with: the committed document is a fresh render
of the defaults, every Prometheus runbook_url anchor exists in it, and changed thresholds or contacts show up.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from coffee_scraper.incidents import runbook as rb
from coffee_scraper.incidents.alert_config import AlertSettings, load_alert_config
from coffee_scraper.incidents.remediation import ACTIONS
from coffee_scraper.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "incident-response-runbook.md"


def test_committed_runbook_is_a_fresh_render_of_the_defaults() -> None:
    committed = DOC.read_text(encoding="utf-8")
    fresh = rb.render_runbook(rb.default_inputs(), generated_by="coffee-scraper runbook --defaults")
    assert committed == fresh, "run `coffee-scraper runbook --defaults --out docs/incident-response-runbook.md`"


def test_every_runbook_url_of_the_prometheus_rules_points_at_a_heading() -> None:
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules.yml").read_text(encoding="utf-8"))
    urls = {r["annotations"]["runbook_url"] for g in rules["groups"] for r in g["rules"]}
    anchors = rb.anchors(DOC.read_text(encoding="utf-8"))
    assert urls, "no runbook_url annotations found"
    for url in urls:
        path, _, anchor = url.partition("#")
        assert path == "docs/incident-response-runbook.md"
        assert anchor in anchors, f"{url}: no heading with anchor {anchor!r}"


def test_live_thresholds_contacts_and_templates_come_from_the_configuration(tmp_path: Path) -> None:
    roster = tmp_path / "oncall.toml"
    roster.write_text(
        'timezone = "UTC"\n[people.ana]\nname = "Ana Ops"\nphone = "+49 30 1234"\nslack = "@ana"\n'
        'email = "ana@example.org"\n[people.ben]\nname = "Ben Boss"\n[roles]\noncall_primary = "ana"\n'
        'engineering_manager = "ben"\ncto = "ben"\n'
    )
    settings = Settings(
        _env_file=None,
        oncall_file=roster,
        log_dir=Path("/srv/logs"),  # type: ignore[call-arg]
        database_url="postgresql+psycopg://app@db.internal:6432/catalog",
        auto_clean_temp_on_disk_p0=True,
    )
    alerts = AlertSettings(_env_file=None, disk_critical_ratio=0.9, heartbeat_max_age_s=120)  # type: ignore[call-arg]
    text = rb.render_runbook(rb.live_inputs(settings, alerts))
    assert "`DiskUsageCritical` (watchdog + Prometheus): > 90% (window 5m for 5m)" in text
    assert "`HeartbeatMissing` (watchdog + Prometheus): > 120 s" in text
    assert "- **Name**: Ana Ops\n- **Phone**: +49 30 1234\n- **Slack**: @ana\n- **Email**: ana@example.org" in text
    assert "- **CTO**: Ben Boss - no phone" in text
    assert "### Secondary On-Call\n- not assigned in the roster" in text
    assert 'psql -h db.internal -p 6432 -U app -d catalog -c "SELECT 1;"' in text
    assert "netstat -an | grep :6432" in text and "`/srv/logs/*.log`" not in text and "tail -f /srv/logs/*.log" in text
    assert "`COFFEE_SCRAPER_AUTO_CLEAN_TEMP_ON_DISK_P0` is **on**" in text
    for action in ACTIONS:
        assert f"`coffee-scraper remediate {action}" in text
    assert "🚨 INCIDENT: [Severity] - [Brief Description]\n- Incident ID: INC-[YYYYMMDD]-[###]" in text
    assert "📊 Status Update: INC-[YYYYMMDD]-[###]\n- Current Status: [Investigating/Working/Resolved]" in text
    assert "✅ RESOLVED: INC-[YYYYMMDD]-[###]\n- Root Cause: [Brief description of cause]" in text
    # every rule of the configuration is in the appendix
    for rule in load_alert_config(alerts).rules:
        assert f"| `{rule.id}` | {rule.severity.value} |" in text


def test_a_missing_roster_says_nobody_is_paged(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, oncall_file=tmp_path / "absent.toml")  # type: ignore[call-arg]
    text = rb.render_runbook(rb.live_inputs(settings))
    assert f"no roster file at {tmp_path / 'absent.toml'}: nobody is paged" in text


def test_cli_runbook_check_detects_drift(tmp_path: Path) -> None:
    from coffee_scraper.cli import app

    runner = CliRunner()
    ok = runner.invoke(app, ["runbook", "--defaults", "--out", str(DOC), "--check"])
    assert ok.exit_code == 0, ok.output
    stale = tmp_path / "runbook.md"
    stale.write_text(DOC.read_text(encoding="utf-8").replace("> 95%", "> 97%"), encoding="utf-8")
    drift = runner.invoke(app, ["runbook", "--defaults", "--out", str(stale), "--check"])
    assert drift.exit_code == 1 and "out of date" in drift.output
    written = runner.invoke(app, ["runbook", "--defaults", "--out", str(stale)])
    assert written.exit_code == 0 and stale.read_text(encoding="utf-8") == DOC.read_text(encoding="utf-8")
