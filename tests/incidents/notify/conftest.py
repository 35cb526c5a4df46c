"""Fixtures of the notification tests: local Slack/GitHub/webhook peers on real HTTP, an aiosmtpd sink, a clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from coffee_scraper.incidents.notify import config as notify_config
from tests.incidents.notify.peers import GitHubPeer, SlackPeer, SmtpPeer, WebhookPeer
from tests.incidents.notify.support import Clock
from tests.support import serve_in_thread


@pytest.fixture(autouse=True)
def _fresh_notify_config() -> Iterator[None]:
    yield
    notify_config.reset()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def slack() -> Iterator[SlackPeer]:
    peer = SlackPeer()
    with serve_in_thread(peer.app) as port:
        peer.url = f"http://127.0.0.1:{port}{peer.path}"  # type: ignore[attr-defined]
        yield peer


@pytest.fixture
def github() -> Iterator[GitHubPeer]:
    """GitHub Enterprise style: the API lives under /api/v3 (the base URL setting must be honoured)."""
    peer = GitHubPeer()
    with serve_in_thread(Starlette(routes=[Mount("/api/v3", app=peer.app)])) as port:
        peer.api = f"http://127.0.0.1:{port}/api/v3"  # type: ignore[attr-defined]
        yield peer


@pytest.fixture
def hook() -> Iterator[WebhookPeer]:
    peer = WebhookPeer()
    with serve_in_thread(peer.app) as port:
        peer.url = f"http://127.0.0.1:{port}/hook"  # type: ignore[attr-defined]
        yield peer


@pytest.fixture
def smtp() -> Iterator[SmtpPeer]:
    peer = SmtpPeer()
    peer.start()
    yield peer
    peer.stop()
