"""Diagnostics against real conditions: a stopped PostgreSQL, a port nobody listens on, a server that never answers,
a fake log directory full of lines, a real `serve`, stale heartbeats, local shops and channel peers.

Each check has a time limit; a failing or hanging check never stops the others.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from coffee_scraper.catalog import db, service
from coffee_scraper.incidents import diagnostics as dg
from coffee_scraper.incidents.alert_config import AlertSettings
from coffee_scraper.jobs.models import Heartbeat
from coffee_scraper.settings import get_settings
from coffee_scraper.web import create_app
from tests.incidents.notify.peers import GitHubPeer, SlackPeer, SmtpPeer
from tests.incidents.recovery_support import T0, black_hole, github_app, recovery_settings, shop_app
from tests.support import free_port, serve_in_thread

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sqlite_db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    db.upgrade(url)
    return url


# --- database ----------------------------------------------------------------------------------------------------


@pytest.mark.pg
def test_database_check_sees_a_stopped_postgresql_and_the_other_checks_still_run(tmp_path: Path) -> None:
    from tests.incidents.watchdog_support import PgCluster

    try:
        cluster = PgCluster()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot start a throwaway PostgreSQL cluster: {exc}")
    try:
        db.upgrade(cluster.url)
        s = recovery_settings(cluster.url, tmp_path)
        up = dg.run_diagnostics(s, only=["database", "disk"])
        database = up.check("database")
        assert database.status == "ok", database.summary
        assert database.details["revision"] == db.head_revision()
        assert database.details["server_connections"] >= 1
        assert "port_connections" in database.details and database.details["max_connections"] == 100

        cluster.stop()
        down = dg.run_diagnostics(s, only=["database", "disk", "logs"])
        database = down.check("database")
        assert database.status == "fail"
        assert "cannot run SELECT 1" in database.summary and f":{cluster.port}" in database.summary
        assert "pg_isready" in (database.hint or "")
        assert down.check("disk").status in ("ok", "warn")  # measured, not blocked by the dead database
        assert down.check("logs").status in ("ok", "skipped")
        assert down.status == "fail" and "FAIL database" in down.summary_line()
    finally:
        cluster.close()


def test_database_check_on_a_port_nobody_listens_on(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    report = dg.run_diagnostics(recovery_settings(url, tmp_path), only=["database"])
    check = report.check("database")
    assert check.status == "fail"
    assert "refused" in check.summary.lower()


def test_a_hanging_check_is_cut_off_at_its_limit_and_the_others_still_answer(tmp_path: Path) -> None:
    release = threading.Event()

    def stuck(ctx: dg.DiagnosticContext) -> dg.CheckResult:
        release.wait(timeout=30)  # only returns early if the caller waited for it (which it must not)
        return dg.CheckResult("stuck", "ok", "answered late")

    with black_hole() as port:
        s = recovery_settings(f"postgresql+psycopg://postgres@127.0.0.1:{port}/db", tmp_path, diagnostics_timeout_s=1.5)
        checks = {"stuck": stuck, "database": dg.check_database, "disk": dg.check_disk, "logs": dg.check_logs}
        report = dg.run_diagnostics(s, checks=checks)
    release.set()
    assert [c.name for c in report.checks] == ["stuck", "database", "disk", "logs"]
    assert report.check("stuck").status == "fail"
    assert report.check("stuck").summary.startswith("no answer within 1.5 s")
    assert report.check("database").status == "fail"  # the silent server: a timeout, never an answer
    assert report.check("disk").status in ("ok", "warn") and report.check("disk").details["mounts"]
    assert report.check("logs").status in ("ok", "skipped")


def test_unknown_checks_are_refused_with_the_known_names(tmp_path: Path, sqlite_db: str) -> None:
    with pytest.raises(ValueError, match="choose from service, database"):
        dg.run_diagnostics(recovery_settings(sqlite_db, tmp_path), only=["nope"])


def test_a_missing_sqlite_file_is_reported_and_never_created(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "catalog.db"
    report = dg.run_diagnostics(recovery_settings(f"sqlite:///{path}", tmp_path), only=["database", "roasters"])
    assert report.check("database").status == "fail"
    assert "does not exist" in report.check("database").summary
    assert report.check("roasters").status == "fail"
    assert not path.exists() and not path.parent.exists()


# --- logs and files --------------------------------------------------------------------------------------------


def _line(at: object, level: str, event: str, **extra: object) -> str:
    return json.dumps({"timestamp": at, "level": level, "event": event, "logger": "coffee_scraper", **extra})


def test_logs_and_largest_files_on_a_full_fake_log_dir(tmp_path: Path, sqlite_db: str) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    now = T0
    recent = (now - timedelta(minutes=5)).isoformat()
    old = (now - timedelta(hours=3)).isoformat()
    lines = [_line(recent, "info", f"page {i}", roaster="r1") for i in range(5000)]
    lines += [_line(old, "error", "storage_failed", error="old trouble") for _ in range(2)]
    lines += [_line(recent, "error", "storage_failed", error="disk I/O error", database_url="postgresql://u:pw@h/db")]
    lines += [
        _line(recent, "critical", "run_crashed"),
        "plain text line with ERROR in it",
        _line(recent, "warning", "w"),
    ]
    (logs / "app.log").write_text("\n".join(lines) + "\n")
    (logs / "fetcher.log").write_text(_line(recent, "error", "shop_unreachable", roaster="r2") + "\n")
    (logs / "app.log.1").write_bytes(b"x" * (3 * 1024 * 1024))  # a rotated 3 MB file: the largest one
    for i in range(200):
        (logs / f"junk-{i}.txt").write_text("y" * i)
    s = recovery_settings(sqlite_db, tmp_path)
    report = dg.run_diagnostics(s, only=["logs", "largest_files"], now=lambda: now)

    log_check = report.check("logs")
    assert log_check.status == "warn"
    app = log_check.details["components"]["app"]
    assert app["recent_errors"] == 3  # two recent JSON errors + the plain ERROR line; the 3 h old ones are out
    assert [x["message"] for x in app["lines"]][:2] == ["storage_failed", "run_crashed"]
    assert "pw" not in json.dumps(app["lines"])  # secrets in URLs are masked
    assert log_check.details["components"]["fetcher"]["recent_errors"] == 1
    assert "3 ERROR lines" in log_check.summary

    files = report.check("largest_files")
    assert files.details["largest"][0]["path"] == str(logs / "app.log.1")
    assert files.details["dirs"]["logs"]["files"] == 203


def test_old_temp_entries_are_pointed_at_clean_temp(tmp_path: Path, sqlite_db: str) -> None:
    s = recovery_settings(sqlite_db, tmp_path, temp_min_age_s=0)
    (tmp_path / "tmp" / "coffee-scraper-leftover").mkdir()
    report = dg.run_diagnostics(s, only=["largest_files"])
    check = report.check("largest_files")
    assert check.details["cleanable_temp_entries"] == [str(tmp_path / "tmp" / "coffee-scraper-leftover")]
    assert "clean-temp" in (check.hint or "")


# --- resources ------------------------------------------------------------------------------------------------


def test_resource_checks_use_the_alert_thresholds(tmp_path: Path, sqlite_db: str) -> None:
    s = recovery_settings(sqlite_db, tmp_path)
    normal = dg.run_diagnostics(s, only=["disk", "cpu_memory", "processes"])
    assert normal.check("processes").details["top"][0]["rss"] >= normal.check("processes").details["top"][-1]["rss"]
    # a threshold override (what a drill does; never filling a real disk): every filesystem is now "critical"
    tight = AlertSettings(
        _env_file=None,
        disk_warning_ratio=0.0,
        disk_critical_ratio=0.000001,  # type: ignore[call-arg]
        memory_pressure_ratio=0.0,
        memory_high_ratio=0.0,
        memory_exhaustion_ratio=0.000001,
    )
    report = dg.run_diagnostics(s, only=["disk", "cpu_memory"], alert_settings=tight)
    assert report.check("disk").status == "fail" and "P0 Disk Usage Critical" in report.check("disk").summary
    assert report.check("cpu_memory").status == "fail"
    assert "P0 Memory Exhaustion" in report.check("cpu_memory").summary
    watched = {m["path"] for m in report.check("disk").details["mounts"]}
    assert str((tmp_path / "logs").absolute()) in watched


# --- service: systemd or the app's own health and heartbeats ----------------------------------------------------


def test_service_check_reads_health_ready_and_heartbeats_of_a_real_serve(tmp_path: Path, sqlite_db: str) -> None:
    s = recovery_settings(sqlite_db, tmp_path)
    down = dg.run_diagnostics(s, only=["service"])
    assert down.check("service").status == "fail"
    assert "no answer from" in down.check("service").summary

    with serve_in_thread(create_app(s)) as port:
        live = s.model_copy(update={"diagnostics_service_url": f"http://127.0.0.1:{port}"})
        ok = dg.run_diagnostics(live, only=["service"])
        assert ok.check("service").status == "ok", ok.check("service").summary
        assert ok.check("service").details["health"]["status"] == "ok"

        engine = db.make_engine(sqlite_db)
        with db.session_scope(db.session_factory(engine)) as session:
            session.add(
                Heartbeat(
                    component="scheduler",
                    instance="host:1",
                    session_id="s1",
                    host="host",
                    pid=1,
                    started_at=T0 - timedelta(hours=2),
                    last_beat_at=T0 - timedelta(hours=1),
                )
            )
        engine.dispose()
        stale = dg.run_diagnostics(live, only=["service"], now=lambda: T0)
        assert stale.check("service").status == "fail"
        assert "stale heartbeat: scheduler (3600 s)" in stale.check("service").summary


def test_service_check_uses_systemd_when_the_unit_exists(tmp_path: Path, sqlite_db: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "systemctl"  # a stand-in for systemd's own command line tool (not our code)
    fake.write_text(
        "#!/bin/sh\necho LoadState=loaded\necho ActiveState=failed\necho SubState=failed\n"
        "echo MainPID=0\necho NRestarts=4\n"
    )
    fake.chmod(0o755)
    old_path = os.environ["PATH"]
    os.environ["PATH"] = f"{bin_dir}:{old_path}"
    try:
        s = recovery_settings(sqlite_db, tmp_path, service_manager="systemd", systemd_unit="coffee-scraper")
        check = dg.run_diagnostics(s, only=["service"]).check("service")
    finally:
        os.environ["PATH"] = old_path
    assert check.status == "fail"
    assert check.summary.startswith("systemd unit coffee-scraper: failed (failed), pid 0, restarts 4")
    assert "journalctl -u coffee-scraper" in (check.hint or "")


# --- external dependencies -------------------------------------------------------------------------------------


def test_roasters_check_probes_the_affected_shops_and_reports_their_last_status(tmp_path: Path, sqlite_db: str) -> None:
    s = recovery_settings(sqlite_db, tmp_path)
    shop = shop_app()
    with serve_in_thread(shop) as port:
        engine = db.make_engine(sqlite_db)
        with db.session_scope(db.session_factory(engine)) as session:
            service.add_roaster(session, "good", f"http://127.0.0.1:{port}")
            bad = service.add_roaster(session, "gone", f"http://127.0.0.1:{free_port()}")
            bad.circuit_state, bad.consecutive_failures = "open", 5
        engine.dispose()
        troubled = dg.run_diagnostics(s, only=["roasters"]).check("roasters")
        scoped = dg.run_diagnostics(s, only=["roasters"], roasters=["good", "gone"]).check("roasters")
        hits = list(shop.state.hits)
    assert troubled.status == "warn"
    assert [x["roaster"] for x in troubled.details["shops"]] == ["gone"]  # only the troubled one without a scope
    assert troubled.details["shops"][0]["reachable"] is False
    shops = {x["roaster"]: x for x in scoped.details["shops"]}
    assert shops["good"]["reachable"] is True and shops["good"]["http_status"] == 200
    assert shops["gone"]["reachable"] is False and shops["gone"]["circuit_state"] == "open"
    assert "unreachable: gone" in scoped.summary
    assert hits == ["HEAD"]  # one polite HEAD request, only for the scoped run


@pytest.fixture
def peers() -> Iterator[dict[str, object]]:
    slack, github, smtp = SlackPeer(), GitHubPeer(), SmtpPeer()
    smtp.start()
    with serve_in_thread(slack.app) as slack_port, serve_in_thread(github_app(github.app, token=github.token)) as gh:
        yield {
            "slack": slack,
            "slack_url": f"http://127.0.0.1:{slack_port}{slack.path}",
            "github": github,
            "github_api": f"http://127.0.0.1:{gh}",
            "smtp": smtp,
        }
    smtp.stop()


def test_notification_channels_are_reached_without_sending_anything(
    tmp_path: Path, sqlite_db: str, peers: dict[str, object]
) -> None:
    smtp = peers["smtp"]
    assert isinstance(smtp, SmtpPeer)
    s = recovery_settings(
        sqlite_db,
        tmp_path,
        slack_webhook_url=peers["slack_url"],
        github_repo="acme/coffee",
        github_api_url=peers["github_api"],
        github_token=GitHubPeer.token,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
    )
    check = dg.run_diagnostics(s, only=["notifications"]).check("notifications")
    assert check.status == "ok", check.summary
    assert set(check.details["channels"]) == {"slack", "github", "email"}
    assert all(c["reachable"] for c in check.details["channels"].values())
    slack, github = peers["slack"], peers["github"]
    assert isinstance(slack, SlackPeer) and isinstance(github, GitHubPeer)
    assert slack.messages == [] and github.issues == {} and smtp.messages == []

    smtp.stop()
    down = dg.run_diagnostics(s, only=["notifications"]).check("notifications")
    smtp.start()
    assert down.status == "warn"
    assert down.details["channels"]["email"]["reachable"] is False
    assert "refused" in down.details["channels"]["email"]["probe"].lower()

    wrong = s.model_copy(update={"github_token": "wrong"})
    bad_token = dg.run_diagnostics(wrong, only=["notifications"]).check("notifications")
    assert "HTTP 401" in bad_token.details["channels"]["github"]["probe"]


def test_no_channel_configured_is_a_warning(tmp_path: Path, sqlite_db: str) -> None:
    check = dg.run_diagnostics(recovery_settings(sqlite_db, tmp_path), only=["notifications"]).check("notifications")
    assert check.status == "warn" and "nobody is paged" in check.summary


# --- deployments ----------------------------------------------------------------------------------------------


def test_deployments_name_what_changed_between_start_ups(tmp_path: Path, sqlite_db: str) -> None:
    s1 = recovery_settings(sqlite_db, tmp_path)
    s2 = s1.model_copy(update={"log_level": "DEBUG", "api_token": "another-secret-token"})
    engine = db.make_engine(sqlite_db)
    factory = db.session_factory(engine)
    dg.record_startup(factory, s1, "serve", now=lambda: T0 - timedelta(days=3))
    dg.record_startup(factory, s2, "serve", now=lambda: T0 - timedelta(hours=2))
    engine.dispose()

    check = dg.run_diagnostics(s2, only=["deployments"], now=lambda: T0).check("deployments")
    assert check.status == "warn"
    assert "serve restarted 2.0 h ago with settings: api_token, log_level" in check.summary
    assert check.details["checkout_vs_last_start"] == []  # this process runs what was started last
    hashes = dg.settings_hashes(s2)
    assert len(hashes["api_token"]) == 4 and len(hashes["log_level"]) == 12  # secrets: too short to guess from
    later = dg.run_diagnostics(s1, only=["deployments"], now=lambda: T0 + timedelta(days=2)).check("deployments")
    assert later.status == "ok"  # the change is old news two days later
    assert "this checkout differs from the last start" in later.summary


def test_git_revision_is_read_from_the_checkout() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert dg.git_revision() == head.stdout.strip()


# --- CLI ----------------------------------------------------------------------------------------------------------


def test_cli_diagnose_prints_json_and_exits_1_when_a_check_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from coffee_scraper.cli import app

    monkeypatch.setenv("COFFEE_SCRAPER_DATABASE_URL", f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x")
    monkeypatch.setenv("COFFEE_SCRAPER_LOG_DIR", str(tmp_path / "logs"))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        failed = runner.invoke(app, ["diagnose", "--check", "database", "--check", "disk", "--json"])
        assert failed.exit_code == 1, failed.output
        data = json.loads(failed.stdout)
        assert [c["name"] for c in data["checks"]] == ["database", "disk"]
        assert data["status"] == "fail"
        table = runner.invoke(app, ["diagnose", "--check", "disk", "--details"])
        assert table.exit_code == 0, table.output
        assert "df -h" in table.output and "diagnostics:" in table.output
        wrong = runner.invoke(app, ["diagnose", "--check", "nope"])
        assert wrong.exit_code == 2 and "choose from" in wrong.output
    finally:
        get_settings.cache_clear()
