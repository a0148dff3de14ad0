"""What the Dagster UI shows about each asset: ownership, kinds, columns, lineage, freshness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from sqlalchemy import inspect

from pipelines.checks import reconcile, schedule_interval
from pipelines.definitions import build_definitions
from pipelines.table_metadata import API_FIELDS, FACT_COLUMN_SOURCES
from warehouse.models import Base, FactSentCampaign, table_of

KEY = dg.AssetKey(["cinnox", "sent_campaigns", "sim_app_1"])
API_KEY = dg.AssetKey(["cinnox_api", "sent_campaigns_summary", "sim_app_1"])


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    return build_definitions({})


def test_every_asset_has_a_description_group_owner_and_kinds(defs: dg.Definitions) -> None:
    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    assert set(specs) >= {KEY, API_KEY}
    for key, spec in specs.items():
        assert spec.description, key
        assert spec.group_name in {"cinnox", "cinnox_api"}, key
        assert spec.owners == ["team:data-engineering"], key
        assert "cinnox" in spec.kinds, key
    assert "postgres" in specs[KEY].kinds
    assert specs[KEY].deps[0].asset_key == API_KEY


def test_every_warehouse_column_has_a_description() -> None:
    # The UI's column descriptions are these comments; a column without one is undocumented
    # both in psql's \\d+ and in Dagster. Names every offender at once.
    missing = [f"{t.fullname}.{c.name}" for t in Base.metadata.sorted_tables for c in t.columns if not c.comment]
    assert missing == []
    assert [t.fullname for t in Base.metadata.sorted_tables if not t.comment] == []


def test_column_schema_is_the_fact_table_with_its_database_comments(defs: dg.Definitions, warehouse_url: str) -> None:
    spec = next(spec for spec in defs.resolve_all_asset_specs() if spec.key == KEY)
    schema = spec.metadata["dagster/column_schema"]
    assert isinstance(schema, dg.TableSchema)
    assert spec.metadata["dagster/table_name"] == "cinnox.fact_sent_campaign"
    # The descriptions are what PostgreSQL holds as COMMENT ON, read back from a migrated database.
    from warehouse.db import create_warehouse_engine

    engine = create_warehouse_engine(warehouse_url)
    try:
        columns = inspect(engine).get_columns("fact_sent_campaign", schema="cinnox")
    finally:
        engine.dispose()
    in_database = {c["name"]: c.get("comment") for c in columns}
    assert {c.name: c.description for c in schema.columns} == in_database
    types = {c.name: c.type for c in schema.columns}
    assert (types["delivered"], types["sent_at"]) == ("integer", "timestamp with time zone")
    required = {c.name for c in schema.columns if not c.constraints.nullable}
    assert {"campaign_id", "sent_at", "app_key"} <= required
    assert "delivered" not in required


def test_column_lineage_maps_api_fields_to_fact_columns(defs: dg.Definitions) -> None:
    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    lineage = specs[KEY].metadata["dagster/column_lineage"]
    assert isinstance(lineage, dg.TableColumnLineage)
    api_columns = {c.name for c in specs[API_KEY].metadata["dagster/column_schema"].columns}
    fact_columns = set(table_of(FactSentCampaign).columns.keys())
    assert set(lineage.deps_by_column) <= fact_columns
    for column, deps in lineage.deps_by_column.items():
        assert deps, column
        for dep in deps:
            assert dep.asset_key == API_KEY
            assert dep.column_name in api_columns, (column, dep.column_name)
    assert [d.column_name for d in lineage.deps_by_column["total_recipients"]] == ["totalRecipients"]
    # Every API field feeds some column: a field the lineage forgets is a field the UI hides.
    assert {f for fields in FACT_COLUMN_SOURCES.values() for f in fields} == set(API_FIELDS)


def test_lineage_names_fields_the_simulator_actually_sends(simulator: object) -> None:
    from datetime import UTC, datetime

    from cinnox.simulator import SimulatorServer

    assert isinstance(simulator, SimulatorServer)
    day = datetime(2026, 6, 1, tzinfo=UTC)
    records = simulator.universe.campaigns("sim-app-1", day, day + timedelta(days=7), day + timedelta(days=8))
    sent: set[str] = set()
    for record in records:
        for name, value in record.items():
            if isinstance(value, dict):
                sent |= {f"{name}.{inner}" for inner in value}
            else:
                sent.add(name)
    assert set(API_FIELDS) <= sent


@pytest.mark.parametrize(
    ("cron", "interval"),
    [
        ("0 * * * *", timedelta(hours=1)),  # the default: hourly
        ("*/15 * * * *", timedelta(minutes=15)),
        ("0 6 * * *", timedelta(days=1)),
        ("0 6 * * 1-5", timedelta(days=3)),  # weekdays: Friday to Monday is the longest gap
    ],
)
def test_freshness_allows_one_schedule_interval(cron: str, interval: timedelta) -> None:
    assert schedule_interval(cron) == interval


def test_freshness_sensor_runs_by_default(defs: dg.Definitions) -> None:
    sensor = defs.resolve_sensor_def("cinnox_freshness_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    # The UI shows its check selection only as a Python repr: the description names the checks.
    assert sensor.description is not None
    assert "cinnox/sent_campaigns/sim_app_1:freshness_check" in sensor.description
    assert "AssetSelection" not in sensor.description


def _chunk(api_total: int | None, records: int, rejected: int = 0, day: int = 10) -> dict[str, object]:
    return {
        "window_start": datetime(2026, 6, day, tzinfo=UTC),
        "window_end": datetime(2026, 6, day + 1, tzinfo=UTC),
        "api_total": api_total,
        "records": records,
        "rejected": rejected,
    }


@pytest.mark.parametrize(
    ("chunks", "rows", "passed"),
    [
        # every record fetched and loaded
        ([_chunk(10, 10)], 10, True),
        # rejects count in CINNOX's total, not in the warehouse
        ([_chunk(10, 10, rejected=2)], 8, True),
        # no total in the envelope: only the warehouse side is compared
        ([_chunk(None, 7)], 7, True),
        # two chunks, each as CINNOX counted it
        ([_chunk(10, 10), _chunk(5, 5, day=11)], 15, True),
        # paging lost records in one chunk
        ([_chunk(10, 10), _chunk(12, 10, day=11)], 20, False),
        # the warehouse lost rows
        ([_chunk(10, 10)], 9, False),
    ],
)
def test_reconcile(chunks: list[dict[str, object]], rows: int, passed: bool) -> None:
    result = reconcile(chunks, rows)
    assert result.passed is passed
    assert result.metadata["warehouse_rows_in_window"].value == rows
