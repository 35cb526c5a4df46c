"""The runbook's three templates, byte for byte, and per-channel rendering with escaping of untrusted text."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from coffee_scraper.incidents.templates import (
    LinkConfig,
    Mention,
    Snapshot,
    WebhookTemplateError,
    format_duration,
    incident_message,
    markdown_escape,
    reminder_message,
    render_email,
    render_github,
    render_slack,
    render_text,
    render_webhook,
    resolved_message,
    status_update_message,
)

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = ROOT.parent / "shared" / "reference" / "incident-response-runbook.md"
OPENED = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def runbook_template(heading: str) -> str:
    """The fenced block under ``#### heading`` in the runbook."""
    if not RUNBOOK.exists():
        pytest.skip(f"runbook not found at {RUNBOOK} (a clone without ../shared)")
    text = RUNBOOK.read_text(encoding="utf-8")
    match = re.search(re.escape(f"#### {heading}") + r"[^\n]*\n```\n(.*?)\n```", text, re.S)
    assert match, f"runbook has no template under {heading!r}"
    return match.group(1)


def fill(template: str, values: dict[str, str]) -> str:
    out = template
    for placeholder, value in values.items():
        assert placeholder in out, f"placeholder {placeholder} not in the runbook template"
        out = out.replace(placeholder, value)
    assert "[" not in out, f"unfilled placeholder left: {out}"
    return out


SNAP = Snapshot(
    id="INC-20261125-007",
    title="Catalog not updating",
    severity="P1",
    status="working",
    impact="Prices of 12 roasters are stale",
    owner="@alice",
    eta="11:30 UTC",
    actions_taken="Restarted the worker",
    next_steps="Watch the next run",
    root_cause="Expired DB password",
    resolution="Rotated the password",
    prevention="Alert on auth failures",
    opened_at=OPENED,
    resolved_at=OPENED + timedelta(hours=1, minutes=23),
)


def test_incident_template_is_the_runbooks_byte_for_byte() -> None:
    snap = Snapshot(**{**SNAP.as_json(), "status": "investigating", "opened_at": OPENED, "resolved_at": None})
    expected = fill(
        runbook_template("Communication Template"),
        {
            "[Severity]": "P1",
            "[Brief Description]": "Catalog not updating",
            "INC-[YYYYMMDD]-[###]": "INC-20261125-007",
            "[P0/P1/P2/P3]": "P1",
            "[User/System Impact Description]": "Prices of 12 roasters are stale",
            "[@username]": "@alice",
            "[Initial assessment time]": "11:30 UTC",
        },
    )
    assert render_text(incident_message(snap)) == expected
    assert expected.splitlines()[0] == "🚨 INCIDENT: P1 - Catalog not updating"


def test_status_update_template_is_the_runbooks_byte_for_byte() -> None:
    expected = fill(
        runbook_template("Status Update Template"),
        {
            "INC-[YYYYMMDD]-[###]": "INC-20261125-007",
            "[Investigating/Working/Resolved]": "Working",
            "[List of actions taken]": "Restarted the worker",
            "[Planned actions]": "Watch the next run",
            "[Updated resolution time]": "11:30 UTC",
            "[@username]": "@alice",
        },
    )
    assert render_text(status_update_message(SNAP)) == expected


def test_resolved_template_is_the_runbooks_byte_for_byte() -> None:
    expected = fill(
        runbook_template("Resolution Notification"),
        {
            "INC-[YYYYMMDD]-[###]": "INC-20261125-007",
            "[Brief description of cause]": "Expired DB password",
            "[Solution implemented]": "Rotated the password",
            "[Preventive measures taken]": "Alert on auth failures",
            "[Total incident duration]": "1h 23m",
            "[@username]": "@alice",
        },
    )
    assert render_text(resolved_message(SNAP)) == expected


def test_unknown_values_show_tbd_and_unassigned_never_blank() -> None:
    bare = Snapshot(id="INC-20261125-001", title="", severity="P2", status="investigating")
    for msg in (incident_message(bare), status_update_message(bare), resolved_message(bare)):
        text = render_text(msg)
        assert not re.search(r":\s*$", text, re.M), text
        assert "- Owner: unassigned" in text
    assert "- Impact: TBD" in render_text(incident_message(bare))
    assert "- ETA: TBD" in render_text(incident_message(bare))
    assert render_text(incident_message(bare)).startswith("🚨 INCIDENT: P2 - TBD\n")
    assert "- Duration: TBD" in render_text(resolved_message(bare))


def test_notes_mentions_and_links_follow_the_template_after_a_blank_line() -> None:
    links = LinkConfig("https://cs.example/", "http://grafana:3000", None, "https://sentry.io/projects/cs")
    msg = incident_message(
        SNAP,
        notes=("Escalation: Immediate",),
        mentions=(Mention("@alice", "<@U1>"),),
        links=links.for_incident(SNAP.id),
    )
    text = render_text(msg)
    head, tail = text.split("\n\n", 1)
    assert head == render_text(incident_message(SNAP))
    assert tail.splitlines() == [
        "Escalation: Immediate",
        "Notified: @alice",
        "Dashboard: https://cs.example/incidents/INC-20261125-007",
        "Grafana: http://grafana:3000",
        "Sentry: https://sentry.io/projects/cs",
    ]


