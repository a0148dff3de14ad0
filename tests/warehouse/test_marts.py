"""The cinnox_mart views against values computed by hand, the reader role, and the comments."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import ProgrammingError

from cinnox import Page, Window
from cinnox.simulator import SimulatorServer
from warehouse.load import SettlePolicy, load_sent_campaigns

ROOT = Path(__file__).resolve().parents[2]
READER = "cinnox_reader"
APPS = ("sim-app-1", "sim-app-2")
WINDOW = Window(datetime(2026, 5, 25, tzinfo=UTC), datetime(2026, 6, 8, tzinfo=UTC))
FIRST_READ = WINDOW.end + timedelta(hours=1)
SECOND_READ = WINDOW.end + timedelta(days=3)
COUNTERS = ("totalRecipients", "delivered", "read", "replied", "pending", "failed")
COLUMNS = {
    "totalRecipients": "total_recipients",
    "delivered": "delivered",
    "read": "read",
    "replied": "replied",
    "pending": "pending",
    "failed": "failed",
}


def records_at(sim: SimulatorServer, app: str, at: datetime) -> list[dict[str, Any]]:
    return sim.universe.campaigns(app, WINDOW.start, WINDOW.end, at)


def load_twice(engine: Engine, sim: SimulatorServer) -> None:
    """Every app's window read an hour after its end and again three days later."""
    for at in (FIRST_READ, SECOND_READ):
        for app in APPS:
            page = Page(app, WINDOW, 0, records_at(sim, app, at), None, at, 1)
            load_sent_campaigns(engine, app, WINDOW, [page], settle=SettlePolicy(quiet=timedelta(hours=48)))


