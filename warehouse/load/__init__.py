"""Load sent-campaign pages into the warehouse: COPY into a stage, then set-based merges.

One call is one unit of work and one transaction: the raw layer, rejects, dimensions and the
fact all change together or not at all. Re-loading the same records writes no row.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, func, select, text

from cinnox import ChunkRead, Page, Window
from warehouse.load.dimensions import ensure_app, merge_dimensions
from warehouse.load.fact import merge_fact, record_regressions
from warehouse.load.ledger import LedgerKey, record_chunk
from warehouse.load.missing import mark_missing
from warehouse.load.raw import KNOWN_FIELDS, insert_raw_versions, insert_rejects, record_fields
from warehouse.load.result import DEFAULT_SETTLE, DayFigures, LoadResult, SettlePolicy
from warehouse.load.stage import ANALYZED_STAGE_COLUMNS, copy_into_stage, stage


def load_sent_campaigns(
    engine: Engine,
    app_id: str,
    window: Window,
    pages: Iterable[Page],
    *,
    run_id: str | None = None,
    max_reject_share: float | None = None,
    settle: SettlePolicy = DEFAULT_SETTLE,
) -> LoadResult:
    """Stream `pages` for one app and window into the warehouse in a single transaction.

    Pages are consumed lazily, so extraction and COPY overlap and memory stays flat; if the
    iterator raises (say CINNOX gave up), the transaction rolls back and nothing changes.
    `pages` must be a complete read of the window: campaigns of the window it lacks are marked
    missing at the source. Runs load through `load_chunk` instead, one bounded chunk at a time.

    When more than `max_reject_share` of the records are rejected, only the rejects are kept
    and nothing is merged (`reject_share_exceeded`); the caller fails the run.
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

        fields = copy_into_stage(conn, window, noting_read_start(pages), result)
        read_started = earliest[0] if earliest else datetime.now(UTC)
        _merge(conn, app_id, window, fields, read_started, result, run_id, max_reject_share, settle)
    return result


def load_chunk(
    engine: Engine,
    chunk: ChunkRead,
    ledger: LedgerKey,
    *,
    requests: int,
    max_reject_share: float | None = None,
    settle: SettlePolicy = DEFAULT_SETTLE,
) -> LoadResult:
    """Merge one chunk, read to its end in memory, and note it in the ledger: one short transaction.

    The accepted read's records are staged; so are the records only earlier reads returned
    (`chunk.vanished`): kept, and marked missing at the source if the warehouse knew them.
    """
    result = LoadResult()
    with engine.begin() as conn:
        stage.create(conn)
        fields = copy_into_stage(conn, chunk.window, chunk.pages, result, chunk.vanished)
        _merge(
            conn,
            ledger.app_id,
            chunk.window,
            fields,
            chunk.read_started,
            result,
            ledger.run_id,
            max_reject_share,
            settle,
        )
        if not result.reject_share_exceeded:
            record_chunk(conn, ledger, chunk, requests, result)
    return result


def _merge(
    conn: Connection,
    app_id: str,
    window: Window,
    fields: set[str],
    read_started: datetime,
    result: LoadResult,
    run_id: str | None,
    max_reject_share: float | None,
    settle: SettlePolicy,
) -> None:
    """Everything after the COPY, in the caller's transaction: dimensions, fact, raw, rejects."""
    # A temp table has no statistics until analysed; the merges' join plans need them.
    # Not the payload columns: sampling jsonb was most of ANALYZE's second per 100k rows
    # and no plan filters or joins on it.
    conn.execute(text(f"ANALYZE {stage.name} ({', '.join(ANALYZED_STAGE_COLUMNS)})"))
    # One merge per app at a time, taken only now: what a load read is private to its stage,
    # and each merge skips what another already wrote from a newer read.
    conn.execute(select(func.pg_advisory_xact_lock(func.hashtextextended("cinnox.load:" + app_id, 0))))
    if max_reject_share is not None and result.reject_share > max_reject_share:
        result.reject_share_exceeded = True
        result.rejects_inserted = insert_rejects(conn, app_id, window, run_id)
        return
    app_key = ensure_app(conn, app_id)
    result.dimension_rows_inserted = merge_dimensions(conn, app_key, window)
    result.counter_regressions = record_regressions(conn, app_key, run_id)
    merge_fact(conn, app_key, run_id, settle, result)
    mark_missing(conn, app_key, window, read_started, result)
    result.raw_versions_inserted = insert_raw_versions(conn, app_id, run_id)
    result.rejects_inserted = insert_rejects(conn, app_id, window, run_id)
    record_fields(conn, app_id, fields, run_id, result)


__all__ = [
    "DEFAULT_SETTLE",
    "KNOWN_FIELDS",
    "DayFigures",
    "LedgerKey",
    "LoadResult",
    "SettlePolicy",
    "load_chunk",
    "load_sent_campaigns",
]
