"""Request-body size limit for the HTTP API (413 above ``api_max_body_bytes``), for chunked bodies too.

Lives here: ``BodySizeLimit``, a pure ASGI middleware. A declared ``Content-Length`` over the limit is refused
before the app runs; otherwise the bytes actually received are counted and the read is cut off as soon as they
pass the limit — whatever the app was doing with the body is discarded and the client gets the 413.
Does not live here: authentication (``web/auth.py``), per-endpoint validation.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    """Raised inside ``receive`` when the body passes the limit."""


class BodySizeLimit:
    """Refuse request bodies above ``max_bytes`` under ``prefix`` (default ``/api/``) with 413."""

    def __init__(self, app: ASGIApp, max_bytes: int, prefix: str = "/api/") -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.prefix = prefix

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            {
                "detail": f"request body larger than {self.max_bytes} bytes; send smaller batches "
                "(limit: COFFEE_SCRAPER_API_MAX_BODY_BYTES)"
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await self._refuse(send)
                    return
        received = 0
        too_large = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise BodyTooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if too_large:
                return  # the app's answer to a cut-off body is replaced by the 413
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not too_large:
                raise
        if too_large and not started:
            await self._refuse(send)
