"""A raw version's payload is json, holding the exact text its hash is SHA-256 of.

Why: the payload was jsonb. Every load staged every record's payload as jsonb, and parsing
JSON text into jsonb was about a third of PostgreSQL's time in a no-op re-load, where no
version is written at all (docs/benchmarks.md). The loader now stages the payload as text and
casts it to json only for the versions it inserts: json keeps the text as given and only
checks its syntax. That text is `warehouse.normalize.version_json` (orjson, keys sorted at
every level), so a stored version can be checked with SQL alone:
`sha256(convert_to(payload::text, 'UTF8')) = payload_hash`.

The stored versions are rewritten to that text here: read in key order, serialised again from
their jsonb in Python (as revision 0012 hashed them), then the table is emptied, its column
retyped, and the rows written back, so the table is rewritten once: 22.7 s for 1,000,000
versions on the benchmark machine, under the table's lock. Queries with `->`, `->>`
and `json_*` functions read json as they read jsonb; the jsonb-only operators (`@>`, `?`,
`jsonb_path_*`) need a `payload::jsonb` cast.

Downgrade turns the column back into jsonb; the hashes stay as they are (revision 0012's).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 12:00:00
"""

from collections.abc import Sequence

import orjson
import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 5000
_TABLE = "cinnox_raw.sent_campaign_payload"
_NEW_COMMENT = (
    "The record as returned, unknown fields included: its JSON with keys sorted, the text payload_hash hashes."
)
_OLD_COMMENT = "The record exactly as returned, unknown fields included."


def upgrade() -> None:
    bind = op.get_bind()
    bind.execute(
        sa.text(
            "CREATE TEMPORARY TABLE versions (app_id text, campaign_id text, payload_hash bytea, payload text,"
            " extracted_at timestamptz, dagster_run_id text) ON COMMIT DROP"
        )
    )
    read = sa.text(
        "SELECT app_id, campaign_id, payload_hash, payload::text, extracted_at, dagster_run_id"
        f" FROM {_TABLE}"
        " WHERE (app_id, campaign_id, payload_hash) > (:app_id, :campaign_id, :payload_hash)"
        " ORDER BY app_id, campaign_id, payload_hash LIMIT :batch"
    )
    after = {"app_id": "", "campaign_id": "", "payload_hash": b""}
    driver = bind.connection.driver_connection
    assert driver is not None
    while rows := bind.execute(read, {**after, "batch": _BATCH}).all():
        with driver.cursor() as cursor, cursor.copy("COPY versions FROM STDIN") as copy:
            for app_id, campaign_id, payload_hash, payload, extracted_at, run_id in rows:
                copy.write_row((app_id, campaign_id, payload_hash, _sorted_json(payload), extracted_at, run_id))
        app_id, campaign_id, payload_hash, *_ = rows[-1]
        after = {"app_id": app_id, "campaign_id": campaign_id, "payload_hash": payload_hash}
    op.execute(f"TRUNCATE {_TABLE}")
    _retype("json", "payload::text::json", _NEW_COMMENT, was=_OLD_COMMENT)
    op.execute(
        f"INSERT INTO {_TABLE} (app_id, campaign_id, payload_hash, payload, extracted_at, dagster_run_id)"
        " SELECT app_id, campaign_id, payload_hash, payload::json, extracted_at, dagster_run_id FROM versions"
    )
    op.execute("DROP TABLE versions")


def downgrade() -> None:
    _retype("jsonb", "payload::jsonb", _OLD_COMMENT, was=_NEW_COMMENT)


def _sorted_json(stored: str) -> str:
    """The version's JSON as the loader writes it; as stored when orjson cannot read it back
    (revision 0012's two kinds of number)."""
    try:
        return orjson.dumps(orjson.loads(stored), option=orjson.OPT_SORT_KEYS).decode()
    except (orjson.JSONDecodeError, TypeError):
        return stored


def _retype(type_: str, using: str, comment: str, *, was: str) -> None:
    op.execute(f"ALTER TABLE {_TABLE} ALTER COLUMN payload TYPE {type_} USING {using}")
    op.alter_column("sent_campaign_payload", "payload", schema="cinnox_raw", comment=comment, existing_comment=was)
