"""Counter history, the settled flag, type-2 senders and the refresh-window evidence.

Pages are built from the simulator's universe at chosen simulated times, so each load is an
observation at a known instant, as an hourly refresh on successive days would make.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from cinnox import Page, Window
from cinnox.simulator import SimulatorServer
from warehouse.load import SettlePolicy, load_sent_campaigns
from warehouse.models import DimApp, DimSender, FactSentCampaign, FactSentCampaignSnapshot
from warehouse.quality import refresh_window_evidence

APP = "sim-app-1"
DAY = Window(datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 2, tzinfo=UTC))
COUNTERS = ("totalRecipients", "delivered", "read", "replied", "pending", "failed")
Versions = Callable[[Engine], dict[str, set[tuple[str, str]]]]


def observe(sim: SimulatorServer, window: Window, at: datetime, app: str = APP) -> Page:
    """The window's records as CINNOX reports them at `at`, fetched at `at`."""
    records = sim.universe.campaigns(app, window.start, window.end, at)
    return Page(app, window, 0, records, len(records), at, 1)


DEFAULT_SETTLE = SettlePolicy()


def load_at(
    engine: Engine, sim: SimulatorServer, window: Window, at: datetime, settle: SettlePolicy = DEFAULT_SETTLE
) -> Any:
    return load_sent_campaigns(engine, APP, window, [observe(sim, window, at)], settle=settle)


def snapshots(engine: Engine) -> dict[str, list[tuple[datetime, dict[str, int | None]]]]:
    query = (
        select(FactSentCampaign.campaign_id, FactSentCampaignSnapshot)
        .join(FactSentCampaign, FactSentCampaign.sent_campaign_key == FactSentCampaignSnapshot.sent_campaign_key)
        .order_by(FactSentCampaignSnapshot.observed_at)
    )
    history: dict[str, list[tuple[datetime, dict[str, int | None]]]] = {}
    with engine.connect() as conn:
        for row in conn.execute(query).mappings():
            counters = {
                "totalRecipients": row["total_recipients"],
                **{name: row[name] for name in COUNTERS[1:]},
            }
            history.setdefault(row["campaign_id"], []).append((row["observed_at"], counters))
    return history


def counters_of(record: dict[str, Any]) -> dict[str, int | None]:
    return {name: record.get(name) for name in COUNTERS}


def test_history_grows_with_change_only(warehouse: Engine, simulator: SimulatorServer, row_versions: Versions) -> None:
    times = [DAY.end + timedelta(hours=h) for h in (1, 25, 49, 73)]
    expected: dict[str, list[tuple[datetime, dict[str, int | None]]]] = {}
    for at in times:
        result = load_at(warehouse, simulator, DAY, at)
        changed = 0
        for record in simulator.universe.campaigns(APP, DAY.start, DAY.end, at):
            seen = expected.setdefault(record["id"], [])
            if not seen or seen[-1][1] != counters_of(record):
                seen.append((at, counters_of(record)))
                changed += 1
        assert result.snapshots_inserted == changed
    assert snapshots(warehouse) == expected
    # Counters grow over the days after the send: some campaigns have several snapshots.
    assert max(len(rows) for rows in expected.values()) == len(times)
    assert any(len(rows) == 1 for rows in expected.values()), "a campaign that settled within the first hour"

    # The same counters observed again an hour later: no snapshot, no row written anywhere.
    last = observe(simulator, DAY, times[-1])
    before = row_versions(warehouse)
    again = load_sent_campaigns(
        warehouse, APP, DAY, [Page(APP, DAY, 0, last.records, last.total, times[-1] + timedelta(hours=1), 1)]
    )
    assert (again.snapshots_inserted, again.updated, again.inserted) == (0, 0, 0)
    assert row_versions(warehouse) == before


def _complete(record: dict[str, Any]) -> bool:
    if record.get("pending") not in (None, 0):
        return False
    return record.get("failed") is None or record["delivered"] + record["failed"] >= record["totalRecipients"]


def settled_at(engine: Engine) -> dict[str, datetime | None]:
    with engine.connect() as conn:
        return dict(conn.execute(select(FactSentCampaign.campaign_id, FactSentCampaign.settled_at)).all())


