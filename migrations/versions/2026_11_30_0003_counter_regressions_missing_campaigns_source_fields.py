"""Counter regressions, campaigns missing at the source, and the record fields seen so far.

Why: nothing may be lost silently (issue 4). A counter that goes backwards is loaded as CINNOX
says, so the old value needs a place (`cinnox.counter_regression`); a campaign CINNOX stops
returning is kept but marked (`fact_sent_campaign.missing_at_source_since`), not deleted; and
new fields in CINNOX's records are noticed once, when first seen (`cinnox_raw.source_field`).

Downgrade deletes data: every counter regression, the missing-at-source marks and the field
paths seen. It is refused unless `-x allow-data-loss=true` or CINNOX_ALLOW_DATA_LOSS=true says
they may go.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 22:10:57.464889
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from warehouse.migrate import refuse_data_loss

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "source_field",
        sa.Column("app_id", sa.Text(), nullable=False, comment="CINNOX App ID the record was read from."),
        sa.Column(
            "field_path",
            sa.Text(),
            nullable=False,
            comment="Dotted path of the field in the record, e.g. sender.phone.",
        ),
        sa.Column(
            "known",
            sa.Boolean(),
            nullable=False,
            comment="True when the pipeline parses the field; False for a field kept only in raw JSON.",
        ),
        sa.Column(
            "first_seen_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
            comment="When a load first saw the field (UTC).",
        ),
        sa.Column("first_dagster_run_id", sa.Text(), nullable=True, comment="Dagster run that first saw the field."),
        sa.PrimaryKeyConstraint("app_id", "field_path", name=op.f("pk_source_field")),
        schema="cinnox_raw",
        comment="Every field path CINNOX has sent in a sent-campaign record, per app, and when it was first seen. A path the parser does not know is schema drift: its values stay in the raw JSON, and the run that first saw it reports it in its Dagster metadata.",
    )
    op.create_table(
        "counter_regression",
        sa.Column(
            "regression_id", sa.BigInteger(), sa.Identity(always=False), nullable=False, comment="Surrogate key."
        ),
        sa.Column("app_key", sa.SmallInteger(), nullable=False, comment="The app of the campaign."),
        sa.Column("campaign_id", sa.Text(), nullable=False, comment="CINNOX campaign id."),
        sa.Column("counter", sa.Text(), nullable=False, comment="The fact column that went down: delivered, read, ..."),
        sa.Column("previous_value", sa.Integer(), nullable=False, comment="The value the warehouse held before."),
        sa.Column(
            "new_value",
            sa.Integer(),
            nullable=True,
            comment="The value CINNOX reported now (NULL: no longer reported).",
        ),
        sa.Column(
            "detected_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
            comment="When the load that saw the drop ran (UTC).",
        ),
        sa.Column("dagster_run_id", sa.Text(), nullable=True, comment="Dagster run that saw the drop."),
        sa.ForeignKeyConstraint(["app_key"], ["cinnox.dim_app.app_key"], name=op.f("fk_counter_regression_app_key")),
        sa.PrimaryKeyConstraint("regression_id", name=op.f("pk_counter_regression")),
        schema="cinnox",
        comment="Counters that went backwards: CINNOX reported a smaller delivered, read, replied or failed than the warehouse held. The fact takes the new value; this table keeps the old one.",
    )
    op.create_index(
        op.f("ix_counter_regression_app_key_campaign_id"),
        "counter_regression",
        ["app_key", "campaign_id"],
        unique=False,
        schema="cinnox",
    )
    op.add_column(
        "fact_sent_campaign",
        sa.Column(
            "missing_at_source_since",
            postgresql.TIMESTAMP(timezone=True),
            nullable=True,
            comment="When a complete read of a window holding this campaign no longer returned it; NULL while CINNOX returns it. The row is kept, never deleted, and un-marked if the campaign comes back.",
        ),
        schema="cinnox",
    )


def downgrade() -> None:
    refuse_data_loss("0003", "the counter regressions, missing-at-source marks and source field paths")
    op.drop_column("fact_sent_campaign", "missing_at_source_since", schema="cinnox")
    op.drop_index(op.f("ix_counter_regression_app_key_campaign_id"), table_name="counter_regression", schema="cinnox")
    op.drop_table("counter_regression", schema="cinnox")
    op.drop_table("source_field", schema="cinnox_raw")
