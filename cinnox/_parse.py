"""Turn one raw sent-campaign record into a `SentCampaign`, or say everything wrong with it.

Pure functions: no I/O, so every odd input is a one-line table-driven test.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec

from cinnox._models import Channel, Sender, SentCampaign

# Counters are stored as PostgreSQL integer; a larger value would abort the whole load.
MAX_COUNTER = 2_147_483_647
# A campaign id is an identifier, keyed on in every layer; a btree entry holds at most ~2.7 KB,
# so a longer "id" is refused rather than failing the whole load.
MAX_ID_LENGTH = 512
COUNTER_FIELDS = ("totalRecipients", "delivered", "read", "replied", "pending", "failed")
_CHANNELS = {"sms": Channel.SMS, "whatsapp": Channel.WHATSAPP}
_NUMERIC_STRING = re.compile(r"\+?\d+(\.0*)?")


class InvalidRecord(ValueError):
    """A record that cannot be loaded; `reasons` lists every problem found, not just the first."""

    def __init__(self, reasons: list[str], campaign_id: str | None) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = tuple(reasons)
        self.campaign_id = campaign_id


def normalize_channel(value: object) -> Channel | None:
    """'WhatsApp', 'whatsapp', 'WHATS_APP', ' Whats App ' -> Channel.WHATSAPP; unknown -> None."""
    if not isinstance(value, str):
        return None
    return _CHANNELS.get(re.sub(r"[^a-z0-9]", "", value.casefold()))


def parse_sent_campaign(record: object) -> SentCampaign:
    """Validate and normalise one record of the sent-campaigns summary.

    Absent or null fields become None (never 0): which fields exist depends on the channel.
    Free text (the id, names, subject, sender fields) is kept byte for byte: not trimmed, and
    an empty string stays an empty string; only JSON null or an absent field is None. Only
    the channel, a closed set, is normalised.
    Raises `InvalidRecord` with every reason when the record cannot be loaded.
    """
    well_formed = parse_well_formed(record)
    return well_formed if well_formed is not None else parse_field_by_field(record)


def parse_field_by_field(record: object) -> SentCampaign:
    """`parse_sent_campaign` without the fast path: every field examined, every reason kept."""
    if not isinstance(record, Mapping):
        raise InvalidRecord([f"record is not a JSON object but {_json_type(record)}"], None)
    reasons: list[str] = []

    campaign_id = _parse_id(record.get("id"), reasons)
    sent_at = _parse_date(record.get("date"), reasons)
    raw_channel = record.get("channel")
    channel = normalize_channel(raw_channel)
    if raw_channel is None:
        reasons.append("channel is missing")
    elif channel is None:
        reasons.append(f"channel {_show(raw_channel)} is neither SMS nor WhatsApp")

    sender = _parse_sender(record.get("sender"), reasons)
    text = {name: _optional_text(record, name, reasons) for name in ("campaignName", "createdBy", "subject")}
    counters = {name: _parse_counter(record, name, reasons) for name in COUNTER_FIELDS}

    if reasons or campaign_id is None or sent_at is None or channel is None:
        raise InvalidRecord(reasons, campaign_id)
    return SentCampaign(
        id=campaign_id,
        sent_at=sent_at,
        channel=channel,
        campaign_name=text["campaignName"],
        created_by=text["createdBy"],
        sender=sender,
        subject=text["subject"],
        total_recipients=counters["totalRecipients"],
        delivered=counters["delivered"],
        read=counters["read"],
        replied=counters["replied"],
        pending=counters["pending"],
        failed=counters["failed"],
    )


_EXACT_CHANNELS = {"SMS": Channel.SMS, "WhatsApp": Channel.WHATSAPP}


# The values `well_formed_fields` returns, in this order: the stage's columns (the sender flat).
WellFormedFields = tuple[
    str,  # id
    datetime,  # sent_at, UTC
    Channel,
    str | None,  # campaignName
    str | None,  # createdBy
    str | None,  # sender.phone
    str | None,  # sender.channelName
    str | None,  # sender.sourceName
    str | None,  # sender.senderEID
    str | None,  # subject
    int | None,  # totalRecipients
    int | None,  # delivered
    int | None,  # read
    int | None,  # replied
    int | None,  # pending
    int | None,  # failed
]


def parse_well_formed(record: object) -> SentCampaign | None:
    """The fast path: a record whose every field has its plain type (text as str, counters as
    int in range, the channel spelled as documented) parsed with no per-field bookkeeping;
    None for anything else, which `parse_sent_campaign` then examines field by field.

    For the records it accepts it returns exactly what the field-by-field path returns (a
    property test holds it to that); it was 21 µs of a load's per-record cost (bench/).
    """
    fields = well_formed_fields(record)
    if fields is None:
        return None
    (campaign_id, sent_at, channel, name, created_by, phone, channel_name, source_name, eid, subject, *counters) = (
        fields
    )
    return SentCampaign(
        id=campaign_id,
        sent_at=sent_at,
        channel=channel,
        campaign_name=name,
        created_by=created_by,
        sender=Sender(phone=phone, channel_name=channel_name, source_name=source_name, sender_eid=eid),
        subject=subject,
        total_recipients=counters[0],
        delivered=counters[1],
        read=counters[2],
        replied=counters[3],
        pending=counters[4],
        failed=counters[5],
    )


_Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNTER)]


class _WellFormedSender(msgspec.Struct):
    phone: str | None = None
    channelName: str | None = None
    sourceName: str | None = None
    senderEID: str | None = None


class _WellFormedRecord(msgspec.Struct):
    """A record of plain types, as msgspec checks it in C: text as str, counters as int in
    range, the channel spelled as documented. Other fields are ignored, as everywhere."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]
    date: str
    channel: Literal["SMS", "WhatsApp"]
    campaignName: str | None = None
    createdBy: str | None = None
    sender: _WellFormedSender | None = None
    subject: str | None = None
    totalRecipients: _Count | None = None
    delivered: _Count | None = None
    read: _Count | None = None
    replied: _Count | None = None
    pending: _Count | None = None
    failed: _Count | None = None


