"""The assets materialized through Dagster into a real PostgreSQL, fed by the simulator."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import Engine, func, select, text

from cinnox.simulator import FaultKind, SimulatorServer
from pipelines.assets import PAGE_LOGGER, RunLogger, build_sent_campaigns_asset
from pipelines.checks import build_checks
from pipelines.definitions import build_definitions
from pipelines.partitions import send_date_partitions
from pipelines.resources import CinnoxAppToken, CinnoxResource, build_resources
from pipelines.settings import PipelineSettings
from tests.pipelines.conftest import run_asset_range
from warehouse.db import create_warehouse_engine
from warehouse.migrate import upgrade_to_head
from warehouse.models import Base, FactSentCampaign

APP = "sim-app-1"
KEY = dg.AssetKey(["cinnox", "sent_campaigns", "sim_app_1"])
# Recognisable, so a leak anywhere is found by a plain search.
TOKEN = "tok-SECRET-5f3a9c1e-do-not-log"
NOW = datetime(2026, 6, 15, tzinfo=UTC)


@pytest.fixture
def cinnox_api() -> Iterator[SimulatorServer]:
    with SimulatorServer(apps={APP: TOKEN, "sim-app-2": "tok-two"}, now=NOW) as sim:
        yield sim


@pytest.fixture
def environment(cinnox_api: SimulatorServer, warehouse: Engine, warehouse_url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": warehouse_url,
        "CINNOX_BASE_URL": cinnox_api.url,
        "CINNOX_APP_IDS": "sim-app-1,sim-app-2",
        "CINNOX_TOKEN_SIM_APP_1": TOKEN,
        "CINNOX_TOKEN_SIM_APP_2": "tok-two",
        "CINNOX_PAGE_SIZE": "40",
    }


@pytest.fixture
def run_range(environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., dg.ExecuteInProcessResult]:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    def run(
        first: str, last: str, instance: dg.DagsterInstance | None = None, key: dg.AssetKey = KEY
    ) -> dg.ExecuteInProcessResult:
        return run_asset_range(key, first, last, instance)

    return run


def day_metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, object]]:
    """Each partition's materialization metadata, by partition key."""
    return {
        str(event.partition): {name: value.value for name, value in event.materialization.metadata.items()}
        for event in result.get_asset_materialization_events()
    }


