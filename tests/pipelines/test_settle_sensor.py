"""The settle sensor asks for exactly the send dates that still have unsettled campaigns.

Two observations of the simulator three days apart are loaded into a real warehouse: the
simulator's campaigns settle between 2 hours and 10 days after their send, so after them some
days have settled, some have not, and some unsettled days are older than the maximum age.
What "unsettled" should be is worked out from the simulator's records, not from the warehouse.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
from sqlalchemy import Engine

from cinnox import Page, Window
from cinnox.simulator import SimulatorServer
from pipelines.definitions import build_definitions
from pipelines.partitions import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG, send_date_partitions
from pipelines.resources import WarehouseResource
from pipelines.schedules import build_schedule_definitions
from pipelines.settings import PipelineSettings
from pipelines.settle import APP_TAG, SETTLE_SENSOR, TRIGGER_TAG, contiguous_ranges, settle_window
from warehouse.load import SettlePolicy, load_sent_campaigns

APPS = ("sim-app-1", "sim-app-2")
NOW = datetime(2026, 6, 15, 6, tzinfo=UTC)
EARLIER = NOW - timedelta(days=3)
LOADED = Window(datetime(2026, 5, 25, tzinfo=UTC), datetime(2026, 6, 16, tzinfo=UTC))
POLICY = SettlePolicy(quiet=timedelta(hours=48), final_age=timedelta(days=30))


def _complete(record: dict[str, Any]) -> bool:
    if (record.get("pending") or 0) != 0:
        return False
    return record.get("failed") is None or record["delivered"] + record["failed"] >= record["totalRecipients"]


def _counters(record: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(record.get(n) for n in ("totalRecipients", "delivered", "read", "replied", "pending", "failed"))


def _send_date(record: dict[str, Any]) -> date:
    return datetime.fromisoformat(record["date"]).astimezone(UTC).date()


def expected_unsettled(sim: SimulatorServer, app: str) -> set[date]:
    """Days with a campaign not settled after the two observations, by the settle policy's rule."""
    before = {r["id"]: r for r in sim.universe.campaigns(app, LOADED.start, LOADED.end, EARLIER)}
    days = set()
    for record in sim.universe.campaigns(app, LOADED.start, LOADED.end, NOW):
        seen = before.get(record["id"])
        quiet = seen is not None and _counters(seen) == _counters(record)  # unchanged for 72 h >= 48 h
        if not (_complete(record) and quiet):
            days.add(_send_date(record))
    return days


def _requested(
    sensor: dg.SensorDefinition, engine_url: str, instance: dg.DagsterInstance | None = None
) -> dict[str, list[tuple[str, str]]]:
    resources = {"warehouse": WarehouseResource(database_url=engine_url)}
    with dg.build_sensor_context(resources=resources, instance=instance or dg.DagsterInstance.ephemeral()) as context:
        result = sensor.evaluate_tick(context)
    ranges: dict[str, list[tuple[str, str]]] = {}
    for request in result.run_requests or []:
        assert request.tags[TRIGGER_TAG] == "settle"
        assert request.asset_selection is not None
        assert len(request.asset_selection) == 1
        app = request.asset_selection[0].path[-1]
        ranges.setdefault(app, []).append(
            (request.tags[PARTITION_RANGE_START_TAG], request.tags[PARTITION_RANGE_END_TAG])
        )
    return ranges


def _days(ranges: list[tuple[str, str]]) -> set[date]:
    days = set()
    for first, last in ranges:
        day = date.fromisoformat(first)
        while day <= date.fromisoformat(last):
            days.add(day)
            day += timedelta(days=1)
    return days


def test_sensor_requests_exactly_the_unsettled_days_up_to_the_max_age(
    warehouse: Engine, warehouse_url: str, simulator: SimulatorServer
) -> None:
    for app in APPS:
        for at in (EARLIER, NOW):
            records = simulator.universe.campaigns(app, LOADED.start, LOADED.end, at)
            page = Page(app, LOADED, 0, records, len(records), at, 1)
            load_sent_campaigns(warehouse, app, LOADED, [page], settle=POLICY)

    for max_age in (6, 20):
        environ = {"CINNOX_REFRESH_DAYS": "2", "CINNOX_SETTLE_MAX_AGE_DAYS": str(max_age)}
        settings = PipelineSettings.from_env(environ)
        defs = build_schedule_definitions(settings, send_date_partitions(settings.partitions_start), lambda: NOW)
        sensor = defs.resolve_sensor_def(SETTLE_SENSOR)
        window = settle_window(settings, NOW.date())
        assert window == (NOW.date() - timedelta(days=max_age), date(2026, 6, 13))
        requested = _requested(sensor, warehouse_url)
        for app in APPS:
            unsettled = expected_unsettled(simulator, app)
            in_window = {d for d in unsettled if window[0] <= d <= window[1]}
            assert in_window, "the data must leave unsettled days for the sensor to find"
            assert _days(requested[app.replace("-", "_")]) == in_window, (app, max_age)
            # One run per stretch of consecutive days, never a settled day inside a run.
            assert requested[app.replace("-", "_")] == [
                (a.isoformat(), b.isoformat()) for a, b in contiguous_ranges(in_window)
            ]
            if max_age == 6:
                # Unsettled days older than the max age exist, and are not asked for.
                assert any(d < window[0] for d in unsettled), app
        if max_age == 20:
            # Settled days inside the window exist, and are not asked for.
            every_day = {window[0] + timedelta(days=n) for n in range((window[1] - window[0]).days + 1)}
            assert every_day - expected_unsettled(simulator, APPS[0])

    # While an app's settle run is still going, the next tick leaves that app alone.
    with dg.instance_for_test() as instance:
        instance.add_run(
            dg.DagsterRun(
                job_name="cinnox_refresh",
                run_id="running-settle-run",
                status=dg.DagsterRunStatus.STARTED,
                tags={TRIGGER_TAG: "settle", APP_TAG: "sim_app_1"},
            )
        )
        assert set(_requested(sensor, warehouse_url, instance)) == {"sim_app_2"}


def test_sensor_skips_when_everything_settled(warehouse: Engine, warehouse_url: str) -> None:
    settings = PipelineSettings.from_env({})
    defs = build_schedule_definitions(settings, send_date_partitions(settings.partitions_start), lambda: NOW)
    resources = {"warehouse": WarehouseResource(database_url=warehouse_url)}
    with dg.build_sensor_context(resources=resources, instance=dg.DagsterInstance.ephemeral()) as context:
        result = defs.resolve_sensor_def(SETTLE_SENSOR).evaluate_tick(context)
    assert not result.run_requests
    assert result.skip_message is not None
    assert "settled" in result.skip_message


def test_sensor_is_on_by_default_and_described() -> None:
    sensor = build_definitions({}).resolve_sensor_def(SETTLE_SENSOR)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.description is not None
    assert "CINNOX_SETTLE_MAX_AGE_DAYS" in sensor.description
    assert sensor.minimum_interval_seconds == 3600


def test_contiguous_ranges_join_consecutive_days() -> None:
    d = date(2026, 6, 1)
    days = [d, d + timedelta(days=1), d + timedelta(days=3), d + timedelta(days=1)]
    assert contiguous_ranges(days) == [(d, d + timedelta(days=1)), (d + timedelta(days=3), d + timedelta(days=3))]
    assert contiguous_ranges([]) == []
