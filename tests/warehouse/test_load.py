"""The load path against a real PostgreSQL, fed by the simulator over HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from cinnox import CinnoxClient, CinnoxUnavailable, Page, Window
from cinnox.simulator import DEFAULT_APPS, SimulatorServer
from warehouse import load as load_module
from warehouse.load import LoadResult, load_sent_campaigns
from warehouse.load.stage import copy_into_stage, prepare_stage, stage
from warehouse.models import (
    DimApp,
    DimChannel,
    DimDate,
    DimSender,
    DimStaff,
    DimTemplate,
    FactSentCampaign,
    SentCampaignPayload,
    SentCampaignReject,
)
from warehouse.reporting import campaign_summary

APP = "sim-app-1"
WEEK = Window(datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 8, tzinfo=UTC))
Versions = Callable[[Engine], dict[str, set[tuple[str, str]]]]


def fetch(sim: SimulatorServer, app: str = APP, window: Window = WEEK, page_size: int = 50) -> Iterator[Page]:
    with CinnoxClient(sim.url, app, DEFAULT_APPS[app], page_size=page_size) as client:
        yield from client.sent_campaign_pages(window)


def page_of(records: list[Any], window: Window = WEEK, app: str = APP) -> Page:
    return Page(app, window, 0, records, len(records), datetime.now(UTC), 1)


def fact_rows(engine: Engine, app: str = APP) -> dict[str, dict[str, Any]]:
    query = (
        select(FactSentCampaign, DimChannel.channel, DimSender, DimStaff.staff_name, DimTemplate.subject)
        .join(DimApp, DimApp.app_key == FactSentCampaign.app_key)
        .join(DimChannel, DimChannel.channel_key == FactSentCampaign.channel_key)
        .join(DimSender, DimSender.sender_key == FactSentCampaign.sender_key)
        .outerjoin(DimStaff, DimStaff.staff_key == FactSentCampaign.staff_key)
        .outerjoin(DimTemplate, DimTemplate.template_key == FactSentCampaign.template_key)
        .where(DimApp.app_id == app)
    )
    rows: dict[str, dict[str, Any]] = {}
    with Session(engine) as session:
        for fact, channel, sender, staff, subject in session.execute(query):
            rows[fact.campaign_id] = {
                "sent_at": fact.sent_at,
                "channel": channel,
                "campaignName": fact.campaign_name,
                "createdBy": staff,
                "subject": subject,
                "sender": {
                    "phone": sender.phone,
                    "channelName": sender.whatsapp_channel_name,
                    "sourceName": sender.template_source_name,
                    "senderEID": sender.sender_eid,
                },
                "totalRecipients": fact.total_recipients,
                "delivered": fact.delivered,
                "read": fact.read,
                "replied": fact.replied,
                "pending": fact.pending,
                "failed": fact.failed,
            }
    return rows


def as_warehouse_row(record: dict[str, Any]) -> dict[str, Any]:
    """What one API record should look like in the star schema: absent fields are NULL."""
    sent_at = datetime.fromisoformat(record["date"]).astimezone(UTC)
    sender = record.get("sender", {})
    return {
        "sent_at": sent_at,
        "channel": record["channel"],
        "campaignName": record.get("campaignName"),
        "createdBy": record.get("createdBy"),
        "subject": record.get("subject"),
        "sender": {k: sender.get(k) for k in ("phone", "channelName", "sourceName", "senderEID")},
        **{k: record.get(k) for k in ("totalRecipients", "delivered", "read", "replied", "pending", "failed")},
    }


def count(engine: Engine, model: type[Any]) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(model)) or 0)


def test_first_load_puts_every_campaign_in_the_star(warehouse: Engine, simulator: SimulatorServer) -> None:
    expected = simulator.universe.campaigns(APP, WEEK.start, WEEK.end, simulator.now)
    result = load_sent_campaigns(warehouse, APP, WEEK, fetch(simulator), run_id="run-1")

    assert (result.records, result.valid, result.inserted, result.rejected) == (len(expected),) * 3 + (0,)
    assert fact_rows(warehouse) == {record["id"]: as_warehouse_row(record) for record in expected}
    assert count(warehouse, SentCampaignPayload) == len(expected)
    assert count(warehouse, DimDate) == 7
    with warehouse.connect() as conn:
        channels = dict(
            conn.execute(
                text(
                    "SELECT channel, count(*) FROM cinnox.dim_sender"
                    " JOIN cinnox.dim_channel USING (channel_key) GROUP BY 1"
                )
            ).all()
        )
        payload = conn.scalar(
            select(SentCampaignPayload.payload).where(SentCampaignPayload.campaign_id == expected[0]["id"])
        )
        run_ids = set(conn.scalars(select(FactSentCampaign.last_dagster_run_id)))
    assert set(channels) == {"SMS", "WhatsApp"}
    assert payload == expected[0]  # the raw layer keeps the record as returned
    assert run_ids == {"run-1"}


def test_sms_fields_absent_for_the_channel_are_null(warehouse: Engine, simulator: SimulatorServer) -> None:
    load_sent_campaigns(warehouse, APP, WEEK, fetch(simulator))
    rows = fact_rows(warehouse).values()
    sms = [r for r in rows if r["channel"] == "SMS"]
    whatsapp = [r for r in rows if r["channel"] == "WhatsApp"]
    assert sms
    assert whatsapp
    assert all(r["read"] is None and r["failed"] is None and r["subject"] is None for r in sms)
    assert all(r["sender"]["channelName"] is None and r["sender"]["senderEID"] for r in sms)
    assert all(r["read"] is not None and r["sender"]["senderEID"] is None for r in whatsapp)


def test_reloading_the_same_data_writes_no_row(
    warehouse: Engine, simulator: SimulatorServer, row_versions: Versions
) -> None:
    first = load_sent_campaigns(warehouse, APP, WEEK, fetch(simulator))
    before = row_versions(warehouse)
    with warehouse.connect() as conn:
        sequence_before = conn.scalar(text("SELECT last_value FROM cinnox.fact_sent_campaign_sent_campaign_key_seq"))

    again = load_sent_campaigns(warehouse, APP, WEEK, fetch(simulator, page_size=17))

    assert row_versions(warehouse) == before
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, first.inserted)
    assert (again.raw_versions_inserted, again.rejects_inserted, again.dimension_rows_inserted) == (0, 0, 0)
    with warehouse.connect() as conn:
        # No identity values burned on conflicts either.
        assert (
            conn.scalar(text("SELECT last_value FROM cinnox.fact_sent_campaign_sent_campaign_key_seq"))
            == sequence_before
        )


def test_counters_moving_on_update_exactly_the_changed_campaigns(
    warehouse: Engine, simulator: SimulatorServer, row_versions: Versions
) -> None:
    load_sent_campaigns(warehouse, APP, WEEK, fetch(simulator))
    before_rows = fact_rows(warehouse)
    before = row_versions(warehouse)

    simulator.now += timedelta(days=1)  # receipts keep arriving after the send
    expected = simulator.universe.campaigns(APP, WEEK.start, WEEK.end, simulator.now)
    changed = {r["id"] for r in expected if as_warehouse_row(r) != before_rows[r["id"]]}
    assert 0 < len(changed) < len(expected)

    result = load_sent_campaigns(warehouse, APP, WEEK, fetch(simulator))

    assert (result.inserted, result.updated, result.unchanged) == (0, len(changed), len(expected) - len(changed))
    assert result.raw_versions_inserted == len(changed)
    assert fact_rows(warehouse) == {r["id"]: as_warehouse_row(r) for r in expected}
    after = row_versions(warehouse)
    fact = "cinnox.fact_sent_campaign"
    assert len(after[fact] - before[fact]) == len(changed)  # only those rows were rewritten
    assert after["cinnox.dim_sender"] == before["cinnox.dim_sender"]


def test_bad_records_are_rejected_with_reasons_and_the_rest_load(
    warehouse: Engine, simulator: SimulatorServer, row_versions: Versions
) -> None:
    good = simulator.universe.campaigns(APP, WEEK.start, WEEK.end, simulator.now)[:3]
    bad = [
        {**good[0], "id": "neg", "delivered": -5},
        {**good[0], "id": "late", "date": "2026-07-01T00:00:00Z"},  # outside the requested window
        {"id": "nul", "date": good[0]["date"], "channel": "SMS", "campaignName": "a\u0000b"},
        "not an object",
        {**good[1], "id": None, "channel": "Fax"},
    ]
    result = load_sent_campaigns(warehouse, APP, WEEK, [page_of([*good, *bad])], run_id="r")

    assert (result.valid, result.rejected, result.inserted) == (3, 5, 3)
    with warehouse.connect() as conn:
        rejects = {
            row.campaign_id: row
            for row in conn.execute(select(SentCampaignReject).order_by(SentCampaignReject.reject_id))
        }
    assert set(fact_rows(warehouse)) == {r["id"] for r in good}
    assert rejects["neg"].reasons == ["delivered -5 is negative"]
    assert rejects["neg"].payload == bad[0]
    assert "outside the requested window" in rejects["late"].reasons[0]
    assert rejects["nul"].payload is None
    assert "\\u0000" in rejects["nul"].payload_text
    assert rejects[None].reasons  # the string and the id-less record; both kept
    assert len(rejects) == 4
    assert count(warehouse, SentCampaignReject) == 5
    assert sum(result.reject_reasons.values()) == 6  # the last record has two reasons

    before = row_versions(warehouse)
    load_sent_campaigns(warehouse, APP, WEEK, [page_of([*good, *bad])], run_id="r2")
    assert row_versions(warehouse) == before  # a known reject is not stored twice


def test_extraction_failing_midway_leaves_the_warehouse_as_it_was(
    warehouse: Engine, simulator: SimulatorServer, row_versions: Versions
) -> None:
    load_sent_campaigns(warehouse, APP, Window(WEEK.start, WEEK.start + timedelta(days=1)), fetch(simulator))
    before = row_versions(warehouse)
    simulator.now += timedelta(days=2)

    def two_pages_then_give_up() -> Iterator[Page]:
        pages = fetch(simulator, page_size=20)
        yield next(pages)
        yield next(pages)
        raise CinnoxUnavailable("CINNOX app 'sim-app-1': gave up", app_id=APP)

    with pytest.raises(CinnoxUnavailable):
        load_sent_campaigns(warehouse, APP, WEEK, two_pages_then_give_up())
    assert row_versions(warehouse) == before


def test_failure_after_the_fact_merge_rolls_everything_back(
    warehouse: Engine, simulator: SimulatorServer, row_versions: Versions, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = row_versions(warehouse)

    def broken(*args: object) -> int:
        raise RuntimeError("disk full")

    # The last step of a load: by now dimensions and the fact have been merged.
    monkeypatch.setattr(load_module, "record_fields", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        load_sent_campaigns(warehouse, APP, WEEK, fetch(simulator))
    assert row_versions(warehouse) == before


def test_two_apps_with_the_same_campaign_ids_never_overwrite_each_other(warehouse: Engine) -> None:
    record = {
        "id": "shared-id",
        "date": "2026-06-02T10:00:00Z",
        "channel": "SMS",
        "campaignName": "A",
        "sender": {"phone": "+1", "senderEID": "e"},
        "totalRecipients": 10,
        "delivered": 5,
    }
    load_sent_campaigns(warehouse, "app-a", WEEK, [page_of([record], app="app-a")])
    load_sent_campaigns(
        warehouse, "app-b", WEEK, [page_of([{**record, "campaignName": "B", "delivered": 9}], app="app-b")]
    )
    assert fact_rows(warehouse, "app-a")["shared-id"]["delivered"] == 5
    assert fact_rows(warehouse, "app-b")["shared-id"]["campaignName"] == "B"
    assert count(warehouse, DimSender) == 2  # dimensions are per app too


def test_the_same_campaign_twice_in_one_load_keeps_the_last_read(warehouse: Engine) -> None:
    first = {"id": "dup", "date": "2026-06-02T10:00:00Z", "channel": "SMS", "totalRecipients": 10, "delivered": 5}
    later = {**first, "delivered": 7}
    result = load_sent_campaigns(warehouse, APP, WEEK, [page_of([first]), page_of([later])])
    assert (result.valid, result.duplicates, result.inserted) == (2, 1, 1)
    assert fact_rows(warehouse)["dup"]["delivered"] == 7
    assert count(warehouse, SentCampaignPayload) == 2  # both versions CINNOX returned are kept


@pytest.mark.parametrize(
    ("ids", "vanished", "distinct"),
    [
        (["a", "b", "c"], [], True),
        (["a", "b", None, "c"], [], True),  # a reject (no id) in between changes nothing
        (["b", "a"], [], False),  # distinct, but only a sort can tell
        (["a", "a"], [], False),
        (["a", "b", "a"], [], False),
        (["a", "b"], ["a"], False),  # an earlier read's record of the same campaign
        (["a", "b"], ["c"], True),
    ],
)
def test_the_stage_proves_each_campaign_staged_once_only_when_ids_rise(
    warehouse: Engine, ids: list[str | None], vanished: list[str], distinct: bool
) -> None:
    def records(of: list[str | None]) -> list[dict[str, Any]]:
        return [{"id": i, "date": "2026-06-02T10:00:00Z", "channel": "SMS", "totalRecipients": 1} for i in of]

    with warehouse.begin() as conn:
        stage.create(conn)
        staged = copy_into_stage(conn, WEEK, [page_of(records(ids))], LoadResult(), [page_of(records(vanished))])
        assert staged.campaigns_distinct is distinct
        assert staged.fields == {"id", "date", "channel", "totalRecipients"}
        # Each valid record after a campaign's first counts as superseded, whichever path ran.
        valid = [i for i in ids + vanished if i is not None]
        assert prepare_stage(conn, campaigns_distinct=staged.campaigns_distinct) == len(valid) - len(set(valid))


def test_the_fact_row_keeps_the_version_it_was_written_from(warehouse: Engine) -> None:
    """A re-load skips a record whose version is its row's; any other version is compared."""
    record = {"id": "v", "date": "2026-06-02T10:00:00Z", "channel": "SMS", "totalRecipients": 10, "delivered": 5}

    def row() -> tuple[str, bytes | None]:
        with warehouse.connect() as conn:
            xmin, version = conn.execute(
                select(text("xmin::text"), FactSentCampaign.version_hash).where(FactSentCampaign.campaign_id == "v")
            ).one()
            return xmin, version

    def hash_of(version: dict[str, Any]) -> set[bytes]:
        payloads = select(SentCampaignPayload.payload_hash, SentCampaignPayload.payload)
        with warehouse.connect() as conn:
            return {stored for stored, payload in conn.execute(payloads) if payload == version}

    def load(version: dict[str, Any]) -> Any:
        return load_sent_campaigns(warehouse, APP, WEEK, [page_of([version])])

    load(record)
    written, version = row()
    assert {version} == hash_of(record)  # the raw version the row came from

    # Same values, another version (a field the star does not hold): raw keeps it, the row stays.
    extra = {**record, "note": "resent"}
    result = load(extra)
    assert (result.updated, result.unchanged, result.raw_versions_inserted) == (0, 1, 1)
    assert row() == (written, version)
    assert load(extra).raw_versions_inserted == 0
    assert row() == (written, version)

    # A -> B -> A: each change rewrites the row from the version read.
    changed = {**record, "delivered": 6}
    assert load(changed).updated == 1
    assert {row()[1]} == hash_of(changed)
    back = load(record)
    assert (back.updated, back.raw_versions_inserted, back.counter_regressions) == (1, 0, 1)
    written, version = row()
    assert {version} == hash_of(record)
    assert load(record).updated == 0
    assert row() == (written, version)

    # Rows written before the column existed: compared value by value, still nothing written.
    with warehouse.begin() as conn:
        conn.execute(FactSentCampaign.__table__.update().values(version_hash=None))
    written, _ = row()
    again = load(record)
    assert (again.updated, again.unchanged, again.raw_versions_inserted) == (0, 1, 0)
    assert row() == (written, None)