_NO_SENDER = _WellFormedSender()


def well_formed_fields(record: object) -> WellFormedFields | None:
    """`parse_well_formed`'s checks, its values as a flat tuple: the loader stages them as
    they are, without building a SentCampaign per record. The type checks run in C
    (msgspec.convert, strict: no bool for an int, no float or string for a counter): 1 us a
    record against 2.7 us for the same checks in Python (bench/)."""
    if type(record) is not dict:
        return None
    try:
        parsed = msgspec.convert(record, _WellFormedRecord)
    except Exception:  # ValidationError, or whatever an odd value raises: the full path decides
        return None
    try:
        moment = datetime.fromisoformat(parsed.date.strip())
        if moment.tzinfo is None:
            return None
        sent_at = moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    sender = parsed.sender or _NO_SENDER
    return (
        parsed.id,
        sent_at,
        _EXACT_CHANNELS[parsed.channel],
        parsed.campaignName,
        parsed.createdBy,
        sender.phone,
        sender.channelName,
        sender.sourceName,
        sender.senderEID,
        parsed.subject,
        parsed.totalRecipients,
        parsed.delivered,
        parsed.read,
        parsed.replied,
        parsed.pending,
        parsed.failed,
    )


def _parse_id(value: object, reasons: list[str]) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and len(value) > MAX_ID_LENGTH:
        reasons.append(f"id {_show(value)} is longer than {MAX_ID_LENGTH} characters ({len(value)})")
        return None
    if isinstance(value, str) and value:
        return value  # byte for byte: "a" and " a" are two campaigns
    reasons.append("id is missing" if value is None or value == "" else f"id {_show(value)} is not a string")
    return None


def parse_send_time(value: object) -> datetime | None:
    """A record's `date` as UTC, or None when it does not read as one (no reasons kept)."""
    return _parse_date(value, [])


def _parse_date(value: object, reasons: list[str]) -> datetime | None:
    if value is None:
        reasons.append("date is missing")
        return None
    if not isinstance(value, str):
        reasons.append(f"date {_show(value)} is not an RFC3339 string")
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        reasons.append(f"date {_show(value)} is not an RFC3339 date-time")
        return None
    if parsed.tzinfo is None:
        reasons.append(f"date {_show(value)} has no UTC offset")
        return None
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:30+01:00 is before year 1 in UTC
        reasons.append(f"date {_show(value)} is outside the years 1 to 9999 once in UTC")
        return None


def _parse_sender(value: object, reasons: list[str]) -> Sender:
    if value is None:
        return Sender()
    if not isinstance(value, Mapping):
        reasons.append(f"sender is not an object but {_json_type(value)}")
        return Sender()
    return Sender(
        phone=_optional_text(value, "phone", reasons, prefix="sender."),
        channel_name=_optional_text(value, "channelName", reasons, prefix="sender."),
        source_name=_optional_text(value, "sourceName", reasons, prefix="sender."),
        sender_eid=_optional_text(value, "senderEID", reasons, prefix="sender."),
    )


def _optional_text(record: Mapping[str, object], name: str, reasons: list[str], prefix: str = "") -> str | None:
    value = record.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        return value  # free text, byte for byte: "" stays "", "  " stays "  "
    # A phone number or EID sent as a JSON number is still the same identifier.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    reasons.append(f"{prefix}{name} {_show(value)} is not a string")
    return None


def _parse_counter(record: Mapping[str, object], name: str, reasons: list[str]) -> int | None:
    value = record.get(name)
    number: int | None
    if value is None:
        return None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float):
        number = int(value) if math.isfinite(value) and value.is_integer() else None
    elif isinstance(value, str) and _NUMERIC_STRING.fullmatch(value.strip()):
        # The whole part only, and never more digits than any counter can have: Python refuses
        # to convert 4,300+ digits, and float("1" * 400) is infinite.
        whole = value.strip().split(".")[0].lstrip("+").lstrip("0") or "0"
        number = int(whole) if len(whole) <= len(str(MAX_COUNTER)) else MAX_COUNTER + 1
    elif isinstance(value, str) and value.strip().startswith("-") and _NUMERIC_STRING.fullmatch(value.strip()[1:]):
        number = -1  # reported as negative below
    else:
        number = None
    if number is None:
        reasons.append(f"{name} {_show(value)} is not a whole number")
    elif number < 0:
        reasons.append(f"{name} {_show(value)} is negative")
    elif number > MAX_COUNTER:
        reasons.append(f"{name} {_show(value)} is larger than {MAX_COUNTER}")
    else:
        return number
    return None


def _json_type(value: object) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _show(value: object) -> str:
    """A short repr for messages: enough to find the record, never a whole payload."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
