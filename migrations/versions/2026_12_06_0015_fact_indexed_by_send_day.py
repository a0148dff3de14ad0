"""The fact's window index keys on the send day, not the send time.

Why: the loader finds an app's campaigns of a window through this index, and every new fact
row adds an entry to it. Keyed on `sent_at`, those entries land anywhere in the index (send
times need not follow the order CINNOX lists campaigns in), and inserting them was about 2 s of
a 1M-campaign first load on the benchmark machine. Keyed on `sent_date_key` (one value per
UTC day), the entries of a day sit together, deduplicated, and new ones join the end of their
day: 1 s less, and an index a quarter the size. A query for a range of send times names the
day keys of its range as well (`warehouse.models.sent_between`) and filters the days' rows on
`sent_at`.

Downgrade restores the `(app_key, sent_at)` index.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 18:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_fact_sent_campaign_app_key_sent_date_key",
        "fact_sent_campaign",
        ["app_key", "sent_date_key"],
        schema="cinnox",
    )
    op.drop_index("ix_fact_sent_campaign_app_key_sent_at", "fact_sent_campaign", schema="cinnox")


def downgrade() -> None:
    op.create_index(
        "ix_fact_sent_campaign_app_key_sent_at", "fact_sent_campaign", ["app_key", "sent_at"], schema="cinnox"
    )
    op.drop_index("ix_fact_sent_campaign_app_key_sent_date_key", "fact_sent_campaign", schema="cinnox")
