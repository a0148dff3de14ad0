"""The generated data itself: deterministic, shaped like the doc, consistent over time."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest

from cinnox.simulator import (
    DEFAULT_APPS,
    FIRST_DAY,
    SETTLE_MAX,
    CampaignUniverse,
    parse_rfc3339,
    start_of_utc_day,
)

DAY = timedelta(days=1)
START = datetime(2024, 5, 1, tzinfo=UTC)
NOW = datetime(2024, 6, 15, tzinfo=UTC)

SMS_KEYS = {
    "id", "date", "campaignName", "channel", "createdBy", "sender", "totalRecipients",
    "delivered",
}  # fmt: skip
WHATSAPP_KEYS = SMS_KEYS | {"subject", "read", "replied", "pending", "failed"}
SENDER_KEYS = {"SMS": {"phone", "senderEID"}, "WhatsApp": {"phone", "channelName", "sourceName"}}
COUNTERS = ("totalRecipients", "delivered", "read", "replied", "pending", "failed")


@pytest.fixture(scope="module")
def universe() -> CampaignUniverse:
    return CampaignUniverse()


def test_same_seed_same_data_and_other_seed_differs() -> None:
    a = CampaignUniverse(seed=42).campaigns("sim-app-1", START, START + 3 * DAY, NOW)
    b = CampaignUniverse(seed=42).campaigns("sim-app-1", START, START + 3 * DAY, NOW)
    c = CampaignUniverse(seed=43).campaigns("sim-app-1", START, START + 3 * DAY, NOW)
    assert a == b
    assert a != c
    assert {r["id"] for r in a}.isdisjoint({r["id"] for r in c})


def test_a_day_does_not_depend_on_what_was_generated_before() -> None:
    # Days are seeded on their own, so generating others first (or none) changes nothing.
    warm = CampaignUniverse()
    warm.campaigns("sim-app-1", START - 30 * DAY, START + 30 * DAY, NOW)
    cold = CampaignUniverse()
    window = (START + 10 * DAY, START + 11 * DAY, NOW)
    assert warm.campaigns("sim-app-1", *window) == cold.campaigns("sim-app-1", *window)


def test_record_keys_follow_the_availability_column(universe: CampaignUniverse) -> None:
    records = universe.campaigns("sim-app-1", START, START + 20 * DAY, NOW)
    channels = Counter(r["channel"] for r in records)
    assert set(channels) == {"SMS", "WhatsApp"}
    assert 0.3 < channels["SMS"] / len(records) < 0.5
    for record in records:
        expected = SMS_KEYS if record["channel"] == "SMS" else WHATSAPP_KEYS
        assert set(record) == expected, record
        assert set(record["sender"]) == SENDER_KEYS[record["channel"]], record
        assert all(v is not None for v in record.values())
        assert all(isinstance(v, str) and v for v in record["sender"].values())
        for key in COUNTERS:
            if key in record:
                assert type(record[key]) is int
                assert record[key] >= 0


def test_ids_are_24_lowercase_hex_unique_per_app_and_not_chronological(
    universe: CampaignUniverse,
) -> None:
    records = universe.campaigns("sim-app-1", START - 60 * DAY, START + 30 * DAY, NOW)
    ids = [r["id"] for r in records]
    assert all(re.fullmatch(r"[0-9a-f]{24}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    instants = [parse_rfc3339(r["date"]) for r in records]
    assert instants != sorted(instants)


def test_dates_are_rfc3339_with_millis_mostly_utc_some_offsets(
    universe: CampaignUniverse,
) -> None:
    records = universe.campaigns("sim-app-1", START, START + 20 * DAY, NOW)
    shape = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)")
    assert all(shape.fullmatch(r["date"]) for r in records)
    utc_share = sum(r["date"].endswith("Z") for r in records) / len(records)
    assert 0.6 < utc_share < 0.8
    offsets = {r["date"][-6:] for r in records if not r["date"].endswith("Z")}
    assert "+00:00" not in offsets
    assert len(offsets) > 3
    # The local wall date may differ from the UTC day; the instant is what counts.
    for record in records:
        assert START <= parse_rfc3339(record["date"]) < START + 20 * DAY


def test_per_day_volume_per_app(universe: CampaignUniverse) -> None:
    for app_id, (low, high) in {"sim-app-1": (20, 60), "sim-app-2": (5, 25)}.items():
        counts = [len(universe.campaigns(app_id, START + i * DAY, START + (i + 1) * DAY, NOW)) for i in range(30)]
        assert all(low <= n <= high for n in counts), (app_id, counts)
        assert len(set(counts)) > 5


def test_any_app_id_works_and_unknown_ones_are_refused() -> None:
    universe = CampaignUniverse(seed=1, apps=["acme-prod"])
    assert universe.campaigns("acme-prod", START, START + DAY, NOW)
    with pytest.raises(KeyError, match="sim-app-1"):
        universe.campaigns("sim-app-1", START, START + DAY, NOW)


def test_data_starts_on_2020_01_01(universe: CampaignUniverse) -> None:
    first = datetime.combine(FIRST_DAY, datetime.min.time(), tzinfo=UTC)
    assert universe.campaigns("sim-app-1", first - 365 * DAY, first, NOW) == []
    assert universe.campaigns("sim-app-1", first, first + DAY, NOW)


def test_a_year_back_from_today_has_data() -> None:
    today = start_of_utc_day()
    records = CampaignUniverse().campaigns("sim-app-2", today - 366 * DAY, today, today)
    days = {parse_rfc3339(r["date"]).astimezone(UTC).date() for r in records}
    assert len(days) == 366


def test_consecutive_days_partition_a_window(universe: CampaignUniverse) -> None:
    whole = universe.campaigns("sim-app-1", START, START + 5 * DAY, NOW)
    seen: list[str] = []
    for i in range(5):
        day = universe.campaigns("sim-app-1", START + i * DAY, START + (i + 1) * DAY, NOW)
        seen += [r["id"] for r in day]
    assert len(seen) == len(set(seen))
    assert set(seen) == {r["id"] for r in whole}


def test_window_bounds_are_exact_to_the_millisecond(universe: CampaignUniverse) -> None:
    record = universe.campaigns("sim-app-1", START, START + DAY, NOW)[0]
    sent = parse_rfc3339(record["date"])
    ms = timedelta(milliseconds=1)

    def ids(start: datetime, end: datetime) -> set[str]:
        return {r["id"] for r in universe.campaigns("sim-app-1", start, end, NOW)}

    assert record["id"] in ids(sent, sent + ms)
    assert record["id"] not in ids(sent - ms, sent)
    assert ids(sent, sent) == set()


def test_nothing_is_sent_at_or_after_now(universe: CampaignUniverse) -> None:
    record = universe.campaigns("sim-app-1", START, START + DAY, NOW)[0]
    sent = parse_rfc3339(record["date"])
    at_send = universe.campaigns("sim-app-1", START, START + DAY, sent)
    assert record["id"] not in {r["id"] for r in at_send}
    assert all(parse_rfc3339(r["date"]) < sent for r in at_send)
    just_after = universe.campaigns("sim-app-1", START, START + DAY, sent + timedelta(microseconds=1))
    assert record["id"] in {r["id"] for r in just_after}


def test_counters_grow_day_by_day_and_settle_within_ten_days(
    universe: CampaignUniverse,
) -> None:
    window = (START, START + 2 * DAY)
    previous: dict[str, dict[str, int]] = {}
    for hours in range(0, 13 * 24, 6):
        now = START + timedelta(hours=hours)
        for record in universe.campaigns("sim-app-1", *window, now):
            _check_invariants(record)
            before = previous.get(record["id"])
            if before is not None:
                for key in COUNTERS:
                    if key != "pending" and key in record:
                        assert record[key] >= before[key], (key, before, record)
            previous[record["id"]] = record
    settled = universe.campaigns("sim-app-1", *window, window[1] + SETTLE_MAX)
    assert settled == universe.campaigns("sim-app-1", *window, window[1] + 100 * DAY)
    assert len(settled) == len(previous)
    for record in settled:
        if record["channel"] == "WhatsApp":
            assert record["pending"] == 0
            assert record["delivered"] + record["failed"] == record["totalRecipients"]
        else:
            assert record["delivered"] >= int(record["totalRecipients"] * 0.85)


def test_counters_move_while_recent_campaigns_settle(universe: CampaignUniverse) -> None:
    window = (NOW - DAY, NOW)
    fresh = universe.campaigns("sim-app-1", *window, NOW)
    later = universe.campaigns("sim-app-1", *window, NOW + 3 * DAY)
    assert any(r["pending"] > 0 for r in fresh if r["channel"] == "WhatsApp")
    assert fresh != later
    assert [r["id"] for r in fresh] == [r["id"] for r in later]


def test_distribution_of_recipients(universe: CampaignUniverse) -> None:
    records = universe.campaigns("sim-app-1", START - 60 * DAY, START, NOW)
    totals = [r["totalRecipients"] for r in records]
    assert max(totals) <= 5000
    assert max(totals) > 1000
    assert 0.002 < totals.count(0) / len(totals) < 0.03
    for record in records:
        if record["totalRecipients"] == 0:
            assert all(record.get(key, 0) == 0 for key in COUNTERS)


def test_pools_per_app(universe: CampaignUniverse) -> None:
    profile = universe.profile("sim-app-1")
    assert len(profile.staff) == 50
    assert len({s.eid for s in profile.staff}) == 50
    assert len(profile.sms_senders) == 150
    assert any(p.startswith("+852") for p in profile.sms_senders)
    assert any(p.isalpha() for p in profile.sms_senders)
    assert len(profile.whatsapp_senders) == 100
    assert len(profile.templates) == 200
    records = universe.campaigns("sim-app-1", START, START + 10 * DAY, NOW)
    eids = {s.name: s.eid for s in profile.staff}
    for record in records:
        if record["channel"] == "SMS":
            assert record["sender"]["senderEID"] == eids[record["createdBy"]]
        else:
            assert record["subject"] in profile.templates


def test_renamed_whatsapp_channels_show_the_new_name_from_the_rename_day() -> None:
    universe = CampaignUniverse()
    renamed = [s for s in universe.profile("sim-app-1").whatsapp_senders if s.renamed_on]
    assert len(renamed) == 10
    sender = renamed[0]
    assert sender.renamed_on is not None
    assert sender.renamed_to is not None
    on = datetime.combine(sender.renamed_on, datetime.min.time(), tzinfo=UTC)
    names: dict[bool, set[str]] = {True: set(), False: set()}
    for record in universe.campaigns("sim-app-1", on - 120 * DAY, on + 120 * DAY, on + 200 * DAY):
        if record["channel"] == "WhatsApp" and record["sender"]["phone"] == sender.phone:
            after = parse_rfc3339(record["date"]) >= on
            names[after].add(record["sender"]["channelName"])
    assert names == {False: {sender.channel_name}, True: {sender.renamed_to}}


def test_every_year_from_2022_to_2028_has_a_rename() -> None:
    # So a year-long load near "today" always meets dimension history.
    for app_id in DEFAULT_APPS:
        days = [s.renamed_on for s in CampaignUniverse().profile(app_id).whatsapp_senders if s.renamed_on is not None]
        for first in range(0, 6 * 365, 7):
            start = date(2022, 1, 1) + timedelta(days=first)
            assert any(start <= d < start + timedelta(days=365) for d in days), (start, days)


def test_naive_datetimes_are_refused(universe: CampaignUniverse) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        universe.campaigns("sim-app-1", datetime(2024, 1, 1), START, NOW)


def test_start_of_utc_day() -> None:
    moment = datetime(2024, 3, 1, 2, 30, tzinfo=parse_rfc3339("2024-03-01T02:30:00+05:30").tzinfo)
    assert start_of_utc_day(moment) == datetime(2024, 2, 29, tzinfo=UTC)
    today = start_of_utc_day()
    assert today.tzinfo is UTC
    assert today.hour == 0
    assert today.date() == datetime.now(UTC).date()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2022-11-07T00:00:00.000Z", datetime(2022, 11, 7, tzinfo=UTC)),
        ("2022-11-07T08:00:00+08:00", datetime(2022, 11, 7, tzinfo=UTC)),
        # An unencoded "+" in a query string arrives as a space.
        ("2022-11-07T08:00:00 08:00", datetime(2022, 11, 7, tzinfo=UTC)),
        ("2022-11-06T19:00:00.5-05:00", datetime(2022, 11, 7, 0, 0, 0, 500000, tzinfo=UTC)),
    ],
)
def test_parse_rfc3339(text: str, expected: datetime) -> None:
    assert parse_rfc3339(text) == expected


@pytest.mark.parametrize(
    "text",
    ["2022-11-07", "2022-11-07T00:00:00", "2022-13-07T00:00:00Z", "yesterday", "2022-11-07T00:00Z"],
)
def test_parse_rfc3339_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"RFC3339|must be in|out of range"):
        parse_rfc3339(text)


def _check_invariants(record: dict[str, object]) -> None:
    total, delivered = record["totalRecipients"], record["delivered"]
    assert isinstance(total, int)
    assert isinstance(delivered, int)
    assert 0 <= delivered <= total
    if record["channel"] == "WhatsApp":
        read, replied, pending, failed = (record[k] for k in ("read", "replied", "pending", "failed"))
        assert isinstance(read, int)
        assert isinstance(replied, int)
        assert isinstance(pending, int)
        assert isinstance(failed, int)
        assert 0 <= replied <= read <= delivered
        assert pending == total - delivered - failed >= 0