def test_settled_after_a_quiet_period(warehouse: Engine, simulator: SimulatorServer) -> None:
    policy = SettlePolicy(quiet=timedelta(hours=24), final_age=timedelta(days=30))
    times = [DAY.end + timedelta(hours=h) for h in (1, 13, 37, 61, 24 * 12, 24 * 13)]
    history: dict[str, list[tuple[datetime, dict[str, int | None]]]] = {}
    for at in times:
        load_at(warehouse, simulator, DAY, at, policy)
        records = simulator.universe.campaigns(APP, DAY.start, DAY.end, at)
        for record in records:
            seen = history.setdefault(record["id"], [])
            if not seen or seen[-1][1] != counters_of(record):
                seen.append((at, counters_of(record)))
        # By hand: complete, and unchanged since the last change for at least the quiet period.
        # Once settled, the first instant that held stays.
        expected = {}
        previous = settled_at(warehouse) if at != times[0] else {}
        for record in records:
            changed_at = history[record["id"]][-1][0]
            before = previous.get(record["id"])
            if before is not None:
                expected[record["id"]] = before
            elif _complete(record) and at - changed_at >= policy.quiet:
                expected[record["id"]] = at
            else:
                expected[record["id"]] = None
        assert settled_at(warehouse) == expected, at
    final = settled_at(warehouse)
    # Twelve days on, every simulated campaign has settled (the simulator settles within ten).
    assert all(value is not None for value in final.values())
    assert len(set(final.values())) > 1, "campaigns settle at different times"


def test_settled_cleared_when_counters_move_again(warehouse: Engine) -> None:
    policy = SettlePolicy(quiet=timedelta(hours=1), final_age=timedelta(days=30))
    record = {
        "id": "late-receipt",
        "date": "2026-06-01T08:00:00Z",
        "channel": "WhatsApp",
        "sender": {"phone": "+85200000000", "channelName": "Shop", "sourceName": "Meta"},
        "totalRecipients": 10,
        "delivered": 9,
        "read": 5,
        "replied": 1,
        "pending": 0,
        "failed": 1,
    }
    t0 = datetime(2026, 6, 2, tzinfo=UTC)
    for hours, counters, settled in (
        (0, {}, None),  # first sighting: complete, but not yet quiet
        (2, {}, t0 + timedelta(hours=2)),  # quiet for 2h >= 1h
        (3, {"read": 6}, None),  # a late read: not settled any more
        (5, {"read": 6}, t0 + timedelta(hours=5)),
    ):
        at = t0 + timedelta(hours=hours)
        page = Page(APP, DAY, 0, [{**record, **counters}], 1, at, 1)
        load_sent_campaigns(warehouse, APP, DAY, [page], settle=policy)
        assert settled_at(warehouse) == {"late-receipt": settled}, hours
    with warehouse.connect() as conn:
        assert conn.scalar(select(FactSentCampaign.counters_changed_at)) == t0 + timedelta(hours=3)


def test_incomplete_counters_never_settle_and_old_complete_ones_settle_at_once(warehouse: Engine) -> None:
    base = {"date": "2026-01-01T08:00:00Z", "channel": "WhatsApp", "totalRecipients": 10, "delivered": 8}
    records = [
        {**base, "id": "pending", "pending": 2, "failed": 0},
        {**base, "id": "unaccounted", "pending": 0, "failed": 1},  # 8 + 1 < 10
        {**base, "id": "done", "pending": 0, "failed": 2},
        {**base, "id": "sms", "channel": "SMS"},  # SMS reports no failures or pending
    ]
    at = datetime(2026, 6, 1, tzinfo=UTC)  # five months after the send: past the final age
    january = Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    result = load_sent_campaigns(warehouse, APP, january, [Page(APP, january, 0, records, 4, at, 1)])
    assert result.valid == 4, result.reject_reasons
    assert settled_at(warehouse) == {"pending": None, "unaccounted": None, "done": at, "sms": at}


def sender_versions(engine: Engine, phone: str) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(DimSender).where(DimSender.phone == phone).order_by(DimSender.valid_from)))


