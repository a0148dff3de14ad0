"""The raw layer: every distinct payload version, the rejects, and the field paths seen."""

from __future__ import annotations

from sqlalchemy import (
    Connection,
    Text,
    exists,
    literal,
    not_,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP, distinct_on, insert

from cinnox import Window
from warehouse.load._sql import insert_missing
from warehouse.load.fact import written_from
from warehouse.load.result import LoadResult
from warehouse.load.stage import stage
from warehouse.models import (
    SentCampaignPayload,
    SentCampaignReject,
    SourceField,
    table_of,
)


def insert_raw_versions(
    conn: Connection, app_id: str, app_key: int, run_id: str | None, *, repeats: bool = True
) -> int:
    """The staged valid records' versions cinnox_raw lacks. `repeats`: a campaign may be staged
    more than once (prepare_stage says), so the same version may be too: keep its first read.

    Run before the fact merge: a version a fact row was written from (`version_hash`) is in raw
    already, and one hash join with the fact settles most of a re-load's records, where looking
    each up in raw's index was 1.8 s at 1M."""
    raw = table_of(SentCampaignPayload)
    hashed = (
        select(
            stage.c.campaign_id,
            stage.c.payload_hash,
            # json, as staged: the text stored is the text hashed (warehouse.normalize.version_json)
            stage.c.payload,
            stage.c.extracted_at,
            stage.c.seq,
        )
        .where(stage.c.reject_reasons.is_(None))
        .subquery("hashed")
    )
    versions = select(
        literal(app_id, Text),
        hashed.c.campaign_id,
        hashed.c.payload_hash,
        hashed.c.payload,
        hashed.c.extracted_at,
        literal(run_id, Text),
    ).where(
        not_(exists().where(written_from(app_key, hashed))),
        not_(
            exists().where(
                raw.c.app_id == app_id,
                raw.c.campaign_id == hashed.c.campaign_id,
                raw.c.payload_hash == hashed.c.payload_hash,
            )
        ),
    )
    if repeats:  # the sort is 0.1 s at 100k, and needless when every campaign is staged once
        versions = versions.ext(distinct_on(hashed.c.campaign_id, hashed.c.payload_hash)).order_by(
            hashed.c.campaign_id, hashed.c.payload_hash, hashed.c.seq
        )
    columns = [
        "app_id",
        "campaign_id",
        "payload_hash",
        "payload",
        "extracted_at",
        "dagster_run_id",
    ]
    # A plain INSERT, not ON CONFLICT DO NOTHING (speculative insertion, a third more per row):
    # the NOT EXISTS leaves out stored versions, and the app's merge lock keeps any other load
    # from adding one meanwhile.
    statement = insert(raw).from_select(columns, versions)
    return conn.execute(statement.execution_options(preserve_rowcount=True)).rowcount


def insert_rejects(conn: Connection, app_id: str, window: Window, run_id: str | None) -> int:
    rejects = table_of(SentCampaignReject)
    rows = (
        select(
            literal(app_id, Text),
            stage.c.campaign_id,
            stage.c.reject_reasons,
            stage.c.payload.cast(JSONB),
            stage.c.payload_text,
            stage.c.payload_hash,
            literal(window.start, TIMESTAMP(timezone=True)),
            literal(window.end, TIMESTAMP(timezone=True)),
            stage.c.extracted_at,
            literal(run_id, Text),
        )
        .ext(distinct_on(stage.c.payload_hash))
        .where(
            stage.c.reject_reasons.is_not(None),
            not_(
                exists().where(
                    rejects.c.app_id == app_id,
                    rejects.c.payload_hash == stage.c.payload_hash,
                )
            ),
        )
        .order_by(stage.c.payload_hash, stage.c.seq)
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
    return insert_missing(conn, rejects, columns, rows)


def record_fields(conn: Connection, app_id: str, fields: set[str], run_id: str | None, result: LoadResult) -> None:
    """Remember every field path seen; the unknown ones no load had seen before are news."""
    result.unknown_fields = sorted(fields - KNOWN_FIELDS)
    if not fields:
        return
    table = table_of(SourceField)
    rows = [
        {"app_id": app_id, "field_path": path, "known": path in KNOWN_FIELDS, "first_dagster_run_id": run_id}
        for path in sorted(fields)
    ]
    inserted: list[tuple[str, bool]] = []
    # In batches: one statement's bind parameters are limited (65,535), and a window whose
    # records carry tens of thousands of distinct field names must still load.
    for start in range(0, len(rows), _FIELDS_PER_STATEMENT):
        batch = rows[start : start + _FIELDS_PER_STATEMENT]
        statement = insert(table).values(batch).on_conflict_do_nothing().returning(table.c.field_path, table.c.known)
        inserted += [(path, known) for path, known in conn.execute(statement)]
    result.new_fields = sorted(path for path, known in inserted if not known)


_FIELDS_PER_STATEMENT = 1000  # 4 parameters a row


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
