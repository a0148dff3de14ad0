"""Counter history, type-2 senders, calendar columns, the analysts' marts and a read-only role.

Why: analysts need more than the latest counters. They ask how reads accumulate after a send
(a snapshot row per observed change), which sender name a campaign went out under (type-2
sender versions with validity dates), and they read through BI tools that should see one
documented layer (`cinnox_mart` views) with a role that can read and do nothing else. The
existing rows are carried over: each campaign's current counters become its first snapshot,
and each sender row becomes a version valid from its earliest campaign.

The reader role's name comes from CINNOX_READER_ROLE (default cinnox_reader). Roles belong to
the whole PostgreSQL cluster, not to one database: the upgrade creates it only if missing, and
the downgrade revokes what this database granted but leaves the role (other databases may
still grant it); drop it by hand with DROP ROLE when nothing uses it. An existing role is
used only if it cannot log in or write (a role such as `postgres` is refused); then nothing
here needs CREATEROLE.

Downgrade deletes data: the counter history (`fact_sent_campaign_snapshot`), settled marks
and sender validity dates. It is refused unless `-x allow-data-loss=true` or
CINNOX_ALLOW_DATA_LOSS=true says they may go.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 22:30:00
"""

import os
import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from warehouse.migrate import check_reader_role, refuse_data_loss

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_READER_ROLE = "cinnox_reader"
_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
READABLE_SCHEMAS = ("cinnox", "cinnox_mart")

# Rates: NULLIF turns a zero denominator into NULL instead of a division error, and a counter
# the channel does not report (NULL) gives a NULL rate. numeric keeps them exact for BI tools.


def _rates(value: str) -> str:
    """The four rates over `value.format(counter)`, e.g. "f.{}" or "sum(f.{})"."""
    delivered, total, read, replied, failed = (
        value.format(name) for name in ("delivered", "total_recipients", "read", "replied", "failed")
    )
    return f"""
    {delivered}::numeric / NULLIF({total}, 0) AS delivery_rate,
    {read}::numeric / NULLIF({delivered}, 0) AS read_rate,
    {replied}::numeric / NULLIF({delivered}, 0) AS reply_rate,
    {failed}::numeric / NULLIF({total}, 0) AS failure_rate"""


_RATE_COMMENTS = {
    "delivery_rate": "delivered / total_recipients; NULL when there are no recipients.",
    "read_rate": "read / delivered; NULL when nothing was delivered or the channel does not report reads (SMS).",
    "reply_rate": "replied / delivered; NULL when nothing was delivered or the channel does not report "
    "replies (SMS). Web-link replies count every click, so it can exceed 1.",
    "failure_rate": "failed / total_recipients; NULL when there are no recipients or the channel does not "
    "report failures (SMS).",
}
_COUNTER_COMMENTS = {
    "total_recipients": "Phone numbers the campaign was sent to.",
    "delivered": "Messages delivered.",
    "read": "Messages read (WhatsApp only; NULL for SMS).",
    "replied": "Replies via buttons (once per recipient) or web links (every click) (WhatsApp only).",
    "pending": "Sent, waiting for a delivery receipt (WhatsApp only).",
    "failed": "Messages that failed to send (WhatsApp only).",
}

