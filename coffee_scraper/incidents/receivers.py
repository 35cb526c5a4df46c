"""Pure parsing of inbound alert payloads into one internal ``AlertEvent`` (no I/O, no database).

Lives here: the three payload shapes of ``reference/alert-payloads.md`` — Prometheus posting to ``/api/v2/alerts``
(a JSON array), the Alertmanager webhook (version 4) and PagerDuty Events API v2 (plus legacy v1 and change
events) — as pydantic models (also the OpenAPI request schemas), their validation into a list of readable
problems (the 400 answers), the severity mapping to the runbook's P0–P3, text/raw size caps and sanitising
(no NUL bytes, lone surrogates or NaN reach the database), and ``watchdog_event`` for the built-in watchdog.
Does not live here: HTTP (``incidents/views.py``), what an event does to alerts and incidents (``flows.py``).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SourceKind = Literal["alertmanager", "prometheus", "pagerduty_v2", "pagerduty_change", "watchdog"]
Action = Literal["trigger", "resolve", "acknowledge"]

# source_kind -> IncidentAlert.source / Incident.source
SOURCE_OF_KIND: dict[str, str] = {
    "alertmanager": "alertmanager",
    "prometheus": "prometheus",
    "pagerduty_v2": "pagerduty",
    "pagerduty_change": "pagerduty",
    "watchdog": "watchdog",
}
SEVERITY_WORDS: dict[str, str] = {
    "error": "P1",
    "err": "P1",
    "high": "P1",
    "warning": "P2",
    "warn": "P2",
    "medium": "P2",
    "info": "P3",
    "informational": "P3",
    "low": "P3",
}
PD_SEVERITIES = ("critical", "error", "warning", "info")
PD_ACTIONS = ("trigger", "acknowledge", "resolve")
MAX_NAME_CHARS = 200  # alertname / rule / component columns
MAX_PD_SUMMARY = 1024
MAX_PD_DEDUP_KEY = 255
PD_ROUTING_KEY_LEN = 32
FINGERPRINT_RE = re.compile(r"^[0-9a-fA-F]{1,64}$")
ZERO_TIME_YEAR = 1  # Alertmanager's "0001-01-01T00:00:00Z" = no end time


@dataclass(frozen=True)
class Limits:
    """Storage caps applied while parsing (from settings ``incident_text_max_chars`` / ``incident_raw_max_bytes``)."""

    text_max_chars: int = 4000
    raw_max_bytes: int = 16 * 1024
    resolve_timeout: timedelta = timedelta(minutes=5)  # Prometheus alert without endsAt


@dataclass(frozen=True)
class AlertEvent:
    """One alert observation from any source, normalised (``alert-payloads.md``, "Suggested internal alert event").

    ``dedup_key`` is the alert's identity within its source (stored as ``IncidentAlert.fingerprint``);
    ``started_at`` tells activations of the same identity apart; ``reply_key`` is what the sender gets back
    (PagerDuty's own ``dedup_key``).
    """

    source_kind: str
    dedup_key: str
    action: str
    severity: str
    title: str
    labels: dict[str, str]
    received_at: datetime
    description: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    links: list[dict[str, str]] = field(default_factory=list)
    started_at: datetime | None = None
    ends_at: datetime | None = None
    route_key: str | None = None
    group_key: str | None = None
    source_ref: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)  # as received; cleaned and capped when stored (cap_raw)
    reply_key: str | None = None
    severity_original: str | None = None

    @property
    def source(self) -> str:
        return SOURCE_OF_KIND[self.source_kind]

    @property
    def alertname(self) -> str | None:
        return self.labels.get("alertname") or None


@dataclass
class Parsed:
    """The outcome of parsing one request body: events, or the problems that make it a 400."""

    events: list[AlertEvent] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    truncated_alerts: int = 0
    change_events: list[dict[str, Any]] = field(default_factory=list)  # PagerDuty change events (timeline markers)

    @property
    def ok(self) -> bool:
        return not self.problems


# --- request models (validation + OpenAPI schemas) ------------------------------------------------------


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class PrometheusAlertIn(_In):
    """One alert of the array Prometheus posts to an Alertmanager's ``POST /api/v2/alerts``."""

    labels: dict[str, str] = Field(description="Identity of the alert; must contain alertname.")
    annotations: dict[str, str] = Field(default_factory=dict, description="summary, description, runbook_url, ...")
    startsAt: datetime | None = Field(None, description="When the alert became active (RFC 3339).")
    endsAt: datetime | None = Field(
        None, description="In the future while firing (expiry); in the past once resolved (RFC 3339)."
    )
    generatorURL: str | None = Field(None, description="Link to the rule expression in Prometheus.")


class AlertmanagerAlertIn(_In):
    """One item of an Alertmanager webhook's ``alerts`` (firing and resolved are mixed)."""

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(description="Identity of the alert; must contain alertname.")
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime | None = None
    endsAt: datetime | None = Field(None, description="0001-01-01T00:00:00Z while firing.")
    generatorURL: str | None = None
    fingerprint: str | None = Field(None, description="16 hex digits, a hash of the label set.")


class AlertmanagerWebhookIn(_In):
    """The Alertmanager webhook body (version 4); Grafana's variant is accepted too (unknown fields ignored)."""

    version: str | None = Field(None, description='Always "4" from Alertmanager.')
    groupKey: str | None = None
    truncatedAlerts: int = Field(0, ge=0, description="Alerts left out because of the receiver's max_alerts.")
    status: str | None = Field(None, description="firing/resolved of the whole group; never used to resolve.")
    receiver: str | None = None
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str | None = None
    alerts: list[AlertmanagerAlertIn]


class PagerDutyPayloadIn(_In):
    summary: str | None = Field(None, description="Required for trigger; up to 1024 characters.")
    source: str | None = Field(None, description="Required for trigger: the affected system.")
    severity: str | None = Field(None, description="Required for trigger: critical, error, warning or info.")
    timestamp: datetime | None = None
    component: str | None = None
    group: str | None = None
    class_: str | None = Field(None, alias="class")
    custom_details: Any = None


class PagerDutyLinkIn(_In):
    href: str
    text: str | None = None


class PagerDutyImageIn(_In):
    src: str
    href: str | None = None
    alt: str | None = None


class PagerDutyEventIn(_In):
    """PagerDuty Events API v2 event (``/v2/enqueue``); legacy v1 bodies (service_key, event_type) are accepted."""

    routing_key: str = Field(description="32-character integration key (stored only as a hash).")
    event_action: str = Field(description="trigger, acknowledge or resolve.")
    dedup_key: str | None = Field(None, description="Up to 255 characters; generated for a trigger without one.")
    payload: PagerDutyPayloadIn | None = None
    images: list[PagerDutyImageIn] = Field(default_factory=list)
    links: list[PagerDutyLinkIn] = Field(default_factory=list)
    client: str | None = None
    client_url: str | None = None


class PagerDutyChangePayloadIn(_In):
    summary: str
    source: str | None = None
    timestamp: datetime | None = None
    custom_details: Any = None


class PagerDutyChangeEventIn(_In):
    """PagerDuty change event (``/v2/change/enqueue``): a deploy/change marker, never an alert."""

    routing_key: str
    payload: PagerDutyChangePayloadIn
    links: list[PagerDutyLinkIn] = Field(default_factory=list)


# --- sanitising and small helpers -------------------------------------------------------------------------


def clean_text(value: str, max_chars: int | None = None) -> str:
    """Drop NUL bytes, replace lone surrogates (neither can be stored), cut to ``max_chars``."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    if max_chars is not None and len(value) > max_chars:
        value = value[: max_chars - 1] + "…"
    return value


def clean_json(value: Any, depth: int = 0) -> Any:
    """A JSON value safe for both databases' JSON columns (clean strings, finite numbers, bounded depth)."""
    if depth > 50:
        return "…"
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {clean_text(str(k)): clean_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v, depth + 1) for v in value]
    return clean_text(str(value))


