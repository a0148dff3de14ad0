"""`make rebuild`: re-derive the star from cinnox_raw, without one API request.

    python -m pipelines.rebuild [--app APP_ID ...]
    make rebuild [APP=app-id]

Uses DATABASE_URL when it is set, else the embedded PostgreSQL (as `make run`). One
transaction per app: readers see the app's old rows until its rebuild commits, then the new.
The settle policy and the merge-lock wait come from the same settings as the loads
(CINNOX_SETTLE_QUIET_HOURS, CINNOX_SETTLE_FINAL_DAYS, CINNOX_MERGE_LOCK_TIMEOUT_SECONDS).
The same rebuild as a Dagster job, launchable from the UI: `cinnox_rebuild` (pipelines.rebuild_job).
"""

import argparse
import logging
import os
import sys
from collections.abc import Mapping
from datetime import timedelta

from pipelines.settings import SettingsError, whole_number
from warehouse.errors import classify
from warehouse.load import DEFAULT_MERGE_LOCK_TIMEOUT, MergeLockTimeout, SettlePolicy
from warehouse.load.rebuild import RebuildError, rebuild


def _settle_from_env(environ: Mapping[str, str]) -> tuple[SettlePolicy, float]:
    def whole(name: str, default: int) -> int:
        text = environ.get(name, "")
        return whole_number(name, text, minimum=0) if text.strip() else default

    settle = SettlePolicy(
        quiet=timedelta(hours=whole("CINNOX_SETTLE_QUIET_HOURS", 48)),
        final_age=timedelta(days=whole("CINNOX_SETTLE_FINAL_DAYS", 30)),
    )
    return settle, float(whole("CINNOX_MERGE_LOCK_TIMEOUT_SECONDS", int(DEFAULT_MERGE_LOCK_TIMEOUT)))


def main(argv: list[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--app", action="append", default=[], help="a CINNOX app id to rebuild (repeatable; default: every app)"
    )
    args = parser.parse_args(argv)
    apps = [a for a in (app.strip() for app in args.app) if a] or None
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("warehouse.rebuild").setLevel(logging.INFO)
    from warehouse.db import create_warehouse_engine
    from warehouse.migrate import upgrade_to_head

    try:
        settle, lock_timeout = _settle_from_env(environ)
        url = environ.get("DATABASE_URL")
        if not url:
            from devenv.postgres import embedded_warehouse_url

            url = embedded_warehouse_url()
        engine = create_warehouse_engine(url)
        try:
            upgrade_to_head(engine)
            results = rebuild(engine, apps, settle=settle, lock_timeout=lock_timeout)
        finally:
            engine.dispose()
    except (RebuildError, SettingsError, MergeLockTimeout) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        failure = classify(exc)
        if failure is None:
            raise
        print(f"error: rebuild failed, nothing of the app in progress changed: {failure.message}", file=sys.stderr)
        return 1
    total = sum(r.rows_written for r in results)
    seconds = sum(r.seconds for r in results)
    records = sum(r.records for r in results)
    print(
        f"Rebuilt {len(results)} app(s) from cinnox_raw in {seconds:.1f}s: {records} raw records, "
        f"{sum(r.fact_rows for r in results)} campaigns, {total} rows written; no CINNOX request."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
