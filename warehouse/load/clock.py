"""Read times on the warehouse's clock.

"The newer read of a campaign wins" compares read times written by different workers; a
worker whose clock runs fast would win with older counters. So read times come from the one
clock every worker shares, PostgreSQL's: taken once per chunk, advanced in between by the
worker's monotonic clock (which no NTP step moves).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from sqlalchemy import Engine, func, select


class DatabaseClock:
    """`now()` on the database's clock; `sync()` re-reads it (one round trip)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._anchor: datetime | None = None
        self._anchored_at = 0.0

    def sync(self) -> datetime:
        with self._engine.connect() as conn:
            moment = conn.scalar(select(func.clock_timestamp()))
        assert isinstance(moment, datetime)
        self._anchor, self._anchored_at = moment, time.monotonic()
        return moment

    def now(self) -> datetime:
        if self._anchor is None:
            return self.sync()
        return self._anchor + timedelta(seconds=time.monotonic() - self._anchored_at)
