"""What one unit of work did, and when counters count as settled."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta


@dataclass(slots=True)
class DayFigures:
    """One UTC send date's share of a load: what its own partition's metadata shows."""

    records: int = 0  # records of the accepted read dated this day, rejects whose date reads included
    valid: int = 0
    rejected: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    stale: int = 0
    marked_missing: int = 0
    missing_at_source: int = 0

    def add(self, other: DayFigures) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(slots=True)
class LoadResult:
    """What one unit of work did; every figure goes into the Dagster metadata."""

    records: int = 0  # records received, valid or not
    valid: int = 0
    rejected: int = 0
    duplicates: int = 0  # valid records whose campaign id came twice in the unit
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    stale: int = 0  # campaigns the warehouse holds from a newer read (another load's), left alone
    raw_versions_inserted: int = 0
    rejects_inserted: int = 0
    dimension_rows_inserted: int = 0
    snapshots_inserted: int = 0  # campaigns whose counters were seen to change (new ones included)
    reject_reasons: Counter[str] = field(default_factory=Counter)
    counter_regressions: int = 0  # counters smaller than the warehouse held, recorded
    marked_missing: int = 0  # campaigns of the window CINNOX no longer returned, marked now
    reappeared: int = 0  # campaigns marked missing that CINNOX returned again
    missing_at_source: int = 0  # campaigns of the window marked missing after this load
    unknown_fields: list[str] = field(default_factory=list)  # fields the parser ignores, kept in raw
    new_fields: list[str] = field(default_factory=list)  # of those, the ones no load had seen before
    reject_share_exceeded: bool = False  # too many rejects: only they were kept, nothing merged
    vanished: int = 0  # records earlier reads returned and the accepted one did not: kept, judged missing
    days: dict[date, DayFigures] = field(default_factory=dict)  # by UTC send date

    def add(self, other: LoadResult) -> None:
        """Fold another unit's figures into these (a run's chunks into the run)."""
        for name in self.__slots__:
            mine, theirs = getattr(self, name), getattr(other, name)
            if name == "days":
                for day, figures in theirs.items():
                    self.day(day).add(figures)
            elif name in ("unknown_fields", "new_fields"):
                setattr(self, name, sorted(set(mine) | set(theirs)))
            elif isinstance(mine, bool):
                setattr(self, name, mine or theirs)
            else:
                setattr(self, name, mine + theirs)

    def day(self, day: date) -> DayFigures:
        figures = self.days.get(day)
        if figures is None:
            figures = self.days[day] = DayFigures()
        return figures

    @property
    def reject_share(self) -> float:
        return self.rejected / self.records if self.records else 0.0


@dataclass(frozen=True, slots=True)
class SettlePolicy:
    """When a campaign's counters count as final (fact_sent_campaign.settled_at).

    Complete counters (nothing pending; delivered + failed cover every recipient where the
    channel reports failures) that have not changed for `quiet`, or that are complete when
    first seen at least `final_age` after the send: a backfill of old days settles at once
    instead of waiting for a second read that the refresh window would never make.
    """

    quiet: timedelta = timedelta(hours=48)
    final_age: timedelta = timedelta(days=30)


DEFAULT_SETTLE = SettlePolicy()
