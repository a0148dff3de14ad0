"""Faults the simulator can inject, and the thread-safe plan that says when.

Adding a kind is an enum member here plus one branch: in `canned_response` for a kind that
replaces the answer outright, or in the server where a normal answer is built and sent for a
kind that distorts one (slow, dropped connection, truncated or non-JSON body, short pages,
duplicate or late-appearing records).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any

THROTTLED = (6451010, "Too many requests")
BAD_RESPONSE = (6451001, "Bad response from the service")


class FaultKind(StrEnum):
    """What a fault rule does to the request it hits."""

    HTTP_429 = "http_429"
    """HTTP 429 with the throttling body and, if the rule has one, a Retry-After header."""
    THROTTLED_6451010 = "throttled_6451010"
    """CINNOX's throttling code 6451010; HTTP 429 for now, kept apart so a later variant can
    carry the code in a 200 body."""
    HTTP_500 = "http_500"
    """HTTP 500 with code 6451001 "Bad response from the service"."""
    HTTP_503 = "http_503"
    """HTTP 503 with a plain-text body, as a proxy in front of the API would answer;
    Retry-After as for HTTP_429."""
    THROTTLED_IN_BODY = "throttled_in_body"
    """HTTP 200 whose JSON body carries code 6451010 "Too many requests" and no records."""
    BAD_RESPONSE_IN_BODY = "bad_response_in_body"
    """HTTP 200 whose JSON body carries code 6451001 "Bad response from the service"."""
    HTML_BODY = "html_body"
    """HTTP 200 with an HTML page instead of JSON, as a misconfigured proxy answers."""
    SLOW = "slow"
    """The normal answer, sent after `seconds` (default 1.0): longer than a short client timeout."""
    DROP_CONNECTION = "drop_connection"
    """Headers promise the whole body; half of it is sent, then the connection is closed."""
    TRUNCATED_JSON = "truncated_json"
    """A complete HTTP answer whose JSON body is cut in half (Content-Length matches the cut)."""
    NEW_CAMPAIGN = "new_campaign"
    """Before answering, a new campaign appears in the window, sorting first, so every later
    offset shifts by one. It stays, like a real new campaign would."""
    CAMPAIGN_VANISHES = "campaign_vanishes"
    """Before answering, the campaign that sorts first in the requested window stops being
    served, as if CINNOX lost it: every later offset shifts back by one and `total` drops."""
    DUPLICATE_RECORD = "duplicate_record"
    """The page starts one record early: its first record is the previous page's last, and
    the record at the page's real end is never served in this pass."""
    SHORT_PAGE = "short_page"
    """The page holds only half of `limit` records although more follow (total unchanged)."""
    TOTAL_CHANGES = "total_changes"
    """The page's `total` is one more than the window really holds."""
    MALFORMED_RECORDS = "malformed_records"
    """Every record of the page has `delivered` as "n/a": each one must be rejected."""
    UNKNOWN_FIELD = "unknown_field"
    """Every record of the page carries a field CINNOX never documented, `costPerMessage`."""


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer as the server will send it (Content-Length is added on the way out)."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    drop_after: int | None = None  # send this many body bytes, then close the connection


