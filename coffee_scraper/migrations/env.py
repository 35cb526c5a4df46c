"""Alembic environment: runs migrations for SQLite (batch mode) and PostgreSQL with the catalog metadata.

Procrastinate's own tables are excluded from autogenerate so ``alembic check`` never proposes dropping them.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import pool

from coffee_scraper.accounts import models as _accounts_models  # noqa: F401  (dashboard users)
from coffee_scraper.catalog.db import make_engine
from coffee_scraper.catalog.models import Base
from coffee_scraper.incidents import models as _incidents_models  # noqa: F401  (incidents, alerts, timeline)
from coffee_scraper.incidents import ops_models as _ops_models  # noqa: F401  (remediation audit, checklists)
from coffee_scraper.incidents.notify import models as _notify_models  # noqa: F401  (notification outbox)
from coffee_scraper.jobs import models as _jobs_models  # noqa: F401  (registers the scheduler tables)

config = context.config
target_metadata = Base.metadata


def include_name(name: str | None, type_: Any, parents: Any) -> bool:
    return not (type_ == "table" and name is not None and name.startswith("procrastinate_"))


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        include_name=include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url
    engine = make_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            include_name=include_name,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
