"""Rebuild phase: the star re-derived from cinnox_raw, against plain COPY measured in the same run.

    python -m bench.rebuild --records 100000

Run by `python -m bench` in a subprocess of its own. The warehouse is built by a first load of
the synthetic records (streamed, as the --memory run of bench.load); the rebuild of it is timed,
its rows written counted, and the process's peak RSS read before the COPY baseline, whose
flattened rows are held in memory, runs last (the median of COPY_SAMPLES runs).

Before that baseline, the rebuild's two halves, each alone, against the same COPY: the replay
with nothing written (the order planned, every stored record read and put through today's
rules; Python, with the plan and the reading on PostgreSQL's side), and the writes with no
replay (the rebuilt fact and history copied into fresh tables, their keys and indexes built
once, as a rebuild into fresh tables and a swap would write at best). A rebuild does both, on
the same two cores.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from sqlalchemy import Column, Engine, MetaData, PrimaryKeyConstraint, Table, UniqueConstraint, func, select
from sqlalchemy.schema import AddConstraint, CreateIndex

from bench.common import Figure, current_xid, emit, fresh_database, peak_rss_mb, quiesce, rows_written_since
from bench.load import APP, COPY_SAMPLES, WINDOW, copy_baseline_seconds, flatten, pages, synthetic_records
from warehouse.db import create_warehouse_engine
from warehouse.load import load_sent_campaigns
from warehouse.load.rebuild import RebuildResult, rebuild, replay_rows
from warehouse.load.replay import ReplayReader
from warehouse.migrate import upgrade_to_head
from warehouse.models import NAMING_CONVENTION, FactSentCampaign, FactSentCampaignSnapshot, table_of


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Rebuild phase of the benchmark")
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args(argv)
    n = args.records
    url = fresh_database("cinnox_bench_rebuild")  # its own: may run beside bench.load
    engine = create_warehouse_engine(url)
    upgrade_to_head(engine)
    started = time.perf_counter()
    loaded = load_sent_campaigns(engine, APP, WINDOW, pages(n))
    load_seconds = time.perf_counter() - started
    assert loaded.inserted == n, loaded

    quiesce(url)
    xid = current_xid(url)
    started = time.perf_counter()
    (result,) = rebuild(engine, [APP])
    seconds = time.perf_counter() - started
    written = rows_written_since(url, xid)
    rss = peak_rss_mb()
    with engine.connect() as conn:
        facts = conn.scalar(select(func.count()).select_from(FactSentCampaign))
    assert facts == n, facts
    quiesce(url)
    replay_seconds, replay_cpu = replay_alone(engine)
    quiesce(url)
    writes_seconds, writes_rows = writes_alone(engine)
    engine.dispose()

    rows: list[tuple[Any, ...]] = [flatten(record) for record in synthetic_records(n)]
    copy_rates = []
    for _ in range(COPY_SAMPLES):
        quiesce(url)
        copy_rates.append(n / copy_baseline_seconds(url, rows))
    copy_rate = statistics.median(copy_rates)
    rate = n / seconds
    figures = [
        Figure(f"COPY into logged table with PK (rebuild run), median of {COPY_SAMPLES}", copy_rate, "rows/s",
               "itself", copy_rate, 1.0, n),
        Figure(f"rebuild from raw, {n:,} campaigns (dims, fact, history, rejects)", rate, "rows/s",
               "COPY into logged table with PK", copy_rate, rate / copy_rate, sum(written.values()), ">= 0.25"),
        Figure("peak RSS, first load + rebuild", rss, "MB", "", 0.0, 0.0),
        Figure("rebuild's replay alone: order, read, today's rules; nothing written", n / replay_seconds, "rows/s",
               "COPY into logged table with PK", copy_rate, n / replay_seconds / copy_rate, 0),
        Figure("rebuild's writes alone: fact and history into fresh tables, indexes built once",
               n / writes_seconds, "rows/s", "COPY into logged table with PK", copy_rate,
               n / writes_seconds / copy_rate, writes_rows),
    ]  # fmt: skip
    emit(
        {
            "records": n,
            "figures": figures,
            "seconds": seconds,
            "first_load_seconds": load_seconds,
            "steps": result.steps,
            "copy_rates": copy_rates,
            "written": written,
            "peak_rss_mb": rss,
            "replay_alone_seconds": replay_seconds,
            "replay_alone_cpu_seconds": replay_cpu,
            "writes_alone_seconds": writes_seconds,
        }
    )
    return 0


def replay_alone(engine: Engine) -> tuple[float, float]:
    """The rebuild's replay with nothing staged or written: wall seconds, and this process's CPU
    seconds (its threads' too: the reader's fetches)."""
    began, cpu = time.perf_counter(), time.process_time()
    with ReplayReader(engine, APP) as replay:
        for step in range(1, len(replay.step_sizes()) + 1):
            for batch in replay.batches(step):
                for _ in replay_rows(batch, RebuildResult(APP), []):
                    pass
    return time.perf_counter() - began, time.process_time() - cpu


def writes_alone(engine: Engine) -> tuple[float, int]:
    """PostgreSQL writing the rebuilt fact and history with no replay: each copied into a fresh
    logged table, then given the model's keys and indexes, built once, in one transaction.
    Seconds and rows written; the copies are dropped afterwards."""
    keyed, bare = MetaData(naming_convention=NAMING_CONVENTION), MetaData()
    tables = []
    rows = 0
    began = time.perf_counter()
    with engine.begin() as conn:
        for model in (FactSentCampaign, FactSentCampaignSnapshot):
            source = table_of(model)
            copy = source.to_metadata(keyed, schema="public", name=f"bench_alone_{source.name}")
            # The same table with its columns alone: filled first, keyed and indexed after.
            heap = Table(copy.name, bare, *(Column(c.name, c.type) for c in source.columns), schema="public")
            heap.create(conn)
            tables.append(heap)
            filled = heap.insert().from_select([c.name for c in source.columns], select(source))
            rows += conn.execute(filled.execution_options(preserve_rowcount=True)).rowcount
            for constraint in copy.constraints:
                if isinstance(constraint, PrimaryKeyConstraint | UniqueConstraint):
                    conn.execute(AddConstraint(constraint))
            for index in copy.indexes:
                conn.execute(CreateIndex(index))
    seconds = time.perf_counter() - began
    with engine.begin() as conn:
        for table in tables:
            table.drop(conn)
    return seconds, rows


if __name__ == "__main__":
    raise SystemExit(main())