@pytest.mark.parametrize("order", ["in order", "newest first"])
def test_renamed_sender_keeps_its_old_version(
    warehouse: Engine, simulator: SimulatorServer, renamed_sender: tuple[str, date, Window], order: str
) -> None:
    phone, renamed_on, window = renamed_sender
    at = window.end + timedelta(days=30)
    halves = [
        Window(window.start, window.start + timedelta(days=10)),
        Window(window.start + timedelta(days=10), window.end),
    ]
    if order == "newest first":  # a backfill of older days after the newer ones
        halves.reverse()
    for half in halves:
        load_sent_campaigns(warehouse, APP, half, [observe(simulator, half, at)])

    records = [
        r for r in simulator.universe.campaigns(APP, window.start, window.end, at) if r["sender"]["phone"] == phone
    ]
    old, new = sender_versions(warehouse, phone)
    assert old.whatsapp_channel_name != new.whatsapp_channel_name
    first_old = min(
        datetime.fromisoformat(r["date"]) for r in records if r["sender"]["channelName"] == old.whatsapp_channel_name
    )
    first_new = min(
        datetime.fromisoformat(r["date"]) for r in records if r["sender"]["channelName"] == new.whatsapp_channel_name
    )
    assert first_new.date() >= renamed_on
    assert (old.valid_from, old.valid_to, old.is_current) == (first_old, first_new, False)
    assert (new.valid_from, new.valid_to, new.is_current) == (first_new, None, True)
    assert old.durable_sender_key == new.durable_sender_key == min(old.sender_key, new.sender_key)

    # Every campaign points at the version valid when it was sent, old ones at the old name.
    with warehouse.connect() as conn:
        pointed = dict(
            conn.execute(
                select(FactSentCampaign.campaign_id, DimSender.sender_key)
                .join(DimSender, DimSender.sender_key == FactSentCampaign.sender_key)
                .where(DimSender.phone == phone)
            ).all()
        )
    for record in records:
        sent = datetime.fromisoformat(record["date"])
        assert pointed[record["id"]] == (old.sender_key if sent < first_new else new.sender_key)


def test_refresh_window_evidence_matches_the_history(warehouse: Engine, simulator: SimulatorServer) -> None:
    # Hourly refreshes are summarised by one refresh a day, at 06:00, over a 7-day window:
    # day D is read on D+1 ... D+7, as the schedule would.
    first, last = date(2026, 5, 1), date(2026, 5, 14)
    history: dict[str, list[datetime]] = {}
    sent: dict[str, datetime] = {}
    counters: dict[str, dict[str, int | None]] = {}
    day = first + timedelta(days=1)
    while day <= last + timedelta(days=7):
        at = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=6)
        start = max(first, day - timedelta(days=7))
        end = min(last + timedelta(days=1), day)
        window = Window(
            datetime.combine(start, datetime.min.time(), UTC), datetime.combine(end, datetime.min.time(), UTC)
        )
        load_sent_campaigns(warehouse, APP, window, [observe(simulator, window, at)])
        for record in simulator.universe.campaigns(APP, window.start, window.end, at):
            sent[record["id"]] = datetime.fromisoformat(record["date"])
            if counters.get(record["id"]) != counters_of(record):
                history.setdefault(record["id"], []).append(at)
                counters[record["id"]] = counters_of(record)
        day += timedelta(days=1)

    evidence = refresh_window_evidence(warehouse, APP, refresh_days=7, beyond=3)
    as_of = max(t for times in history.values() for t in times)
    assert [row.days for row in evidence.by_age] == list(range(1, 11))
    for row in evidence.by_age:
        at_age = {cid: sent[cid] + timedelta(days=row.days) for cid in history}
        eligible = [cid for cid, times in history.items() if times[0] < at_age[cid] <= as_of]
        changed = [cid for cid in eligible if history[cid][-1] >= at_age[cid]]
        assert (row.campaigns, row.changed) == (len(eligible), len(changed)), row.days
    # The simulator settles within ten days: with a 7-day window, some change is still seen on
    # its last day, and none is seen beyond the window (nothing reads those days any more).
    assert evidence.last_day is not None
    assert evidence.last_day.days == 6
    assert evidence.last_day.changed > 0
    assert all(row.changed == 0 for row in evidence.by_age if row.days >= 8)
    past = [cid for cid in history if sent[cid] < as_of - timedelta(days=7)]
    assert evidence.campaigns_past_window == len(past)
    with warehouse.connect() as conn:
        unsettled = conn.scalar(
            select(func.count())
            .select_from(FactSentCampaign)
            .join(DimApp, DimApp.app_key == FactSentCampaign.app_key)
            .where(FactSentCampaign.settled_at.is_(None), FactSentCampaign.sent_at < as_of - timedelta(days=7))
        )
    assert evidence.unsettled_past_window == unsettled


def test_no_history_no_evidence(warehouse: Engine) -> None:
    evidence = refresh_window_evidence(warehouse, "nobody", refresh_days=7)
    assert (evidence.by_age, evidence.last_day, evidence.campaigns_past_window) == ([], None, 0)
