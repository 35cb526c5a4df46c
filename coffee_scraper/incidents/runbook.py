"""The operator's runbook rendered from the configuration the system runs with (``coffee-scraper runbook``).

Lives here: ``render_runbook(...)`` → Markdown with the runbook's sections: the classification with the live
thresholds of every rule (``alert_config``), response times and escalation (severity policies, levels), the
communication templates (``templates.py``), contacts from the on-call roster (``oncall.py``), the investigation and
remediation commands (``diagnostics.py``, ``remediation.py``), the post-incident checklists (``followup.py``) and the
drills (``drills.py``). Its severity headings are the anchors the Prometheus rules' ``runbook_url`` point at.
``docs/incident-response-runbook.md`` is ``render_runbook`` of the defaults (``default_inputs()``).
Does not live here: any threshold, template or checklist itself — only their presentation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from coffee_scraper.catalog.db import normalize_url
from coffee_scraper.incidents.alert_config import (
    SEVERITY_HEADINGS,
    AlertConfig,
    AlertRule,
    AlertSettings,
    Severity,
    anchor,
    load_alert_config,
)
from coffee_scraper.incidents.diagnostics import CHECKS, TEMP_PATTERN
from coffee_scraper.incidents.followup import AUTO_CHECKS, CHECKLISTS, RESOLUTION_TARGET
from coffee_scraper.incidents.remediation import ACTIONS, AUTO_POLICIES
from coffee_scraper.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_ROSTER = REPO_ROOT / "oncall.example.toml"
DOC_PATH = Path("docs/incident-response-runbook.md")

# The runbook's words for each classification category (what the category means); thresholds come from the rules.
CATEGORY_TEXT: dict[str, str] = {
    "System Down": "Complete service unavailability",
    "Data Loss": "Any data corruption or loss",
    "Security Breach": "Unauthorized access or data exposure",
    "Database Failure": "Complete database unavailability",
    "High RPC Error Rate": "Error rate across all services",
    "Disk Usage Critical": "Disk usage",
    "Memory Exhaustion": "System out of memory",
    "Service Degradation": "Significant performance impact",
    "Database Connection Issues": "Intermittent connection failures",
    "High Error Rate": "Error rate",
    "Memory Usage High": "Memory usage",
    "Disk Usage Warning": "Disk usage",
    "External Service Failures": "Critical external dependencies down",
    "Performance Issues": "Slow response times",
    "Validation Errors": "High validation failure rate",
    "Monitoring Issues": "Alerting or metrics collection problems",
    "Resource Constraints": "CPU or memory pressure",
    "Data Quality Issues": "Inconsistent or poor data quality",
    "Minor Performance Issues": "Slight degradation",
    "Informational Alerts": "System status updates",
}
HUMAN_ONLY: dict[Severity, tuple[tuple[str, str], ...]] = {
    Severity.P3: (
        ("Documentation Issues", "Missing or outdated documentation"),
        ("Feature Requests", "Non-critical enhancements"),
    ),
}
ROLE_SECTIONS = (
    ("Primary On-Call", "oncall_primary"),
    ("Secondary On-Call", "oncall_secondary"),
    ("Engineering Manager", "engineering_manager"),
)
ESCALATION_CONTACTS = (("CTO", "cto"), ("DevOps Lead", "devops_lead"), ("Database Admin", "db_admin"))


@dataclass
class RunbookInputs:
    settings: Settings
    alert_settings: AlertSettings
    config: AlertConfig
    roster: Any  # oncall.Roster, or None when the file is missing or invalid
    roster_note: str | None = None  # why there is no roster


def _load_roster(path: Path) -> tuple[Any, str | None]:
    try:
        from coffee_scraper.incidents.oncall import RosterError, load_roster
    except ImportError:  # pragma: no cover - the roster module ships with the package
        return None, "the on-call roster module is not installed"
    if not path.exists():
        return None, f"no roster file at {path}: nobody is paged. Copy oncall.example.toml to {path} and fill it in"
    try:
        return load_roster(path), None
    except RosterError as exc:
        return None, f"the roster {path} is invalid, nobody is paged: {exc}"


def live_inputs(settings: Settings, alert_settings: AlertSettings | None = None) -> RunbookInputs:
    """The configuration this machine runs with (environment, .env, the roster file)."""
    alert = alert_settings or AlertSettings()
    roster, note = _load_roster(settings.oncall_file)
    return RunbookInputs(settings, alert, load_alert_config(alert), roster, note)


def default_inputs() -> RunbookInputs:
    """Built-in defaults only (no environment, no .env) and the example roster: the committed document."""
    settings = Settings.model_construct()
    alert = AlertSettings.model_construct()
    roster, note = _load_roster(EXAMPLE_ROSTER)
    if roster is not None:
        roster.source = "oncall.example.toml"
    return RunbookInputs(settings, alert, load_alert_config(alert), roster, note)


# --- formatting ---------------------------------------------------------------------------------------------


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _value(rule: AlertRule, value: float) -> str:
    if rule.unit == "ratio":
        return f"{_num(round(value * 100, 4))}%"
    if rule.unit == "seconds":
        if value >= 86400 and value % 3600 == 0:
            return f"{_num(value / 86400)} days" if value % 86400 == 0 else f"{_num(value / 3600)} h"
        return f"{_num(value)} s"
    return _num(value)


def condition_text(rule: AlertRule) -> str:
    """The live condition of a rule in words: "> 95% for 5m", "between 85% and 95%"."""
    if rule.comparison == "absent":
        return "no data at all"
    if rule.threshold is None:
        return rule.comparison
    hold = "" if rule.for_ in ("0m", "0s") else f" for {rule.for_}"
    if rule.unit == "bool":
        return f"condition holds (window {rule.window}{hold})"
    if rule.comparison == "between" and rule.upper is not None:
        cond = f"{_value(rule, rule.threshold)} – {_value(rule, rule.upper)}"
    else:
        cond = f"{rule.comparison} {_value(rule, rule.threshold)}"
    return f"{cond} (window {rule.window}{hold})"


def summary_text(rule: AlertRule) -> str:
    """The rule's alert summary with its template parts as placeholders ("RPC error rate VALUE across services")."""

    def placeholder(match: re.Match[str]) -> str:
        inner = match.group(1).strip()
        return inner.removeprefix("$labels.").upper() if inner.startswith("$labels.") else "VALUE"

    return re.sub(r"\{\{(.*?)\}\}", placeholder, rule.summary)