SENT_CAMPAIGN = f"""
CREATE VIEW cinnox_mart.sent_campaign AS
SELECT
    f.sent_campaign_key,
    a.app_id,
    f.campaign_id,
    f.campaign_name,
    f.sent_at,
    d.calendar_date AS sent_date,
    d.iso_week_start AS sent_week,
    d.month_start AS sent_month,
    d.day_name AS sent_day_name,
    c.channel,
    s.phone AS sender_phone,
    s.whatsapp_channel_name,
    s.template_source_name,
    s.sender_eid,
    s.durable_sender_key,
    st.staff_name AS created_by,
    t.subject AS template,
    f.total_recipients,
    f.delivered,
    f.read,
    f.replied,
    f.pending,
    f.failed,{_rates("f.{}")},
    f.settled_at IS NOT NULL AS is_settled,
    f.settled_at,
    f.counters_changed_at,
    f.first_loaded_at
FROM cinnox.fact_sent_campaign f
JOIN cinnox.dim_app a ON a.app_key = f.app_key
JOIN cinnox.dim_date d ON d.date_key = f.sent_date_key
JOIN cinnox.dim_channel c ON c.channel_key = f.channel_key
JOIN cinnox.dim_sender s ON s.sender_key = f.sender_key
LEFT JOIN cinnox.dim_staff st ON st.staff_key = f.staff_key
LEFT JOIN cinnox.dim_template t ON t.template_key = f.template_key
"""
SENT_CAMPAIGN_COMMENTS = {
    "sent_campaign_key": "Key of the campaign in cinnox.fact_sent_campaign.",
    "app_id": "CINNOX App ID the campaign was sent from.",
    "campaign_id": "CINNOX campaign id.",
    "campaign_name": "Campaign name.",
    "sent_at": "When the campaign was sent (UTC).",
    "sent_date": "UTC send date.",
    "sent_week": "Monday of the ISO week of the send date.",
    "sent_month": "First day of the month of the send date.",
    "sent_day_name": "Weekday of the send date, e.g. Monday.",
    "channel": "SMS or WhatsApp.",
    "sender_phone": "Sender number or alphanumeric Sender ID (SMS); WhatsApp number.",
    "whatsapp_channel_name": "WhatsApp channel name when the campaign was sent; NULL for SMS.",
    "template_source_name": "Source of the template when the campaign was sent; NULL for SMS.",
    "sender_eid": "Unique ID of the staff who sent it (SMS); NULL for WhatsApp.",
    "durable_sender_key": "The sender across renames: equal for every version of one sender.",
    "created_by": "Staff who created the campaign.",
    "template": "WhatsApp template (subject); NULL for SMS.",
    **{name: f"{text} Latest value." for name, text in _COUNTER_COMMENTS.items()},
    **_RATE_COMMENTS,
    "is_settled": "True once the counters are final (see settled_at).",
    "settled_at": "When the counters were found settled; NULL while they may still change.",
    "counters_changed_at": "When CINNOX was last seen reporting different counters.",
    "first_loaded_at": "When the campaign first reached the warehouse.",
}

DAILY_CHANNEL_SUMMARY = f"""
CREATE VIEW cinnox_mart.daily_channel_summary AS
SELECT
    d.calendar_date AS sent_date,
    d.iso_week_start AS sent_week,
    d.month_start AS sent_month,
    a.app_id,
    c.channel,
    count(*) AS campaigns,
    count(*) FILTER (WHERE f.settled_at IS NOT NULL) AS settled_campaigns,
    sum(f.total_recipients) AS total_recipients,
    sum(f.delivered) AS delivered,
    sum(f.read) AS read,
    sum(f.replied) AS replied,
    sum(f.pending) AS pending,
    sum(f.failed) AS failed,{_rates("sum(f.{})")}
FROM cinnox.fact_sent_campaign f
JOIN cinnox.dim_app a ON a.app_key = f.app_key
JOIN cinnox.dim_date d ON d.date_key = f.sent_date_key
JOIN cinnox.dim_channel c ON c.channel_key = f.channel_key
GROUP BY d.calendar_date, d.iso_week_start, d.month_start, a.app_id, c.channel
"""
DAILY_CHANNEL_SUMMARY_COMMENTS = {
    "sent_date": "UTC send date.",
    "sent_week": "Monday of the ISO week of the send date.",
    "sent_month": "First day of the month of the send date.",
    "app_id": "CINNOX App ID.",
    "channel": "SMS or WhatsApp.",
    "campaigns": "Campaigns sent that day through the channel.",
    "settled_campaigns": "Of those, campaigns whose counters are final.",
    **{name: f"Sum over the day's campaigns: {text[0].lower()}{text[1:]}" for name, text in _COUNTER_COMMENTS.items()},
    **{name: f"Over the day's campaigns, the sums: {text}" for name, text in _RATE_COMMENTS.items()},
}

