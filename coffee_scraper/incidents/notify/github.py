"""GitHub issues: one issue per incident (labels ``incident`` and the severity), a comment per update, closed
on resolution and reopened when the incident reopens. REST v3; the base URL is configurable for GitHub Enterprise.

Payload actions: ``create`` (title, body, labels), ``comment`` (body; creates the issue when none exists yet),
``close`` and ``reopen`` (PATCH state), ``relabel`` (a severity change: every other severity label of
``severity_labels`` is removed from the issue and ``severity`` added; each step is idempotent, so a retry is
safe). The issue of an incident is the external_ref (html_url) of its first delivered GitHub row. A retried
``create`` first looks for an issue already titled with the incident ID, so a crash between GitHub's 201 and our
bookkeeping does not open a second issue. The token is sent as ``Authorization: Bearer`` and never logged.
401/403/404/410/422 are permanent; 429, 5xx and 403 with an exhausted rate limit are retried (Retry-After or
x-ratelimit-reset honoured).
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import quote

import httpx

from coffee_scraper.incidents.notify.base import (
    Delivered,
    DeliveryError,
    Outgoing,
    RefLookup,
    http_error,
    short_body,
    transport_error,
)

ISSUE_NUMBER = re.compile(r"issues/(\d+)")
API_VERSION = "2022-11-28"


def issue_number(ref: str | None) -> int | None:
    m = ISSUE_NUMBER.search(ref or "")
    return int(m.group(1)) if m else None


class GitHubSender:
    channel = "github"

    def __init__(
        self, api_url: str, token: str, *, timeout_s: float = 10.0, user_agent: str = "coffee-scraper"
    ) -> None:
        self._api = api_url.rstrip("/")
        self._client = httpx.Client(
            timeout=timeout_s,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": user_agent,
            },
        )

    # --- HTTP -----------------------------------------------------------------------------------------
    def _call(
        self, method: str, path: str, json: dict[str, Any] | None = None, params: dict[str, Any] | None = None
    ) -> httpx.Response:
        what = f"github {method} {path}"
        try:
            resp = self._client.request(method, f"{self._api}{path}", json=json, params=params)
        except httpx.HTTPError as exc:
            raise transport_error(exc, what) from None
        if resp.status_code < 300:
            return resp
        if resp.status_code in (403, 429) and (
            resp.headers.get("x-ratelimit-remaining") == "0" or "rate limit" in resp.text.lower()
        ):
            wait = None
            reset = resp.headers.get("x-ratelimit-reset")
            if resp.headers.get("retry-after"):
                wait = float(resp.headers["retry-after"])
            elif reset and reset.isdigit():
                wait = max(0.0, int(reset) - time.time())
            raise DeliveryError(
                f"{what}: rate limited: HTTP {resp.status_code} {short_body(resp)}",
                retry_after=wait,
                status_code=resp.status_code,
            )
        err = http_error(resp, what)
        if resp.status_code in (401, 403):
            err = DeliveryError(
                f"{err} (check COFFEE_SCRAPER_GITHUB_TOKEN: it needs issues read/write on the repo)",
                permanent=True,
                status_code=resp.status_code,
            )
        raise err

    def _json(self, resp: httpx.Response) -> dict[str, Any]:
        try:
            data = resp.json()
        except ValueError:
            raise DeliveryError(f"github answered HTTP {resp.status_code} without JSON: {short_body(resp)}") from None
        if not isinstance(data, dict):
            raise DeliveryError(f"github answered HTTP {resp.status_code} with unexpected JSON")
        return data

    # --- actions --------------------------------------------------------------------------------------
    def _existing_issue(self, repo: str, incident_id: str) -> str | None:
        resp = self._call(
            "GET",
            f"/repos/{repo}/issues",
            params={"labels": "incident", "state": "all", "per_page": 100, "sort": "created"},
        )
        try:
            issues = resp.json()
        except ValueError:
            return None
        for issue in issues if isinstance(issues, list) else []:
            if isinstance(issue, dict) and str(issue.get("title", "")).startswith(incident_id):
                return str(issue.get("html_url") or f"/issues/{issue.get('number')}")
        return None

    def _create(self, repo: str, msg: Outgoing, body: str) -> Delivered:
        p = msg.payload
        if msg.attempts > 1 and msg.incident_id:
            found = self._existing_issue(repo, msg.incident_id)
            if found:
                return Delivered(external_ref=found, detail="issue already existed")
        resp = self._call(
            "POST",
            f"/repos/{repo}/issues",
            json={"title": p["title"], "body": body, "labels": p.get("labels", ["incident"])},
        )
        data = self._json(resp)
        ref = str(data.get("html_url") or f"{self._api}/repos/{repo}/issues/{data.get('number')}")
        return Delivered(external_ref=ref, status_code=resp.status_code)

    def send(self, msg: Outgoing, lookup: RefLookup) -> Delivered:
        repo = msg.target
        action = msg.payload.get("action")
        if action == "create":
            return self._create(repo, msg, msg.payload["body"])
        number = issue_number(lookup(msg.incident_id, "github")) if msg.incident_id else None
        if number is None:
            if action == "comment":  # the issue was never created (its create row died): create it with this text
                return self._create(repo, msg, msg.payload["body"])
            raise DeliveryError(f"github {action}: no issue known for incident {msg.incident_id}", permanent=True)
        if action == "comment":
            resp = self._call("POST", f"/repos/{repo}/issues/{number}/comments", json={"body": msg.payload["body"]})
            data = self._json(resp)
            return Delivered(external_ref=str(data.get("html_url") or f"issues/{number}"), status_code=resp.status_code)
        if action == "relabel":
            return self._relabel(repo, number, msg)
        if action in ("close", "reopen"):
            state = "closed" if action == "close" else "open"
            body: dict[str, Any] = {"state": state}
            if action == "close":
                body["state_reason"] = "completed"
            resp = self._call("PATCH", f"/repos/{repo}/issues/{number}", json=body)
            return Delivered(external_ref=f"issues/{number}#{state}", status_code=resp.status_code)
        raise DeliveryError(f"github: unknown action {action!r} in outbox row {msg.id}", permanent=True)

    def _relabel(self, repo: str, number: int, msg: Outgoing) -> Delivered:
        """Swap the issue's severity label: remove the other severity labels it has, add the new one."""
        new = str(msg.payload.get("severity") or "")
        severities = [str(x) for x in msg.payload.get("severity_labels") or ("P0", "P1", "P2", "P3")]
        if new not in severities:
            raise DeliveryError(f"github relabel: {new!r} is not a severity label ({severities})", permanent=True)
        resp = self._call("GET", f"/repos/{repo}/issues/{number}/labels", params={"per_page": 100})
        try:
            listed = resp.json()
        except ValueError:
            raise DeliveryError(f"github answered HTTP {resp.status_code} without JSON: {short_body(resp)}") from None
        current = {str(x.get("name")) for x in listed if isinstance(x, dict)} if isinstance(listed, list) else set()
        removed = []
        for label in sorted(current & set(severities) - {new}):
            try:
                self._call("DELETE", f"/repos/{repo}/issues/{number}/labels/{quote(label, safe='')}")
            except DeliveryError as exc:
                if exc.status_code != 404:  # 404: already gone (a retry, or someone removed it by hand)
                    raise
            removed.append(label)
        code = resp.status_code
        if new not in current:
            code = self._call("POST", f"/repos/{repo}/issues/{number}/labels", json={"labels": [new]}).status_code
        detail = f"severity label {new}" + (f" (removed {', '.join(removed)})" if removed else "")
        return Delivered(external_ref=f"issues/{number}#labels", status_code=code, detail=detail)

    def close(self) -> None:
        self._client.close()
