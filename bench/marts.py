"""Mart benchmark: the ten example queries of docs/warehouse.md on a warehouse of N campaigns.

    python -m bench.marts --records 100000

Loads N synthetic campaigns (bench.load's records) twice, a day apart and with a tenth of the
read counters moved, so the counter history has more than one row for some campaigns; then
times each documented query as the cinnox_reader role. The figure that decides whether the
marts can stay plain views (docs/warehouse.md): every query answers in about a second or less.
Each is compared with a full scan of the fact measured in the same run. Writes JSON to
bench/results/marts-<records>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from bench.common import fresh_database
from bench.load import APP, START, WINDOW, pages
from warehouse.db import create_warehouse_engine
from warehouse.load import load_sent_campaigns
from warehouse.migrate import upgrade_to_head

DOC = Path(__file__).resolve().parents[1] / "docs" / "warehouse.md"
RESULTS = Path(__file__).resolve().parent / "results"


def documented_queries() -> list[str]:
    blocks = re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    return [block for block in blocks if not block.lstrip().startswith("CREATE ROLE")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Mart query benchmark")
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args(argv)
    # A database of its own: the load benchmark drops and recreates its own.
    url = fresh_database("cinnox_bench_marts")
    engine = create_warehouse_engine(url)
    upgrade_to_head(engine)
    n = args.records
    observed = START + timedelta(days=370)
    started = time.perf_counter()
    load_sent_campaigns(engine, APP, WINDOW, pages(n, fetched=observed))
    # A day later with a tenth of the counters moved: a second history row for those.
    load_sent_campaigns(engine, APP, WINDOW, pages(n, changed=True, fetched=observed + timedelta(days=1)))
    load_seconds = time.perf_counter() - started

    timings: list[dict[str, object]] = []
    with engine.connect() as conn:
        snapshots = conn.scalar(text("SELECT count(*) FROM cinnox.fact_sent_campaign_snapshot"))
        conn.execute(text("SET ROLE cinnox_reader"))
        started = time.perf_counter()
        conn.execute(text("SELECT count(*), sum(delivered) FROM cinnox.fact_sent_campaign")).all()
        scan_seconds = time.perf_counter() - started
        for number, query in enumerate(documented_queries(), start=1):
            started = time.perf_counter()
            rows = len(conn.execute(text(query)).all())
            seconds = time.perf_counter() - started
            ratio = round(seconds / scan_seconds, 1)
            timings.append({"query": number, "seconds": round(seconds, 3), "rows": rows,
                            "baseline": "full scan of the fact", "ratio": ratio})  # fmt: skip
    engine.dispose()

    print(f"\nMart queries, {n:,} campaigns, {snapshots:,} history rows, {platform.node()} ({os.cpu_count()} cores)")
    print(f"(two loads took {load_seconds:.1f} s; a full scan of the fact {scan_seconds * 1000:.0f} ms)")
    print(f"{'query':>5} {'seconds':>8} {'rows':>6} {'x full scan':>12}")
    for t in timings:
        print(f"{t['query']:>5} {t['seconds']:>8.3f} {t['rows']:>6} {t['ratio']:>12}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"marts-{n}.json"
    out.write_text(json.dumps({"records": n, "measured_at": datetime.now(UTC).isoformat(),
                               "full_scan_seconds": scan_seconds, "queries": timings}, indent=2))  # fmt: skip
    print(f"written to {out.relative_to(RESULTS.parent.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
