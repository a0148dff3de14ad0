"""Alembic environment: migrations run against the warehouse models' metadata.

The connection comes from, in order: a connection handed in by the caller
(`config.attributes["connection"]`, used by the tests and `make run`), or DATABASE_URL.
"""

from __future__ import annotations

import os
from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import Connection

from warehouse.db import create_warehouse_engine
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


def run_migrations(connection: Connection) -> None:
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
        raise SystemExit("DATABASE_URL is not set: export it, or use `make migrate`, which starts the embedded one")
    engine = create_warehouse_engine(url)
    try:
        with engine.connect() as conn:
            run_migrations(conn)
    finally:
        engine.dispose()


main()
