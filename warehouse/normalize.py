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
    SentCampaign,
    Window,
    format_rfc3339,
    parse_sent_campaign,
)

# jsonb and text cannot hold U+0000; an unescaped \u0000 escape in JSON text means one is there.
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


@dataclass(frozen=True, slots=True)
class StagedCampaign:
    """A record that passed validation, with its JSON kept for the raw layer."""

    campaign: SentCampaign
    sent_date: date  # the UTC day: the Dagster partition the campaign belongs to
    payload_json: str
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
    """Validate one record fetched for `window`; never raises for any JSON value."""
    try:
        encoded = orjson.dumps(record)
    except TypeError:
        # orjson refuses lone surrogates; the stdlib escapes them, so the record is still kept.
        encoded = json.dumps(record, ensure_ascii=True).encode()
        reason = "record holds text that is not valid Unicode (a lone surrogate)"
        return _reject(record, [reason], encoded, extracted_at, storable=False)
    # The plain substring test is cheap and almost always false; the regex rules out an
    # escaped backslash followed by "u0000", which is harmless text.
    if b"\\u0000" in encoded and _NUL_ESCAPE.search(encoded):
        reason = "record holds a NUL character (\\u0000), which PostgreSQL cannot store"
        return _reject(record, [reason], encoded, extracted_at, storable=False)
    try:
        campaign = parse_sent_campaign(record)
    except InvalidRecord as exc:
        return _reject(record, list(exc.reasons), encoded, extracted_at, exc.campaign_id)
    if campaign.sent_at not in window:
        reason = f"sent at {format_rfc3339(campaign.sent_at)}, outside the requested window {window}"
        return _reject(record, [reason], encoded, extracted_at, campaign.id)
    return StagedCampaign(campaign, campaign.sent_at.date(), encoded.decode(), extracted_at)


def _reject(
    record: object,
    reasons: Sequence[str],
    encoded: bytes,
    extracted_at: datetime,
    campaign_id: str | None = None,
    *,
    storable: bool = True,  # False: jsonb would refuse it, so keep it as text
) -> Rejection:
    if campaign_id is None and isinstance(record, dict) and isinstance(record.get("id"), str):
        campaign_id = record["id"].strip() or None
    if campaign_id is not None and not _is_storable_text(campaign_id):
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


def _is_storable_text(value: str) -> bool:
    if "\x00" in value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True
