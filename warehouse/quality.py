"""Data checks on the star schema, as plain queries; Dagster's asset checks call these."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine, Subquery, func, or_, select

from warehouse.models import COUNTER_COLUMNS, CounterRegression, DimApp, FactSentCampaign

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
    negative = or_(*(rows.c[name] < 0 for name in COUNTER_COLUMNS))
    with engine.connect() as conn:
        total = conn.scalar(select(func.count()).select_from(rows)) or 0
        bad = conn.scalar(select(func.count()).select_from(rows).where(negative)) or 0
        sample = list(
            conn.scalars(select(rows.c.campaign_id).where(negative).order_by(rows.c.campaign_id).limit(SAMPLE_SIZE))
        )
    return CheckOutcome(rows_checked=total, violations=bad, sample=sample)


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