def rate(numerator: int | None, denominator: int | None) -> Decimal | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    # The marts' rates are numeric(10, 4): PostgreSQL rounds half away from zero.
    return (Decimal(numerator) / Decimal(denominator)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


def rates(counters: dict[str, Any]) -> dict[str, Decimal | None]:
    return {
        "delivery_rate": rate(counters["delivered"], counters["totalRecipients"]),
        "read_rate": rate(counters["read"], counters["delivered"]),
        "reply_rate": rate(counters["replied"], counters["delivered"]),
        "failure_rate": rate(counters["failed"], counters["totalRecipients"]),
    }


def assert_same(actual: dict[str, Any], expected: dict[str, Any], where: str) -> None:
    assert actual.keys() >= expected.keys(), where
    for name, value in expected.items():
        if isinstance(value, Decimal):
            assert actual[name] == pytest.approx(value, rel=Decimal("1e-12")), f"{where}: {name}"
        else:
            assert actual[name] == value, f"{where}: {name}"


def view(engine: Engine, name: str, order: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        query = text(f"SELECT * FROM cinnox_mart.{name} ORDER BY {order}")  # noqa: S608  (names from the tests)
        return [dict(row) for row in conn.execute(query).mappings()]


def test_sent_campaign_every_column(warehouse: Engine, simulator: SimulatorServer) -> None:
    load_twice(warehouse, simulator)
    rows = {(r["app_id"], r["campaign_id"]): r for r in view(warehouse, "sent_campaign", "sent_campaign_key")}
    with warehouse.connect() as conn:
        durable = dict(conn.execute(text("SELECT sender_key, durable_sender_key FROM cinnox.dim_sender")).all())
        sender_of = dict(
            conn.execute(text("SELECT sent_campaign_key, sender_key FROM cinnox.fact_sent_campaign")).all()
        )
    expected_count = 0
    for app in APPS:
        first = {r["id"]: r for r in records_at(simulator, app, FIRST_READ)}
        for record in records_at(simulator, app, SECOND_READ):
            expected_count += 1
            row = rows[(app, record["id"])]
            sent_at = datetime.fromisoformat(record["date"]).astimezone(UTC)
            day = sent_at.date()
            counters = {name: record.get(name) for name in COUNTERS}
            unchanged = {name: first[record["id"]].get(name) for name in COUNTERS} == counters
            complete = counters["pending"] in (None, 0) and (
                counters["failed"] is None or counters["delivered"] + counters["failed"] >= counters["totalRecipients"]
            )
            # Read twice three days apart: settled at the second read when complete and unchanged.
            settled = SECOND_READ if unchanged and complete else None
            sender = record["sender"]
            assert_same(
                row,
                {
                    "campaign_name": record["campaignName"],
                    "sent_at": sent_at,
                    "sent_date": day,
                    "sent_week": day - timedelta(days=day.weekday()),
                    "sent_month": day.replace(day=1),
                    "sent_day_name": day.strftime("%A"),
                    "channel": record["channel"],
                    "sender_phone": sender["phone"],
                    "whatsapp_channel_name": sender.get("channelName"),
                    "template_source_name": sender.get("sourceName"),
                    "sender_eid": sender.get("senderEID"),
                    "durable_sender_key": durable[sender_of[row["sent_campaign_key"]]],
                    "created_by": record["createdBy"],
                    "template": record.get("subject"),
                    **{COLUMNS[name]: value for name, value in counters.items()},
                    **rates(counters),
                    "is_settled": settled is not None,
                    "settled_at": settled,
                    "counters_changed_at": FIRST_READ if unchanged else SECOND_READ,
                },
                f"{app} {record['id']}",
            )
            assert row["first_loaded_at"] is not None
    assert len(rows) == expected_count
    # Both kinds of campaign are there: some settled by the second read, some still moving.
    assert {r["is_settled"] for r in rows.values()} == {True, False}


EDGE_DAY = Window(datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC))
EDGE_RECORDS: list[dict[str, Any]] = [
    # No recipients at all: every rate is NULL, not a division error.
    {"id": "empty-wa", "channel": "WhatsApp", "totalRecipients": 0, "delivered": 0, "read": 0, "replied": 0,
     "pending": 0, "failed": 0},
    # Nothing delivered: read and reply rates NULL, delivery 0, failure 1.
    {"id": "all-failed", "channel": "WhatsApp", "totalRecipients": 10, "delivered": 0, "read": 0, "replied": 0,
     "pending": 0, "failed": 10},
    # SMS reports no reads, replies or failures: those rates are NULL, not 0.
    {"id": "sms-ok", "channel": "SMS", "totalRecipients": 5, "delivered": 4},
    {"id": "sms-empty", "channel": "SMS", "totalRecipients": 0, "delivered": 0},
]  # fmt: skip


def load_edges(engine: Engine) -> None:
    records = []
    for record in EDGE_RECORDS:
        sender = {"phone": "+85290000000", "senderEID": "eid-1"} if record["channel"] == "SMS" else {
            "phone": "+85290000001", "channelName": "Edge", "sourceName": "Meta"}  # fmt: skip
        records.append({**record, "date": "2026-03-02T10:00:00Z", "createdBy": "Edge Tester", "sender": sender})
    at = datetime(2026, 3, 2, 12, tzinfo=UTC)
    load_sent_campaigns(engine, "edge-app", EDGE_DAY, [Page("edge-app", EDGE_DAY, 0, records, 4, at, 1)])


def test_rates_with_zero_and_null(warehouse: Engine) -> None:
    load_edges(warehouse)
    rows = {r["campaign_id"]: r for r in view(warehouse, "sent_campaign", "campaign_id")}
    got = {
        cid: tuple(rows[cid][n] for n in ("delivery_rate", "read_rate", "reply_rate", "failure_rate")) for cid in rows
    }
    assert got == {
        "empty-wa": (None, None, None, None),
        "all-failed": (0, None, None, 1),
        "sms-ok": (Decimal("0.8"), None, None, None),
        "sms-empty": (None, None, None, None),
    }
    daily = view(warehouse, "daily_channel_summary", "channel")
    assert [
        (d["channel"], d["campaigns"], d["total_recipients"], d["delivered"], d["read"], d["failed"]) for d in daily
    ] == [
        ("SMS", 2, 5, 4, None, None),
        ("WhatsApp", 2, 10, 0, 0, 10),
    ]
    assert [(d["delivery_rate"], d["read_rate"], d["reply_rate"], d["failure_rate"]) for d in daily] == [
        (Decimal("0.8"), None, None, None),
        (0, None, None, 1),
    ]


def test_daily_channel_summary_by_hand(warehouse: Engine, simulator: SimulatorServer) -> None:
    load_twice(warehouse, simulator)
    sums: dict[tuple[date, str, str], dict[str, Any]] = defaultdict(lambda: defaultdict(int))
    first = {app: {r["id"]: r for r in records_at(simulator, app, FIRST_READ)} for app in APPS}
    for app in APPS:
        for record in records_at(simulator, app, SECOND_READ):
            day = datetime.fromisoformat(record["date"]).astimezone(UTC).date()
            group = sums[(day, app, record["channel"])]
            group["campaigns"] += 1
            unchanged = all(first[app][record["id"]].get(n) == record.get(n) for n in COUNTERS)
            complete = record.get("pending") in (None, 0) and (
                record.get("failed") is None or record["delivered"] + record["failed"] >= record["totalRecipients"]
            )
            group["settled_campaigns"] += unchanged and complete
            for name in COUNTERS:
                if record.get(name) is not None:
                    group[name] += record[name]
    rows = view(warehouse, "daily_channel_summary", "sent_date, app_id, channel")
    assert [(r["sent_date"], r["app_id"], r["channel"]) for r in rows] == sorted(sums)
    for row in rows:
        group = sums[(row["sent_date"], row["app_id"], row["channel"])]
        counters = {
            name: group.get(name) if row["channel"] == "WhatsApp" or name in COUNTERS[:2] else None for name in COUNTERS
        }
        assert_same(
            row,
            {
                "sent_week": row["sent_date"] - timedelta(days=row["sent_date"].weekday()),
                "sent_month": row["sent_date"].replace(day=1),
                "campaigns": group["campaigns"],
                "settled_campaigns": group["settled_campaigns"],
                **{COLUMNS[name]: value for name, value in counters.items()},
                **rates(counters),
            },
            str(row["sent_date"]),
        )


def test_campaign_progression_carries_counters_forward(warehouse: Engine) -> None:
    record = {
        "id": "progress", "date": "2026-06-01T08:00:00Z", "channel": "WhatsApp", "createdBy": "A",
        "sender": {"phone": "+85290000001", "channelName": "Shop", "sourceName": "Meta"},
        "totalRecipients": 100, "replied": 0, "failed": 0,
    }  # fmt: skip
    sent = datetime(2026, 6, 1, 8, tzinfo=UTC)
    observations = [
        (sent + timedelta(minutes=30), {"delivered": 40, "read": 10, "pending": 60}),
        (sent + timedelta(hours=3, minutes=10), {"delivered": 90, "read": 50, "pending": 10}),
        (sent + timedelta(hours=25), {"delivered": 100, "read": 80, "pending": 0}),
    ]
    day = Window(datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 2, tzinfo=UTC))
    for at, counters in observations:
        load_sent_campaigns(warehouse, "p-app", day, [Page("p-app", day, 0, [{**record, **counters}], 1, at, 1)])
    rows = {r["hours_since_send"]: r for r in view(warehouse, "campaign_progression", "hours_since_send")}
    # 30 days after the send (now is later than that), every whole hour exactly once.
    assert sorted(rows) == list(range(0, 30 * 24 + 1))
    expected_by_hour = {0: None, 1: 0, 3: 0, 4: 1, 24: 1, 25: 2, 720: 2}
    for hour, index in expected_by_hour.items():
        row = rows[hour]
        assert (row["as_of"], row["days_since_send"], row["campaign_id"], row["app_id"]) == (
            sent + timedelta(hours=hour),
            hour // 24,
            "progress",
            "p-app",
        )
        if index is None:
            assert row["observed_at"] is None
            assert all(row[c] is None for c in (*COLUMNS.values(), "delivery_rate", "read_rate")), hour
            continue
        at, counters = observations[index]
        full = {**{k: record.get(k) for k in COUNTERS}, **counters}
        assert_same(row, {"observed_at": at, **{COLUMNS[n]: v for n, v in full.items()}, **rates(full)}, str(hour))


