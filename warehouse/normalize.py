"""From raw API records to staging rows: parse, validate, and keep what cannot be loaded.

Pure functions: the loader streams their output into COPY, and the tests call them directly.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import orjson

from cinnox import (
    InvalidRecord,
    NumberLiteral,
    SentCampaign,
    Window,
    format_rfc3339,
    parse_sent_campaign,
)
from cinnox._parse import WellFormedFields, well_formed_fields

# jsonb and text cannot hold U+0000; an unescaped \u0000 escape in JSON text means one is there.
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
# A field name is kept in cinnox_raw.source_field, keyed on it: a btree entry holds at most
# ~2.7 KB, so a record with a longer top-level (or sender) field name is rejected.
MAX_FIELD_NAME_LENGTH = 512
# orjson serialises at most 255 levels; a record nested deeper is rejected (kept as text).
MAX_DEPTH = 255


@dataclass(frozen=True, slots=True)
class StagedCampaign:
    """A record that passed validation, with its JSON kept for the raw layer."""

    campaign: SentCampaign
    sent_date: date  # the UTC day: the Dagster partition the campaign belongs to
    payload_json: str  # version_json: keys sorted
    payload_hash: bytes  # version_hash: what identifies this version in cinnox_raw
    extracted_at: datetime


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record that cannot be loaded: every reason, and the record itself, kept."""

    campaign_id: str | None
    reasons: tuple[str, ...]
    payload_json: str | None  # None when jsonb cannot hold the record; then only payload_text
    payload_text: str | None
    payload_hash: bytes
    extracted_at: datetime


def stage_record(record: object, window: Window, extracted_at: datetime) -> StagedCampaign | Rejection:
    """Validate one record fetched for `window`; never raises, whatever the record holds.

    A record that cannot be loaded is a `Rejection` whose reasons name the field at fault.
    """
    try:
        return _stage_record(record, window, extracted_at)
    except Exception as exc:  # the last resort: one record must never fail a window
        encoded = _encode_anything(record)
        reason = f"record could not be examined ({type(exc).__name__}); it is kept as text"
        return _reject(record, [reason], encoded, extracted_at, storable=False)


def version_json(record: object) -> bytes:
    """A valid record's JSON as its version in cinnox_raw: orjson's, keys sorted at every level.

    Sorted, so that the same content is the same version whatever order CINNOX sent its keys
    in, and so that the JSON read back from jsonb (which keeps its own key order) gives the
    same text again: a stored version can be hashed again without CINNOX (revision 0012)."""
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def version_hash(json: bytes) -> bytes:
    """What identifies a version in cinnox_raw: SHA-256 of its `version_json`, hashed here
    once (in SQL it was jsonb to text, then SHA-256: 4 us a record, most of a no-op re-load's
    raw-layer time)."""
    return hashlib.sha256(json).digest()


def well_formed_record(record: object, window: Window) -> tuple[str, bytes, WellFormedFields] | None:
    """`stage_record`'s fast path: the version JSON, its hash and the field values of a
    well-formed record sent inside `window`, with no object built; None for any other, which
    `stage_record` examines.

    For the records it accepts, the stage row is the one `stage_record` gives (a property test
    holds it to that); it is most of a load's records and a third of their Python time."""
    if type(record) is not dict:
        return None
    try:
        encoded = version_json(record)
    except TypeError:
        return None
    # well_formed_version's checks, written out: a call is 3% of this path, the load's per record.
    if _holds_nul(encoded):  # the full path rejects it, naming the field
        return None
    if len(encoded) > MAX_FIELD_NAME_LENGTH and _long_field_name(record) is not None:
        return None
    fields = well_formed_fields(record)
    if fields is None or not window.start <= fields[1] < window.end:
        return None
    return encoded.decode(), version_hash(encoded), fields


def well_formed_version(record: dict[object, object], encoded: bytes, window: Window) -> WellFormedFields | None:
    """`well_formed_record`'s checks of a record whose JSON text is `encoded`: its field values,
    or None for a record `stage_record` must examine (a property test holds the two together).

    A rebuild passes the text cinnox_raw stored: encoding and hashing a stored version again
    was half of the replay's Python work per record (4 of 8 us)."""
    if _holds_nul(encoded):  # the full path rejects it, naming the field
        return None
    if len(encoded) > MAX_FIELD_NAME_LENGTH and _long_field_name(record) is not None:
        return None
    fields = well_formed_fields(record)
    if fields is None or not window.start <= fields[1] < window.end:
        return None
    return fields


def _holds_nul(encoded: bytes) -> bool:
    """True when JSON text holds an escaped NUL (`\\u0000`), which jsonb and text cannot store.

    Most records hold no escape at all: the one-byte search runs in C's memchr (0.3 us a record
    against 0.5 for the 7-byte one), and the regex, which rules out an escaped backslash
    followed by "u0000" (harmless text), runs only for the rare record with that sequence."""
    return b"\\" in encoded and b"\\u0000" in encoded and _NUL_ESCAPE.search(encoded) is not None