# Hours after the send that campaign_progression covers: up to the latest observation, and at
# least 30 days (or until now) so campaigns can be compared at the same age.
PROGRESSION_HORIZON = "30 days"
CAMPAIGN_PROGRESSION = f"""
CREATE VIEW cinnox_mart.campaign_progression AS
WITH observed AS (
    SELECT
        s.sent_campaign_key,
        s.observed_at,
        s.total_recipients,
        s.delivered,
        s.read,
        s.replied,
        s.pending,
        s.failed,
        lead(s.observed_at) OVER w AS next_observed_at,
        row_number() OVER w = 1 AS is_first
    FROM cinnox.fact_sent_campaign_snapshot s
    WINDOW w AS (PARTITION BY s.sent_campaign_key ORDER BY s.observed_at)
),
spans AS (
    -- Each snapshot holds from its observation until the next one: the hours after the send
    -- it covers. The first one also covers the hours before it, with unknown counters.
    SELECT
        o.*,
        f.app_key,
        f.campaign_id,
        f.channel_key,
        f.sent_at,
        CASE WHEN o.is_first THEN 0
             ELSE greatest(0, ceil(extract(epoch FROM o.observed_at - f.sent_at) / 3600))::int END AS first_hour,
        CASE WHEN o.next_observed_at IS NULL
             THEN floor(extract(epoch FROM greatest(o.observed_at,
                    least(now(), f.sent_at + interval '{PROGRESSION_HORIZON}')) - f.sent_at) / 3600)::int
             ELSE ceil(extract(epoch FROM o.next_observed_at - f.sent_at) / 3600)::int - 1 END AS last_hour
    FROM observed o
    JOIN cinnox.fact_sent_campaign f ON f.sent_campaign_key = o.sent_campaign_key
),
hours AS (
    -- Every whole hour any campaign reaches, as a relation of its own: a filter on the hour
    -- (hours_since_send = 24) is applied to this short list before the join, so a question
    -- about one age of every campaign does not generate every hour of every campaign.
    -- counters_changed_at is the newest snapshot: the horizon below without reading them all.
    SELECT h.hour
    FROM generate_series(0, (
        SELECT coalesce(max(floor(extract(epoch FROM greatest(f.counters_changed_at,
                   least(now(), f.sent_at + interval '{PROGRESSION_HORIZON}')) - f.sent_at) / 3600)), 0)::int
        FROM cinnox.fact_sent_campaign f
    )) AS h(hour)
),
hourly AS (
    SELECT sp.*, h.hour, sp.sent_at + h.hour * interval '1 hour' AS as_of
    FROM spans sp
    JOIN hours h ON h.hour BETWEEN sp.first_hour AND sp.last_hour
),
known AS (
    SELECT
        hourly.*,
        CASE WHEN hourly.as_of >= hourly.observed_at THEN hourly.observed_at END AS known_at
    FROM hourly
)
SELECT
    k.sent_campaign_key,
    a.app_id,
    k.campaign_id,
    c.channel,
    k.sent_at,
    k.hour AS hours_since_send,
    k.hour / 24 AS days_since_send,
    k.as_of,
    k.known_at AS observed_at,
    CASE WHEN k.known_at IS NOT NULL THEN k.total_recipients END AS total_recipients,
    CASE WHEN k.known_at IS NOT NULL THEN k.delivered END AS delivered,
    CASE WHEN k.known_at IS NOT NULL THEN k.read END AS read,
    CASE WHEN k.known_at IS NOT NULL THEN k.replied END AS replied,
    CASE WHEN k.known_at IS NOT NULL THEN k.pending END AS pending,
    CASE WHEN k.known_at IS NOT NULL THEN k.failed END AS failed,
    CASE WHEN k.known_at IS NOT NULL THEN k.delivered::numeric / NULLIF(k.total_recipients, 0) END AS delivery_rate,
    CASE WHEN k.known_at IS NOT NULL THEN k.read::numeric / NULLIF(k.delivered, 0) END AS read_rate,
    CASE WHEN k.known_at IS NOT NULL THEN k.replied::numeric / NULLIF(k.delivered, 0) END AS reply_rate,
    CASE WHEN k.known_at IS NOT NULL THEN k.failed::numeric / NULLIF(k.total_recipients, 0) END AS failure_rate
FROM known k
JOIN cinnox.dim_app a ON a.app_key = k.app_key
JOIN cinnox.dim_channel c ON c.channel_key = k.channel_key
"""
CAMPAIGN_PROGRESSION_COMMENTS = {
    "sent_campaign_key": "Key of the campaign in cinnox.fact_sent_campaign.",
    "app_id": "CINNOX App ID.",
    "campaign_id": "CINNOX campaign id.",
    "channel": "SMS or WhatsApp.",
    "sent_at": "When the campaign was sent (UTC).",
    "hours_since_send": "Whole hours after the send this row describes (0, 1, 2, ...).",
    "days_since_send": "hours_since_send / 24, rounded down; hours_since_send = days_since_send * 24 picks one "
    "row per day.",
    "as_of": "sent_at + hours_since_send: the moment this row describes.",
    "observed_at": "When CINNOX reported the counters shown (the latest change at or before as_of); NULL "
    "before the first observation.",
    **{
        name: f"{text[:-1]}, as of as_of; NULL before the first observation."
        for name, text in _COUNTER_COMMENTS.items()
    },
    **{name: f"{text[:-1]}, as of as_of." for name, text in _RATE_COMMENTS.items()},
}

