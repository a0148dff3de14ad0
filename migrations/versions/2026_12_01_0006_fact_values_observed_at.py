"""When CINNOX was read for the values each fact row holds.

Why: a year's backfill and the hourly refresh of the same app now run side by side (issue 7),
and the backfill, reading for an hour, merges after refreshes that read the same campaigns more
recently. The load compares each staged record's read time with this column and skips the older
one, so newer counters, names and settled flags are never overwritten by stale ones, no false
counter regression is recorded, and campaigns first seen during the backfill's read are not
marked missing. Existing rows take the newest read time they record already.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 01:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "fact_sent_campaign",
        sa.Column(
            "values_observed_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=True,
            comment="When CINNOX was read for the values this row holds (the read behind its last write). A read older than this, from a long backfill that merges after a newer refresh, does not overwrite the row.",
        ),
        schema="cinnox",
    )
    fact = sa.table(
        "fact_sent_campaign",
        sa.column("values_observed_at"),
        sa.column("counters_changed_at"),
        sa.column("settled_at"),
        schema="cinnox",
    )
    # settled_at is a read time too, and the later of the two when set.
    op.execute(
        fact.update().values(
            values_observed_at=sa.func.greatest(fact.c.counters_changed_at, fact.c.settled_at),
        )
    )
    op.alter_column("fact_sent_campaign", "values_observed_at", nullable=False, schema="cinnox")


def downgrade() -> None:
    op.drop_column("fact_sent_campaign", "values_observed_at", schema="cinnox")
