"""Loads of the same app at the same time: a year's backfill beside the hourly refresh.

A load reads without holding its app's merge lock, so a refresh can read and commit while a
long backfill is still reading. The backfill then merges an older read than the refresh's:
the newer read wins, and nothing the older read lacks or holds is taken for a change at the source.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select

from cinnox import Page, Window
from cinnox.simulator import SimulatorServer
from warehouse.db import create_warehouse_engine
from warehouse.load import LoadResult, load_sent_campaigns
from warehouse.models import COUNTER_COLUMNS, CounterRegression, FactSentCampaign, FactSentCampaignSnapshot

APP = "sim-app-1"
DAY = Window(datetime(2026, 6, 14, tzinfo=UTC), datetime(2026, 6, 15, tzinfo=UTC))
READ = datetime(2026, 6, 15, tzinfo=UTC)  # the source's clock at the backfill's read
LATER = READ + timedelta(hours=6)  # and at the refresh's, while the backfill still reads


def page_of(batch: list[dict[str, Any]]) -> Page:
    return Page(APP, DAY, 0, batch, len(batch), datetime.now(UTC), 1)


def facts(engine: Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(FactSentCampaign.__table__)).mappings()
        return {row["campaign_id"]: dict(row) for row in rows}


def counters(record: dict[str, Any]) -> tuple[Any, ...]:
    names = {"total_recipients": "totalRecipients"}
    return tuple(record.get(names.get(name, name)) for name in COUNTER_COLUMNS)


def test_a_refresh_beside_a_long_read_keeps_its_newer_values(warehouse: Engine, simulator: SimulatorServer) -> None:
    old = simulator.universe.campaigns(APP, DAY.start, DAY.end, READ)
    new_by_id = {r["id"]: r for r in simulator.universe.campaigns(APP, DAY.start, DAY.end, LATER)}
    changed = {r["id"] for r in old if counters(r) != counters(new_by_id[r["id"]])}
    assert changed  # the day's counters are still moving between the two reads
    load_sent_campaigns(warehouse, APP, DAY, [page_of(old)], run_id="yesterday")
    # What the refresh reads: the newer counters, one campaign gone from CINNOX, one just sent.
    gone = next(r["id"] for r in old if r["id"] not in changed)
    sent_since = {**old[0], "id": "campaign-sent-during-the-backfill", "date": "2026-06-14T23:59:00Z"}
    refresh_read = [r for r in new_by_id.values() if r["id"] != gone] + [sent_since]
    refreshed: list[LoadResult] = []
    refresh_engine = create_warehouse_engine(warehouse.url.render_as_string(hide_password=False))

    def backfill_pages() -> Iterator[Page]:
        yield page_of(old)
        # The backfill's transaction is open and copying; the refresh runs from start to commit.
        refresh = threading.Thread(
            target=lambda: refreshed.append(
                load_sent_campaigns(refresh_engine, APP, DAY, [page_of(refresh_read)], run_id="refresh")
            )
        )
        refresh.start()
        refresh.join(60)
        assert not refresh.is_alive(), "the refresh waited for the backfill's read"

    try:
        backfill = load_sent_campaigns(warehouse, APP, DAY, backfill_pages(), run_id="backfill")
    finally:
        refresh_engine.dispose()

    (refresh,) = refreshed
    assert (refresh.updated, refresh.inserted, refresh.marked_missing) == (len(changed), 1, 1)
    # The backfill's read is older than the refresh's for every campaign the refresh changed.
    assert backfill.stale == len(changed)
    assert (backfill.inserted, backfill.updated, backfill.counter_regressions) == (0, 0, 0)
    assert backfill.unchanged == len(old) - len(changed)
    # Not gone: the refresh read it after the backfill's read began. Not back: the backfill's
    # sighting of `gone` is older than the refresh's read that found it gone.
    assert (backfill.marked_missing, backfill.reappeared) == (0, 0)

    rows = facts(warehouse)
    assert set(rows) == {r["id"] for r in old} | {sent_since["id"]}
    for record in refresh_read:
        row = rows[record["id"]]
        assert tuple(row[name] for name in COUNTER_COLUMNS) == counters(record), record["id"]
        assert row["missing_at_source_since"] is None
    assert rows[gone]["missing_at_source_since"] is not None
    assert {rows[i]["last_dagster_run_id"] for i in changed} == {"refresh"}
    with warehouse.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(CounterRegression)) == 0
        # History: the first load's row of every campaign, and the refresh's of each change.
        snapshots = conn.scalar(select(func.count()).select_from(FactSentCampaignSnapshot))
    assert snapshots == len(old) + len(changed) + 1


def test_two_loads_reading_the_same_window_at_once_write_each_row_once(
    warehouse: Engine, simulator: SimulatorServer
) -> None:
    batch = simulator.universe.campaigns(APP, DAY.start, DAY.end, READ)
    # Separate engines: two runs are two processes with their own pools.
    engines = [create_warehouse_engine(warehouse.url.render_as_string(hide_password=False)) for _ in range(2)]
    both_reading = threading.Barrier(2, timeout=30)
    results: list[LoadResult] = []
    errors: list[BaseException] = []

    def pages() -> Iterator[Page]:
        both_reading.wait()  # each read begins only once the other has: they truly overlap
        yield page_of(batch)
        both_reading.wait()

    def load(engine: Engine) -> None:
        try:
            results.append(load_sent_campaigns(engine, APP, DAY, pages()))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for engine in engines:
        engine.dispose()
    assert errors == []
    # One merge waited for the other and found it all there (from a read as new, or newer).
    assert sorted(r.inserted for r in results) == [0, len(batch)]
    assert [r.updated for r in results] == [0, 0]
    assert sorted(r.unchanged + r.stale for r in results) == [0, len(batch)]
    assert set(facts(warehouse)) == {r["id"] for r in batch}
    with warehouse.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(FactSentCampaign)) == len(batch)
        assert conn.scalar(select(func.count()).select_from(FactSentCampaignSnapshot)) == len(batch)
