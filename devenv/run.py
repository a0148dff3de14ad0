"""`make run`: load the last N days of every app through Dagster, then print what landed.

    python -m devenv.run [--days 30]

Uses DATABASE_URL and the CINNOX settings when they are set; otherwise starts the embedded
PostgreSQL and the simulator (see devenv.stack). Exits non-zero if any app's run failed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import UTC, datetime
from urllib.parse import unquote

import dagster as dg
from sqlalchemy import Engine

from devenv.postgres import data_dir
from devenv.psql import libpq_url
from devenv.stack import LocalStack, local_stack
from pipelines.assets import sent_campaigns_key
from pipelines.definitions import build_definitions
from pipelines.partitions import range_tags
from pipelines.settings import PipelineSettings, SettingsError
from warehouse.db import create_warehouse_engine
from warehouse.migrate import upgrade_to_head
from warehouse.reporting import campaign_summary

# Dagster's console logger at INFO: the asset's own progress lines, not every step event.
_PROGRESS_LOGGING = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=30, help="how many days to load, today included (default 30)")
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be at least 1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        with local_stack() as stack:
            return _run(stack, args.days)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(stack: LocalStack, days: int) -> int:
    print(_describe(stack))
    engine = create_warehouse_engine(stack.database_url)
    upgrade_to_head(engine)
    print("Warehouse schema is at the newest migration.")

    settings = PipelineSettings.from_env(os.environ)
    defs = build_definitions(os.environ)
    job = defs.resolve_implicit_global_asset_job_def()
    partitions = job.partitions_def
    assert partitions is not None
    keys = partitions.get_partition_keys(current_time=datetime.now(UTC))[-days:]
    print(f"Loading {keys[0]} .. {keys[-1]} for {len(settings.apps)} apps, one Dagster run per app:")

    failed = 0
    with dg.DagsterInstance.get() as instance:
        for app in settings.apps:
            key = sent_campaigns_key(app)
            result = job.execute_in_process(
                run_config=_PROGRESS_LOGGING,
                instance=instance,
                asset_selection=[key],
                tags=range_tags(keys[0], keys[-1]),
                raise_on_error=False,
            )
            failed += not result.success
            print(f"  {app.app_id}: {_outcome(result, key)}")

    print()
    print(_summary_table(engine))
    print()
    print(_how_to_connect(stack))
    engine.dispose()
    return 1 if failed else 0


def _describe(stack: LocalStack) -> str:
    db = f"embedded PostgreSQL ({data_dir()})" if stack.embedded_database else "DATABASE_URL"
    api = f"CINNOX simulator at {stack.simulator.url}" if stack.simulator else "CINNOX at CINNOX_BASE_URL"
    return f"Warehouse: {db}. Source: {api}."


def _outcome(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> str:
    if not result.success:
        failures = [event.message or "" for event in result.all_events if event.is_failure]
        return "FAILED: " + (failures[-1] if failures else "see the run's logs in `make dev`")
    # Each day carries its own figures; the last day also the run's (run_...).
    events = [e for e in result.get_asset_materialization_events() if e.asset_key == key]
    event = max(events, key=lambda e: str(e.partition))
    meta = {name: value.value for name, value in event.materialization.metadata.items()}
    checks = result.get_asset_check_evaluations()
    passed = sum(1 for check in checks if check.passed)
    return (
        f"{meta['run_records_fetched']} records in {meta['run_chunks']} chunk(s), {meta['run_requests']} requests; "
        f"{meta['run_inserted']} inserted, {meta['run_updated']} updated, {meta['run_unchanged']} unchanged, "
        f"{meta['run_rejected']} rejected; checks {passed}/{len(checks)} passed (run {result.run_id[:8]})"
    )


def _summary_table(engine: Engine) -> str:
    rows = campaign_summary(engine)
    header = f"{'app':<14} {'channel':<9} {'campaigns':>9} {'recipients':>11} {'delivery rate':>13} {'read rate':>9}"
    lines = ["Warehouse now holds:", header, "-" * len(header)]
    for row in rows:
        delivery = f"{row.delivery_rate:.1%}" if row.delivery_rate is not None else "-"
        read = f"{row.read_rate:.1%}" if row.read_rate is not None else "-"
        lines.append(
            f"{row.app_id:<14} {row.channel:<9} {row.campaigns:>9,} {row.recipients:>11,} {delivery:>13} {read:>9}"
        )
    return "\n".join(lines)


def _how_to_connect(stack: LocalStack) -> str:
    if stack.embedded_database:
        return (
            # Unquoted for reading: the socket folder is a path, and psql takes it as it is.
            f"Query it: `make psql` (or: psql '{unquote(libpq_url(stack.database_url))}'), starting with\n"
            "  the cinnox_mart views (docs/warehouse.md has example queries).\n"
            "Browse runs and assets: `make dev`, then http://127.0.0.1:3000. Stop the embedded server: `make stop`."
        )
    return (
        'Query it with psql "$DATABASE_URL": the cinnox_mart views first (docs/warehouse.md). '
        "Browse runs and assets: `make dev`, then http://127.0.0.1:3000."
    )


if __name__ == "__main__":
    sys.exit(main())
