"""Local peers speaking the real protocols of the notification channels, on 127.0.0.1 (real HTTP / real SMTP).

* ``SlackPeer``: an incoming webhook (``POST /services/T000/B000/XXXX`` JSON {text, blocks?} → 200 ``ok``;
  ``invalid_payload`` 400 without text; scripted 500/429-with-Retry-After answers).
* ``GitHubPeer``: REST v3 issues (create 201 {number, html_url}, list, comment 201, PATCH state 200, an issue's
  labels: list, add 200, remove 200 or 404 ``Label does not exist``), Bearer auth (401 ``Bad credentials``), 422
  validation shape, scripted 5xx/403-rate-limit answers.
* ``WebhookPeer``: any POST recorded with its headers and raw body.
* ``SmtpPeer``: aiosmtpd on a fixed free port that can be stopped (port closed) and started again.
Failures are scripted with ``fail_next`` (a list of (status, body, headers) answered before real handling).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from aiosmtpd.controller import Controller
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.support import free_port

Scripted = tuple[int, Any, dict[str, str]]


class _Scripted:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fail_next: list[Scripted] = []
        self.down = False  # answer 500 to everything while set
        self.requests: list[dict[str, Any]] = []

    def scripted(self) -> Response | None:
        with self.lock:
            if self.down:
                return PlainTextResponse("service unavailable", status_code=500)
            if self.fail_next:
                status, body, headers = self.fail_next.pop(0)
                if isinstance(body, dict):
                    return JSONResponse(body, status_code=status, headers=headers)
                return PlainTextResponse(str(body), status_code=status, headers=headers)
        return None


class SlackPeer(_Scripted):
    path = "/services/T000/B000/XXXXXXXX"

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[dict[str, Any]] = []

        async def hook(request: Request) -> Response:
            raw = await request.body()
            self.requests.append({"headers": dict(request.headers), "body": raw})
            answer = self.scripted()
            if answer is not None:
                return answer
            try:
                data = json.loads(raw)
            except ValueError:
                return PlainTextResponse("invalid_payload", status_code=400)
            if not isinstance(data, dict) or not data.get("text"):
                return PlainTextResponse("no_text", status_code=400)
            with self.lock:
                self.messages.append(data)
            return PlainTextResponse("ok")

        self.app = Starlette(routes=[Route(self.path, hook, methods=["POST"])])

    def texts(self) -> list[str]:
        return [m["text"] for m in self.messages]


@dataclass
class Issue:
    number: int
    title: str
    body: str
    labels: list[str]
    state: str = "open"
    comments: list[str] = field(default_factory=list)


class GitHubPeer(_Scripted):
    token = "ghp_test_token_1234567890"

    def __init__(self, owner: str = "acme", repo: str = "coffee") -> None:
        super().__init__()
        self.owner, self.repo = owner, repo
        self.issues: dict[int, Issue] = {}
        self.create_then_fail = 0  # answer 502 after creating the issue this many times (a lost 201)

        def auth(request: Request) -> Response | None:
            if request.headers.get("authorization") != f"Bearer {self.token}":
                return JSONResponse({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest",
                                     "status": "401"}, status_code=401)  # fmt: skip
            return None

        def url(n: int) -> str:
            return f"https://github.example/{self.owner}/{self.repo}/issues/{n}"

        def right_repo(request: Request) -> bool:
            return request.path_params["owner"] == self.owner and request.path_params["repo"] == self.repo

        async def issues(request: Request) -> Response:
            self.requests.append({"method": request.method, "path": request.url.path,
                                  "headers": dict(request.headers), "body": await request.body()})  # fmt: skip
            denied = auth(request)
            if denied is not None:
                return denied
            if not right_repo(request):
                return JSONResponse({"message": "Not Found", "status": "404"}, status_code=404)
            if request.method == "GET":
                with self.lock:
                    listed = [{"number": i.number, "title": i.title, "html_url": url(i.number), "state": i.state}
                              for i in self.issues.values() if "incident" in i.labels]  # fmt: skip
                return JSONResponse(listed)
            answer = self.scripted()
            if answer is not None:
                return answer
            data = await request.json()
            if not data.get("title"):
                return JSONResponse({"message": "Validation Failed", "errors": [{"resource": "Issue", "field": "title",
                                     "code": "missing_field"}], "status": "422"}, status_code=422)  # fmt: skip
            with self.lock:
                n = len(self.issues) + 1
                self.issues[n] = Issue(n, data["title"], data.get("body", ""), list(data.get("labels", [])))
                if self.create_then_fail > 0:
                    self.create_then_fail -= 1
                    return JSONResponse({"message": "Server Error"}, status_code=502)
            return JSONResponse({"number": n, "html_url": url(n), "state": "open"}, status_code=201)

        async def comments(request: Request) -> Response:
            self.requests.append({"method": request.method, "path": request.url.path,
                                  "headers": dict(request.headers), "body": await request.body()})  # fmt: skip
            denied = auth(request)
            if denied is not None:
                return denied
            answer = self.scripted()
            if answer is not None:
                return answer
            n = int(request.path_params["number"])
            if not right_repo(request) or n not in self.issues:
                return JSONResponse({"message": "Not Found", "status": "404"}, status_code=404)
            data = await request.json()
            with self.lock:
                self.issues[n].comments.append(data["body"])
                c = len(self.issues[n].comments)
            return JSONResponse({"id": c, "html_url": f"{url(n)}#issuecomment-{c}"}, status_code=201)

        async def issue(request: Request) -> Response:
            self.requests.append({"method": request.method, "path": request.url.path,
                                  "headers": dict(request.headers), "body": await request.body()})  # fmt: skip
            denied = auth(request)
            if denied is not None:
                return denied
            answer = self.scripted()
            if answer is not None:
                return answer
            n = int(request.path_params["number"])
            if not right_repo(request) or n not in self.issues:
                return JSONResponse({"message": "Not Found", "status": "404"}, status_code=404)
            data = await request.json()
            with self.lock:
                if "state" in data:
                    self.issues[n].state = data["state"]
            return JSONResponse({"number": n, "html_url": url(n), "state": self.issues[n].state})

        def label_list(n: int) -> list[dict[str, Any]]:
            return [{"name": name, "url": f"https://github.example/labels/{name}"} for name in self.issues[n].labels]

        async def labels(request: Request) -> Response:
            self.requests.append({"method": request.method, "path": request.url.path,
                                  "headers": dict(request.headers), "body": await request.body()})  # fmt: skip
            denied = auth(request)
            if denied is not None:
                return denied
            if request.method != "GET":
                answer = self.scripted()
                if answer is not None:
                    return answer
            n = int(request.path_params["number"])
            if not right_repo(request) or n not in self.issues:
                return JSONResponse({"message": "Not Found", "status": "404"}, status_code=404)
            with self.lock:
                if request.method == "POST":
                    for name in (await request.json()).get("labels", []):
                        if name not in self.issues[n].labels:
                            self.issues[n].labels.append(name)
                return JSONResponse(label_list(n))

        async def label(request: Request) -> Response:
            self.requests.append({"method": request.method, "path": request.url.path,
                                  "headers": dict(request.headers), "body": await request.body()})  # fmt: skip
            denied = auth(request)
            if denied is not None:
                return denied
            answer = self.scripted()
            if answer is not None:
                return answer
            n = int(request.path_params["number"])
            if not right_repo(request) or n not in self.issues:
                return JSONResponse({"message": "Not Found", "status": "404"}, status_code=404)
            name = request.path_params["name"]
            with self.lock:
                if name not in self.issues[n].labels:
                    return JSONResponse({"message": "Label does not exist", "status": "404"}, status_code=404)
                self.issues[n].labels.remove(name)
                return JSONResponse(label_list(n))

        self.app = Starlette(routes=[
            Route("/repos/{owner}/{repo}/issues", issues, methods=["GET", "POST"]),
            Route("/repos/{owner}/{repo}/issues/{number:int}/comments", comments, methods=["POST"]),
            Route("/repos/{owner}/{repo}/issues/{number:int}/labels", labels, methods=["GET", "POST"]),
            Route("/repos/{owner}/{repo}/issues/{number:int}/labels/{name}", label, methods=["DELETE"]),
            Route("/repos/{owner}/{repo}/issues/{number:int}", issue, methods=["PATCH"]),
        ])  # fmt: skip


class WebhookPeer(_Scripted):
    def __init__(self) -> None:
        super().__init__()
        self.received: list[dict[str, Any]] = []

        async def hook(request: Request) -> Response:
            raw = await request.body()
            self.requests.append({"headers": dict(request.headers), "body": raw})
            answer = self.scripted()
            if answer is not None:
                return answer
            with self.lock:
                self.received.append({"headers": dict(request.headers), "body": raw})
            return Response(status_code=204)

        self.app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])


class _Sink:
    def __init__(self) -> None:
        self.messages: list[Any] = []  # envelopes: .mail_from, .rcpt_tos, .original_content

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"


class SmtpPeer:
    """aiosmtpd on a fixed port: ``stop()`` closes the port (connection refused), ``start()`` opens it again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.handler = _Sink()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def messages(self) -> list[Any]:
        return self.handler.messages


@contextmanager
def serve_at(app: Any, port: int) -> Iterator[int]:
    """Serve an ASGI app on a given 127.0.0.1 port (to bring a 'down' peer up on the port messages go to)."""
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
