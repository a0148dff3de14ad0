"""Small helpers the merges share: insert what is missing, refresh planner statistics."""

from __future__ import annotations

from sqlalchemy import (
    Connection,
    Table,
    text,
)
from sqlalchemy.dialects.postgresql import insert

from warehouse.models import (
    Base,
    table_of,
)


def analyze_if_grown(conn: Connection, model: type[Base], rows_added: int) -> None:
    """Refresh a table's planner statistics when this load grew it by a tenth or more.

    Inside the load's transaction (ANALYZE counts the transaction's own new rows): the next
    statements join the fact it just filled, and with "empty table" estimates PostgreSQL picks
    nested loops that rescan the stage per row (minutes instead of a second at 100k
    campaigns). The statistics commit with the data, so the marts plan well right away too.
    ANALYZE's lock conflicts only with another ANALYZE or VACUUM, not with loads.
    """
    table = table_of(model)
    estimate = conn.scalar(
        text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:name)"), {"name": table.fullname}
    )
    if rows_added <= 0 or estimate is None or (estimate >= 0 and rows_added < estimate / 10):
        return
    conn.execute(text(f"ANALYZE {table.fullname}"))


def insert_missing(conn: Connection, table: Table, columns: list[str], rows: object) -> int:
    # The NOT EXISTS in `rows` keeps re-runs from burning identity values; ON CONFLICT covers
    # a concurrent load of another app inserting the same calendar day.
    statement = insert(table).from_select(columns, rows).on_conflict_do_nothing()  # type: ignore[arg-type]
    return conn.execute(statement.execution_options(preserve_rowcount=True)).rowcount
