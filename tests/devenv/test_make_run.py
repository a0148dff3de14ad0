"""`make run`'s job end to end, as a new user runs it: embedded PostgreSQL, built-in simulator."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from cinnox.simulator import DEFAULT_APPS, CampaignUniverse, start_of_utc_day
from devenv.postgres import embedded_warehouse_url, stop_embedded_postgres
from warehouse.db import create_warehouse_engine
from warehouse.models import DimApp, FactSentCampaign

ROOT = Path(__file__).resolve().parents[2]
Versions = Callable[[Engine], dict[str, set[tuple[str, str]]]]


@pytest.fixture
def clean_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Nothing configured, as on a fresh machine; the embedded data goes to a temp folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CINNOX_", "DATABASE_URL", "DAGSTER_"))}
    # Outside pytest's own temporary folders: as root the server runs as the `pgserver` user,
    # who must reach the data folder, and pytest may reset its root folder to mode 0700 when
    # another session starts.
    folder = Path(tempfile.mkdtemp(prefix="cinnox-make-run-"))
    folder.chmod(0o755)  # mkdtemp makes it 0700; the server's user must get through it
    pgdata = folder / "pgdata"
    env["EMBEDDED_PGDATA"] = str(pgdata)
    env["DAGSTER_HOME"] = str(tmp_path / "dagster")
    (tmp_path / "dagster").mkdir()
    try:
        yield env
        assert stop_embedded_postgres(pgdata) is (pgdata / "PG_VERSION").exists()
        assert not (pgdata / "postmaster.pid").exists()  # `make stop` really stops it
    finally:
        stop_embedded_postgres(pgdata)
        shutil.rmtree(folder, ignore_errors=True)


def make_run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devenv.run"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def test_make_run_loads_the_last_30_days_of_every_app_and_a_rerun_writes_nothing(
    clean_env: dict[str, str], row_versions: Versions
) -> None:
    # The simulator's data and the 30 partitions follow the UTC date: both runs must see one.
    until_midnight = (start_of_utc_day() + timedelta(days=1) - datetime.now(UTC)).total_seconds()
    if until_midnight < 300:
        time.sleep(until_midnight + 1)
    today = start_of_utc_day()
    first = make_run(clean_env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Warehouse now holds:" in first.stdout
    assert "make psql" in first.stdout

    engine = create_warehouse_engine(embedded_warehouse_url(Path(clean_env["EMBEDDED_PGDATA"])))
    universe = CampaignUniverse()
    window_start = today - timedelta(days=29)
    for app in DEFAULT_APPS:
        expected = {r["id"] for r in universe.campaigns(app, window_start, today + timedelta(days=1), today)}
        with engine.connect() as conn:
            loaded = set(
                conn.scalars(
                    select(FactSentCampaign.campaign_id)
                    .join(DimApp, DimApp.app_key == FactSentCampaign.app_key)
                    .where(DimApp.app_id == app)
                )
            )
        assert loaded == expected, app
        assert f"{app}: {len(expected)} records" in first.stdout
    before = row_versions(engine)

    second = make_run(clean_env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.count("0 inserted, 0 updated") == len(DEFAULT_APPS)
    assert row_versions(engine) == before
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(FactSentCampaign)) == sum(
            len(universe.campaigns(app, window_start, today + timedelta(days=1), today)) for app in DEFAULT_APPS
        )
    assert start_of_utc_day() == today  # else the comparison above was of two different days
    engine.dispose()


def test_make_run_refuses_half_configured_cinnox(clean_env: dict[str, str]) -> None:
    done = make_run({**clean_env, "CINNOX_APP_IDS": "acme"})
    assert done.returncode == 2
    assert "CINNOX_BASE_URL" in done.stderr
