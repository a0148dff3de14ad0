"""Initial warehouse schema: the raw landing layer and the sent-campaign star.

Why: the first load needs somewhere to land CINNOX's records as returned (`cinnox_raw`, for
replay and audit, with rejects kept beside them) and the fact and dimensions analysts query
(`cinnox`). Channel rows are reference data, so they are inserted here rather than at load.

Downgrade deletes every table and all its data; it is refused unless `-x allow-data-loss=true`
or CINNOX_ALLOW_DATA_LOSS=true says the data may go.

Revision ID: 0001
Revises:
Create Date: 2026-11-30 21:17:15.290488
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from warehouse.migrate import refuse_data_loss

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


SCHEMAS = ("cinnox_raw", "cinnox")


def upgrade() -> None:
    for schema in SCHEMAS:
        op.execute(sa.schema.CreateSchema(schema))
    op.execute(
        "COMMENT ON SCHEMA cinnox_raw IS 'CINNOX records as the API returned them, and the rejects. "
        "For the pipeline and audits, not for readers.'"
    )
    op.execute(
        "COMMENT ON SCHEMA cinnox IS 'Star schema of CINNOX sent campaigns: fact_sent_campaign and its dimensions.'"
    )
    op.create_table(
        "dim_app",
        sa.Column(
            "app_key",
            sa.SmallInteger(),
            sa.Identity(always=False),
            nullable=False,
            comment="Surrogate key.",
        ),
        sa.Column("app_id", sa.Text(), nullable=False, comment="CINNOX App ID."),
        sa.PrimaryKeyConstraint("app_key", name=op.f("pk_dim_app")),
        sa.UniqueConstraint("app_id", name=op.f("uq_dim_app_app_id")),
        schema="cinnox",
        comment="CINNOX apps (service accounts) campaigns are read from.",
    )
    op.create_table(
        "dim_channel",
        sa.Column(
            "channel_key",
            sa.SmallInteger(),
            autoincrement=False,
            nullable=False,
            comment="Key.",
        ),
        sa.Column(
            "channel",
            sa.Text(),
            nullable=False,
            comment="Channel as CINNOX spells it: SMS or WhatsApp.",
        ),
        sa.PrimaryKeyConstraint("channel_key", name=op.f("pk_dim_channel")),
        sa.UniqueConstraint("channel", name=op.f("uq_dim_channel_channel")),
        schema="cinnox",
        comment="Channels a campaign can be sent through.",
    )
    op.create_table(
        "dim_date",
        sa.Column(
            "date_key",
            sa.Integer(),
            autoincrement=False,
            nullable=False,
            comment="yyyymmdd.",
        ),
        sa.Column("calendar_date", sa.Date(), nullable=False, comment="The UTC date."),
        sa.Column("year", sa.SmallInteger(), nullable=False, comment="Calendar year."),
        sa.Column(
            "quarter",
            sa.SmallInteger(),
            nullable=False,
            comment="Calendar quarter, 1-4.",
        ),
        sa.Column("month", sa.SmallInteger(), nullable=False, comment="Month number, 1-12."),
        sa.Column(
            "month_name",
            sa.Text(),
            nullable=False,
            comment="Month name in English, e.g. January.",
        ),
        sa.Column(
            "day_of_month",
            sa.SmallInteger(),
            nullable=False,
            comment="Day of the month, 1-31.",
        ),
        sa.Column(
            "iso_year",
            sa.SmallInteger(),
            nullable=False,
            comment="ISO 8601 week-numbering year.",
        ),
        sa.Column(
            "iso_week",
            sa.SmallInteger(),
            nullable=False,
            comment="ISO 8601 week of the year, 1-53.",
        ),
        sa.Column(
            "iso_day_of_week",
            sa.SmallInteger(),
            nullable=False,
            comment="ISO day of the week, 1 = Monday ... 7 = Sunday.",
        ),
        sa.Column(
            "day_name",
            sa.Text(),
            nullable=False,
            comment="Day name in English, e.g. Monday.",
        ),
        sa.Column(
            "is_weekend",
            sa.Boolean(),
            nullable=False,
            comment="True on Saturday and Sunday.",
        ),
        sa.PrimaryKeyConstraint("date_key", name=op.f("pk_dim_date")),
        sa.UniqueConstraint("calendar_date", name=op.f("uq_dim_date_calendar_date")),
        schema="cinnox",
        comment="Calendar of campaign send dates (UTC), one row a day.",
    )
    op.create_table(
        "sent_campaign_payload",
        sa.Column(
            "app_id",
            sa.Text(),
            nullable=False,
            comment="CINNOX App ID the record was read from.",
        ),
        sa.Column(
            "campaign_id",
            sa.Text(),
            nullable=False,
            comment="The record's `id` (the campaign id).",
        ),
        sa.Column(
            "payload_hash",
            sa.LargeBinary(),
            nullable=False,
            comment="SHA-256 of the payload's canonical jsonb text; identifies a version.",
        ),
        sa.Column(
            "payload",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=False,
            comment="The record exactly as returned, unknown fields included.",
        ),
        sa.Column(
            "extracted_at",
            postgresql.TIMESTAMP(timezone=True),
            nullable=False,
            comment="When this version was first fetched from CINNOX (UTC).",
        ),
        sa.Column(
            "dagster_run_id",
            sa.Text(),
            nullable=True,
            comment="Dagster run that first fetched this version.",
        ),
        sa.PrimaryKeyConstraint(
            "app_id",
            "campaign_id",
            "payload_hash",
            name=op.f("pk_sent_campaign_payload"),
        ),
        schema="cinnox_raw",
        comment="Every distinct version of every sent-campaign record CINNOX returned, as JSON. A new row only when a record's content changes, so re-runs write nothing; replaying the latest version per campaign rebuilds the star schema.",
    )
    op.create_table(
        "sent_campaign_reject",
        sa.Column(
            "reject_id",
            sa.BigInteger(),
            sa.Identity(always=False),
            nullable=False,
            comment="Surrogate key of the rejected record.",
        ),
        sa.Column(
            "app_id",
            sa.Text(),
            nullable=False,
            comment="CINNOX App ID the record was read from.",
        ),
        sa.Column(
            "campaign_id",
            sa.Text(),
            nullable=True,
            comment="The record's `id`, when it had a usable one.",
        ),
        sa.Column(
            "reasons",
            postgresql.ARRAY(sa.Text()),
            nullable=False,
            comment="Every reason the record could not be loaded.",
        ),
        sa.Column(
            "payload",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=True,
            comment="The record as returned, when jsonb can hold it.",
        ),
        sa.Column(
            "payload_text",
            sa.Text(),
            nullable=True,
            comment="The record as JSON text, only when jsonb cannot hold it (e.g. a \\u0000 in a string).",
        ),
        sa.Column(
            "payload_hash",
            sa.LargeBinary(),
            nullable=False,
            comment="SHA-256 of the record's JSON text.",
        ),
        sa.Column(
            "window_start",
            postgresql.TIMESTAMP(timezone=True),
            nullable=False,
            comment="Start of the requested window (inclusive).",
        ),
        sa.Column(
            "window_end",
            postgresql.TIMESTAMP(timezone=True),
            nullable=False,
            comment="End of the requested window (exclusive).",
        ),
        sa.Column(
            "rejected_at",
            postgresql.TIMESTAMP(timezone=True),
            nullable=False,
            comment="When the record was first fetched and rejected.",
        ),
        sa.Column(
            "dagster_run_id",
            sa.Text(),
            nullable=True,
            comment="Dagster run that first rejected the record.",
        ),
        sa.PrimaryKeyConstraint("reject_id", name=op.f("pk_sent_campaign_reject")),
        sa.UniqueConstraint(
            "app_id",
            "payload_hash",
            name=op.f("uq_sent_campaign_reject_app_id_payload_hash"),
        ),
        schema="cinnox_raw",
        comment="Records that failed validation, with every reason, kept so nothing is lost. One row per distinct record per app.",
    )
    op.create_table(
        "dim_sender",
        sa.Column(
            "sender_key",
            sa.Integer(),
            sa.Identity(always=False),
            nullable=False,
            comment="Surrogate key.",
        ),
        sa.Column(
            "app_key",
            sa.SmallInteger(),
            nullable=False,
            comment="The app the sender belongs to.",
        ),
        sa.Column(
            "channel_key",
            sa.SmallInteger(),
            nullable=False,
            comment="Channel sent through.",
        ),
        sa.Column(
            "phone",
            sa.Text(),
            nullable=True,
            comment="sender.phone: virtual or service number or alphanumeric Sender ID (SMS); WhatsApp number.",
        ),
        sa.Column(
            "whatsapp_channel_name",
            sa.Text(),
            nullable=True,
            comment="sender.channelName: WhatsApp channel name; NULL for SMS.",
        ),
        sa.Column(
            "template_source_name",
            sa.Text(),
            nullable=True,
            comment="sender.sourceName: source of the template used; NULL for SMS.",
        ),
        sa.Column(
            "sender_eid",
            sa.Text(),
            nullable=True,
            comment="sender.senderEID: unique ID of the staff who sent it; NULL for WhatsApp.",
        ),
        sa.ForeignKeyConstraint(["app_key"], ["cinnox.dim_app.app_key"], name=op.f("fk_dim_sender_app_key")),
        sa.ForeignKeyConstraint(
            ["channel_key"],
            ["cinnox.dim_channel.channel_key"],
            name=op.f("fk_dim_sender_channel_key"),
        ),
        sa.PrimaryKeyConstraint("sender_key", name=op.f("pk_dim_sender")),
        sa.UniqueConstraint(
            "app_key",
            "channel_key",
            "phone",
            "whatsapp_channel_name",
            "template_source_name",
            "sender_eid",
            name="uq_dim_sender_attributes",
            postgresql_nulls_not_distinct=True,
        ),
        schema="cinnox",
        comment="Senders: each distinct combination of the record's sender attributes, per app and channel. A renamed WhatsApp channel is a new row; old campaigns keep pointing at the old one.",
    )
    op.create_table(
        "dim_staff",
        sa.Column(
            "staff_key",
            sa.Integer(),
            sa.Identity(always=False),
            nullable=False,
            comment="Surrogate key.",
        ),
        sa.Column(
            "app_key",
            sa.SmallInteger(),
            nullable=False,
            comment="The app the staff belongs to.",
        ),
        sa.Column(
            "staff_name",
            sa.Text(),
            nullable=False,
            comment="Staff name as CINNOX reports it (createdBy).",
        ),
        sa.ForeignKeyConstraint(["app_key"], ["cinnox.dim_app.app_key"], name=op.f("fk_dim_staff_app_key")),
        sa.PrimaryKeyConstraint("staff_key", name=op.f("pk_dim_staff")),
        sa.UniqueConstraint("app_key", "staff_name", name=op.f("uq_dim_staff_app_key_staff_name")),
        schema="cinnox",
        comment="Staff who created campaigns (the record's createdBy), per app.",
    )
    op.create_table(
        "dim_template",
        sa.Column(
            "template_key",
            sa.Integer(),
            sa.Identity(always=False),
            nullable=False,
            comment="Surrogate key.",
        ),
        sa.Column(
            "app_key",
            sa.SmallInteger(),
            nullable=False,
            comment="The app the template belongs to.",
        ),
        sa.Column("subject", sa.Text(), nullable=False, comment="Template name (subject)."),
        sa.ForeignKeyConstraint(
            ["app_key"],
            ["cinnox.dim_app.app_key"],
            name=op.f("fk_dim_template_app_key"),
        ),
        sa.PrimaryKeyConstraint("template_key", name=op.f("pk_dim_template")),
        sa.UniqueConstraint("app_key", "subject", name=op.f("uq_dim_template_app_key_subject")),
        schema="cinnox",
        comment="WhatsApp message templates (the record's subject), per app.",
    )
    op.create_table(
        "fact_sent_campaign",
        sa.Column(
            "sent_campaign_key",
            sa.BigInteger(),
            sa.Identity(always=False),
            nullable=False,
            comment="Surrogate key.",
        ),
        sa.Column(
            "app_key",
            sa.SmallInteger(),
            nullable=False,
            comment="The app the campaign was sent from.",
        ),
        sa.Column(
            "campaign_id",
            sa.Text(),
            nullable=False,
            comment="CINNOX campaign id (historyID in the details API).",
        ),
        sa.Column(
            "sent_at",
            postgresql.TIMESTAMP(timezone=True),
            nullable=False,
            comment="When the campaign was sent.",
        ),
        sa.Column(
            "sent_date_key",
            sa.Integer(),
            nullable=False,
            comment="UTC send date (dim_date).",
        ),
        sa.Column(
            "channel_key",
            sa.SmallInteger(),
            nullable=False,
            comment="Channel sent through.",
        ),
        sa.Column(
            "sender_key",
            sa.Integer(),
            nullable=False,
            comment="Sender as it was at the send.",
        ),
        sa.Column(
            "staff_key",
            sa.Integer(),
            nullable=True,
            comment="Staff who created it; NULL when not reported.",
        ),
        sa.Column(
            "template_key",
            sa.Integer(),
            nullable=True,
            comment="Template used (WhatsApp); NULL for SMS.",
        ),
        sa.Column("campaign_name", sa.Text(), nullable=True, comment="Campaign name."),
        sa.Column(
            "total_recipients",
            sa.Integer(),
            nullable=True,
            comment="Phone numbers the campaign was sent to.",
        ),
        sa.Column(
            "delivered",
            sa.Integer(),
            nullable=True,
            comment="Messages delivered to recipients.",
        ),
        sa.Column(
            "read",
            sa.Integer(),
            nullable=True,
            comment="Messages read by recipients (WhatsApp only).",
        ),
        sa.Column(
            "replied",
            sa.Integer(),
            nullable=True,
            comment="Replies via buttons (once per recipient) or web links (every click) (WhatsApp only).",
        ),
        sa.Column(
            "pending",
            sa.Integer(),
            nullable=True,
            comment="Sent, still waiting for a delivery receipt (WhatsApp only).",
        ),
        sa.Column(
            "failed",
            sa.Integer(),
            nullable=True,
            comment="Messages that failed to send (WhatsApp only).",
        ),
        sa.Column(
            "first_loaded_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
            comment="When the campaign first reached the warehouse.",
        ),
        sa.Column(
            "last_changed_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
            comment="When a value in this row last changed.",
        ),
        sa.Column(
            "last_dagster_run_id",
            sa.Text(),
            nullable=True,
            comment="Dagster run that last changed this row.",
        ),
        sa.ForeignKeyConstraint(
            ["app_key"],
            ["cinnox.dim_app.app_key"],
            name=op.f("fk_fact_sent_campaign_app_key"),
        ),
        sa.ForeignKeyConstraint(
            ["channel_key"],
            ["cinnox.dim_channel.channel_key"],
            name=op.f("fk_fact_sent_campaign_channel_key"),
        ),
        sa.ForeignKeyConstraint(
            ["sender_key"],
            ["cinnox.dim_sender.sender_key"],
            name=op.f("fk_fact_sent_campaign_sender_key"),
        ),
        sa.ForeignKeyConstraint(
            ["sent_date_key"],
            ["cinnox.dim_date.date_key"],
            name=op.f("fk_fact_sent_campaign_sent_date_key"),
        ),
        sa.ForeignKeyConstraint(
            ["staff_key"],
            ["cinnox.dim_staff.staff_key"],
            name=op.f("fk_fact_sent_campaign_staff_key"),
        ),
        sa.ForeignKeyConstraint(
            ["template_key"],
            ["cinnox.dim_template.template_key"],
            name=op.f("fk_fact_sent_campaign_template_key"),
        ),
        sa.PrimaryKeyConstraint("sent_campaign_key", name=op.f("pk_fact_sent_campaign")),
        sa.UniqueConstraint(
            "app_key",
            "campaign_id",
            name=op.f("uq_fact_sent_campaign_app_key_campaign_id"),
        ),
        schema="cinnox",
        comment="One row per app and sent campaign with its latest counters. Counters keep changing for days after the send; NULL means the channel does not report that counter.",
    )
    op.create_index(
        op.f("ix_fact_sent_campaign_app_key_sent_at"),
        "fact_sent_campaign",
        ["app_key", "sent_at"],
        unique=False,
        schema="cinnox",
    )
    dim_channel = sa.table("dim_channel", sa.column("channel_key"), sa.column("channel"), schema="cinnox")
    op.bulk_insert(
        dim_channel,
        [
            {"channel_key": 1, "channel": "SMS"},
            {"channel_key": 2, "channel": "WhatsApp"},
        ],
    )


def downgrade() -> None:
    refuse_data_loss("0001", "every table of the warehouse, with all campaigns, raw payloads and rejects")
    op.drop_index(
        op.f("ix_fact_sent_campaign_app_key_sent_at"),
        table_name="fact_sent_campaign",
        schema="cinnox",
    )
    op.drop_table("fact_sent_campaign", schema="cinnox")
    op.drop_table("dim_template", schema="cinnox")
    op.drop_table("dim_staff", schema="cinnox")
    op.drop_table("dim_sender", schema="cinnox")
    op.drop_table("sent_campaign_reject", schema="cinnox_raw")
    op.drop_table("sent_campaign_payload", schema="cinnox_raw")
    op.drop_table("dim_date", schema="cinnox")
    op.drop_table("dim_channel", schema="cinnox")
    op.drop_table("dim_app", schema="cinnox")
    for schema in reversed(SCHEMAS):
        op.execute(sa.schema.DropSchema(schema))
