"""Rebuild phase: the star re-derived from cinnox_raw, against plain COPY measured in the same run.

    python -m bench.rebuild --records 100000

Run by `python -m bench` in a subprocess of its own. The warehouse is built by a first load of
the synthetic records (streamed, as the --memory run of bench.load); the rebuild of it is timed,
its rows written counted, and the process's peak RSS read before the COPY baseline, whose
flattened rows are held in memory, runs last (the median of COPY_SAMPLES runs).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from sqlalchemy import func, select

from bench.common import Figure, current_xid, emit, fresh_database, peak_rss_mb, quiesce, rows_written_since
from bench.load import APP, COPY_SAMPLES, WINDOW, copy_baseline_seconds, flatten, pages, synthetic_records
from warehouse.db import create_warehouse_engine
from warehouse.load import load_sent_campaigns
from warehouse.load.rebuild import rebuild
from warehouse.migrate import upgrade_to_head
from warehouse.models import FactSentCampaign


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
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