def cap_raw(raw: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """``raw`` as stored: cleaned, and cut (kept as text with a marker) when its JSON exceeds ``max_bytes``."""
    cleaned = clean_json(raw)
    text = json.dumps(cleaned, ensure_ascii=False, separators=(",", ":"))
    if len(text.encode("utf-8")) <= max_bytes:
        return dict(cleaned)
    return {"truncated": True, "bytes": len(text.encode("utf-8")), "head": text[: max(0, max_bytes - 100)]}


def labels_hash(labels: Mapping[str, str]) -> str:
    """sha256 of the sorted label set: the identity of a Prometheus-direct alert (stable across posts)."""
    canonical = "\x1f".join(f"{k}\x1e{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(canonical.encode("utf-8", "replace")).hexdigest()


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()


def _utc(value: datetime | None, what: str, problems: list[str]) -> datetime | None:
    """An aware UTC datetime; naive values are taken as UTC; the zero time means "none"."""
    if value is None:
        return None
    if value.year <= ZERO_TIME_YEAR and value.month == 1 and value.day == 1:
        return None
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (OverflowError, ValueError):
        problems.append(f"{what}: timestamp out of range")
        return None


def _loc(loc: tuple[int | str, ...], prefix: str = "") -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def validation_problems(exc: ValidationError, prefix: str = "") -> list[str]:
    """Readable problems from a pydantic error: ``alerts[0].labels: Input should be a valid dictionary``."""
    problems = []
    for err in exc.errors(include_url=False):
        problems.append(f"{_loc(tuple(err['loc']), prefix)}: {err['msg']}")
    return problems


def decode_json(body: bytes) -> tuple[Any, list[str]]:
    """Parse a request body as strict JSON (no NaN/Infinity); returns (value, problems)."""

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    if not body.strip():
        return None, ["body is empty; send a JSON document"]
    try:
        return json.loads(body, parse_constant=no_constants), []
    except RecursionError:
        return None, ["body is nested too deeply"]
    except (ValueError, UnicodeDecodeError) as exc:
        return None, [f"body is not valid JSON: {exc}"]


@lru_cache(maxsize=1)
def _rules() -> dict[str, tuple[str, str]]:
    """alertname -> (severity, category) of every rule in incidents/alert_config.py."""
    from coffee_scraper.incidents.alert_config import load_alert_config

    return {r.id: (r.severity.value, r.category) for r in load_alert_config().rules}


def rule_category(alertname: str | None) -> str | None:
    return _rules().get(alertname or "", (None, None))[1]


def map_severity(value: str | None, alertname: str | None = None) -> str:
    """The runbook's P0–P3 for a sender's severity (``alert-payloads.md``, "Severity mapping").

    ``P0``–``P3`` are kept; ``critical`` is P0 or P1 by rule (a known rule's own P0/P1, P1 for its lower rules,
    P0 for an unknown alert: when unsure, assume the higher severity); ``error`` P1, ``warning`` P2, ``info`` P3.
    A missing or unknown value takes the known rule's severity, else P1 (PagerDuty treats events without
    severity as high urgency).
    """
    rule_sev = _rules().get(alertname or "", (None, None))[0]
    text = (value or "").strip()
    upper = text.upper()
    if upper in ("P0", "P1", "P2", "P3"):
        return upper
    lower = text.lower()
    if lower == "critical":
        if rule_sev is None:
            return "P0"
        return rule_sev if rule_sev in ("P0", "P1") else "P1"
    if lower in SEVERITY_WORDS:
        return SEVERITY_WORDS[lower]
    return rule_sev or "P1"


def _clean_map(values: Mapping[str, str], limits: Limits) -> dict[str, str]:
    return {clean_text(k, MAX_NAME_CHARS): clean_text(v, limits.text_max_chars) for k, v in values.items()}


def _links(*pairs: tuple[str | None, str]) -> list[dict[str, str]]:
    return [{"href": clean_text(href, 2000), "text": text} for href, text in pairs if href]


def _check_alertname(labels: Mapping[str, str], where: str, problems: list[str]) -> None:
    name = labels.get("alertname")
    if not name or not name.strip():
        problems.append(f"{where}.labels.alertname: required (every alert needs an alertname label)")
    elif len(name) > MAX_NAME_CHARS:
        problems.append(f"{where}.labels.alertname: longer than {MAX_NAME_CHARS} characters")


# --- (b) Prometheus posting to /api/v2/alerts --------------------------------------------------------------


def parse_prometheus(
    body: Any, *, received_at: datetime, source_ref: str | None = None, limits: Limits | None = None
) -> Parsed:
    """The JSON array Prometheus posts; status comes from ``endsAt`` (future: firing, past: resolved)."""
    limits = limits or Limits()
    if not isinstance(body, list):
        return Parsed(problems=["body must be a JSON array of alerts (Prometheus' POST /api/v2/alerts)"])
    problems: list[str] = []
    items: list[PrometheusAlertIn] = []
    for i, item in enumerate(body):
        try:
            items.append(PrometheusAlertIn.model_validate(item))
        except ValidationError as exc:
            problems.extend(validation_problems(exc, f"[{i}]"))
            continue
        _check_alertname(items[-1].labels, f"[{i}]", problems)
    if problems:
        return Parsed(problems=problems)
    events = []
    for i, (alert, original) in enumerate(zip(items, body, strict=True)):
        labels = _clean_map(alert.labels, limits)
        annotations = _clean_map(alert.annotations, limits)
        started = _utc(alert.startsAt, f"[{i}].startsAt", problems)
        ends = _utc(alert.endsAt, f"[{i}].endsAt", problems)
        if ends is None:
            ends = received_at + limits.resolve_timeout
        action = "resolve" if ends <= received_at else "trigger"
        alertname = labels["alertname"]
        events.append(
            AlertEvent(
                source_kind="prometheus",
                dedup_key=labels_hash(labels),
                action=action,
                severity=map_severity(labels.get("severity"), alertname),
                severity_original=labels.get("severity"),
                title=clean_text(annotations.get("summary") or alertname, limits.text_max_chars),
                description=annotations.get("description"),
                labels=labels,
                annotations=annotations,
                links=_links((alert.generatorURL, "Prometheus"), (annotations.get("runbook_url"), "Runbook")),
                started_at=started,
                ends_at=ends,
                received_at=received_at,
                source_ref=clean_text(source_ref, 500) if source_ref else None,
                raw=original,
            )
        )
    if problems:
        return Parsed(problems=problems)
    return Parsed(events=events)


# --- (a) Alertmanager webhook v4 ---------------------------------------------------------------------------


def parse_alertmanager(
    body: Any, *, received_at: datetime, route_key: str | None = None, limits: Limits | None = None
) -> Parsed:
    """An Alertmanager webhook body; every item on its own (never the top-level status)."""
    limits = limits or Limits()
    if not isinstance(body, dict):
        return Parsed(problems=["body must be a JSON object (the Alertmanager webhook, version 4)"])
    try:
        hook = AlertmanagerWebhookIn.model_validate(body)
    except ValidationError as exc:
        return Parsed(problems=validation_problems(exc))
    problems: list[str] = []
    for i, item in enumerate(hook.alerts):
        _check_alertname(item.labels, f"alerts[{i}]", problems)
    if problems:
        return Parsed(problems=problems)
    envelope = {k: v for k, v in body.items() if k != "alerts"}
    originals = body["alerts"]
    events = []
    for i, item in enumerate(hook.alerts):
        labels = _clean_map(item.labels, limits)
        annotations = _clean_map(item.annotations, limits)
        alertname = labels["alertname"]
        fingerprint = item.fingerprint if item.fingerprint and FINGERPRINT_RE.match(item.fingerprint) else None
        started = _utc(item.startsAt, f"alerts[{i}].startsAt", problems)
        ends = _utc(item.endsAt, f"alerts[{i}].endsAt", problems)
        firing = item.status == "firing"
        events.append(
            AlertEvent(
                source_kind="alertmanager",
                dedup_key=(fingerprint or labels_hash(labels)).lower(),
                action="trigger" if firing else "resolve",
                severity=map_severity(labels.get("severity"), alertname),
                severity_original=labels.get("severity"),
                title=clean_text(annotations.get("summary") or alertname, limits.text_max_chars),
                description=annotations.get("description"),
                labels=labels,
                annotations=annotations,
                links=_links(
                    (item.generatorURL, "Prometheus"),
                    (annotations.get("runbook_url"), "Runbook"),
                    (hook.externalURL, "Alertmanager"),
                ),
                started_at=started,
                ends_at=None if firing else ends,  # a firing item's end is Alertmanager's business
                received_at=received_at,
                route_key=clean_text(route_key or hook.receiver or "", 200) or None,
                group_key=clean_text(hook.groupKey, 500) if hook.groupKey else None,
                source_ref=clean_text(" ".join(x for x in (hook.receiver, hook.externalURL) if x), 500) or None,
                raw={"alert": originals[i], "group": envelope},
            )
        )
    if problems:
        return Parsed(problems=problems)
    return Parsed(events=events, truncated_alerts=hook.truncatedAlerts)


# --- (c) PagerDuty Events API v2 ---------------------------------------------------------------------------


def _pd_problems(exc: ValidationError) -> list[str]:
    return [f"'{_loc(tuple(e['loc']))}' {e['msg'][0].lower() + e['msg'][1:]}" for e in exc.errors(include_url=False)]


def _from_v1(body: dict[str, Any]) -> dict[str, Any]:
    """A legacy Events API v1 body as a v2 one (``incident_key`` becomes ``dedup_key``)."""
    details = body.get("details")
    converted: dict[str, Any] = {
        "routing_key": body.get("service_key"),
        "event_action": body.get("event_type"),
        "client": body.get("client"),
        "client_url": body.get("client_url"),
    }
    if body.get("incident_key") is not None:
        converted["dedup_key"] = body.get("incident_key")
    if body.get("event_type") == "trigger":
        converted["payload"] = {
            "summary": body.get("description"),
            "source": body.get("client") or "pagerduty-v1",
            "severity": "error",
            "custom_details": details,
        }
    return converted


def _is_scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str | int | bool)


def _render_details(details: Any, max_chars: int) -> str | None:
    if details is None:
        return None
    if isinstance(details, str):
        return clean_text(details, max_chars)
    return clean_text(json.dumps(clean_json(details), ensure_ascii=False, indent=2, sort_keys=True), max_chars)


def parse_pagerduty(
    body: Any,
    *,
    received_at: datetime,
    limits: Limits | None = None,
    new_key: Callable[[], str] = lambda: uuid.uuid4().hex,
) -> Parsed:
    """A PagerDuty Events API v2 event (or legacy v1); problems are phrased for PagerDuty's 400 ``errors``."""
    limits = limits or Limits()
    if not isinstance(body, dict):
        return Parsed(problems=["Event object must be a JSON object"])
    if "routing_key" not in body and "service_key" in body:
        body = _from_v1(body)
    try:
        event = PagerDutyEventIn.model_validate(body)
    except ValidationError as exc:
        return Parsed(problems=_pd_problems(exc))
    problems: list[str] = []
    if event.dedup_key == "" and event.event_action == "trigger":
        event.dedup_key = None  # an empty key is no key: one is generated
    if len(event.routing_key) != PD_ROUTING_KEY_LEN:
        problems.append(f"Length of 'routing_key' is incorrect (should be {PD_ROUTING_KEY_LEN} characters)")
    if event.event_action not in PD_ACTIONS:
        problems.append("'event_action' is invalid (must be one of trigger, acknowledge, resolve)")
    if event.dedup_key is not None and not (1 <= len(event.dedup_key) <= MAX_PD_DEDUP_KEY):
        problems.append(f"'dedup_key' must be 1 to {MAX_PD_DEDUP_KEY} characters")
    if event.event_action in ("acknowledge", "resolve") and not event.dedup_key:
        problems.append(f"'dedup_key' is required for event_action {event.event_action}")
    payload = event.payload
    if event.event_action == "trigger":
        if payload is None:
            problems.append("'payload' is missing (required for trigger)")
        else:
            if not payload.summary or not payload.summary.strip():
                problems.append("'payload.summary' is missing or blank")
            elif len(payload.summary) > MAX_PD_SUMMARY:
                problems.append(f"'payload.summary' is longer than {MAX_PD_SUMMARY} characters")
            if not payload.source or not payload.source.strip():
                problems.append("'payload.source' is missing or blank")
            if payload.severity not in PD_SEVERITIES:
                problems.append("'payload.severity' is invalid (must be one of critical, error, warning, info)")
    for i, image in enumerate(event.images):
        if not image.src.startswith("https://"):
            problems.append(f"'images[{i}].src' must be an https URL")
    ts = _utc(payload.timestamp if payload else None, "'payload.timestamp'", problems)
    if problems:
        return Parsed(problems=problems)

    route_key = sha256_hex(event.routing_key)
    dedup_key = clean_text(event.dedup_key) if event.dedup_key else new_key()
    raw = {k: v for k, v in body.items() if k not in ("routing_key", "service_key")}
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    title = ""
    description = None
    severity_original = None
    if payload is not None:
        details = payload.custom_details
        if isinstance(details, dict):
            for key, value in list(details.items())[:50]:
                if _is_scalar(value):
                    labels[clean_text(str(key), MAX_NAME_CHARS)] = clean_text(str(value), limits.text_max_chars)
        for key, value in (
            ("source", payload.source),
            ("component", payload.component),
            ("group", payload.group),
            ("class", payload.class_),
        ):
            if value:
                labels[key] = clean_text(value, MAX_NAME_CHARS)
        if payload.class_:
            labels["alertname"] = clean_text(payload.class_, MAX_NAME_CHARS)
        title = clean_text(payload.summary or "", MAX_PD_SUMMARY)
        description = _render_details(details, limits.text_max_chars)
        severity_original = payload.severity
        if payload.summary:
            annotations["summary"] = title
    links = _links(*((link.href, clean_text(link.text or "link", 200)) for link in event.links))
    links += _links(*((image.href or image.src, clean_text(image.alt or "image", 200)) for image in event.images))
    links += _links((event.client_url, clean_text(event.client or "client", 200)))
    return Parsed(
        events=[
            AlertEvent(
                source_kind="pagerduty_v2",
                dedup_key=sha256_hex(f"{route_key}\n{dedup_key}"),
                action=event.event_action,
                severity=map_severity(severity_original, labels.get("alertname")) if payload else "P1",
                severity_original=severity_original,
                title=title or f"PagerDuty {event.event_action} {dedup_key}",
                description=description,
                labels=labels,
                annotations=annotations,
                links=links,
                started_at=ts or received_at,
                ends_at=None,
                received_at=received_at,
                route_key=route_key,
                source_ref=clean_text(" ".join(x for x in (event.client, event.client_url) if x), 500) or None,
                raw={**raw, "dedup_key": dedup_key},
                reply_key=dedup_key,
            )
        ]
    )


def parse_pagerduty_change(body: Any, *, received_at: datetime, limits: Limits | None = None) -> Parsed:
    """A PagerDuty change event: validated and returned as a timeline marker (no alert, no dedup)."""
    limits = limits or Limits()
    if not isinstance(body, dict):
        return Parsed(problems=["Event object must be a JSON object"])
    try:
        change = PagerDutyChangeEventIn.model_validate(body)
    except ValidationError as exc:
        return Parsed(problems=_pd_problems(exc))
    problems = []
    if len(change.routing_key) != PD_ROUTING_KEY_LEN:
        problems.append(f"Length of 'routing_key' is incorrect (should be {PD_ROUTING_KEY_LEN} characters)")
    if not change.payload.summary.strip() or len(change.payload.summary) > MAX_PD_SUMMARY:
        problems.append(f"'payload.summary' must be 1 to {MAX_PD_SUMMARY} characters")
    ts = _utc(change.payload.timestamp, "'payload.timestamp'", problems)
    if problems:
        return Parsed(problems=problems)
    marker = {
        "summary": clean_text(change.payload.summary, MAX_PD_SUMMARY),
        "source": clean_text(change.payload.source, 200) if change.payload.source else None,
        "timestamp": (ts or received_at).isoformat(),
        "details": _render_details(change.payload.custom_details, limits.text_max_chars),
        "links": _links(*((link.href, clean_text(link.text or "link", 200)) for link in change.links)),
    }
    return Parsed(change_events=[marker])


# --- the built-in watchdog ----------------------------------------------------------------------------------


def watchdog_event(
    rule_id: str,
    *,
    firing: bool,
    at: datetime,
    labels: Mapping[str, str] | None = None,
    value: float | None = None,
    started_at: datetime | None = None,
    ends_at: datetime | None = None,
) -> AlertEvent:
    """An ``AlertEvent`` for one rule of ``alert_config`` evaluated by the watchdog (identity: rule + labels)."""
    from coffee_scraper.incidents.alert_config import load_alert_config
    from coffee_scraper.incidents.prometheus_rules import expand

    rule = load_alert_config().rule(rule_id)
    all_labels = {
        **{str(k): str(v) for k, v in (labels or {}).items()},
        "alertname": rule.id,
        "severity": rule.severity.value,
        "category": rule.category,
    }
    try:
        title = expand(rule.summary, all_labels, value)
        description = expand(rule.description, all_labels, value)
    except (ValueError, KeyError):
        title, description = rule.category, rule.description
    return AlertEvent(
        source_kind="watchdog",
        dedup_key=labels_hash(all_labels),
        action="trigger" if firing else "resolve",
        severity=rule.severity.value,
        severity_original=rule.severity.value,
        title=title,
        description=description,
        labels=all_labels,
        annotations={"summary": title, "description": description, "runbook_url": rule.runbook_url},
        links=_links((rule.runbook_url, "Runbook")),
        started_at=started_at or at,
        ends_at=ends_at,
        received_at=at,
        source_ref="watchdog",
        raw={"rule": rule.id, "value": value if value is None or math.isfinite(value) else None},
    )