def _where(rule: AlertRule) -> str:
    return "watchdog" if rule.watchdog_only else "watchdog + Prometheus"


def _db_command(settings: Settings) -> str:
    url = make_url(normalize_url(settings.database_url))
    if url.get_backend_name() == "sqlite":
        return f'sqlite3 {url.database} "SELECT 1;"'
    host = f"-h {url.host} " if url.host else ""
    port = f"-p {url.port} " if url.port else ""
    user = f"-U {url.username} " if url.username else ""
    return f'psql {host}{port}{user}-d {url.database} -c "SELECT 1;"'


def _db_port(settings: Settings) -> str | None:
    url = make_url(normalize_url(settings.database_url))
    return None if url.get_backend_name() == "sqlite" else str(url.port or 5432)


def _link(value: str | None, fallback: str, setting: str) -> str:
    return value if value else f"{fallback} (not configured: set {setting})"


def _person_lines(person: Any) -> list[str]:
    return [
        f"- **Name**: {person.name}",
        f"- **Phone**: {person.phone or 'not in the roster'}",
        f"- **Slack**: {person.slack or 'not in the roster'}",
        f"- **Email**: {person.email or 'not in the roster'}",
    ]


def _templates() -> list[str]:
    """The three message templates as the system renders them (``templates.py``), with placeholders."""
    try:
        from coffee_scraper.incidents.templates import (
            Snapshot,
            incident_message,
            render_text,
            resolved_message,
            status_update_message,
        )
    except ImportError:  # pragma: no cover
        return ["(templates.py is not installed)"]
    snap = Snapshot(
        id="INC-[YYYYMMDD]-[###]", title="[Brief Description]", severity="[P0/P1/P2/P3]", status="investigating",
        impact="[User/System Impact Description]", owner="[@username]", eta="[Initial assessment time]",
        actions_taken="[List of actions taken]", next_steps="[Planned actions]", root_cause="[Brief description of "
        "cause]", resolution="[Solution implemented]", prevention="[Preventive measures taken]",
    )  # fmt: skip

    def patched(msg: Any, **values: str) -> str:
        fields = tuple((label, values.get(label, value)) for label, value in msg.fields)
        return str(render_text(replace(msg, fields=fields)))

    incident = patched(incident_message(snap)).replace("🚨 INCIDENT: [P0/P1/P2/P3]", "🚨 INCIDENT: [Severity]")
    update = patched(
        status_update_message(snap), **{"Current Status": "[Investigating/Working/Resolved]", "ETA": "[Updated "
                                        "resolution time]"}
    )  # fmt: skip
    resolved = patched(resolved_message(snap), Duration="[Total incident duration]")
    return [
        "#### Communication Template",
        "```",
        incident,
        "```",
        "",
        "#### Status Update Template",
        "```",
        update,
        "```",
        "",
        "#### Resolution Notification",
        "```",
        resolved,
        "```",
    ]


