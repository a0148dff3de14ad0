"""`make estimate`: the plan (requests, time) and the command on the defaults, against the simulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from cinnox import CinnoxClient
from cinnox.simulator import DEFAULT_APPS, SimulatorServer
from pipelines.estimate import estimate, plan_requests, plan_seconds

ROOT = Path(__file__).resolve().parents[2]


def test_requests_are_the_probe_then_each_chunks_pages() -> None:
    assert plan_requests(0, 100) == (1, 1)  # the probe finds the window empty: nothing more to read
    assert plan_requests(100, 100) == (1, 3)  # the probe, a full page, and an empty one after it
    assert plan_requests(101, 100) == (1, 3)  # the probe, a full page and a short one
    assert plan_requests(1_202, 100) == (1, 14)
    # A year of about 60,000: 30 chunks of at most 2,000, each ending on a short page.
    assert plan_requests(59_636, 100, 2_000) == (30, 1 + 30 * 20)


@pytest.mark.parametrize(
    ("requests", "rate", "answer", "seconds"),
    [
        (100, 10, 0.01, 10.0),  # the rate binds: requests / rate, the answer time hidden under it
        (100, 10, 0.5, 50.0),  # the answer binds: requests x answer time
        (100, None, 0.2, 20.0),  # no rate limit
        (100, 10, 0.1, 10.0),  # equal
    ],
)
def test_time_is_the_slower_of_the_rate_and_the_answer_per_request(
    requests: int, rate: float | None, answer: float, seconds: float
) -> None:
    assert plan_seconds(requests, rate, answer) == pytest.approx(seconds)


@pytest.mark.parametrize(("latency", "rate"), [(0.0, 5), (0.25, 20)])
def test_estimate_against_a_simulator_is_stable_and_follows_what_binds(latency: float, rate: int) -> None:
    with SimulatorServer(latency=latency) as sim:
        token = sim.apps["sim-app-1"]
        today = sim.now.date()
        results = []
        for _ in range(2):
            with CinnoxClient(sim.url, "sim-app-1", token, page_size=1) as client:
                results.append(estimate(client, today - timedelta(days=29), today, 100, rate))
    first, second = results
    assert first.requests == second.requests > 1
    if latency:  # CINNOX's answer binds: about the requests times the simulator's latency
        assert first.probe_seconds >= latency
        assert first.seconds == pytest.approx(first.requests * latency, rel=0.5)
    else:  # the rate binds: the requests over the rate, whatever one probe took
        assert first.seconds == pytest.approx(first.requests / rate, abs=0.1)
    # The same question twice gives about the same answer (a cold first connection is not timed).
    assert second.seconds == pytest.approx(first.seconds, rel=0.5, abs=0.2)


def test_make_estimate_on_the_defaults_reads_the_simulator() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CINNOX_", "DATABASE_URL"))}
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.estimate", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    estimates = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["app_id"] for e in estimates] == list(DEFAULT_APPS)
    assert all(e["days"] == 30 and e["campaigns"] > 0 and e["requests"] >= 1 for e in estimates)
