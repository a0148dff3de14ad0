"""Time helpers: RFC3339 in and out, epoch microseconds, UTC days."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, timezone

# RFC3339 date-time with a mandatory offset. A space is accepted where the offset sign goes
# because an unencoded "+" in a query string decodes to a space.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+\- ])(\d{2}):(\d{2}))",
    re.ASCII,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY_US = 86_400 * 1_000_000


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC3339 date-time that carries `Z` or an offset; raise ValueError otherwise."""
    match = _RFC3339.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not an RFC3339 date-time with an offset: {text!r}")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    if zulu:
        tz: timezone = UTC
    else:
        if int(off_h) > 23 or int(off_m) > 59:
            raise ValueError(f"bad UTC offset in {text!r}")
        delta = timedelta(hours=int(off_h), minutes=int(off_m))
        tz = timezone(-delta if sign == "-" else delta)
    # datetime() itself rejects month 13, second 60 and the like.
    return datetime(
        int(year),
        int(month),
        int(day),
        int(hour),
        int(minute),
        int(second),
        micro,
        tzinfo=tz,
    )


def require_aware(moment: datetime, name: str = "datetime") -> datetime:
    """Return `moment` in UTC; a naive datetime is ambiguous, so it is an error."""
    if moment.tzinfo is None or moment.tzinfo.utcoffset(moment) is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {moment!r}")
    return moment.astimezone(UTC)


def to_us(moment: datetime) -> int:
    """Microseconds since the Unix epoch; integer maths keeps window edges exact."""
    delta = require_aware(moment) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def format_rfc3339(moment: datetime, offset_minutes: int = 0) -> str:
    """Millisecond RFC3339; the wall time is shifted so the instant stays the same."""
    utc = require_aware(moment)
    if offset_minutes == 0:
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    local = utc + timedelta(minutes=offset_minutes)
    sign = "+" if offset_minutes > 0 else "-"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond // 1000:03d}{sign}{hours:02d}:{minutes:02d}"


def start_of_utc_day(dt: datetime | None = None) -> datetime:
    """Midnight UTC of the day `dt` (default: now) falls on, in UTC."""
    moment = datetime.now(UTC) if dt is None else require_aware(dt, "dt")
    return datetime.combine(moment.date(), time(), tzinfo=UTC)


def utc_day_start_us(day: date) -> int:
    return (day - _EPOCH.date()).days * DAY_US
