"""Pydantic request and response models of the incidents REST API (they make the OpenAPI schema complete).

Lives here: bodies of declare/ack/update/resolve/reopen/severity/comment, silences and maintenance windows, and
the shapes of incidents, timeline entries, alerts, stats and receiver answers. Every text input is cleaned (no
NUL bytes or lone surrogates reach the database). Alert payload models are in ``receivers.py``.
Does not live here: routes (``views.py``), the dict forms themselves (``service.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from coffee_scraper.incidents.receivers import clean_text

Clean = Annotated[str, AfterValidator(clean_text)]
SeverityName = Literal["P0", "P1", "P2", "P3"]


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


When = Annotated[datetime, AfterValidator(_aware)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")

    actor: Clean | None = Field(
        None, max_length=200, description="Who does it (a person key or @handle); default: the token's user."
    )


class DeclareIn(_In):
    title: Clean = Field(min_length=1, max_length=1024, description="Brief description of the incident.")
    severity: SeverityName
    impact: Clean | None = Field(None, max_length=10000, description="User/system impact.")
    owner: Clean | None = Field(None, max_length=200, description="Person key or @handle.")
    component: Clean | None = Field(None, max_length=200)
    is_drill: bool = Field(False, description="A drill: marked everywhere, left out of MTTA/MTTR.")


class AckIn(_In):
    message: Clean | None = Field(None, max_length=2000)


class UpdateIn(_In):
    status: Literal["investigating", "working"] | None = None
    actions_taken: Clean | None = Field(None, max_length=10000)
    next_steps: Clean | None = Field(None, max_length=10000)
    eta: Clean | None = Field(None, max_length=500, description="Updated resolution time, free text.")
    owner: Clean | None = Field(None, max_length=200)
    impact: Clean | None = Field(None, max_length=10000)


class ResolveIn(_In):
    root_cause: Clean = Field(min_length=1, max_length=10000)
    resolution: Clean = Field(min_length=1, max_length=10000)
    prevention: Clean = Field(min_length=1, max_length=10000)


class ReopenIn(_In):
    reason: Clean = Field(min_length=1, max_length=2000)


class SeverityIn(_In):
    severity: SeverityName
    reason: Clean = Field(min_length=1, max_length=2000)


class CommentIn(_In):
    text: Clean = Field(min_length=1, max_length=10000)


class MatcherIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Clean = Field(min_length=1, max_length=200, description="Label name, e.g. alertname.")
    value: Clean = Field(max_length=1000)
    is_regex: bool = False
    is_equal: bool = True


class _Window(BaseModel):
    model_config = ConfigDict(extra="forbid")

    starts_at: When | None = Field(None, description="Default: now.")
    ends_at: When | None = Field(None, description="Give ends_at or duration_s.")
    duration_s: float | None = Field(None, gt=0, le=366 * 24 * 3600, description="Length from starts_at.")
    created_by: Clean = Field(min_length=1, max_length=200)
    comment: Clean = Field(min_length=1, max_length=2000)


class SilenceIn(_Window):
    matchers: list[MatcherIn] = Field(min_length=1, max_length=50)


class MaintenanceIn(_Window):
    components: list[Annotated[Clean, Field(max_length=200)]] = Field(
        default_factory=list, max_length=100, description="Empty = every component."
    )


# --- responses -----------------------------------------------------------------------------------------------


class IncidentOut(BaseModel):
    id: str = Field(description="INC-YYYYMMDD-###")
    title: str
    severity: SeverityName
    status: Literal["investigating", "working", "resolved"]
    resolve_pending: bool
    resolve_pending_since: datetime | None
    source: str
    is_drill: bool
    category: str | None
    rule: str | None
    component: str | None
    impact: str | None
    owner: str | None
    eta: str | None
    actions_taken: str | None
    next_steps: str | None
    root_cause: str | None
    resolution: str | None
    prevention: str | None
    opened_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    working_at: datetime | None
    resolved_at: datetime | None
    last_status_update_at: datetime | None
    response_due_at: datetime
    response_breached_at: datetime | None
    escalation_level: int
    next_escalation_at: datetime | None
    next_reminder_at: datetime | None
    severity_reason: str | None
    version: int
    alerts_firing: int
    alerts_resolved: int


class EventOut(BaseModel):
    id: int
    at: datetime
    kind: str
    actor: str | None
    message: str
    data: dict[str, Any]


class AlertOut(BaseModel):
    id: int
    source: str
    fingerprint: str
    incident_id: str | None
    status: Literal["firing", "resolved"]
    severity: SeverityName
    alertname: str | None
    title: str
    description: str | None
    labels: dict[str, Any]
    annotations: dict[str, Any]
    links: list[Any]
    starts_at: datetime | None
    ends_at: datetime | None
    first_received_at: datetime
    last_received_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    receive_count: int
    flap_count: int
    silenced_by: str | None


class ChecklistItemOut(BaseModel):
    """One post-incident checklist item (the runbook's four checklists) or postmortem action item."""

    id: int
    item: str = Field(description="PHASE.N, e.g. immediate.1 (phases: immediate, documentation, postmortem, "
                      "followup, action).")  # fmt: skip
    phase: str
    text: str
    owner: str | None
    due_at: datetime
    done_at: datetime | None
    done_by: str | None
    auto_check: str | None = Field(description="How the system checks it off by itself, if it does.")
    type: str | None = Field(description="Action items: mitigate, prevent, process or other.")
    ticket_url: str | None
    note: str | None
    overdue: bool


class IncidentDetailOut(IncidentOut):
    timeline: list[EventOut]
    alerts: list[AlertOut]
    checklist: list[ChecklistItemOut] = Field(
        default_factory=list, description="Post-incident checklists; created when the incident resolves."
    )


class IncidentListOut(BaseModel):
    count: int
    incidents: list[IncidentOut]


class SilenceOut(BaseModel):
    id: int
    matchers: list[dict[str, Any]]
    matchers_text: str
    starts_at: datetime
    ends_at: datetime
    state: Literal["pending", "active", "expired"]
    created_by: str
    comment: str
    created_at: datetime


class MaintenanceOut(BaseModel):
    id: int
    starts_at: datetime
    ends_at: datetime
    state: Literal["pending", "active", "expired"]
    components: list[str]
    comment: str
    created_by: str


class ReceiverOut(BaseModel):
    status: Literal["success"]
    received: int = Field(description="Alerts in the body.")
    results: dict[str, int] = Field(description="How many alerts had each outcome (opened, duplicate, ...).")
    incidents: list[str] = Field(description="IDs of the incidents the alerts belong to.")
    truncated_alerts: int = 0


class PagerDutyOut(BaseModel):
    status: Literal["success"]
    message: str
    dedup_key: str | None = None


class PagerDutyErrorOut(BaseModel):
    status: str = Field(description='"invalid event" (400) or "throttle event" (429).')
    message: str
    errors: list[str] = Field(default_factory=list)


class ProblemOut(BaseModel):
    detail: str
    problems: list[str] = Field(default_factory=list)


class StatsOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    incidents: int
    open: int
    acknowledged: int
    resolved: int
    response_breaches: int
    mtta_s: dict[str, float | int | None]
    mttr_s: dict[str, float | int | None]
    start_point: str
    by_severity: dict[str, Any]
