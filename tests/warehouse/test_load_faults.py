"""Loads that meet bad data, going-back counters, vanished campaigns and database faults,
against the real PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from cinnox import Page, Window
from cinnox.simulator import SimulatorServer
from warehouse.load import load_sent_campaigns
from warehouse.models import CounterRegression, FactSentCampaign, SentCampaignReject, SourceField

APP = "sim-app-1"
DAY = Window(datetime(2026, 6, 3, tzinfo=UTC), datetime(2026, 6, 4, tzinfo=UTC))


def records(sim: SimulatorServer) -> list[dict[str, Any]]:
    return sim.universe.campaigns(APP, DAY.start, DAY.end, sim.now)


def page_of(batch: list[Any]) -> Page:
    return Page(APP, DAY, 0, batch, len(batch), datetime.now(UTC), 1)


def facts(engine: Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(FactSentCampaign.__table__)).mappings()
        return {row["campaign_id"]: dict(row) for row in rows}


def test_a_counter_going_back_is_loaded_and_recorded(warehouse: Engine, simulator: SimulatorServer) -> None:
    batch = records(simulator)
    load_sent_campaigns(warehouse, APP, DAY, [page_of(batch)], run_id="first")
    target = next(r for r in batch if (r.get("read") or 0) > 1)
    lower = {**target, "read": target["read"] - 1, "delivered": str(target["delivered"])}  # a numeric string
    result = load_sent_campaigns(
        warehouse, APP, DAY, [page_of([lower if r is target else r for r in batch])], run_id="2nd"
    )
    assert result.counter_regressions == 1
    assert result.updated == 1
    assert facts(warehouse)[target["id"]]["read"] == target["read"] - 1  # as CINNOX says now
    with warehouse.connect() as conn:
        row = conn.execute(select(CounterRegression.__table__)).one()
    assert (row.campaign_id, row.counter) == (target["id"], "read")
    assert (row.previous_value, row.new_value, row.dagster_run_id) == (target["read"], target["read"] - 1, "2nd")


def test_several_counters_going_back_at_once_are_each_recorded(warehouse: Engine, simulator: SimulatorServer) -> None:
    # The regressions are found in one join and unpivoted (load._record_regressions): every
    # counter that dropped gets its own row with its own values, and no counter that did not.
    batch = records(simulator)
    load_sent_campaigns(warehouse, APP, DAY, [page_of(batch)], run_id="first")
    target = next(r for r in batch if (r.get("read") or 0) > 1 and (r.get("replied") or 0) > 0)
    lower = {**target, "delivered": target["delivered"] - 2, "read": target["read"] - 1, "replied": 0}
    result = load_sent_campaigns(
        warehouse, APP, DAY, [page_of([lower if r is target else r for r in batch])], run_id="2nd"
    )
    assert result.counter_regressions == 3
    with warehouse.connect() as conn:
        rows = conn.execute(select(CounterRegression.__table__)).all()
    assert {(r.campaign_id, r.counter, r.previous_value, r.new_value, r.dagster_run_id) for r in rows} == {
        (target["id"], "delivered", target["delivered"], target["delivered"] - 2, "2nd"),
        (target["id"], "read", target["read"], target["read"] - 1, "2nd"),
        (target["id"], "replied", target["replied"], 0, "2nd"),
    }


def test_a_campaign_cinnox_stops_returning_is_marked_never_deleted(
    warehouse: Engine, simulator: SimulatorServer
) -> None:
    batch = records(simulator)
    gone = batch[0]
    load_sent_campaigns(warehouse, APP, DAY, [page_of(batch)])
    result = load_sent_campaigns(warehouse, APP, DAY, [page_of(batch[1:])])
    assert (result.marked_missing, result.missing_at_source) == (1, 1)
    rows = facts(warehouse)
    assert len(rows) == len(batch)
    assert rows[gone["id"]]["missing_at_source_since"] is not None
    assert all(row["missing_at_source_since"] is None for key, row in rows.items() if key != gone["id"])

    again = load_sent_campaigns(warehouse, APP, DAY, [page_of(batch[1:])])
    assert (again.marked_missing, again.missing_at_source) == (0, 1)  # marked once, still counted

    back = load_sent_campaigns(warehouse, APP, DAY, [page_of(batch)])
    assert (back.reappeared, back.missing_at_source) == (1, 0)
    assert facts(warehouse)[gone["id"]]["missing_at_source_since"] is None


def test_unknown_fields_are_kept_and_news_only_the_first_time(warehouse: Engine, simulator: SimulatorServer) -> None:
    batch = records(simulator)
    extended = [{**batch[0], "costUSD": 1.5, "sender": {**batch[0]["sender"], "region": "HK"}}, *batch[1:]]
    first = load_sent_campaigns(warehouse, APP, DAY, [page_of(extended)])
    assert first.new_fields == ["costUSD", "sender.region"]
    assert first.unknown_fields == ["costUSD", "sender.region"]
    second = load_sent_campaigns(warehouse, APP, DAY, [page_of(extended)])
    assert second.new_fields == []
    assert second.unknown_fields == ["costUSD", "sender.region"]
    with warehouse.connect() as conn:
        payload = conn.scalar(
            text("SELECT payload FROM cinnox_raw.sent_campaign_payload WHERE campaign_id = :id"), {"id": batch[0]["id"]}
        )
        known = dict(conn.execute(select(SourceField.field_path, SourceField.known)).all())
    assert payload["costUSD"] == 1.5
    assert payload["sender"]["region"] == "HK"
    assert known["costUSD"] is False
    assert known["delivered"] is True


def test_too_many_rejects_keep_the_rejects_and_merge_nothing(warehouse: Engine, simulator: SimulatorServer) -> None:
    batch = records(simulator)[:10]
    bad = [{**batch[0], "id": f"bad-{n}", "delivered": "lots"} for n in range(2)]
    result = load_sent_campaigns(warehouse, APP, DAY, [page_of([*batch, *bad])], max_reject_share=0.1)
    assert result.reject_share_exceeded
    assert result.reject_reasons == {"delivered 'lots' is not a whole number": 2}
    assert facts(warehouse) == {}
    with warehouse.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(SentCampaignReject)) == 2
    within = load_sent_campaigns(warehouse, APP, DAY, [page_of([*batch, *bad])], max_reject_share=0.2)
    assert not within.reject_share_exceeded
    assert len(facts(warehouse)) == 10


def _url(engine: Engine) -> str:
    return make_url(engine.url).set(drivername="postgresql").render_as_string(hide_password=False)


def test_a_connection_killed_mid_load_leaves_nothing_and_the_next_load_completes(
    warehouse: Engine, simulator: SimulatorServer, row_versions: Any
) -> None:
    batch = records(simulator)
    load_sent_campaigns(warehouse, APP, DAY, [page_of(batch[:5])])
    before = row_versions(warehouse)
    copying, killed = threading.Event(), threading.Event()

    def pages() -> Iterator[Page]:
        yield page_of(batch[:10])
        copying.set()  # the load's transaction is open and inside COPY now
        killed.wait(10)
        yield page_of(batch[10:])

    def kill() -> None:
        copying.wait(10)
        with psycopg.connect(_url(warehouse), autocommit=True) as admin:
            # The session copying into the load's stage table.
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE query LIKE 'COPY \"stage_sent_campaign\"%' AND datname = current_database()"
            )
        killed.set()

    killer = threading.Thread(target=kill)
    killer.start()
    with pytest.raises(OperationalError):
        load_sent_campaigns(warehouse, APP, DAY, pages())
    killer.join()
    assert row_versions(warehouse) == before
    result = load_sent_campaigns(warehouse, APP, DAY, [page_of(batch)])
    assert result.inserted == len(batch) - 5
    assert set(facts(warehouse)) == {r["id"] for r in batch}
