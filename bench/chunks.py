"""The chunked load at production scale: a year of a busy app (about 60,000 campaigns).

    python -m bench.chunks --phase requests   # requests / minimal: a clean year, and one vanish mid-read
    python -m bench.chunks --phase paced      # the longest transaction of a year at the default rate
    python -m bench.chunks --phase resume     # a run killed after 90% of its chunks, then retried

Minimal requests are ceil(total / page size): one read of the year, page after page, as if
nothing could go wrong. Each phase starts its own simulator and fresh database.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from bench.common import current_xid, emit, fresh_database, peak_rss_mb, rows_written_since
from cinnox import CinnoxClient, RateLimiter, Window
from cinnox.simulator import FaultKind, SimulatorServer
from warehouse.db import create_warehouse_engine
from warehouse.load import LedgerKey
from warehouse.load import chunks as chunk_runner
from warehouse.load.chunks import DEFAULT_CHUNK_RECORDS, load_window
from warehouse.migrate import upgrade_to_head
from warehouse.models import FactSentCampaign, LoadChunk

APP, TOKEN = "sim-busy-app", "sim-token-busy"
NOW = datetime(2026, 6, 15, tzinfo=UTC)
YEAR = Window(NOW - timedelta(days=365), NOW)
PAGE = 100
DEFAULT_RATE = 10  # CINNOX_REQUESTS_PER_SECOND's default


def _simulator(**options: Any) -> SimulatorServer:
    return SimulatorServer(apps={APP: TOKEN}, now=NOW, **options).start()


def _minimal(sim: SimulatorServer) -> tuple[int, int]:
    total = len(sim.campaigns(APP, YEAR.start, YEAR.end))
    return total, math.ceil(total / PAGE)


def _database() -> str:
    url = fresh_database("cinnox_bench_chunks")
    engine = create_warehouse_engine(url)
    upgrade_to_head(engine)
    engine.dispose()
    return url


def requests(vanish: bool) -> dict[str, Any]:
    url = _database()
    engine = create_warehouse_engine(url)
    with _simulator() as sim:
        total, minimal = _minimal(sim)
        if vanish:
            sim.add_fault(FaultKind.CAMPAIGN_VANISHES, skip=minimal // 2)
        xid = current_xid(url)
        started = time.perf_counter()
        with CinnoxClient(sim.url, APP, TOKEN, page_size=PAGE) as client:
            done = load_window(engine, client, YEAR, LedgerKey(APP, "bench", YEAR))
        seconds = time.perf_counter() - started
        made = len(sim.requests)
    engine.dispose()
    written = rows_written_since(url, xid)
    return {
        "total": total,
        "minimal": minimal,
        "requests": made,
        "chunks": done.chunks,
        "reads": done.stats.reads,
        "marked_missing": done.result.marked_missing,
        "seconds": seconds,
        "fact_rows_written": written.get("cinnox.fact_sent_campaign", 0),
        "peak_rss_mb": peak_rss_mb(),
    }


def paced() -> dict[str, Any]:
    """A year at the default request rate; how long each chunk's transaction stayed open."""
    url = _database()
    engine = create_warehouse_engine(url)
    transactions: list[float] = []
    timed = chunk_runner.load_chunk  # type: ignore[attr-defined]

    def timing(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return timed(*args, **kwargs)
        finally:
            transactions.append(time.perf_counter() - began)

    chunk_runner.load_chunk = timing  # type: ignore[attr-defined]  # the runner calls it by this name
    with _simulator() as sim:
        total, _ = _minimal(sim)
        started = time.perf_counter()
        with CinnoxClient(sim.url, APP, TOKEN, page_size=PAGE, rate_limiter=RateLimiter(DEFAULT_RATE)) as client:
            done = load_window(engine, client, YEAR, LedgerKey(APP, "bench", YEAR))
        seconds = time.perf_counter() - started
    engine.dispose()
    return {
        "total": total,
        "requests": done.stats.requests,
        "chunks": done.chunks,
        "seconds": seconds,
        "longest_transaction_seconds": max(transactions),
        "mean_transaction_seconds": sum(transactions) / len(transactions),
    }


_KILLED = """
import os, signal, sys
from datetime import datetime
from bench.chunks import APP, TOKEN, YEAR, PAGE
from cinnox import CinnoxClient
from warehouse.db import create_warehouse_engine
from warehouse.load import LedgerKey
from warehouse.load.chunks import load_window

def progress(step):
    if step.index == int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)

with CinnoxClient(sys.argv[2], APP, TOKEN, page_size=PAGE) as client:
    load_window(create_warehouse_engine(sys.argv[1]), client, YEAR, LedgerKey(APP, "killed", YEAR), progress=progress)
"""


def resume() -> dict[str, Any]:
    """Kill a run (SIGKILL) once 90% of its chunks committed; retry it; count what it re-read."""
    url = _database()
    with _simulator() as sim:
        total, minimal = _minimal(sim)
        planned = math.ceil(total / DEFAULT_CHUNK_RECORDS)
        kill_after = int(planned * 0.9)
        child = subprocess.run(
            [sys.executable, "-c", _KILLED, url, sim.url, str(kill_after)], capture_output=True, text=True, check=False
        )
        assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
        first = len(sim.requests)
        sim.reset_requests()
        engine = create_warehouse_engine(url)
        with engine.connect() as conn:
            committed = [Window(s, e) for s, e in conn.execute(select(LoadChunk.window_start, LoadChunk.window_end))]
        with CinnoxClient(sim.url, APP, TOKEN, page_size=PAGE) as client:
            done = load_window(engine, client, YEAR, LedgerKey(APP, "killed", YEAR))
        retried = sim.requests
    with engine.connect() as conn:
        rows = conn.scalar(select(func.count()).select_from(FactSentCampaign))
    engine.dispose()
    # Requests of the retry for a window inside a chunk the killed run had committed.
    reread = [
        r
        for r in retried
        if r.params["limit"] != "1"
        and any(w.start <= datetime.fromisoformat(r.params["startAt"]) < w.end for w in committed)
    ]
    return {
        "total": total,
        "minimal": minimal,
        "chunks_before_kill": kill_after,
        "requests_before_kill": first,
        "requests_retry": len(retried),
        "committed_chunks": len(committed),
        "resumed_chunks": done.resumed_chunks,
        "reread_requests": len(reread),
        "chunk_requests": math.ceil(DEFAULT_CHUNK_RECORDS / PAGE) + 1,
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Chunked loads at production scale")
    parser.add_argument("--phase", choices=["requests", "paced", "resume"], required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("PYTHONPATH", os.getcwd())
    if args.phase == "requests":
        emit({"phase": "requests", "clean": requests(vanish=False), "vanish": requests(vanish=True)})
    elif args.phase == "paced":
        emit({"phase": "paced", **paced()})
    else:
        emit({"phase": "resume", **resume()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
