"""Shared test fixtures: real databases (SQLite files and PostgreSQL), the shared storefront fixtures folder.

PostgreSQL comes from TEST_DATABASE_URL, else a server on 127.0.0.1:5432, else a throwaway cluster
started from Debian's postgresql binaries; only when none of these is possible are PG tests skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.support import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = REPO_ROOT.parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    if not (SHARED_FIXTURES / "stores").is_dir():
        pytest.skip(f"real storefront dumps not found at {SHARED_FIXTURES} (a clone without ../shared)")
    return SHARED_FIXTURES


def _pg_answers(url: str) -> bool:
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 2})
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
        return True
    except Exception:
        return False


@contextlib.contextmanager
def _throwaway_cluster() -> Iterator[str | None]:
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not bins:
        yield None
        return
    bin_dir = bins[-1].parent
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    tmp = tempfile.mkdtemp(prefix="coffee-scraper-pgtest-")
    if as_pg:
        shutil.chown(tmp, "postgres", "postgres")
    port = free_port()
    data = os.path.join(tmp, "data")

    def run(*cmd: str) -> None:
        subprocess.run([*as_pg, str(bin_dir / cmd[0]), *cmd[1:]], check=True, capture_output=True)

    try:
        run(
            "initdb",
            "-D",
            data,
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )
        run(
            "pg_ctl",
            "-D",
            data,
            "-l",
            f"{tmp}/log",
            "-w",
            "start",
            "-o",
            f"-c listen_addresses=127.0.0.1 -p {port} -k {tmp} -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=200",
        )
    except (subprocess.CalledProcessError, OSError):
        shutil.rmtree(tmp, ignore_errors=True)
        yield None
        return
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_pg, str(bin_dir / "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"],
            capture_output=True,
        )
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """An admin URL of a PostgreSQL server (see module docstring for where it comes from)."""
    env = os.environ.get("TEST_DATABASE_URL")
    if env:
        yield env.replace("postgresql://", "postgresql+psycopg://", 1)
        return
    local = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    if _pg_answers(local):
        yield local
        return
    with _throwaway_cluster() as url:
        if url is None:
            pytest.skip("no PostgreSQL: set TEST_DATABASE_URL, run one on 127.0.0.1:5432 or install postgresql")
        yield url


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty database on the PostgreSQL server, dropped after the test."""
    name = f"coffee_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(pg_server).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'catalog.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs twice: on a SQLite file and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))
