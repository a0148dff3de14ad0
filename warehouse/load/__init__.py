"""Load sent-campaign pages into the warehouse: COPY into a stage, then set-based merges.

One call is one unit of work and one transaction: the raw layer, rejects, dimensions and the
fact all change together or not at all. Re-loading the same records writes no row.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, func, select, text
from sqlalchemy.exc import OperationalError

from cinnox import ChunkRead, Page, Window
from warehouse.load.dimensions import ensure_app, merge_dimensions
from warehouse.load.fact import merge_fact
from warehouse.load.ledger import LedgerKey, record_chunk
from warehouse.load.missing import mark_missing, window_holds_campaigns
from warehouse.load.raw import KNOWN_FIELDS, insert_raw_versions, insert_rejects, record_fields
from warehouse.load.result import DEFAULT_SETTLE, DayFigures, LoadResult, SettlePolicy
from warehouse.load.stage import StagedRecords, copy_into_stage, prepare_stage, stage

# A chunk merges in about a second (docs/benchmarks.md); ten minutes is long past any honest merge.
DEFAULT_MERGE_LOCK_TIMEOUT = 600.0
_log = logging.getLogger("warehouse.load")


def load_sent_campaigns(
    engine: Engine,
    app_id: str,
    window: Window,
    pages: Iterable[Page],
    *,
    run_id: str | None = None,
    max_reject_share: float | None = None,
    settle: SettlePolicy = DEFAULT_SETTLE,
    lock_timeout: float = DEFAULT_MERGE_LOCK_TIMEOUT,
    logger: logging.Logger | None = None,
) -> LoadResult:
    """Stream `pages` for one app and window into the warehouse in a single transaction.

    Pages are consumed lazily, so extraction and COPY overlap and memory stays flat; if the
    iterator raises (say CINNOX gave up), the transaction rolls back and nothing changes.
    `pages` must be a complete read of the window: campaigns of the window it lacks are marked
    missing at the source. Runs load through `load_chunk` instead, one bounded chunk at a time.

    When more than `max_reject_share` of the records are rejected, only the rejects are kept
    and nothing is merged (`reject_share_exceeded`); the caller fails the run.

    The merge waits at most `lock_timeout` seconds for the app's merge lock, then raises
    `MergeLockTimeout` naming the sessions that hold it (nothing is written).
    """
    result = LoadResult()
    with engine.begin() as conn:
        stage.create(conn)
        earliest: list[datetime] = []

        def noting_read_start(pages: Iterable[Page]) -> Iterator[Page]:
            for page in pages:
                if not earliest or page.fetched_at < earliest[0]:
                    earliest[:] = [page.fetched_at]
                yield page

        staged = copy_into_stage(conn, window, noting_read_start(pages), result)
        read_started = earliest[0] if earliest else datetime.now(UTC)
        _merge(
            conn, app_id, window, staged, read_started, result, run_id, max_reject_share, settle, lock_timeout, logger
        )
    return result


def load_chunk(
    engine: Engine,
    chunk: ChunkRead,
    ledger: LedgerKey,
    *,
    requests: int,
    max_reject_share: float | None = None,
    settle: SettlePolicy = DEFAULT_SETTLE,
    lock_timeout: float = DEFAULT_MERGE_LOCK_TIMEOUT,
    logger: logging.Logger | None = None,
) -> LoadResult:
    """Merge one chunk, read to its end in memory, and note it in the ledger: one short transaction.

    The accepted read's records are staged; so are the records only earlier reads returned
    (`chunk.vanished`): kept, and marked missing at the source if the warehouse knew them.
    """
    result = LoadResult()
    with engine.begin() as conn:
        stage.create(conn)
        staged = copy_into_stage(conn, chunk.window, chunk.pages, result, chunk.vanished)
        _merge(
            conn,
            ledger.app_id,
            chunk.window,
            staged,
            chunk.read_started,
            result,
            ledger.run_id,
            max_reject_share,
            settle,
            lock_timeout,
            logger,
        )
        if not result.reject_share_exceeded:
            record_chunk(conn, ledger, chunk, requests, result)
    return result


def _merge(
    conn: Connection,
    app_id: str,
    window: Window,
    staged: StagedRecords,
    read_started: datetime,
    result: LoadResult,
    run_id: str | None,
    max_reject_share: float | None,
    settle: SettlePolicy,
    lock_timeout: float,
    logger: logging.Logger | None,
) -> None:
    """Everything after the COPY, in the caller's transaction: dimensions, fact, raw, rejects."""
    superseded = prepare_stage(conn, campaigns_distinct=staged.campaigns_distinct)
    # One merge per app at a time, taken only now: what a load read is private to its stage,
    # and each merge skips what another already wrote from a newer read.
    take_merge_lock(conn, app_id, lock_timeout, logger or _log)
    if max_reject_share is not None and result.reject_share > max_reject_share:
        result.reject_share_exceeded = True
        result.rejects_inserted = insert_rejects(conn, app_id, window, run_id)
        return
    app_key = ensure_app(conn, app_id)
    # A first load of the window (every chunk of a first backfill) can skip work a re-load needs.
    window_was_empty = not window_holds_campaigns(conn, app_key, window)
    # Before the fact merge: raw leaves out the versions fact rows were written from, so it
    # must see the fact as the load found it.
    result.raw_versions_inserted = insert_raw_versions(conn, app_id, app_key, run_id, repeats=superseded > 0)
    result.dimension_rows_inserted = merge_dimensions(conn, app_key, window)
    merge_fact(conn, app_key, run_id, settle, result, window_was_empty=window_was_empty)
    mark_missing(conn, app_key, window, read_started, result, window_was_empty=window_was_empty)
    # Rejects are staged only from rejected records of the accepted read or from vanished ones:
    # with neither, a scan of the stage for them is saved (0.2 s at 1M).
    if result.rejected or result.vanished:
        result.rejects_inserted = insert_rejects(conn, app_id, window, run_id)
    record_fields(conn, app_id, staged.fields, run_id, result)


