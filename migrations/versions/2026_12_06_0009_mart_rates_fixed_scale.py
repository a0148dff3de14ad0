"""The marts' rates as numeric(10, 4): four decimal places, the same in every tool.

Why: the rates of `cinnox_mart` were unconstrained numeric divisions, so psql and BI tools
(Metabase, Superset, Power BI) printed them with twenty digits and could not tell which
format to apply. A fixed scale of 4 (0.9053, i.e. 90.53 %) is exact to a hundredth of a
percentage point, sorts and sums like any decimal, and carries its scale in the column type a
BI tool reads. Ten digits leave room for a reply rate above 1 (web-link replies count every
click). Exact figures remain a division of the counters, which the views also carry.

The three views are recreated from the definitions revision 0002 made (read from that
revision, not copied), each rate cast to numeric(10, 4), with their comments and the reader
role's SELECT; the downgrade recreates the unconstrained ones. PostgreSQL cannot change a view
column's type in place, hence drop and create, in this revision's one transaction.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 06:30:00
"""

import re
from collections.abc import Sequence
from types import ModuleType

from alembic import context, op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RATE_TYPE = "numeric(10, 4)"
RATE_NOTE = " Rounded to 4 decimal places (numeric(10, 4)); divide the counters for more."
# A rate is one select item on a line of its own in revision 0002's view definitions.
_RATE_ITEM = re.compile(r"^(\s*)(\S.*\S) AS ((?:delivery|read|reply|failure)_rate)(,?)$", re.MULTILINE)


def _marts() -> ModuleType:
    """Revision 0002's module: the views' definitions, comments and the reader role."""
    script = context.script.get_revision("0002")
    if script is None or script.module is None:
        raise RuntimeError("revision 0002 is missing: 0009 recreates the views it made")
    module: ModuleType = script.module
    return module


def _fixed_scale(definition: str) -> str:
    changed, count = _RATE_ITEM.subn(rf"\1(\2)::{RATE_TYPE} AS \3\4", definition)
    assert count == 4, f"expected four rates in a mart view, found {count}"
    return changed


def _recreate(fixed: bool) -> None:
    marts = _marts()
    views: dict[str, tuple[str, str, dict[str, str]]] = marts.VIEWS
    for name in reversed(views):
        op.execute(f"DROP VIEW cinnox_mart.{name}")
    for name, (definition, comment, columns) in views.items():
        op.execute(_fixed_scale(definition) if fixed else definition)
        op.execute(f"COMMENT ON VIEW cinnox_mart.{name} IS {marts._literal(comment)}")
        for column, text in columns.items():
            if fixed and column.endswith("_rate"):
                text += RATE_NOTE
            op.execute(f"COMMENT ON COLUMN cinnox_mart.{name}.{column} IS {marts._literal(text)}")
        # The schema's default privileges grant it too, but only for views this user creates.
        role = marts.reader_role()
        op.execute(
            f"DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = {marts._literal(role)}) THEN "
            f"GRANT SELECT ON cinnox_mart.{name} TO {role}; END IF; END $$"
        )


def upgrade() -> None:
    _recreate(fixed=True)


def downgrade() -> None:
    _recreate(fixed=False)
