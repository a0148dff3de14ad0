"""Shared fixtures: a real PostgreSQL and the CINNOX simulator on loopback.

PostgreSQL is TEST_DATABASE_URL's server when that is set (any database on it; tests create
their own databases beside it), else an embedded server started for the session (pgserver).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine, literal_column, select
from sqlalchemy.engine import make_url

import devenv  # noqa: F401  (quiets pgserver's import-time warning)
from cinnox.simulator import SimulatorServer
from warehouse.db import create_warehouse_engine
from warehouse.migrate import upgrade_to_head
from warehouse.models import ApiRequestBudget, Base, DimChannel, LoadChunk

# A fixed simulated "now", so expectations do not move with the calendar.
SIM_NOW = datetime(2026, 6, 15, tzinfo=UTC)
_names = itertools.count()


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A libpq URL of a PostgreSQL server the tests may create databases on."""
    given = os.environ.get("TEST_DATABASE_URL")
    if given:
        yield make_url(given).set(drivername="postgresql").render_as_string(hide_password=False)
        return
    from pgserver.postgres_server import get_server

    # Not under pytest's own temporary folders: pytest deletes all but the newest three of
    # those when a session starts, so a second session on the machine would delete the data
    # folder under this session's running server.
    data = Path(tempfile.mkdtemp(prefix="cinnox-test-pgdata-"))
    server = get_server(data, cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="session")
def create_database(postgres_server_url: str) -> Iterator[Callable[[], str]]:
    """Makes empty databases on the test server; returns their SQLAlchemy URLs. Dropped at the end."""
    created: list[str] = []

    def create() -> str:
        name = f"cinnox_test_{os.getpid()}_{next(_names)}"
        with psycopg.connect(postgres_server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        url = make_url(postgres_server_url).set(drivername="postgresql+psycopg", database=name)
        return url.render_as_string(hide_password=False)

    yield create
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        for name in created:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def warehouse_url(create_database: Callable[[], str]) -> str:
    """One database at the newest migration, shared by the tests that load data."""
    url = create_database()
    engine = create_warehouse_engine(url)
    upgrade_to_head(engine)
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def _shared_engine(warehouse_url: str) -> Iterator[Engine]:
    engine = create_warehouse_engine(warehouse_url)
    yield engine
    engine.dispose()


def _empty(engine: Engine) -> None:
    tables = [t for t in reversed(Base.metadata.sorted_tables) if t is not DimChannel.__table__]
    names = sql.SQL(", ").join(sql.Identifier(t.schema or "public", t.name) for t in tables)
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY").format(names))


@pytest.fixture
def empty_warehouse() -> Callable[[Engine], None]:
    """Empties a warehouse of data (reference rows kept), for a test that needs it twice."""
    return _empty


@pytest.fixture
def warehouse(_shared_engine: Engine) -> Engine:
    """The migrated warehouse, emptied of data (reference rows kept) before each test."""
    _empty(_shared_engine)
    return _shared_engine


@pytest.fixture
def simulator() -> Iterator[SimulatorServer]:
    """The CINNOX simulator on a free loopback port, its clock at SIM_NOW."""
    with SimulatorServer(now=SIM_NOW) as server:
        yield server


@pytest.fixture
def row_versions() -> Callable[[Engine], dict[str, set[tuple[str, str]]]]:
    """Every row's physical version (ctid, xmin) in every warehouse table.

    Equal before and after a load means the load wrote no row at all: an UPDATE, even to
    the same values, gives the row a new ctid and xmin. The request budget and the chunk
    ledger are left out: bookkeeping that every request and every chunk writes by design, not
    data a load writes.
    """

    def snapshot(engine: Engine) -> dict[str, set[tuple[str, str]]]:
        versions: dict[str, set[tuple[str, str]]] = {}
        with engine.connect() as conn:
            for table in Base.metadata.sorted_tables:
                if table in (ApiRequestBudget.__table__, LoadChunk.__table__):
                    continue
                rows = conn.execute(
                    select(literal_column("ctid::text"), literal_column("xmin::text")).select_from(table)
                )
                versions[table.fullname] = {(r[0], r[1]) for r in rows}
        return versions

    return snapshot