class MergeLockTimeout(RuntimeError):
    """The app's merge lock stayed taken for longer than the timeout; the message says by whom."""


def take_merge_lock(conn: Connection, app_id: str, timeout: float, log: logging.Logger) -> None:
    """Take the app's transaction-level advisory lock, waiting at most `timeout` seconds.

    Any role that can connect can take an advisory lock, a read-only login included; a load
    must not wait for it forever in silence. When the lock is taken, the holders are logged,
    the wait is bounded by `lock_timeout` inside a savepoint, and on timeout the error names
    them (pid, user, application, since when).
    """
    name = "cinnox.load:" + app_id
    key = func.hashtextextended(name, 0)
    if conn.scalar(select(func.pg_try_advisory_xact_lock(key))):
        return
    log.info("the merge lock of CINNOX app %s is held by %s; waiting up to %gs", app_id, _holders(conn, name), timeout)
    previous = conn.scalar(text("SELECT current_setting('lock_timeout')"))
    conn.execute(select(func.set_config("lock_timeout", f"{max(1, int(timeout * 1000))}ms", True)))
    try:
        with conn.begin_nested():
            conn.execute(select(func.pg_advisory_xact_lock(key)))
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
            raise
        raise MergeLockTimeout(
            f"CINNOX app {app_id!r}: waited {timeout:g}s for the app's merge lock (CINNOX_MERGE_LOCK_TIMEOUT_SECONDS); "
            f"it is held by {_holders(conn, name)}. Nothing was written. If that session is not another load of "
            "this app, end it (SELECT pg_terminate_backend(pid)) and run again"
        ) from None
    finally:
        conn.execute(select(func.set_config("lock_timeout", previous, True)))


def _holders(conn: Connection, name: str) -> str:
    rows = conn.execute(
        text(
            """
            WITH k AS (SELECT hashtextextended(:name, 0) AS key)
            SELECT a.pid, a.usename, a.application_name, a.xact_start
            FROM pg_locks l
            JOIN pg_stat_activity a ON a.pid = l.pid, k
            WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid()
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND l.classid = ((k.key >> 32) & 4294967295)::oid
              AND l.objid = (k.key & 4294967295)::oid
              AND l.objsubid = 1
            """
        ),
        {"name": name},
    ).all()
    if not rows:
        return "a session that has since let it go"
    return ", ".join(
        f"pid {pid} (user {user!r}, application {application or '-'!r}, "
        f"transaction since {since.isoformat(timespec='seconds') if since else 'unknown'})"
        for pid, user, application, since in rows
    )


__all__ = [
    "DEFAULT_MERGE_LOCK_TIMEOUT",
    "DEFAULT_SETTLE",
    "KNOWN_FIELDS",
    "DayFigures",
    "LedgerKey",
    "LoadResult",
    "MergeLockTimeout",
    "SettlePolicy",
    "load_chunk",
    "load_sent_campaigns",
]
