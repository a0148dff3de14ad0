"""A backfill as Dagster plans it: one run per app, the same rows as per-day loads, as estimated.

The run requests come from Dagster's own backfill iteration (the function the daemon calls for
a backfill launched from the UI), given the code location's asset graph; each is then executed
against the simulator and a real PostgreSQL.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView
from dagster._core.execution.asset_backfill import AssetBackfillData, execute_asset_backfill_iteration_inner
from sqlalchemy import Engine, select

from cinnox import CinnoxClient, Window
from cinnox.simulator import SimulatorServer
from pipelines.definitions import build_definitions
from pipelines.estimate import estimate
from pipelines.partitions import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG
from warehouse.db import create_warehouse_engine
from warehouse.load import load_sent_campaigns
from warehouse.migrate import upgrade_to_head
from warehouse.models import DimApp, FactSentCampaign

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 6, 15, tzinfo=UTC)
APPS = {"sim-app-1": "tok-backfill-1", "sim-app-2": "tok-backfill-2"}
FIRST, LAST = date(2026, 3, 17), date(2026, 6, 14)  # 90 days
PAGE_SIZE = 100


def _facts(engine: Engine) -> set[tuple[object, ...]]:
    fact = FactSentCampaign
    query = select(
        DimApp.app_id, fact.campaign_id, fact.sent_at, fact.total_recipients, fact.delivered, fact.read,
        fact.replied, fact.pending, fact.failed, fact.campaign_name,
    ).join(DimApp, DimApp.app_key == fact.app_key)  # fmt: skip
    with engine.connect() as conn:
        return {tuple(row) for row in conn.execute(query)}


@pytest.fixture
def sim() -> SimulatorServer:
    with SimulatorServer(apps=APPS, now=NOW) as server:
        yield server  # type: ignore[misc]


# Dagster's own backfill code calls its deprecated AssetSelection.sources(); not ours to fix.
@pytest.mark.filterwarnings("ignore:Function `AssetSelection.sources` is deprecated:DeprecationWarning")
def test_ninety_day_backfill_is_one_run_per_app_with_the_rows_of_per_day_loads(
    warehouse: Engine,
    create_database: Callable[[], str],
    warehouse_url: str,
    sim: SimulatorServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    environ = {
        "DATABASE_URL": warehouse_url,
        "CINNOX_BASE_URL": sim.url,
        "CINNOX_APP_IDS": ",".join(APPS),
        "CINNOX_PAGE_SIZE": str(PAGE_SIZE),
        "CINNOX_REQUESTS_PER_SECOND": "0",  # pacing is tested elsewhere; here it would only add time
        **{f"CINNOX_TOKEN_{app.upper().replace('-', '_')}": token for app, token in APPS.items()},
    }
    for name, value in environ.items():
        monkeypatch.setenv(name, value)

    # The estimate, made before the backfill through the command line, as a data engineer would.
    estimates = {}
    for app in APPS:
        done = subprocess.run(
            [sys.executable, "-m", "pipelines.estimate", "--app", app, "--start", str(FIRST), "--end", str(LAST)],
            cwd=ROOT,
            env={**os.environ, **environ, "CINNOX_REQUESTS_PER_SECOND": "10"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "1 run (single-run backfill)" in done.stdout
        requests_line = next(line for line in done.stdout.splitlines() if "API requests:" in line)
        estimates[app] = int(requests_line.split("API requests: ")[1].split(" ")[0])

    # Dagster's backfill planning, as for a backfill of both assets launched from the UI.
    defs = build_definitions(os.environ)
    keys = [dg.AssetKey(["cinnox", "sent_campaigns", app.replace("-", "_")]) for app in APPS]
    partition_names = [str(FIRST + timedelta(days=n)) for n in range((LAST - FIRST).days + 1)]
    assert len(partition_names) == 90
    instance = dg.DagsterInstance.ephemeral()
    graph_view = AssetGraphView.for_test(defs, instance, effective_dt=NOW)
    backfill = AssetBackfillData.from_asset_partitions(
        asset_graph=defs.resolve_asset_graph(),
        partition_names=partition_names,
        asset_selection=keys,
        dynamic_partitions_store=instance,
        all_partitions=False,
        backfill_start_timestamp=NOW.timestamp(),
    )
    result = execute_asset_backfill_iteration_inner(
        "test-backfill", backfill, graph_view, NOW.timestamp(), logging.getLogger("test"), None
    )
    requests = result.run_requests
    # Not one run per day: at most one per app (Dagster puts assets with the same partitions and
    # a single-run policy in one run; the in-process executor then runs the apps one by one).
    assert 1 <= len(requests) <= len(APPS)
    assert {key for request in requests for key in request.asset_selection or []} == set(keys)
    for request in requests:
        assert request.tags[PARTITION_RANGE_START_TAG] == str(FIRST)
        assert request.tags[PARTITION_RANGE_END_TAG] == str(LAST)

    # Run them, counting the requests each makes against the estimate.
    job = defs.resolve_implicit_global_asset_job_def()
    sim.reset_requests()
    for request in requests:
        run = job.execute_in_process(
            instance=instance, asset_selection=request.asset_selection, tags=request.tags, raise_on_error=False
        )
        assert run.success
    made = {app: sum(r.app_id == app for r in sim.requests) for app in APPS}
    for app, count in made.items():
        assert abs(estimates[app] - count) <= 0.1 * count, (app, estimates[app], count)

    # The same rows as loading day by day.
    per_day_url = create_database()
    per_day = create_warehouse_engine(per_day_url)
    try:
        upgrade_to_head(per_day)
        for app, token in APPS.items():
            with CinnoxClient(sim.url, app, token, page_size=PAGE_SIZE) as client:
                for name in partition_names:
                    start = datetime.combine(date.fromisoformat(name), datetime.min.time(), UTC)
                    window = Window(start, start + timedelta(days=1))
                    load_sent_campaigns(per_day, app, window, client.sent_campaign_pages(window))
        by_day = _facts(per_day)
    finally:
        per_day.dispose()
    backfilled = _facts(warehouse)
    assert len(backfilled) > 3000
    assert backfilled == by_day


def test_estimate_counts_one_request_for_an_empty_window(sim: SimulatorServer) -> None:
    with CinnoxClient(sim.url, "sim-app-1", APPS["sim-app-1"], page_size=1) as client:
        result = estimate(client, date(2026, 7, 1), date(2026, 7, 31), PAGE_SIZE, 10)  # after NOW
    assert result.campaigns == 0
    assert result.requests == 1  # the client still asks once and finds the window empty
    assert result.days == 31
    with pytest.raises(ValueError, match="before"):
        estimate(client, date(2020, 2, 1), date(2020, 1, 1), PAGE_SIZE, 10)
