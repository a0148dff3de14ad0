"""Retry timing: Retry-After in both forms, backoff bounds, the floor against tight loops."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from cinnox import RetryPolicy, parse_retry_after

NOW = datetime(2024, 5, 24, 8, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        ("0.5", 0.5),
        (" 7 ", 7.0),
        ("-4", 0.0),  # nonsense: never a negative sleep
        ("Fri, 24 May 2024 08:00:30 GMT", 30.0),  # an HTTP date (RFC 9110)
        ("Fri, 24 May 2024 07:59:00 GMT", 0.0),  # already past
        (None, None),
        ("", None),
        ("soon", None),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


def test_retry_after_is_honoured_but_floored_and_capped() -> None:
    policy = RetryPolicy(min_delay=0.1, max_retry_after=60)
    assert policy.delay(1, retry_after=2.0) == 2.0
    assert policy.delay(1, retry_after=0.0) == 0.1  # Retry-After: 0 is not a tight loop
    assert policy.delay(1, retry_after=3600.0) == 60


def test_backoff_grows_with_jitter_inside_bounds() -> None:
    policy = RetryPolicy(backoff_base=1.0, backoff_max=8.0, min_delay=0.0)
    rng = random.Random(1)
    for retry, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        delays = [policy.delay(retry, None, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling / 4  # jitter actually spreads retries


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
