"""deploy/: Prometheus, Alertmanager, docker compose, Dockerfile, systemd units and .env.example hold together."""

from __future__ import annotations

import configparser
import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from coffee_scraper.incidents.alert_config import AlertSettings
from coffee_scraper.observability import dashboards as d
from coffee_scraper.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SYSTEMD = DEPLOY / "systemd"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# --- Prometheus / Alertmanager -----------------------------------------------------------------------------


def test_promtool_accepts_the_prometheus_config_and_its_rules(promtool: str) -> None:
    done = subprocess.run(
        [promtool, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 1 rule files found" in done.stdout


def test_prometheus_scrapes_the_app_and_posts_alerts_to_it() -> None:
    config = load(DEPLOY / "prometheus" / "prometheus.yml")
    assert config["rule_files"] == ["rules.yml"]
    assert (DEPLOY / "prometheus" / "rules.yml").is_file()
    (job,) = [
        j for j in config["scrape_configs"] if j["job_name"] == AlertSettings.model_fields["prometheus_job"].default
    ]
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    assert "app:8000" in targets
    assert job.get("metrics_path", "/metrics") == "/metrics"
    (manager,) = config["alerting"]["alertmanagers"]
    assert manager["path_prefix"] == "/"
    assert manager.get("api_version", "v2") == "v2"
    assert [t for group in manager["static_configs"] for t in group["targets"]] == ["app:8000"]


def test_alertmanager_webhook_goes_to_the_app_with_resolved_notices() -> None:
    config = load(DEPLOY / "alertmanager" / "alertmanager.yml")
    receivers = {r["name"]: r for r in config["receivers"]}
    (hook,) = receivers[config["route"]["receiver"]]["webhook_configs"]
    assert hook["url"] == "http://app:8000/api/v1/alerts/alertmanager"
    assert hook["send_resolved"] is True


# --- Grafana provisioning ----------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    data = load(DEPLOY / "docker-compose.yml")
    assert isinstance(data, dict)
    return data


def mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host, container) of each bind mount (named volumes skipped)."""
    found = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            source, target = volume.get("source", ""), volume["target"]
        else:
            source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            found.append((source, target))
    return found


def test_grafana_provisioning_points_at_the_mounted_dashboards() -> None:
    provider = load(DEPLOY / "grafana/provisioning/dashboards/coffee-scraper.yml")
    (entry,) = provider["providers"]
    assert entry["type"] == "file"
    grafana = dict(mounts(compose()["services"]["grafana"]))
    assert grafana["./grafana/dashboards"] == entry["options"]["path"]
    assert grafana["./grafana/provisioning"] == "/etc/grafana/provisioning"


# --- docker compose ----------------------------------------------------------------------------------------


def test_compose_has_the_stack() -> None:
    services = compose()["services"]
    assert {"app", "postgres", "prometheus", "grafana", "alertmanager"} <= set(services)
    assert services["postgres"]["image"] == "postgres:15"
    assert "healthcheck" in services["postgres"]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])
    assert services["alertmanager"]["profiles"] == ["alertmanager"]
    assert "9090:9090" in services["prometheus"]["ports"]
    assert "3000:3000" in services["grafana"]["ports"]
    assert services["app"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    # compose runs PostgreSQL, so scheduling is distributed: a procrastinate worker runs by default
    assert services["worker"]["command"][:1] == ["worker"] and not services["worker"].get("profiles")


def test_compose_mounts_only_files_that_exist_in_the_repo() -> None:
    data = compose()
    checked = 0
    for name, service in data["services"].items():
        for source, _ in mounts(service):
            assert (DEPLOY / source).resolve().exists(), f"{name}: {source} does not exist"
            checked += 1
        build = service.get("build")
        if build:
            assert (DEPLOY / build["context"] / build.get("dockerfile", "Dockerfile")).is_file()
    assert checked >= 5


def test_prometheus_container_sees_rules_beside_its_config() -> None:
    prometheus = dict((t, s) for s, t in mounts(compose()["services"]["prometheus"]))
    config_dir = Path("/etc/prometheus")
    assert prometheus[str(config_dir / "prometheus.yml")] == "./prometheus/prometheus.yml"
    for rule_file in load(DEPLOY / "prometheus" / "prometheus.yml")["rule_files"]:
        assert str(config_dir / rule_file) in prometheus


@pytest.mark.parametrize(("service", "verb"), [("app", "serve"), ("worker", "worker")])
def test_service_command_is_a_real_cli_command(run_cli: Any, service: str, verb: str) -> None:
    command = compose()["services"][service]["command"]
    assert command[:1] == [verb] and "0.0.0.0" in command
    done = run_cli(*command, "--help")  # unknown options would fail before --help answers
    assert done.returncode == 0, done.stdout + done.stderr


# --- Dockerfile --------------------------------------------------------------------------------------------


def dockerfile() -> dict[str, list[str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    instructions: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.setdefault(keyword.upper(), []).append(rest.strip())
    return instructions


def test_dockerfile_is_slim_non_root_and_health_checked(run_cli: Any) -> None:
    docker = dockerfile()
    assert docker["FROM"] == ["python:3.11-slim"]
    assert docker["USER"][-1] not in {"root", "0"}
    assert json.loads(docker["ENTRYPOINT"][-1]) == ["coffee-scraper"]
    assert any("pip install ." in run for run in docker["RUN"])
    (health,) = docker["HEALTHCHECK"]
    assert "/health" in health and "8000" in health
    done = run_cli(*json.loads(docker["CMD"][-1]), "--help")
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerignore_keeps_secrets_and_venv_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".env", ".venv", ".git"} <= ignored


# --- systemd -----------------------------------------------------------------------------------------------


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((SYSTEMD / name).read_text())
    return parser


HARDENING = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes"}


@pytest.mark.parametrize(
    "name", ["coffee-scraper.service", "coffee-scraper-worker.service", "coffee-scraper-scrape.service"]
)
def test_systemd_services_are_hardened_and_log_where_the_runbook_looks(name: str) -> None:
    service = unit(name)["Service"]
    for key in ("User", "EnvironmentFile", "ExecStart", "StateDirectory"):
        assert service.get(key), f"{name}: {key} missing"
    assert service["LogsDirectory"] == "coffee-scraper"  # -> /var/log/coffee-scraper (runbook "Log Locations")
    for key, value in HARDENING.items():
        assert service.get(key) == value, f"{name}: {key}={service.get(key)}"
    writable = service["ReadWritePaths"].split()
    assert {"/var/lib/coffee-scraper", "/var/log/coffee-scraper"} <= set(writable)


@pytest.mark.parametrize(
    ("name", "verb"), [("coffee-scraper.service", "serve"), ("coffee-scraper-worker.service", "worker")]
)
def test_long_running_services_restart_on_failure(run_cli: Any, name: str, verb: str) -> None:
    service = unit(name)["Service"]
    assert service["Restart"] == "on-failure"
    assert service["RestartSec"]
    args = shlex.split(service["ExecStart"])
    assert Path(args[0]).name == "coffee-scraper" and args[1] == verb
    done = run_cli(*args[1:], "--help")  # unknown options would fail before --help answers
    assert done.returncode == 0, done.stdout + done.stderr
    assert unit(name)["Install"]["WantedBy"] == "multi-user.target"


def test_the_nightly_scrape_is_a_oneshot_started_by_its_timer(run_cli: Any) -> None:
    service = unit("coffee-scraper-scrape.service")["Service"]
    assert service["Type"] == "oneshot"
    args = shlex.split(service["ExecStart"])
    assert Path(args[0]).name == "coffee-scraper" and args[1] == "scrape"
    done = run_cli(*args[1:], "--help")
    assert done.returncode == 0, done.stdout + done.stderr
    timer = unit("coffee-scraper-scrape.timer")
    assert timer["Timer"]["OnCalendar"]
    assert (SYSTEMD / timer["Timer"].get("Unit", "coffee-scraper-scrape.service")).is_file()
    assert timer["Install"]["WantedBy"] == "timers.target"


# --- .env.example -------------------------------------------------------------------------------------------


def test_env_example_names_only_real_settings() -> None:
    known = {f"COFFEE_SCRAPER_{n.upper()}" for n in Settings.model_fields} | {
        f"COFFEE_SCRAPER_ALERT_{n.upper()}" for n in AlertSettings.model_fields
    }
    named = set(re.findall(r"^#?\s*(COFFEE_SCRAPER_\w+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    assert "COFFEE_SCRAPER_DATABASE_URL" in named
    assert named <= known, sorted(named - known)


def test_dashboards_module_constant_is_the_provisioned_uid() -> None:
    assert d.DATASOURCE == {"type": "prometheus", "uid": "coffee-scraper-prometheus"}