VIEWS = {
    "sent_campaign": (
        SENT_CAMPAIGN,
        "One wide row per sent campaign: every descriptive attribute, the latest counters and rates.",
        SENT_CAMPAIGN_COMMENTS,
    ),
    "daily_channel_summary": (
        DAILY_CHANNEL_SUMMARY,
        "Per UTC send date, app and channel: campaigns, summed counters and rates.",
        DAILY_CHANNEL_SUMMARY_COMMENTS,
    ),
    "campaign_progression": (
        CAMPAIGN_PROGRESSION,
        "Per campaign and whole hour since the send: the counters and rates as they were then, carried "
        f"forward between observed changes; up to the latest observation and at least {PROGRESSION_HORIZON} "
        "(or now).",
        CAMPAIGN_PROGRESSION_COMMENTS,
    ),
}


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def reader_role() -> str:
    name = os.environ.get("CINNOX_READER_ROLE", DEFAULT_READER_ROLE)
    if not _ROLE_NAME.fullmatch(name):
        raise ValueError(f"CINNOX_READER_ROLE: {name!r} is not a plain lower-case PostgreSQL role name")
    return name


def upgrade() -> None:
    op.execute(sa.schema.CreateSchema("cinnox_mart"))
    op.execute(
        "COMMENT ON SCHEMA cinnox_mart IS 'Views for analysts and BI tools: one documented row per campaign, "
        "per day and channel, and per campaign and hour since the send.'"
    )

    # Calendar columns for weekly and monthly grouping.
    op.add_column(
        "dim_date",
        sa.Column("iso_week_start", sa.Date(), comment="Monday of the ISO week: group by it for weekly figures."),
        schema="cinnox",
    )
    op.add_column(
        "dim_date",
        sa.Column("month_start", sa.Date(), comment="First day of the month: group by it for monthly figures."),
        schema="cinnox",
    )
    op.execute(
        "UPDATE cinnox.dim_date SET iso_week_start = date_trunc('week', calendar_date)::date, "
        "month_start = date_trunc('month', calendar_date)::date"
    )
    op.alter_column("dim_date", "iso_week_start", nullable=False, schema="cinnox")
    op.alter_column("dim_date", "month_start", nullable=False, schema="cinnox")

    # Type-2 senders: the existing rows become versions valid from their first campaign.
    op.create_table_comment(
        "dim_sender",
        "Senders, type 2: one row per version of a sender's attributes, per app and channel. A sender is its "
        "phone and staff (senderEID); a renamed WhatsApp channel or a new template source is a new version, valid "
        "from its first send; campaigns point at the version they were sent with.",
        existing_comment="Senders: each distinct combination of the record's sender attributes, per app and "
        "channel. A renamed WhatsApp channel is a new row; old campaigns keep pointing at the old one.",
        schema="cinnox",
    )
    op.add_column(
        "dim_sender",
        sa.Column(
            "durable_sender_key",
            sa.Integer(),
            nullable=True,
            comment="The sender across all its versions: the sender_key of the version loaded first. Group by "
            "it to follow one sender through renames.",
        ),
        schema="cinnox",
    )
    op.add_column(
        "dim_sender",
        sa.Column(
            "valid_from",
            postgresql.TIMESTAMP(timezone=True),
            nullable=True,
            comment="Send time of the first campaign seen with this version (inclusive).",
        ),
        schema="cinnox",
    )
    op.add_column(
        "dim_sender",
        sa.Column(
            "valid_to",
            postgresql.TIMESTAMP(timezone=True),
            nullable=True,
            comment="When the next version took over (exclusive); NULL for the current version.",
        ),
        schema="cinnox",
    )
    op.add_column(
        "dim_sender",
        sa.Column(
            "is_current",
            sa.Boolean(),
            server_default="true",
            nullable=False,
            comment="True for the sender's newest version.",
        ),
        schema="cinnox",
    )
    op.execute(
        "UPDATE cinnox.dim_sender s SET valid_from = f.first_sent "
        "FROM (SELECT sender_key, min(sent_at) AS first_sent FROM cinnox.fact_sent_campaign GROUP BY sender_key) f "
        "WHERE f.sender_key = s.sender_key"
    )
    op.execute(
        """
        UPDATE cinnox.dim_sender s SET
            durable_sender_key = v.durable_sender_key,
            valid_to = v.valid_to,
            is_current = v.valid_to IS NULL
        FROM (
            SELECT sender_key,
                   first_value(sender_key) OVER w AS durable_sender_key,
                   lead(valid_from) OVER w AS valid_to
            FROM cinnox.dim_sender
            WINDOW w AS (PARTITION BY app_key, channel_key, phone, sender_eid
                         ORDER BY valid_from NULLS LAST, sender_key)
        ) v
        WHERE v.sender_key = s.sender_key
        """
    )

    # Counter history: every campaign's current counters become its first snapshot.
    op.add_column(
        "fact_sent_campaign",
        sa.Column(
            "counters_changed_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
            comment="When CINNOX was last seen reporting different counters (the newest snapshot's observed_at).",
        ),
        schema="cinnox",
    )
    op.add_column(
        "fact_sent_campaign",
        sa.Column(
            "settled_at",
            postgresql.TIMESTAMP(timezone=True),
            nullable=True,
            comment="When the counters were found settled: nothing pending, delivered + failed cover every "
            "recipient (where the channel reports failures), and no change for the quiet period or the campaign "
            "past the final age. NULL while they may still change; cleared if they change again.",
        ),
        schema="cinnox",
    )
    op.execute("UPDATE cinnox.fact_sent_campaign SET counters_changed_at = last_changed_at")
    op.create_table(
        "fact_sent_campaign_snapshot",
        sa.Column("sent_campaign_key", sa.BigInteger(), nullable=False, comment="The campaign (fact_sent_campaign)."),
        sa.Column(
            "observed_at",
            postgresql.TIMESTAMP(timezone=True),
            nullable=False,
            comment="When CINNOX returned these counters (page fetch time, UTC).",
        ),
        sa.Column(
            "sent_at",
            postgresql.TIMESTAMP(timezone=True),
            nullable=False,
            comment="When the campaign was sent, kept here so the history alone answers 'read within N hours of the "
            "send'.",
        ),
        sa.Column("total_recipients", sa.Integer(), nullable=True, comment="Phone numbers the campaign was sent to."),
        sa.Column("delivered", sa.Integer(), nullable=True, comment="Messages delivered, as of observed_at."),
        sa.Column("read", sa.Integer(), nullable=True, comment="Messages read, as of observed_at (WhatsApp only)."),
        sa.Column("replied", sa.Integer(), nullable=True, comment="Replies, as of observed_at (WhatsApp only)."),
        sa.Column(
            "pending",
            sa.Integer(),
            nullable=True,
            comment="Awaiting a delivery receipt, as of observed_at (WhatsApp only).",
        ),
        sa.Column("failed", sa.Integer(), nullable=True, comment="Failed, as of observed_at (WhatsApp only)."),
        sa.Column("dagster_run_id", sa.Text(), nullable=True, comment="Dagster run that observed the change."),
        sa.ForeignKeyConstraint(
            ["sent_campaign_key"],
            ["cinnox.fact_sent_campaign.sent_campaign_key"],
            name=op.f("fk_fact_sent_campaign_snapshot_sent_campaign_key"),
        ),
        sa.PrimaryKeyConstraint("sent_campaign_key", "observed_at", name=op.f("pk_fact_sent_campaign_snapshot")),
        schema="cinnox",
        comment="Counter history: one row each time a campaign's counters were seen to change (the first sighting "
        "included), never on a refresh that saw no change. Carry a row forward until the next one to know the "
        "counters at any time after the send.",
    )
    op.execute(
        "INSERT INTO cinnox.fact_sent_campaign_snapshot "
        "SELECT sent_campaign_key, counters_changed_at, sent_at, total_recipients, delivered, read, replied, pending, failed, "
        "last_dagster_run_id FROM cinnox.fact_sent_campaign"
    )

    for name, (definition, comment, columns) in VIEWS.items():
        op.execute(definition)
        op.execute(f"COMMENT ON VIEW cinnox_mart.{name} IS {_literal(comment)}")
        for column, text in columns.items():
            op.execute(f"COMMENT ON COLUMN cinnox_mart.{name}.{column} IS {_literal(text)}")

    # Two reference rows: too few changes for autovacuum ever to analyse the table, and
    # without statistics the planner misjudges every join of the marts through it.
    op.execute("ANALYZE cinnox.dim_channel")

    role = reader_role()
    # An existing role is used as it is, if it can only read (a login, a superuser or a writer
    # is refused): creating and commenting on a role need CREATEROLE, which the migrating user
    # then does not need.
    if not check_reader_role(op.get_bind(), role):
        op.execute(f"CREATE ROLE {role} NOLOGIN")
        op.execute(
            f"COMMENT ON ROLE {role} IS 'Read-only access to the CINNOX star (cinnox) and marts (cinnox_mart); "
            "grant it to people and BI logins.'"
        )
    for schema in READABLE_SCHEMAS:
        op.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
        op.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}")
        # Tables and views later migrations create here (as the migrating user) are readable too.
        op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES TO {role}")


