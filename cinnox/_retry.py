"""When and how long to wait before asking CINNOX again."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# CINNOX's codes in a JSON error body (docs.cinnox.com "Error Codes and Rate Limit").
CODE_BAD_QUERY = 6451000
CODE_BAD_RESPONSE = 6451001
CODE_TOO_MANY_REQUESTS = 6451010
TRANSIENT_CODES = frozenset({CODE_BAD_RESPONSE, CODE_TOO_MANY_REQUESTS})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries: exponential backoff with jitter, or the server's Retry-After.

    >>> RetryPolicy(max_attempts=3).delay(1, retry_after=None) <= 0.5
    True
    """

    max_attempts: int = 6  # requests per page, the first one included
    backoff_base: float = 0.5  # seconds before the first retry, doubled each time
    backoff_max: float = 30.0
    # A floor so that `Retry-After: 0` or a missing header never turns into a tight loop.
    min_delay: float = 0.05
    max_retry_after: float = 300.0  # never sleep longer than this, whatever the server says
    # The time budget of one page, first request to last: attempts alone do not bound it when
    # each one waits for a timeout or a long Retry-After.
    max_elapsed: float = 300.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.max_elapsed <= 0:
            raise ValueError("max_elapsed must be positive")
        if self.backoff_base < 0 or self.min_delay < 0:
            raise ValueError("backoff_base and min_delay must not be negative")

    def delay(self, retry: int, retry_after: float | None, rng: random.Random | None = None) -> float:
        """Seconds to sleep before retry number `retry` (1 for the first retry)."""
        if retry_after is not None:
            return min(max(retry_after, self.min_delay), self.max_retry_after)
        ceiling = min(self.backoff_max, self.backoff_base * 2.0 ** (retry - 1))
        # "Equal jitter": half fixed, half random, so clients that failed together spread out
        # without any of them retrying at once.
        jitter: float = (rng or random).uniform(0, ceiling / 2)
        return max(self.min_delay, ceiling / 2 + jitter)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds, from either delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
