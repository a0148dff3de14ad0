"""The ledger of committed chunks, in the pipeline's bookkeeping schema.

Why: a backfill or refresh is no longer one transaction over the whole range. Its window is cut
into chunks of at most CINNOX_CHUNK_RECORDS records, each read and merged in a short transaction
of its own; the ledger row commits with the chunk. A retry of the same run (Dagster's step retry,
a run retry after a dead worker, a re-execution from failure: one root run id) skips what the
ledger lists, so a failure late in a year's backfill costs at most the chunk it hit. The
reconciliation check reads the run's figures from here too. `cinnox_ops` (revision 0007) is
pipeline bookkeeping, not analytics: the reader role gets no grant on it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = postgresql.TIMESTAMP(timezone=True)


def upgrade() -> None:
    op.create_table(
        "load_chunk",
        sa.Column("chunk_id", sa.BigInteger(), sa.Identity(always=False), nullable=False, comment="Surrogate key."),
        sa.Column("app_id", sa.Text(), nullable=False, comment="CINNOX App ID read."),
        sa.Column("dagster_run_id", sa.Text(), nullable=True, comment="Dagster run that committed the chunk."),
        sa.Column(
            "run_family",
            sa.Text(),
            nullable=True,
            comment="The first run of a run and its retries and re-executions (Dagster's root run id): the key "
            "a resumed run finds its committed chunks by.",
        ),
        sa.Column("requested_start", _TS, nullable=False, comment="Start of the run's whole window (UTC)."),
        sa.Column(
            "requested_end",
            _TS,
            nullable=False,
            comment="End (exclusive) of the run's whole window, before the live edge cut it (UTC).",
        ),
        sa.Column("window_start", _TS, nullable=False, comment="Start of this chunk's window (UTC)."),
        sa.Column("window_end", _TS, nullable=False, comment="End (exclusive) of this chunk's window (UTC)."),
        sa.Column(
            "read_started_at",
            _TS,
            nullable=False,
            comment="Warehouse clock just before the accepted read's first request.",
        ),
        sa.Column(
            "read_finished_at",
            _TS,
            nullable=False,
            comment="Warehouse clock when the accepted read's last page arrived.",
        ),
        sa.Column(
            "committed_at",
            _TS,
            server_default=sa.text("now()"),
            nullable=False,
            comment="When the chunk's transaction committed.",
        ),
        sa.Column("records", sa.Integer(), nullable=False, comment="Records in the accepted read, rejects included."),
        sa.Column("api_total", sa.Integer(), nullable=True, comment="CINNOX's `total` for the chunk's window."),
        sa.Column(
            "requests",
            sa.Integer(),
            nullable=False,
            comment="HTTP requests the chunk took, retries and re-reads included.",
        ),
        sa.Column(
            "reads", sa.Integer(), nullable=False, comment="Reads of the window: more than 1 when paging drifted."
        ),
        sa.Column("inserted", sa.Integer(), nullable=False, comment="Fact rows inserted."),
        sa.Column("updated", sa.Integer(), nullable=False, comment="Fact rows updated."),
        sa.Column(
            "rejected",
            sa.Integer(),
            nullable=False,
            comment="Records rejected (kept in cinnox_raw.sent_campaign_reject).",
        ),
        sa.Column(
            "marked_missing",
            sa.Integer(),
            nullable=False,
            comment="Campaigns of the window the accepted read no longer returned, marked now.",
        ),
        sa.Column(
            "window_completed_at",
            _TS,
            nullable=True,
            comment="When the run finished its whole window. A retry resumes only from chunks of a window not "
            "finished; a re-execution of a run that finished reads everything again.",
        ),
        sa.PrimaryKeyConstraint("chunk_id", name=op.f("pk_load_chunk")),
        schema="cinnox_ops",
        comment="The ledger of committed chunks: one row per sub-window of a run that was read from CINNOX "
        "and merged, written in the chunk's own transaction. A retry of the same run (the same run_family) "
        "skips the chunks listed here; a new run reads everything again.",
    )
    op.create_index(
        op.f("ix_load_chunk_app_id_run_family_requested_start_requested_end"),
        "load_chunk",
        ["app_id", "run_family", "requested_start", "requested_end"],
        unique=False,
        schema="cinnox_ops",
    )


def downgrade() -> None:
    """Drops the ledger: later retries of runs that committed chunks read those chunks again."""
    op.drop_index(
        op.f("ix_load_chunk_app_id_run_family_requested_start_requested_end"),
        table_name="load_chunk",
        schema="cinnox_ops",
    )
    op.drop_table("load_chunk", schema="cinnox_ops")
