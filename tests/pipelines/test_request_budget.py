"""One request budget per app, kept in PostgreSQL, shared by every run and process.

The token arithmetic is checked at a rate so slow (one request per 100 s) that the seconds a
statement takes cannot blur a slot; nothing sleeps. Then two Dagster processes for the same
app against a simulator answering 429 above the rate: with the budget at that rate, none.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
from dagster._core.instance.ref import InstanceRef
from sqlalchemy import Engine, select

from cinnox.simulator import SimulatorServer
from pipelines.resources import CinnoxAppToken, CinnoxResource
from tests.conftest import SIM_NOW
from warehouse.budget import PostgresRateLimiter, take_token
from warehouse.db import create_warehouse_engine
from warehouse.migrate import upgrade_to_head
from warehouse.models import ApiRequestBudget

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


def test_two_processes_of_one_app_stay_within_the_sources_rate(
    warehouse: Engine, warehouse_url: str, create_database: Callable[[], str], tmp_path: Path
) -> None:
    # The load holds a per-app lock from its first page to its commit, so two runs into one
    # warehouse read one after the other. Two deployments reading the same CINNOX app into
    # two warehouses (staging and production, say) read at the same time: the case the shared
    # budget must cover, and the one that draws 429s with a per-process limiter.
    second_warehouse = create_database()
    engine = create_warehouse_engine(second_warehouse)
    upgrade_to_head(engine)
    engine.dispose()
    rate = 4
    # About twenty-five pages a run, six seconds alone at the rate, so the two runs overlap
    # whichever process starts first; page sizes 10 and 11 tell their requests apart.
    with SimulatorServer(apps={APP: TOKEN}, now=SIM_NOW, rate_limit=rate) as sim:
        processes, homes = [], []
        for name, database, page_size in (("staging", second_warehouse, 10), ("production", warehouse_url, 11)):
            home = tmp_path / name
            home.mkdir()
            homes.append(home)
            env = {
                **os.environ,
                "DAGSTER_HOME": str(home),
                "DATABASE_URL": database,
                "CINNOX_REQUEST_BUDGET_URL": warehouse_url,
                "CINNOX_BASE_URL": sim.url,
                "CINNOX_APP_IDS": APP,
                "CINNOX_TOKEN_SIM_APP_1": TOKEN,
                "CINNOX_PAGE_SIZE": str(page_size),
                "CINNOX_REQUESTS_PER_SECOND": str(rate),
            }
            command = [
                *(sys.executable, "-m", "dagster", "asset", "materialize", "-m", "pipelines.definitions"),
                *("--select", "cinnox/sent_campaigns/sim_app_1", "--partition-range", "2026-06-09...2026-06-14"),
            ]
            processes.append(
                subprocess.Popen(
                    command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
                )
            )
        outputs = [process.communicate(timeout=300)[0] for process in processes]
        requests = [r for r in sim.requests if r.app_id == APP]
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output[-3000:]

    assert [r for r in requests if r.rate_limited or r.status == 429] == []
    staging = [r.at for r in requests if r.params["limit"] == "10"]
    production = [r.at for r in requests if r.params["limit"] == "11"]
    assert len(staging) > 20
    assert len(production) > 20
    # The runs overlapped: many requests of each fell between the other's first and last.
    assert sum(min(staging) < at < max(staging) for at in production) >= 5
    key = dg.AssetKey(["cinnox", "sent_campaigns", "sim_app_1"])
    for home in homes:
        with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
            event = instance.get_latest_materialization_event(key)
            assert event is not None
            assert event.asset_materialization is not None
            metadata = {name: value.value for name, value in event.asset_materialization.metadata.items()}
        assert metadata["request_budget"] == "postgres"
        assert metadata["retries"] == 0
        assert isinstance(metadata["rate_limit_wait_seconds"], float)
        assert metadata["rate_limit_wait_seconds"] > 0  # the budget paced the run, and it shows
