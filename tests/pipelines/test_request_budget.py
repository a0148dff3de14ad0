"""One request budget per app, kept in PostgreSQL, shared by every run and process.

The token arithmetic is checked at a rate so slow (one request per 100 s) that the seconds a
statement takes cannot blur a slot; nothing sleeps. Then a backfill and a refresh of the same
app as two Dagster processes, against a simulator answering 429 above the rate: with the
budget at that rate, none, and the refresh is not held up by the backfill.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
from dagster._core.instance.ref import InstanceRef
from sqlalchemy import Engine, func, select

from cinnox.simulator import RequestRecord, SimulatorServer
from pipelines.resources import CinnoxAppToken, CinnoxResource
from tests.conftest import SIM_NOW
from warehouse.budget import PostgresRateLimiter, take_token
from warehouse.db import create_warehouse_engine
from warehouse.migrate import upgrade_to_head
from warehouse.models import ApiRequestBudget, CounterRegression, FactSentCampaign

ROOT = Path(__file__).resolve().parents[2]
APP = "sim-app-1"
TOKEN = "tok-budget-7d1e"
SLOW = 0.01  # requests per second: one slot every 100 s


def test_each_caller_gets_its_own_slot_in_turn(warehouse: Engine) -> None:
    waits = [take_token(warehouse, "app-a", SLOW) for _ in range(3)]
    assert waits[0] == 0.0  # a fresh budget lets the first request go at once
    assert 99 < waits[1] <= 100
    assert 199 < waits[2] <= 200
    assert take_token(warehouse, "app-b", SLOW) == 0.0  # apps do not share a budget


def test_a_token_skips_the_wal_flush_wait_in_its_own_transaction_only(warehouse: Engine) -> None:
    take_token(warehouse, "app-e", SLOW)
    with warehouse.connect() as conn:  # the pool hands back the connection take_token used
        assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
    assert 99 < take_token(warehouse, "app-e", SLOW) <= 100  # and the balance was committed


def test_concurrent_callers_never_share_a_slot(warehouse: Engine) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        waits = list(pool.map(lambda _: take_token(warehouse, "app-c", SLOW), range(16)))
    slots = sorted(round(wait / 100) for wait in waits)
    assert slots == list(range(16))
    assert all(abs(wait - 100 * round(wait / 100)) < 1 for wait in waits)
    with warehouse.connect() as conn:
        tokens = conn.scalar(select(ApiRequestBudget.tokens).where(ApiRequestBudget.app_id == "app-c"))
    assert tokens is not None
    assert -16 < tokens < -14.9  # 16 taken from a bucket of 1, less what refilled meanwhile


def test_the_limiter_sleeps_what_the_budget_says(warehouse: Engine) -> None:
    slept: list[float] = []
    limiter = PostgresRateLimiter(warehouse, "app-d", SLOW, sleep=slept.append)
    assert limiter.acquire() == 0.0
    second = limiter.acquire()
    assert slept == [second]
    assert limiter.waited == second
    assert PostgresRateLimiter(warehouse, "app-d", None).acquire() == 0.0  # no limit, no round trip


def test_resource_uses_the_database_budget_when_given_one(warehouse_url: str) -> None:
    apps = [CinnoxAppToken(app_id="a", token="t-a")]
    shared = CinnoxResource(base_url="http://127.0.0.1:1", apps=apps, request_budget_url=warehouse_url)
    assert isinstance(shared.rate_limiter("a"), PostgresRateLimiter)
    assert shared.request_budget == "postgres"
    local = CinnoxResource(base_url="http://127.0.0.1:1", apps=apps)
    assert not isinstance(local.rate_limiter("a"), PostgresRateLimiter)
    assert local.request_budget == "process"


def test_a_backfill_and_a_refresh_of_one_app_run_side_by_side_within_the_sources_rate(
    warehouse: Engine, warehouse_url: str, create_database: Callable[[], str], tmp_path: Path
) -> None:
    # Two Dagster processes into one warehouse, against a simulator answering 429 above the
    # rate: a backfill of two weeks, and a refresh of its last two days started while the
    # backfill reads, after CINNOX's counters moved on. Page sizes 10 and 11 tell them apart.
    rate = 3
    # The budget in a database of its own, as deployments sharing one CINNOX app keep it.
    budget_url = create_database()
    budget_engine = create_warehouse_engine(budget_url)
    upgrade_to_head(budget_engine)
    backfill_days, refresh_days = ("2026-06-01", "2026-06-14"), ("2026-06-13", "2026-06-14")
    with SimulatorServer(apps={APP: TOKEN}, now=SIM_NOW, rate_limit=rate) as sim:

        def materialize(name: str, days: tuple[str, str], page_size: int) -> subprocess.Popen[str]:
            home = tmp_path / name
            home.mkdir()
            env = {
                **os.environ,
                "DAGSTER_HOME": str(home),
                "DATABASE_URL": warehouse_url,
                "CINNOX_REQUEST_BUDGET_URL": budget_url,
                "CINNOX_BASE_URL": sim.url,
                "CINNOX_APP_IDS": APP,
                "CINNOX_TOKEN_SIM_APP_1": TOKEN,
                "CINNOX_PAGE_SIZE": str(page_size),
                "CINNOX_REQUESTS_PER_SECOND": str(rate),
            }
            command = [
                *(sys.executable, "-m", "dagster", "asset", "materialize", "-m", "pipelines.definitions"),
                *("--select", "cinnox/sent_campaigns/sim_app_1", "--partition-range", "...".join(days)),
            ]
            return subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )

        def requests_of(page_size: int) -> list[RequestRecord]:
            return [r for r in sim.requests if r.app_id == APP and r.params.get("limit") == str(page_size)]

        backfill = materialize("backfill", backfill_days, 10)
        deadline = time.monotonic() + 120
        while len(requests_of(10)) < 6 and backfill.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        # Six pages in: the backfill has read some of the last two days' campaigns already.
        refreshed_at = sim.advance(timedelta(hours=12))
        refresh = materialize("refresh", refresh_days, 11)
        outputs = [process.communicate(timeout=300)[0] for process in (backfill, refresh)]
        requests = [r for r in sim.requests if r.app_id == APP]
    for process, output in zip((backfill, refresh), outputs, strict=True):
        assert process.returncode == 0, output[-3000:]

    assert [r for r in requests if r.rate_limited or r.status == 429] == []
    backfill_at = [r.at for r in requests if r.params["limit"] == "10"]
    refresh_at = [r.at for r in requests if r.params["limit"] == "11"]
    assert len(backfill_at) == 64  # 639 campaigns, ten a page
    # Side by side: the refresh read and loaded while the backfill still read.
    assert min(backfill_at) < min(refresh_at)
    assert max(refresh_at) < max(backfill_at)

    # The warehouse holds the newest read of every campaign, whichever run merged last: for the
    # refreshed days the refresh's; for older days the backfill's, before or after the clock moved.
    start, end = datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 15, tzinfo=UTC)
    before = {r["id"]: r for r in sim.universe.campaigns(APP, start, end, SIM_NOW)}
    after = {r["id"]: r for r in sim.universe.campaigns(APP, start, end, refreshed_at)}
    with warehouse.connect() as conn:
        rows = {row.campaign_id: row for row in conn.execute(select(FactSentCampaign.__table__))}
        regressions = conn.scalar(select(func.count()).select_from(CounterRegression))
        missing = conn.scalar(select(func.count()).where(FactSentCampaign.missing_at_source_since.is_not(None)))
    assert set(rows) == set(after)
    refreshed = {r["id"] for r in sim.universe.campaigns(APP, datetime(2026, 6, 13, tzinfo=UTC), end, refreshed_at)}
    assert refreshed
    for campaign_id, record in after.items():
        held = (rows[campaign_id].delivered, rows[campaign_id].pending)
        newest = (record["delivered"], record.get("pending"))
        if campaign_id in refreshed:
            assert held == newest, campaign_id
        else:
            old = before[campaign_id]
            assert held in {newest, (old["delivered"], old.get("pending"))}, campaign_id
    assert (regressions, missing) == (0, 0)
    with budget_engine.connect() as conn:
        assert conn.scalars(select(ApiRequestBudget.app_id)).all() == [APP]
    budget_engine.dispose()
    with warehouse.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(ApiRequestBudget)) == 0

    key = dg.AssetKey(["cinnox", "sent_campaigns", "sim_app_1"])
    metadata = {}
    for name in ("backfill", "refresh"):
        with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path / name))) as instance:
            event = instance.get_latest_materialization_event(key)
            assert event is not None
            assert event.asset_materialization is not None
            metadata[name] = {k: v.value for k, v in event.asset_materialization.metadata.items()}
        assert metadata[name]["run_request_budget"] == "postgres"
        assert metadata[name]["run_retries"] == 0
        assert isinstance(metadata[name]["run_rate_limit_wait_seconds"], float)
        assert metadata[name]["run_rate_limit_wait_seconds"] > 0  # the budget paced the run, and it shows
    # While it runs, its log says how long it has waited so far.
    assert "s waiting for the request budget so far" in outputs[0]
    # The backfill read some campaigns before the refresh did, and left the refresh's values.
    assert metadata["backfill"]["run_newer_in_warehouse"] > 0
    assert metadata["backfill"]["run_updated"] == 0
