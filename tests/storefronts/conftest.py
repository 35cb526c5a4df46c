"""Fixtures for storefront tests: local HTTP servers on 127.0.0.1 (one origin each).

Helpers (settings, fake clock, cache) live in _support.py; the server in _server.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from ._server import Server

ServerFactory = Callable[[], Awaitable[Server]]


@pytest.fixture
async def make_server() -> AsyncIterator[ServerFactory]:
    servers: list[Server] = []

    async def make() -> Server:
        server = await Server().start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.close()


@pytest.fixture
async def server(make_server: ServerFactory) -> Server:
    return await make_server()
