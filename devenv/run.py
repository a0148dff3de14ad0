"""`make run`: load the last N days of every app through Dagster, then print what landed.

    python -m devenv.run [--days 30]

Uses DATABASE_URL and the CINNOX settings when they are set; otherwise starts the embedded
PostgreSQL and the simulator (see devenv.stack). Exits non-zero if any app's run failed, with
the failing step's own error; a setup mistake is one `error:` line (VERBOSE=1: the traceback).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from datetime import UTC, date, datetime
from urllib.parse import unquote

import dagster as dg
from dagster_shared.error import SerializableErrorInfo
from sqlalchemy import Engine

from devenv.demo import load_history
from devenv.errors import check_cinnox, cli, migrated_engine, verbose
from devenv.instance import opened_instance
from devenv.postgres import data_dir
from devenv.psql import libpq_url
from devenv.stack import LocalStack, local_stack
from pipelines.assets import sent_campaigns_key
from pipelines.definitions import build_definitions
from pipelines.partitions import range_tags
from pipelines.settings import PipelineSettings
from warehouse.reporting import campaign_summary

_PROGRESS = "devenv_progress"


@dg.logger(config_schema=None, description="The asset's own log lines, without Dagster's events and tracebacks.")
def _progress_logger(_: dg.InitLoggerContext) -> logging.Logger:
    log = logging.getLogger(f"devenv.{_PROGRESS}")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.addFilter(_own_lines)
        handler.setFormatter(logging.Formatter("    %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(logging.INFO)
    return log


def _own_lines(record: logging.LogRecord) -> bool:
    """Keep what the asset logs itself (progress, warnings); drop Dagster's own step events."""
    meta = getattr(record, "dagster_meta", None) or {}
    if meta.get("dagster_event") is not None:
        return False
    message = str(meta.get("orig_message", record.getMessage()))
    if message.startswith("Dependencies for step "):  # the executor skipping checks after a failure
        return False
    record.msg, record.args = message, ()
    return True


def _run_config() -> dict[str, object]:
    # VERBOSE=1: Dagster's console logger with every event and traceback; else the asset's lines.
    if verbose():
        return {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
    return {"loggers": {_PROGRESS: {}}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=30, help="how many days to load, today included (default 30)")
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be at least 1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    def run() -> int:
        with local_stack() as stack:
            return _run(stack, args.days)

    return cli(run)


def _run(stack: LocalStack, days: int) -> int:
    settings = PipelineSettings.from_env(os.environ)
    if stack.simulator is None:
        check_cinnox(os.environ, settings.apps)
    print(_describe(stack))
    engine = migrated_engine(stack.database_url)
    print("Warehouse schema is at the newest migration.")

    defs = dg.Definitions.merge(
        build_definitions(os.environ),
        dg.Definitions(loggers={_PROGRESS: _progress_logger, **dg.default_loggers()}),
    )
    job = defs.resolve_implicit_global_asset_job_def()
    partitions = job.partitions_def
    assert partitions is not None
    keys = partitions.get_partition_keys(current_time=datetime.now(UTC))[-days:]
    if stack.simulator is not None:
        started = time.monotonic()
        reads = load_history(engine, stack.simulator, date.fromisoformat(keys[0]))
        if reads:
            print(
                f"Demo history: {reads} reads of the simulator at earlier moments of its clock, as the hourly "
                f"refresh would have made them ({time.monotonic() - started:.1f}s; see devenv/demo.py)."
            )
    apps = _count(len(settings.apps), "app")
    print(f"Loading {keys[0]} .. {keys[-1]} for {apps}, one Dagster run per app:", flush=True)

    failed: list[str] = []
    with opened_instance() as instance:
        for app in settings.apps:
            key = sent_campaigns_key(app)
            result = job.execute_in_process(
                run_config=_run_config(),
                instance=instance,
                asset_selection=[key],
                tags=range_tags(keys[0], keys[-1]),
                raise_on_error=False,
            )
            outcome = _outcome(result, key)
            if not result.success:
                failed.append(app.app_id)
            print(f"  {app.app_id}: {outcome}", flush=True)

    if failed:
        engine.dispose()
        sys.stdout.flush()  # the runs' lines before the error line, also when both go to one pipe
        print(
            f"error: the run of {', '.join(failed)} failed, for the reason above; its logs: `make dev` (Runs), "
            "or this again with VERBOSE=1",
            file=sys.stderr,
        )
        return 1
    print()
    print(_summary_table(engine))
    print()
    print(_how_to_connect(stack))
    engine.dispose()
    return 0


def _describe(stack: LocalStack) -> str:
    db = f"embedded PostgreSQL ({data_dir()})" if stack.embedded_database else "DATABASE_URL"
    api = f"CINNOX simulator at {stack.simulator.url}" if stack.simulator else "CINNOX at CINNOX_BASE_URL"
    return f"Warehouse: {db}. Source: {api}."


def _outcome(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> str:
    if not result.success:
        return f"FAILED (run {result.run_id[:8]}): {_root_cause(result)}"
    # Each day carries its own figures; the last day also the run's (run_...).
    events = [e for e in result.get_asset_materialization_events() if e.asset_key == key]
    event = max(events, key=lambda e: str(e.partition))
    meta = {name: value.value for name, value in event.materialization.metadata.items()}
    checks = result.get_asset_check_evaluations()
    passed = sum(1 for check in checks if check.passed)
    warned = sorted(check.check_name for check in checks if not check.passed)
    if warned:  # which ones, so that a newcomer can look them up in the asset's Checks tab
        passed_text = f"{passed}/{len(checks)} passed, not {', '.join(warned)}"
    else:
        passed_text = f"{passed}/{len(checks)} passed"
    return (
        f"{_count(meta['run_records_fetched'], 'record')} in {_count(meta['run_chunks'], 'chunk')}, "
        f"{_count(meta['run_requests'], 'request')}; {meta['run_inserted']} inserted, {meta['run_updated']} updated, "
        f"{meta['run_unchanged']} unchanged, {meta['run_rejected']} rejected; "
        f"checks {passed_text} (run {result.run_id[:8]})"
    )


def _count(number: object, noun: str) -> str:
    """ "1 app", "2 apps": English for a count."""
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _root_cause(result: dg.ExecuteInProcessResult) -> str:
    """The failing step's own error (what the asset raised), not the run's "Steps failed"."""
    errors: list[SerializableErrorInfo] = []
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data.error is not None:
            errors.append(event.step_failure_data.error)
        elif event.is_run_failure and event.job_failure_data.error is not None:
            errors.append(event.job_failure_data.error)
    if not errors:
        failures = [event.message or "" for event in result.all_events if event.is_failure]
        return failures[-1] if failures else "see the run's logs in `make dev`"
    chain: list[SerializableErrorInfo] = []
    error: SerializableErrorInfo | None = errors[0]
    while error is not None:
        chain.append(error)
        error = error.cause or error.context
    # Dagster wraps the asset's exception ("Error occurred while executing op ..."): skip its own.
    own = [e for e in chain if not (e.cls_name or "").startswith("Dagster")] or chain
    text = _message(own[0])
    if len(own) > 1 and _message(own[-1]) not in text:
        text += f" (cause: {_message(own[-1])})"
    return text


def _message(error: SerializableErrorInfo) -> str:
    """The exception's message without its class path, on one line."""
    message = error.message.strip()
    if error.cls_name and ": " in message and message.split(": ", 1)[0].endswith(error.cls_name):
        message = message.split(": ", 1)[1]
    return " ".join(message.split())


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
