"""Connecting to the warehouse database."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url


def sqlalchemy_url(url: str) -> str:
    """Accept the usual `postgresql://` / `postgres://` forms and pin the psycopg 3 driver."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"the warehouse must be PostgreSQL, got a {parsed.get_backend_name()!r} URL")
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def create_warehouse_engine(url: str, **kwargs: object) -> Engine:
    """An engine on the warehouse; `pool_pre_ping` because runs can sit idle between units."""
    return create_engine(sqlalchemy_url(url), pool_pre_ping=True, **kwargs)
