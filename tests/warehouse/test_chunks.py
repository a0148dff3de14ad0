"""Chunked loads against the simulator on loopback and a real PostgreSQL: the live edge, drift
that costs one chunk, resuming from the ledger after a kill, and short statement timeouts."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.engine import make_url

from cinnox import CinnoxClient, ExtractionStats, Window
from cinnox.simulator import FaultKind, SimulatorServer
from warehouse.db import create_warehouse_engine
from warehouse.load import LedgerKey
from warehouse.load.chunks import DEFAULT_CHUNK_RECORDS, load_window
from warehouse.load.plan import plan
from warehouse.migrate import upgrade_to_head
from warehouse.models import FactSentCampaign, LoadChunk

APP = "sim-app-1"
TOKEN = "sim-token-sim-app-1"
BUSY, BUSY_TOKEN = "sim-busy-app", "sim-token-busy"
NOW = datetime(2026, 6, 15, 12, tzinfo=UTC)


def client_for(sim: SimulatorServer, page_size: int = 100) -> CinnoxClient:
    return CinnoxClient(sim.url, APP, TOKEN, page_size=page_size)


def ids_in_warehouse(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.scalars(select(FactSentCampaign.campaign_id)))


@pytest.fixture
def busy_sender() -> Iterator[SimulatorServer]:
    """An app that sends a new campaign, dated that instant, with every request it answers."""
    with SimulatorServer(now=NOW, clock_running=True, sends_per_request=1) as sim:
        yield sim


@pytest.mark.parametrize(("days", "chunk_records"), [(7, 2000), (30, 300)], ids=["refresh", "backfill"])
def test_a_busy_sender_loads_on_every_try_up_to_the_live_edge(
    busy_sender: SimulatorServer, warehouse: Engine, days: int, chunk_records: int
) -> None:
    window = Window(NOW - timedelta(days=days - 1), NOW + timedelta(days=1))  # today included
    for attempt in range(3):
        with client_for(busy_sender) as client:
            done = load_window(
                warehouse, client, window, LedgerKey(APP, f"run-{attempt}", window), chunk_records=chunk_records
            )
        assert done.read is not None
        assert done.live_edge is not None
        edge = done.read.end
        assert edge < window.end  # the window reached past CINNOX's clock: cut there
        assert abs(edge - busy_sender.now) < timedelta(minutes=1)
        assert done.chunks >= (1 if days == 7 else 4)
        assert done.result.marked_missing == 0
        # Every campaign sent before the read began is in the warehouse; none sent after it.
        sent_before = {r["id"] for r in busy_sender.campaigns(APP, window.start, edge)}
        assert sent_before <= ids_in_warehouse(warehouse)
        live = {i for i in ids_in_warehouse(warehouse) if i.startswith("live-")}
        later = {r["id"] for r in busy_sender.campaigns(APP, edge, window.end) if r["id"].startswith("live-")}
        assert later  # the sender kept sending during the read...
        assert not live & later  # ...and those sends wait for the next refresh


YEAR = Window(datetime(2025, 6, 15, tzinfo=UTC), datetime(2026, 6, 15, tzinfo=UTC))


@pytest.fixture(scope="module")
def busy_app() -> Iterator[SimulatorServer]:
    """An app of about 60,000 campaigns a year."""
    with SimulatorServer(apps={BUSY: BUSY_TOKEN}, now=NOW) as sim:
        yield sim


def test_a_campaign_that_vanishes_mid_read_costs_one_chunk_and_is_marked_missing(
    busy_app: SimulatorServer, warehouse: Engine
) -> None:
    total = len(busy_app.campaigns(BUSY, YEAR.start, YEAR.end))
    assert total > 50_000
    minimal = math.ceil(total / 100)
    # Half-way through the year, the campaign that sorts first in the chunk being read vanishes.
    busy_app.add_fault(FaultKind.CAMPAIGN_VANISHES, skip=minimal // 2)
    busy_app.reset_requests()
    with CinnoxClient(busy_app.url, BUSY, BUSY_TOKEN) as client:
        done = load_window(warehouse, client, YEAR, LedgerKey(BUSY, "year", YEAR))
    requests = len(busy_app.requests)
    assert requests == done.stats.requests
    assert requests <= 1.10 * minimal, (requests, minimal, done.chunks)
    assert done.stats.reads == done.chunks + 1  # one chunk read twice, no other
    assert done.result.vanished == 1
    hidden = total - len(busy_app.campaigns(BUSY, YEAR.start, YEAR.end))
    assert hidden == 1
    with warehouse.connect() as conn:
        missing = conn.execute(
            select(FactSentCampaign.campaign_id).where(FactSentCampaign.missing_at_source_since.is_not(None))
        ).all()
        rows = conn.scalar(text("SELECT count(*) FROM cinnox.fact_sent_campaign"))
    assert len(missing) == 1  # kept, and marked missing by the chunk's final read
    assert rows == total
    assert done.result.records == total - 1  # counted once: the accepted reads only


def test_a_clean_year_costs_at_most_five_percent_more_than_its_pages(busy_app: SimulatorServer) -> None:
    """The chunk plan's overhead in requests, read without loading: the probe, short last pages."""
    total = len(busy_app.campaigns(BUSY, YEAR.start, YEAR.end))
    stats = ExtractionStats()
    with CinnoxClient(busy_app.url, BUSY, BUSY_TOKEN) as client:
        chunks = plan(YEAR, client.probe(YEAR, stats).total, DEFAULT_CHUNK_RECORDS)
        for chunk in chunks:
            client.read_chunk(chunk, stats, max_records=2 * DEFAULT_CHUNK_RECORDS)
    assert len(chunks) > 20
    assert stats.requests <= 1.05 * math.ceil(total / 100), (stats.requests, total, len(chunks))


_KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    from datetime import datetime
    from cinnox import CinnoxClient, Window
    from warehouse.db import create_warehouse_engine
    from warehouse.load import LedgerKey
    from warehouse.load.chunks import load_window

    url, base_url, start, end, kill_after = sys.argv[1:6]
    window = Window(datetime.fromisoformat(start), datetime.fromisoformat(end))

    def progress(step):
        if step.index == int(kill_after):
            os.kill(os.getpid(), signal.SIGKILL)  # as a worker dies: no cleanup, no rollback hook

    with CinnoxClient(base_url, "sim-app-1", "sim-token-sim-app-1") as client:
        load_window(create_warehouse_engine(url), client, window, LedgerKey("sim-app-1", "family", window, "run-1"),
                    chunk_records=180, progress=progress)
    """
)


def content(engine: Engine) -> set[tuple[object, ...]]:
    """The fact as analysts see it: its values and its dimensions' names, without surrogate
    keys, run ids or load times."""
    query = text(
        """
        SELECT f.campaign_id, f.sent_at, f.sent_date_key, f.channel_key, f.campaign_name, f.total_recipients,
               f.delivered, f.read, f.replied, f.pending, f.failed, f.settled_at IS NULL,
               f.missing_at_source_since IS NULL, s.phone, s.whatsapp_channel_name, s.template_source_name,
               s.sender_eid, st.staff_name, t.subject
        FROM cinnox.fact_sent_campaign f
        JOIN cinnox.dim_sender s USING (sender_key)
        LEFT JOIN cinnox.dim_staff st USING (staff_key)
        LEFT JOIN cinnox.dim_template t USING (template_key)
        """
    )
    with engine.connect() as conn:
        return {tuple(row) for row in conn.execute(query)}


def test_a_killed_run_resumes_from_the_ledger_and_ends_as_a_clean_run(
    simulator: SimulatorServer, create_database: Callable[[], str]
) -> None:
    window = Window(datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 6, 15, tzinfo=UTC))
    killed_url, clean_url = create_database(), create_database()
    killed, clean = create_warehouse_engine(killed_url), create_warehouse_engine(clean_url)
    for engine in (killed, clean):
        upgrade_to_head(engine)
    with client_for(simulator) as client:
        planned = load_window(clean, client, window, LedgerKey(APP, "clean", window), chunk_records=180).chunks
    kill_after = int(planned * 0.9)
    assert 1 <= kill_after < planned
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            _KILLED_RUN,
            killed_url,
            simulator.url,
            window.start.isoformat(),
            window.end.isoformat(),
            str(kill_after),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    with killed.connect() as conn:
        committed = [Window(s, e) for s, e in conn.execute(select(LoadChunk.window_start, LoadChunk.window_end))]
    assert len(committed) == kill_after

    simulator.reset_requests()
    with client_for(simulator) as client:
        retry = load_window(killed, client, window, LedgerKey(APP, "family", window, "run-2"), chunk_records=180)
    assert retry.resumed_chunks == kill_after
    # Nothing committed is read again: every request of the retry is the probe or a chunk it had not finished.
    reread = [
        r
        for r in simulator.requests
        if r.params["limit"] != "1"
        and any(w.start <= datetime.fromisoformat(r.params["startAt"]) < w.end for w in committed)
    ]
    assert reread == []
    assert 1 <= retry.chunks <= planned - kill_after + 1
    # Once the window is whole, a re-execution of the same run reads it all again.
    with client_for(simulator) as client:
        again = load_window(killed, client, window, LedgerKey(APP, "family", window, "run-3"), chunk_records=180)
    assert again.resumed_chunks == 0
    assert again.chunks >= planned - 1
    left, right = content(killed), content(clean)
    only_left = sorted(left - right, key=str)[:2]
    only_right = sorted(right - left, key=str)[:2]
    assert left == right, (only_left, only_right)
    for engine in (killed, clean):
        engine.dispose()


def test_a_statement_timeout_shorter_than_the_read_does_not_stop_a_backfill(
    create_database: Callable[[], str],
) -> None:
    url = create_database()
    upgrade_to_head(create_warehouse_engine(url))
    # Every statement may take a second; reading the whole window takes longer than that.
    timed = make_url(url).update_query_dict({"options": "-c statement_timeout=1000"})
    engine = create_warehouse_engine(timed.render_as_string(hide_password=False))
    window = Window(datetime(2026, 5, 16, tzinfo=UTC), datetime(2026, 6, 15, tzinfo=UTC))
    with SimulatorServer(now=NOW, latency=0.08) as sim, client_for(sim) as client:
        with engine.connect() as conn:
            assert conn.scalar(text("SHOW statement_timeout")) == "1s"
        done = load_window(engine, client, window, LedgerKey(APP, "slow", window), chunk_records=300)
        expected = {r["id"] for r in sim.campaigns(APP, window.start, window.end)}
    assert done.seconds > 1.0
    assert ids_in_warehouse(engine) == expected
    engine.dispose()
