"""A tiny HTTP/1.1 server on 127.0.0.1 for storefront tests: scripted replies, request start/end times.

Not a general server: GET only, one request per connection (``Connection: close``), no request bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Body = bytes | Callable[[], AsyncIterator[bytes]]


@dataclass
class Req:
    method: str
    target: str  # path + query, as sent
    path: str
    headers: dict[str, str]  # lower-case names


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Body = b""
    delay_s: float = 0.0  # sleep before sending anything (a hanging shop)


@dataclass
class Hit:
    target: str
    headers: dict[str, str]
    start: float
    end: float | None = None
    status: int | None = None
    sent: int = 0


Route = Reply | Callable[[Req], Awaitable[Reply]]


def json_reply(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    import json

    return Reply(
        status,
        {"Content-Type": "application/json; charset=utf-8", **(headers or {})},
        json.dumps(data).encode(),
    )


def html_reply(html: str, status: int = 200) -> Reply:
    return Reply(status, {"Content-Type": "text/html; charset=utf-8"}, html.encode())


class Server:
    """Routes by exact target (path + query) first, then by path; unknown → 404 text."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: list[Hit] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def route(self, target: str, reply: Route) -> None:
        self.routes[target] = reply

    def targets(self) -> list[str]:
        return [h.target for h in self.hits]

    async def start(self) -> Server:
        self._server = await asyncio.start_server(self._on_connect, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._handle(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hit: Hit | None = None
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            hit = Hit(target=target, headers=headers, start=time.monotonic())
            self.hits.append(hit)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            req = Req(method, target, target.split("?", 1)[0], headers)
            route = self.routes.get(target) or self.routes.get(req.path)
            if route is None:
                reply = Reply(404, {"Content-Type": "text/plain"}, b"not found")
            elif isinstance(route, Reply):
                reply = route
            else:
                reply = await route(req)
            if reply.delay_s:
                await asyncio.sleep(reply.delay_s)
            hit.status = reply.status
            try:
                phrase = http.HTTPStatus(reply.status).phrase
            except ValueError:
                phrase = "Status"
            out_headers = {k.lower(): v for k, v in reply.headers.items()}
            out_headers["connection"] = "close"
            streamed = not isinstance(reply.body, bytes)
            if not streamed:
                assert isinstance(reply.body, bytes)
                out_headers.setdefault("content-length", str(len(reply.body)))
            elif "content-length" not in out_headers:
                out_headers["transfer-encoding"] = "chunked"
            status_line = f"HTTP/1.1 {reply.status} {phrase}\r\n"
            writer.write((status_line + "".join(f"{k}: {v}\r\n" for k, v in out_headers.items()) + "\r\n").encode())
            if isinstance(reply.body, bytes):
                writer.write(reply.body)
                hit.sent = len(reply.body)
            else:
                chunked = out_headers.get("transfer-encoding") == "chunked"
                async for chunk in reply.body():
                    if chunked:
                        writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    else:
                        writer.write(chunk)
                    hit.sent += len(chunk)
                    await writer.drain()
                if chunked:
                    writer.write(b"0\r\n\r\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if hit is not None:
                hit.end = time.monotonic()
                self.in_flight -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
