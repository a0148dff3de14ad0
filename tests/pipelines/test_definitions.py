"""The code location loads, its settings fail clearly, and the schedule asks for the right runs."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from pipelines.definitions import build_definitions
from pipelines.partitions import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG
from pipelines.resources import CinnoxAppToken, CinnoxResource
from pipelines.settings import AppSettings, PipelineSettings, SettingsError

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_give_one_asset_its_source_and_its_checks_per_simulated_app(check_names: tuple[str, ...]) -> None:
    defs = build_definitions({})
    dg.Definitions.validate_loadable(defs)
    keys = {key.to_user_string() for key in defs.resolve_all_asset_keys()}
    assert keys == {
        "cinnox/sent_campaigns/sim_app_1",
        "cinnox/sent_campaigns/sim_app_2",
        "cinnox_api/sent_campaigns_summary/sim_app_1",
        "cinnox_api/sent_campaigns_summary/sim_app_2",
    }
    graph = defs.resolve_asset_graph()
    checks = {(key.asset_key.to_user_string(), key.name) for key in graph.asset_check_keys}
    loaded = {key for key in keys if key.startswith("cinnox/")}
    assert checks == {(asset, name) for asset in loaded for name in check_names}
    asset = defs.resolve_assets_def(dg.AssetKey(["cinnox", "sent_campaigns", "sim_app_1"]))
    assert asset.backfill_policy == dg.BackfillPolicy.single_run()
    assert asset.partitions_def is not None
    assert asset.partitions_def.get_first_partition_key() == "2025-01-01"


def test_apps_come_from_the_environment() -> None:
    defs = build_definitions({"CINNOX_APP_IDS": "acme-hk, acme.sg", "CINNOX_PARTITIONS_START": "2024-03-01"})
    keys = {key.to_user_string() for key in defs.resolve_all_asset_keys() if key.path[0] == "cinnox"}
    assert keys == {"cinnox/sent_campaigns/acme_hk", "cinnox/sent_campaigns/acme_sg"}


def test_reject_share_defaults_to_five_percent_and_is_configurable() -> None:
    assert PipelineSettings.from_env({}).max_reject_share == 0.05
    assert PipelineSettings.from_env({"CINNOX_MAX_REJECT_SHARE": "0.2"}).max_reject_share == 0.2


def test_token_variable_is_named_after_the_app() -> None:
    assert AppSettings("acme-hk.2").token_env_var == "CINNOX_TOKEN_ACME_HK_2"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"CINNOX_APP_IDS": "ok,bad app"}, "'bad app' is not a valid app id"),
        ({"CINNOX_APP_IDS": "acme-hk,acme_hk"}, "would share"),
        ({"CINNOX_PARTITIONS_START": "last year"}, "CINNOX_PARTITIONS_START"),
        ({"CINNOX_REFRESH_DAYS": "0"}, "CINNOX_REFRESH_DAYS"),
        ({"CINNOX_MAX_REJECT_SHARE": "5%"}, "CINNOX_MAX_REJECT_SHARE: '5%' is not a fraction"),
        ({"CINNOX_MAX_REJECT_SHARE": "1.5"}, "CINNOX_MAX_REJECT_SHARE"),
    ],
)
def test_bad_settings_name_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        PipelineSettings.from_env(environ)


def test_schedule_refreshes_the_last_seven_days_in_one_run_per_app() -> None:
    defs = build_definitions({})
    schedule = defs.resolve_schedule_def("cinnox_refresh_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    tick = datetime(2026, 6, 15, 1, 0, tzinfo=UTC)
    with (
        dg.instance_for_test() as instance,
        dg.build_schedule_context(instance=instance, scheduled_execution_time=tick) as context,
    ):
        requests = schedule.evaluate_tick(context).run_requests or []
    assert sorted(r.asset_selection[0].to_user_string() for r in requests if r.asset_selection) == [
        "cinnox/sent_campaigns/sim_app_1",
        "cinnox/sent_campaigns/sim_app_2",
    ]
    for request in requests:
        assert request.tags[PARTITION_RANGE_START_TAG] == "2026-06-09"
        assert request.tags[PARTITION_RANGE_END_TAG] == "2026-06-15"  # today, partial, included


def test_schedule_window_length_is_configurable() -> None:
    defs = build_definitions({"CINNOX_REFRESH_DAYS": "3", "CINNOX_REFRESH_CRON": "*/15 * * * *"})
    schedule = defs.resolve_schedule_def("cinnox_refresh_schedule")
    assert schedule.cron_schedule == "*/15 * * * *"
    with (
        dg.instance_for_test() as instance,
        dg.build_schedule_context(
            instance=instance, scheduled_execution_time=datetime(2026, 6, 15, tzinfo=UTC)
        ) as context,
    ):
        (first, *_) = schedule.evaluate_tick(context).run_requests or []
    assert first.tags[PARTITION_RANGE_START_TAG] == "2026-06-13"


def test_dagster_definitions_validate_passes_on_the_workspace(tmp_path: Path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All code locations passed validation" in done.stdout + done.stderr


def test_every_client_of_an_app_shares_one_rate_limiter() -> None:
    cinnox = CinnoxResource(
        base_url="http://127.0.0.1:1",
        apps=[CinnoxAppToken(app_id="a", token="t-a"), CinnoxAppToken(app_id="b", token="t-b")],
        requests_per_second=5,
    )
    with cinnox.client("a") as one, cinnox.client("a") as two, cinnox.client("b") as other:
        assert one._limiter is two._limiter
        assert one._limiter is not other._limiter
        assert one._limiter.rate == 5
    assert CinnoxResource(base_url="http://127.0.0.1:1", apps=[], requests_per_second=0).rate_limiter("a").rate is None