# --- the document -------------------------------------------------------------------------------------------


def render_runbook(inputs: RunbookInputs, *, generated_by: str = "coffee-scraper runbook") -> str:
    cfg = inputs.config
    out: list[str] = [
        "# Incident Response Runbook",
        "",
        f"Generated by `{generated_by}` from the configuration the system runs with (alert rules and thresholds "
        "in `coffee_scraper/incidents/alert_config.py` and `COFFEE_SCRAPER_ALERT_*`, settings, the on-call roster, "
        "the message templates, the checklists). Do not edit by hand: change the configuration and render it again.",
        "",
        "This runbook provides the procedures for handling incidents in the coffee scraper system: classification, "
        "escalation, communication and recovery. The system detects (built-in watchdog and Prometheus rules), "
        "classifies, notifies and escalates by itself; the commands below are what people do.",
        "",
        "## Incident Classification",
        "",
    ]
    for sev in Severity:
        policy = cfg.severities[sev]
        out += [f"### {SEVERITY_HEADINGS[sev]}", ""]
        rules = [r for r in cfg.rules if r.severity == sev]
        categories: list[str] = []
        for r in rules:
            if r.category not in categories:
                categories.append(r.category)
        for category in categories:
            out.append(f"- **{category}**: {CATEGORY_TEXT.get(category, category)}")
            for r in (r for r in rules if r.category == category):
                out.append(f"  - `{r.id}` ({_where(r)}): {condition_text(r)} — {summary_text(r)}")
        for name, text in HUMAN_ONLY.get(sev, ()):
            out.append(f"- **{name}**: {text} (declared by a person: `coffee-scraper incidents declare`)")
        roles = ", ".join(policy.notify_roles) if getattr(policy, "notify_roles", ()) else "-"
        out += [
            "",
            f"**Response Time**: {policy.response_text} (deadline: opened + "
            f"{int(policy.response_time.total_seconds() // 60)} min; a miss is recorded as a breach)",
            f"**Escalation**: {policy.escalation} (notified at once: {roles})",
            "",
        ]
    out += _procedures(inputs)
    out += _escalation(inputs)
    out += _contacts(inputs)
    out += _post_incident()
    out += _tools(inputs)
    out += _training(inputs)
    out += _thresholds(inputs)
    return "\n".join(out).rstrip("\n") + "\n"


