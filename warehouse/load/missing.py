"""Campaigns CINNOX stopped returning for a window, and those it returned again."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    exists,
    func,
    literal,
    not_,
    select,
)
from sqlalchemy.dialects.postgresql import TIMESTAMP

from cinnox import Window
from warehouse.load.result import LoadResult
from warehouse.load.stage import stage
from warehouse.models import (
    FactSentCampaign,
    sent_between,
    table_of,
)


def window_holds_campaigns(conn: Connection, app_key: int, window: Window) -> bool:
    """Whether the fact holds a campaign of the app sent in `window`: one probe of its index."""
    return bool(conn.scalar(select(exists().where(_in_window(app_key, window)))))


def _in_window(app_key: int, window: Window) -> ColumnElement[bool]:
    fact = table_of(FactSentCampaign)
    return and_(fact.c.app_key == app_key, sent_between(fact, window.start, window.end))


def mark_missing(
    conn: Connection,
    app_key: int,
    window: Window,
    read_started: datetime,
    result: LoadResult,
    *,
    window_was_empty: bool = False,
) -> None:
    """Mark the window's campaigns the accepted read did not return; un-mark those it returned.

    Any record of the accepted read counts as returned, a rejected one too: it is at the
    source, just bad. A record only an earlier read of the chunk returned does not: CINNOX lost
    it between reads. Only campaigns the warehouse knew from a read before the accepted one
    began are judged: one that another load read since may have been sent after this read
    passed its page. Likewise only a read newer than the one that found a campaign gone brings
    it back.

    `window_was_empty`: the fact held no campaign of the window before this load's merge. Then
    every row of the window came from the stage, and only a vanished record's can be missing:
    without one, the marking pass (a scan of the window against the stage, 0.8 s at 1M) is left
    out.
    """
    fact = table_of(FactSentCampaign)
    in_window = _in_window(app_key, window)
    returned = exists().where(stage.c.in_final_read, stage.c.campaign_id == fact.c.campaign_id)
    returned_since_marked = exists().where(
        stage.c.in_final_read,
        stage.c.campaign_id == fact.c.campaign_id,
        stage.c.extracted_at >= fact.c.missing_at_source_since,
    )
    marked = (
        fact.update()
        .where(
            in_window,
            fact.c.missing_at_source_since.is_(None),
            fact.c.values_observed_at <= read_started,
            not_(returned),
        )
        # The read's start, on the clock of the records' read times, to compare with them.
        .values(missing_at_source_since=literal(read_started, TIMESTAMP(timezone=True)))
        .returning(fact.c.sent_at)
        .cte("marked")
    )
    if not window_was_empty or result.vanished:
        for day, count in conn.execute(_count_by_day(marked.c.sent_at)).all():
            result.day(day).marked_missing += int(count)
            result.marked_missing += int(count)
    back = conn.execute(
        fact.update()
        .where(fact.c.app_key == app_key, fact.c.missing_at_source_since.is_not(None), returned_since_marked)
        .values(missing_at_source_since=None)
        .execution_options(preserve_rowcount=True)
    )
    result.reappeared = back.rowcount
    still_missing = select(fact.c.sent_at).where(in_window, fact.c.missing_at_source_since.is_not(None)).subquery()
    for day, count in conn.execute(_count_by_day(still_missing.c.sent_at)).all():
        result.day(day).missing_at_source += int(count)
        result.missing_at_source += int(count)


def _count_by_day(sent_at: ColumnElement[datetime]) -> Select[date, int]:
    day = func.date(func.timezone("UTC", sent_at))
    return select(day, func.count()).group_by(day)