def reader(conn: Connection) -> None:
    conn.execute(text(f"SET ROLE {READER}"))


def test_reader_reads_the_star_and_marts_and_nothing_else(warehouse: Engine, simulator: SimulatorServer) -> None:
    load_twice(warehouse, simulator)
    with warehouse.connect() as conn:
        assert conn.scalar(text("SELECT rolcanlogin FROM pg_roles WHERE rolname = :r"), {"r": READER}) is False
        reader(conn)
        for relation in (
            "cinnox_mart.sent_campaign",
            "cinnox_mart.daily_channel_summary",
            "cinnox_mart.campaign_progression",
            "cinnox.fact_sent_campaign",
            "cinnox.fact_sent_campaign_snapshot",
            "cinnox.dim_sender",
            "cinnox.dim_date",
        ):
            assert conn.scalar(text(f"SELECT count(*) > 0 FROM (SELECT 1 FROM {relation} LIMIT 1) AS r")), relation  # noqa: S608
    denied = [
        "SELECT * FROM cinnox_raw.sent_campaign_payload LIMIT 1",
        "SELECT * FROM cinnox_raw.sent_campaign_reject LIMIT 1",
        "INSERT INTO cinnox.dim_app (app_id) VALUES ('intruder')",
        "UPDATE cinnox.fact_sent_campaign SET delivered = 0",
        "DELETE FROM cinnox.fact_sent_campaign",
        "TRUNCATE cinnox.dim_staff",
        "CREATE TABLE cinnox.intruder (x int)",
        "CREATE VIEW cinnox_mart.intruder AS SELECT 1 AS x",
        "CREATE TABLE cinnox_raw.intruder (x int)",
        "CREATE SCHEMA intruder",
        # Bookkeeping is not the analysts' business, and the reader creates nothing, not even TEMP.
        "SELECT * FROM cinnox_ops.api_request_budget LIMIT 1",
        "CREATE TEMP TABLE intruder (x int)",
    ]
    for statement in denied:
        with warehouse.connect() as conn:
            reader(conn)
            with pytest.raises(ProgrammingError, match="permission denied"):
                conn.execute(text(statement))