def _procedures(inputs: RunbookInputs) -> list[str]:
    s = inputs.settings
    channel = getattr(s, "slack_channel", "#coffee-scraper-alerts")
    repo = getattr(s, "github_repo", None)
    port = _db_port(s)
    checks = ", ".join(CHECKS)
    out = [
        "## Incident Response Procedures",
        "",
        "### 1. Initial Response (0-15 minutes)",
        "",
        "#### Immediate Actions",
        f"1. **Acknowledge the incident** in Slack channel `{channel}` and in the system: "
        "`coffee-scraper incidents ack INC-ID`",
        "2. **Assess severity** using the classification above; change it with a reason: "
        "`coffee-scraper incidents severity INC-ID P1 --reason ...`",
        "3. **Create incident ticket** in GitHub Issues with label `incident`: "
        + (f"opened automatically in `{repo}`" if repo else "automatic once COFFEE_SCRAPER_GITHUB_REPO is set"),
        "4. **Notify stakeholders** based on severity level: automatic (see Escalation Procedures)",
        "5. **Begin investigation**: `coffee-scraper diagnose --incident INC-ID` (also runs by itself when an "
        "incident opens; the result is on the incident's timeline)",
        "",
    ]
    out += _templates()
    out += [
        "",
        "### 2. Investigation Phase (15-60 minutes)",
        "",
        "#### Critical/High Severity Investigation",
        f"1. **Run the diagnostics**: `coffee-scraper diagnose` (`--json` for scripts) checks {checks}. Each check "
        f"has a {s.diagnostics_timeout_s:g} s limit; one that fails or hangs never stops the others.",
        "2. **The same by hand**:",
        "   ```bash",
        "   # Check service status",
        f"   systemctl status {s.systemd_unit}",
        "",
        "   # Check database connectivity",
        f"   {_db_command(s)}",
        "",
        "   # Check system resources",
        "   htop",
        "   df -h",
        "   free -h",
        "   ps aux --sort=-%mem | head -10",
        "   ```",
        f"3. **Review monitoring dashboards**: Grafana {_link(getattr(s, 'grafana_url', None), 'http://localhost:3000', 'COFFEE_SCRAPER_GRAFANA_URL')}, "  # noqa: E501
        f"Prometheus {_link(getattr(s, 'prometheus_url', None), 'http://localhost:9090', 'COFFEE_SCRAPER_PROMETHEUS_URL')}, "  # noqa: E501
        f"Sentry {_link(getattr(s, 'sentry_url', None), 'https://sentry.io/projects/[project]', 'COFFEE_SCRAPER_SENTRY_URL')}",  # noqa: E501
        f"4. **Check logs for errors**: `tail -f {s.log_dir}/*.log` (JSON lines; app, fetcher, scheduler, incidents); "
        f"`journalctl -u {s.systemd_unit} -f`; database: `sudo journalctl -u postgresql -f`",
        "5. **Verify external dependencies**: the diagnostics' `roasters` check probes each affected shop and "
        "`notifications` probes Slack, GitHub and SMTP without sending anything; `coffee-scraper roasters list` shows "
        "circuit states.",
        "",
        "#### Medium/Low Severity Investigation",
        "1. **Review metrics and alerts**: `coffee-scraper watchdog status`, `coffee-scraper incidents show INC-ID`",
        "2. **Check recent deployments**: the diagnostics' `deployments` check lists start-ups with their git "
        "revision and settings fingerprint, and which settings changed",
        "3. **Analyze error patterns**: the diagnostics' `logs` check shows the newest ERROR lines per component",
        "4. **Document findings**: `coffee-scraper incidents update INC-ID --actions ... --next ...`",
        "",
        "### 3. Resolution Phase (30 minutes - 4 hours)",
        "",
        "#### Immediate Resolution Actions",
        "Every action is audited (who, what, result) and, with `--incident INC-ID`, put on the incident's timeline. "
        "`--dry-run` shows what would happen; actions that remove or restart something ask before a real run "
        "(`--yes` skips the question). None of them ever deletes catalog data.",
        "",
        "| action | what it does |",
        "|---|---|",
    ]
    for a in ACTIONS.values():
        usage = f"`coffee-scraper remediate {a.name}{' ' + a.target if a.target else ''}`"
        if a.channel:
            usage += f" or `coffee-scraper remediate {a.name} --channel NAME`"
        out.append(f"| {usage} | {a.description}{' Asks first.' if a.destructive else ''} |")
    out += [
        "",
        "Automatic remediation (only what the settings switch on):",
        "",
    ]
    for p in AUTO_POLICIES:
        state = "on" if getattr(s, p.switch, False) else "off"
        out.append(f"- `{p.action}` when {p.why.split(':')[0]} — `COFFEE_SCRAPER_{p.switch.upper()}` is **{state}**")
    out += [
        "",
        "#### Service Restart Procedures",
        "```bash",
        "# Restart application services (or: coffee-scraper remediate restart-service)",
        f"sudo systemctl restart {s.systemd_unit}",
        "",
        "# Restart database if needed",
        "sudo systemctl restart postgresql",
        "",
        "# Restart monitoring services",
        "sudo systemctl restart prometheus",
        "sudo systemctl restart grafana-server",
        "```",
        "",
        "#### Database Recovery Procedures",
        "```bash",
        "# Check database status",
        "sudo systemctl status postgresql",
        "",
        "# Check database logs",
        "sudo journalctl -u postgresql -f",
        "",
        "# Test database connectivity",
        _db_command(s),
        "",
        "# Check connection pool (or: coffee-scraper diagnose --check database)",
        f"netstat -an | grep :{port}" if port else "# (SQLite: no server port; the database is a file)",
        "",
        "# Reset the app's connection pools once the database is back",
        "coffee-scraper remediate reconnect-db",
        "```",
        "",
        "#### Resource Management",
        "```bash",
        "# Check disk usage (or: coffee-scraper diagnose --check disk --check largest_files)",
        "df -h",
        "du -sh /*",
        "",
        "# Find large files",
        "find / -type f -size +100M 2>/dev/null",
        "",
        f"# Clean up temporary files ({TEMP_PATTERN} in the temp dir; keeps entries younger than "
        f"{s.temp_min_age_s:g} s or in use)",
        "coffee-scraper remediate clean-temp --dry-run",
        "",
        f"# Old logs: gzip rotated logs older than {s.log_compress_after_days:g} day(s), delete archives older "
        f"than {s.log_retention_days:g} days",
        "coffee-scraper remediate rotate-logs --dry-run",
        "",
        f"# Raw pages older than {s.artifact_retention_days:g} days (each roaster's latest run is kept)",
        "coffee-scraper remediate prune-artifacts --dry-run",
        "",
        "# Check memory usage",
        "free -h",
        "ps aux --sort=-%mem | head -10",
        "```",
        "",
        "### 4. Communication and Updates",
        "",
    ]
    interval = getattr(s, "reminder_interval_s", 900.0)
    out += [
        f"Status updates are due every {interval / 60:g} minutes for P0/P1; the owner is reminded when one is "
        "late: `coffee-scraper incidents update INC-ID --status working --actions ... --next ... --eta ...`. "
        "The newest diagnostics summary is added to the next status update. Resolve with the resolution notice "
        "fields: `coffee-scraper incidents resolve INC-ID --root-cause ... --resolution ... --prevention ...`.",
        "",
    ]
    return out