def metadata(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    """The last partition's metadata: its own day's figures and the run's (run_...)."""
    by_day = day_metadata(result)
    return by_day[max(by_day)]


def test_a_range_is_one_run_that_loads_every_campaign_and_passes_its_checks(
    run_range: Callable[..., dg.ExecuteInProcessResult],
    cinnox_api: SimulatorServer,
    warehouse: Engine,
    check_names: tuple[str, ...],
) -> None:
    result = run_range("2026-06-10", "2026-06-12")
    assert result.success
    expected = cinnox_api.universe.campaigns(
        APP, datetime(2026, 6, 10, tzinfo=UTC), datetime(2026, 6, 13, tzinfo=UTC), NOW
    )

    by_day = day_metadata(result)
    assert sorted(by_day) == ["2026-06-10", "2026-06-11", "2026-06-12"]
    # Each day shows its own campaigns, not the window's.
    for day, meta in by_day.items():
        sent_that_day = [
            r for r in expected if datetime.fromisoformat(r["date"]).astimezone(UTC).date().isoformat() == day
        ]
        assert meta["records"] == meta["inserted"] == len(sent_that_day) > 0, day
        assert (meta["updated"], meta["unchanged"], meta["rejected"]) == (0, 0, 0)
    # The run's own figures once, on the last day.
    assert not [name for meta in list(by_day.values())[:-1] for name in meta if name.startswith("run_")]
    meta = metadata(result)
    assert meta["run_records_fetched"] == meta["run_api_total"] == meta["run_inserted"] == len(expected)
    assert meta["run_pages"] == len(expected) // 40 + 1  # the last page short, or an empty one after a full one
    assert meta["run_requests"] == meta["run_pages"] + 1  # and the probe of the window's total
    assert (meta["run_updated"], meta["run_unchanged"], meta["run_rejected"], meta["run_retries"]) == (0, 0, 0, 0)
    assert meta["run_chunks"] == 1
    # Four requests at the default 10 requests a second: at most three waits of a tenth of a second.
    assert 0.0 <= meta["run_rate_limit_wait_seconds"] <= 0.35
    # Static metadata (column lineage, schema) lives on the definition, not in every event.
    assert "dagster/column_lineage" not in meta

    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == dict.fromkeys(check_names, True)
    with warehouse.connect() as conn:
        assert set(conn.scalars(select(FactSentCampaign.campaign_id))) == {r["id"] for r in expected}
        assert set(conn.scalars(select(FactSentCampaign.last_dagster_run_id))) == {result.run_id}

    again = run_range("2026-06-10", "2026-06-12")
    assert again.success
    meta = metadata(again)
    assert (meta["run_inserted"], meta["run_updated"], meta["run_unchanged"]) == (0, 0, len(expected))


def test_the_schedules_run_request_runs(
    run_range: Callable[..., dg.ExecuteInProcessResult], environment: dict[str, str]
) -> None:
    schedule = build_definitions(environment).resolve_schedule_def("cinnox_refresh_schedule")
    with (
        dg.instance_for_test() as instance,
        dg.build_schedule_context(instance=instance, scheduled_execution_time=NOW) as context,
    ):
        request = next(r for r in schedule.evaluate_tick(context).run_requests or [] if r.asset_selection == [KEY])
    tags = request.tags
    result = run_range(tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"])
    assert result.success
    assert len(result.get_asset_materialization_events()) == 7


def _run_with_literal_token(
    environment: dict[str, str], token: str, instance: dg.DagsterInstance
) -> dg.ExecuteInProcessResult:
    """A NUL cannot sit in an environment variable, but can in a resource built in code: run
    the asset with the cinnox resource given directly."""
    settings = PipelineSettings.from_env(environment)
    app = settings.apps[0]
    resources = build_resources(settings, environment).resources
    cinnox = CinnoxResource(
        base_url=environment["CINNOX_BASE_URL"],
        apps=[CinnoxAppToken(app_id=APP, token=token, token_env_var=app.token_env_var)],
        page_size=40,
    )
    return dg.materialize(
        [build_sent_campaigns_asset(app, send_date_partitions(settings.partitions_start))],
        resources={"cinnox": cinnox, "warehouse": resources["warehouse"]},
        partition_key="2026-06-14",
        instance=instance,
        raise_on_error=False,
    )


# A secret mounted from a file or a Kubernetes secret often ends in a newline.
@pytest.mark.parametrize("suffix", ["", "\n", "\r\n", "\x00"], ids=["plain", "LF", "CRLF", "NUL"])
def test_the_token_appears_nowhere_dagster_stores_or_logs(
    suffix: str,
    run_range: Callable[..., dg.ExecuteInProcessResult],
    environment: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    cinnox_api: SimulatorServer,
    warehouse: Engine,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    cinnox_api.add_fault(FaultKind.HTTP_429, retry_after="0")  # exercise the retry log lines too
    cinnox_api.add_fault(FaultKind.HTTP_500)
    if suffix in ("\n", "\r\n"):
        monkeypatch.setenv("CINNOX_TOKEN_SIM_APP_1", TOKEN + suffix)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        if suffix == "\x00":
            result = _run_with_literal_token(environment, TOKEN + suffix, instance)
        else:
            result = run_range("2026-06-14", "2026-06-14", instance=instance)
        stored = [str(record) for record in instance.all_logs(result.run_id)]
        if suffix:
            # Refused when the resource is built, naming the variable, before any request.
            assert not result.success
            assert any("CINNOX_TOKEN_SIM_APP_1 holds a character" in line for line in stored)
            assert cinnox_api.requests == []
        else:
            assert result.success
            assert metadata(result)["run_retries"] == 2
        # Materialization and check metadata, as Dagster stored them.
        stored += [
            repr(event.asset_materialization)
            for event in instance.all_logs(result.run_id)
            if event.asset_materialization is not None
        ]
        assert suffix or any("run_rate_limit_wait_seconds" in line for line in stored)
        run = instance.get_run_by_id(result.run_id)
        assert run is not None
        stored.append(repr(run.run_config))
    if not suffix:
        assert any("retry 1 of" in line for line in stored)  # the retries were logged...
        # ...and the progress of the extraction, chunk by chunk
        assert any("chunk 1 of 1 " in line and "so far" in line for line in stored)
    assert not [line for line in stored if TOKEN in line]  # ...without the token
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files
    assert not [p for p in files if TOKEN.encode() in p.read_bytes()]
    assert TOKEN not in caplog.text
    out, err = capfd.readouterr()
    assert TOKEN not in out + err
    with warehouse.connect() as conn:
        # Every warehouse table, whole rows as text: the token must be in none of them.
        dumps = {
            table.fullname: conn.scalar(
                select(func.string_agg(text(f"row_to_json({table.name})::text"), "")).select_from(table)
            )
            for table in Base.metadata.sorted_tables
        }
    if not suffix:
        assert dumps["cinnox.fact_sent_campaign"]
        assert dumps["cinnox_raw.sent_campaign_payload"]
        assert dumps["cinnox_raw.source_field"]
    assert not [name for name, dump in dumps.items() if dump and TOKEN in dump]


def test_the_client_s_page_lines_stay_out_of_the_run_s_event_log_and_its_warnings_do_not(
    run_range: Callable[..., dg.ExecuteInProcessResult],
    cinnox_api: SimulatorServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=PAGE_LOGGER)
    cinnox_api.add_fault(FaultKind.HTTP_500)  # a retry: the client logs a warning
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = run_range("2026-06-10", "2026-06-14", instance=instance)
        assert result.success
        stored = [record.user_message for record in instance.all_logs(result.run_id)]
    assert any("retry 1 of" in line for line in stored)  # warnings: in the run's log
    assert any("chunk 1 of 1 " in line for line in stored)  # the progress lines too
    assert not [line for line in stored if "page at offset" in line]  # one Dagster event per page, no more
    pages = [r for r in caplog.records if r.name == PAGE_LOGGER and "page at offset" in r.getMessage()]
    assert len(pages) == metadata(result)["run_pages"]  # every page, in the Python logger instead


def test_run_logger_routes_by_level() -> None:
    run_log, pages = logging.getLogger("test.run"), logging.getLogger("test.pages")
    seen: list[tuple[str, int, str]] = []
    callers: set[str] = set()

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append((record.name, record.levelno, record.getMessage()))
            callers.add(record.funcName)

    for logger in (run_log, pages):
        logger.setLevel(logging.DEBUG)
        logger.addHandler(Keep())
        logger.propagate = False
    log = RunLogger(run_log, pages)
    log.debug("page %d", 1)
    log.info("info")
    log.warning("retry %s", "1 of 6")
    assert seen == [
        ("test.pages", logging.DEBUG, "page 1"),
        ("test.run", logging.INFO, "info"),
        ("test.run", logging.WARNING, "retry 1 of 6"),
    ]
    assert callers == {"test_run_logger_routes_by_level"}  # records name the caller, not RunLogger
    pages.setLevel(logging.INFO)  # a level set on either logger is honoured, before any formatting
    assert not log.isEnabledFor(logging.DEBUG)
    assert log.isEnabledFor(logging.WARNING)


def test_a_refused_token_fails_the_run_naming_the_variable_not_the_token(
    run_range: Callable[..., dg.ExecuteInProcessResult], environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CINNOX_TOKEN_SIM_APP_1", "revoked-token-0000")
    result = run_range("2026-06-14", "2026-06-14")
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    message = failure.step_failure_data.error.message if failure.step_failure_data.error else ""
    assert "HTTP 401" in message
    assert "CINNOX_TOKEN_SIM_APP_1" in message
    assert APP in message
    assert "revoked-token-0000" not in str([str(e) for e in result.all_events])
    # A refused token is not retried: one attempt, no RetryPolicy round.
    assert not [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]


def test_checks_fail_on_bad_rows(
    run_range: Callable[..., dg.ExecuteInProcessResult],
    create_database: Callable[[], str],
    environment: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A database of its own: this test breaks the schema's own guard to plant a duplicate.
    url = create_database()
    engine = create_warehouse_engine(url)
    upgrade_to_head(engine)
    monkeypatch.setenv("DATABASE_URL", url)
    assert run_range("2026-06-14", "2026-06-14").success
    with engine.begin() as conn:
        conn.execute(
            text("ALTER TABLE cinnox.fact_sent_campaign DROP CONSTRAINT uq_fact_sent_campaign_app_key_campaign_id")
        )
        conn.execute(
            text(
                "INSERT INTO cinnox.fact_sent_campaign"
                " (app_key, campaign_id, sent_at, sent_date_key, channel_key, sender_key, delivered)"
                " SELECT app_key, campaign_id, sent_at, sent_date_key, channel_key, sender_key, -1"
                " FROM cinnox.fact_sent_campaign ORDER BY campaign_id LIMIT 1"
            )
        )
        # More delivered than recipients, and a sender of another app.
        conn.execute(text("INSERT INTO cinnox.dim_app (app_id) VALUES ('another-app')"))
        conn.execute(
            text(
                "INSERT INTO cinnox.dim_sender (app_key, channel_key, phone)"
                " SELECT app_key, 1, '+85200000000' FROM cinnox.dim_app WHERE app_id = 'another-app'"
            )
        )
        conn.execute(
            text(
                "UPDATE cinnox.fact_sent_campaign SET delivered = total_recipients + 1,"
                " sender_key = (SELECT max(sender_key) FROM cinnox.dim_sender)"
                " WHERE campaign_id = (SELECT max(campaign_id) FROM cinnox.fact_sent_campaign)"
            )
        )
        # A template key with no template: no foreign key refuses it (revision 0010), the check finds it.
        conn.execute(
            text(
                "UPDATE cinnox.fact_sent_campaign SET template_key = 2147483647 WHERE campaign_id ="
                " (SELECT campaign_id FROM cinnox.fact_sent_campaign ORDER BY campaign_id OFFSET 5 LIMIT 1)"
            )
        )
        # A history row whose campaign is gone: no foreign key refuses it (revision 0011) either.
        conn.execute(
            text(
                "INSERT INTO cinnox.fact_sent_campaign_snapshot (sent_campaign_key, observed_at, sent_at)"
                " VALUES (2147483647, now(), now())"
            )
        )
    result = run_checks(build_definitions({**environment, "DATABASE_URL": url}))
    evaluations = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert not evaluations["unique_campaign_ids"].passed
    assert not evaluations["non_negative_counters"].passed
    assert evaluations["non_negative_counters"].metadata["violations"].value == 1
    assert evaluations["counters_in_order"].metadata["violations"].value == 1
    assert evaluations["dimension_keys_resolve"].metadata["violations"].value == 3
    assert not evaluations["counters_in_order"].passed
    assert not evaluations["dimension_keys_resolve"].passed
    engine.dispose()


def run_checks(defs: dg.Definitions, instance: dg.DagsterInstance | None = None) -> dg.ExecuteInProcessResult:
    checks_only = dg.define_asset_job("checks_only", selection=dg.AssetSelection.checks_for_assets(KEY))
    job = dg.Definitions.merge(defs, dg.Definitions(jobs=[checks_only])).resolve_job_def("checks_only")
    return job.execute_in_process(instance=instance or dg.DagsterInstance.ephemeral(), raise_on_error=False)


def test_count_check_fails_when_the_warehouse_lost_a_row_of_the_window(
    run_range: Callable[..., dg.ExecuteInProcessResult], environment: dict[str, str], warehouse: Engine
) -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_range("2026-06-13", "2026-06-14", instance=instance).success
        assert _evaluations(run_checks(build_definitions(environment), instance))["count_reconciled_with_api"]
        with warehouse.begin() as conn:
            conn.execute(
                text(
                    "DELETE FROM cinnox.fact_sent_campaign_snapshot WHERE sent_campaign_key ="
                    " (SELECT sent_campaign_key FROM cinnox.fact_sent_campaign ORDER BY campaign_id LIMIT 1)"
                )
            )
            conn.execute(
                text(
                    "DELETE FROM cinnox.fact_sent_campaign"
                    " WHERE campaign_id = (SELECT min(campaign_id) FROM cinnox.fact_sent_campaign)"
                )
            )
        evaluation = next(
            c
            for c in run_checks(build_definitions(environment), instance).get_asset_check_evaluations()
            if c.check_name == "count_reconciled_with_api"
        )
    assert not evaluation.passed
    meta = {name: value.value for name, value in evaluation.metadata.items()}
    assert meta["warehouse_rows_in_window"] == meta["valid_records"] - 1
    assert meta["window_start"] == "2026-06-13T00:00:00+00:00"


def test_freshness_check_fails_once_the_schedule_has_missed_a_tick(
    run_range: Callable[..., dg.ExecuteInProcessResult], environment: dict[str, str]
) -> None:
    from dagster._core.test_utils import freeze_time

    with dg.DagsterInstance.ephemeral() as instance:
        assert not _evaluations(run_checks(build_definitions(environment), instance))["freshness_check"]  # never run
        assert run_range("2026-06-14", "2026-06-14", instance=instance).success
        record = instance.get_latest_materialization_event(KEY)
        assert record is not None
        landed = datetime.fromtimestamp(record.timestamp, UTC)
        # Within the hour after the next tick, the hourly schedule's previous run still counts...
        next_tick = landed.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        with freeze_time(next_tick + timedelta(minutes=30)):
            assert _evaluations(run_checks(build_definitions(environment), instance))["freshness_check"]
        # ...two ticks later without a run, the data is older than the schedule allows.
        with freeze_time(next_tick + timedelta(hours=1, minutes=30)):
            assert not _evaluations(run_checks(build_definitions(environment), instance))["freshness_check"]


def _evaluations(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {c.check_name: c.passed for c in result.get_asset_check_evaluations()}


def test_cinnox_outage_retries_the_whole_step_then_fails_clearly(
    run_range: Callable[..., dg.ExecuteInProcessResult],
    cinnox_api: SimulatorServer,
    warehouse: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pipelines.assets

    monkeypatch.setattr(pipelines.assets, "RETRY_SECONDS", 0)  # the real wait is a minute
    monkeypatch.setenv("CINNOX_MAX_ATTEMPTS", "2")
    cinnox_api.add_fault(FaultKind.HTTP_500, times=1000)
    result = run_range("2026-06-14", "2026-06-14")
    assert not result.success
    retries = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert len(retries) == 2
    assert len(cinnox_api.requests) == 3 * 2  # three step attempts, two requests each
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    error = failure.step_failure_data.error
    assert error is not None
    assert "gave up after 2 attempts" in error.to_string()
    assert "HTTP 500" in error.to_string()
    with warehouse.connect() as conn:
        assert conn.scalar(select(FactSentCampaign.campaign_id).limit(1)) is None


def test_one_partition_with_materialize(
    environment: dict[str, str], cinnox_api: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = PipelineSettings.from_env(environment)
    app = settings.apps[0]
    asset = build_sent_campaigns_asset(app, send_date_partitions(settings.partitions_start))
    resources = build_resources(settings, environment).resources or {}
    result = dg.materialize(
        [asset, *build_checks(app, refresh_days=7)], resources=resources, partition_key="2026-06-14"
    )
    assert result.success
    day = datetime(2026, 6, 14, tzinfo=UTC)
    expected = cinnox_api.universe.campaigns(APP, day, day.replace(day=15), NOW)
    assert metadata(result)["inserted"] == len(expected)
    assert [c.passed for c in result.get_asset_check_evaluations()] == [True] * 7


def test_plain_http_to_a_remote_host_fails_the_run_without_a_request(
    run_range: Callable[..., dg.ExecuteInProcessResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CINNOX_BASE_URL", "http://api.cinnox.invalid")
    result = run_range("2026-06-14", "2026-06-14")
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    error = failure.step_failure_data.error
    assert error is not None
    assert "plain http to a host that is not loopback" in error.message
    assert "CINNOX_ALLOW_PLAIN_HTTP" in error.message
    assert not [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
