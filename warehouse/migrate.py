"""Apply Alembic migrations from code (for `make run`, `make dev` and the tests)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, text

ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"
ALLOW_DATA_LOSS_ENV = "CINNOX_ALLOW_DATA_LOSS"
DEFAULT_READER_ROLE = "cinnox_reader"
_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def alembic_config() -> Config:
    """The project's Alembic config; bind a connection with `config.attributes["connection"]`."""
    config = Config(str(ALEMBIC_INI))
    config.attributes["configure_logger"] = False  # leave the caller's logging alone
    return config


def upgrade_to_head(engine: Engine) -> None:
    """Bring the warehouse schema to the newest revision; a no-op when it is there already.

    Safe to call from many processes at once: migrations/env.py takes an advisory lock first,
    so they migrate one after the other and the later ones find the schema at head.
    """
    with engine.begin() as conn:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def refuse_data_loss(revision: str, loses: str) -> None:
    """First call of a downgrade that drops data: refuse it unless the operator said it may go.

    Allowed by `alembic -x allow-data-loss=true downgrade ...`, by CINNOX_ALLOW_DATA_LOSS=true,
    or from code by `config.attributes["allow_data_loss"] = True`.
    """
    config = context.config
    flag = context.get_x_argument(as_dictionary=True).get("allow-data-loss", "")
    allowed = (
        config.attributes.get("allow_data_loss") is True
        or flag.strip().lower() == "true"
        or os.environ.get(ALLOW_DATA_LOSS_ENV, "").strip().lower() == "true"
    )
    if not allowed:
        raise CommandError(
            f"downgrading revision {revision} deletes data: {loses}. Refused. If that data may go, run "
            f"`alembic -x allow-data-loss=true downgrade ...` (or set {ALLOW_DATA_LOSS_ENV}=true); "
            "otherwise back the warehouse up first (pg_dump)"
        )


def reader_role() -> str:
    """The read-only role's name: CINNOX_READER_ROLE, default cinnox_reader."""
    name = os.environ.get("CINNOX_READER_ROLE", DEFAULT_READER_ROLE)
    if not _ROLE_NAME.fullmatch(name):
        raise CommandError(f"CINNOX_READER_ROLE: {name!r} is not a plain lower-case PostgreSQL role name")
    return name


def check_reader_role(conn: Connection, role: str) -> bool:
    """True when `role` exists. Refuses (CommandError) an existing role that could do more
    than read: one that can log in, is superuser, can create roles or databases, replicates,
    bypasses row security, owns something in this database or can create schemas in it.
    Granting it the reader's privileges would hand them to whoever already has it, and
    calling it "the reader" would be false."""
    row = conn.execute(
        text(
            """
            SELECT r.rolcanlogin, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication,
                   r.rolbypassrls,
                   EXISTS (SELECT FROM pg_class c WHERE c.relowner = r.oid)
                       OR EXISTS (SELECT FROM pg_namespace n WHERE n.nspowner = r.oid),
                   has_database_privilege(r.oid, current_database(), 'CREATE')
            FROM pg_roles r WHERE r.rolname = :role
            """
        ),
        {"role": role},
    ).one_or_none()
    if row is None:
        return False
    names = (
        "can log in",
        "is a superuser",
        "can create roles",
        "can create databases",
        "can replicate",
        "bypasses row security",
        "owns tables or schemas here",
        "can create schemas in this database",
    )
    found = [name for name, flag in zip(names, row, strict=True) if flag]
    if found:
        raise CommandError(
            f"CINNOX_READER_ROLE: the existing role {role!r} {', '.join(found)}: the reader role must be a NOLOGIN "
            "role that can only read. Choose another name (default cinnox_reader); the migration creates it, "
            "and you grant it to logins (CREATE ROLE bi LOGIN ... IN ROLE cinnox_reader)"
        )
    return True
