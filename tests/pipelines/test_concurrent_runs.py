"""Two Dagster runs materializing the same partitions at the same time, as two processes.

Both read at once; the load takes a transaction-level advisory lock per app for its merge, so
the second merge waits for the first and then finds nothing to change: the right rows, no
duplicate, no deadlock.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, func, select

from cinnox.simulator import SimulatorServer
from warehouse.models import FactSentCampaign, FactSentCampaignSnapshot, SentCampaignPayload

ROOT = Path(__file__).resolve().parents[2]
APP = "sim-app-1"
TOKEN = "tok-concurrent-5b2c"
NOW = datetime(2026, 6, 15, tzinfo=UTC)


def test_two_runs_of_the_same_partitions_at_once(warehouse: Engine, warehouse_url: str, tmp_path: Path) -> None:
    # A second per page keeps both runs paging at the same time: six pages take six seconds,
    # more than the gap between two Dagster processes starting.
    with SimulatorServer(apps={APP: TOKEN}, now=NOW, latency=1.0) as sim:
        processes = []
        for name in ("first", "second"):
            home = tmp_path / name
            home.mkdir()
            env = {
                **os.environ,
                "DAGSTER_HOME": str(home),  # an instance each: two sqlite writers would contend
                "DATABASE_URL": warehouse_url,
                "CINNOX_BASE_URL": sim.url,
                "CINNOX_APP_IDS": APP,
                "CINNOX_TOKEN_SIM_APP_1": TOKEN,
                "CINNOX_PAGE_SIZE": "25",
            }
            command = [
                sys.executable,
                "-m",
                "dagster",
                "asset",
                "materialize",
                "-m",
                "pipelines.definitions",
                "--select",
                "cinnox/sent_campaigns/sim_app_1",
                "--partition-range",
                "2026-06-12...2026-06-14",
            ]
            processes.append(
                subprocess.Popen(
                    command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
                )
            )
        outputs = [process.communicate(timeout=300)[0] for process in processes]
        requests = sim.requests
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output[-3000:]

    expected = sim.universe.campaigns(APP, datetime(2026, 6, 12, tzinfo=UTC), datetime(2026, 6, 15, tzinfo=UTC), NOW)
    with warehouse.connect() as conn:
        ids = list(conn.scalars(select(FactSentCampaign.campaign_id)))
        snapshots = conn.scalar(select(func.count()).select_from(FactSentCampaignSnapshot))
        raw = conn.scalar(select(func.count()).select_from(SentCampaignPayload))
    assert sorted(ids) == sorted(r["id"] for r in expected)  # every campaign, once
    assert snapshots == raw == len(expected)  # the second run saw the same counters: no history row
    # The runs overlapped: the second first page was served before the last page of all.
    first_pages = sorted(r.at for r in requests if r.params.get("offset", "0") == "0" and r.params.get("limit") != "1")
    assert len(first_pages) == 2
    assert first_pages[1] < max(r.at for r in requests)
    inserted = [line for output in outputs for line in output.splitlines() if "inserted" in line and "Loaded" in line]
    assert len(inserted) == 2
    assert sum(int(line.split("Loaded")[1].split(": ")[1].split(" inserted")[0]) for line in inserted) == len(expected)
