"""`make bench`: every figure, each against a baseline measured in the same run.

    python -m bench --records 100000                       # 4 to 7 minutes on 2 cores
    python -m bench --records 1000000                      # the 1M load figures too

Each phase runs in a subprocess of its own (bench.load, bench.rebuild, bench.backfill,
bench.chunks), so each peak RSS is that phase's alone. Prints a table and writes
bench/results/bench-<records>.json. Uses DATABASE_URL's server (databases `cinnox_bench`,
`cinnox_bench_rebuild`, `cinnox_bench_chunks` and, for the Dagster runs stored in PostgreSQL,
`cinnox_bench_dagster` there, dropped and recreated), else the embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from bench.common import RESULT_MARK, Figure, quiesce, server_url

RESULTS = Path(__file__).resolve().parent / "results"


def run_phase(module: str, *args: str) -> dict[str, Any]:
    command = [sys.executable, "-m", module, *args]
    quiesce(server_url())  # the previous phase's autovacuum, out of this phase's figures
    print(f"  $ python -m {module} {' '.join(args)}", flush=True)
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if completed.returncode != 0 or not lines:
        sys.stderr.write(completed.stdout[-4000:] + completed.stderr[-4000:])
        raise SystemExit(f"benchmark phase {module} {args} failed (exit {completed.returncode})")
    result: dict[str, Any] = json.loads(lines[-1][len(RESULT_MARK) :])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The project's benchmark")
    parser.add_argument("--records", type=int, default=100_000, help="records for the load figures")
    parser.add_argument(
        "--memory-records", default="100000,1000000", help="sizes whose first load's peak RSS is compared"
    )
    parser.add_argument("--latency", type=float, default=0.05, help="simulator seconds per request")
    parser.add_argument("--rate", type=float, default=20.0, help="simulator rate limit and client budget, req/s")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    figures: list[Figure] = []
    print(f"Benchmark: {args.records:,} records; backfill of 2 apps x 365 days at {args.rate:g} req/s, "
          f"{args.latency * 1000:g} ms per request")  # fmt: skip

    load = run_phase("bench.load", "--records", str(args.records))
    figures += [Figure(**f) for f in load["figures"]]

    rebuilt = run_phase("bench.rebuild", "--records", str(args.records))
    figures += [Figure(**f) for f in rebuilt["figures"]]

    small, large = (int(size) for size in args.memory_records.split(","))
    memory = {size: run_phase("bench.load", "--records", str(size), "--memory") for size in (small, large)}
    growth = memory[large]["peak_rss_mb"] - memory[small]["peak_rss_mb"]
    for size in (small, large):
        rss = memory[size]["peak_rss_mb"]
        figures.append(Figure(f"peak RSS, first load of {size:,}", rss, "MB", f"first load of {small:,}",
                              memory[small]["peak_rss_mb"], rss / memory[small]["peak_rss_mb"], size))  # fmt: skip
    figures.append(Figure(f"peak RSS growth {small:,} -> {large:,}", growth, "MB", "target", 50.0, growth / 50.0,
                          None, "< 50 MB"))  # fmt: skip
    large_rate = large / (memory[large]["seconds"] - memory[large]["source_seconds"])
    figures.append(Figure(f"first load rate at {large:,} (memory run)", large_rate, "rows/s", "", 0.0, 0.0, large))

    timing = ["--latency", str(args.latency), "--rate", str(args.rate)]
    extract = run_phase("bench.backfill", "--phase", "extract", *timing)
    requests = sum(app["requests"] for app in extract["apps"].values())
    floor = requests / args.rate
    figures.append(Figure(f"extraction, 2 apps x 365 days, {requests} requests", extract["seconds"], "s",
                          "floor: requests / rate", floor, extract["seconds"] / floor, None, "<= 1.2"))  # fmt: skip
    figures.append(Figure("429s seen at the budget = the limit", extract["throttled"], "responses", "", 0, 0,
                          None, "0"))  # fmt: skip
    figures.append(Figure("peak RSS, extraction", extract["peak_rss_mb"], "MB", "", 0, 0))

    bare = run_phase("bench.backfill", "--phase", "bare", *timing)
    dagster = run_phase("bench.backfill", "--phase", "dagster", *timing)
    figures.append(Figure("extraction + load, no Dagster", bare["seconds"], "s", "floor: requests / rate",
                          bare["requests"] / args.rate, bare["seconds"] / (bare["requests"] / args.rate),
                          bare["records"]))  # fmt: skip
    figures.append(Figure(f"Dagster backfill, {dagster['runs']} runs for {dagster['apps']} apps, in-memory instance",
                          dagster["seconds"], "s", "extraction + load, no Dagster", bare["seconds"],
                          dagster["seconds"] / bare["seconds"], dagster["records"],
                          "<= 1.2, <= 1 run per app"))  # fmt: skip
    figures.append(Figure("429s seen, Dagster backfill", dagster["throttled"], "responses", "", 0, 0, None, "0"))
    # The same runs stored in PostgreSQL, as a production instance stores them: the in-memory
    # instance above costs Dagster less per event than any instance a deployment runs.
    stored = run_phase("bench.backfill", "--phase", "dagster", "--instance", "postgres", *timing)
    figures.append(Figure("Dagster backfill, runs stored in PostgreSQL", stored["seconds"], "s",
                          "extraction + load, no Dagster", bare["seconds"], stored["seconds"] / bare["seconds"],
                          stored["records"], "<= 1.2"))  # fmt: skip
    figures.append(Figure("metadata per materialization event, largest", dagster["metadata_bytes_max"], "bytes",
                          "target", 2048, dagster["metadata_bytes_max"] / 2048, None, "< 2 KB"))  # fmt: skip

    # Production scale: a year of an app with about 60,000 campaigns, read in chunks.
    chunked = run_phase("bench.chunks", "--phase", "requests")
    for case, target in (("clean", "<= 1.05"), ("vanish", "<= 1.10")):
        c = chunked[case]
        what = "clean" if case == "clean" else "one campaign vanishing mid-read"
        figures.append(Figure(f"requests, a year of {c['total']:,} campaigns, {what}", c["requests"], "requests",
                              "minimal: one read, page by page", c["minimal"], c["requests"] / c["minimal"],
                              c["fact_rows_written"], target))  # fmt: skip
    paced = run_phase("bench.chunks", "--phase", "paced")
    figures.append(Figure(f"longest transaction, a year at 10 req/s ({paced['chunks']} chunks)",
                          paced["longest_transaction_seconds"], "s", "target", 60.0,
                          paced["longest_transaction_seconds"] / 60.0, None, "<= 60 s"))  # fmt: skip
    resumed = run_phase("bench.chunks", "--phase", "resume")
    figures.append(Figure(f"re-read after a kill at {resumed['committed_chunks']} chunks, then a retry",
                          resumed["reread_requests"], "requests", "one chunk", resumed["chunk_requests"],
                          resumed["reread_requests"] / resumed["chunk_requests"], None, "<= one chunk"))  # fmt: skip
    figures.append(Figure("peak RSS, Dagster backfill", dagster["peak_rss_mb"], "MB", "extraction + load, no Dagster",
                          bare["peak_rss_mb"], dagster["peak_rss_mb"] / bare["peak_rss_mb"]))  # fmt: skip

    url = make_url(server_url())
    machine = f"{platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    server = f"PostgreSQL at {url.host or url.query.get('host')}"
    print(f"\n{machine}; {server}; {time.perf_counter() - began:.0f}s in all")
    header = f"{'figure':<56} {'value':>11} {'unit':<9} {'baseline':>11} {'ratio':>7} {'rows written':>12}  target"
    print(header + "\n" + "-" * len(header))
    for f in figures:
        written = f"{f.rows_written:,}" if f.rows_written is not None else ""
        base = f"{f.baseline_value:,.1f}" if f.baseline else ""
        ratio = f"{f.ratio:.3f}" if f.baseline else ""
        print(f"{f.name:<56} {f.value:>11,.1f} {f.unit:<9} {base:>11} {ratio:>7} {written:>12}  {f.target}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bench-{args.records}.json"
    out.write_text(
        json.dumps(
            {
                "records": args.records,
                "measured_at": datetime.now(UTC).isoformat(),
                "machine": machine,
                "server": server,
                "seconds": time.perf_counter() - began,
                "figures": [asdict(f) for f in figures],
                "phases": {
                    "load": load,
                    "rebuild": rebuilt,
                    "memory": memory,
                    "extract": extract,
                    "bare": bare,
                    "dagster": dagster,
                    "dagster_postgres_instance": stored,
                    "chunks": chunked,
                    "paced": paced,
                    "resume": resumed,
                },
            },
            indent=2,
        )
    )
    print(f"written to {out.relative_to(RESULTS.parent.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
