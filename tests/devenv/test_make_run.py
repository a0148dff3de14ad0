"""`make run` end to end, as a new user runs it: embedded PostgreSQL, built-in simulator.

One fresh warehouse for the module, filled by two `make run` started at once (as `make run`
and `make dev`, or two deploy jobs, may start together); the other tests read what they left.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text

from cinnox.simulator import DEFAULT_APPS, CampaignUniverse, start_of_utc_day
from devenv.postgres import embedded_warehouse_url, stop_embedded_postgres
from warehouse.db import create_warehouse_engine
from warehouse.models import DimApp, FactSentCampaign

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "warehouse.md"
Versions = Callable[[Engine], dict[str, set[tuple[str, str]]]]

# For each example query of docs/warehouse.md, the columns it is about: each must have a value
# (not NULL) in some row on a fresh `make run` warehouse. Query 4 is about one campaign's
# reads at four ages: every row must have one.
QUERY_COLUMNS: dict[int, tuple[str, ...]] = {
    1: ("delivery_rate", "read_rate"),
    2: ("read_rate",),
    3: ("read_share",),
    4: ("read_by_then",),
    5: ("campaigns", "recipients"),
    6: ("delivery_rate",),
    7: ("whatsapp_channel_name", "valid_from", "valid_to"),
    8: ("campaign_id", "sent_at", "pending"),
    9: ("failure_rate", "reply_rate"),
    10: ("read_rate_at_24h", "read_rate_now"),
}


@dataclass
class FirstRuns:
    env: dict[str, str]
    runs: list[subprocess.CompletedProcess[str]]
    today: datetime
    engine: Engine


def clean_env(folder: Path) -> dict[str, str]:
    """Nothing configured, as on a fresh machine; the embedded data and Dagster in `folder`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CINNOX_", "DATABASE_URL", "DAGSTER_", "VERBOSE"))}
    env.pop("MAKEFLAGS", None)
    env["EMBEDDED_PGDATA"] = str(folder / "pgdata")
    (folder / "dagster").mkdir()
    (folder / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env["DAGSTER_HOME"] = str(folder / "dagster")
    return env


@pytest.fixture(scope="module")
def first_runs() -> Iterator[FirstRuns]:
    """Two `make run` at once on a fresh embedded server; stopped and deleted at the end."""
    # Outside pytest's own temporary folders: as root the server runs as the `pgserver` user,
    # who must reach the data folder, and pytest may reset its root folder to mode 0700 when
    # another session starts.
    folder = Path(tempfile.mkdtemp(prefix="cinnox-make-run-"))
    folder.chmod(0o755)  # mkdtemp makes it 0700; the server's user must get through it
    pgdata = folder / "pgdata"
    env = clean_env(folder)
    # The simulator's data and the 30 partitions follow the UTC date: every run must see one.
    until_midnight = (start_of_utc_day() + timedelta(days=1) - datetime.now(UTC)).total_seconds()
    if until_midnight < 300:
        time.sleep(until_midnight + 1)
    today = start_of_utc_day()
    try:
        both = [make_run_started(env) for _ in range(2)]
        runs = [subprocess.CompletedProcess(p.args, p.wait(timeout=600), *p.communicate()) for p in both]
        engine = create_warehouse_engine(embedded_warehouse_url(pgdata))
        yield FirstRuns(env, runs, today, engine)
        engine.dispose()
        assert stop_embedded_postgres(pgdata) is (pgdata / "PG_VERSION").exists()
        assert not (pgdata / "postmaster.pid").exists()  # `make stop` really stops it
    finally:
        stop_embedded_postgres(pgdata)
        shutil.rmtree(folder, ignore_errors=True)


def make_run_started(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["make", "--no-print-directory", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def make_run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "run"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def test_two_make_run_at_once_on_a_fresh_database_both_succeed(first_runs: FirstRuns) -> None:
    for run in first_runs.runs:
        assert run.returncode == 0, run.stdout + run.stderr
        assert "Warehouse now holds:" in run.stdout
        assert "make psql" in run.stdout
    # One of them loaded the demo history; the other found it there.
    assert sum("Demo history:" in run.stdout for run in first_runs.runs) == 1


def documented_queries() -> list[str]:
    blocks = re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    return [block for block in blocks if not block.lstrip().startswith("CREATE ROLE")]


def test_every_example_query_shows_what_it_is_for_on_a_fresh_make_run(first_runs: FirstRuns) -> None:
    queries = documented_queries()
    assert len(queries) == len(QUERY_COLUMNS)
    with first_runs.engine.connect() as conn:
        conn.execute(text("SET ROLE cinnox_reader"))
        for number, query in enumerate(queries, start=1):
            result = conn.execute(text(query))
            rows = [row._asdict() for row in result]
            assert rows, f"query {number} returned no row"
            for column in QUERY_COLUMNS[number]:
                values = [row[column] for row in rows]
                assert any(value is not None for value in values), f"query {number}: {column} is NULL in every row"
                if number == 4:
                    assert all(value is not None for value in values), f"query 4: {values}"
            if number == 3:  # reads accumulating: a row for each of the first days, rising
                shares = [row["read_share"] for row in rows]
                assert len(rows) >= 5, rows
                assert shares[-1] > shares[0], rows
            if number == 7:  # a renamed channel: one sender with two names
                names: dict[int, set[str]] = {}
                for row in rows:
                    names.setdefault(row["durable_sender_key"], set()).add(row["whatsapp_channel_name"])
                assert any(len(n) > 1 for n in names.values()), rows
            if number == 10:  # most channel names have a read rate at 24 hours
                known = [row for row in rows if row["read_rate_at_24h"] is not None]
                assert len(known) > len(rows) / 2, rows


def test_make_run_loads_the_last_30_days_of_every_app_and_a_rerun_writes_nothing(
    first_runs: FirstRuns, row_versions: Versions
) -> None:
    engine, today = first_runs.engine, first_runs.today
    universe = CampaignUniverse()
    window_start = today - timedelta(days=29)
    expected_total = 0
    for app in DEFAULT_APPS:
        expected = {r["id"] for r in universe.campaigns(app, window_start, today + timedelta(days=1), today)}
        expected_total += len(expected)
        with engine.connect() as conn:
            loaded = set(
                conn.scalars(
                    select(FactSentCampaign.campaign_id)
                    .join(DimApp, DimApp.app_key == FactSentCampaign.app_key)
                    .where(DimApp.app_id == app, FactSentCampaign.sent_at >= window_start)
                )
            )
        assert loaded == expected, app
        assert all(f"{app}: {len(expected)} records" in run.stdout for run in first_runs.runs)
    before = row_versions(engine)

    second = make_run(first_runs.env)
    assert second.returncode == 0, second.stdout + second.stderr
    outcomes = [line for line in second.stdout.splitlines() if line.startswith(tuple(f"  {a}: " for a in DEFAULT_APPS))]
    assert len(outcomes) == len(DEFAULT_APPS), second.stdout
    assert all("; 0 inserted, 0 updated" in line for line in outcomes), outcomes
    assert "Demo history:" not in second.stdout
    assert row_versions(engine) == before
    with engine.connect() as conn:
        in_window = select(func.count()).select_from(FactSentCampaign).where(FactSentCampaign.sent_at >= window_start)
        assert conn.scalar(in_window) == expected_total
    assert start_of_utc_day() == today  # else the comparison above was of two different days


def test_make_run_refuses_half_configured_cinnox(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    done = make_run({**clean_env(tmp_path), "CINNOX_APP_IDS": "acme"})
    assert done.returncode == 2
    assert "CINNOX_BASE_URL" in done.stderr
