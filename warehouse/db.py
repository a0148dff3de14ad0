"""Connecting to the warehouse database."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

T = TypeVar("T")
# Connection exceptions (class 08) and the server going away or not yet accepting connections:
# admin_shutdown, crash_shutdown, cannot_connect_now. A restart of PostgreSQL raises these.
_TRANSIENT_SQLSTATES = ("57P01", "57P02", "57P03")
_log = logging.getLogger("warehouse.db")


def sqlalchemy_url(url: str) -> str:
    """Accept the usual `postgresql://` / `postgres://` forms and pin the psycopg 3 driver."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"the warehouse must be PostgreSQL, got a {parsed.get_backend_name()!r} URL")
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def create_warehouse_engine(url: str, **kwargs: object) -> Engine:
    """An engine on the warehouse; `pool_pre_ping` because runs can sit idle between units."""
    return create_engine(sqlalchemy_url(url), pool_pre_ping=True, **kwargs)


def is_transient(exc: BaseException) -> bool:
    """True for an error that a new connection may not have: the server restarting or gone."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig if exc.orig is not None else exc
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in _TRANSIENT_SQLSTATES


def retry_transient(
    query: Callable[[], T],
    *,
    budget: float = 120.0,
    logger: logging.Logger | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run a read-only `query`, again after a transient database error, for up to `budget`
    seconds: a PostgreSQL restart must not fail what can simply ask again (e.g. asset checks)."""
    began = time.monotonic()
    delay = 0.5
    while True:
        try:
            return query()
        except Exception as exc:
            if not is_transient(exc) or time.monotonic() - began + delay > budget:
                raise
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            (logger or _log).warning("database unavailable (%s); asking again in %.1fs", first_line, delay)
            sleep(delay)
            delay = min(delay * 2, 8.0)
