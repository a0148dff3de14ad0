"""parse_sent_campaign: one case per odd input, each with why it matters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from cinnox import Channel, InvalidRecord, Sender, SentCampaign, normalize_channel, parse_sent_campaign

SMS = {
    "id": "6650f1c2a1b2c3d4e5f60718",
    "date": "2024-05-24T08:15:30.123Z",
    "campaignName": "Spring sale",
    "channel": "SMS",
    "createdBy": "Ada Lovelace",
    "sender": {"phone": "+85230001234", "senderEID": "eid-ada"},
    "totalRecipients": 120,
    "delivered": 118,
}
WHATSAPP = {
    "id": "6650f1c2a1b2c3d4e5f60719",
    "date": "2024-05-24T16:15:30.000+08:00",
    "campaignName": "Order updates",
    "channel": "WhatsApp",
    "createdBy": "Grace Hopper",
    "sender": {"phone": "+85290001234", "channelName": "Acme Shop", "sourceName": "Meta"},
    "subject": "order_update_v3",
    "totalRecipients": 50,
    "delivered": 40,
    "read": 30,
    "replied": 5,
    "pending": 8,
    "failed": 2,
}


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    record = {**base, **changes}
    return {k: v for k, v in record.items() if v is not _ABSENT}


_ABSENT = object()


def test_sms_record_has_whatsapp_fields_null() -> None:
    campaign = parse_sent_campaign(SMS)
    assert campaign == SentCampaign(
        id="6650f1c2a1b2c3d4e5f60718",
        sent_at=datetime(2024, 5, 24, 8, 15, 30, 123000, tzinfo=UTC),
        channel=Channel.SMS,
        campaign_name="Spring sale",
        created_by="Ada Lovelace",
        sender=Sender(phone="+85230001234", sender_eid="eid-ada"),
        subject=None,
        total_recipients=120,
        delivered=118,
        read=None,  # SMS does not report reads: NULL, never 0
        replied=None,
        pending=None,
        failed=None,
    )


def test_whatsapp_record_flattens_sender_and_converts_offset_to_utc() -> None:
    campaign = parse_sent_campaign(WHATSAPP)
    assert campaign.sent_at == datetime(2024, 5, 24, 8, 15, 30, tzinfo=UTC)
    assert campaign.sender == Sender(phone="+85290001234", channel_name="Acme Shop", source_name="Meta")
    assert (campaign.subject, campaign.read, campaign.replied, campaign.pending, campaign.failed) == (
        "order_update_v3",
        30,
        5,
        8,
        2,
    )


@pytest.mark.parametrize(
    ("changes", "field", "expected"),
    [
        # Channel spelling drifts between CINNOX products; the meaning does not.
        ({"channel": "whatsapp"}, "channel", Channel.WHATSAPP),
        ({"channel": " WHATS_APP "}, "channel", Channel.WHATSAPP),
        ({"channel": "sms"}, "channel", Channel.SMS),
        # A counter sent as a numeric string or a whole float is still a count.
        ({"delivered": "41"}, "delivered", 41),
        ({"delivered": 41.0}, "delivered", 41),
        ({"delivered": "41.0"}, "delivered", 41),
        # Absent and null both mean "not reported".
        ({"read": _ABSENT}, "read", None),
        ({"read": None}, "read", None),
        # Zero is a real value, distinct from absent.
        ({"failed": 0}, "failed", 0),
        # A phone number sent as a JSON number is the same identifier.
        ({"sender": {"phone": 85290001234}}, "sender", Sender(phone="85290001234")),
        # No sender at all: every sender attribute NULL.
        ({"sender": _ABSENT}, "sender", Sender()),
        ({"sender": None}, "sender", Sender()),
        # Free text is data, byte for byte: spaces stay, "" stays "" (only null/absent is None).
        ({"subject": "   "}, "subject", "   "),
        ({"campaignName": "  Padded  "}, "campaign_name", "  Padded  "),
        ({"createdBy": ""}, "created_by", ""),
        ({"sender": {"channelName": " Shop\t"}}, "sender", Sender(channel_name=" Shop\t")),
        ({"id": " id-1 "}, "id", " id-1 "),
        # Counters as strings of many digits are read without converting them whole.
        ({"delivered": "0000000041"}, "delivered", 41),
        # A numeric id is still an id.
        ({"id": 12345}, "id", "12345"),
        # Other offsets, and no fraction of a second.
        ({"date": "2024-05-24T00:15:30-05:30"}, "sent_at", datetime(2024, 5, 24, 5, 45, 30, tzinfo=UTC)),
    ],
)
def test_accepted_variants(changes: dict[str, Any], field: str, expected: object) -> None:
    campaign = parse_sent_campaign(with_(WHATSAPP, **changes))
    assert getattr(campaign, field) == expected


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (with_(SMS, id=_ABSENT), "id is missing"),
        (with_(SMS, id=""), "id is missing"),
        (with_(SMS, id=["x"]), "id ['x'] is not a string"),
        (with_(SMS, id=True), "id True is not a string"),
        (with_(SMS, date=_ABSENT), "date is missing"),
        (with_(SMS, date="yesterday"), "date 'yesterday' is not an RFC3339 date-time"),
        (with_(SMS, date=1716538530), "date 1716538530 is not an RFC3339 string"),
        # Without an offset the instant is unknown; guessing UTC could move it to another day.
        (with_(SMS, date="2024-05-24T08:15:30"), "date '2024-05-24T08:15:30' has no UTC offset"),
        (with_(SMS, channel=_ABSENT), "channel is missing"),
        (with_(SMS, channel="Telegram"), "channel 'Telegram' is neither SMS nor WhatsApp"),
        (with_(SMS, channel=1), "channel 1 is neither SMS nor WhatsApp"),
        (with_(SMS, delivered=-1), "delivered -1 is negative"),
        (with_(SMS, delivered="-3"), "delivered '-3' is negative"),
        (with_(SMS, delivered="many"), "delivered 'many' is not a whole number"),
        (with_(SMS, delivered=1.5), "delivered 1.5 is not a whole number"),
        (with_(SMS, delivered=True), "delivered True is not a whole number"),
        (with_(SMS, delivered=[1]), "delivered [1] is not a whole number"),
        (with_(SMS, totalRecipients=2**40), f"totalRecipients {2**40} is larger than 2147483647"),
        (with_(SMS, sender="+85230001234"), "sender is not an object but a string"),
        (with_(SMS, sender={"phone": {"n": 1}}), "sender.phone {'n': 1} is not a string"),
        (with_(SMS, campaignName=["a"]), "campaignName ['a'] is not a string"),
        # Dates at the ends of the calendar: once in UTC they fall outside datetime's range.
        (
            with_(SMS, date="0001-01-01T00:30:00+01:00"),
            "date '0001-01-01T00:30:00+01:00' is outside the years 1 to 9999 once in UTC",
        ),
        (
            with_(SMS, date="9999-12-31T23:30:00-01:00"),
            "date '9999-12-31T23:30:00-01:00' is outside the years 1 to 9999 once in UTC",
        ),
        # More digits than Python converts, and more than a float holds.
        (with_(SMS, delivered="1" * 5000), f"delivered '{'1' * 56}... is larger than 2147483647"),
        (with_(SMS, delivered="1" * 400 + ".0"), f"delivered '{'1' * 56}... is larger than 2147483647"),
        (with_(SMS, id="i" * 600), f"id '{'i' * 56}... is longer than 512 characters (600)"),
        ("not a record", "record is not a JSON object but a string"),
        (None, "record is not a JSON object but null"),
        ([SMS], "record is not a JSON object but an array"),
    ],
)
def test_rejected_records_say_why(record: object, reason: str) -> None:
    with pytest.raises(InvalidRecord) as caught:
        parse_sent_campaign(record)
    assert reason in caught.value.reasons


def test_every_problem_is_reported_not_just_the_first() -> None:
    with pytest.raises(InvalidRecord) as caught:
        parse_sent_campaign({"id": "x", "date": "nope", "channel": "Fax", "delivered": -2, "read": "?"})
    assert len(caught.value.reasons) == 4
    assert caught.value.campaign_id == "x"


def test_unknown_fields_are_ignored_by_the_parser() -> None:
    # New CINNOX fields must not break loading; the raw layer keeps them.
    assert parse_sent_campaign(with_(SMS, clicked=3, sender={**SMS["sender"], "region": "HK"})) == parse_sent_campaign(
        SMS
    )


@pytest.mark.parametrize("value", [None, 3, "", "e-mail", "SMS2"])
def test_normalize_channel_unknown(value: object) -> None:
    assert normalize_channel(value) is None
