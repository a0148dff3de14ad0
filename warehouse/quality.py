"""Data checks on the star schema, as plain queries; Dagster's asset checks call these."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, Subquery, and_, exists, func, or_, select, true

from warehouse.models import (
    COUNTER_COLUMNS,
    CounterRegression,
    DimApp,
    DimChannel,
    DimDate,
    DimSender,
    DimStaff,
    DimTemplate,
    FactSentCampaign,
    FactSentCampaignSnapshot,
    LoadChunk,
    sent_between,
    table_of,
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
    """Campaigns whose keys miss their dimension row, or point at another app's or channel's
    row; and counter-history rows whose campaign is gone (those belong to no app any more, so
    every app's check counts them, sampled as `history:<sent_campaign_key>`).

    Neither the fact nor its history has foreign keys (a trigger per row each, most of a first
    load's merge): this check is the guard, for existence and for the same app and channel.
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
    facts = _count_where(engine, rows, bad_row)
    history = table_of(FactSentCampaignSnapshot)
    fact = table_of(FactSentCampaign)
    orphan = ~exists().where(fact.c.sent_campaign_key == history.c.sent_campaign_key)
    with engine.connect() as conn:
        orphans = conn.scalar(select(func.count()).select_from(history).where(orphan)) or 0
        keys = conn.scalars(
            select(history.c.sent_campaign_key).distinct().where(orphan).order_by(history.c.sent_campaign_key).limit(3)
        ).all()
    return CheckOutcome(
        rows_checked=facts.rows_checked,
        violations=facts.violations + orphans,
        sample=[*facts.sample, *(f"history:{key}" for key in keys)][:SAMPLE_SIZE],
    )


def campaigns_in_window(engine: Engine, app_id: str, start: datetime, end: datetime) -> int:
    """Fact rows of one app sent in [start, end)."""
    rows = _app_rows(app_id)
    query = select(func.count()).select_from(rows).where(sent_between(rows, start, end))
    with engine.connect() as conn:
        return conn.scalar(query) or 0


def run_chunks(engine: Engine, app_id: str, run_family: str) -> list[dict[str, Any]]:
    """The chunks of the run family's latest requested window, or of the app's latest run when
    that family committed none (a check run on its own)."""
    ledger = table_of(LoadChunk)
    with engine.connect() as conn:
        family = conn.scalar(
            select(ledger.c.run_family)
            .where(ledger.c.app_id == app_id)
            .order_by((ledger.c.run_family == run_family).desc(), ledger.c.chunk_id.desc())
            .limit(1)
        )
        if family is None:
            return []
        latest = (
            select(ledger.c.requested_start, ledger.c.requested_end)
            .where(ledger.c.app_id == app_id, ledger.c.run_family == family)
            .order_by(ledger.c.chunk_id.desc())
            .limit(1)
            .subquery()
        )
        rows = conn.execute(
            select(ledger)
            .join(
                latest,
                and_(
                    latest.c.requested_start == ledger.c.requested_start,
                    latest.c.requested_end == ledger.c.requested_end,
                ),
            )
            .where(ledger.c.app_id == app_id, ledger.c.run_family == family)
            .order_by(ledger.c.window_start)
        )
        return [dict(row._mapping) for row in rows]


def _count_where(engine: Engine, rows: Subquery, bad_row: ColumnElement[bool]) -> CheckOutcome:
    with engine.connect() as conn:
        total = conn.scalar(select(func.count()).select_from(rows)) or 0
        bad = conn.scalar(select(func.count()).select_from(rows).where(bad_row)) or 0
        sample = list(
            conn.scalars(select(rows.c.campaign_id).where(bad_row).order_by(rows.c.campaign_id).limit(SAMPLE_SIZE))
        )
    return CheckOutcome(rows_checked=total, violations=bad, sample=sample)


@dataclass(frozen=True, slots=True)
class ChangeAtAge:
    """Of the campaigns seen before they were `days` old and at least that old now, how many
    were seen to change at that age or later."""

    days: int
    campaigns: int
    changed: int

    @property
    def share(self) -> float | None:
        return self.changed / self.campaigns if self.campaigns else None


@dataclass(frozen=True, slots=True)
class RefreshWindowEvidence:
    """How late counters still change, from the snapshot history of one app."""

    refresh_days: int
    by_age: list[ChangeAtAge]
    campaigns_past_window: int  # sent more than refresh_days before the newest observation
    unsettled_past_window: int  # of those, counters not settled

    @property
    def last_day(self) -> ChangeAtAge | None:
        """Changes seen on the window's last day: at an age of refresh_days - 1 days or more."""
        age = max(1, self.refresh_days - 1)
        return next((row for row in self.by_age if row.days == age), None)


def refresh_window_evidence(
    engine: Engine, app_id: str, refresh_days: int, *, beyond: int = 3, lookback_days: int = 90
) -> RefreshWindowEvidence:
    """Share of campaigns whose counters still changed N days after the send, for N = 1 up to
    the refresh window and `beyond` days more, over the campaigns sent in the `lookback_days`
    before the app's newest observation (the clock is the data's, not the database's)."""
    fact = table_of(FactSentCampaign)
    snapshot = table_of(FactSentCampaignSnapshot)
    app = table_of(DimApp)
    with engine.connect() as conn:
        as_of = conn.scalar(
            select(func.max(snapshot.c.observed_at))
            .join(fact, fact.c.sent_campaign_key == snapshot.c.sent_campaign_key)
            .join(app, app.c.app_key == fact.c.app_key)
            .where(app.c.app_id == app_id)
        )
        if as_of is None:
            return RefreshWindowEvidence(refresh_days, [], 0, 0)
        campaigns = (
            select(
                fact.c.sent_at,
                fact.c.settled_at,
                func.min(snapshot.c.observed_at).label("first_seen"),
                func.max(snapshot.c.observed_at).label("last_change"),
            )
            .join(snapshot, snapshot.c.sent_campaign_key == fact.c.sent_campaign_key)
            .join(app, app.c.app_key == fact.c.app_key)
            .where(app.c.app_id == app_id, sent_between(fact, as_of - timedelta(days=lookback_days)))
            .group_by(fact.c.sent_campaign_key)
            .subquery("campaigns")
        )
        series = func.generate_series(1, refresh_days + beyond).table_valued("days").render_derived("ages")
        ages = series.c.days
        at_age = campaigns.c.sent_at + func.make_interval(0, 0, 0, ages)  # years, months, weeks, days
        seen_before = campaigns.c.first_seen < at_age
        rows = conn.execute(
            select(
                ages,
                func.count().filter(seen_before),
                func.count().filter(seen_before, campaigns.c.last_change >= at_age),
            )
            .select_from(campaigns.join(series, true()))  # every campaign at every age
            .where(at_age <= as_of)
            .group_by(ages)
            .order_by(ages)
        ).all()
        past_window = campaigns.c.sent_at < as_of - timedelta(days=refresh_days)
        past, unsettled = conn.execute(
            select(
                func.count().filter(past_window),
                func.count().filter(past_window, campaigns.c.settled_at.is_(None)),
            ).select_from(campaigns)
        ).one()
    by_age = {int(days): ChangeAtAge(int(days), int(n), int(changed)) for days, n, changed in rows}
    return RefreshWindowEvidence(
        refresh_days,
        [by_age.get(days, ChangeAtAge(days, 0, 0)) for days in range(1, refresh_days + beyond + 1)],
        int(past),
        int(unsettled),
    )


def counter_regressions(engine: Engine, app_id: str, run_id: str) -> CheckOutcome:
    """Counters of the app that went backwards in the given run's load (cinnox.counter_regression)."""
    found = (
        select(CounterRegression.campaign_id, CounterRegression.counter)
        .join(DimApp, DimApp.app_key == CounterRegression.app_key)
        .where(DimApp.app_id == app_id, CounterRegression.dagster_run_id == run_id)
        .order_by(CounterRegression.campaign_id, CounterRegression.counter)
    )
    rows = _app_rows(app_id)
    with engine.connect() as conn:
        total = conn.scalar(select(func.count()).select_from(rows)) or 0
        drops = [f"{campaign}.{counter}" for campaign, counter in conn.execute(found)]
    return CheckOutcome(rows_checked=total, violations=len(drops), sample=drops[:SAMPLE_SIZE])
