"""The stage: a temporary table private to one load's transaction, filled by COPY."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from psycopg import sql
from sqlalchemy import (
    BigInteger,
    Boolean,
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

from cinnox import Page, Window, parse_send_time
from warehouse.load.result import LoadResult
from warehouse.normalize import MAX_FIELD_NAME_LENGTH, Rejection, StagedCampaign, is_storable_text, stage_record

# The stage is a temporary table private to the loading transaction: concurrent loads never
# see each other's rows, and it disappears at commit or rollback. Not part of the schema.
_stage_metadata = MetaData()
stage = Table(
    "stage_sent_campaign",
    _stage_metadata,
    Column("seq", BigInteger, nullable=False),
    # False for a record only an earlier read of the chunk returned: kept, but not "returned".
    Column("in_final_read", Boolean, nullable=False),
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
    conn: Connection, window: Window, pages: Iterable[Page], result: LoadResult, vanished: Iterable[Page] = ()
) -> set[str]:
    """COPY every record into the stage: the accepted read's `pages`, then the `vanished`
    records of earlier reads. Returns the field paths the records carried."""
    fields: set[str] = set()
    sender_fields: set[str] = set()
    columns = [c.name for c in stage.columns]
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(stage.name), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    raw = conn.connection.driver_connection
    assert raw is not None
    seq = 0
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        for final, source in ((True, pages), (False, vanished)):
            for page in source:
                for record in page.records:
                    seq += 1
                    if final:
                        result.records += 1
                    else:
                        result.vanished += 1
                    if isinstance(record, dict):
                        # Set updates in C, prefixed once at the end: a Python loop over every
                        # key of every record was a tenth of the per-record cost (pyinstrument).
                        fields.update(record)
                        sender = record.get("sender")
                        if isinstance(sender, dict):
                            sender_fields.update(sender)
                    staged = stage_record(record, window, page.fetched_at)
                    if isinstance(staged, Rejection):
                        if final:
                            result.rejected += 1
                            result.reject_reasons.update(staged.reasons)
                            day = _sent_day(record, window)
                            if day is not None:
                                figures = result.day(day)
                                figures.records += 1
                                figures.rejected += 1
                        copy.write_row(rejection_row(seq, final, staged))
                        continue
                    if final:
                        result.valid += 1
                        figures = result.day(staged.sent_date)
                        figures.records += 1
                        figures.valid += 1
                    copy.write_row(campaign_row(seq, final, staged))
    # Distinct names only, so the sets stay as small as the schema, whatever the volume.
    paths = {str(name) for name in fields} | {f"sender.{name}" for name in sender_fields}
    # A name PostgreSQL cannot store or key on belongs to a record rejected for it; the rest
    # of the load goes on without it.
    return {path for path in paths if len(path) <= MAX_FIELD_NAME_LENGTH + 7 and is_storable_text(path)}


def _sent_day(record: object, window: Window) -> date | None:
    """The UTC send date of a rejected record, when its `date` reads and lies in the window."""
    if not isinstance(record, dict):
        return None
    try:
        moment = parse_send_time(record.get("date"))
    except (ValueError, OverflowError, TypeError):  # whatever a hostile date does, it has no day
        return None
    return moment.date() if moment is not None and moment in window else None


def campaign_row(seq: int, final: bool, staged: StagedCampaign) -> tuple[object, ...]:
    c = staged.campaign
    s = c.sender
    return (
        seq,
        final,
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


def rejection_row(seq: int, final: bool, rejection: Rejection) -> tuple[object, ...]:
    return (
        seq,
        final,
        rejection.campaign_id,
        rejection.extracted_at,
        rejection.payload_json,
        rejection.payload_text,
        list(rejection.reasons),
        rejection.payload_hash,
        *([None] * 16),
    )
