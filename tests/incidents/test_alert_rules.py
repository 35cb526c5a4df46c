"""The runbook's classification as data, exported to Prometheus: in step with the runbook and promtool-valid."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from coffee_scraper.incidents.alert_config import AlertSettings, Severity, load_alert_config
from coffee_scraper.incidents.prometheus_rules import render_rule_tests, render_rules, write_files
from coffee_scraper.observability import metrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "prometheus"
RUNBOOK = ROOT.parent / "shared" / "reference" / "incident-response-runbook.md"


@pytest.fixture
def defaults(monkeypatch: pytest.MonkeyPatch) -> AlertSettings:
    """Default thresholds: no COFFEE_SCRAPER_ALERT_* variables, no .env."""
    for name in list(os.environ):
        if name.startswith("COFFEE_SCRAPER_ALERT_"):
            monkeypatch.delenv(name)
    return AlertSettings(_env_file=None)  # type: ignore[call-arg]


def promtool() -> str:
    found = shutil.which("promtool")
    if found:
        return found
    hint = "install Debian's prometheus package (apt-get install prometheus) for promtool"
    if os.environ.get("CI"):
        pytest.fail(f"promtool is missing in CI: {hint}")
    pytest.skip(f"promtool not installed: {hint}")


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


# --- (a) generated files cannot drift from the code ------------------------------------------------------


def test_committed_rules_are_a_fresh_render(defaults: AlertSettings) -> None:
    config = load_alert_config(defaults)
    hint = "run `coffee-scraper export prometheus-rules`"
    assert (DEPLOY / "rules.yml").read_text(encoding="utf-8") == render_rules(config), hint
    assert (DEPLOY / "rules_test.yml").read_text(encoding="utf-8") == render_rule_tests(config), hint


# --- (b), (c) promtool ------------------------------------------------------------------------------------


def test_promtool_check_rules() -> None:
    done = run_promtool("check", "rules", "rules.yml", cwd=DEPLOY)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_rule_unit_tests() -> None:
    done = run_promtool("test", "rules", "rules_test.yml", cwd=DEPLOY)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_tests_follow_overridden_thresholds(tmp_path: Path, defaults: AlertSettings) -> None:
    changed = defaults.model_copy(update={"rpc_error_critical_ratio": 0.7, "latency_slow_p95_s": 8.0,
                                          "validation_error_ratio": 0.35, "roaster_cadence_s": 86400.0})  # fmt: skip
    write_files(load_alert_config(changed), tmp_path / "rules.yml")
    for args in (("check", "rules", "rules.yml"), ("test", "rules", "rules_test.yml")):
        done = run_promtool(*args, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr


# --- (d) the runbook's classification is in the config ------------------------------------------------


def _runbook_classification(text: str) -> dict[Severity, dict[str, object]]:
    section = text.split("## Incident Classification", 1)[1].split("\n## ", 1)[0]
    out: dict[Severity, dict[str, object]] = {}
    for block in re.split(r"\n### ", section)[1:]:
        sev = Severity(re.search(r"\((P\d)\)", block.splitlines()[0]).group(1))  # type: ignore[union-attr]
        bullets = dict(re.findall(r"^- \*\*(.+?)\*\*: (.+)$", block, re.M))
        response = re.search(r"\*\*Response Time\*\*: (.+)", block).group(1).strip()  # type: ignore[union-attr]
        escalation = re.search(r"\*\*Escalation\*\*: (.+)", block).group(1).strip()  # type: ignore[union-attr]
        out[sev] = {"bullets": bullets, "response": response, "escalation": escalation}
    return out


def test_every_runbook_category_p0_to_p2_is_encoded_with_its_threshold(defaults: AlertSettings) -> None:
    if not RUNBOOK.is_file():
        pytest.skip(f"runbook not found at {RUNBOOK} (a clone without ../shared)")
    config = load_alert_config(defaults)
    classification = _runbook_classification(RUNBOOK.read_text(encoding="utf-8"))
    assert set(classification) == set(Severity)
    checked = 0
    for sev, data in classification.items():
        policy = config.severities[sev]
        assert policy.response_text == data["response"]
        assert policy.escalation == data["escalation"]
        if sev is Severity.P3:
            continue
        for category, text in data["bullets"].items():  # type: ignore[attr-defined]
            rules = config.by_category(category)
            assert rules, f"runbook category {category!r} ({sev}) has no rule"
            assert {r.severity for r in rules} == {sev}, f"{category}: severity differs from the runbook's {sev}"
            span = re.search(r"(\d+)-(\d+)%", text)
            above = re.search(r">(\d+)%", text)
            if span:
                lo, hi = float(span.group(1)) / 100, float(span.group(2)) / 100
                assert any(r.comparison == "between" and r.threshold == lo and r.upper == hi for r in rules), category
                checked += 1
            elif above:
                limit = float(above.group(1)) / 100
                assert any(r.threshold == limit and r.comparison in (">", "between") for r in rules), category
                checked += 1
    assert checked == 5  # >50%, >95%, 10-50%, >90%, 85-95%: every number of the runbook was read


def test_escalation_levels_match_the_runbook() -> None:
    config = load_alert_config(AlertSettings(_env_file=None))  # type: ignore[call-arg]
    levels = [(e.level, e.role, e.starts_after.total_seconds() / 60) for e in config.escalation_levels]
    assert levels == [(1, "On-Call Engineer", 0), (2, "Senior Engineer", 30), (3, "Engineering Manager", 60),
                      (4, "CTO/Leadership", 120)]  # fmt: skip
    minutes = {s: p.response_time.total_seconds() / 60 for s, p in config.severities.items()}
    assert minutes == {Severity.P0: 15, Severity.P1: 30, Severity.P2: 120, Severity.P3: 24 * 60}


# --- (e) settings overrides -------------------------------------------------------------------------------


def test_settings_override_changes_rendered_threshold(monkeypatch: pytest.MonkeyPatch, defaults: AlertSettings) -> None:
    before = yaml.safe_load(render_rules(load_alert_config(defaults)))["groups"][0]["rules"]
    monkeypatch.setenv("COFFEE_SCRAPER_ALERT_RPC_ERROR_CRITICAL_RATIO", "0.6")
    config = load_alert_config()
    rules = {r["alert"]: r for r in yaml.safe_load(render_rules(config))["groups"][0]["rules"]}
    assert rules["HighRPCErrorRate"]["expr"].endswith("> 0.6")
    assert rules["HighErrorRate"]["expr"].endswith("> 0.1 <= 0.6")
    assert "limit 60%" in rules["HighRPCErrorRate"]["annotations"]["description"]
    assert {r["alert"]: r["expr"] for r in before}["HighRPCErrorRate"].endswith("> 0.5")
    watchdog = load_alert_config(AlertSettings(_env_file=None, disk_critical_ratio=0.9))  # type: ignore[call-arg]
    assert watchdog.rule("DiskUsageCritical").threshold == 0.9


# --- the rules themselves --------------------------------------------------------------------------------


def test_exported_rules_use_only_declared_metric_names(defaults: AlertSettings) -> None:
    declared = {m.name for m in metrics.REGISTRY.collect()}
    names = set()
    for rule in load_alert_config(defaults).exported_rules():
        for name in re.findall(r"\b(coffee_scraper_\w+)", rule.expr or ""):
            names.add(name)
            base = re.sub(r"_(total|bucket|count|sum)$", "", name)
            assert name in declared or base in declared, f"{rule.id}: {name} is not in observability/metrics.py"
    assert names


def test_watchdog_only_rules_are_not_exported(defaults: AlertSettings) -> None:
    config = load_alert_config(defaults)
    watchdog = [r for r in config.rules if r.watchdog_only]
    assert watchdog and all(r.expr is None and r.needs_metric for r in watchdog)
    exported = {r["alert"] for r in yaml.safe_load(render_rules(config))["groups"][0]["rules"]}
    assert exported == {r.id for r in config.exported_rules()}
    assert not exported & {r.id for r in watchdog}
    ids = [r.id for r in config.rules]
    assert len(ids) == len(set(ids))
