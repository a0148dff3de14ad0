"""A request-rate limit shared by every request of one app in a run."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """At most `rate` requests per second, spaced evenly, across any number of threads.

    >>> limiter = RateLimiter(5)   # one request every 200 ms
    >>> waited = limiter.acquire()  # seconds this caller slept for its turn

    Each caller reserves the next free slot under a lock and sleeps outside it, so concurrent
    callers queue in order instead of all waking together. `rate` None or <= 0: no limit.
    """

    def __init__(
        self,
        rate: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate if rate is not None and rate > 0 else None
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next: float | None = None
        self._waited = 0.0

    def __repr__(self) -> str:
        return f"RateLimiter(rate={self.rate})"

    @property
    def waited(self) -> float:
        """Seconds all callers together have slept so far."""
        with self._lock:
            return self._waited

    def acquire(self) -> float:
        """Wait for this caller's slot; returns the seconds slept (0 when none)."""
        if self.rate is None:
            return 0.0
        interval = 1.0 / self.rate
        with self._lock:
            now = self._clock()
            slot = now if self._next is None else max(now, self._next)
            self._next = slot + interval
            wait = slot - now
            self._waited += wait
        if wait > 0:
            self._sleep(wait)
        return wait
