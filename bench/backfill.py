"""Backfill phases: extraction against a rate-limited simulator, bare and through Dagster.

    python -m bench.backfill --phase extract   # pages only: wall time against requests / rate
    python -m bench.backfill --phase bare      # extraction + load, no Dagster
    python -m bench.backfill --phase dagster   # the same through Dagster, one run per app
    python -m bench.backfill --phase dagster --instance sqlite    # on `make run`'s kind of instance
    python -m bench.backfill --phase dagster --instance postgres  # on production's kind

Each phase starts its own simulator (per-request latency, per-app rate limit) and, for the
loads, its own fresh database; `python -m bench` runs each in a subprocess of its own so the
peak RSS it reports belongs to that phase alone. The client's budget is set to the limit.

The Dagster phase keeps its runs in an in-memory instance by default (`python -m bench` uses
that). `--instance sqlite` stores them in a fresh folder as `./dagster.yaml` does for `make run`
and `make dev`; `--instance postgres` in a fresh database `<BENCH_DATABASE>_dagster` on the
benchmark's server, as `deploy/production/dagster.yaml` does on its own. Their tables are
created before the timed part; opening the instance is in it, as the in-memory one's creation.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import make_url

from bench.common import emit, fresh_database, peak_rss_mb
from cinnox import CinnoxClient, ExtractionStats, RateLimiter, Window
from cinnox.simulator import DEFAULT_APPS, SimulatorServer
from warehouse.db import create_warehouse_engine
from warehouse.load import LedgerKey
from warehouse.load.chunks import load_window
from warehouse.migrate import upgrade_to_head

if TYPE_CHECKING:
    import dagster as dg

DAYS = 365
INSTANCES = ("ephemeral", "sqlite", "postgres")


def backfill_window(now: datetime) -> Window:
    """The last DAYS whole UTC days before `now` (a day start)."""
    return Window(now - timedelta(days=DAYS), now)


def _simulator(latency: float, rate: float) -> SimulatorServer:
    return SimulatorServer(latency=latency, rate_limit=rate).start()


def _client(sim: SimulatorServer, app_id: str, rate: float) -> CinnoxClient:
    return CinnoxClient(sim.url, app_id, DEFAULT_APPS[app_id], rate_limiter=RateLimiter(rate))


def _throttled(sim: SimulatorServer) -> int:
    return sum(1 for request in sim.requests if request.rate_limited)


def extract(latency: float, rate: float) -> dict[str, Any]:
    with _simulator(latency, rate) as sim:
        window = backfill_window(sim.now)
        per_app: dict[str, dict[str, Any]] = {}
        started = time.perf_counter()
        for app_id in DEFAULT_APPS:
            stats = ExtractionStats()
            app_started = time.perf_counter()
            with _client(sim, app_id, rate) as client:
                for _ in client.sent_campaign_pages(window, stats):
                    pass
            per_app[app_id] = {
                "seconds": time.perf_counter() - app_started,
                "requests": stats.requests,
                "records": stats.records,
            }
        seconds = time.perf_counter() - started
        return {"seconds": seconds, "apps": per_app, "throttled": _throttled(sim), "peak_rss_mb": peak_rss_mb()}


def bare(latency: float, rate: float) -> dict[str, Any]:
    url = fresh_database(os.environ.get("BENCH_DATABASE", "cinnox_bench"))
    engine = create_warehouse_engine(url)
    upgrade_to_head(engine)
    with _simulator(latency, rate) as sim:
        window = backfill_window(sim.now)
        requests = records = 0
        started = time.perf_counter()
        for app_id in DEFAULT_APPS:
            # The run's own path without Dagster: the same chunks, ledger and transactions.
            with _client(sim, app_id, rate) as client:
                done = load_window(engine, client, window, LedgerKey(app_id, f"bench-{app_id}", window))
            assert done.result.inserted == done.result.records, done.result
            requests += done.stats.requests
            records += done.result.records
        seconds = time.perf_counter() - started
        throttled = _throttled(sim)
    engine.dispose()
    return {
        "seconds": seconds,
        "requests": requests,
        "records": records,
        "throttled": throttled,
        "peak_rss_mb": peak_rss_mb(),
    }


@contextmanager
def instance_home(kind: str) -> Iterator[str | None]:
    """For `kind` (one of INSTANCES): None for the in-memory instance, else a fresh DAGSTER_HOME
    whose storage is already created, as a deployment's is before its runs."""
    if kind == "ephemeral":
        yield None
        return
    with tempfile.TemporaryDirectory() as home:
        if kind == "sqlite":
            storage = f"storage:\n  sqlite:\n    base_dir: {Path(home) / 'storage'}\n"
        else:  # dagster-postgres wants psycopg2 (see deploy/production/dagster.yaml)
            url = fresh_database(os.environ.get("BENCH_DATABASE", "cinnox_bench") + "_dagster")
            pg = make_url(url).set(drivername="postgresql+psycopg2").render_as_string(False)
            storage = f"storage:\n  postgres:\n    postgres_url: {pg}\n"
        (Path(home) / "dagster.yaml").write_text(storage + "telemetry:\n  enabled: false\n")
        open_instance(home).dispose()  # creates the storage's tables
        yield home


