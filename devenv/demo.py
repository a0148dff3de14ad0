"""The demo's history: what the hourly refresh would have read over the last days.

On a fresh warehouse fed by the simulator, `make run` first reads the simulator at a few
earlier moments of its clock, as the refresh schedule would have, and loads each read with
the time it stands for (CINNOX's counters as at that moment, observed at that moment). Then
the counter history, `campaign_progression` and the read-within-N-hours questions of
docs/warehouse.md have something to show. It also loads the two send days on either side of
the latest WhatsApp channel rename, so the sender history (type 2) has an example.

These reads go straight to the load, not through Dagster: a Dagster run records the wall
clock as the time CINNOX was read, and these moments are in the past. The Dagster runs that
follow read the last 30 days as they stand now, as on any day.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from itertools import groupby

from sqlalchemy import Engine, func, select

from cinnox import CinnoxClient, Page, Window
from cinnox.simulator import SimulatorServer
from warehouse.load import load_sent_campaigns
from warehouse.models import FactSentCampaign

HISTORY_DAYS = 10  # the settle sensor's horizon is longer; ten days show reads levelling off
REFRESH_DAYS = 7  # the refresh schedule's window, CINNOX_REFRESH_DAYS' default
# Within the last day the refresh ran every hour; these few of its hours show the first hours
# after a send.
RECENT_HOURS = (18, 12, 6, 3, 1)


@dataclass(frozen=True, slots=True)
class Read:
    app_id: str
    window: Window
    moment: datetime  # the simulator's clock during the read, and the read's observed time


def history_plan(simulator: SimulatorServer, first_day: date) -> list[Read]:
    """The reads to make, oldest first: a first load, daily refreshes, a few recent hourly ones."""
    now = simulator.now
    reads: list[Read] = []
    for app_id in simulator.apps:
        reads.extend(_rename_days(simulator, app_id))
    start = now - timedelta(days=HISTORY_DAYS)
    for app_id in simulator.apps:
        # The first load, as `make run` would have made it then: from the first day up to then.
        reads.append(Read(app_id, _days(first_day, start.date()), start))
    moments = [now - timedelta(days=days) for days in range(HISTORY_DAYS - 1, 0, -1)]
    moments += [now - timedelta(hours=hours) for hours in RECENT_HOURS]
    # Each moment a refresh: its window is the last REFRESH_DAYS days, today included.
    for moment in sorted(set(moments)):
        for app_id in simulator.apps:
            first = max(first_day, moment.date() - timedelta(days=REFRESH_DAYS - 1))
            reads.append(Read(app_id, _days(first, moment.date()), moment))
    return reads


def load_history(engine: Engine, simulator: SimulatorServer, first_day: date) -> int:
    """Make the reads of `history_plan` on an empty warehouse; returns how many (0: it was not empty)."""
    with engine.connect() as lock:
        # Two `make run` started at once on a fresh warehouse: one loads the history, the
        # other waits here, then finds the warehouse filled and leaves it be.
        lock.execute(select(func.pg_advisory_lock(func.hashtext("cinnox.demo_history"))))
        lock.commit()
        try:
            if lock.scalar(select(func.count()).select_from(FactSentCampaign)):
                return 0
            lock.commit()
            return _load_all(engine, simulator, history_plan(simulator, first_day))
        finally:
            lock.execute(select(func.pg_advisory_unlock(func.hashtext("cinnox.demo_history"))))
            lock.commit()


def _load_all(engine: Engine, simulator: SimulatorServer, plan: list[Read]) -> int:
    now = simulator.now
    # The apps' reads of one moment side by side: the load's work is mostly the server's.
    with ThreadPoolExecutor(max_workers=len(simulator.apps)) as pool:
        try:
            for moment, reads in groupby(plan, key=lambda read: read.moment):
                simulator.now = moment
                list(pool.map(lambda read: _load(engine, simulator, read), reads))
        finally:
            simulator.now = now
    return len(plan)


def _load(engine: Engine, simulator: SimulatorServer, read: Read) -> None:
    token = simulator.apps[read.app_id]
    with CinnoxClient(simulator.url, read.app_id, token, page_size=simulator.max_limit) as client:
        load_sent_campaigns(engine, read.app_id, read.window, _observed_at(client, read))


def _observed_at(client: CinnoxClient, read: Read) -> Iterator[Page]:
    """The read's pages, stamped with the moment they stand for instead of the wall clock."""
    for page in client.sent_campaign_pages(read.window):
        yield replace(page, fetched_at=read.moment)


def _rename_days(simulator: SimulatorServer, app_id: str) -> list[Read]:
    """The send days of the renamed sender's last campaign before its latest rename and first after."""
    now = simulator.now
    profile = simulator.universe.profile(app_id)
    renames = sorted(
        (s for s in profile.whatsapp_senders if s.renamed_on is not None and s.renamed_on < now.date()),
        key=lambda s: s.renamed_on or date.min,
        reverse=True,
    )
    for sender in renames[:3]:
        assert sender.renamed_on is not None
        renamed = datetime.combine(sender.renamed_on, time(), UTC)
        if renamed + timedelta(days=60) > now:
            continue  # too recent to look 60 days past it
        before = _sent_by(simulator, app_id, sender.phone, renamed - timedelta(days=60), renamed)
        after = _sent_by(simulator, app_id, sender.phone, renamed, renamed + timedelta(days=60))
        if before and after:
            days = (before[-1], after[0])
            return [Read(app_id, _days(day, day), now) for day in days]
    return []


def _sent_by(simulator: SimulatorServer, app_id: str, phone: str, start: datetime, end: datetime) -> list[date]:
    records = simulator.universe.campaigns(app_id, start, end, simulator.now)
    return sorted(
        datetime.fromisoformat(record["date"]).astimezone(UTC).date()
        for record in records
        if (record.get("sender") or {}).get("phone") == phone and record.get("channel") == "WhatsApp"
    )


def _days(first: date, last: date) -> Window:
    """The window of send dates first..last, whole UTC days."""
    start = datetime.combine(first, time(), UTC)
    return Window(start, datetime.combine(last + timedelta(days=1), time(), UTC))
