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

from sqlalchemy import Engine, func, literal
from sqlalchemy.dialects.postgresql import insert

from cinnox import RateLimiter
from warehouse.models import ApiRequestBudget, table_of


def take_token(engine: Engine, app_id: str, rate: float, burst: float = 1.0) -> float:
    """Reserve the app's next request slot; returns the seconds to wait for it (0 when none).

    The bucket holds at most `burst` tokens and refills at `rate` per second. A caller takes
    one token even when none is left: the balance goes negative, which reserves a slot in the
    future, and the caller waits `-tokens / rate` seconds. No retry loop, no polling.
    """
    budget = table_of(ApiRequestBudget)
    now = func.clock_timestamp()  # not now(): that is the transaction start, before the row lock
    elapsed = func.greatest(0.0, func.extract("epoch", now - budget.c.refilled_at))
    statement = (
        insert(budget)
        .values(app_id=app_id, tokens=burst - 1.0, refilled_at=now, requests_per_second=rate)
        .on_conflict_do_update(
            index_elements=[budget.c.app_id],
            set_={
                "tokens": func.least(literal(burst), budget.c.tokens + elapsed * literal(rate)) - 1.0,
                "refilled_at": now,
                "requests_per_second": rate,
            },
        )
        .returning(budget.c.tokens)
    )
    with engine.begin() as conn:
        tokens = float(conn.execute(statement).scalar_one())
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