def open_instance(home: str | None) -> dg.DagsterInstance:
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    return dg.DagsterInstance.ephemeral() if home is None else dg.DagsterInstance.from_ref(InstanceRef.from_dir(home))


def dagster(latency: float, rate: float, instance_kind: str = "ephemeral") -> dict[str, Any]:
    url = fresh_database(os.environ.get("BENCH_DATABASE", "cinnox_bench"))
    upgrade_to_head(create_warehouse_engine(url))
    with _simulator(latency, rate) as sim:
        window = backfill_window(sim.now)
        # Read by the code location's resources at run time, as in `make run`.
        os.environ.update(
            {
                "DATABASE_URL": url,
                "CINNOX_BASE_URL": sim.url,
                "CINNOX_APP_IDS": ",".join(DEFAULT_APPS),
                "CINNOX_PARTITIONS_START": (window.start - timedelta(days=30)).date().isoformat(),
                "CINNOX_REQUESTS_PER_SECOND": str(int(rate)),
            }
        )
        from dagster_shared.serdes import serialize_value

        # After the environment is set: the code location reads it.
        from pipelines.assets import sent_campaigns_key
        from pipelines.definitions import build_definitions
        from pipelines.partitions import range_tags
        from pipelines.settings import AppSettings, PipelineSettings

        for app_id, token in DEFAULT_APPS.items():
            os.environ[AppSettings(app_id).token_env_var] = token
        settings = PipelineSettings.from_env(os.environ)
        job = build_definitions(os.environ).resolve_implicit_global_asset_job_def()
        first = window.start.date().isoformat()
        last = (window.end - timedelta(days=1)).date().isoformat()
        runs = 0
        records = 0
        sizes: list[int] = []  # serialized metadata of each materialization event
        with instance_home(instance_kind) as home:
            started = time.perf_counter()
            with open_instance(home) as instance:
                for app in settings.apps:
                    key = sent_campaigns_key(app)
                    result = job.execute_in_process(
                        instance=instance, asset_selection=[key], tags=range_tags(first, last), raise_on_error=True
                    )
                    runs += 1
                    events = [e for e in result.get_asset_materialization_events() if e.asset_key == key]
                    metadata = max(events, key=lambda e: str(e.partition)).materialization.metadata
                    records += int(metadata["run_inserted"].value)  # type: ignore[arg-type]
                    sizes.extend(len(serialize_value(dict(e.materialization.metadata))) for e in events)  # type: ignore[arg-type]
            seconds = time.perf_counter() - started
        throttled = _throttled(sim)
    return {
        "seconds": seconds,
        "instance": instance_kind,
        "runs": runs,
        "apps": len(settings.apps),
        "records": records,
        "throttled": throttled,
        "peak_rss_mb": peak_rss_mb(),
        "metadata_bytes_max": max(sizes),
        "metadata_bytes_mean": sum(sizes) / len(sizes),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Backfill phases of the benchmark")
    parser.add_argument("--phase", choices=["extract", "bare", "dagster"], required=True)
    parser.add_argument("--latency", type=float, default=0.05, help="simulator seconds per request")
    parser.add_argument("--rate", type=float, default=20.0, help="requests/s per app: the limit and the budget")
    parser.add_argument("--instance", choices=INSTANCES, default="ephemeral", help="the Dagster phase's instance")
    args = parser.parse_args(argv)
    if args.phase == "dagster":
        figures = dagster(args.latency, args.rate, args.instance)
    else:
        figures = {"extract": extract, "bare": bare}[args.phase](args.latency, args.rate)
    emit({"phase": args.phase, "latency": args.latency, "rate": args.rate, **figures})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
