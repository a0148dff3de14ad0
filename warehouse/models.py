"""The warehouse schema as SQLAlchemy models; Alembic migrations are checked against these.

Two layers live here (SPEC.md "The warehouse"): `cinnox_raw`, what the API returned, kept for
replay and audit; and `cinnox`, the star schema analysts and BI tools read. Every table and
column carries a comment, which PostgreSQL keeps as COMMENT ON for `\\d+` and BI tools.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    and_,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSON, JSONB, TIMESTAMP
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

RAW_SCHEMA = "cinnox_raw"
STAR_SCHEMA = "cinnox"
MART_SCHEMA = "cinnox_mart"  # views only, defined in the migrations (docs/warehouse.md)
OPS_SCHEMA = "cinnox_ops"  # pipeline bookkeeping; not granted to the reader role
SCHEMAS = (RAW_SCHEMA, STAR_SCHEMA, MART_SCHEMA, OPS_SCHEMA)


def text_key(column: str) -> Any:
    """A unique key's part over free text: its SHA-256 (`cinnox.text_key`, migration 0007), of
    a fixed size, because a btree entry over the text itself holds at most ~2.7 KB."""
    return text(f"cinnox.text_key({column})")


# Constraint names are fixed by a convention, not left to PostgreSQL, so migrations can
# name them when they alter or drop them and `alembic check` compares like with like.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
}

Timestamp = TIMESTAMP(timezone=True)
# The fact's counter columns, in the order the API doc lists them.
COUNTER_COLUMNS = ("total_recipients", "delivered", "read", "replied", "pending", "failed")
# Counters that only ever grow as receipts arrive; one going down is recorded as a regression.
# (pending falls as receipts arrive, and total_recipients is fixed at the send.)
MONOTONIC_COUNTERS = ("delivered", "read", "replied", "failed")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# --- cinnox_raw: what the API returned ------------------------------------------------------


class SentCampaignPayload(Base):
    __tablename__ = "sent_campaign_payload"
    __table_args__: Any = {
        "schema": RAW_SCHEMA,
        "comment": "Every distinct version of every sent-campaign record CINNOX returned, as JSON. "
        "A new row only when a record's content changes, so re-runs write nothing; "
        "replaying the latest version per campaign rebuilds the star schema.",
    }

    app_id: Mapped[str] = mapped_column(Text, primary_key=True, comment="CINNOX App ID the record was read from.")
    campaign_id: Mapped[str] = mapped_column(Text, primary_key=True, comment="The record's `id` (the campaign id).")
    payload_hash: Mapped[bytes] = mapped_column(
        LargeBinary,
        primary_key=True,
        comment="SHA-256 of the payload's JSON with keys sorted (orjson); identifies a version.",
    )
    payload: Mapped[Any] = mapped_column(
        JSON,
        comment="The record as returned, unknown fields included: "
        "its JSON with keys sorted, the text payload_hash hashes.",
    )
    extracted_at: Mapped[datetime] = mapped_column(
        Timestamp, comment="When this version was first fetched from CINNOX (UTC)."
    )
    dagster_run_id: Mapped[str | None] = mapped_column(Text, comment="Dagster run that first fetched this version.")


class SentCampaignReject(Base):
    __tablename__ = "sent_campaign_reject"
    __table_args__: Any = (
        UniqueConstraint("app_id", "payload_hash"),
        {
            "schema": RAW_SCHEMA,
            "comment": "Records that failed validation, with every reason, kept so nothing is lost. "
            "One row per distinct record per app.",
        },
    )

    reject_id: Mapped[int] = mapped_column(
        BigInteger,
        Identity(),
        primary_key=True,
        comment="Surrogate key of the rejected record.",
    )
    app_id: Mapped[str] = mapped_column(Text, comment="CINNOX App ID the record was read from.")
    campaign_id: Mapped[str | None] = mapped_column(Text, comment="The record's `id`, when it had a usable one.")
    reasons: Mapped[list[str]] = mapped_column(ARRAY(Text), comment="Every reason the record could not be loaded.")
    payload: Mapped[Any | None] = mapped_column(JSONB, comment="The record as returned, when jsonb can hold it.")
    payload_text: Mapped[str | None] = mapped_column(
        Text,
        comment="The record as JSON text, only when jsonb cannot hold it (e.g. a \\u0000 in a string).",
    )
    payload_hash: Mapped[bytes] = mapped_column(LargeBinary, comment="SHA-256 of the record's JSON text.")
    window_start: Mapped[datetime] = mapped_column(Timestamp, comment="Start of the requested window (inclusive).")
    window_end: Mapped[datetime] = mapped_column(Timestamp, comment="End of the requested window (exclusive).")
    rejected_at: Mapped[datetime] = mapped_column(Timestamp, comment="When the record was first fetched and rejected.")
    dagster_run_id: Mapped[str | None] = mapped_column(Text, comment="Dagster run that first rejected the record.")


class SourceField(Base):
    __tablename__ = "source_field"
    __table_args__: Any = {
        "schema": RAW_SCHEMA,
        "comment": "Every field path CINNOX has sent in a sent-campaign record, per app, and when it was "
        "first seen. A path the parser does not know is schema drift: its values stay in the raw JSON, "
        "and the run that first saw it reports it in its Dagster metadata.",
    }

    app_id: Mapped[str] = mapped_column(Text, primary_key=True, comment="CINNOX App ID the record was read from.")
    field_path: Mapped[str] = mapped_column(
        Text, primary_key=True, comment="Dotted path of the field in the record, e.g. sender.phone."
    )
    known: Mapped[bool] = mapped_column(
        Boolean, comment="True when the pipeline parses the field; False for a field kept only in raw JSON."
    )
    first_seen_at: Mapped[datetime] = mapped_column(
        Timestamp, server_default=func.now(), comment="When a load first saw the field (UTC)."
    )
    first_dagster_run_id: Mapped[str | None] = mapped_column(Text, comment="Dagster run that first saw the field.")


# --- cinnox: the star schema ----------------------------------------------------------------


class DimApp(Base):
    __tablename__ = "dim_app"
    __table_args__: Any = {
        "schema": STAR_SCHEMA,
        "comment": "CINNOX apps (service accounts) campaigns are read from.",
    }

    app_key: Mapped[int] = mapped_column(SmallInteger, Identity(), primary_key=True, comment="Surrogate key.")
    app_id: Mapped[str] = mapped_column(Text, unique=True, comment="CINNOX App ID.")


class DimChannel(Base):
    __tablename__ = "dim_channel"
    __table_args__: Any = {
        "schema": STAR_SCHEMA,
        "comment": "Channels a campaign can be sent through.",
    }

    channel_key: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False, comment="Key.")
    channel: Mapped[str] = mapped_column(Text, unique=True, comment="Channel as CINNOX spells it: SMS or WhatsApp.")


class DimDate(Base):
    __tablename__ = "dim_date"
    __table_args__: Any = {
        "schema": STAR_SCHEMA,
        "comment": "Calendar of campaign send dates (UTC), one row a day.",
    }

    date_key: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False, comment="yyyymmdd.")
    calendar_date: Mapped[date] = mapped_column(unique=True, comment="The UTC date.")
    year: Mapped[int] = mapped_column(SmallInteger, comment="Calendar year.")
    quarter: Mapped[int] = mapped_column(SmallInteger, comment="Calendar quarter, 1-4.")
    month: Mapped[int] = mapped_column(SmallInteger, comment="Month number, 1-12.")
    month_name: Mapped[str] = mapped_column(Text, comment="Month name in English, e.g. January.")
    day_of_month: Mapped[int] = mapped_column(SmallInteger, comment="Day of the month, 1-31.")
    iso_year: Mapped[int] = mapped_column(SmallInteger, comment="ISO 8601 week-numbering year.")
    iso_week: Mapped[int] = mapped_column(SmallInteger, comment="ISO 8601 week of the year, 1-53.")
    iso_day_of_week: Mapped[int] = mapped_column(
        SmallInteger, comment="ISO day of the week, 1 = Monday ... 7 = Sunday."
    )
    day_name: Mapped[str] = mapped_column(Text, comment="Day name in English, e.g. Monday.")
    is_weekend: Mapped[bool] = mapped_column(Boolean, comment="True on Saturday and Sunday.")
    iso_week_start: Mapped[date] = mapped_column(comment="Monday of the ISO week: group by it for weekly figures.")
    month_start: Mapped[date] = mapped_column(comment="First day of the month: group by it for monthly figures.")


class DimStaff(Base):
    __tablename__ = "dim_staff"
    __table_args__: Any = (
        Index("uq_dim_staff_name_key", "app_key", text_key("staff_name"), unique=True),
        {
            "schema": STAR_SCHEMA,
            "comment": "Staff who created campaigns (the record's createdBy), per app.",
        },
    )

    staff_key: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True, comment="Surrogate key.")
    app_key: Mapped[int] = mapped_column(ForeignKey(DimApp.app_key), comment="The app the staff belongs to.")
    staff_name: Mapped[str] = mapped_column(Text, comment="Staff name as CINNOX reports it (createdBy).")


class DimTemplate(Base):
    __tablename__ = "dim_template"
    __table_args__: Any = (
        Index("uq_dim_template_subject_key", "app_key", text_key("subject"), unique=True),
        {
            "schema": STAR_SCHEMA,
            "comment": "WhatsApp message templates (the record's subject), per app.",
        },
    )

    template_key: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True, comment="Surrogate key.")
    app_key: Mapped[int] = mapped_column(ForeignKey(DimApp.app_key), comment="The app the template belongs to.")
    subject: Mapped[str] = mapped_column(Text, comment="Template name (subject).")


class DimSender(Base):
    __tablename__ = "dim_sender"
    __table_args__: Any = (
        # NULLS NOT DISTINCT: an SMS sender has no channel name, and must still be one row.
        Index(
            "uq_dim_sender_attributes_key",
            "app_key",
            "channel_key",
            *(text_key(c) for c in ("phone", "whatsapp_channel_name", "template_source_name", "sender_eid")),
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
        {
            "schema": STAR_SCHEMA,
            "comment": "Senders, type 2: one row per version of a sender's attributes, per app and channel. "
            "A sender is its phone and staff (senderEID); a renamed WhatsApp channel or a new template source "
            "is a new version, valid from its first send; campaigns point at the version they were sent with.",
        },
    )

    sender_key: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True, comment="Surrogate key.")
    app_key: Mapped[int] = mapped_column(ForeignKey(DimApp.app_key), comment="The app the sender belongs to.")
    channel_key: Mapped[int] = mapped_column(ForeignKey(DimChannel.channel_key), comment="Channel sent through.")
    phone: Mapped[str | None] = mapped_column(
        Text,
        comment="sender.phone: virtual or service number or alphanumeric Sender ID (SMS); WhatsApp number.",
    )
    whatsapp_channel_name: Mapped[str | None] = mapped_column(
        Text, comment="sender.channelName: WhatsApp channel name; NULL for SMS."
    )
    template_source_name: Mapped[str | None] = mapped_column(
        Text, comment="sender.sourceName: source of the template used; NULL for SMS."
    )
    sender_eid: Mapped[str | None] = mapped_column(
        Text,
        comment="sender.senderEID: unique ID of the staff who sent it; NULL for WhatsApp.",
    )
    durable_sender_key: Mapped[int | None] = mapped_column(
        Integer,
        comment="The sender across all its versions: the sender_key of the version loaded first. Group by "
        "it to follow one sender through renames.",
    )
    valid_from: Mapped[datetime | None] = mapped_column(
        Timestamp, comment="Send time of the first campaign seen with this version (inclusive)."
    )
    valid_to: Mapped[datetime | None] = mapped_column(
        Timestamp, comment="When the next version took over (exclusive); NULL for the current version."
    )
    is_current: Mapped[bool] = mapped_column(
        Boolean, server_default="true", comment="True for the sender's newest version."
    )


class FactSentCampaign(Base):
    __tablename__ = "fact_sent_campaign"
    __table_args__: Any = (
        UniqueConstraint("app_key", "campaign_id"),
        # An app's campaigns of a window (`sent_between`): keyed on the day, new rows' entries
        # join the end of their day's instead of landing anywhere (revision 0015).
        Index(None, "app_key", "sent_date_key"),
        # The few campaigns marked missing, found without scanning the app's rows (every load
        # looks for those its read returned again, and counts those still missing).
        Index(
            "ix_fact_sent_campaign_missing_at_source",
            "app_key",
            "sent_at",
            postgresql_where=text("missing_at_source_since IS NOT NULL"),
        ),
        {
            "schema": STAR_SCHEMA,
            "comment": "One row per app and sent campaign with its latest counters. Counters keep changing "
            "for days after the send; NULL means the channel does not report that counter.",
        },
    )

    sent_campaign_key: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True, comment="Surrogate key.")
    # No foreign keys to the dimensions (a trigger per row each); the merge resolves the keys by
    # inner joins and the dimension_keys_resolve check verifies them. Joins: docs/warehouse.md.
    app_key: Mapped[int] = mapped_column(SmallInteger, comment="The app the campaign was sent from.")
    campaign_id: Mapped[str] = mapped_column(Text, comment="CINNOX campaign id (historyID in the details API).")
    sent_at: Mapped[datetime] = mapped_column(Timestamp, comment="When the campaign was sent.")
    sent_date_key: Mapped[int] = mapped_column(Integer, comment="UTC send date (dim_date).")
    channel_key: Mapped[int] = mapped_column(SmallInteger, comment="Channel sent through.")
    sender_key: Mapped[int] = mapped_column(Integer, comment="Sender as it was at the send.")
    staff_key: Mapped[int | None] = mapped_column(
        Integer,
        comment="Staff who created it; NULL when not reported.",
    )
    template_key: Mapped[int | None] = mapped_column(
        Integer,
        comment="Template used (WhatsApp); NULL for SMS.",
    )
    campaign_name: Mapped[str | None] = mapped_column(Text, comment="Campaign name.")
    total_recipients: Mapped[int | None] = mapped_column(Integer, comment="Phone numbers the campaign was sent to.")
    delivered: Mapped[int | None] = mapped_column(Integer, comment="Messages delivered to recipients.")
    read: Mapped[int | None] = mapped_column(Integer, comment="Messages read by recipients (WhatsApp only).")
    replied: Mapped[int | None] = mapped_column(
        Integer,
        comment="Replies via buttons (once per recipient) or web links (every click) (WhatsApp only).",
    )
    pending: Mapped[int | None] = mapped_column(
        Integer, comment="Sent, still waiting for a delivery receipt (WhatsApp only)."
    )
    failed: Mapped[int | None] = mapped_column(Integer, comment="Messages that failed to send (WhatsApp only).")
    first_loaded_at: Mapped[datetime] = mapped_column(
        Timestamp,
        server_default=func.now(),
        comment="When the campaign first reached the warehouse.",
    )
    last_changed_at: Mapped[datetime] = mapped_column(
        Timestamp,
        server_default=func.now(),
        comment="When a value in this row last changed.",
    )
    last_dagster_run_id: Mapped[str | None] = mapped_column(Text, comment="Dagster run that last changed this row.")
    counters_changed_at: Mapped[datetime] = mapped_column(
        Timestamp,
        server_default=func.now(),
        comment="When CINNOX was last seen reporting different counters (the newest snapshot's observed_at).",
    )
    values_observed_at: Mapped[datetime] = mapped_column(
        Timestamp,
        server_default=func.now(),
        comment="When CINNOX was read for the values this row holds (the read behind its last write). A read "
        "older than this, from a long backfill that merges after a newer refresh, does not overwrite the row.",
    )
    settled_at: Mapped[datetime | None] = mapped_column(
        Timestamp,
        comment="When the counters were found settled: nothing pending, delivered + failed cover every "
        "recipient (where the channel reports failures), and no change for the quiet period or the campaign "
        "past the final age. NULL while they may still change; cleared if they change again.",
    )

    missing_at_source_since: Mapped[datetime | None] = mapped_column(
        Timestamp,
        comment="When a complete read of a window holding this campaign no longer returned it; NULL while "
        "CINNOX returns it. The row is kept, never deleted, and un-marked if the campaign comes back.",
    )
    version_hash: Mapped[bytes | None] = mapped_column(
        LargeBinary,
        comment="The cinnox_raw version (payload_hash) this row was last written from. A re-load of that "
        "same version skips the row; a new version with the same values leaves the row, and this, as they are. "
        "NULL for rows last written before revision 0014.",
    )


def date_key(day: date) -> int:
    """`dim_date.date_key` of a day: yyyymmdd."""
    return day.year * 10000 + day.month * 100 + day.day


def day_of_key(key: int) -> date:
    """The day of a `dim_date.date_key`."""
    return date(key // 10000, key // 100 % 100, key % 100)


def first_day(start: datetime) -> date:
    """The UTC day a window starting at `start` begins on."""
    return start.astimezone(UTC).date()


def last_day(end: datetime) -> date:
    """The UTC day a window ending (exclusive) at `end` ends on."""
    return (end - timedelta(microseconds=1)).astimezone(UTC).date()


def sent_between(rows: Any, start: datetime, end: datetime | None = None) -> ColumnElement[bool]:
    """Fact rows (of `rows`: the fact or a subquery of it) sent in [start, end), or since
    `start`. The range of day keys lets the `(app_key, sent_date_key)` index find them (a
    row's day key is its UTC send date's); the send times keep the bounds exact."""
    first = rows.c.sent_date_key >= date_key(first_day(start))
    if end is None:
        return and_(first, rows.c.sent_at >= start)
    last = rows.c.sent_date_key <= date_key(last_day(end))
    return and_(first, last, rows.c.sent_at >= start, rows.c.sent_at < end)


class FactSentCampaignSnapshot(Base):
    __tablename__ = "fact_sent_campaign_snapshot"
    __table_args__: Any = {
        "schema": STAR_SCHEMA,
        "comment": "Counter history: one row each time a campaign's counters were seen to change (the first "
        "sighting included), never on a refresh that saw no change. Carry a row forward until the next one "
        "to know the counters at any time after the send.",
    }

    # No foreign key (a trigger per row, revision 0011): the merge writes history from the fact
    # rows it has just written, and the dimension_keys_resolve check counts orphans.
    sent_campaign_key: Mapped[int] = mapped_column(
        BigInteger,
        primary_key=True,
        comment="The campaign (fact_sent_campaign).",
    )
    observed_at: Mapped[datetime] = mapped_column(
        Timestamp, primary_key=True, comment="When CINNOX returned these counters (page fetch time, UTC)."
    )
    sent_at: Mapped[datetime] = mapped_column(
        Timestamp,
        comment="When the campaign was sent, kept here so the history alone answers 'read within N hours of the send'.",
    )
    total_recipients: Mapped[int | None] = mapped_column(Integer, comment="Phone numbers the campaign was sent to.")
    delivered: Mapped[int | None] = mapped_column(Integer, comment="Messages delivered, as of observed_at.")
    read: Mapped[int | None] = mapped_column(Integer, comment="Messages read, as of observed_at (WhatsApp only).")
    replied: Mapped[int | None] = mapped_column(Integer, comment="Replies, as of observed_at (WhatsApp only).")
    pending: Mapped[int | None] = mapped_column(
        Integer, comment="Awaiting a delivery receipt, as of observed_at (WhatsApp only)."
    )
    failed: Mapped[int | None] = mapped_column(Integer, comment="Failed, as of observed_at (WhatsApp only).")
    dagster_run_id: Mapped[str | None] = mapped_column(Text, comment="Dagster run that observed the change.")


class CounterRegression(Base):
    __tablename__ = "counter_regression"
    __table_args__: Any = (
        Index(None, "app_key", "campaign_id"),
        {
            "schema": STAR_SCHEMA,
            "comment": "Counters that went backwards: CINNOX reported a smaller delivered, read, replied or "
            "failed than the warehouse held. The fact takes the new value; this table keeps the old one.",
        },
    )

    regression_id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True, comment="Surrogate key.")
    app_key: Mapped[int] = mapped_column(ForeignKey(DimApp.app_key), comment="The app of the campaign.")
    campaign_id: Mapped[str] = mapped_column(Text, comment="CINNOX campaign id.")
    counter: Mapped[str] = mapped_column(Text, comment="The fact column that went down: delivered, read, ...")
    previous_value: Mapped[int] = mapped_column(Integer, comment="The value the warehouse held before.")
    new_value: Mapped[int | None] = mapped_column(
        Integer, comment="The value CINNOX reported now (NULL: no longer reported)."
    )
    detected_at: Mapped[datetime] = mapped_column(
        Timestamp, server_default=func.now(), comment="When the load that saw the drop ran (UTC)."
    )
    dagster_run_id: Mapped[str | None] = mapped_column(Text, comment="Dagster run that saw the drop.")


class ApiRequestBudget(Base):
    __tablename__ = "api_request_budget"
    __table_args__: Any = {
        "schema": OPS_SCHEMA,
        "comment": "Pipeline bookkeeping, not campaign data: the CINNOX request budget of each app, a token "
        "bucket shared by every Dagster run and process (warehouse/budget.py). CINNOX rate-limits per app; "
        "each request first takes a token here, in one atomic statement.",
    }

    app_id: Mapped[str] = mapped_column(Text, primary_key=True, comment="CINNOX App ID the budget is for.")
    tokens: Mapped[float] = mapped_column(
        Double,
        comment="Requests that may start at refilled_at without waiting; negative when callers have reserved "
        "future slots (each waits -tokens / requests_per_second seconds).",
    )
    refilled_at: Mapped[datetime] = mapped_column(
        Timestamp, comment="Database clock when tokens was last brought up to date (UTC)."
    )
    requests_per_second: Mapped[float] = mapped_column(
        Double, comment="Refill rate the last caller configured (CINNOX_REQUESTS_PER_SECOND)."
    )


class LoadChunk(Base):
    __tablename__ = "load_chunk"
    __table_args__: Any = (
        Index(None, "app_id", "run_family", "requested_start", "requested_end"),
        {
            "schema": OPS_SCHEMA,
            "comment": "The ledger of committed chunks: one row per sub-window of a run that was read from CINNOX "
            "and merged, written in the chunk's own transaction. A retry of the same run (the same run_family) "
            "skips the chunks listed here; a new run reads everything again.",
        },
    )

    chunk_id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True, comment="Surrogate key.")
    app_id: Mapped[str] = mapped_column(Text, comment="CINNOX App ID read.")
    dagster_run_id: Mapped[str | None] = mapped_column(Text, comment="Dagster run that committed the chunk.")
    run_family: Mapped[str | None] = mapped_column(
        Text,
        comment="The first run of a run and its retries and re-executions (Dagster's root run id): the key "
        "a resumed run finds its committed chunks by.",
    )
    requested_start: Mapped[datetime] = mapped_column(Timestamp, comment="Start of the run's whole window (UTC).")
    requested_end: Mapped[datetime] = mapped_column(
        Timestamp, comment="End (exclusive) of the run's whole window, before the live edge cut it (UTC)."
    )
    window_start: Mapped[datetime] = mapped_column(Timestamp, comment="Start of this chunk's window (UTC).")
    window_end: Mapped[datetime] = mapped_column(Timestamp, comment="End (exclusive) of this chunk's window (UTC).")
    read_started_at: Mapped[datetime] = mapped_column(
        Timestamp, comment="Warehouse clock just before the accepted read's first request."
    )
    read_finished_at: Mapped[datetime] = mapped_column(
        Timestamp, comment="Warehouse clock when the accepted read's last page arrived."
    )
    committed_at: Mapped[datetime] = mapped_column(
        Timestamp, server_default=func.now(), comment="When the chunk's transaction committed."
    )
    records: Mapped[int] = mapped_column(Integer, comment="Records in the accepted read, rejects included.")
    api_total: Mapped[int | None] = mapped_column(Integer, comment="CINNOX's `total` for the chunk's window.")
    requests: Mapped[int] = mapped_column(
        Integer, comment="HTTP requests the chunk took, retries and re-reads included."
    )
    reads: Mapped[int] = mapped_column(Integer, comment="Reads of the window: more than 1 when paging drifted.")
    inserted: Mapped[int] = mapped_column(Integer, comment="Fact rows inserted.")
    updated: Mapped[int] = mapped_column(Integer, comment="Fact rows updated.")
    rejected: Mapped[int] = mapped_column(
        Integer, comment="Records rejected (kept in cinnox_raw.sent_campaign_reject)."
    )
    marked_missing: Mapped[int] = mapped_column(
        Integer, comment="Campaigns of the window the accepted read no longer returned, marked now."
    )
    window_completed_at: Mapped[datetime | None] = mapped_column(
        Timestamp,
        comment="When the run finished its whole window. A retry resumes only from chunks of a window not "
        "finished; a re-execution of a run that finished reads everything again.",
    )


def table_of(model: type[Base]) -> Table:
    """A model's Table, typed as one (SQLAlchemy types `__table__` as a plain FromClause)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table
