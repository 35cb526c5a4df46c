"""Generic outbound webhook: POST every lifecycle event to a URL, the body rendered from the user's template.

The outbox row holds the event context (taken when the event happened); the body is rendered at delivery with
the sandboxed Jinja2 template from ``COFFEE_SCRAPER_WEBHOOK_TEMPLATE`` (or the built-in JSON), so a broken template
dead-letters the message with the template's error instead of breaking the incident's transaction.
Headers: ``X-Coffee-Scraper-Event`` (event kind), ``X-Coffee-Scraper-Delivery`` and ``Idempotency-Key`` (the
outbox row id: stable across retries), ``X-Coffee-Scraper-Signature: sha256=HEX`` (HMAC-SHA256 of the body with
``COFFEE_SCRAPER_WEBHOOK_SECRET``, when set). 2xx is success; 408/425/429/5xx retry; other 4xx are permanent.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import httpx

from coffee_scraper.incidents.notify.base import (
    Delivered,
    DeliveryError,
    Outgoing,
    RefLookup,
    http_error,
    transport_error,
)
from coffee_scraper.incidents.templates import WebhookTemplateError, render_webhook

SIGNATURE_HEADER = "X-Coffee-Scraper-Signature"


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookSender:
    channel = "webhook"

    def __init__(
        self,
        url: str,
        *,
        template: Path | None = None,
        secret: str | None = None,
        content_type: str = "application/json",
        timeout_s: float = 10.0,
        user_agent: str = "coffee-scraper",
    ) -> None:
        self.url, self.template, self._secret, self.content_type = url, template, secret, content_type
        self._client = httpx.Client(timeout=timeout_s, headers={"User-Agent": user_agent})

    def body(self, msg: Outgoing) -> bytes:
        try:
            return render_webhook(self.template, msg.payload).encode("utf-8")
        except WebhookTemplateError as exc:
            raise DeliveryError(str(exc), permanent=True) from None

    def send(self, msg: Outgoing, lookup: RefLookup) -> Delivered:
        body = self.body(msg)
        headers = {
            "Content-Type": self.content_type,
            "X-Coffee-Scraper-Event": str(msg.payload.get("event", {}).get("kind", msg.kind)),
            "X-Coffee-Scraper-Delivery": str(msg.id),
            "Idempotency-Key": f"coffee-scraper-outbox-{msg.id}",
        }
        if self._secret:
            headers[SIGNATURE_HEADER] = signature(self._secret, body)
        try:
            resp = self._client.post(msg.target, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise transport_error(exc, "webhook") from None
        if 200 <= resp.status_code < 300:
            return Delivered(status_code=resp.status_code)
        raise http_error(resp, "webhook")

    def close(self) -> None:
        self._client.close()
