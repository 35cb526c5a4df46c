"""AlertNotificationFailures (P2 "Monitoring Issues") from real failed deliveries: incidents open, the incident
runner tries to post them to Slack at an address where nothing listens, every delivery fails, the watchdog sees
the failure share of the notifications metric over 30 minutes and raises the alert.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from coffee_scraper.catalog import db
from coffee_scraper.incidents import flows
from coffee_scraper.incidents.runner import IncidentRunner
from coffee_scraper.incidents.store import incident_store_settings
from coffee_scraper.incidents.watchdog import Firing, Pending
from tests.incidents.watchdog_support import Clock, incidents_of, make_watchdog, watchdog_settings
from tests.support import free_port


def test_failing_slack_deliveries_fire_alert_notification_failures_p2(tmp_path: Path) -> None:
    catalog = f"sqlite:///{tmp_path / 'catalog.db'}"
    db.upgrade(catalog)
    dead_slack = f"http://127.0.0.1:{free_port()}/services/T000/B000/XXXX"  # the channel is down
    settings = watchdog_settings(catalog, tmp_path, slack_webhook_url=SecretStr(dead_slack))
    clock = Clock()
    watchdog = make_watchdog(settings, clock, only=("AlertNotificationFailures",))
    store = incident_store_settings(settings)
    engine = db.make_engine(store.database_url)
    factory = db.session_factory(engine)
    runner = IncidentRunner(store, factory, now=clock, heartbeat=False)
    try:
        watchdog.run_once()  # baseline
        with flows.write_lock(engine), db.session_scope(factory) as session:
            for i in range(3):
                flows.declare(session, title=f"Catalog stale {i}", severity="P1", actor="@oncall", now=clock())
        evaluations = []
        for _ in range(12):  # every minute: the runner retries what is due, the watchdog evaluates
            clock.advance(seconds=60)
            runner.run_once()
            evaluations.append(watchdog.run_once())
    finally:
        watchdog.close()
        engine.dispose()
    first = evaluations[0].verdict("AlertNotificationFailures")
    assert isinstance(first, Pending) and first.value == 1.0, first  # every delivery so far failed
    fired = evaluations[-1].verdict("AlertNotificationFailures")
    assert isinstance(fired, Firing), fired
    assert "notifications failed" in fired.detail
    opened = incidents_of(settings, "AlertNotificationFailures")
    assert opened and {i.severity for i in opened} == {"P2"}
