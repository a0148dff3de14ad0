"""Load sent-campaign pages into the warehouse: COPY into a stage, then set-based merges.

One call is one unit of work and one transaction: the raw layer, rejects, dimensions and the
fact all change together or not at all. Re-loading the same records writes no row.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import sql
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Connection,
    Date,
    Engine,
    Integer,
    Interval,
    LargeBinary,
    MetaData,
    Subquery,
    Table,
    Text,
    and_,
    case,
    exists,
    extract,
    func,
    literal,
    literal_column,
    not_,
    null,
    or_,
    select,
    text,
    tuple_,
    union,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TIMESTAMP, array, distinct_on, insert
from sqlalchemy.sql.dml import Insert, ReturningInsert

from cinnox import Page, Window
from warehouse.models import (
    COUNTER_COLUMNS,
    MONOTONIC_COUNTERS,
    Base,
    CounterRegression,
    DimApp,
    DimChannel,
    DimDate,
    DimSender,
    DimStaff,
    DimTemplate,
    FactSentCampaign,
    FactSentCampaignSnapshot,
    SentCampaignPayload,
    SentCampaignReject,
    SourceField,
    table_of,
)
from warehouse.normalize import Rejection, StagedCampaign, stage_record

# The stage is a temporary table private to the loading transaction: concurrent loads never
# see each other's rows, and it disappears at commit or rollback. Not part of the schema.
_stage_metadata = MetaData()
stage = Table(
    "stage_sent_campaign",
    _stage_metadata,
    Column("seq", BigInteger, nullable=False),
    Column("campaign_id", Text),
    Column("extracted_at", TIMESTAMP(timezone=True), nullable=False),
    Column("payload", JSONB),
    Column("payload_text", Text),
    Column("reject_reasons", ARRAY(Text)),  # NULL for a valid record
    Column("reject_hash", LargeBinary),
    Column("sent_at", TIMESTAMP(timezone=True)),
    Column("sent_date", Date),
    Column("channel", Text),
    Column("campaign_name", Text),
    Column("created_by", Text),
    Column("sender_phone", Text),
    Column("sender_channel_name", Text),
    Column("sender_source_name", Text),
    Column("sender_eid", Text),
    Column("subject", Text),
    Column("total_recipients", Integer),
    Column("delivered", Integer),
    Column("read", Integer),
    Column("replied", Integer),
    Column("pending", Integer),
    Column("failed", Integer),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)
_ANALYZED_STAGE_COLUMNS = tuple(c.name for c in stage.columns if c.name not in ("payload", "payload_text"))
# The fact columns a load may change; a row is rewritten only when one of them differs.
# xmax is 0 on a row version no transaction has touched since it was inserted: RETURNING it
# tells an insert from an update in one statement.
_WAS_INSERTED = literal_column("(xmax = 0)", Boolean).label("inserted")
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


def load_sent_campaigns(
    engine: Engine,
    app_id: str,
    window: Window,
    pages: Iterable[Page],
    *,
    run_id: str | None = None,
    max_reject_share: float | None = None,
    settle: SettlePolicy = SettlePolicy(),
) -> LoadResult:
    """Stream `pages` for one app and window into the warehouse in a single transaction.

    Pages are consumed lazily, so extraction and COPY overlap and memory stays flat; if the
    iterator raises (say CINNOX gave up), the transaction rolls back and nothing changes.
    `pages` must be a complete read of the window (the client re-reads until it is, or
    raises): campaigns of the window it lacks are marked missing at the source.

    When more than `max_reject_share` of the records are rejected, only the rejects are kept
    and nothing is merged (`reject_share_exceeded`); the caller fails the run.
    """
    result = LoadResult()
    with engine.begin() as conn:
        stage.create(conn)
        fields, read_started = _copy_into_stage(conn, window, pages, result)
        # A temp table has no statistics until analysed; the merges' join plans need them.
        # Not the payload columns: sampling jsonb was most of ANALYZE's second per 100k rows
        # and no plan filters or joins on it.
        conn.execute(text(f"ANALYZE {stage.name} ({', '.join(_ANALYZED_STAGE_COLUMNS)})"))
        # One merge per app at a time, taken only now: a year's backfill reads for an hour, and
        # the hourly refresh of the same app must not wait for that. What either read is
        # private to its stage; each merge skips what the other already wrote from a newer read.
        conn.execute(select(func.pg_advisory_xact_lock(func.hashtextextended("cinnox.load:" + app_id, 0))))
        if max_reject_share is not None and result.reject_share > max_reject_share:
            result.reject_share_exceeded = True
            result.rejects_inserted = _insert_rejects(conn, app_id, window, run_id)
            return result
        app_key = _ensure_app(conn, app_id)
        result.dimension_rows_inserted = _merge_dimensions(conn, app_key, window)
        result.counter_regressions = _record_regressions(conn, app_key, run_id)
        _merge_fact(conn, app_key, run_id, settle, result)
        _mark_missing(conn, app_key, window, read_started, result)
        result.raw_versions_inserted = _insert_raw_versions(conn, app_id, run_id)
        result.rejects_inserted = _insert_rejects(conn, app_id, window, run_id)
        _record_fields(conn, app_id, fields, run_id, result)
    return result


def _analyze_if_grown(conn: Connection, model: type[Base], rows_added: int) -> None:
    """Refresh a table's planner statistics when this load grew it by a tenth or more.

    Inside the load's transaction (ANALYZE counts the transaction's own new rows): the next
    statements join the fact it just filled, and with "empty table" estimates PostgreSQL picks
    nested loops that rescan the stage per row (minutes instead of a second at 100k
    campaigns). The statistics commit with the data, so the marts plan well right away too.
    ANALYZE's lock conflicts only with another ANALYZE or VACUUM, not with loads.
    """
    table = table_of(model)
    estimate = conn.scalar(
        text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:name)"), {"name": table.fullname}
    )
    if rows_added <= 0 or estimate is None or (estimate >= 0 and rows_added < estimate / 10):
        return
    conn.execute(text(f"ANALYZE {table.fullname}"))


def _copy_into_stage(
    conn: Connection, window: Window, pages: Iterable[Page], result: LoadResult
) -> tuple[set[str], datetime]:
    """COPY every record into the stage; returns the field paths the records carried and when
    the read began (the first page's fetch time; now if there was no page)."""
    fields: set[str] = set()
    read_started: datetime | None = None
    sender_fields: set[str] = set()
    columns = [c.name for c in stage.columns]
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(stage.name), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    raw = conn.connection.driver_connection
    assert raw is not None
    seq = 0
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        for page in pages:
            if read_started is None or page.fetched_at < read_started:
                read_started = page.fetched_at
            for record in page.records:
                seq += 1
                result.records += 1
                if isinstance(record, dict):
                    # Set updates in C, prefixed once at the end: a Python loop over every
                    # key of every record was a tenth of the per-record cost (pyinstrument).
                    fields.update(record)
                    sender = record.get("sender")
                    if isinstance(sender, dict):
                        sender_fields.update(sender)
                staged = stage_record(record, window, page.fetched_at)
                if isinstance(staged, Rejection):
                    result.rejected += 1
                    result.reject_reasons.update(staged.reasons)
                    copy.write_row(_rejection_row(seq, staged))
                    continue
                result.valid += 1
                copy.write_row(_campaign_row(seq, staged))
    # Distinct names only, so the sets stay as small as the schema, whatever the volume.
    paths = {str(name) for name in fields} | {f"sender.{name}" for name in sender_fields}
    return paths, read_started or datetime.now(UTC)


def _campaign_row(seq: int, staged: StagedCampaign) -> tuple[object, ...]:
    c = staged.campaign
    s = c.sender
    return (
        seq,
        c.id,
        staged.extracted_at,
        staged.payload_json,
        None,
        None,
        None,
        c.sent_at,
        staged.sent_date,
        c.channel.value,
        c.campaign_name,
        c.created_by,
        s.phone,
        s.channel_name,
        s.source_name,
        s.sender_eid,
        c.subject,
        c.total_recipients,
        c.delivered,
        c.read,
        c.replied,
        c.pending,
        c.failed,
    )


def _rejection_row(seq: int, rejection: Rejection) -> tuple[object, ...]:
    return (
        seq,
        rejection.campaign_id,
        rejection.extracted_at,
        rejection.payload_json,
        rejection.payload_text,
        list(rejection.reasons),
        rejection.payload_hash,
        *([None] * 16),
    )


def _ensure_app(conn: Connection, app_id: str) -> int:
    dim_app = table_of(DimApp)
    key = conn.scalar(select(dim_app.c.app_key).where(dim_app.c.app_id == app_id))
    if key is None:
        conn.execute(insert(dim_app).values(app_id=app_id).on_conflict_do_nothing())
        key = conn.scalar(select(dim_app.c.app_key).where(dim_app.c.app_id == app_id))
        # Too small for autovacuum ever to analyse (fewer than 50 changes), so here.
        _analyze_if_grown(conn, DimApp, 1)
    assert key is not None
    return int(key)


def _merge_dimensions(conn: Connection, app_key: int, window: Window) -> int:
    """Insert the dimension rows the stage needs and the warehouse lacks; version senders."""
    valid = stage.c.reject_reasons.is_(None)
    inserted = _insert_missing_days(conn, window)
    _analyze_if_grown(conn, DimDate, inserted)

    # Staff (createdBy) and templates (subject): one name per app. A name is all either has,
    # so there is nothing that could change and no history to keep.
    for model, name_column, staged in (
        (DimStaff, "staff_name", stage.c.created_by),
        (DimTemplate, "subject", stage.c.subject),
    ):
        table = table_of(model)
        names = (
            select(literal(app_key, Integer), staged)
            .distinct()
            .where(
                valid,
                staged.is_not(None),
                not_(exists().where(table.c.app_key == app_key, table.c[name_column] == staged)),
            )
        )
        added = _insert_missing(conn, table, ["app_key", name_column], names)
        _analyze_if_grown(conn, model, added)
        inserted += added
    senders = _merge_sender_versions(conn, app_key)
    _analyze_if_grown(conn, DimSender, senders)
    return inserted + senders


def _insert_missing_days(conn: Connection, window: Window) -> int:
    """Every day of the window, campaigns or not, so BI tools see a calendar without gaps."""
    dim_date = table_of(DimDate)
    first_day = window.start.astimezone(UTC).date()
    last_day = (window.end - timedelta(microseconds=1)).astimezone(UTC).date()
    series = func.generate_series(
        literal(first_day, Date), literal(last_day, Date), literal(timedelta(days=1), Interval)
    ).column_valued("day")
    window_days = select(series.cast(Date).label("day"))
    # A record dated outside its window (CINNOX's clock, or a widened window) still needs its day.
    staged_days = select(stage.c.sent_date.label("day")).where(stage.c.reject_reasons.is_(None))
    days = union(window_days, staged_days).subquery("days")
    d = days.c.day
    calendar = select(
        func.to_char(d, "YYYYMMDD").cast(Integer),
        d,
        extract("year", d),
        extract("quarter", d),
        extract("month", d),
        func.to_char(d, "FMMonth"),
        extract("day", d),
        extract("isoyear", d),
        extract("week", d),
        extract("isodow", d),
        func.to_char(d, "FMDay"),
        extract("isodow", d) >= 6,
        func.date_trunc("week", d).cast(Date),
        func.date_trunc("month", d).cast(Date),
    ).where(d.is_not(None), not_(exists().where(dim_date.c.calendar_date == d)))
    return _insert_missing(conn, dim_date, [c.name for c in dim_date.columns], calendar)


def _merge_sender_versions(conn: Connection, app_key: int) -> int:
    """Type-2 senders: a sender is its phone and senderEID per channel; a new channel name or
    template source is a new version, valid from the first send seen with it to the next
    version's first send. Writes only where a version or its validity changes."""
    dim_sender = table_of(DimSender)
    dim_channel = table_of(DimChannel)
    staged = (
        select(
            dim_channel.c.channel_key,
            stage.c.sender_phone,
            stage.c.sender_channel_name,
            stage.c.sender_source_name,
            stage.c.sender_eid,
            func.min(stage.c.sent_at).label("first_sent"),
        )
        .join_from(stage, dim_channel, dim_channel.c.channel == stage.c.channel)
        .where(stage.c.reject_reasons.is_(None))
        .group_by(
            dim_channel.c.channel_key,
            stage.c.sender_phone,
            stage.c.sender_channel_name,
            stage.c.sender_source_name,
            stage.c.sender_eid,
        )
        .subquery("staged_senders")
    )
    same_version = _is_sender_version(app_key, staged.c.channel_key, staged)
    new_versions = select(
        literal(app_key, Integer),
        staged.c.channel_key,
        staged.c.sender_phone,
        staged.c.sender_channel_name,
        staged.c.sender_source_name,
        staged.c.sender_eid,
        staged.c.first_sent,
    ).where(not_(exists().where(same_version)))
    columns = ["app_key", "channel_key", "phone", "whatsapp_channel_name", "template_source_name", "sender_eid"]
    inserted = _insert_missing(conn, dim_sender, [*columns, "valid_from"], new_versions)
    # A backfill can reveal an earlier send of a version already known.
    earlier = (
        dim_sender.update()
        .values(valid_from=staged.c.first_sent)
        .where(
            same_version,
            or_(dim_sender.c.valid_from.is_(None), staged.c.first_sent < dim_sender.c.valid_from),
        )
    )
    moved = conn.execute(earlier.execution_options(preserve_rowcount=True)).rowcount
    if inserted or moved:
        _recompute_sender_validity(conn, app_key)
    return inserted


def _recompute_sender_validity(conn: Connection, app_key: int) -> None:
    """valid_to, is_current and the durable key of every version of the app's senders that the
    stage touched, from the versions' valid_from order."""
    dim_sender = table_of(DimSender)
    natural_key = (dim_sender.c.channel_key, dim_sender.c.phone, dim_sender.c.sender_eid)
    in_stage = exists().where(
        stage.c.reject_reasons.is_(None),
        stage.c.sender_phone.is_not_distinct_from(dim_sender.c.phone),
        stage.c.sender_eid.is_not_distinct_from(dim_sender.c.sender_eid),
    )
    touched = select(*natural_key).distinct().where(dim_sender.c.app_key == app_key, in_stage).subquery("touched")
    versions = dim_sender.alias("versions")
    ordered = (
        select(
            versions.c.sender_key,
            func.min(versions.c.sender_key)
            .over(partition_by=[versions.c.channel_key, versions.c.phone, versions.c.sender_eid])
            .label("durable_sender_key"),
            func.lead(versions.c.valid_from)
            .over(
                partition_by=[versions.c.channel_key, versions.c.phone, versions.c.sender_eid],
                order_by=[versions.c.valid_from.asc().nulls_last(), versions.c.sender_key],
            )
            .label("valid_to"),
        )
        .join(
            touched,
            and_(
                touched.c.channel_key == versions.c.channel_key,
                touched.c.phone.is_not_distinct_from(versions.c.phone),
                touched.c.sender_eid.is_not_distinct_from(versions.c.sender_eid),
            ),
        )
        .where(versions.c.app_key == app_key)
        .subquery("ordered")
    )
    is_current = ordered.c.valid_to.is_(None)
    conn.execute(
        dim_sender.update()
        .values(durable_sender_key=ordered.c.durable_sender_key, valid_to=ordered.c.valid_to, is_current=is_current)
        .where(
            dim_sender.c.sender_key == ordered.c.sender_key,
            tuple_(dim_sender.c.durable_sender_key, dim_sender.c.valid_to, dim_sender.c.is_current).is_distinct_from(
                tuple_(ordered.c.durable_sender_key, ordered.c.valid_to, is_current)
            ),
        )
    )


def _insert_missing(conn: Connection, table: Table, columns: list[str], rows: object) -> int:
    # The NOT EXISTS in `rows` keeps re-runs from burning identity values; ON CONFLICT covers
    # a concurrent load of another app inserting the same calendar day.
    statement = insert(table).from_select(columns, rows).on_conflict_do_nothing()  # type: ignore[arg-type]
    return conn.execute(statement.execution_options(preserve_rowcount=True)).rowcount


def _sender_identity(*attributes: ColumnElement[Any]) -> ColumnElement[Any]:
    # The sender attributes as one jsonb array: NULL-safe like IS NOT DISTINCT FROM, but an
    # equality PostgreSQL can hash-join on, so matching 1M campaigns to senders stays linear.
    return func.jsonb_build_array(*attributes)


def _is_sender_version(app_key: int, channel_key: ColumnElement[Any], staged: Subquery) -> ColumnElement[bool]:
    """dim_sender's row for the sender attributes of `staged` (stage columns sender_*)."""
    dim_sender = table_of(DimSender)
    return and_(
        dim_sender.c.app_key == app_key,
        dim_sender.c.channel_key == channel_key,
        _sender_identity(
            dim_sender.c.phone,
            dim_sender.c.whatsapp_channel_name,
            dim_sender.c.template_source_name,
            dim_sender.c.sender_eid,
        )
        == _sender_identity(
            staged.c.sender_phone,
            staged.c.sender_channel_name,
            staged.c.sender_source_name,
            staged.c.sender_eid,
        ),
    )


def _merge_fact(conn: Connection, app_key: int, run_id: str | None, settle: SettlePolicy, result: LoadResult) -> None:
    # Counted in the database: RETURNING a row per campaign to Python held every one of them
    # in memory at once (about 150 MB more at 1M campaigns than at 100k; bench/, issue 5).
    upserted_rows = fact_upsert(app_key, run_id, settle).cte("upserted")
    inserted, upserted = conn.execute(
        select(
            func.count().filter(upserted_rows.c.inserted),
            func.count(),
        ).select_from(upserted_rows)
    ).one()
    result.inserted = int(inserted)
    result.updated = int(upserted) - result.inserted
    _analyze_if_grown(conn, FactSentCampaign, result.inserted)
    result.snapshots_inserted = conn.execute(
        snapshot_insert(app_key).execution_options(preserve_rowcount=True)
    ).rowcount
    _analyze_if_grown(conn, FactSentCampaignSnapshot, result.snapshots_inserted)
    # One pass over the staged campaigns, counted in the database (not in a Python set that
    # would grow with the window): how many distinct ones, and how many of them the warehouse
    # holds from a newer read than this load's, which the upsert left as they are.
    fact = table_of(FactSentCampaign)
    latest = _latest_staged()
    distinct_valid, stale = conn.execute(
        select(func.count(), func.count().filter(latest.c.extracted_at < fact.c.values_observed_at))
        .select_from(latest)
        .outerjoin(fact, and_(fact.c.app_key == app_key, fact.c.campaign_id == latest.c.campaign_id))
    ).one()
    result.duplicates = result.valid - int(distinct_valid)
    result.stale = int(stale)
    result.unchanged = int(distinct_valid) - upserted - result.stale


def _latest_staged() -> Subquery:
    # The same campaign can come twice in one unit (pages shifting under us); the last read
    # wins, and a single INSERT must not touch one key twice.
    return (
        select(stage)
        .where(stage.c.reject_reasons.is_(None))
        .ext(distinct_on(stage.c.campaign_id))
        .order_by(stage.c.campaign_id, stage.c.seq.desc())
        .subquery("latest")
    )


def fact_upsert(app_key: int, run_id: str | None, settle: SettlePolicy) -> ReturningInsert[tuple[bool]]:
    """The fact merge: staged campaigns resolved to dimension keys, inserted or updated only
    where a value differs (counters, descriptive values, or having settled); RETURNING tells
    inserts from updates."""
    fact = table_of(FactSentCampaign)
    dim_channel = table_of(DimChannel)
    dim_sender = table_of(DimSender)
    dim_staff = table_of(DimStaff)
    dim_template = table_of(DimTemplate)
    dim_date = table_of(DimDate)

    # The same campaign can come twice in one unit (pages shifting under us); the last read
    # wins, and a single INSERT must not touch one key twice.
    latest = _latest_staged()
    incoming = (
        select(
            literal(app_key, Integer).label("app_key"),
            latest.c.campaign_id,
            latest.c.extracted_at.label("observed_at"),
            latest.c.sent_at,
            dim_date.c.date_key.label("sent_date_key"),
            dim_channel.c.channel_key,
            dim_sender.c.sender_key,
            dim_staff.c.staff_key,
            dim_template.c.template_key,
            latest.c.campaign_name,
            *(latest.c[name] for name in COUNTER_COLUMNS),
        )
        .select_from(latest)
        .join(dim_date, dim_date.c.calendar_date == latest.c.sent_date)
        .join(dim_channel, dim_channel.c.channel == latest.c.channel)
        .join(dim_sender, _is_sender_version(app_key, dim_channel.c.channel_key, latest))
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
    # When the counters last changed: this observation if they differ, else as stored.
    changed_at = case((counters_changed, observed_at), else_=current.c.counters_changed_at)
    complete = and_(
        func.coalesce(incoming.c.pending, 0) == 0,
        or_(
            incoming.c.failed.is_(None),  # SMS reports no failures: nothing to reconcile
            incoming.c.delivered + incoming.c.failed >= incoming.c.total_recipients,
        ),
    )
    settled_at = case(
        (and_(not_(counters_changed), current.c.settled_at.is_not(None)), current.c.settled_at),
        (
            and_(
                complete,
                or_(
                    observed_at - incoming.c.sent_at >= literal(settle.final_age, Interval),
                    observed_at - changed_at >= literal(settle.quiet, Interval),
                ),
            ),
            observed_at,
        ),
        else_=null(),
    )
    new_values = [
        *(incoming.c[name] for name in ("app_key", "campaign_id", *_FACT_VALUES)),
        settled_at.label("settled_at"),
        changed_at.label("counters_changed_at"),
        observed_at.label("values_observed_at"),
        literal(run_id, Text).label("last_dagster_run_id"),
    ]
    tracked_new = [*(incoming.c[n] for n in _FACT_VALUES), settled_at]
    changed_or_new = (
        select(*new_values)
        .select_from(incoming)
        .outerjoin(
            current,
            and_(
                current.c.app_key == app_key,
                current.c.campaign_id == incoming.c.campaign_id,
            ),
        )
        .where(
            or_(
                is_new,
                and_(
                    # Not a read older than the one the row holds: another load's newer read wins.
                    observed_at >= current.c.values_observed_at,
                    # The row as it is against the row as it would be.
                    tuple_(*(current.c[n] for n in _TRACKED)).is_distinct_from(tuple_(*tracked_new)),
                ),
            )
        )
    )
    written = ["app_key", "campaign_id", *_TRACKED, "counters_changed_at", "values_observed_at", "last_dagster_run_id"]
    upsert = insert(fact).from_select(written, changed_or_new)
    excluded = upsert.excluded
    return upsert.on_conflict_do_update(
        index_elements=[fact.c.app_key, fact.c.campaign_id],
        set_={
            **{name: excluded[name] for name in (*_TRACKED, "counters_changed_at", "values_observed_at")},
            "last_changed_at": func.now(),
            "last_dagster_run_id": excluded.last_dagster_run_id,
        },
        where=and_(
            fact.c.values_observed_at <= excluded.values_observed_at,
            tuple_(*(fact.c[n] for n in _TRACKED)).is_distinct_from(tuple_(*(excluded[n] for n in _TRACKED))),
        ),
    ).returning(_WAS_INSERTED)


def snapshot_insert(app_key: int) -> Insert:
    """A history row for each staged campaign whose counters changed in this load: the upsert
    set its counters_changed_at to this observation's time, and to nothing else."""
    fact = table_of(FactSentCampaign)
    snapshot = table_of(FactSentCampaignSnapshot)
    latest = _latest_staged()
    columns = ("sent_campaign_key", "observed_at", "sent_at", *COUNTER_COLUMNS, "dagster_run_id")
    rows = (
        select(
            fact.c.sent_campaign_key,
            fact.c.counters_changed_at,
            fact.c.sent_at,
            *(fact.c[n] for n in COUNTER_COLUMNS),
            fact.c.last_dagster_run_id,
        )
        .join_from(latest, fact, and_(fact.c.app_key == app_key, fact.c.campaign_id == latest.c.campaign_id))
        .where(fact.c.counters_changed_at == latest.c.extracted_at)
    )
    statement = insert(snapshot).from_select(columns, rows)
    # A page fetched at the same instant as an earlier load's (a replayed page): the same key;
    # keep the newer counters, and write nothing when they are the same.
    values = ("sent_at", *COUNTER_COLUMNS)
    return statement.on_conflict_do_update(
        index_elements=[snapshot.c.sent_campaign_key, snapshot.c.observed_at],
        set_={name: statement.excluded[name] for name in (*values, "dagster_run_id")},
        where=tuple_(*(snapshot.c[n] for n in values)).is_distinct_from(
            tuple_(*(statement.excluded[n] for n in values))
        ),
    )


def _insert_raw_versions(conn: Connection, app_id: str, run_id: str | None) -> int:
    raw = table_of(SentCampaignPayload)
    hashed = (
        select(
            stage.c.campaign_id,
            func.sha256(func.convert_to(stage.c.payload.cast(Text), "UTF8")).label("payload_hash"),
            stage.c.payload,
            stage.c.extracted_at,
            stage.c.seq,
        )
        .where(stage.c.reject_reasons.is_(None))
        .subquery("hashed")
    )
    versions = (
        select(
            literal(app_id, Text),
            hashed.c.campaign_id,
            hashed.c.payload_hash,
            hashed.c.payload,
            hashed.c.extracted_at,
            literal(run_id, Text),
        )
        .ext(distinct_on(hashed.c.campaign_id, hashed.c.payload_hash))
        .where(
            not_(
                exists().where(
                    raw.c.app_id == app_id,
                    raw.c.campaign_id == hashed.c.campaign_id,
                    raw.c.payload_hash == hashed.c.payload_hash,
                )
            )
        )
        .order_by(hashed.c.campaign_id, hashed.c.payload_hash, hashed.c.seq)
    )
    columns = [
        "app_id",
        "campaign_id",
        "payload_hash",
        "payload",
        "extracted_at",
        "dagster_run_id",
    ]
    return _insert_missing(conn, raw, columns, versions)


def _insert_rejects(conn: Connection, app_id: str, window: Window, run_id: str | None) -> int:
    rejects = table_of(SentCampaignReject)
    rows = (
        select(
            literal(app_id, Text),
            stage.c.campaign_id,
            stage.c.reject_reasons,
            stage.c.payload,
            stage.c.payload_text,
            stage.c.reject_hash,
            literal(window.start, TIMESTAMP(timezone=True)),
            literal(window.end, TIMESTAMP(timezone=True)),
            stage.c.extracted_at,
            literal(run_id, Text),
        )
        .ext(distinct_on(stage.c.reject_hash))
        .where(
            stage.c.reject_reasons.is_not(None),
            not_(
                exists().where(
                    rejects.c.app_id == app_id,
                    rejects.c.payload_hash == stage.c.reject_hash,
                )
            ),
        )
        .order_by(stage.c.reject_hash, stage.c.seq)
    )
    columns = [
        "app_id",
        "campaign_id",
        "reasons",
        "payload",
        "payload_text",
        "payload_hash",
        "window_start",
        "window_end",
        "rejected_at",
        "dagster_run_id",
    ]
    return _insert_missing(conn, rejects, columns, rows)


def _record_regressions(conn: Connection, app_key: int, run_id: str | None) -> int:
    """Keep the old value of every monotonic counter CINNOX now reports smaller (before the merge)."""
    fact = table_of(FactSentCampaign)
    regressions = table_of(CounterRegression)
    latest = _latest_staged()
    # One join of the stage with the fact for all counters (it was one per counter: four
    # scans, 0.8 s of a no-op re-load of 100k campaigns), unpivoted only for the rare
    # campaigns with a drop: unnest() of equal-length arrays yields them in step.
    dropped = (
        select(
            fact.c.campaign_id,
            func.unnest(array([literal(name, Text) for name in MONOTONIC_COUNTERS])).label("counter"),
            func.unnest(array([fact.c[name] for name in MONOTONIC_COUNTERS])).label("previous_value"),
            func.unnest(array([latest.c[name] for name in MONOTONIC_COUNTERS])).label("new_value"),
        )
        .join_from(latest, fact, and_(fact.c.app_key == app_key, fact.c.campaign_id == latest.c.campaign_id))
        .where(
            # A read older than the row's is not a drop: the row is newer, and stays.
            latest.c.extracted_at >= fact.c.values_observed_at,
            or_(*(latest.c[name] < fact.c[name] for name in MONOTONIC_COUNTERS)),
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
    return _insert_missing(conn, regressions, columns, drops)


def _mark_missing(conn: Connection, app_key: int, window: Window, read_started: datetime, result: LoadResult) -> None:
    """Mark the window's campaigns CINNOX no longer returned; un-mark those it returned again.

    Any staged record counts as returned, a rejected one too: it is at the source, just bad.
    Only campaigns the warehouse knew from a read before this one began are judged: one that
    another load read since may have been sent after this read passed its page. Likewise only a
    read newer than the one that found a campaign gone brings it back.
    """
    fact = table_of(FactSentCampaign)
    in_window = and_(fact.c.app_key == app_key, fact.c.sent_at >= window.start, fact.c.sent_at < window.end)
    returned = exists().where(stage.c.campaign_id == fact.c.campaign_id)
    returned_since_marked = exists().where(
        stage.c.campaign_id == fact.c.campaign_id,
        stage.c.extracted_at >= fact.c.missing_at_source_since,
    )
    marked = conn.execute(
        fact.update()
        .where(
            in_window,
            fact.c.missing_at_source_since.is_(None),
            fact.c.values_observed_at <= read_started,
            not_(returned),
        )
        # The read's start, on the clock of the records' read times, to compare with them.
        .values(missing_at_source_since=literal(read_started, TIMESTAMP(timezone=True)))
        .execution_options(preserve_rowcount=True)
    )
    result.marked_missing = marked.rowcount
    back = conn.execute(
        fact.update()
        .where(fact.c.app_key == app_key, fact.c.missing_at_source_since.is_not(None), returned_since_marked)
        .values(missing_at_source_since=None)
        .execution_options(preserve_rowcount=True)
    )
    result.reappeared = back.rowcount
    result.missing_at_source = int(
        conn.scalar(select(func.count()).where(in_window, fact.c.missing_at_source_since.is_not(None))) or 0
    )


def _record_fields(conn: Connection, app_id: str, fields: set[str], run_id: str | None, result: LoadResult) -> None:
    """Remember every field path seen; the unknown ones no load had seen before are news."""
    result.unknown_fields = sorted(fields - KNOWN_FIELDS)
    if not fields:
        return
    table = table_of(SourceField)
    rows = [
        {"app_id": app_id, "field_path": path, "known": path in KNOWN_FIELDS, "first_dagster_run_id": run_id}
        for path in sorted(fields)
    ]
    inserted = conn.execute(
        insert(table).values(rows).on_conflict_do_nothing().returning(table.c.field_path, table.c.known)
    ).all()
    result.new_fields = sorted(path for path, known in inserted if not known)


# The record fields the parser reads (docs/cinnox-api.md); any other is kept in raw JSON only.
KNOWN_FIELDS = frozenset(
    {
        "id",
        "date",
        "campaignName",
        "channel",
        "createdBy",
        "sender",
        "sender.phone",
        "sender.channelName",
        "sender.sourceName",
        "sender.senderEID",
        "subject",
        "totalRecipients",
        "delivered",
        "read",
        "replied",
        "pending",
        "failed",
    }
)
