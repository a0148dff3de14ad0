"""What the benchmark's phases share: figures, databases, peak RSS, rows written."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

import devenv  # noqa: F401  (quiets pgserver's import-time warning)
from devenv.postgres import embedded_warehouse_url, ensure_database
from devenv.psql import libpq_url

RESULT_MARK = "BENCH-RESULT "


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    baseline: str
    baseline_value: float
    ratio: float
    rows_written: int | None = None
    target: str = ""


def server_url() -> str:
    return os.environ.get("DATABASE_URL") or embedded_warehouse_url()


def fresh_database(name: str) -> str:
    """Drop and recreate database `name` on the benchmark's server; its SQLAlchemy URL."""
    base = server_url()
    server = libpq_url(base)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    ensure_database(server, name)
    return make_url(base).set(drivername="postgresql+psycopg", database=name).render_as_string(False)


def quiesce(url: str, wait: float = 180.0) -> None:
    """Before a timed figure: CHECKPOINT, then wait (at most `wait` seconds) until no autovacuum
    worker runs. The previous phase's 1M-row writes start autovacuum on two cores; without this
    it landed in whichever figure came next, and the same code's rates moved by a fifth between
    runs. CHECKPOINT needs superuser or pg_checkpoint; without either, only the wait is done."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            conn.execute("CHECKPOINT")
        deadline = time.monotonic() + wait
        busy = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
        while time.monotonic() < deadline and (conn.execute(busy).fetchone() or (0,))[0]:
            time.sleep(0.5)


def peak_rss_mb() -> float:
    """This process's peak resident set so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_xid(url: str) -> int:
    """A transaction id issued now: rows whose xmin is at least this one were written after."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        row = conn.execute("SELECT txid_current()").fetchone()
    assert row is not None
    return int(row[0]) & 0xFFFFFFFF  # xmin is the 32-bit xid


def rows_written_since(url: str, xid: int) -> dict[str, int]:
    """Row versions per warehouse table created (inserted or updated) by transactions >= xid."""
    counts: dict[str, int] = {}
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        tables = conn.execute(
            "SELECT schemaname, relname FROM pg_stat_user_tables WHERE schemaname LIKE 'cinnox%'"
        ).fetchall()
        for schema, table in tables:
            query = sql.SQL("SELECT count(*) FROM {} WHERE xmin::text::bigint >= %s").format(
                sql.Identifier(schema, table)
            )
            row = conn.execute(query, (xid,)).fetchone()
            if row and row[0]:
                counts[f"{schema}.{table}"] = int(row[0])
    return counts


def emit(payload: dict[str, Any]) -> None:
    """A phase's result, on one line of stdout the parent picks out."""
    print(RESULT_MARK + json.dumps(payload, default=lambda o: asdict(o) if isinstance(o, Figure) else str(o)))
    sys.stdout.flush()