@dataclass(slots=True)
class FaultRule:
    """Hit `times` matching requests with `kind`, after letting `skip` of them through.

    A request matches when `app_id` and `offset` (the page offset asked for) are None or
    equal to the request's. `times` and `skip` count down as requests arrive.
    """

    kind: FaultKind
    times: int = 1
    retry_after: str | None = None
    app_id: str | None = None
    offset: int | None = None
    skip: int = 0
    seconds: float | None = None  # SLOW only: how long to hold the answer back

    def __post_init__(self) -> None:
        self.kind = FaultKind(self.kind)
        if not _is_int(self.times) or self.times < 1:
            raise ValueError(f"times must be an integer >= 1, got {self.times!r}")
        if not _is_int(self.skip) or self.skip < 0:
            raise ValueError(f"skip must be an integer >= 0, got {self.skip!r}")
        if self.offset is not None and (not _is_int(self.offset) or self.offset < 0):
            raise ValueError(f"offset must be null or an integer >= 0, got {self.offset!r}")
        if self.app_id is not None and not isinstance(self.app_id, str):
            raise ValueError(f"app_id must be null or a string, got {self.app_id!r}")
        if self.retry_after is not None and not isinstance(self.retry_after, str):
            raise ValueError(f"retry_after must be null or a string, got {self.retry_after!r}")
        if self.seconds is not None and (
            not isinstance(self.seconds, int | float) or isinstance(self.seconds, bool) or self.seconds < 0
        ):
            raise ValueError(f"seconds must be null or a number >= 0, got {self.seconds!r}")

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> FaultRule:
        """Build a rule from control-endpoint JSON; ValueError names what is wrong."""
        unknown = set(payload) - {
            "kind",
            "times",
            "retry_after",
            "app_id",
            "offset",
            "skip",
            "seconds",
        }
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        if "kind" not in payload:
            raise ValueError("missing fault field: kind")
        try:
            kind = parse_kind(payload["kind"])
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        retry_after = payload.get("retry_after")
        if _is_int(retry_after):
            retry_after = str(retry_after)  # JSON callers naturally write 1, not "1"
        return cls(
            kind=kind,
            times=payload.get("times", 1),
            retry_after=retry_after,
            app_id=payload.get("app_id"),
            offset=payload.get("offset"),
            skip=payload.get("skip", 0),
            seconds=payload.get("seconds"),
        )

    def matches(self, app_id: str | None, offset: int | None) -> bool:
        return (self.app_id is None or self.app_id == app_id) and (self.offset is None or self.offset == offset)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kind": str(self.kind)}


def parse_kind(value: object) -> FaultKind:
    """A FaultKind from its value ("http_429") or its name ("HTTP_429")."""
    if isinstance(value, str):
        for kind in FaultKind:
            if value in (kind.value, kind.name):
                return kind
    choices = ", ".join(kind.value for kind in FaultKind)
    raise ValueError(f"unknown fault kind {value!r}; expected one of: {choices}")


class FaultPlan:
    """Ordered fault rules shared by the server's request threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.append(replace(rule))

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def pending(self) -> list[FaultRule]:
        with self._lock:
            return [replace(rule) for rule in self._rules]

    def take(self, app_id: str | None, offset: int | None) -> FaultRule | None:
        """The rule that hits this request, if any, with its counters already spent.

        Rules are tried in the order they were added; a rule still skipping lets the request
        through to the next rule. The returned copy shows the rule as it was applied.
        """
        with self._lock:
            for index, rule in enumerate(self._rules):
                if not rule.matches(app_id, offset):
                    continue
                if rule.skip > 0:
                    rule.skip -= 1
                    continue
                fired = replace(rule)
                rule.times -= 1
                if rule.times == 0:
                    del self._rules[index]
                return fired
        return None


def error_body(code: int, message: str) -> bytes:
    return json.dumps({"code": code, "message": message}, separators=(",", ":")).encode()


def canned_response(rule: FaultRule) -> Reply | None:
    """The answer that replaces the normal one, or None for kinds that distort it instead."""
    # Servers send Retry-After with 429 (RFC 6585) and 503 (RFC 9110), so only those carry it.
    retry = () if rule.retry_after is None else (("Retry-After", rule.retry_after),)
    match rule.kind:
        case FaultKind.HTTP_429 | FaultKind.THROTTLED_6451010:
            return Reply(429, error_body(*THROTTLED), headers=retry)
        case FaultKind.HTTP_500:
            return Reply(500, error_body(*BAD_RESPONSE))
        case FaultKind.HTTP_503:
            return Reply(503, b"Service Unavailable", "text/plain", headers=retry)
        case FaultKind.THROTTLED_IN_BODY:
            return Reply(200, error_body(*THROTTLED))
        case FaultKind.BAD_RESPONSE_IN_BODY:
            return Reply(200, error_body(*BAD_RESPONSE))
        case FaultKind.HTML_BODY:
            return Reply(200, PROXY_PAGE, "text/html")
    return None


PROXY_PAGE = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"


def distort(rule: FaultRule, reply: Reply) -> Reply:
    """Spoil a normal answer's bytes on the way out (the kinds that act on the body)."""
    match rule.kind:
        case FaultKind.DROP_CONNECTION:
            return replace(reply, drop_after=len(reply.body) // 2)
        case FaultKind.TRUNCATED_JSON:
            return replace(reply, body=reply.body[: len(reply.body) // 2])
    return reply


def _is_int(value: object) -> bool:
    # bool is an int subclass, but `"times": true` is a mistake, not 1.
    return isinstance(value, int) and not isinstance(value, bool)
