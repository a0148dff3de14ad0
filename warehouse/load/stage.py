"""The stage: a temporary table private to one load's transaction, filled by COPY."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime

from psycopg import Copy, sql
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
    false,
    func,
    select,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY, JSON, TIMESTAMP

from cinnox import Channel, Page, Window, parse_send_time
from warehouse.load.result import LoadResult
from warehouse.normalize import (
    MAX_FIELD_NAME_LENGTH,
    Rejection,
    StagedCampaign,
    is_storable_text,
    stage_record,
    well_formed_record,
    well_formed_version,
)

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
    # The record's JSON as json, not jsonb: parsing 1M payloads into jsonb was a third of the
    # server's time in a no-op re-load, where no version is written (docs/benchmarks.md). json
    # only validates the text, here during the COPY, while Python prepares the next rows, and
    # not in the raw insert after it (0.6 s of a 1M first load's critical path).
    Column("payload", JSON),
    Column("payload_text", Text),
    Column("reject_reasons", ARRAY(Text)),  # NULL for a valid record
    # What the record is kept under: its version's hash in cinnox_raw if valid, else its
    # reject's hash in the rejects.
    Column("payload_hash", LargeBinary, nullable=False),
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
    # True for a valid record the same unit read again later (pages shifting under us): the
    # last read wins, and a single INSERT must not touch one key twice.
    Column("superseded", Boolean, nullable=False, server_default=false()),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)
# COPY fills every column but `superseded`, which prepare_stage sets.
_COPIED_COLUMNS = [c for c in stage.columns if c.name != "superseded"]
_COPY_STATEMENT = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
    sql.Identifier(stage.name), sql.SQL(", ").join(sql.Identifier(c.name) for c in _COPIED_COLUMNS)
)
# json's binary form is its text: psycopg's text dumper writes the payload string as it is,
# where its json dumper would serialise the string once more.
_COPY_TYPES = [
    "text"
    if isinstance(c.type, JSON)
    else str(c.type.compile(dialect=postgresql.dialect())).lower().replace("timestamp with time zone", "timestamptz")  # type: ignore[no-untyped-call]
    for c in _COPIED_COLUMNS
]
# Not the payload columns: sampling them was most of ANALYZE's second per 100k rows, and no
# plan filters or joins on it.
_ANALYZED_COLUMNS = ", ".join(c.name for c in stage.columns if c.name not in ("payload", "payload_text"))
# The merges sort and hash the stage several times; at the default 4 MB those sorts spilled
# to disk at 100k records (EXPLAIN ANALYZE, docs/benchmarks.md). Local to the transaction.
MERGE_WORK_MEM = "64MB"


def prepare_stage(conn: Connection, *, campaigns_distinct: bool = False) -> int:
    """After the COPY, before any merge: mark superseded reads, and give the planner statistics
    (a temp table has none until analysed, and the merges' join plans need them). Returns how
    many valid records a later read of the same campaign superseded.

    `campaigns_distinct`: the caller knows no valid campaign was staged twice (`StagedRecords`),
    so there is nothing to mark and the stage's sort by campaign id is saved (0.5 s at 1M)."""
    tune_merge_transaction(conn)
    superseded = 0 if campaigns_distinct else _mark_superseded(conn)
    # A tenth of the default sample (3,000 rows): the plans need row counts and distinct
    # counts, not fine histograms, and the full sample was 0.3 s of a 100k load.
    conn.execute(select(func.set_config("default_statistics_target", "10", True)))
    conn.execute(text(f"ANALYZE {stage.name} ({_ANALYZED_COLUMNS})"))
    conn.execute(text("RESET default_statistics_target"))
    return superseded


def tune_merge_transaction(conn: Connection) -> None:
    """The planner settings of a merge, for the rest of the caller's transaction."""
    conn.execute(select(func.set_config("work_mem", MERGE_WORK_MEM, True)))
    # No JIT compilation: a first load's merge statement is priced past PostgreSQL's thresholds
    # for optimising and inlining, and compiling it took 1.25 s at 1M, more than the compiled
    # code saved (merge 8.9-9.2 s without JIT, 9.9-10.0 s with it; bench.statements).
    conn.execute(select(func.set_config("jit", "off", True)))
    # Every join of a merge is the stage against a dimension or the fact's unique key: a hash
    # join or an index lookup. The planner priced sorting the stage by the sender's identity
    # (its attributes as one value) far too cheap: a merge join sorted 100k of them (0.3 s of
    # a 100k load).
    conn.execute(select(func.set_config("enable_mergejoin", "off", True)))


def _mark_superseded(conn: Connection) -> int:
    """Mark every valid read of a campaign but its last; how many were marked."""
    valid = stage.c.reject_reasons.is_(None)
    repeated = (
        select(stage.c.campaign_id, func.max(stage.c.seq).label("kept"))
        .where(valid)
        .group_by(stage.c.campaign_id)
        .having(func.count() > 1)
        .subquery("repeated")
    )
    return conn.execute(
        stage.update()
        .values(superseded=True)
        .where(valid, stage.c.campaign_id == repeated.c.campaign_id, stage.c.seq != repeated.c.kept)
        .execution_options(preserve_rowcount=True)
    ).rowcount


@dataclass(frozen=True, slots=True)
class StagedRecords:
    """What the COPY saw besides the rows: the field paths the records carried, and whether the
    valid records' campaign ids rose strictly from one to the next, which proves that no
    campaign was staged twice. The simulator's pages list them so; the CINNOX doc names no
    order, and any other order takes the sort that finds repeated reads."""

    fields: set[str]
    campaigns_distinct: bool


def copy_into_stage(
    conn: Connection, window: Window, pages: Iterable[Page], result: LoadResult, vanished: Iterable[Page] = ()
) -> StagedRecords:
    """COPY every record into the stage: the accepted read's `pages`, then the `vanished`
    records of earlier reads."""
    fields: set[str] = set()
    sender_fields: set[str] = set()
    valid_per_day: Counter[date] = Counter()
    seq = 0
    # One comparison a record: ids in strictly rising order cannot repeat, so the stage's sort
    # for repeated reads is needed only when they do not rise.
    last_id = ""
    ascending = True
    with stage_copy(conn) as copy:
        write = copy.write_row
        for final, source in ((True, pages), (False, vanished)):
            for page in source:
                fetched_at = page.fetched_at
                for record in page.records:
                    seq += 1
                    if isinstance(record, dict):
                        # Set updates in C, prefixed once at the end: a Python loop over every
                        # key of every record was a tenth of the per-record cost (pyinstrument).
                        fields.update(record)
                        sender = record.get("sender")
                        if isinstance(sender, dict):
                            sender_fields.update(sender)
                    row, rejection = stage_row(seq, final, record, window, fetched_at)
                    write(row)
                    if rejection is None:
                        campaign_id: str = row[2]  # type: ignore[assignment]  # valid: a non-empty str
                        ascending = ascending and campaign_id > last_id
                        last_id = campaign_id
                    if not final:
                        continue
                    if rejection is None:
                        valid_per_day[row[9]] += 1  # type: ignore[index]
                        continue
                    result.rejected += 1
                    result.reject_reasons.update(rejection.reasons)
                    day = _sent_day(record, window)
                    if day is not None:
                        figures = result.day(day)
                        figures.records += 1
                        figures.rejected += 1
                if final:
                    result.records += len(page.records)
                else:
                    result.vanished += len(page.records)
    for day, count in valid_per_day.items():
        figures = result.day(day)
        figures.records += count
        figures.valid += count
        result.valid += count
    # Distinct names only, so the sets stay as small as the schema, whatever the volume.
    paths = {str(name) for name in fields} | {f"sender.{name}" for name in sender_fields}
    # A name PostgreSQL cannot store or key on belongs to a record rejected for it; the rest
    # of the load goes on without it.
    storable = {path for path in paths if len(path) <= MAX_FIELD_NAME_LENGTH + 7 and is_storable_text(path)}
    return StagedRecords(storable, ascending)


# A dict lookup, not the enum's `.value` property: 0.02 against 0.2 us a record.
_CHANNEL_TEXT = {channel: channel.value for channel in Channel}


def stage_row(
    seq: int, final: bool, record: object, window: Window, extracted_at: datetime
) -> tuple[tuple[object, ...], Rejection | None]:
    """One record's stage row (column 9 is a valid record's send date), and its rejection if
    it is one. Well-formed records take `well_formed_record`'s path: no object per record."""
    fast = well_formed_record(record, window)
    if fast is not None:
        payload, payload_hash, values = fast
        sent_at = values[1]
        # campaign_row's columns, from the values as they are; built here, not by a helper
        # (a call is 2-3% of this path, the load's per record).
        return (seq, final, values[0], extracted_at, payload, None, None, payload_hash, sent_at, sent_at.date(),
                _CHANNEL_TEXT[values[2]], *values[3:]), None  # fmt: skip
    staged = stage_record(record, window, extracted_at)
    if isinstance(staged, Rejection):
        return rejection_row(seq, final, staged), staged
    return campaign_row(seq, final, staged), None


def stored_version_row(
    seq: int,
    record: object,
    stored: bytes,
    stored_hash: bytes,
    campaign_id: str | None,
    window: Window,
    extracted_at: datetime,
) -> tuple[tuple[object, ...], Rejection | None]:
    """`stage_row` for a version cinnox_raw keeps as `stored` (its JSON text) under `stored_hash`,
    read by a rebuild. A record that passes the fast path's checks keeps that text and hash as
    they are, neither encoded nor hashed again, and is staged without its JSON where today's
    rules read the id raw keeps it under: raw holds it, so no insert reads it from the stage.
    Any other record takes `stage_row`'s path."""
    if type(record) is dict:
        values = well_formed_version(record, stored, window)
        if values is not None:
            sent_at = values[1]
            payload = None if values[0] == campaign_id else stored.decode()
            # stage_row's fast-path row, with the stored hash.
            return (seq, True, values[0], extracted_at, payload, None, None, stored_hash, sent_at, sent_at.date(),
                    _CHANNEL_TEXT[values[2]], *values[3:]), None  # fmt: skip
    return stage_row(seq, True, record, window, extracted_at)


@contextmanager
def stage_copy(conn: Connection) -> Iterator[Copy]:
    """A binary COPY into the stage, rows in `campaign_row`'s column order.

    Binary, with the column types given: psycopg's C dumpers write a row in a third of the
    time of the text format's (3 µs against 8 µs for these 24 columns)."""
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor, cursor.copy(_COPY_STATEMENT) as copy:
        copy.set_types(_COPY_TYPES)
        yield copy


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
        staged.payload_hash,
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
