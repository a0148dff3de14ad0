"""The fact merge, its counter history and the counter regressions."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import (
    CTE,
    BigInteger,
    ColumnElement,
    Connection,
    Integer,
    Interval,
    Select,
    Sequence,
    Subquery,
    Text,
    and_,
    case,
    exists,
    false,
    func,
    literal,
    not_,
    null,
    or_,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.dialects.postgresql import array, insert
from sqlalchemy.sql.dml import Insert

from warehouse.load._sql import analyze_if_grown
from warehouse.load.dimensions import is_sender_version
from warehouse.load.result import LoadResult, SettlePolicy
from warehouse.load.stage import stage
from warehouse.models import (
    COUNTER_COLUMNS,
    MONOTONIC_COUNTERS,
    CounterRegression,
    DimChannel,
    DimDate,
    DimSender,
    DimStaff,
    DimTemplate,
    FactSentCampaign,
    FactSentCampaignSnapshot,
    day_of_key,
    table_of,
)

# The fact columns a load may change; a row is rewritten only when one of them differs.
_FACT_VALUES = (
    "sent_at",
    "sent_date_key",
    "channel_key",
    "sender_key",
    "staff_key",
    "template_key",
    "campaign_name",
    *COUNTER_COLUMNS,
)
# What decides whether a fact row is rewritten: CINNOX's values and whether they have settled.
_TRACKED = (*_FACT_VALUES, "settled_at")
# The sequence of the fact's identity column (PostgreSQL's name for it, from its CREATE TABLE).
FACT_KEY_SEQUENCE = Sequence("fact_sent_campaign_sent_campaign_key_seq", schema="cinnox")


def merge_fact(
    conn: Connection,
    app_key: int,
    run_id: str | None,
    settle: SettlePolicy,
    result: LoadResult,
    *,
    window_was_empty: bool = False,
    app_was_empty: bool = False,
) -> None:
    """Counter regressions, the fact upsert, its history and the per-day figures: one statement.

    `window_was_empty`: the fact held no campaign of the app sent in the load's window before
    this merge (a first load of the window), so next to no staged record can be one it holds.
    `app_was_empty`: it held no campaign of the app at all (a rebuild's first step, the app's
    rows deleted in the same transaction), so every staged record is new and the fact is not
    read: each lookup of a campaign would find only its deleted row, still in the indexes (a
    1M rebuild's merge took 16.4 s with the lookups and the update, 11.4 s without).

    Data-modifying CTEs all see the fact as it was before the statement, which is what the
    regressions (old against new values) and the stale count (rows holding a newer read) need.
    They, the history and the per-day figures all come from the upsert's candidates, so the
    fact is joined with the stage once.
    Each campaign's last read is read once, as prepare_stage marked it (four sorts before).
    """
    latest = latest_staged()
    incoming = (
        select(*_merged_columns(latest)).subquery("unknown")
        if app_was_empty
        else latest_unknown(app_key, settle, latest, materialized=not window_was_empty)
    )
    candidates, writes = fact_upsert(app_key, run_id, settle, incoming, app_was_empty=app_was_empty)
    regressed = regressions_insert(app_key, run_id, candidates).returning(literal(1)).cte("regressed")
    history = history_insert(candidates)
    # The rows the upsert writes, per send day: every candidate but the stale ones.
    by_upsert = (
        select(
            candidates.c.sent_date_key,
            null().label("sent_date"),
            func.count().filter(candidates.c.current_key.is_(None)).label("a"),
            func.count().label("b"),
            literal(0, BigInteger).label("c"),
        )
        .where(not_(candidates.c.stale))
        .group_by(candidates.c.sent_date_key)
    )
    # Distinct staged campaigns per day and those of the accepted read; then those the
    # warehouse holds from a newer read than this load's (the upsert leaves them as they are).
    by_stage = select(
        null().label("sent_date_key"),
        latest.c.sent_date,
        func.count(),
        func.count().filter(latest.c.in_final_read),
        literal(0, BigInteger),
    ).group_by(latest.c.sent_date)
    by_stale = (
        select(null(), candidates.c.sent_date, literal(0, BigInteger), literal(0, BigInteger), func.count())
        .where(candidates.c.stale)
        .group_by(candidates.c.sent_date)
    )
    totals = select(
        null(),
        null(),
        select(func.count()).select_from(regressed).scalar_subquery(),
        select(func.count()).select_from(history).scalar_subquery(),
        literal(-1, BigInteger),
    )
    # Three kinds of row, told apart by which key is set: (date_key, -, inserted, written, -)
    # per send day the upsert wrote; (-, day, distinct, in the accepted read, stale) per
    # staged send day, stale counts in rows of their own; and once (-, -, regressions,
    # history rows, -). The insert and the update return nothing: they run as CTEs of their own.
    statement = union_all(by_upsert, by_stage, by_stale, totals).add_cte(*writes)
    rows = conn.execute(statement).all()
    upserted_count = 0
    distinct_in_final = 0
    staged_days: dict[date, list[int]] = {}
    for date_key, day, a, b, c in rows:
        if date_key is not None:
            figures = result.day(day_of_key(int(date_key)))
            figures.inserted += int(a)
            figures.updated += int(b) - int(a)
            result.inserted += int(a)
            upserted_count += int(b)
        elif day is not None:
            counts = staged_days.setdefault(day, [0, 0])
            counts[0] += int(a)
            counts[1] += int(c)
            distinct_in_final += int(b)
        else:
            result.counter_regressions = int(a)
            result.snapshots_inserted = int(b)
    result.updated = upserted_count - result.inserted
    for day, (distinct, stale) in staged_days.items():
        figures = result.day(day)
        figures.stale += stale
        figures.unchanged += distinct - stale - figures.inserted - figures.updated
        result.stale += stale
        result.unchanged += distinct - stale - figures.inserted - figures.updated
    # Only the accepted read's records count as received; one that came twice is a duplicate.
    result.duplicates = result.valid - distinct_in_final
    analyze_if_grown(conn, FactSentCampaign, result.inserted)
    analyze_if_grown(conn, FactSentCampaignSnapshot, result.snapshots_inserted)


def latest_staged() -> Subquery:
    """The valid staged records, each campaign's last read only (prepare_stage marked the rest).

    A plain filter of the stage, so the planner uses the stage's statistics (a materialised
    CTE has none, and with its guessed row counts the sender join sorted 100k jsonb keys)."""
    return select(stage).where(stage.c.reject_reasons.is_(None), stage.c.superseded.is_(False)).subquery("latest")


# Stage columns the fact merge does not read (the record's JSON above all: half the row).
_NOT_MERGED = frozenset({"seq", "in_final_read", "payload", "payload_text", "reject_reasons", "superseded"})


def latest_unknown(app_key: int, settle: SettlePolicy, latest: Any, *, materialized: bool = True) -> CTE:
    """`latest` without the records the fact already holds as they are: the version its row was
    written from (`version_hash`), read no earlier than that row's read, on a row that would not
    settle now. Such a record writes nothing, so it skips the dimension joins and the compare:
    in a no-op re-load that is every record (the joins were 7.2 s of a 26.6 s no-op of 1M).

    The same version gives the same values only under the same rules: after a change to
    normalisation, `make rebuild` re-derives the rows (docs/warehouse.md)."""
    fact = table_of(FactSentCampaign)
    observed_at = latest.c.extracted_at
    known = exists().where(
        written_from(app_key, latest),
        fact.c.values_observed_at <= observed_at,
        # Unchanged counters that would settle with this read still write the row.
        or_(fact.c.settled_at.is_not(None), not_(settles(fact, observed_at, fact.c.counters_changed_at, settle))),
    )
    # With only the columns the merge reads. Materialised where records may be known: as a plain
    # subquery the planner ran a no-op's merge in 3.7-4.0 s at 1M against 2.0-2.6 s
    # (bench.statements); its rows carry no column statistics, and need none (what follows is
    # hash joins to small dimensions and the fact's unique key). Where next to nothing can be
    # known (a first load of the window) the copy buys nothing and costs a write and a read of
    # every staged record, so the filter runs inline.
    unknown = select(*_merged_columns(latest)).where(not_(known)).cte("unknown")
    return unknown.prefix_with("MATERIALIZED", dialect="postgresql") if materialized else unknown


def _merged_columns(latest: Any) -> list[Any]:
    return [c for c in latest.c if c.name not in _NOT_MERGED]


def written_from(app_key: int, staged: Any) -> ColumnElement[bool]:
    """The staged record's fact row (of `staged`, with the stage's `campaign_id` and
    `payload_hash`) was last written from this very version: the version is in raw too."""
    fact = table_of(FactSentCampaign)
    return and_(
        fact.c.app_key == app_key,
        fact.c.campaign_id == staged.c.campaign_id,
        fact.c.version_hash == staged.c.payload_hash,
    )


def settles(row: Any, observed_at: Any, changed_at: Any, settle: SettlePolicy) -> ColumnElement[bool]:
    """Whether the counters `row` (a table or subquery) holds count as settled when read at
    `observed_at`: complete, and past the final age or unchanged since `changed_at` for the
    quiet period."""
    return and_(
        counters_complete(row),
        or_(
            observed_at - row.c.sent_at >= literal(settle.final_age, Interval),
            observed_at - changed_at >= literal(settle.quiet, Interval),
        ),
    )


def fact_upsert(
    app_key: int, run_id: str | None, settle: SettlePolicy, latest: Any, *, app_was_empty: bool = False
) -> tuple[CTE, tuple[CTE, ...]]:
    """The fact merge: staged campaigns resolved to dimension keys, inserted or updated only
    where a value differs (counters, descriptive values, or having settled). Returns the
    candidates (new or changed campaigns, and those whose row holds a newer read, `stale`, left
    alone; with the row's key and monotonic counters as they were: `current_key`,
    `previous_<counter>`; and the key the row has after the merge, `sent_campaign_key`) and the
    insert and update, as CTEs that return nothing: each candidate but the stale ones is
    written as it stands. `app_was_empty`: the fact holds no row of the app; no lookup and
    no update."""
    fact = table_of(FactSentCampaign)
    dim_channel = table_of(DimChannel)
    dim_sender = table_of(DimSender)
    dim_staff = table_of(DimStaff)
    dim_template = table_of(DimTemplate)
    dim_date = table_of(DimDate)

    incoming = (
        select(
            literal(app_key, Integer).label("app_key"),
            latest.c.campaign_id,
            latest.c.extracted_at.label("observed_at"),
            latest.c.sent_at,
            latest.c.sent_date,
            dim_date.c.date_key.label("sent_date_key"),
            dim_channel.c.channel_key,
            dim_sender.c.sender_key,
            dim_staff.c.staff_key,
            dim_template.c.template_key,
            latest.c.campaign_name,
            *(latest.c[name] for name in COUNTER_COLUMNS),
            latest.c.payload_hash.label("version_hash"),
        )
        .select_from(latest)
        .join(dim_date, dim_date.c.calendar_date == latest.c.sent_date)
        .join(dim_channel, dim_channel.c.channel == latest.c.channel)
        .join(dim_sender, is_sender_version(app_key, dim_channel.c.channel_key, latest))
        .outerjoin(
            dim_staff,
            and_(
                dim_staff.c.app_key == app_key,
                dim_staff.c.staff_name == latest.c.created_by,
            ),
        )
        .outerjoin(
            dim_template,
            and_(
                dim_template.c.app_key == app_key,
                dim_template.c.subject == latest.c.subject,
            ),
        )
        .subquery("incoming")
    )
    current = fact.alias("current")
    is_new = current.c.sent_campaign_key.is_(None)
    counters_changed = or_(
        is_new,
        tuple_(*(current.c[n] for n in COUNTER_COLUMNS)).is_distinct_from(
            tuple_(*(incoming.c[n] for n in COUNTER_COLUMNS))
        ),
    )
    observed_at = incoming.c.observed_at
    # The row holds a newer read than this load's (another load's): left as it is, counted.
    stale = and_(not_(is_new), observed_at < current.c.values_observed_at)
    # When the counters last changed: this observation if they differ, else as stored.
    changed_at = case((counters_changed, observed_at), else_=current.c.counters_changed_at)
    settled_at = case(
        (and_(not_(counters_changed), current.c.settled_at.is_not(None)), current.c.settled_at),
        (settles(incoming, observed_at, changed_at, settle), observed_at),
        else_=null(),
    )
    new_values = [
        *(incoming.c[name] for name in ("app_key", "campaign_id", *_FACT_VALUES)),
        settled_at.label("settled_at"),
        changed_at.label("counters_changed_at"),
        observed_at.label("values_observed_at"),
        literal(run_id, Text).label("last_dagster_run_id"),
        # Not compared: a new version with the same values leaves the row (and its hash) as it is.
        incoming.c.version_hash,
    ]
    tracked_new = [*(incoming.c[n] for n in _FACT_VALUES), settled_at]
    changed_or_new = (
        select(*new_values)
        .select_from(incoming)
        .outerjoin(
            current,
            # With no row of the app, no lookup: every campaign is new.
            false()
            if app_was_empty
            else and_(
                current.c.app_key == app_key,
                current.c.campaign_id == incoming.c.campaign_id,
            ),
        )
        .where(
            or_(
                is_new,
                stale,
                and_(
                    # Not a read older than the one the row holds: another load's newer read wins.
                    observed_at >= current.c.values_observed_at,
                    # The row as it is against the row as it would be.
                    tuple_(*(current.c[n] for n in _TRACKED)).is_distinct_from(tuple_(*tracked_new)),
                ),
            )
        )
    )
    candidates = changed_or_new.add_columns(
        # A new row's key is drawn here rather than by the insert's default, so what is written
        # is known from the candidates: 1M rows returned by the insert were a tuplestore spilled
        # to disk and read back for the history (bench.statements).
        func.coalesce(current.c.sent_campaign_key, FACT_KEY_SEQUENCE.next_value()).label("sent_campaign_key"),
        incoming.c.sent_date,
        func.coalesce(stale, False).label("stale"),
        current.c.sent_campaign_key.label("current_key"),
        *(current.c[name].label(f"previous_{name}") for name in MONOTONIC_COUNTERS),
    ).cte("candidates")
    written = [
        "sent_campaign_key",
        "app_key",
        "campaign_id",
        *_TRACKED,
        "counters_changed_at",
        "values_observed_at",
        "last_dagster_run_id",
        "version_hash",
    ]
    # A plain INSERT for new campaigns and an UPDATE by key for changed ones, not one INSERT
    # ... ON CONFLICT: its speculative insertion cost a third more per row (0.69 s against
    # 0.49 s for 100k). Safe because the app's merge lock is held: no other load writes the
    # app's rows, so a campaign without a row when the statement began still has none.
    inserted = (
        insert(fact)
        .from_select(written, select(*(candidates.c[n] for n in written)).where(candidates.c.current_key.is_(None)))
        .cte("inserted")
    )
    updated = (
        fact.update()
        .values(
            {
                **{
                    name: candidates.c[name]
                    for name in (*_TRACKED, "counters_changed_at", "values_observed_at", "version_hash")
                },
                "last_changed_at": func.now(),
                "last_dagster_run_id": candidates.c.last_dagster_run_id,
            }
        )
        .where(fact.c.sent_campaign_key == candidates.c.current_key, not_(candidates.c.stale))
        .cte("updated")
    )
    return candidates, (inserted,) if app_was_empty else (inserted, updated)


def counters_complete(row: Any) -> ColumnElement[bool]:
    """Nothing pending, and delivered + failed cover every recipient where the channel reports
    failures: the counters can no longer move (one half of when they count as settled)."""
    return and_(
        func.coalesce(row.c.pending, 0) == 0,
        or_(
            row.c.failed.is_(None),  # SMS reports no failures: nothing to reconcile
            row.c.delivered + row.c.failed >= row.c.total_recipients,
        ),
    )


def history_insert(candidates: Any) -> Any:
    """A history row for each campaign the upsert writes whose counters changed: it sets their
    counters_changed_at to this observation's time, and to nothing else. From the upsert's
    candidates (each is written as it stands, but the stale ones). Returns a subquery of one
    row per history row written."""
    snapshot = table_of(FactSentCampaignSnapshot)
    columns = ("sent_campaign_key", "observed_at", "sent_at", *COUNTER_COLUMNS, "dagster_run_id")

    def rows(inserted: bool) -> Select[Any]:
        new = candidates.c.current_key.is_(None)
        return select(
            candidates.c.sent_campaign_key,
            candidates.c.counters_changed_at,
            candidates.c.sent_at,
            *(candidates.c[n] for n in COUNTER_COLUMNS),
            candidates.c.last_dagster_run_id,
        ).where(
            candidates.c.counters_changed_at == candidates.c.values_observed_at,
            new if inserted else and_(not_(new), not_(candidates.c.stale)),
        )

    # A new campaign has no history yet: a plain INSERT (no speculative insertion).
    first = insert(snapshot).from_select(columns, rows(True)).returning(literal(1)).cte("first_history")
    statement = insert(snapshot).from_select(columns, rows(False))
    # A page fetched at the same instant as an earlier load's (a replayed page): the same key;
    # keep the newer counters, and write nothing when they are the same.
    values = ("sent_at", *COUNTER_COLUMNS)
    later = (
        statement.on_conflict_do_update(
            index_elements=[snapshot.c.sent_campaign_key, snapshot.c.observed_at],
            set_={name: statement.excluded[name] for name in (*values, "dagster_run_id")},
            where=tuple_(*(snapshot.c[n] for n in values)).is_distinct_from(
                tuple_(*(statement.excluded[n] for n in values))
            ),
        )
        .returning(literal(1))
        .cte("later_history")
    )
    return union_all(select(first), select(later)).subquery("history")


def regressions_insert(app_key: int, run_id: str | None, candidates: Any) -> Insert:
    """Keep the old value of every monotonic counter CINNOX now reports smaller.

    From the fact merge's candidates, which hold each changed campaign's counters as the row
    had them: a drop is a change, and a read older than the row's (`stale`) is left out (the row
    is newer, and stays). A second join of the stage with the fact cost 1.4 s at 1M campaigns."""
    regressions = table_of(CounterRegression)
    # Unpivoted only for the rare campaigns with a drop: unnest() of equal-length arrays
    # yields them in step.
    dropped = (
        select(
            candidates.c.campaign_id,
            func.unnest(array([literal(name, Text) for name in MONOTONIC_COUNTERS])).label("counter"),
            func.unnest(array([candidates.c[f"previous_{name}"] for name in MONOTONIC_COUNTERS])).label(
                "previous_value"
            ),
            func.unnest(array([candidates.c[name] for name in MONOTONIC_COUNTERS])).label("new_value"),
        )
        .where(
            candidates.c.current_key.is_not(None),
            not_(candidates.c.stale),
            or_(*(candidates.c[name] < candidates.c[f"previous_{name}"] for name in MONOTONIC_COUNTERS)),
        )
        .subquery("dropped")
    )
    drops = select(
        literal(app_key, Integer),
        dropped.c.campaign_id,
        dropped.c.counter,
        dropped.c.previous_value,
        dropped.c.new_value,
        literal(run_id, Text),
    ).where(dropped.c.new_value < dropped.c.previous_value)
    columns = ["app_key", "campaign_id", "counter", "previous_value", "new_value", "dagster_run_id"]
    return insert(regressions).from_select(columns, drops)
