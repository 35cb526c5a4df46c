"""Sentry reporting against a local fake ingest endpoint: what arrives, with which tags, and what never does."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk

from coffee_scraper.observability.logging import configure_logging, get_logger
from coffee_scraper.observability.sentry import init_sentry, run_scope, scrub_text, shutdown_sentry
from coffee_scraper.settings import Settings

DB_PASSWORD = "hunter2-db-pass"
BEARER = "abcdef0123456789tokenvalue"
LOCAL_TOKEN = "local-api-token-value-42"


class Ingest:
    """Records the envelopes POSTed to /api/<project>/envelope/."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.paths: list[str] = []
        ingest = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                elif self.headers.get("Content-Encoding") == "br":
                    import brotli  # type: ignore[import-not-found]

                    raw = brotli.decompress(raw)
                ingest.paths.append(self.path)
                ingest.bodies.append(raw)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self) -> list[dict[str, Any]]:
        found = []
        for body in self.bodies:
            lines = body.split(b"\n")
            for header, payload in zip(lines[1::2], lines[2::2], strict=False):
                if json.loads(header).get("type") == "event":
                    found.append(json.loads(payload))
        return found

    def wait_events(self, n: int = 1, timeout_s: float = 10) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while len(self.events()) < n:
            assert time.monotonic() < deadline, f"no Sentry event arrived: {self.paths}"
            time.sleep(0.05)
        return self.events()


@pytest.fixture
def ingest() -> Iterator[Ingest]:
    server = Ingest()
    try:
        yield server
    finally:
        shutdown_sentry()
        server.server.shutdown()
        server.server.server_close()


def test_no_dsn_no_client() -> None:
    assert init_sentry(Settings(sentry_dsn=None), "app") is False
    assert not sentry_sdk.get_client().is_active()


def test_exception_in_run_scope_reaches_ingest_with_tags_and_no_secrets(ingest: Ingest, tmp_path: Path) -> None:
    settings = Settings(
        sentry_dsn=f"http://public@127.0.0.1:{ingest.port}/1",
        sentry_environment="test",
        sentry_traces_sample_rate=0.0,
        log_dir=tmp_path,
    )
    assert init_sentry(settings, "worker")
    assert init_sentry(settings, "worker")  # once per process: the second call changes nothing
    assert sentry_sdk.scope.should_send_default_pii() is False

    def commit(api_token: str) -> None:
        raise RuntimeError(
            f"commit failed on postgresql+psycopg://scraper:{DB_PASSWORD}@db.internal/catalog "
            f"(Authorization: Bearer {BEARER})"
        )

    with run_scope("Blue Tokai", 4711, "full"):
        try:
            commit(LOCAL_TOKEN)
        except RuntimeError:
            sentry_sdk.capture_exception()
    sentry_sdk.flush(timeout=5)

    [event] = ingest.wait_events()
    assert ingest.paths[0].startswith("/api/1/envelope/")
    raw = b"\n".join(ingest.bodies).decode()
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    assert event["tags"]["roaster"] == "Blue Tokai"
    assert event["tags"]["run_id"] == "4711"
    assert event["tags"]["mode"] == "full"
    assert event["tags"]["component"] == "worker"
    assert event["environment"] == "test"
    assert event["release"].startswith("coffee-scraper@")
    assert "db.internal" in event["exception"]["values"][-1]["value"]  # the message itself survives, masked
    for secret in (DB_PASSWORD, BEARER, LOCAL_TOKEN):
        assert secret not in raw, secret


def test_configure_logging_starts_sentry_and_error_logs_become_events(ingest: Ingest, tmp_path: Path) -> None:
    settings = Settings(sentry_dsn=f"http://public@127.0.0.1:{ingest.port}/2", log_dir=tmp_path / "logs")
    configure_logging(settings)
    assert sentry_sdk.get_client().is_active()
    with run_scope("Subko", 7):
        try:
            {}["missing"]
        except KeyError:
            get_logger("app").exception("run_internal_error", dsn=f"https://key:{DB_PASSWORD}@sentry.example/1")
    sentry_sdk.flush(timeout=5)
    events = ingest.wait_events()
    assert any(e["tags"].get("roaster") == "Subko" for e in events)
    assert any(v["type"] == "KeyError" for e in events for v in e.get("exception", {}).get("values", []))
    assert DB_PASSWORD not in b"\n".join(ingest.bodies).decode()


def test_scrub_text() -> None:
    assert scrub_text("postgresql://u:pw@h/db") == "postgresql://u:[Filtered]@h/db"
    assert scrub_text("Authorization: Bearer abcdefghijkl") == "Authorization: [Filtered]"
    assert scrub_text("token=abc123&x=1") == "token=[Filtered]&x=1"
    assert scrub_text("sent Bearer abcdefghijkl to x") == "sent Bearer [Filtered] to x"
    assert scrub_text("nothing secret here") == "nothing secret here"
