"""One CINNOX request budget per app, shared by every run and process, kept in PostgreSQL.

CINNOX rate-limits per app. An in-process limiter paces one run; two runs of the same app
(a backfill and the hourly refresh) would each take the full rate. Here each request takes a
token from `cinnox_ops.api_request_budget` with a single `INSERT ... ON CONFLICT DO UPDATE ...
RETURNING`: PostgreSQL's row lock serialises the callers, so every caller anywhere gets its
own slot, in order, and sleeps until it comes. Time comes from the database clock, so
processes on different machines agree.
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
    return (
        insert(budget)
        .values(app_id=bindparam("app_id"), tokens=burst - 1.0, refilled_at=now, requests_per_second=rate)
        .on_conflict_do_update(
            index_elements=[budget.c.app_id],
            set_={
                "tokens": func.least(burst, budget.c.tokens + elapsed * rate) - 1.0,
                "refilled_at": now,
                "requests_per_second": rate,
            },
        )
        .returning(budget.c.tokens)
    )


# Built once: a run takes a token per request, hundreds a minute.
_TAKE_TOKEN = _take_token_statement()


def take_token(engine: Engine, app_id: str, rate: float, burst: float = 1.0) -> float:
    """Reserve the app's next request slot; returns the seconds to wait for it (0 when none).

    The bucket holds at most `burst` tokens and refills at `rate` per second. A caller takes
    one token even when none is left: the balance goes negative, which reserves a slot in the
    future, and the caller waits `-tokens / rate` seconds. No retry loop, no polling.

    The commit does not wait for the WAL flush (`synchronous_commit = off`, this transaction
    only): other callers see the new balance at once, as with any commit, and a server crash
    can lose at most the last few slots taken, which only lets the bucket refill up to `burst`
    early. Waiting for the flush cost more than the statement, once per request.
    """
    with engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
        tokens = float(conn.execute(_TAKE_TOKEN, {"app_id": app_id, "rate": rate, "burst": burst}).scalar_one())
    return max(0.0, -tokens / rate)


class PostgresRateLimiter(RateLimiter):
    """The `RateLimiter` interface over the app's budget row, for every process that uses it.

    >>> limiter = PostgresRateLimiter(engine, "my-app-id", 5)  # 5 requests/s for the app, in total
    >>> waited = limiter.acquire()

    `rate` None or <= 0: no limit, and no database round trip.
    """

    def __init__(
        self,
        engine: Engine,
        app_id: str,
        rate: float | None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(rate, sleep=sleep)
        self._engine = engine
        self.app_id = app_id

    def __repr__(self) -> str:
        return f"PostgresRateLimiter(app_id={self.app_id!r}, rate={self.rate})"

    def acquire(self) -> float:
        if self.rate is None:
            return 0.0
        wait = take_token(self._engine, self.app_id, self.rate)
        with self._lock:
            self._waited += wait
        if wait > 0:
            self._sleep(wait)
        return wait