def _escalation(inputs: RunbookInputs) -> list[str]:
    out = ["## Escalation Procedures", ""]
    for lvl in inputs.config.escalation_levels:
        start = int(lvl.starts_after.total_seconds() // 60)
        if lvl.ends_after is not None:
            span = f"{start}-{int(lvl.ends_after.total_seconds() // 60)} minutes"
        elif lvl.starts_after >= timedelta(hours=2):
            span = f"{_num(lvl.starts_after.total_seconds() / 3600)}+ hours"
        else:
            span = f"{start}+ minutes"
        roles = ", ".join(getattr(lvl, "roles", ())) or "-"
        out += [
            f"### Level {lvl.level}: {lvl.role} ({span})",
            f"- **Responsibilities**: {lvl.responsibilities}",
            f"- **Notified**: roster role(s) {roles}, automatically "
            + (
                "when the incident opens"
                if start == 0
                else f"when the incident is still unresolved {start} minutes "
                "after it opened (P3 does not escalate by time)"
            ),
        ]
        if lvl.escalate_when:
            out.append(f"- **Escalation**: if {lvl.escalate_when}")
        out.append("")
    return out


def _contacts(inputs: RunbookInputs) -> list[str]:
    out = ["## Emergency Contacts", ""]
    roster = inputs.roster
    if roster is None:
        return [*out, inputs.roster_note or "No on-call roster.", ""]
    out += [f"From the on-call roster `{roster.source}` (`coffee-scraper oncall show` tells who is on call now).", ""]
    from datetime import UTC, datetime

    at = datetime(2026, 1, 5, 12, tzinfo=UTC)  # fixed: the document must not change with the clock
    for title, role in ROLE_SECTIONS:
        person = roster.who(role, at) if role not in roster.rotations else None
        out.append(f"### {title}")
        if role in roster.rotations:
            rotation = roster.rotations[role]
            out.append(f"- **Rotation**: {', '.join(rotation.people)} (weekly hand-off; see `oncall show`)")
        elif person is None:
            out.append("- not assigned in the roster")
        else:
            out += _person_lines(person)
        out.append("")
    out.append("### Escalation Contacts")
    for title, role in ESCALATION_CONTACTS:
        person = roster.who(role, at)
        out.append(f"- **{title}**: " + (f"{person.name} - {person.phone or 'no phone'}" if person else "not assigned"))
    out.append("")
    return out


def _post_incident() -> list[str]:
    out = [
        "## Post-Incident Procedures",
        "",
        "When an incident resolves, the system creates these checklists as tracked items with owners and due "
        "times, reminds owners of overdue items, and checks off what it can verify itself (marked *auto*). "
        "See them with `coffee-scraper incidents show INC-ID`; check one off with "
        "`coffee-scraper incidents check INC-ID PHASE.N`.",
        "",
    ]
    for spec in CHECKLISTS:
        out += [f"### {spec.heading}"]
        for item in spec.items:
            auto = f" *(auto: {AUTO_CHECKS[item.auto_check]})*" if item.auto_check else ""
            owner = f" (owner: {item.owner_role})" if item.owner_role else ""
            out.append(f"- [ ] {item.text}{owner}{auto}")
        out.append("")
    out += [
        "### Postmortem",
        "A blameless postmortem is required automatically for: P0/P1 incidents, any data loss, incidents detected "
        "by a human rather than the system, resolution slower than "
        f"{_num(RESOLUTION_TARGET.total_seconds() / 3600)} hours (the end of the resolution phase), and a missed "
        "response time. `coffee-scraper incidents postmortem INC-ID` drafts it from the record (summary, impact "
        "with numbers, timeline, root cause, trigger, detection, resolution, action items, lessons learned); "
        "`--open-issues` opens GitHub issues for its action items.",
        "",
    ]
    return out


def _tools(inputs: RunbookInputs) -> list[str]:
    s = inputs.settings
    return [
        "## Tools and Resources",
        "",
        "### Monitoring Dashboards",
        f"- **Grafana**: {_link(getattr(s, 'grafana_url', None), 'http://localhost:3000', 'COFFEE_SCRAPER_GRAFANA_URL')}",  # noqa: E501
        f"- **Prometheus**: {_link(getattr(s, 'prometheus_url', None), 'http://localhost:9090', 'COFFEE_SCRAPER_PROMETHEUS_URL')}",  # noqa: E501
        f"- **Sentry**: {_link(getattr(s, 'sentry_url', None), 'https://sentry.io/projects/[project]', 'COFFEE_SCRAPER_SENTRY_URL')}",  # noqa: E501
        f"- **Dashboard**: {_link(getattr(s, 'dashboard_url', None), s.diagnostics_service_url, 'COFFEE_SCRAPER_DASHBOARD_URL')}",  # noqa: E501
        "",
        "### Log Locations",
        f"- **Application Logs**: `{s.log_dir}/` (app.log, fetcher.log, scheduler.log, incidents.log)",
        "- **System Logs**: `/var/log/syslog`",
        "- **Database Logs**: `/var/log/postgresql/`",
        "",
        "### Configuration Files",
        "- **Alert Config**: `coffee_scraper/incidents/alert_config.py` (thresholds: `COFFEE_SCRAPER_ALERT_*`)",
        "- **Environment**: `.env` (every setting: `docs/settings.md`, `coffee-scraper settings`)",
        f"- **On-call roster**: `{getattr(s, 'oncall_file', 'oncall.toml')}`",
        "- **Docker Compose**: `deploy/docker-compose.yml`",
        "",
        "### Useful Commands",
        "```bash",
        "# Check system status",
        f"systemctl status {s.systemd_unit}",
        "coffee-scraper diagnose",
        "",
        "# View logs",
        f"journalctl -u {s.systemd_unit} -f",
        "",
        "# Check database",
        _db_command(s),
        "",
        "# Check metrics",
        f"curl {s.diagnostics_service_url}/metrics",
        "",
        "# Incidents",
        "coffee-scraper incidents list --open",
        "coffee-scraper incidents show INC-ID",
        "coffee-scraper report --days 7",
        "",
        "# Restart services",
        f"sudo systemctl restart {s.systemd_unit}",
        "```",
        "",
    ]


def _training(inputs: RunbookInputs) -> list[str]:
    out = [
        "## Training and Preparation",
        "",
        "### Drills",
        "`coffee-scraper drill SCENARIO` injects a real, reversible fault into the running system, marked as a "
        "drill everywhere (incident, messages); it never pages real people unless `--page` is given. It checks that "
        "detection, classification, notification, escalation and recovery happen within the runbook's times and "
        "prints and records a scorecard. `--fast` sets the scenario rules' `for` to zero and their rate windows to "
        "seconds (a quick check, e.g. in CI); without it the drill takes as long as the real rules need. `--local` "
        "runs it in the command's own process instead of in `serve`.",
        "",
        "The roaster drills expect External Service Failures, which needs more than "
        f"{inputs.alert_settings.external_open_circuit_ratio:.0%} of the active shops with an open circuit: with "
        "many shops the scorecard shows that one failing shop is handled by its circuit breaker, not by an incident.",
        "",
    ]
    try:
        from coffee_scraper.incidents.drills import SCENARIOS
    except ImportError:
        out.append("(drills are not installed)")
    else:
        out += ["| scenario | fault injected | expected |", "|---|---|---|"]
        for sc in SCENARIOS.values():
            out.append(f"| `{sc.name}` | {sc.fault} | {sc.expected} |")
    out += [
        "",
        "### New Team Members",
        "- [ ] Review this runbook",
        "- [ ] Practice incident response procedures (`coffee-scraper drill db-outage`)",
        "- [ ] Test escalation procedures",
        "- [ ] Familiarize with tools and systems",
        "- [ ] Participate in incident simulations",
        "",
        "### Regular Training",
        "- [ ] Monthly runbook review",
        "- [ ] Quarterly incident simulation (a drill per scenario)",
        "- [ ] Annual emergency procedures test",
        "- [ ] Continuous improvement of procedures",
        "",
        "### Knowledge Sharing",
        "- [ ] Document lessons learned",
        "- [ ] Share incident experiences",
        "- [ ] Update procedures based on experience",
        "- [ ] Train new team members",
        "",
    ]
    return out


def _thresholds(inputs: RunbookInputs) -> list[str]:
    out = [
        "## Appendix: every rule",
        "",
        "| rule | severity | category | condition | evaluated by |",
        "|---|---|---|---|---|",
    ]
    for r in inputs.config.rules:
        out.append(f"| `{r.id}` | {r.severity.value} | {r.category} | {condition_text(r)} | {_where(r)} |")
    out.append("")
    return out


def anchors(markdown: str) -> set[str]:
    """Anchors of every heading in a rendered document (GitHub style, as ``alert_config.anchor``)."""
    return {anchor(line.lstrip("#").strip()) for line in markdown.splitlines() if line.startswith("#")}
