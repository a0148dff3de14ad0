"""A run's window, read and merged chunk by chunk: the unit of work is a chunk, not the range.

    probe (limit=1)  ->  live edge, total  ->  plan minus the ledger  ->  for each chunk:
        read to the end in memory (re-read while paging drifts)  ->  one short transaction:
        COPY, merge, ledger row

No transaction stays open while CINNOX is read: a chunk is read first, then merged (on a thread
of its own, while the next chunk is read), so the longest transaction is one chunk's merge. A
failure keeps every chunk committed before it; a retry of the same run skips them. Paging drift
costs a re-read of the chunk it touched.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine

from cinnox import ChunkRead, CinnoxClient, ExtractionStats, ReadStopped, Window, WindowTooLarge
from warehouse.load import DEFAULT_MERGE_LOCK_TIMEOUT, load_chunk
from warehouse.load.clock import DatabaseClock
from warehouse.load.ledger import LedgerKey, committed_windows, mark_window_completed
from warehouse.load.plan import can_split, live_edge, parts_for, plan, split
from warehouse.load.result import DEFAULT_SETTLE, LoadResult, SettlePolicy

DEFAULT_CHUNK_RECORDS = 2000
# A chunk's first page may show more records than planned (sends cluster); up to this many
# times the chunk size it is read as it is, beyond it the chunk is cut again.
_OVERSIZE = 2


def format_duration(seconds: float) -> str:
    """How long, as the run log and `make estimate` say it."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass(slots=True)
class ChunkProgress:
    """Where a run stands after a chunk: what the run log shows."""

    index: int
    planned: int
    window: Window
    records: int  # in this chunk's accepted read
    records_so_far: int
    expected: int | None  # CINNOX's total for the window at the probe
    requests: int  # so far, the probe included
    elapsed: float
    reads: int
    rate_limit_wait_seconds: float  # so far: the time the run waited for the app's request budget

    @property
    def seconds_left(self) -> float | None:
        if not self.expected or not self.records_so_far:
            return None
        return max(0.0, self.elapsed * (self.expected - self.records_so_far) / self.records_so_far)


@dataclass(slots=True)
class WindowLoad:
    """A run's window as read and loaded: the live edge, the chunks, and the summed figures."""

    requested: Window
    read: Window | None = None  # the requested window cut at the live edge; None: all in the future
    live_edge: datetime | None = None
    expected: int | None = None
    chunks: int = 0
    resumed_chunks: int = 0
    split_chunks: int = 0  # chunks whose first page said too many records, cut again
    result: LoadResult = field(default_factory=LoadResult)
    stats: ExtractionStats = field(default_factory=ExtractionStats)
    seconds: float = 0.0


def load_window(
    engine: Engine,
    client: CinnoxClient,
    window: Window,
    ledger: LedgerKey,
    *,
    chunk_records: int = DEFAULT_CHUNK_RECORDS,
    max_reject_share: float | None = None,
    settle: SettlePolicy = DEFAULT_SETTLE,
    progress: Callable[[ChunkProgress], None] | None = None,
    log: logging.Logger | None = None,
    lock_timeout: float = DEFAULT_MERGE_LOCK_TIMEOUT,
) -> WindowLoad:
    """Read and merge `window` of the client's app in chunks of at most about `chunk_records`.

    Stops at the first chunk whose rejects exceed `max_reject_share` (its rejects are kept, it
    is not merged, `result.reject_share_exceeded` is set); any exception leaves the chunks
    committed before it in place.
    """
    if chunk_records < 1:
        raise ValueError(f"chunk_records must be at least 1, got {chunk_records}")
    clock = DatabaseClock(engine)
    clock.sync()
    # Pages are stamped on the warehouse's clock during this load only; the client keeps its own.
    client_clock = client.read_clock
    client.read_clock = clock.now
    try:
        return _load_window(
            engine, client, clock, window, ledger, chunk_records, max_reject_share, settle, progress, log, lock_timeout
        )
    finally:
        client.read_clock = client_clock


