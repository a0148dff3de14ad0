"""The rebuild's replay: an app's stored records in the order a rebuild replays them, read on a
connection and a thread of their own.

    raw versions and rejects of an app  ->  replay order (a campaign's n-th record in step n,
    its place in the read order)  ->  per step: the records with their stored text, in batches

The rebuild's transaction deletes the app's derived rows and merges while this reader plans the
order and reads the next records: the two sides overlap (the order's two sorts and the join
with raw were 4.5 s of a 1M rebuild, on one connection one after the other). The rebuild holds
the app's merge lock before the reader starts, and only loads holding that lock write the
app's raw records and rejects, so the reader sees what the rebuild's own transaction does.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    Table,
    Text,
    and_,
    case,
    func,
    literal,
    null,
    select,
    text,
    union_all,
)
from sqlalchemy.dialects.postgresql import TIMESTAMP

from warehouse.load.stage import tune_merge_transaction
from warehouse.models import SentCampaignPayload, SentCampaignReject, table_of

# Records fetched and handed over per batch; with READ_AHEAD batches waiting, memory stays flat.
REPLAY_BATCH = 5000
READ_AHEAD = 2
# And about this much stored text per batch, judged by the largest record of the step read so
# far: a page may hold a record of up to 16 MB (CINNOX_MAX_RESPONSE_BYTES), and 5,000 of those
# would not fit in memory. Ordinary records (a few hundred characters) keep REPLAY_BATCH.
REPLAY_BATCH_CHARS = 16 * 1024 * 1024
# The first batch of a step, before any of its sizes is known.
_FIRST_BATCH = 200
FROM_RAW, FROM_REJECT = 0, 1

_temp = MetaData()
# The replay order: every raw version and reject of the app, its step (the campaign's n-th
# record in read order) and its place in the read order.
_replay = Table(
    "rebuild_replay",
    _temp,
    Column("step", Integer, primary_key=True),
    Column("ord", BigInteger, primary_key=True),
    Column("source", SmallInteger, nullable=False),
    Column("campaign_id", Text),
    Column("payload_hash", LargeBinary, nullable=False),
    Column("extracted_at", TIMESTAMP(timezone=True), nullable=False),
    Column("window_start", TIMESTAMP(timezone=True)),
    Column("window_end", TIMESTAMP(timezone=True)),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)


class _Stopped(Exception):
    """The rebuild stopped listening: the reader ends."""


class ReplayReader:
    """Reads `app_id`'s replay on a thread with a connection of its own; used as a context
    manager, which stops the thread on the way out, whether the replay was read to the end or not.

    `step_sizes()` waits for the order and says how many records each step has; `batches(step)` yields that
    step's records, a step at a time and in step order, as rows of
    (ord, campaign_id, source, payload_hash, extracted_at, window_start, window_end, payload
    text, rejected text). An error on the reader's side is raised in the caller's thread.
    """

    def __init__(self, engine: Engine, app_id: str) -> None:
        self._engine = engine
        self._app_id = app_id
        self._handed: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=READ_AHEAD)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name=f"cinnox-replay-{app_id}", daemon=True)

    def __enter__(self) -> ReplayReader:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):  # unblock a reader waiting to hand over a batch
                self._handed.get(timeout=0.05)
        self._thread.join()

    def step_sizes(self) -> list[int]:
        return list(self._take("steps"))

    def batches(self, step: int) -> Iterator[Sequence[Any]]:
        while True:
            kind, value = self._next()
            if kind == "end":
                if value != step:
                    raise RuntimeError(f"replay reader: step {value} ended while step {step} was read")
                return
            if kind != "rows":
                raise RuntimeError(f"replay reader: {kind!r} in step {step}")
            yield value

    def _take(self, expected: str) -> Any:
        kind, value = self._next()
        if kind != expected:
            raise RuntimeError(f"replay reader: {kind!r} where {expected!r} was due")
        return value

    def _next(self) -> tuple[str, Any]:
        kind, value = self._handed.get()
        if kind == "error":
            raise value
        return kind, value

    def _hand(self, kind: str, value: Any) -> None:
        while not self._stop.is_set():
            try:
                self._handed.put((kind, value), timeout=0.05)
                return
            except queue.Full:
                continue
        raise _Stopped

    def _read(self) -> None:
        try:
            with self._engine.connect() as conn:
                tune_merge_transaction(conn)
                # Every row of each step's cursor is read: plan for all, not the first tenth.
                conn.execute(select(func.set_config("cursor_tuple_fraction", "1", True)))
                sizes = _plan_replay(conn, self._app_id)
                self._hand("steps", sizes)
                driver = conn.connection.driver_connection
                assert driver is not None
                for step in range(1, len(sizes) + 1):
                    statement = _step_records(self._app_id, step).compile(dialect=conn.dialect)
                    # psycopg's own server-side cursor, in binary: plain tuples, no SQLAlchemy row
                    # per record, hashes and times not parsed from text. A 1M replay's fetch
                    # took 1.6-2.0 s of this thread's CPU against 2.8-3.0 s through SQLAlchemy's
                    # result, time the GIL takes from the rebuild's thread while it stages.
                    with driver.cursor(name=f"cinnox_replay_step_{step}", binary=True) as cursor:
                        cursor.execute(str(statement), statement.params)
                        size, largest = _FIRST_BATCH, 1
                        # Each fetch is a FETCH of `size` rows from the cursor, no more.
                        while batch := cursor.fetchmany(size):
                            self._hand("rows", batch)
                            largest = max(largest, _largest_text(batch))
                            size = max(1, min(REPLAY_BATCH, REPLAY_BATCH_CHARS // largest))
                    self._hand("end", step)
        except _Stopped:
            return
        except BaseException as exc:
            try:
                self._hand("error", exc)
            except _Stopped:
                return


def _largest_text(batch: Sequence[Any]) -> int:
    """The most characters of stored text (the payload, or a reject's text) one row carries."""
    return max(len(row[7] or "") + len(row[8] or "") for row in batch)


def _plan_replay(conn: Connection, app_id: str) -> list[int]:
    """Fill the replay order; returns how many records each step holds, step 1 first (as many
    steps as the most records of one campaign)."""
    _replay.create(conn)
    raw = table_of(SentCampaignPayload)
    rejects = table_of(SentCampaignReject)
    records = union_all(
        select(
            literal(FROM_RAW, SmallInteger).label("source"),
            raw.c.campaign_id,
            raw.c.payload_hash,
            raw.c.extracted_at,
            null().label("window_start"),
            null().label("window_end"),
        ).where(raw.c.app_id == app_id),
        select(
            literal(FROM_REJECT, SmallInteger),
            rejects.c.campaign_id,
            rejects.c.payload_hash,
            rejects.c.rejected_at,
            rejects.c.window_start,
            rejects.c.window_end,
        ).where(rejects.c.app_id == app_id),
    ).subquery("records")
    r = records.c
    read_order = [r.extracted_at, r.source, r.campaign_id, r.payload_hash]
    ordered = select(
        func.row_number()
        .over(
            # A reject without an id is a campaign of its own.
            partition_by=[r.campaign_id, case((r.campaign_id.is_(None), r.payload_hash))],
            order_by=read_order,
        )
        .label("step"),
        func.row_number().over(order_by=read_order).label("ord"),
        r.source,
        r.campaign_id,
        r.payload_hash,
        r.extracted_at,
        r.window_start,
        r.window_end,
    )
    conn.execute(_replay.insert().from_select([c.name for c in _replay.columns], ordered))
    conn.execute(text(f"ANALYZE {_replay.name}"))
    sizes = conn.execute(select(_replay.c.step, func.count()).group_by(_replay.c.step).order_by(_replay.c.step))
    return [int(count) for _, count in sizes]


def _step_records(app_id: str, step: int) -> Any:
    """The step's records with their stored text. In no order: each is staged under its place
    in the read order (`ord`, the stage's seq), which is all a later read's precedence needs.
    Sorted by it, the join was an index lookup in raw per record (2.4 s at 1M, against 1.6 s
    hashed)."""
    raw = table_of(SentCampaignPayload)
    rejects = table_of(SentCampaignReject)
    r = _replay
    return (
        select(
            r.c.ord,
            r.c.campaign_id,
            r.c.source,
            r.c.payload_hash,
            r.c.extracted_at,
            r.c.window_start,
            r.c.window_end,
            func.coalesce(raw.c.payload.cast(Text), rejects.c.payload.cast(Text)),
            rejects.c.payload_text,
        )
        .select_from(r)
        .outerjoin(
            raw,
            and_(
                r.c.source == FROM_RAW,
                raw.c.app_id == app_id,
                raw.c.campaign_id == r.c.campaign_id,
                raw.c.payload_hash == r.c.payload_hash,
            ),
        )
        .outerjoin(
            rejects,
            and_(r.c.source == FROM_REJECT, rejects.c.app_id == app_id, rejects.c.payload_hash == r.c.payload_hash),
        )
        .where(r.c.step == step)
    )


__all__ = ["FROM_RAW", "FROM_REJECT", "REPLAY_BATCH", "ReplayReader"]