def _stage_record(record: object, window: Window, extracted_at: datetime) -> StagedCampaign | Rejection:
    try:
        encoded = orjson.dumps(record)
    except TypeError:
        # orjson refuses lone surrogates, NaN/Infinity markers and deep nesting; the record is
        # still kept, as text, with the field at fault named.
        encoded = _encode_anything(record)
        reason = _find_problem(record) or "record cannot be written as JSON"
        return _reject(record, [reason], encoded, extracted_at, storable=False)
    if _holds_nul(encoded):
        reason = _find_problem(record) or "record holds a NUL character (\\u0000), which PostgreSQL cannot store"
        return _reject(record, [reason], encoded, extracted_at, storable=False)
    if len(encoded) > MAX_FIELD_NAME_LENGTH and isinstance(record, dict):
        # Keys are str here (orjson refuses others); max(map(len)) runs in C.
        sender = record.get("sender")
        if max(map(len, record), default=0) > MAX_FIELD_NAME_LENGTH or (
            isinstance(sender, dict) and max(map(len, sender), default=0) > MAX_FIELD_NAME_LENGTH
        ):
            return _reject(record, [_long_field_name(record) or "a field name is too long"], encoded, extracted_at)
    try:
        campaign = parse_sent_campaign(record)
    except InvalidRecord as exc:
        return _reject(record, list(exc.reasons), encoded, extracted_at, exc.campaign_id)
    if campaign.sent_at not in window:
        reason = f"sent at {format_rfc3339(campaign.sent_at)}, outside the requested window {window}"
        return _reject(record, [reason], encoded, extracted_at, campaign.id)
    version = version_json(record)
    return StagedCampaign(campaign, campaign.sent_at.date(), version.decode(), version_hash(version), extracted_at)


def _reject(
    record: object,
    reasons: Sequence[str],
    encoded: bytes,
    extracted_at: datetime,
    campaign_id: str | None = None,
    *,
    storable: bool = True,  # False: jsonb would refuse it, so keep it as text
) -> Rejection:
    if campaign_id is None and isinstance(record, dict):
        value = dict.get(record, "id")  # the plain dict's, whatever a subclass does
        campaign_id = value if isinstance(value, str) and value else None
    if campaign_id is not None and not is_storable_text(campaign_id):
        campaign_id = None
    text = encoded.decode()
    return Rejection(
        campaign_id=campaign_id,
        reasons=tuple(reasons),
        payload_json=text if storable else None,
        payload_text=None if storable else text,
        payload_hash=hashlib.sha256(encoded).digest(),
        extracted_at=extracted_at,
    )


def is_storable_text(value: str) -> bool:
    if "\x00" in value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _long_field_name(record: dict[object, object]) -> str | None:
    """The reason for a top-level or sender field name too long to key on, or None."""
    sender = record.get("sender")
    names = [("", record), ("sender.", sender)] if isinstance(sender, dict) else [("", record)]
    for prefix, mapping in names:
        for key in mapping:
            if len(str(key)) > MAX_FIELD_NAME_LENGTH:
                return (
                    f"field name {_show(prefix + str(key))} is longer than {MAX_FIELD_NAME_LENGTH} characters "
                    f"({len(str(key))})"
                )
    return None


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "holds a NUL character (\\u0000), which PostgreSQL cannot store"
    try:
        text.encode()
    except UnicodeEncodeError:
        return "holds text that is not valid Unicode (a lone surrogate)"
    return None


def _find_problem(record: object) -> str | None:
    """Why PostgreSQL (or orjson) cannot hold the record, naming the field; None if nothing.

    Iterative, so no nesting depth can exhaust the stack.
    """
    stack: list[tuple[str, object, int]] = [("", record, 0)]
    while stack:
        path, value, depth = stack.pop()
        where = path or "the record"
        if isinstance(value, dict | list) and depth >= MAX_DEPTH:
            shown = where if len(where) <= 60 else where[:57] + "..."
            return f"the record is nested more than {MAX_DEPTH} levels deep (at {shown})"
        if isinstance(value, dict):
            for key, item in value.items():
                name = str(key)
                child = f"{path}.{name}" if path else name
                problem = _text_problem(name)
                if problem is not None:
                    return f"the name of field {_show(child)} {problem}"
                stack.append((child, item, depth + 1))
        elif isinstance(value, list):
            stack.extend((f"{path}[{index}]", item, depth + 1) for index, item in enumerate(value))
        elif isinstance(value, str):
            problem = _text_problem(value)
            if problem is not None:
                return f"{where} {problem}"
        elif isinstance(value, NumberLiteral):
            return f"{where} is {_show(value.text)}, not a number JSON or PostgreSQL can hold"
    return None


def _encode_anything(record: object) -> bytes:
    """JSON text for any value, however deep, never raising: what a reject keeps as text.

    Strings are escaped to ASCII (lone surrogates included); a `NumberLiteral` is written as
    it came. Iterative, so nesting cannot exhaust the stack.
    """
    out: list[str] = []
    stack: list[object] = [record]
    while stack:
        item = stack.pop()
        if isinstance(item, _Raw):
            out.append(item.text)
        elif isinstance(item, dict):
            stack.append(_Raw("}"))
            entries = list(item.items())
            for index in range(len(entries) - 1, -1, -1):
                key, value = entries[index]
                stack.append(value)
                prefix = "," if index else ""
                stack.append(_Raw(prefix + json.dumps(str(key), ensure_ascii=True) + ":"))
            stack.append(_Raw("{"))
        elif isinstance(item, list):
            stack.append(_Raw("]"))
            for index in range(len(item) - 1, -1, -1):
                stack.append(item[index])
                if index:
                    stack.append(_Raw(","))
            stack.append(_Raw("["))
        elif isinstance(item, NumberLiteral):
            out.append(item.text)
        else:
            try:
                out.append(json.dumps(item, ensure_ascii=True))
            except (TypeError, ValueError):
                out.append(json.dumps(repr(item), ensure_ascii=True))
    return "".join(out).encode()


@dataclass(frozen=True, slots=True)
class _Raw:
    text: str


def _show(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
