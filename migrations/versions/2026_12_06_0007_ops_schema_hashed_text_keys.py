"""Bookkeeping in its own schema, free-text keys indexed through a hash, no TEMP for the reader.

Why: three things let one odd record or one read-only login do harm.

- `cinnox.api_request_budget` is pipeline bookkeeping in the analysts' schema, so the reader
  role could read it. It moves to a new schema `cinnox_ops`, which the reader role is not
  granted; later bookkeeping tables go there too.
- The unique keys on staff names (`createdBy`), template names (`subject`) and sender
  attributes were btree entries over the text itself. A btree entry holds at most ~2.7 KB, so
  one record with a longer name failed the whole load. They are now unique over a SHA-256 of
  the text (`cinnox.text_key`), which has a fixed size; equality on the text itself is still
  what every lookup compares, so two names never merge.
- Every role may create TEMP tables in a new database (PUBLIC has TEMPORARY), the reader too.
  Where the migrating user owns the database, TEMPORARY is revoked from PUBLIC and granted to
  the owner. A loading user that is not the owner then needs `GRANT TEMPORARY ON DATABASE`
  (docs/deploy.md); where the migrating user does not own the database this is left to the DBA.

Downgrade puts everything back and deletes no data.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 06:30:00
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

from warehouse.migrate import reader_role

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SENDER_ATTRIBUTES = ("phone", "whatsapp_channel_name", "template_source_name", "sender_eid")


def _owns_database() -> bool:
    return bool(
        op.get_bind().scalar(
            text(
                "SELECT d.datdba = (SELECT oid FROM pg_roles WHERE rolname = current_user) "
                "FROM pg_database d WHERE d.datname = current_database()"
            )
        )
    )


def upgrade() -> None:
    role = reader_role()
    op.execute("CREATE SCHEMA cinnox_ops")
    op.execute(
        "COMMENT ON SCHEMA cinnox_ops IS 'Pipeline bookkeeping (request budget), not campaign data; not granted "
        "to the reader role.'"
    )
    op.execute("REVOKE ALL ON SCHEMA cinnox_ops FROM PUBLIC")
    op.execute("ALTER TABLE cinnox.api_request_budget SET SCHEMA cinnox_ops")
    # The grant made through cinnox's default privileges moves with the table: take it back.
    op.execute(f"REVOKE ALL ON cinnox_ops.api_request_budget FROM PUBLIC, {role}")

    op.execute(
        """
        CREATE FUNCTION cinnox.text_key(value text) RETURNS bytea
            LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
            RETURN sha256(convert_to(value, 'UTF8'))
        """
    )
    op.execute(
        "COMMENT ON FUNCTION cinnox.text_key(text) IS 'SHA-256 of a text: what unique keys over free text index, "
        "so no length of text can exceed an index entry.'"
    )
    op.drop_constraint("uq_dim_staff_app_key_staff_name", "dim_staff", schema="cinnox")
    op.execute("CREATE UNIQUE INDEX uq_dim_staff_name_key ON cinnox.dim_staff (app_key, cinnox.text_key(staff_name))")
    op.drop_constraint("uq_dim_template_app_key_subject", "dim_template", schema="cinnox")
    op.execute(
        "CREATE UNIQUE INDEX uq_dim_template_subject_key ON cinnox.dim_template (app_key, cinnox.text_key(subject))"
    )
    op.drop_constraint("uq_dim_sender_attributes", "dim_sender", schema="cinnox")
    keys = ", ".join(f"cinnox.text_key({column})" for column in _SENDER_ATTRIBUTES)
    op.execute(
        f"CREATE UNIQUE INDEX uq_dim_sender_attributes_key ON cinnox.dim_sender (app_key, channel_key, {keys}) "
        "NULLS NOT DISTINCT"
    )

    if _owns_database():
        op.execute(
            "DO $$ BEGIN EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database()); "
            "EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO CURRENT_USER', current_database()); END $$"
        )


def downgrade() -> None:
    role = reader_role()
    if _owns_database():
        op.execute("DO $$ BEGIN EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO PUBLIC', current_database()); END $$")
    op.execute("DROP INDEX cinnox.uq_dim_sender_attributes_key")
    op.create_unique_constraint(
        "uq_dim_sender_attributes",
        "dim_sender",
        ["app_key", "channel_key", *_SENDER_ATTRIBUTES],
        schema="cinnox",
        postgresql_nulls_not_distinct=True,
    )
    op.execute("DROP INDEX cinnox.uq_dim_template_subject_key")
    op.create_unique_constraint(
        "uq_dim_template_app_key_subject", "dim_template", ["app_key", "subject"], schema="cinnox"
    )
    op.execute("DROP INDEX cinnox.uq_dim_staff_name_key")
    op.create_unique_constraint(
        "uq_dim_staff_app_key_staff_name", "dim_staff", ["app_key", "staff_name"], schema="cinnox"
    )
    op.execute("DROP FUNCTION cinnox.text_key(text)")

    op.execute("ALTER TABLE cinnox_ops.api_request_budget SET SCHEMA cinnox")
    op.execute(f"GRANT SELECT ON cinnox.api_request_budget TO {role}")
    op.execute("DROP SCHEMA cinnox_ops")
