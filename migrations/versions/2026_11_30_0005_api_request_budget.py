"""A request budget per CINNOX app, shared by every run and process.

Why: CINNOX rate-limits per app, while Dagster's pools count running steps, not requests, and
each run's in-process limiter knows only its own requests: a backfill and the hourly refresh
running together could exceed the app's rate and draw 429s (issue 7). A token bucket kept in
PostgreSQL, taken with one atomic statement per request, is one budget across them all.

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-30 23:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_request_budget",
        sa.Column("app_id", sa.Text(), nullable=False, comment="CINNOX App ID the budget is for."),
        sa.Column(
            "tokens",
            sa.Double(),
            nullable=False,
            comment="Requests that may start at refilled_at without waiting; negative when callers have reserved "
            "future slots (each waits -tokens / requests_per_second seconds).",
        ),
        sa.Column(
            "refilled_at",
            postgresql.TIMESTAMP(timezone=True),
            nullable=False,
            comment="Database clock when tokens was last brought up to date (UTC).",
        ),
        sa.Column(
            "requests_per_second",
            sa.Double(),
            nullable=False,
            comment="Refill rate the last caller configured (CINNOX_REQUESTS_PER_SECOND).",
        ),
        sa.PrimaryKeyConstraint("app_id", name=op.f("pk_api_request_budget")),
        schema="cinnox",
        comment="Pipeline bookkeeping, not campaign data: the CINNOX request budget of each app, a token "
        "bucket shared by every Dagster run and process (warehouse/budget.py). CINNOX rate-limits per app; "
        "each request first takes a token here, in one atomic statement.",
    )


def downgrade() -> None:
    op.drop_table("api_request_budget", schema="cinnox")
