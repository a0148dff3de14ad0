"""Data checks on the star schema, as plain queries; Dagster's asset checks call these."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, Engine, Subquery, and_, exists, func, or_, select

from warehouse.models import (
    COUNTER_COLUMNS,
    DimApp,
    DimChannel,
    DimDate,
    DimSender,
    DimStaff,
    DimTemplate,
    FactSentCampaign,
)

SAMPLE_SIZE = 10


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    """How many rows break the rule, and a few campaign ids to start looking from."""

    rows_checked: int
    violations: int
    sample: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.violations == 0


def _app_rows(app_id: str) -> Subquery:
    return (
        select(FactSentCampaign)
        .join(DimApp, DimApp.app_key == FactSentCampaign.app_key)
        .where(DimApp.app_id == app_id)
        .subquery("app_rows")
    )


def duplicate_campaign_keys(engine: Engine, app_id: str) -> CheckOutcome:
    """Campaign ids that occur more than once for one app: the fact's grain is (app, campaign)."""
    rows = _app_rows(app_id)
    dupes = (
        select(rows.c.campaign_id).group_by(rows.c.campaign_id).having(func.count() > 1).order_by(rows.c.campaign_id)
    )
    with engine.connect() as conn:
        total = conn.scalar(select(func.count()).select_from(rows)) or 0
        ids = list(conn.scalars(dupes))
    return CheckOutcome(rows_checked=total, violations=len(ids), sample=ids[:SAMPLE_SIZE])


def negative_counters(engine: Engine, app_id: str) -> CheckOutcome:
    """Campaigns with any counter below zero; CINNOX counts things, so none can be."""
    rows = _app_rows(app_id)
    return _count_where(engine, rows, or_(*(rows.c[name] < 0 for name in COUNTER_COLUMNS)))


def counters_out_of_order(engine: Engine, app_id: str) -> CheckOutcome:
    """Campaigns that report more delivered than recipients, or more read than delivered.

    A counter the channel does not report (NULL) is not compared.
    """
    rows = _app_rows(app_id)
    bad_row = or_(rows.c.delivered > rows.c.total_recipients, rows.c.read > rows.c.delivered)
    return _count_where(engine, rows, bad_row)


def dangling_dimension_keys(engine: Engine, app_id: str) -> CheckOutcome:
    """Campaigns whose keys miss their dimension row, or point at another app's or channel's row.

    Foreign keys guard existence; nothing in the schema stops a fact of one app from pointing at
    a sender, staff member or template of another app, or a sender of another channel.
    """
    rows = _app_rows(app_id)

    def missing(dim: type[DimSender] | type[DimStaff] | type[DimTemplate], key: str, *same: str) -> ColumnElement[bool]:
        dim_key = getattr(dim, key)
        match = and_(dim_key == rows.c[key], *(getattr(dim, name) == rows.c[name] for name in same))
        return and_(rows.c[key].is_not(None), ~exists().where(match))

    bad_row = or_(
        ~exists().where(DimApp.app_key == rows.c.app_key),
        ~exists().where(DimChannel.channel_key == rows.c.channel_key),
        ~exists().where(DimDate.date_key == rows.c.sent_date_key),
        missing(DimSender, "sender_key", "app_key", "channel_key"),
        missing(DimStaff, "staff_key", "app_key"),
        missing(DimTemplate, "template_key", "app_key"),
    )
    return _count_where(engine, rows, bad_row)


def campaigns_in_window(engine: Engine, app_id: str, start: datetime, end: datetime) -> int:
    """Fact rows of one app sent in [start, end)."""
    rows = _app_rows(app_id)
    query = select(func.count()).select_from(rows).where(rows.c.sent_at >= start, rows.c.sent_at < end)
    with engine.connect() as conn:
        return conn.scalar(query) or 0


def _count_where(engine: Engine, rows: Subquery, bad_row: ColumnElement[bool]) -> CheckOutcome:
    with engine.connect() as conn:
        total = conn.scalar(select(func.count()).select_from(rows)) or 0
        bad = conn.scalar(select(func.count()).select_from(rows).where(bad_row)) or 0
        sample = list(
            conn.scalars(select(rows.c.campaign_id).where(bad_row).order_by(rows.c.campaign_id).limit(SAMPLE_SIZE))
        )
    return CheckOutcome(rows_checked=total, violations=bad, sample=sample)
