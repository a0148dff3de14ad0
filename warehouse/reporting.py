"""Small read-only summaries of the warehouse, for `make run` and the README."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import ColumnElement, Engine, Float, func, select
from sqlalchemy.orm import InstrumentedAttribute

from warehouse.models import DimApp, DimChannel, FactSentCampaign


@dataclass(frozen=True, slots=True)
class ChannelSummary:
    app_id: str
    channel: str
    campaigns: int
    recipients: int
    delivered: int
    read: int | None
    delivery_rate: float | None  # delivered / recipients
    read_rate: float | None  # read / delivered; None where the channel does not report reads


def _rate(
    numerator: InstrumentedAttribute[int | None], denominator: InstrumentedAttribute[int | None]
) -> ColumnElement[float | Decimal]:
    # NULLIF: a zero denominator gives NULL, not a division error.
    return func.sum(numerator).cast(Float) / func.nullif(func.sum(denominator), 0)


def campaign_summary(engine: Engine) -> list[ChannelSummary]:
    """Campaigns, recipients and rates per app and channel over everything loaded."""
    fact = FactSentCampaign
    query = (
        select(
            DimApp.app_id,
            DimChannel.channel,
            func.count(),
            func.coalesce(func.sum(fact.total_recipients), 0),
            func.coalesce(func.sum(fact.delivered), 0),
            func.sum(fact.read),
            _rate(fact.delivered, fact.total_recipients),
            _rate(fact.read, fact.delivered),
        )
        .join(DimApp, DimApp.app_key == fact.app_key)
        .join(DimChannel, DimChannel.channel_key == fact.channel_key)
        .group_by(DimApp.app_id, DimChannel.channel)
        .order_by(DimApp.app_id, DimChannel.channel)
    )
    with engine.connect() as conn:
        return [ChannelSummary(*row) for row in conn.execute(query)]  # type: ignore[arg-type]
