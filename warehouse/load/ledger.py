"""The ledger of committed chunks (cinnox_ops.load_chunk): what a retry of a run may skip.

A chunk's row is written inside the chunk's own transaction, so the ledger lists exactly the
chunks whose rows are in the warehouse. A run finds its chunks by its family (Dagster's root
run id: the run, its step retries, its run retries and re-executions) and its requested window;
a new run, a settle run or a concurrent run has its own family and reads everything again. Once
a run has read its whole window, its chunks are marked completed: a re-execution of a run that
succeeded reads everything again too.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, Connection, func, insert, select, update

from cinnox import ChunkRead, Window
from warehouse.load.result import LoadResult
from warehouse.models import LoadChunk, table_of


@dataclass(frozen=True, slots=True)
class LedgerKey:
    """Which run a chunk belongs to, and the whole window that run asked for."""

    app_id: str
    run_family: str
    requested: Window
    run_id: str | None = None


def _of_run(key: LedgerKey) -> tuple[ColumnElement[bool], ...]:
    """The ledger rows of this run family's chunks of this requested window."""
    ledger = table_of(LoadChunk)
    return (
        ledger.c.app_id == key.app_id,
        ledger.c.run_family == key.run_family,
        ledger.c.requested_start == key.requested.start,
        ledger.c.requested_end == key.requested.end,
    )


def committed_windows(conn: Connection, key: LedgerKey) -> list[Window]:
    """The chunk windows this run family already committed for the same requested window."""
    ledger = table_of(LoadChunk)
    rows = conn.execute(
        select(ledger.c.window_start, ledger.c.window_end)
        .where(*_of_run(key), ledger.c.window_completed_at.is_(None))
        .order_by(ledger.c.window_start)
    ).all()
    return [Window(start, end) for start, end in rows]


def mark_window_completed(conn: Connection, key: LedgerKey) -> None:
    """The run read its whole window: a later run of the same family (a re-execution of a run
    that succeeded) reads it again instead of finding nothing left to do."""
    ledger = table_of(LoadChunk)
    conn.execute(
        update(ledger)
        .where(*_of_run(key), ledger.c.window_completed_at.is_(None))
        .values(window_completed_at=func.now())
    )


def record_chunk(conn: Connection, key: LedgerKey, chunk: ChunkRead, requests: int, result: LoadResult) -> None:
    conn.execute(
        insert(table_of(LoadChunk)).values(
            app_id=key.app_id,
            dagster_run_id=key.run_id,
            run_family=key.run_family,
            requested_start=key.requested.start,
            requested_end=key.requested.end,
            window_start=chunk.window.start,
            window_end=chunk.window.end,
            read_started_at=chunk.read_started,
            read_finished_at=chunk.read_finished,
            records=result.records,
            api_total=chunk.total,
            requests=requests,
            reads=chunk.reads,
            inserted=result.inserted,
            updated=result.updated,
            rejected=result.rejected,
            marked_missing=result.marked_missing,
        )
    )
