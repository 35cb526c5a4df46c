"""The incident store: which database holds incidents, alerts, the timeline, the outbox and the recovery tables.

Lives here: ``incidents_url(settings)`` (``incidents_database_url``, else the catalog's ``database_url``),
``incident_store_settings(settings)`` (the settings as seen by code that only knows ``database_url``),
``incident_engine``/``incident_factory`` (a new engine/session factory on the store; the caller owns and disposes
it) and ``is_separate``. Every incident entry point (CLI, REST, watchdog, incident runner, recovery loop, drills,
dashboard) finds the store through these, so all of them read and write the same database.
Does not live here: the tables (``models.py``, ``notify/models.py``, ``ops_models.py``), migrations
(``catalog/db.upgrade``), any query.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from coffee_scraper.catalog import db
from coffee_scraper.settings import Settings


def incidents_url(settings: Settings) -> str:
    """Where incidents are recorded: ``incidents_database_url``, or the catalog database when unset."""
    return getattr(settings, "incidents_database_url", None) or settings.database_url


def is_separate(settings: Settings) -> bool:
    """True when the incident store is another database than the catalog."""
    store, catalog = incidents_url(settings), settings.database_url
    try:
        return db.normalize_url(store) != db.normalize_url(catalog)
    except db.DatabaseConfigError:  # a broken URL: compared as given (opening it reports the problem)
        return store != catalog


def incident_store_settings(settings: Settings) -> Settings:
    """``settings`` as seen by code that only knows ``database_url``: pointed at the incident store.

    Idempotent (applying it twice changes nothing more); ``incidents_database_url`` is kept, so ``incidents_url``
    of the result is the same store.
    """
    if not is_separate(settings):
        return settings
    return settings.model_copy(update={"database_url": incidents_url(settings)})


def incident_engine(settings: Settings, **kwargs: Any) -> Engine:
    """A new engine on the incident store (``kwargs`` go to ``catalog.db.make_engine``); the caller disposes it."""
    return db.make_engine(incidents_url(settings), **kwargs)


def incident_factory(settings: Settings, **kwargs: Any) -> sessionmaker[Session]:
    """A session factory on a new engine on the incident store (``factory.kw["bind"]`` is the engine to dispose)."""
    return db.session_factory(incident_engine(settings, **kwargs))
