"""Alembic environment: migrations run against the warehouse models' metadata.

The connection comes from, in order: a connection handed in by the caller
(`config.attributes["connection"]`, used by the tests and `make run`), or DATABASE_URL.
"""

from __future__ import annotations

import os
from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

from warehouse.db import connection_problem, create_warehouse_engine
from warehouse.models import SCHEMAS, Base

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    # Only our schemas: a shared database may hold anything else, and `alembic check` must
    # not propose dropping it.
    if type_ == "schema":
        return name in SCHEMAS
    return True


# Any number of processes may migrate one database at once (`make run` and `make dev` started
# together, a deploy job per replica): they take turns on this advisory lock, and each one that
# gets it after the first finds the schema at head and does nothing.
MIGRATION_LOCK = "SELECT pg_advisory{scope}_lock(hashtext('cinnox_warehouse_migrations'))"
MIGRATION_UNLOCK = "SELECT pg_advisory_unlock(hashtext('cinnox_warehouse_migrations'))"


def run_migrations(connection: Connection) -> None:
    if connection.in_transaction():
        # The caller's transaction (`warehouse.migrate.upgrade_to_head`): the lock lasts until it
        # commits or rolls back, which is after the last revision.
        connection.execute(text(MIGRATION_LOCK.format(scope="_xact")))
        _run_migrations(connection)
        return
    connection.execute(text(MIGRATION_LOCK.format(scope="")))
    connection.commit()  # the session lock outlives this; each revision then has its own transaction
    try:
        _run_migrations(connection)
    finally:
        connection.execute(text(MIGRATION_UNLOCK))
        connection.commit()


def _run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        include_schemas=True,
        include_name=include_name,
        compare_type=True,
        # Each revision runs in its own transaction: one that fails halfway leaves the
        # schema at the previous revision (PostgreSQL has transactional DDL).
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    if context.is_offline_mode():
        raise SystemExit("offline (--sql) migrations are not supported; run against a database")
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit(
            "error: DATABASE_URL is not set: export it, or run `make run`, which migrates the embedded warehouse"
        )
    engine = create_warehouse_engine(url)
    try:
        with engine.connect() as conn:
            run_migrations(conn)
    except OperationalError as exc:
        if os.environ.get("VERBOSE", "0") not in ("", "0"):
            raise
        raise SystemExit(f"error: {connection_problem(exc, url)}") from None
    finally:
        engine.dispose()


main()
