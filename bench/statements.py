"""Where a load's time goes: each SQL statement's seconds in a first load and a no-op re-load.

    python -m bench.statements --records 100000

The profile behind docs/benchmarks.md's "What limits each figure now": the synthetic records
of bench.load, held in memory as decoded pages, loaded twice into a fresh database
(`cinnox_bench_statements`), with SQLAlchemy's cursor events timing every statement. What the
statements do not account for is the COPY into the stage with the Python work per record
that feeds it, and the commit.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from typing import Any

from sqlalchemy import event

from bench.common import fresh_database, quiesce
from bench.load import APP, WINDOW, pages
from warehouse.db import create_warehouse_engine
from warehouse.load import load_sent_campaigns
from warehouse.migrate import upgrade_to_head

SHOWN = 12


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Per-statement timings of a first load and a no-op re-load")
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args(argv)
    engine = create_warehouse_engine(fresh_database("cinnox_bench_statements"))
    upgrade_to_head(engine)
    seconds: Counter[str] = Counter()

    @event.listens_for(engine, "before_cursor_execute")
    def started(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        conn.info["statement_started"] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def finished(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        seconds[" ".join(statement.split())[:100]] += time.perf_counter() - conn.info["statement_started"]

    source = list(pages(args.records))
    for load in ("first load", "no-op re-load"):
        seconds.clear()
        quiesce(engine.url.render_as_string(hide_password=False))
        began = time.perf_counter()
        load_sent_campaigns(engine, APP, WINDOW, source)
        total = time.perf_counter() - began
        statements = sum(seconds.values())
        print(f"{load} of {args.records:,}: {total:.2f} s ({args.records / total:,.0f} rows/s)")
        print(f"  {total - statements:6.2f}  COPY into the stage (with the Python work per record), commit")
        for text, spent in seconds.most_common(SHOWN):
            print(f"  {spent:6.2f}  {text}")
        print(f"  {statements - sum(s for _, s in seconds.most_common(SHOWN)):6.2f}  the other statements")
    engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