def _load_window(
    engine: Engine,
    client: CinnoxClient,
    clock: DatabaseClock,
    window: Window,
    ledger: LedgerKey,
    chunk_records: int,
    max_reject_share: float | None,
    settle: SettlePolicy,
    progress: Callable[[ChunkProgress], None] | None,
    log: logging.Logger | None,
    lock_timeout: float,
) -> WindowLoad:
    began = time.monotonic()
    done = WindowLoad(requested=window)
    probe_started = clock.now()
    probe = client.probe(window, done.stats)
    # The live edge on CINNOX's own clock, which dates the campaigns; the warehouse's when
    # CINNOX sends no Date header. Later sends belong to the next refresh.
    done.live_edge = probe.api_time or clock.now()
    done.read = live_edge(window, done.live_edge)
    if done.read is None:
        done.seconds = time.monotonic() - began
        return done
    done.expected = probe.total
    with engine.connect() as conn:
        committed = committed_windows(conn, ledger)
    done.resumed_chunks = len(committed)
    queue = deque(plan(done.read, probe.total, chunk_records, committed))
    if probe.total == 0 and queue == deque([done.read]):
        # The probe read the whole window and found it empty: load that (campaigns the
        # warehouse holds there are missing at the source) without asking again.
        queue.clear()
        empty = ChunkRead(done.read, [], [], probe_started, clock.now(), reads=1, total=0)
        done.result.add(
            load_chunk(
                engine,
                empty,
                ledger,
                requests=1,
                max_reject_share=max_reject_share,
                settle=settle,
                lock_timeout=lock_timeout,
                logger=log,
            )
        )
        done.chunks = 1
    if committed and log is not None:
        log.info(
            "Resuming: %d chunk(s) of %s were committed by an earlier try of this run; %d left to read",
            len(committed),
            window,
            len(queue),
        )
    # The next chunk is read while the previous one merges, so CINNOX's answer time and the
    # merge overlap. A merge that fails stops that read before its next page.
    merging: Future[LoadResult] | None = None
    merging_about: tuple[Window, int] | None = None  # the merging chunk's window and reads
    records_so_far = 0

    def merge_failed() -> bool:
        return merging is not None and merging.done() and merging.exception() is not None

    def harvest() -> bool:
        """Wait for the merge in flight and account for it; True when the run must stop."""
        nonlocal merging, records_so_far
        if merging is None or merging_about is None:
            return False
        result = merging.result()  # a failed merge raises here
        merging = None
        done.chunks += 1
        done.result.add(result)
        records_so_far += result.records
        if progress is not None:
            progress(
                ChunkProgress(
                    index=done.chunks,
                    planned=done.chunks + len(queue),
                    window=merging_about[0],
                    records=result.records,
                    records_so_far=records_so_far,
                    expected=done.expected,
                    requests=done.stats.requests,
                    elapsed=time.monotonic() - began,
                    reads=merging_about[1],
                    rate_limit_wait_seconds=done.stats.rate_limit_wait_seconds,
                )
            )
        return result.reject_share_exceeded

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cinnox-merge") as merger:
        while queue:
            chunk_window = queue.popleft()
            clock.sync()
            requests_before = done.stats.requests
            oversize = _OVERSIZE * chunk_records if can_split(chunk_window) else None
            try:
                chunk = client.read_chunk(chunk_window, done.stats, max_records=oversize, stop=merge_failed)
            except WindowTooLarge as large:
                done.split_chunks += 1
                queue.extendleft(reversed(split(chunk_window, parts_for(large.total, chunk_records))))
                continue
            except ReadStopped:
                harvest()  # raises the merge's own error
                raise
            if harvest():
                merging_about = None
                break
            merging_about = (chunk_window, chunk.reads)
            merging = merger.submit(
                load_chunk,
                engine,
                chunk,
                ledger,
                requests=done.stats.requests - requests_before,
                max_reject_share=max_reject_share,
                settle=settle,
                lock_timeout=lock_timeout,
                logger=log,
            )
        harvest()
    if not done.result.reject_share_exceeded:
        with engine.begin() as conn:
            mark_window_completed(conn, ledger)
    done.seconds = time.monotonic() - began
    return done
