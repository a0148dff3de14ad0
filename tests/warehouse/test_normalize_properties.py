"""Property-based: whatever JSON CINNOX sends in whatever field, the normaliser either stages
a record PostgreSQL can store or rejects it with a reason. It never raises."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cinnox import Window
from cinnox._parse import MAX_COUNTER, InvalidRecord, parse_field_by_field, parse_well_formed
from warehouse.load.stage import campaign_row, rejection_row, stage_row, stored_version_row
from warehouse.normalize import (
    Rejection,
    StagedCampaign,
    stage_record,
    version_hash,
    version_json,
    well_formed_record,
)

WINDOW = Window(datetime(2024, 5, 24, tzinfo=UTC), datetime(2024, 5, 25, tzinfo=UTC))
NOW = datetime(2024, 5, 26, tzinfo=UTC)
VALID: dict[str, Any] = {
    "id": "6650f1c2a1b2c3d4e5f60719",
    "date": "2024-05-24T16:15:30.000+08:00",
    "campaignName": "Order updates",
    "channel": "WhatsApp",
    "createdBy": "Grace Hopper",
    "sender": {"phone": "+85290001234", "channelName": "Acme Shop", "sourceName": "Meta", "senderEID": "e1"},
    "subject": "order_update_v3",
    "totalRecipients": 50,
    "delivered": 48,
    "read": 30,
    "replied": 4,
    "pending": 1,
    "failed": 1,
}
COUNTERS = ("totalRecipients", "delivered", "read", "replied", "pending", "failed")

# Any JSON value: text includes NUL and lone surrogates, numbers go far past int32.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec=None)),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)
# Values shaped like what CINNOX might plausibly send by mistake for each field.
near_miss = st.sampled_from(
    ["", " ", "12", "-3", "1e3", "12.0", "2024-05-24", "2024-05-24T10:00:00", "SMS", "whats app", "\x00"]
) | st.integers(min_value=-(2**40), max_value=2**40)


@st.composite
def records(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)  # not even an object, sometimes
    record = dict(VALID)
    for name in list(VALID) + draw(st.lists(st.text(max_size=8), max_size=2)):
        choice = draw(st.integers(0, 5))
        if choice == 0:
            record.pop(name, None)
        elif choice == 1:
            record[name] = draw(json_values)
        elif choice == 2:
            record[name] = draw(near_miss)
    if isinstance(record.get("sender"), dict) and draw(st.booleans()):
        record["sender"] = {**record["sender"], "phone": draw(json_values | near_miss)}
    return record


def _storable(text: str | None) -> bool:
    return text is None or ("\x00" not in text and text.encode("utf-8", "strict") is not None)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records())
def test_any_json_is_staged_storable_or_rejected_with_a_reason(record: Any) -> None:
    staged = stage_record(record, WINDOW, NOW)  # must not raise, whatever the input
    if isinstance(staged, Rejection):
        assert staged.reasons
        assert all(isinstance(reason, str) and reason for reason in staged.reasons)
        assert (staged.payload_json is None) != (staged.payload_text is None)
        assert len(staged.payload_hash) == 32
        assert _storable(staged.campaign_id)
        return
    assert isinstance(staged, StagedCampaign)
    campaign = staged.campaign
    assert campaign.sent_at in WINDOW
    assert staged.sent_date == campaign.sent_at.date()
    assert json.loads(staged.payload_json) == record  # the raw layer keeps the record as sent
    assert "\\u0000" not in staged.payload_json
    for value in (campaign.total_recipients, campaign.delivered, campaign.read, campaign.replied):
        assert value is None or 0 <= value <= MAX_COUNTER
    for value in (campaign.pending, campaign.failed):
        assert value is None or 0 <= value <= MAX_COUNTER
    texts = [campaign.id, campaign.campaign_name, campaign.created_by, campaign.subject, *vars_of(campaign.sender)]
    assert all(_storable(text) for text in texts)
    # A counter sent as a numeric string loads as that number; absent stays NULL, never 0.
    for name, attribute in zip(
        COUNTERS, ("total_recipients", "delivered", "read", "replied", "pending", "failed"), strict=True
    ):
        sent = record.get(name)
        loaded = getattr(campaign, attribute)
        if sent is None:
            assert loaded is None
        elif isinstance(sent, str):
            assert loaded == int(float(sent.strip()))


def vars_of(sender: Any) -> list[str | None]:
    return [sender.phone, sender.channel_name, sender.source_name, sender.sender_eid]


@given(records())
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
def test_the_fast_path_parses_exactly_as_the_field_by_field_path(record: Any) -> None:
    # parse_well_formed takes only records of plain types; whatever it returns must be what
    # the field-by-field path returns for the same record (which then must not reject it).
    fast = parse_well_formed(record)
    if fast is None:
        return
    try:
        slow = parse_field_by_field(record)
    except InvalidRecord as exc:
        raise AssertionError(f"the fast path accepted a record the slow path rejects: {exc}") from exc
    assert fast == slow


@given(records(), st.booleans())
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
def test_the_stage_row_of_the_fast_path_is_the_full_paths_row(record: Any, final: bool) -> None:
    # The loader stages well-formed records without building objects; row for row, that must be
    # what the full path (stage_record, then campaign_row or rejection_row) stages.
    row, rejection = stage_row(7, final, record, WINDOW, NOW)
    staged = stage_record(record, WINDOW, NOW)
    if isinstance(staged, Rejection):
        assert rejection == staged
        assert row == rejection_row(7, final, staged)
    else:
        assert rejection is None
        assert row == campaign_row(7, final, staged)


@given(records(), st.booleans())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_a_stored_versions_row_is_the_loaders_row_but_its_json(record: Any, same_id: bool) -> None:
    # A rebuild stages a stored version from the text and hash raw keeps, without encoding it
    # again: the row must be the one the load staged, but for the JSON itself, left out when raw
    # holds the version under the id today's rules read.
    row, rejection = stage_row(7, True, record, WINDOW, NOW)
    try:
        stored = version_json(record)
    except TypeError:  # orjson refuses it: raw never stored such a version as valid
        return
    raw_id = (record.get("id") if isinstance(record, dict) else None) if same_id else "another-id"
    replayed, replayed_rejection = stored_version_row(7, record, stored, version_hash(stored), raw_id, WINDOW, NOW)
    assert replayed_rejection == rejection
    if well_formed_record(record, WINDOW) is not None and replayed[2] == raw_id:
        assert replayed == (*row[:4], None, *row[5:])
    else:
        assert replayed == row


@pytest.mark.parametrize(
    ("change", "fast"),
    [
        ({}, True),  # the documented shape
        ({"channel": "SMS", "read": None, "sender": {"phone": " +852 ", "senderEID": "e1"}}, True),
        ({"delivered": "48"}, False),  # a numeric string: examined field by field
        ({"channel": "whatsapp"}, False),  # spelled otherwise: normalised field by field
        ({"sender": {"phone": 85290001234}}, False),  # a number for a phone
        ({"read": True}, False),  # a boolean is not a counter
        ({"failed": -1}, False),
        ({"delivered": 48.0}, False),  # a float, even a whole one: examined field by field
        ({"delivered": 2**31}, False),  # larger than an integer column holds
        ({"id": ""}, False),
        ({"id": "x" * 513}, False),
        ({"date": "2024-05-24T16:15:30"}, False),  # no UTC offset
        ({"sender": None, "extra": [1, {"a": None}]}, True),  # unknown fields are kept, not checked
        ({"sender": {"phone": None, "unknown": 1}}, True),
    ],
)
def test_which_records_take_the_fast_path(change: dict[str, Any], fast: bool) -> None:
    record = {**VALID, **change}
    assert (parse_well_formed(record) is not None) is fast
    assert (well_formed_record(record, WINDOW) is not None) is fast
    if fast:
        assert parse_well_formed(record) == parse_field_by_field(record)


class _Treacherous(dict):  # type: ignore[type-arg]
    """A mapping whose reads fail: stands for any exception the parser did not foresee."""

    def get(self, key: object, default: object = None) -> object:
        raise RuntimeError("boom")


def test_an_unforeseen_exception_rejects_the_record_instead_of_raising() -> None:
    staged = stage_record(_Treacherous(VALID), WINDOW, NOW)
    assert isinstance(staged, Rejection)
    assert staged.reasons == ("record could not be examined (RuntimeError); it is kept as text",)
    assert staged.payload_text is not None
    assert json.loads(staged.payload_text) == VALID
    assert staged.campaign_id == VALID["id"]
