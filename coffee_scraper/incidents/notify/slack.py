"""Slack: POST the rendered message (``text`` + ``blocks``) to an incoming webhook.

Slack answers 200 ``ok``; 400 ``invalid_payload``/``no_text``, 403 ``action_prohibited``, 404 ``no_service`` /
``channel_not_found`` and 410 ``channel_is_archived`` are permanent; 429 (with Retry-After) and 5xx are retried.
The webhook URL is a secret: it never appears in errors or logs. Rendering is in ``incidents/templates.py``.
"""

from __future__ import annotations

import httpx

from coffee_scraper.incidents.notify.base import (
    Delivered,
    DeliveryError,
    Outgoing,
    RefLookup,
    http_error,
    transport_error,
)


class SlackSender:
    channel = "slack"

    def __init__(self, webhook_url: str, *, timeout_s: float = 10.0, user_agent: str = "coffee-scraper") -> None:
        self._url = webhook_url
        self._client = httpx.Client(timeout=timeout_s, headers={"User-Agent": user_agent})

    def send(self, msg: Outgoing, lookup: RefLookup) -> Delivered:
        try:
            resp = self._client.post(self._url, json=msg.payload)
        except httpx.HTTPError as exc:
            err = transport_error(exc, "slack webhook")
            raise DeliveryError(str(err).replace(self._url, "<webhook url>")) from None
        if resp.status_code == 200:
            return Delivered(status_code=200, detail=resp.text[:50])
        raise http_error(resp, "slack webhook")

    def close(self) -> None:
        self._client.close()