def test_reader_can_read_tables_created_later(warehouse: Engine) -> None:
    with warehouse.connect() as conn:
        conn.execute(text("CREATE TABLE cinnox.created_later (x int)"))  # as the migrating user
        conn.execute(text("INSERT INTO cinnox.created_later VALUES (1)"))
        reader(conn)
        assert conn.scalar(text("SELECT x FROM cinnox.created_later")) == 1
        conn.rollback()


def test_every_table_view_and_column_is_described(warehouse: Engine) -> None:
    with warehouse.connect() as conn:
        relations = conn.execute(
            text(
                "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname IN ('cinnox', 'cinnox_raw', 'cinnox_mart') AND c.relkind IN ('r', 'v', 'm', 'p') "
                "AND coalesce(obj_description(c.oid, 'pg_class'), '') = ''"
            )
        ).scalars()
        columns = conn.execute(
            text(
                "SELECT n.nspname || '.' || c.relname || '.' || a.attname FROM pg_attribute a "
                "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname IN ('cinnox', 'cinnox_raw', 'cinnox_mart') AND c.relkind IN ('r', 'v', 'm', 'p') "
                "AND a.attnum > 0 AND NOT a.attisdropped AND coalesce(col_description(c.oid, a.attnum), '') = ''"
            )
        ).scalars()
        schemas = conn.execute(
            text(
                "SELECT nspname FROM pg_namespace WHERE nspname IN ('cinnox', 'cinnox_raw', 'cinnox_mart') "
                "AND coalesce(obj_description(oid, 'pg_namespace'), '') = ''"
            )
        ).scalars()
        described = conn.scalar(
            text(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'cinnox_mart' AND c.relkind = 'v'"
            )
        )
        assert (list(relations), list(columns), list(schemas)) == ([], [], [])
    assert described == 3


def documented_queries() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", (ROOT / "docs" / "warehouse.md").read_text(), flags=re.DOTALL)


def test_documented_queries_run_as_the_reader(
    warehouse: Engine, simulator: SimulatorServer, renamed_sender: tuple[str, date, Window]
) -> None:
    load_twice(warehouse, simulator)
    _, _, around_rename = renamed_sender  # so the query on renamed channels has something to show
    at = around_rename.end + timedelta(days=30)
    records = simulator.universe.campaigns("sim-app-1", around_rename.start, around_rename.end, at)
    load_sent_campaigns(
        warehouse, "sim-app-1", around_rename, [Page("sim-app-1", around_rename, 0, records, None, at, 1)]
    )
    queries = [q for q in documented_queries() if not q.lstrip().startswith("CREATE ROLE")]
    assert len(queries) == 10
    for number, query in enumerate(queries, start=1):
        with warehouse.connect() as conn:
            reader(conn)
            rows = conn.execute(text(query)).all()
        assert rows, f"example query {number} returned nothing on a loaded warehouse"
