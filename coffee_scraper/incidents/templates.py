"""The runbook's three communication templates (🚨 INCIDENT, 📊 Status Update, ✅ RESOLVED) and their rendering.

Lives here: ``Snapshot`` (the incident values a message shows, taken when the event happened), ``Message`` (one
template filled from a snapshot, plus notes, mentions and configured links) and one renderer per channel:
plain text (the runbook's exact form; e-mail body), Slack mrkdwn/blocks, GitHub markdown, and the user's
sandboxed Jinja2 template for the generic webhook. Untrusted text (alert annotations, shop data, people's
input) is escaped per channel; unknown values show as "TBD" (owner: "unassigned"), never blank.
Does not live here: which message goes to whom (``reactions.py``), sending (``notify/``).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

TBD = "TBD"
UNASSIGNED = "unassigned"
SLACK_SECTION_LIMIT = 3000  # Slack: a section block's text is at most 3000 characters
GITHUB_TITLE_LIMIT = 256
EMAIL_SUBJECT_LIMIT = 200

# The runbook's templates: headline and field labels, in the runbook's order (section "Communication Template",
# "Status Update Template", "Resolution Notification").
INCIDENT_FIELDS = ("Incident ID", "Severity", "Impact", "Status", "Owner", "ETA")
STATUS_UPDATE_FIELDS = ("Current Status", "Actions Taken", "Next Steps", "ETA", "Owner")
RESOLVED_FIELDS = ("Root Cause", "Resolution", "Prevention", "Duration", "Owner")
REMINDER_FIELDS = ("Severity", "Owner", "Last Update", "Next Update Due")

TEMPLATES = ("incident", "status_update", "resolved", "reminder")


@dataclass(frozen=True)
class Snapshot:
    """The incident as a message shows it (strings already chosen; None = unknown)."""

    id: str
    title: str
    severity: str
    status: str  # investigating | working | resolved
    impact: str | None = None
    owner: str | None = None  # display handle, e.g. "@alice"
    eta: str | None = None
    actions_taken: str | None = None
    next_steps: str | None = None
    root_cause: str | None = None
    resolution: str | None = None
    prevention: str | None = None
    opened_at: datetime | None = None
    resolved_at: datetime | None = None
    last_update_at: datetime | None = None
    escalation_level: int = 1
    is_drill: bool = False

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        for k, v in data.items():
            if isinstance(v, datetime):
                data[k] = v.isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Snapshot:
        values = dict(data)
        for k in ("opened_at", "resolved_at", "last_update_at"):
            if values.get(k):
                values[k] = datetime.fromisoformat(values[k])
        return cls(**values)


@dataclass(frozen=True)
class Mention:
    """A person named in a message: ``slack`` pings in Slack (``<@U…>`` or ``@handle``), ``handle`` elsewhere."""

    handle: str
    slack: str
    email: str | None = None


@dataclass(frozen=True)
class Message:
    template: str  # one of TEMPLATES
    incident_id: str
    headline: str
    fields: tuple[tuple[str, str], ...]
    notes: tuple[str, ...] = ()  # extra context lines after the template (untrusted: escaped per channel)
    mentions: tuple[Mention, ...] = ()
    links: tuple[tuple[str, str], ...] = ()  # (label, url) from configuration (trusted)

    def as_json(self) -> dict[str, Any]:
        return {
            "template": self.template,
            "incident_id": self.incident_id,
            "headline": self.headline,
            "fields": [list(f) for f in self.fields],
            "notes": list(self.notes),
            "mentions": [asdict(m) for m in self.mentions],
            "links": [list(link) for link in self.links],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Message:
        return cls(
            template=data["template"],
            incident_id=data["incident_id"],
            headline=data["headline"],
            fields=tuple((str(a), str(b)) for a, b in data["fields"]),
            notes=tuple(data.get("notes", ())),
            mentions=tuple(Mention(**m) for m in data.get("mentions", ())),
            links=tuple((str(a), str(b)) for a, b in data.get("links", ())),
        )


@dataclass(frozen=True)
class LinkConfig:
    dashboard_url: str | None = None
    grafana_url: str | None = None
    prometheus_url: str | None = None
    sentry_url: str | None = None
    extra: tuple[tuple[str, str], ...] = field(default=())

    def for_incident(self, incident_id: str) -> tuple[tuple[str, str], ...]:
        links: list[tuple[str, str]] = []
        if self.dashboard_url:
            links.append(("Dashboard", f"{self.dashboard_url.rstrip('/')}/incidents/{incident_id}"))
        for label, url in (
            ("Grafana", self.grafana_url),
            ("Prometheus", self.prometheus_url),
            ("Sentry", self.sentry_url),
        ):
            if url:
                links.append((label, url))
        return (*links, *self.extra)


# --- filling the templates --------------------------------------------------------------------------------


def one_line(value: str | None) -> str:
    """Collapse whitespace (titles, subjects): never a line break inside a headline or header."""
    return re.sub(r"\s+", " ", value or "").strip()


def shown(value: str | None, default: str = TBD) -> str:
    """A field value as shown: stripped, ``default`` when unknown or blank."""
    text = (value or "").strip()
    return text if text else default


def status_label(status: str) -> str:
    """'investigating' → 'Investigating' (the runbook's Investigating/Working/Resolved)."""
    return status.strip().capitalize() if status else TBD


def format_duration(delta: timedelta) -> str:
    """'1d 2h 5m', '2h 5m', '12m', '40s' (never negative)."""
    seconds = max(0, int(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def _utc(dt: datetime | None) -> str:
    return dt.strftime("%Y-%m-%d %H:%M UTC") if dt else TBD


def incident_message(s: Snapshot, **extra: Any) -> Message:
    """🚨 INCIDENT: [Severity] - [Brief Description] with the runbook's six fields."""
    values = (s.id, s.severity, shown(s.impact), status_label(s.status), shown(s.owner, UNASSIGNED), shown(s.eta))
    return Message(
        "incident",
        s.id,
        f"🚨 INCIDENT: {s.severity} - {shown(one_line(s.title))}",
        tuple(zip(INCIDENT_FIELDS, values, strict=True)),
        **extra,
    )


def status_update_message(s: Snapshot, **extra: Any) -> Message:
    """📊 Status Update: INC-… with Current Status / Actions Taken / Next Steps / ETA / Owner."""
    values = (
        status_label(s.status),
        shown(s.actions_taken),
        shown(s.next_steps),
        shown(s.eta),
        shown(s.owner, UNASSIGNED),
    )
    return Message(
        "status_update",
        s.id,
        f"📊 Status Update: {s.id}",
        tuple(zip(STATUS_UPDATE_FIELDS, values, strict=True)),
        **extra,
    )


def resolved_message(s: Snapshot, **extra: Any) -> Message:
    """✅ RESOLVED: INC-… with Root Cause / Resolution / Prevention / Duration / Owner."""
    duration = format_duration(s.resolved_at - s.opened_at) if s.resolved_at and s.opened_at else TBD
    values = (shown(s.root_cause), shown(s.resolution), shown(s.prevention), duration, shown(s.owner, UNASSIGNED))
    return Message("resolved", s.id, f"✅ RESOLVED: {s.id}", tuple(zip(RESOLVED_FIELDS, values, strict=True)), **extra)


def reminder_message(s: Snapshot, *, now: datetime, next_due: datetime | None, **extra: Any) -> Message:
    """⏰ a status update is due (not a runbook template: the nudge that keeps its 15-minute cadence)."""
    last = s.last_update_at or s.opened_at
    ago = f" ({format_duration(now - last)} ago)" if last else ""
    values = (s.severity, shown(s.owner, UNASSIGNED), f"{_utc(last)}{ago}", _utc(next_due))
    notes = (
        f"Post a 📊 Status Update: coffee-scraper incidents update {s.id} --status … --actions … --next … --eta …",
        *extra.pop("notes", ()),
    )
    return Message(
        "reminder",
        s.id,
        f"⏰ Status update due: {s.id} - {shown(one_line(s.title))}",
        tuple(zip(REMINDER_FIELDS, values, strict=True)),
        notes=notes,
        **extra,
    )


# --- channel renderers ---------------------------------------------------------------------------------------


def _indent(value: str) -> str:
    """Multi-line values stay inside their bullet: continuation lines are indented by two spaces."""
    return "\n  ".join(line.rstrip() for line in value.strip().splitlines()) if "\n" in value else value


def render_text(msg: Message) -> str:
    """Plain text: the runbook's template byte for byte, then notes, mentions and links after a blank line."""
    lines = [msg.headline, *(f"- {label}: {_indent(value)}" for label, value in msg.fields)]
    tail = list(msg.notes)
    if msg.mentions:
        tail.append("Notified: " + ", ".join(m.handle for m in msg.mentions))
    tail += [f"{label}: {url}" for label, url in msg.links]
    if tail:
        lines += ["", *tail]
    return "\n".join(lines)


def slack_escape(text: str) -> str:
    """Slack's required escaping of control characters in text: & < > (mentions and links are built after)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_url(url: str) -> str:
    return url.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")


def render_slack(msg: Message, channel: str | None = None) -> dict[str, Any]:
    """Slack incoming-webhook payload: ``text`` (notification fallback) plus mrkdwn ``blocks``."""
    lines = [
        slack_escape(msg.headline),
        *(f"- {slack_escape(label)}: {slack_escape(_indent(value))}" for label, value in msg.fields),
    ]
    tail = [slack_escape(n) for n in msg.notes]
    if msg.mentions:
        tail.append("Notified: " + ", ".join(m.slack for m in msg.mentions))
    body = "\n".join(lines + (["", *tail] if tail else []))
    links = " · ".join(f"<{_slack_url(url)}|{slack_escape(label)}>" for label, url in msg.links)
    text = body + (f"\n{links}" if links else "")
    section = body if len(body) <= SLACK_SECTION_LIMIT else body[: SLACK_SECTION_LIMIT - 1] + "…"
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": section}}]
    if links:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": links}]})
    payload: dict[str, Any] = {"text": text, "blocks": blocks}
    if channel:
        payload["channel"] = channel
    return payload


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~@<>])")


def markdown_escape(text: str) -> str:
    """GitHub markdown: backslash-escape markup (also ``@`` so nobody is mentioned by alert text) and ``&``."""
    return _MD_SPECIAL.sub(r"\\\1", text.replace("&", "&amp;"))


def render_github(msg: Message) -> tuple[str, str]:
    """(issue title, markdown body). Title: ``INC-… - P0 - description`` (plain text, GitHub escapes it)."""
    severity = dict(msg.fields).get("Severity", "")
    brief = msg.headline.split(" - ", 1)[1] if msg.template == "incident" and " - " in msg.headline else ""
    title = one_line(" - ".join(p for p in (msg.incident_id, severity, brief) if p))[:GITHUB_TITLE_LIMIT]
    lines = [
        markdown_escape(msg.headline),
        *(f"- {markdown_escape(label)}: {markdown_escape(_indent(value))}" for label, value in msg.fields),
    ]
    tail = [markdown_escape(n) for n in msg.notes]
    if msg.mentions:
        tail.append("Notified: " + ", ".join(markdown_escape(m.handle) for m in msg.mentions))
    tail += [f"[{markdown_escape(label)}]({url.replace(')', '%29').replace(' ', '%20')})" for label, url in msg.links]
    return title, "\n".join(lines + (["", *tail] if tail else []))


def render_email(msg: Message) -> tuple[str, str]:
    """(subject, text/plain body): the subject is the template's headline on one line."""
    subject = one_line(msg.headline)
    if len(subject) > EMAIL_SUBJECT_LIMIT:
        subject = subject[: EMAIL_SUBJECT_LIMIT - 1] + "…"
    return subject, render_text(msg) + "\n"


# --- generic webhook (user template) --------------------------------------------------------------------------


class WebhookTemplateError(ValueError):
    """The user's webhook template cannot be read or rendered; the message names the file and the problem."""


_ENV = ImmutableSandboxedEnvironment(autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True)
_ENV.filters["json"] = lambda value: json.dumps(value, ensure_ascii=False, default=str)


def default_webhook_body(context: dict[str, Any]) -> str:
    """The built-in webhook body: JSON with the event, the incident snapshot, the message and its text."""
    return json.dumps(context, ensure_ascii=False, sort_keys=True, default=str)


def render_webhook(template_path: Path | None, context: dict[str, Any]) -> str:
    """The webhook body: the user's template (sandboxed Jinja2, ``StrictUndefined``) or the built-in JSON.

    Context: ``event`` (kind, at, actor, message, data), ``incident`` (the snapshot), ``message`` (the template
    as structured data or null), ``text`` (the rendered runbook text or ""), ``links``. Use ``|json`` (or
    Jinja2's ``|tojson``) to embed values in a JSON body: that is the escaping for this channel.
    """
    if template_path is None:
        return default_webhook_body(context)
    try:
        source = Path(template_path).read_text(encoding="utf-8")
    except OSError as exc:
        raise WebhookTemplateError(f"COFFEE_SCRAPER_WEBHOOK_TEMPLATE={template_path}: cannot read: {exc}") from exc
    try:
        return _ENV.from_string(source).render(**context)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        where = f"{template_path}:{line}" if line else str(template_path)
        raise WebhookTemplateError(f"{where}: webhook template error: {type(exc).__name__}: {exc}") from exc