def test_multiline_values_stay_inside_their_bullet() -> None:
    snap = Snapshot(
        **{**SNAP.as_json(), "opened_at": OPENED, "resolved_at": None, "actions_taken": "restarted\nrolled back"}
    )
    lines = render_text(status_update_message(snap)).splitlines()
    assert lines[2:4] == ["- Actions Taken: restarted", "  rolled back"]


def test_slack_escapes_untrusted_text_but_keeps_mentions_and_links() -> None:
    evil = Snapshot(
        id="INC-20261125-002",
        title="<!channel> db & <http://evil|click>",
        severity="P0",
        status="investigating",
        impact="a > b",
    )
    msg = incident_message(
        evil, mentions=(Mention("@alice", "<@U0ALICE01>"),), links=(("Grafana", "http://g/d?a=1&b=2"),)
    )
    payload = render_slack(msg, "#coffee-scraper-alerts")
    assert payload["channel"] == "#coffee-scraper-alerts"
    text = payload["text"]
    assert "🚨 INCIDENT: P0 - &lt;!channel&gt; db &amp; &lt;http://evil|click&gt;" in text
    assert "- Impact: a &gt; b" in text
    assert "<!channel>" not in text and "<http://evil" not in text
    assert "Notified: <@U0ALICE01>" in text
    assert "<http://g/d?a=1&amp;b=2|Grafana>" in text
    assert payload["blocks"][0] == {"type": "section", "text": {"type": "mrkdwn", "text": text.rsplit("\n", 1)[0]}}
    assert payload["blocks"][1]["type"] == "context"


def test_github_markdown_escapes_mentions_and_markup() -> None:
    evil = Snapshot(
        id="INC-20261125-003",
        title="@everyone [click](http://evil) <img src=x>",
        severity="P2",
        status="investigating",
        owner="@alice",
    )
    title, body = render_github(incident_message(evil, links=(("Grafana", "http://g:3000"),)))
    assert title == "INC-20261125-003 - P2 - @everyone [click](http://evil) <img src=x>"
    assert "\\@everyone \\[click\\]\\(http://evil\\) \\<img src=x\\>" in body
    assert "- Owner: \\@alice" in body
    assert "[Grafana](http://g:3000)" in body
    assert markdown_escape("a_b*c`d") == "a\\_b\\*c\\`d"


def test_email_subject_is_one_line_and_body_is_the_template() -> None:
    snap = Snapshot(
        id="INC-20261125-004", title="disk\r\nBcc: victim@example.com", severity="P1", status="investigating"
    )
    subject, body = render_email(incident_message(snap))
    assert subject == "🚨 INCIDENT: P1 - disk Bcc: victim@example.com"
    assert "\n" not in subject and "\r" not in subject
    assert body == render_text(incident_message(snap)) + "\n"


def test_reminder_names_owner_last_update_and_next_due() -> None:
    snap = Snapshot(**{**SNAP.as_json(), "opened_at": OPENED, "resolved_at": None, "last_update_at": None})
    text = render_text(
        reminder_message(snap, now=OPENED + timedelta(minutes=15), next_due=OPENED + timedelta(minutes=30))
    )
    assert text.splitlines()[:5] == [
        "⏰ Status update due: INC-20261125-007 - Catalog not updating",
        "- Severity: P1",
        "- Owner: @alice",
        "- Last Update: 2026-11-25 10:00 UTC (15m ago)",
        "- Next Update Due: 2026-11-25 10:30 UTC",
    ]


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=40), "40s"),
        (timedelta(minutes=12), "12m"),
        (timedelta(hours=2, minutes=5), "2h 5m"),
        (timedelta(days=1, hours=2, minutes=3), "1d 2h 3m"),
    ],
)
def test_duration_format(delta: timedelta, text: str) -> None:
    assert format_duration(delta) == text


def _context() -> dict[str, object]:
    msg = incident_message(Snapshot(id="INC-1", title='quote " and \\ backslash', severity="P1", status="working"))
    return {
        "event": {"kind": "opened"},
        "incident": {"id": "INC-1", "title": 'quote " and \\ backslash'},
        "message": msg.as_json(),
        "text": render_text(msg),
        "links": [],
    }


def test_webhook_user_template_renders_json_with_escaping(tmp_path: Path) -> None:
    tpl = tmp_path / "hook.j2"
    tpl.write_text(
        '{"summary": {{ incident.title | json }}, "kind": {{ event.kind | tojson }}, "text": {{ text | json }}}'
    )
    body = json.loads(render_webhook(tpl, _context()))
    assert body["summary"] == 'quote " and \\ backslash'
    assert body["kind"] == "opened"
    assert body["text"].startswith("🚨 INCIDENT: P1 - quote")


def test_webhook_default_body_is_json_of_the_context() -> None:
    assert json.loads(render_webhook(None, _context()))["incident"]["id"] == "INC-1"


@pytest.mark.parametrize(
    "source", ["{{ ''.__class__.__mro__[1].__subclasses__() }}", "{{ nope.missing }}", "{% for x in %}"]
)
def test_webhook_template_sandbox_and_errors_name_the_file(tmp_path: Path, source: str) -> None:
    tpl = tmp_path / "bad.j2"
    tpl.write_text(source)
    with pytest.raises(WebhookTemplateError, match=re.escape(str(tpl))):
        render_webhook(tpl, _context())
