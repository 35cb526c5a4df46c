"""Helpers shared by several test folders: fast politeness settings, free ports, an app served in a thread.

Fixtures live in conftest.py; this module holds plain functions the tests import.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from coffee_scraper.settings import Settings


def fast_settings(url: str, **extra: Any) -> Settings:
    """Settings for scraping loopback demo shops quickly: tiny delays and backoffs, short timeouts."""
    values: dict[str, Any] = dict(
        database_url=url,
        allow_private_addresses=True,
        request_delay_s=0.01,
        request_jitter_s=0.0,
        backoff_base_s=0.01,
        backoff_cap_s=0.05,
        read_timeout_s=2.0,
        connect_timeout_s=2.0,
        max_attempts=2,
        shopify_page_limit=25,
        woocommerce_per_page=20,
    )
    values.update(extra)
    return Settings(**values)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve_in_thread(app: Any) -> Iterator[int]:
    """Serve an ASGI app with uvicorn on a free 127.0.0.1 port in a daemon thread; yields the port."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)
