"""The production instance (deploy/) against a real PostgreSQL: it loads, and runs land in it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import yaml
from dagster._config import process_config, validate_config
from dagster._core.instance.config import PoolGranularity, dagster_instance_config
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value
from sqlalchemy.engine import make_url

from cinnox.simulator import DEFAULT_APPS, SimulatorServer
from pipelines.partitions import send_date_partitions
from pipelines.settings import AppSettings
from tests.pipelines.conftest import run_asset_range

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ROOT / "deploy" / "production" / "dagster.yaml"
K8S = ROOT / "deploy" / "k8s" / "dagster.yaml"
KEY = dg.AssetKey(["cinnox", "sent_campaigns", "sim_app_1"])


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def production_home(
    tmp_path: Path, create_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, str]:
    """A DAGSTER_HOME holding the production dagster.yaml, its storage a fresh database."""
    storage_url = libpq(create_database())
    shutil.copy(PRODUCTION, tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_PG_URL", dagster_pg_url(storage_url))
    return tmp_path, storage_url


def dagster_pg_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)


def test_production_instance_keeps_runs_and_events_in_postgres(
    production_home: tuple[Path, str],
    warehouse_url: str,
    warehouse: object,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home, storage_url = production_home
    with SimulatorServer(now=datetime(2026, 6, 15, tzinfo=UTC)) as sim:
        environment = {
            "DATABASE_URL": warehouse_url,
            "CINNOX_BASE_URL": sim.url,
            **{AppSettings(app).token_env_var: token for app, token in DEFAULT_APPS.items()},
        }
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
            assert instance.run_retries_enabled
            assert instance.run_retries_max_retries == 2
            assert not instance.run_retries_retry_on_asset_or_op_failure
            pools = instance.get_concurrency_config().pool_config
            assert (pools.default_pool_limit, pools.pool_granularity) == (2, PoolGranularity.RUN)
            result = run_asset_range(KEY, "2026-06-14", "2026-06-14", instance, raise_on_error=True)
            assert result.success
            run_id = result.run_id
    # Read back with plain SQL: the run and its events are rows in the storage database.
    with psycopg.connect(storage_url) as conn:
        (status,) = conn.execute("SELECT status FROM runs WHERE run_id = %s", [run_id]).fetchone() or (None,)
        kinds = dict(
            conn.execute(
                "SELECT dagster_event_type, count(*) FROM event_logs WHERE run_id = %s GROUP BY 1", [run_id]
            ).fetchall()
        )
        (partition,) = conn.execute(
            "SELECT partition FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
            [run_id],
        ).fetchone() or (None,)
    assert status == "SUCCESS"
    assert kinds["ASSET_MATERIALIZATION"] == 1
    assert kinds["ASSET_CHECK_EVALUATION"] >= 5
    assert partition == "2026-06-14"
    # Nothing secret in what Dagster stored: the storage URL's password and tokens stay in the env.
    with psycopg.connect(storage_url) as conn:
        dump = "".join(row[0] for row in conn.execute("SELECT event FROM event_logs WHERE run_id = %s", [run_id]))
    for token in DEFAULT_APPS.values():
        assert token not in dump


def test_k8s_instance_is_the_production_one_with_the_k8s_run_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    production = yaml.safe_load(PRODUCTION.read_text())
    k8s = yaml.safe_load(K8S.read_text())
    launcher = k8s.pop("run_launcher")
    # Everything else is the instance tested against PostgreSQL above, section for section.
    assert k8s == {name: value for name, value in production.items() if name != "run_monitoring"} | {
        "run_monitoring": k8s["run_monitoring"]
    }
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    # Dagster's own validation: the whole file against the instance schema...
    monkeypatch.setenv("DAGSTER_PG_URL", "postgresql+psycopg2://dagster:pw@db.internal:5432/dagster")
    config, _ = dagster_instance_config(str(K8S.parent))
    assert config["run_launcher"]["class"] == "K8sRunLauncher"
    # ...and the launcher's block against dagster-k8s's own schema, env vars resolved.
    from dagster_k8s import K8sRunLauncher

    for name in ("DAGSTER_K8S_INSTANCE_CONFIG_MAP", "DAGSTER_K8S_JOB_NAMESPACE"):
        monkeypatch.setenv(name, "cinnox")
    checked = process_config(K8sRunLauncher.config_type(), launcher["config"])
    assert checked.success, checked.errors
    assert checked.value["instance_config_map"] == "cinnox"
    assert validate_config(K8sRunLauncher.config_type(), {"job_namespace": "x"}).success is False  # it does check


def test_celery_executor_config_in_the_docs_validates() -> None:
    from dagster_celery.executor import CELERY_CONFIG

    docs = (ROOT / "docs" / "deploy.md").read_text()
    block = docs.split("```yaml celery-run-config\n", 1)[1].split("```", 1)[0]
    run_config = yaml.safe_load(block)
    checked = validate_config(dg.Shape(CELERY_CONFIG), run_config["execution"]["config"])
    assert checked.success, checked.errors


def test_helm_values_carry_the_tested_instance_settings() -> None:
    # The chart renders the instance from these values; the numbers must be the tested ones.
    instance = yaml.safe_load(K8S.read_text())
    values = yaml.safe_load((K8S.parent / "values.yaml").read_text())
    daemon = values["dagsterDaemon"]
    concurrency = values["concurrency"]
    assert concurrency["enabled"] is True
    assert concurrency["pools"] == {
        "defaultLimit": instance["concurrency"]["pools"]["default_limit"],
        "granularity": instance["concurrency"]["pools"]["granularity"],
    }
    assert concurrency["runs"]["maxConcurrentRuns"] == instance["concurrency"]["runs"]["max_concurrent_runs"]
    assert concurrency["runs"]["tagConcurrencyLimits"] == instance["concurrency"]["runs"]["tag_concurrency_limits"]
    assert daemon["runCoordinator"] == {"enabled": True, "type": instance["run_coordinator"]["class"]}
    retries = instance["run_retries"]
    assert daemon["runRetries"] == {
        "enabled": retries["enabled"],
        "maxRetries": retries["max_retries"],
        "retryOnAssetOrOpFailure": retries["retry_on_asset_or_op_failure"],
    }
    monitoring = instance["run_monitoring"]
    assert daemon["runMonitoring"] == {
        "enabled": monitoring["enabled"],
        "startTimeoutSeconds": monitoring["start_timeout_seconds"],
        "pollIntervalSeconds": monitoring["poll_interval_seconds"],
        "maxResumeRunAttempts": monitoring["max_resume_run_attempts"],
        "maxRuntimeSeconds": monitoring["max_runtime_seconds"],
    }
    # No run holds an app's pool slot forever: both instances give runs a maximum runtime.
    production = yaml.safe_load((K8S.parent.parent / "production" / "dagster.yaml").read_text())
    assert production["run_monitoring"]["max_runtime_seconds"] == monitoring["max_runtime_seconds"] > 0
    launcher = instance["run_launcher"]["config"]
    k8s = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert values["runLauncher"]["type"] == instance["run_launcher"]["class"]
    assert [s["name"] for s in k8s["envSecrets"]] == launcher["env_secrets"]
    assert [c["name"] for c in k8s["envConfigMaps"]] == launcher["env_config_maps"]
    assert k8s["runK8sConfig"]["containerConfig"] == launcher["run_k8s_config"]["container_config"]
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    assert values["telemetry"] == instance["telemetry"]


def test_a_range_run_on_the_production_instance_stores_each_day_and_marks_failed_days(
    production_home: tuple[Path, str],
    warehouse_url: str,
    warehouse: object,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The code location has runs store a range's materializations in one batch
    # (DAGSTER_EVENT_BATCH_SIZE): each day still gets its own event and figures, and a failed
    # run's days still show as failed (those come from the planned events, one per day).
    assert int(os.environ["DAGSTER_EVENT_BATCH_SIZE"]) > 1
    home, storage_url = production_home
    partitions = send_date_partitions(date(2025, 1, 1))
    with SimulatorServer(now=datetime(2026, 6, 15, tzinfo=UTC)) as sim:
        for name, value in {
            "DATABASE_URL": warehouse_url,
            "CINNOX_BASE_URL": sim.url,
            **{AppSettings(app).token_env_var: token for app, token in DEFAULT_APPS.items()},
        }.items():
            monkeypatch.setenv(name, value)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            loaded = run_asset_range(KEY, "2026-06-10", "2026-06-14", instance, raise_on_error=True)
            monkeypatch.setenv(AppSettings("sim-app-1").token_env_var, "not-the-token")
            failed = run_asset_range(KEY, "2026-06-01", "2026-06-03", instance)
            assert not failed.success
            status = get_and_update_asset_status_cache_value(instance, KEY, partitions)
            assert status is not None
            materialized = status.deserialize_materialized_partition_subsets(partitions)
            failed_days = status.deserialize_failed_partition_subsets(partitions)
        figures = {
            event.partition: event.materialization.metadata["records"].value
            for event in loaded.get_asset_materialization_events()
        }
        expected = {
            day: len(sim.universe.campaigns("sim-app-1", *_day(day), datetime(2026, 6, 15, tzinfo=UTC)))
            for day in figures
        }
    assert set(materialized.get_partition_keys()) == {f"2026-06-{day}" for day in range(10, 15)}
    assert set(failed_days.get_partition_keys()) == {"2026-06-01", "2026-06-02", "2026-06-03"}
    assert figures == expected
    assert len(set(figures.values())) > 1  # each day its own figure, not the run's
    with psycopg.connect(storage_url) as conn:
        stored = conn.execute(
            "SELECT partition FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
            [loaded.run_id],
        ).fetchall()
    assert sorted(row[0] for row in stored) == [f"2026-06-{day}" for day in range(10, 15)]


def _day(day: str) -> tuple[datetime, datetime]:
    start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    return start, start + timedelta(days=1)
