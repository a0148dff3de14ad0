"""The fact's six foreign keys to its dimensions dropped: a load no longer runs six triggers per row.

Why: PostgreSQL enforces a foreign key with a trigger per inserted or updated row; on the fact
those six triggers (app, date, channel, sender, staff, template) were two thirds of the fact
merge of a first load. The merge already resolves every key by inner joins to the dimensions
in the same transaction, dimension rows are never deleted while a fact row uses them, and the
`dimension_keys_resolve` asset check verifies after every run that each key finds its row (of
the same app, and for senders the same channel), which the foreign keys did not. What goes is
the join hint BI tools read from foreign keys; docs/warehouse.md lists the joins. The counter
history's foreign key to the fact stays.

Downgrade adds them back (and fails, naming the key, if a fact row no longer resolves).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 07:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FOREIGN_KEYS = (
    ("app_key", "dim_app", "app_key"),
    ("sent_date_key", "dim_date", "date_key"),
    ("channel_key", "dim_channel", "channel_key"),
    ("sender_key", "dim_sender", "sender_key"),
    ("staff_key", "dim_staff", "staff_key"),
    ("template_key", "dim_template", "template_key"),
)


def upgrade() -> None:
    for column, _, _ in _FOREIGN_KEYS:
        op.drop_constraint(
            op.f(f"fk_fact_sent_campaign_{column}"), "fact_sent_campaign", schema="cinnox", type_="foreignkey"
        )


def downgrade() -> None:
    for column, table, key in _FOREIGN_KEYS:
        op.create_foreign_key(
            op.f(f"fk_fact_sent_campaign_{column}"),
            "fact_sent_campaign",
            table,
            [column],
            [key],
            source_schema="cinnox",
            referent_schema="cinnox",
        )
