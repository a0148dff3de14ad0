"""The Dagster UI in a real browser: find the assets, launch partitions, see them succeed and plotted.

`dagster dev` runs on loopback with a fresh DAGSTER_HOME holding the production instance
(deploy/production/dagster.yaml: PostgreSQL storage, the run queue, per-app pools), so the
launch goes through the queue and the daemon as it would in production. Headless Chromium is
Debian's `chromium`, driven by Playwright with `executable_path`: nothing is downloaded.
Without it the test fails and says how to install it (`.ci/run` does).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url

from cinnox.simulator import DEFAULT_APPS, SimulatorServer
from pipelines.settings import AppSettings
from warehouse.models import DimApp, FactSentCampaign

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = ROOT / ".local" / "screenshots"
PARTITION = "2026-06-14"
SECOND_PARTITION = "2026-06-13"
START_SECONDS = 240  # dagster dev: webserver, daemon and code server on 2 busy cores
RUN_MS = 240_000  # the launched run: queued, dequeued by the daemon, executed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(
            f"The browser test needs Chromium at {CHROMIUM} (Debian: `apt-get install -y chromium`; "
            "elsewhere set CHROMIUM=/path/to/chromium). .ci/run installs it. Playwright's own browser "
            "download is not used."
        )
    return CHROMIUM


@pytest.fixture
def dagster_ui(
    tmp_path: Path,
    create_database: Callable[[], str],
    warehouse_url: str,
    warehouse: Engine,
    simulator: SimulatorServer,
) -> Iterator[str]:
    """`dagster dev` on a free loopback port with a fresh production instance; yields its URL."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "production" / "dagster.yaml", home / "dagster.yaml")
    storage = make_url(create_database()).set(drivername="postgresql+psycopg2")
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_URL": storage.render_as_string(hide_password=False),
        "DATABASE_URL": warehouse_url,
        "CINNOX_BASE_URL": simulator.url,
        "CINNOX_APP_IDS": ",".join(DEFAULT_APPS),
        **{AppSettings(app).token_env_var: token for app, token in DEFAULT_APPS.items()},
    }
    log = (tmp_path / "dagster-dev.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: webserver, daemon and code server go together
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dagster dev did not start; its log:\n{(tmp_path / 'dagster-dev.log').read_text()}")
            time.sleep(1)
        yield url
    finally:
        _stop(process)
        log.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    # dagster dev shuts its children down on SIGINT; whatever is left after that is killed.
    for sig, wait in ((signal.SIGINT, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
        except subprocess.TimeoutExpired:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the children, when the parent left first
        return


def launch_partition(page: Page, partition: str, screenshot: Path | None = None) -> str:
    """From an asset's page: Materialize, type the partition, launch; the new run's path.

    With `screenshot`, a picture of the launch (backfill) dialog as filled in, before launching.
    """
    from playwright.sync_api import expect

    page.get_by_role("button", name="Materialize…").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Show all partitions").click()  # the dialog starts with the last 90 days
    partitions = dialog.locator("input").first
    partitions.fill(partition)
    partitions.press("Enter")
    expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
    if screenshot is not None:
        page.screenshot(path=str(screenshot))
    dialog.get_by_role("button", name="Launch 1 run").click()
    run_link = page.locator("a[href*='/runs/']").filter(has_text="View").first
    expect(run_link).to_be_visible(timeout=60_000)
    run_path = run_link.get_attribute("href")
    assert run_path
    return run_path


def test_launch_partitions_from_the_ui_and_see_them_succeed(
    chromium: Path, dagster_ui: str, simulator: SimulatorServer, warehouse: Engine
) -> None:
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), headless=True)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        # A fresh instance greets its first visitor on localhost with a "Join the Dagster
        # community" dialog, a second after any page loads, on top of whatever dialog is open
        # (then neither can be clicked). The UI skips it once the browser has dismissed it:
        # the `communityNux` key of local storage (dagster-webserver's NUX/CommunityNux.tsx).
        page.add_init_script("window.localStorage.setItem('communityNux', JSON.stringify('1'))")
        try:
            # The catalog lists every app's asset and its API source.
            page.goto(f"{dagster_ui}/assets")
            asset = page.get_by_role("link", name="cinnox / sent_campaigns / sim_app_1").first
            expect(asset).to_be_visible(timeout=60_000)
            for name in (
                "cinnox / sent_campaigns / sim_app_2",
                "cinnox_api / sent_campaigns_summary / sim_app_1",
            ):
                expect(page.get_by_role("link", name=name).first).to_be_visible()
            page.screenshot(path=str(SCREENSHOTS / "catalog.png"))

            # The asset's page: description, owner and columns with the database's comments.
            asset.click()
            expect(page.get_by_text("Messages delivered to recipients.")).to_be_visible(timeout=60_000)
            expect(page.get_by_text("data-engineering")).to_be_visible()
            page.screenshot(path=str(SCREENSHOTS / "asset-overview.png"), full_page=True)

            # Materialize one partition from the asset page, then watch the run succeed.
            run_path = launch_partition(page, PARTITION, SCREENSHOTS / "backfill-dialog.png")
            page.goto(f"{dagster_ui}{run_path}")
            expect(page.get_by_text(f"partition: {PARTITION}")).to_be_visible(timeout=60_000)
            expect(page.get_by_text("Success", exact=True).first).to_be_visible(timeout=RUN_MS)
            expect(page.get_by_text("RUN_SUCCESS").first).to_be_visible(timeout=60_000)
            page.screenshot(path=str(SCREENSHOTS / "run-success.png"))

            # The asset's checks, evaluated by that run.
            page.goto(f"{dagster_ui}/assets/cinnox/sent_campaigns/sim_app_1?view=checks")
            expect(page.get_by_text("unique_campaign_ids").first).to_be_visible(timeout=60_000)
            expect(page.get_by_text("count_reconciled_with_api").first).to_be_visible()
            page.screenshot(path=str(SCREENSHOTS / "asset-checks.png"), full_page=True)

            # Back on the asset, the partition's materialization and its metadata: that day's own
            # figures (records, inserted, ...), and the run's (run_...).
            page.goto(f"{dagster_ui}/assets/cinnox/sent_campaigns/sim_app_1?view=partitions&partition={PARTITION}")
            expect(page.get_by_text("run_records_fetched").first).to_be_visible(timeout=60_000)
            day = datetime.fromisoformat(PARTITION).replace(tzinfo=UTC)
            sent_that_day = len(simulator.campaigns("sim-app-1", day, day + timedelta(days=1)))
            for name in ("records", "inserted"):
                row = page.locator("tr").filter(has=page.get_by_text(name, exact=True)).first
                expect(row).to_contain_text(str(sent_that_day))
            page.screenshot(path=str(SCREENSHOTS / "asset-partition.png"), full_page=True)

            # A second partition gives the Plots a second point per metadata key: a trend.
            page.goto(f"{dagster_ui}/assets/cinnox/sent_campaigns/sim_app_1")
            page.goto(f"{dagster_ui}{launch_partition(page, SECOND_PARTITION)}")
            expect(page.get_by_text(f"partition: {SECOND_PARTITION}")).to_be_visible(timeout=60_000)
            expect(page.get_by_text("Success", exact=True).first).to_be_visible(timeout=RUN_MS)
            page.goto(f"{dagster_ui}/assets/cinnox/sent_campaigns/sim_app_1")
            page.get_by_role("button", name="Plots").click()
            page.get_by_role("button", name="Events").click()  # x axis: materializations over time
            chart = page.get_by_text("run_requests", exact=True).first  # a chart per numeric key
            expect(chart).to_be_visible(timeout=60_000)
            expect(page.get_by_text("newer_in_warehouse", exact=True).first).to_be_visible()
            page.mouse.wheel(0, chart.bounding_box()["y"] - 150 if chart.bounding_box() else 0)
            page.wait_for_timeout(1000)  # let the charts draw before the picture; nothing is asserted on it
            page.screenshot(path=str(SCREENSHOTS / "asset-plots.png"))
        finally:
            browser.close()

    # The rows are in PostgreSQL: every campaign CINNOX has for those two days, for that app only.
    first = datetime.fromisoformat(SECOND_PARTITION).replace(tzinfo=UTC)
    expected = simulator.universe.campaigns("sim-app-1", first, first + timedelta(days=2), simulator.now)
    assert expected
    with warehouse.connect() as conn:
        ids = set(
            conn.scalars(
                select(FactSentCampaign.campaign_id)
                .join(DimApp, DimApp.app_key == FactSentCampaign.app_key)
                .where(DimApp.app_id == "sim-app-1")
            )
        )
        apps = conn.scalar(select(func.count(func.distinct(FactSentCampaign.app_key))))
    assert ids == {record["id"] for record in expected}
    assert apps == 1
