"""Database failures sorted into the ones a retry can cure and the ones it cannot.

A retry resumes from the ledger, so retrying a transient failure costs one chunk. Retrying a
permanent one costs every request up to the same failure, and fails again: a statement timeout,
a full disk or a value over a PostgreSQL limit needs a person to change something first.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from sqlalchemy.exc import DBAPIError

# SQLSTATE classes and codes a new connection or a new transaction can succeed after.
_TRANSIENT_CLASSES = ("08",)  # connection exceptions
_TRANSIENT_CODES = {
    "40001": "a serialization failure",
    "40P01": "a deadlock",
    "57P01": "the server shutting down (admin shutdown)",
    "57P02": "the server crashing (crash shutdown)",
    "57P03": "the server not yet accepting connections",
    "53300": "too many connections",
}
_PERMANENT_HINTS = {
    "57014": "a statement was cancelled: it ran past statement_timeout, or an operator cancelled it. A chunk's "
    "merge should take seconds; lower CINNOX_CHUNK_RECORDS or raise statement_timeout for the loading role",
    "53100": "the database server is out of disk space (or a temp tablespace is full): free space, then re-run",
    "53200": "the database server ran out of memory: lower CINNOX_CHUNK_RECORDS or raise work_mem limits",
    "53400": "a configuration limit was hit (e.g. temp_file_limit): raise it for the loading role or lower "
    "CINNOX_CHUNK_RECORDS",
    "54000": "a value exceeded a PostgreSQL limit (e.g. an index row too large)",
    "55P03": "a lock could not be taken within lock_timeout: another session holds it; see pg_locks",
    "42501": "the loading role lacks a privilege: grant it, or run the migrations as the owner",
    "3D000": "the database does not exist: check DATABASE_URL",
    "28P01": "the database refused the password: check DATABASE_URL",
    "28000": "the database refused the role: check DATABASE_URL",
}


@dataclass(frozen=True, slots=True)
class DatabaseFailure:
    transient: bool
    message: str  # one line: what PostgreSQL said and, when known, what to change


def classify(exc: BaseException) -> DatabaseFailure | None:
    """What a database exception means for a retry; None when `exc` is not a database error."""
    error = _psycopg_error(exc)
    if error is None:
        return None
    said = (str(error).strip().splitlines() or [type(error).__name__])[0]
    state = error.sqlstate
    if state is None:
        # No SQLSTATE: the connection itself failed (refused, reset, closed under us).
        transient = isinstance(error, psycopg.OperationalError)
        return DatabaseFailure(transient, f"database connection failed: {said}")
    if state.startswith(_TRANSIENT_CLASSES) or state in _TRANSIENT_CODES:
        what = _TRANSIENT_CODES.get(state, "a lost connection")
        return DatabaseFailure(True, f"{what} ({state}): {said}")
    hint = _PERMANENT_HINTS.get(state)
    return DatabaseFailure(False, f"PostgreSQL error {state}: {said}" + (f". {hint}" if hint else ""))


def _psycopg_error(exc: BaseException) -> psycopg.Error | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, psycopg.Error):
            return current
        if isinstance(current, DBAPIError) and isinstance(current.orig, psycopg.Error):
            return current.orig
        current = current.__cause__ or current.__context__
    return None
