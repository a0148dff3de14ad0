"""Connecting to the warehouse database."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from warehouse.errors import classify

T = TypeVar("T")
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
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    failure = classify(exc)
    return failure is not None and failure.transient


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


def where(url: str) -> str:
    """host:port/database of a URL, never its password; the Unix socket folder when there is no host."""
    parsed = make_url(url)
    host = parsed.host or str(parsed.query.get("host") or "localhost")
    place = f"{host}:{parsed.port or 5432}" if not host.startswith("/") else f"socket {host}"
    return f"{place}, database {parsed.database or '(default)'!r}" + (
        f" as user {parsed.username!r}" if parsed.username else ""
    )


def connection_problem(exc: BaseException, url: str, variable: str = "DATABASE_URL") -> str:
    """One line for an operator: why the warehouse at `url` refused us and what to change.

    `exc` is what connecting raised (SQLAlchemy's OperationalError or psycopg's). The password
    is never part of it: it is blanked out of the server's text too, should it appear there.
    """
    detail = str(getattr(exc, "orig", None) or exc)
    password = make_url(url).password
    if password:
        detail = detail.replace(str(password), "***")
    # libpq: 'connection failed: connection to server at "h", port p failed: FATAL:  <reason>'
    reason = re.split(r"FATAL:\s+|failed:\s+(?!.*failed:)", detail.splitlines()[0] if detail else "")[-1].strip()
    place = where(url)
    lowered = detail.lower()
    if "database" in lowered and "does not exist" in lowered:
        todo = f"create it, or name an existing database in {variable}"
    elif "role" in lowered and "does not exist" in lowered:
        todo = f"create the role, or name an existing user in {variable}"
    elif "password authentication failed" in lowered or "no password supplied" in lowered:
        todo = f"check the user and password in {variable}"
    elif "connection refused" in lowered or "no such file" in lowered:
        todo = f"start PostgreSQL there, or fix the host and port in {variable}"
    elif "could not translate host name" in lowered or "name or service not known" in lowered:
        todo = f"fix the host name in {variable}"
    elif "timeout" in lowered or "timed out" in lowered:
        todo = f"check that the host is reachable, or fix {variable}"
    else:
        todo = f"check {variable}"
    return f"cannot connect to the warehouse at {place} ({variable}): {reason or detail}; {todo}"
