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
from itertools import pairwise
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef
from sqlalchemy import Engine, func, select

import warehouse.budget as warehouse_budget
from cinnox.simulator import RequestRecord, SimulatorServer
from pipelines.resources import CinnoxAppToken, CinnoxResource
from tests.conftest import SIM_NOW
from warehouse.budget import PostgresRateLimiter, take_tokens
from warehouse.db import create_warehouse_engine
from warehouse.migrate import upgrade_to_head
from warehouse.models import ApiRequestBudget, CounterRegression, FactSentCampaign

ROOT = Path(__file__).resolve().parents[2]
APP = "sim-app-1"
TOKEN = "tok-budget-7d1e"
SLOW = 0.01  # requests per second: one slot every 100 s


def test_each_caller_gets_its_own_slot_in_turn(warehouse: Engine) -> None:
    waits = [take_tokens(warehouse, "app-a", SLOW, 1) for _ in range(3)]
    assert waits[0] == 0.0  # a fresh budget lets the first request go at once
    assert 99 < waits[1] <= 100
    assert 199 < waits[2] <= 200
    assert take_tokens(warehouse, "app-b", SLOW, 1) == 0.0  # apps do not share a budget


def test_a_token_skips_the_wal_flush_wait_in_its_own_transaction_only(warehouse: Engine) -> None:
    take_tokens(warehouse, "app-e", SLOW, 1)
    with warehouse.connect() as conn:  # the pool hands back the connection take_tokens used
        assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
    assert 99 < take_tokens(warehouse, "app-e", SLOW, 1) <= 100  # and the balance was committed


def test_concurrent_callers_never_share_a_slot(warehouse: Engine) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        waits = list(pool.map(lambda _: take_tokens(warehouse, "app-c", SLOW, 1), range(16)))
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


class FakeClock:
    """This process's clock for a limiter: it moves only when the limiter sleeps or a test says."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_lease_reserves_consecutive_slots_in_one_round_trip(warehouse: Engine) -> None:
    clock = FakeClock()
    limiter = PostgresRateLimiter(warehouse, "app-f", SLOW, lease=3, clock=clock, sleep=clock.sleep)
    waits = [limiter.acquire() for _ in range(4)]
    # Three slots 100 s apart from one round trip. The fourth request takes a new lease; the
    # budget's clock has not moved 200 s as this one did, so to it the new lease's first slot,
    # after the first lease's three, is 300 s away.
    assert waits[:3] == [0.0, 100.0, 100.0]
    assert 299 < waits[3] <= 300
    assert limiter.leases == 2
    with warehouse.connect() as conn:
        tokens = conn.scalar(select(ApiRequestBudget.tokens).where(ApiRequestBudget.app_id == "app-f"))
    assert tokens is not None
    assert -5 < tokens < -4.9  # six taken from a bucket of 1


def test_leases_of_concurrent_limiters_never_share_a_slot(warehouse: Engine) -> None:
    # Two processes' limiters on one app: each lease is a stretch of the budget's slots of its
    # own, in the order the leases were taken.
    first, second = (PostgresRateLimiter(warehouse, "app-g", SLOW, lease=2, sleep=lambda _: None) for _ in range(2))
    waits = [first.acquire(), second.acquire(), first.acquire(), first.acquire(), second.acquire()]
    # first: slots 0 and 100 s; second: 200 and 300 s; first's new lease: 400 s.
    assert [round(wait / 100) for wait in waits] == [0, 2, 1, 4, 3]
    assert [first.leases, second.leases] == [2, 1]


class FakeBudget:
    """`take_tokens` over the same arithmetic as the budget's statement, on a FakeClock: so a
    test can make a limiter fall behind by any amount, and read every slot exactly."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.tokens = 1.0
        self.stamp = 0.0

    def take_tokens(self, engine: object, app_id: str, rate: float, count: int, burst: float = 1.0) -> float:
        self.tokens = min(burst, self.tokens + (self.clock.now - self.stamp) * rate) - count
        self.stamp = self.clock.now
        return max(0.0, -(self.tokens + count - 1) / rate)


def test_limiters_that_fall_behind_never_send_two_requests_closer_than_the_rate(
    warehouse: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two processes of one app at 10 requests/s, leases of 5, each busy for a while between
    # some requests (a slow page, a merge): whatever the delays, no two requests of the app
    # are closer than 0.1 s, and a limiter that fell behind gives up the rest of its lease.
    clock = FakeClock()
    budget = FakeBudget(clock)
    monkeypatch.setattr(warehouse_budget, "take_tokens", budget.take_tokens)
    rate, interval = 10.0, 0.1
    # Each process sleeps on its own: a sleep moves its next request, not the shared clock.
    limiters = [PostgresRateLimiter(warehouse, "app-h", rate, lease=5, clock=clock, sleep=lambda _: None) for _ in "ab"]
    sent: list[float] = []
    ready = [0.0, 0.0]  # when each process asks for its next request
    delays = [0.0, 0.03, 0.25, 0.0, 0.12, 0.0, 0.4, 0.01, 0.0, 0.07] * 6
    for i, delay in enumerate(delays):
        who = min((0, 1), key=lambda p: ready[p])  # the process that asks first goes first
        clock.now = ready[who]
        sent.append(clock.now + limiters[who].acquire())
        ready[who] = sent[-1] + delay + (0.02 if i % 2 else 0.05)  # the request itself, then busy
    sent.sort()
    gaps = [later - earlier for earlier, later in pairwise(sent)]
    assert min(gaps) >= interval - 1e-9
    leases = sum(limiter.leases for limiter in limiters)
    assert leases < len(delays) / 2  # a round trip per lease, not per request
    assert 5 * leases > len(delays)  # the delays cost slots given up, not bursts


def test_a_late_request_uses_its_lease_up_to_the_last_slot_only(
    warehouse: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(warehouse_budget, "take_tokens", FakeBudget(clock).take_tokens)
    limiter = PostgresRateLimiter(warehouse, "app-i", SLOW, lease=3, clock=clock, sleep=clock.sleep)
    assert limiter.acquire() == 0.0  # slots at 0, 100 and 200 s
    clock.now = 150.0  # busy past its second slot
    assert limiter.acquire() == 0.0  # late, but not past the lease's last slot: it goes now
    # The slot at 200 s would be only 50 s after it: given up. The new lease starts where the
    # budget says, after the first lease: at 300 s.
    assert limiter.acquire() == pytest.approx(150.0)
    assert limiter.leases == 2


def test_the_default_lease_is_half_a_second_of_requests(warehouse: Engine) -> None:
    assert PostgresRateLimiter(warehouse, "a", 20).lease == 10
    assert PostgresRateLimiter(warehouse, "a", 10).lease == 5
    assert PostgresRateLimiter(warehouse, "a", 3).lease == 1
    assert PostgresRateLimiter(warehouse, "a", SLOW).lease == 1


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
