"""The counter history's foreign key to the fact dropped: a load no longer runs a trigger per history row.

Why: a first load writes a history row for every campaign, and PostgreSQL checks a foreign key
with a trigger per row: 0.38 s of a 100k first load's 4.5 s (EXPLAIN ANALYZE, docs/benchmarks.md),
after revision 0010 had dropped the fact's own six. The merge writes the history from the fact
rows it has just written (their RETURNING), in the same statement, so a history row cannot
point at a campaign that is not there; fact rows are deleted only by the rebuild, which deletes
their history first; and the `dimension_keys_resolve` check counts any history row whose
campaign is gone.

Downgrade adds the key back (and fails, naming it, if a history row no longer resolves).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 09:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NAME = "fk_fact_sent_campaign_snapshot_sent_campaign_key"


def upgrade() -> None:
    op.drop_constraint(_NAME, "fact_sent_campaign_snapshot", schema="cinnox", type_="foreignkey")


def downgrade() -> None:
    op.create_foreign_key(
        _NAME,
        "fact_sent_campaign_snapshot",
        "fact_sent_campaign",
        ["sent_campaign_key"],
        ["sent_campaign_key"],
        source_schema="cinnox",
        referent_schema="cinnox",
    )
