"""The deploy configs post to the receivers that exist, with the token the app checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from fastapi.routing import APIRoute

from coffee_scraper.incidents.views import incidents_router
from coffee_scraper.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SECRET = "coffee_scraper_api_token"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def receiver_paths(tmp_path: Path) -> set[str]:
    router = incidents_router(Settings(_env_file=None, database_url=f"sqlite:///{tmp_path / 'x.db'}"))  # type: ignore[call-arg]
    return {r.path for r in router.routes if isinstance(r, APIRoute) and "POST" in r.methods}


def test_prometheus_and_alertmanager_post_to_existing_receivers_with_the_token(tmp_path: Path) -> None:
    paths = receiver_paths(tmp_path)
    (manager,) = load(DEPLOY / "prometheus" / "prometheus.yml")["alerting"]["alertmanagers"]
    assert manager["path_prefix"].rstrip("/") + "/api/v2/alerts" in paths
    assert manager["authorization"] == {"type": "Bearer", "credentials_file": f"/run/secrets/{SECRET}"}
    am = load(DEPLOY / "alertmanager" / "alertmanager.yml")
    (hook,) = {r["name"]: r for r in am["receivers"]}[am["route"]["receiver"]]["webhook_configs"]
    assert hook["url"].removeprefix("http://app:8000") in paths
    assert hook["http_config"]["authorization"]["credentials_file"] == f"/run/secrets/{SECRET}"


def test_compose_gives_the_token_from_env_to_prometheus_and_alertmanager() -> None:
    compose = load(DEPLOY / "docker-compose.yml")
    assert compose["secrets"][SECRET] == {"environment": "COFFEE_SCRAPER_API_TOKEN"}
    for service in ("prometheus", "alertmanager"):
        assert SECRET in compose["services"][service]["secrets"]
    example = (DEPLOY.parent / ".env.example").read_text()
    assert "\nCOFFEE_SCRAPER_API_TOKEN=" in example
