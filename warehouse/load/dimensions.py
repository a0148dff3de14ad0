"""Dimensions: the app, the calendar, staff, templates and type-2 sender versions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Date,
    Integer,
    Interval,
    MetaData,
    Subquery,
    Table,
    Text,
    and_,
    cast,
    exists,
    extract,
    func,
    literal,
    not_,
    or_,
    select,
    tuple_,
    union,
)
from sqlalchemy.dialects.postgresql import TIMESTAMP, array, insert

from cinnox import Window
from warehouse.load._sql import analyze_if_grown, insert_missing
from warehouse.load.stage import stage
from warehouse.models import (
    DimApp,
    DimChannel,
    DimDate,
    DimSender,
    DimStaff,
    DimTemplate,
    first_day,
    last_day,
    table_of,
)


def ensure_app(conn: Connection, app_id: str) -> int:
    dim_app = table_of(DimApp)
    key = conn.scalar(select(dim_app.c.app_key).where(dim_app.c.app_id == app_id))
    if key is None:
        conn.execute(insert(dim_app).values(app_id=app_id).on_conflict_do_nothing())
        key = conn.scalar(select(dim_app.c.app_key).where(dim_app.c.app_id == app_id))
        # Too small for autovacuum ever to analyse (fewer than 50 changes), so here.
        analyze_if_grown(conn, DimApp, 1)
    assert key is not None
    return int(key)


_temp = MetaData()
# What the stage holds of each dimension, distinct, from one scan of the stage (GROUPING SETS):
# six scans of it, one per dimension statement, were 2.5 s of a 1M-record load.
_staged = Table(
    "stage_dimensions",
    _temp,
    Column("grouping", Integer, nullable=False),  # which set: _STAFF, _TEMPLATES, _DAYS, _SENDERS
    Column("created_by", Text),
    Column("subject", Text),
    Column("sent_date", Date),
    Column("channel", Text),
    Column("sender_phone", Text),
    Column("sender_channel_name", Text),
    Column("sender_source_name", Text),
    Column("sender_eid", Text),
    Column("first_sent", TIMESTAMP(timezone=True)),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)
# GROUPING(created_by, subject, sent_date, channel) of each set: a bit is 1 where the column
# is not in the set.
_STAFF, _TEMPLATES, _DAYS, _SENDERS = 0b0111, 0b1011, 0b1101, 0b1110


def merge_dimensions(conn: Connection, app_key: int, window: Window) -> int:
    """Insert the dimension rows the stage needs and the warehouse lacks; version senders."""
    _stage_dimensions(conn)
    inserted = _insert_missing_days(conn, window)
    analyze_if_grown(conn, DimDate, inserted)

    # Staff (createdBy) and templates (subject): one name per app. A name is all either has,
    # so there is nothing that could change and no history to keep.
    for model, name_column, staged, grouping in (
        (DimStaff, "staff_name", _staged.c.created_by, _STAFF),
        (DimTemplate, "subject", _staged.c.subject, _TEMPLATES),
    ):
        table = table_of(model)
        names = select(literal(app_key, Integer), staged).where(
            _staged.c.grouping == grouping,
            staged.is_not(None),
            not_(exists().where(table.c.app_key == app_key, table.c[name_column] == staged)),
        )
        added = insert_missing(conn, table, ["app_key", name_column], names)
        analyze_if_grown(conn, model, added)
        inserted += added
    senders = _merge_sender_versions(conn, app_key)
    _staged.drop(conn)
    return inserted + senders


def _stage_dimensions(conn: Connection) -> None:
    s = stage.c
    senders = (s.channel, s.sender_phone, s.sender_channel_name, s.sender_source_name, s.sender_eid)
    rows = (
        select(
            func.grouping(s.created_by, s.subject, s.sent_date, s.channel),
            s.created_by,
            s.subject,
            s.sent_date,
            *senders,
            func.min(s.sent_at),
        )
        .where(s.reject_reasons.is_(None))
        .group_by(func.grouping_sets(tuple_(s.created_by), tuple_(s.subject), tuple_(s.sent_date), tuple_(*senders)))
    )
    _staged.create(conn)
    conn.execute(insert(_staged).from_select([c.name for c in _staged.columns], rows))


def _insert_missing_days(conn: Connection, window: Window) -> int:
    """Every day of the window, campaigns or not, so BI tools see a calendar without gaps."""
    dim_date = table_of(DimDate)
    series = func.generate_series(
        literal(first_day(window.start), Date),
        literal(last_day(window.end), Date),
        literal(timedelta(days=1), Interval),
    ).column_valued("day")
    window_days = select(series.cast(Date).label("day"))
    # A record dated outside its window (CINNOX's clock, or a widened window) still needs its day.
    staged_days = select(_staged.c.sent_date.label("day")).where(_staged.c.grouping == _DAYS)
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
    return insert_missing(conn, dim_date, [c.name for c in dim_date.columns], calendar)


def _merge_sender_versions(conn: Connection, app_key: int) -> int:
    """Type-2 senders: a sender is its phone and senderEID per channel; a new channel name or
    template source is a new version, valid from the first send seen with it to the next
    version's first send. Writes only where a version or its validity changes."""
    dim_sender = table_of(DimSender)
    dim_channel = table_of(DimChannel)
    staged = (
        select(
            dim_channel.c.channel_key,
            _staged.c.sender_phone,
            _staged.c.sender_channel_name,
            _staged.c.sender_source_name,
            _staged.c.sender_eid,
            _staged.c.first_sent,
        )
        .join_from(_staged, dim_channel, dim_channel.c.channel == _staged.c.channel)
        .where(_staged.c.grouping == _SENDERS)
        .subquery("staged_senders")
    )
    same_version = is_sender_version(app_key, staged.c.channel_key, staged)
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
    inserted = insert_missing(conn, dim_sender, [*columns, "valid_from"], new_versions)
    # Before the validity pass: a new app's first chunk doubles the table, and on the old
    # statistics the pass re-ran its window query per row (75 s for 300 senders).
    analyze_if_grown(conn, DimSender, inserted)
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
    # NULL-safe matches as text[] equalities, which PostgreSQL can hash: IS NOT DISTINCT FROM
    # only nests loops, and with the statistics of a new app's first chunk that took 40 s.
    # From the stage's distinct senders (stage_dimensions), not the stage: a scan of 1M staged
    # records for a few hundred senders was 0.45 s of a first load.
    staged_senders = (
        select(_sender_identity(_staged.c.sender_phone, _staged.c.sender_eid).label("identity"))
        .where(_staged.c.grouping == _SENDERS)
        .distinct()
        .subquery("staged_senders")
    )
    touched = (
        select(*natural_key)
        .distinct()
        .join_from(
            dim_sender,
            staged_senders,
            staged_senders.c.identity == _sender_identity(dim_sender.c.phone, dim_sender.c.sender_eid),
        )
        .where(dim_sender.c.app_key == app_key)
        .subquery("touched")
    )
    versions = dim_sender.alias("versions")
    ordered = (
        select(
            versions.c.sender_key,
            durable_sender_key(versions).label("durable_sender_key"),
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
                _sender_identity(touched.c.phone, touched.c.sender_eid)
                == _sender_identity(versions.c.phone, versions.c.sender_eid),
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


def durable_sender_key(versions: Any) -> ColumnElement[Any]:
    """A sender's durable key over its versions (rows of dim_sender): its first version's key."""
    return func.min(versions.c.sender_key).over(
        partition_by=[versions.c.channel_key, versions.c.phone, versions.c.sender_eid]
    )


def _sender_identity(*attributes: ColumnElement[Any]) -> ColumnElement[Any]:
    # The sender's text attributes as one text[]: array equality counts two NULLs as equal
    # (IS NOT DISTINCT FROM, '' still not NULL) and is an equality PostgreSQL can hash-join on,
    # so matching 1M campaigns to senders stays linear. Half the cost of a jsonb array, which
    # converted every value (1.7 us a row at 1M).
    return array([cast(a, Text) for a in attributes])


def is_sender_version(app_key: int, channel_key: ColumnElement[Any], staged: Subquery) -> ColumnElement[bool]:
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