def test_date_dimension_calendar_columns(warehouse: Engine) -> None:
    record = {"id": "d", "date": "2026-06-07T23:30:00-05:00", "channel": "SMS"}  # 2026-06-08 04:30 UTC
    load_sent_campaigns(warehouse, APP, Window(WEEK.start, WEEK.end + timedelta(days=1)), [page_of([record])])
    with warehouse.connect() as conn:
        days = list(conn.scalars(select(DimDate.calendar_date).order_by(DimDate.calendar_date)))
        day = conn.execute(select(DimDate).where(DimDate.date_key == 20260608)).one()
    # Every day of the window, with campaigns or not: BI calendars need no gaps.
    assert [d.isoformat() for d in days] == [f"2026-06-0{n}" for n in range(1, 9)]
    assert day.date_key == 20260608
    assert day.calendar_date.isoformat() == "2026-06-08"
    assert (day.year, day.quarter, day.month, day.month_name, day.day_of_month) == (2026, 2, 6, "June", 8)
    assert (day.iso_year, day.iso_week, day.iso_day_of_week, day.day_name, day.is_weekend) == (
        2026,
        24,
        1,
        "Monday",
        False,
    )
    assert (day.iso_week_start.isoformat(), day.month_start.isoformat()) == ("2026-06-08", "2026-06-01")


def test_campaign_summary_matches_the_records(warehouse: Engine, simulator: SimulatorServer) -> None:
    load_sent_campaigns(warehouse, APP, WEEK, fetch(simulator))
    expected = simulator.universe.campaigns(APP, WEEK.start, WEEK.end, simulator.now)
    rows = {row.channel: row for row in campaign_summary(warehouse)}
    for channel in ("SMS", "WhatsApp"):
        records = [r for r in expected if r["channel"] == channel]
        row = rows[channel]
        assert (row.app_id, row.campaigns) == (APP, len(records))
        assert row.recipients == sum(r["totalRecipients"] for r in records)
        assert row.delivery_rate == pytest.approx(sum(r["delivered"] for r in records) / row.recipients)
    whatsapp = [r for r in expected if r["channel"] == "WhatsApp"]
    assert rows["WhatsApp"].read_rate == pytest.approx(
        sum(r["read"] for r in whatsapp) / sum(r["delivered"] for r in whatsapp)
    )
    assert rows["SMS"].read is None
    assert rows["SMS"].read_rate is None
