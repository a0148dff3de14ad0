"""Typed values the client hands out: windows, pages and parsed campaigns."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime


def format_rfc3339(moment: datetime) -> str:
    """UTC with milliseconds and a Z, the form the CINNOX doc shows (2022-11-07T00:00:00.000Z)."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open interval [start, end) of campaign send instants.

    Half-open so that consecutive daily windows never share a campaign.

    >>> Window(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC))
    Window(2024-01-01T00:00:00.000Z, 2024-01-02T00:00:00.000Z)
    """

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("window bounds must be timezone-aware datetimes")
        if self.end < self.start:
            raise ValueError(f"window ends before it starts: {self}")

    def __contains__(self, moment: object) -> bool:
        return isinstance(moment, datetime) and self.start <= moment < self.end

    def __repr__(self) -> str:
        return f"Window({format_rfc3339(self.start)}, {format_rfc3339(self.end)})"

    def __str__(self) -> str:
        return f"[{format_rfc3339(self.start)}, {format_rfc3339(self.end)})"


@dataclass(frozen=True, slots=True)
class Page:
    """One page of the sent-campaigns summary, as CINNOX returned it.

    `records` are the JSON values under the envelope's records key, untouched: validation is
    the caller's job, so that a malformed record can be kept with its reasons, not lost here.
    """

    app_id: str
    window: Window
    offset: int
    records: Sequence[object]
    total: int | None
    fetched_at: datetime  # on the read clock the client was given (the warehouse's, in a run)
    attempts: int
    api_time: datetime | None = None  # the API's own clock (its Date header), when it sent one


@dataclass(frozen=True, slots=True)
class Probe:
    """What one `limit=1` request says about a window: how many records, and CINNOX's time."""

    window: Window
    total: int | None
    api_time: datetime | None


@dataclass(slots=True)
class ChunkRead:
    """One window read to the end, page by page, until a read showed no paging drift.

    `pages` are the accepted read. `vanished` holds, from earlier reads of the same window, the
    last version of each record the accepted read no longer returned: CINNOX lost it between
    reads. Keep it, but judge what is missing at the source by the accepted read alone.
    """

    window: Window
    pages: list[Page]
    vanished: list[Page]
    read_started: datetime  # read clock, just before the accepted read's first request
    read_finished: datetime
    reads: int
    total: int | None  # the accepted read's `total`
    drift: list[str] = field(default_factory=list)

    @property
    def records(self) -> int:
        return sum(len(page.records) for page in self.pages)


class ReadStopped(Exception):
    """The caller asked a read to stop before its next page (its load can no longer succeed)."""


class WindowTooLarge(Exception):
    """The first page of a chunk said it holds more records than a chunk may: split it."""

    def __init__(self, window: Window, total: int) -> None:
        super().__init__(f"{window} holds {total} records")
        self.window = window
        self.total = total


@dataclass(slots=True)
class ExtractionStats:
    """Running counts for one extraction, filled in while pages stream."""

    pages: int = 0
    records: int = 0
    requests: int = 0
    retries: int = 0
    retry_wait_seconds: float = 0.0
    rate_limit_wait_seconds: float = 0.0  # slept waiting for the run's request-rate limit
    api_total: int | None = None
    statuses: dict[str, int] = field(default_factory=dict)
    reads: int = 0  # passes over windows: more than the chunks read when paging drifted and was re-read
    window_records: int | None = None  # records in the accepted read, each id once
    drift: list[str] = field(default_factory=list)  # what each drifting read showed


class NumberLiteral:
    """A number in a response body that has no faithful Python value: a `NaN`, `Infinity` or
    `-Infinity` literal (not JSON, but some servers write them), or one too large for a float.

    The page is still read; the value stays this marker (not a float, which would serialise
    as null and lose it), so only the record holding it is rejected, with a reason naming the
    field, and the others load.
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NumberLiteral) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


class Channel(enum.StrEnum):
    """Campaign channels CINNOX reports; the value is the spelling the doc uses."""

    SMS = "SMS"
    WHATSAPP = "WhatsApp"


@dataclass(frozen=True, slots=True)
class Sender:
    """The nested `sender` object; which fields exist depends on the channel."""

    phone: str | None = None
    channel_name: str | None = None  # WhatsApp only
    source_name: str | None = None  # WhatsApp only: where the template came from
    sender_eid: str | None = None  # SMS only: EID of the staff who sent it


@dataclass(frozen=True, slots=True)
class SentCampaign:
    """One validated sent-campaign summary. None means CINNOX did not report the field."""

    id: str
    sent_at: datetime  # UTC
    channel: Channel
    campaign_name: str | None
    created_by: str | None
    sender: Sender
    subject: str | None
    total_recipients: int | None
    delivered: int | None
    read: int | None
    replied: int | None
    pending: int | None
    failed: int | None
