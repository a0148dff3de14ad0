"""One CINNOX request budget per app, shared by every run and process, kept in PostgreSQL.

CINNOX rate-limits per app. An in-process limiter paces one run; two runs of the same app
(a backfill and the hourly refresh) would each take the full rate. Here each request takes a
token from `cinnox_ops.api_request_budget` with a single `INSERT ... ON CONFLICT DO UPDATE ...
RETURNING`: PostgreSQL's row lock serialises the callers, so every caller anywhere gets its
own slot, in order, and sleeps until it comes. Time comes from the database clock, so
processes on different machines agree.

A limiter takes half a second of slots at a time (a lease): one round trip per lease rather
than per request. The lease's slots are this limiter's alone, used one by one at the rate; those
it falls behind on are given up, never caught up on in a burst.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, Float, bindparam, func
from sqlalchemy.dialects.postgresql import insert

from cinnox import RateLimiter
from warehouse.models import ApiRequestBudget, table_of


def _take_token_statement() -> Any:
    budget = table_of(ApiRequestBudget)
    now = func.clock_timestamp()  # not now(): that is the transaction start, before the row lock
    elapsed = func.greatest(0.0, func.extract("epoch", now - budget.c.refilled_at))
    rate, burst = bindparam("rate", type_=Float), bindparam("burst", type_=Float)
    count = bindparam("count", type_=Float)
    return (
        insert(budget)
        .values(app_id=bindparam("app_id"), tokens=burst - count, refilled_at=now, requests_per_second=rate)
        .on_conflict_do_update(
            index_elements=[budget.c.app_id],
            set_={
                "tokens": func.least(burst, budget.c.tokens + elapsed * rate) - count,
                "refilled_at": now,
                "requests_per_second": rate,
            },
        )
        .returning(budget.c.tokens)
    )


# Built once: a run takes a lease of tokens every half second.
_TAKE_TOKEN = _take_token_statement()


def take_tokens(engine: Engine, app_id: str, rate: float, count: int, burst: float = 1.0) -> float:
    """Reserve the app's next `count` request slots; returns the seconds to wait for the first
    (0 when none). With the default burst of 1 the others follow it every `1 / rate` seconds.

    The bucket holds at most `burst` tokens and refills at `rate` per second. A caller takes
    its tokens even when none is left: the balance goes negative, which reserves slots in the
    future, and the caller waits `-tokens / rate` seconds for each. No retry loop, no polling.

    The commit does not wait for the WAL flush (`synchronous_commit = off`, this transaction
    only): other callers see the new balance at once, as with any commit, and a server crash
    can lose at most the last few slots taken, which only lets the bucket refill up to `burst`
    early. Waiting for the flush cost more than the statement.
    """
    with engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
        params = {"app_id": app_id, "rate": rate, "burst": burst, "count": float(count)}
        tokens = float(conn.execute(_TAKE_TOKEN, params).scalar_one())
    # The first of the caller's tokens is the one taken from `tokens + count`.
    return max(0.0, -(tokens + count - 1) / rate)


# How much of the budget's timeline one lease reserves: a round trip per half second of
# requests, and at most half a second of slots left unused when a run stops or falls behind.
LEASE_SECONDS = 0.5


class PostgresRateLimiter(RateLimiter):
    """The `RateLimiter` interface over the app's budget row, for every process that uses it.

    >>> limiter = PostgresRateLimiter(engine, "my-app-id", 5)  # 5 requests/s for the app, in total
    >>> waited = limiter.acquire()

    Each lease reserves `lease` consecutive slots (`LEASE_SECONDS` of them at the rate, at least
    one), `1 / rate` apart, that no other caller gets. A request goes no earlier than its slot,
    at least `1 / rate` after the limiter's previous one, and no later than the lease's last
    slot; a limiter that fell behind gives up the slots left rather than catch up in a burst,
    and takes a new lease. So the requests of every process together are never closer than
    `1 / rate`, as with a token per request.

    `rate` None or <= 0: no limit, and no database round trip.
    """

    def __init__(
        self,
        engine: Engine,
        app_id: str,
        rate: float | None,
        *,
        lease: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(rate, clock=clock, sleep=sleep)
        self._engine = engine
        self.app_id = app_id
        self.lease = max(1, lease if lease is not None else int((self.rate or 0) * LEASE_SECONDS))
        self._slots_left = 0  # of the current lease
        self._last_slot = 0.0  # the current lease's, on this process's clock
        self.leases = 0  # round trips to the budget so far

    def __repr__(self) -> str:
        return f"PostgresRateLimiter(app_id={self.app_id!r}, rate={self.rate}, lease={self.lease})"

    def acquire(self) -> float:
        if self.rate is None:
            return 0.0
        interval = 1.0 / self.rate
        with self._lock:  # a run's threads share the lease; the round trip is taken under it too
            now = self._clock()
            slot = now if self._next is None else max(now, self._next)
            # A late request may still use its lease, up to the lease's last slot: the next
            # lease (this process's or another's) starts one interval after that.
            if self._slots_left == 0 or slot > self._last_slot + 1e-9:
                first = take_tokens(self._engine, self.app_id, self.rate, self.lease)
                now = self._clock()  # counted from after the round trip: never before the slot
                slot = now + first
                self._last_slot = slot + (self.lease - 1) * interval
                self._slots_left = self.lease
                self.leases += 1
            self._slots_left -= 1
            self._next = slot + interval
            wait = slot - now
            self._waited += wait
        if wait > 0:
            self._sleep(wait)
        return wait
