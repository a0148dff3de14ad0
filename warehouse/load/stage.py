"""The stage: a temporary table private to one load's transaction, filled by COPY."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from psycopg import sql
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Date,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TIMESTAMP

from cinnox import Page, Window
from warehouse.load.result import LoadResult
from warehouse.normalize import MAX_FIELD_NAME_LENGTH, Rejection, StagedCampaign, is_storable_text, stage_record

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
ANALYZED_STAGE_COLUMNS = tuple(c.name for c in stage.columns if c.name not in ("payload", "payload_text"))


def copy_into_stage(
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
    # A name PostgreSQL cannot store or key on belongs to a record rejected for it; the rest
    # of the load goes on without it.
    paths = {path for path in paths if len(path) <= MAX_FIELD_NAME_LENGTH + 7 and is_storable_text(path)}
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
