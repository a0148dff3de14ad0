"""A raw version's hash is SHA-256 of its JSON with sorted keys, computed by the loader: every stored version hashed again.

Why: `cinnox_raw.sent_campaign_payload.payload_hash` was SHA-256 of the payload's jsonb text,
computed in SQL for every staged record of every load, new or not: jsonb to text, then the
hash, about 4 us a record and most of the raw layer's time in a no-op re-load. The loader now
hashes each valid record once, in Python, as it stages it: SHA-256 of orjson's JSON with keys
sorted at every level (`warehouse.normalize.version_json`). Sorted keys make that text a
function of the content alone, so a version read back from jsonb hashes to the same value as
the record CINNOX sends: this revision re-hashes every stored version that way, in batches,
and a re-load after it writes no raw row.

Two kinds of number do not come back from jsonb as they went in: -0.0 (numeric has no negative
zero) and a float with more than 19 integer digits (1e300 comes back as an integer orjson
cannot read). A version holding one hashes differently here than in the loader, or keeps its
old hash; its next sighting adds it once more, with the same content. Counters are integers,
so only unknown fields can hold such numbers.

Downgrade hashes every version the old way again, in SQL.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 10:00:00
"""

import hashlib
from collections.abc import Sequence

import orjson
import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 5000
_NEW_COMMENT = "SHA-256 of the payload's JSON with keys sorted (orjson); identifies a version."
_OLD_COMMENT = "SHA-256 of the payload's canonical jsonb text; identifies a version."


def upgrade() -> None:
    bind = op.get_bind()
    bind.execute(
        sa.text(
            "CREATE TEMPORARY TABLE rehashed (app_id text, campaign_id text, old_hash bytea, new_hash bytea)"
            " ON COMMIT DROP"
        )
    )
    read = sa.text(
        "SELECT app_id, campaign_id, payload_hash, payload::text FROM cinnox_raw.sent_campaign_payload"
        " WHERE (app_id, campaign_id, payload_hash) > (:app_id, :campaign_id, :payload_hash)"
        " ORDER BY app_id, campaign_id, payload_hash LIMIT :batch"
    )
    after = {"app_id": "", "campaign_id": "", "payload_hash": b""}
    driver = bind.connection.driver_connection
    assert driver is not None
    # Read every version first (keyset over the primary key, which the update changes), then
    # one UPDATE from the temp table.
    while rows := bind.execute(read, {**after, "batch": _BATCH}).all():
        with driver.cursor() as cursor, cursor.copy("COPY rehashed FROM STDIN") as copy:
            for app_id, campaign_id, old_hash, payload in rows:
                try:
                    new_hash = hashlib.sha256(orjson.dumps(orjson.loads(payload), option=orjson.OPT_SORT_KEYS)).digest()
                except (orjson.JSONDecodeError, TypeError):
                    continue
                if new_hash != old_hash:
                    copy.write_row((app_id, campaign_id, old_hash, new_hash))
        app_id, campaign_id, payload_hash, _ = rows[-1]
        after = {"app_id": app_id, "campaign_id": campaign_id, "payload_hash": payload_hash}
    bind.execute(
        sa.text(
            "UPDATE cinnox_raw.sent_campaign_payload p SET payload_hash = r.new_hash FROM rehashed r"
            " WHERE p.app_id = r.app_id AND p.campaign_id = r.campaign_id AND p.payload_hash = r.old_hash"
        )
    )
    bind.execute(sa.text("DROP TABLE rehashed"))
    _comment(_NEW_COMMENT, was=_OLD_COMMENT)


def downgrade() -> None:
    op.execute("UPDATE cinnox_raw.sent_campaign_payload SET payload_hash = sha256(convert_to(payload::text, 'UTF8'))")
    _comment(_OLD_COMMENT, was=_NEW_COMMENT)


def _comment(comment: str, *, was: str) -> None:
    op.alter_column(
        "sent_campaign_payload",
        "payload_hash",
        schema="cinnox_raw",
        existing_type=sa.LargeBinary(),
        comment=comment,
        existing_comment=was,
    )