def downgrade() -> None:
    refuse_data_loss(
        "0002",
        "the counter history (fact_sent_campaign_snapshot), settled marks, sender validity dates and the marts",
    )
    op.create_table_comment(
        "dim_sender",
        "Senders: each distinct combination of the record's sender attributes, per app and channel. A renamed "
        "WhatsApp channel is a new row; old campaigns keep pointing at the old one.",
        schema="cinnox",
    )
    role = reader_role()
    for schema in READABLE_SCHEMAS:
        op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} REVOKE SELECT ON TABLES FROM {role}")
        op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {role}")
        op.execute(f"REVOKE ALL ON SCHEMA {schema} FROM {role}")
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW cinnox_mart.{name}")
    op.execute(sa.schema.DropSchema("cinnox_mart"))
    op.drop_table("fact_sent_campaign_snapshot", schema="cinnox")
    op.drop_column("fact_sent_campaign", "settled_at", schema="cinnox")
    op.drop_column("fact_sent_campaign", "counters_changed_at", schema="cinnox")
    for column in ("is_current", "valid_to", "valid_from", "durable_sender_key"):
        op.drop_column("dim_sender", column, schema="cinnox")
    op.drop_column("dim_date", "month_start", schema="cinnox")
    op.drop_column("dim_date", "iso_week_start", schema="cinnox")
