"""Asset checks: the warehouse rows of each app obey the fact's rules, and the data is fresh."""

import datetime
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import dagster as dg
from dagster._utils.schedules import cron_string_iterator

from pipelines.assets import sent_campaigns_key
from pipelines.resources import WarehouseResource
from pipelines.settings import AppSettings, PipelineSettings
from warehouse.db import retry_transient
from warehouse.quality import (
    CheckOutcome,
    RefreshWindowEvidence,
    campaigns_in_window,
    counter_regressions,
    counters_out_of_order,
    dangling_dimension_keys,
    duplicate_campaign_keys,
    negative_counters,
    refresh_window_evidence,
    run_chunks,
)

FRESHNESS_SENSOR = "cinnox_freshness_sensor"
# How long a check keeps asking a database that went away (a restart, a failover) before it
# fails: the load it checks has committed, and a restart must not fail the run for it.
CHECK_RETRY_SECONDS = 120.0
T = TypeVar("T")


def _retrying(query: Callable[..., T], *args: Any) -> T:
    return retry_transient(lambda: query(*args), budget=CHECK_RETRY_SECONDS)


def _result(outcome: CheckOutcome, what: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=outcome.passed,
        description=f"{outcome.violations} of {outcome.rows_checked} campaigns {what}",
        metadata={
            "rows_checked": outcome.rows_checked,
            "violations": outcome.violations,
            "sample_campaign_ids": dg.MetadataValue.json(outcome.sample),
        },
    )


def run_window(chunks: Sequence[Mapping[str, Any]]) -> tuple[Any, Any]:
    """The window a run's chunks cover: the first chunk's start to the last one's end (None
    for no chunk)."""
    return min((c["window_start"] for c in chunks), default=None), max((c["window_end"] for c in chunks), default=None)


def reconcile(chunks: Sequence[Mapping[str, Any]], rows_in_window: int) -> dg.AssetCheckResult:
    """Each chunk's `total` from CINNOX against what its accepted read fetched, and the warehouse
    against every valid record of the run.

    `total` counts every record of a chunk's window, rejects included, so it must equal the
    records fetched; every valid record must then be a fact row sent in the run's window.
    """
    problems = []
    mismatched = [c for c in chunks if c["api_total"] is not None and int(c["api_total"]) != int(c["records"])]
    for chunk in mismatched[:5]:
        problems.append(
            f"[{_iso(chunk['window_start'])}, {_iso(chunk['window_end'])}): CINNOX said {chunk['api_total']} "
            f"records but {chunk['records']} were fetched"
        )
    if len(mismatched) > 5:
        problems.append(f"and {len(mismatched) - 5} more chunks")
    fetched = sum(int(c["records"]) for c in chunks)
    rejected = sum(int(c["rejected"]) for c in chunks)
    totals = [int(c["api_total"]) for c in chunks if c["api_total"] is not None]
    valid = fetched - rejected
    if rows_in_window < valid:
        problems.append(f"{valid} valid records but only {rows_in_window} rows in the warehouse")
    start, end = run_window(chunks)
    window = f"[{_iso(start)}, {_iso(end)})"
    return dg.AssetCheckResult(
        passed=not problems,
        description="; ".join(problems)
        or f"{window}: {fetched} records fetched in {len(chunks)} chunk(s), as CINNOX counted",
        metadata={
            "window_start": _iso(start),
            "window_end": _iso(end),
            "chunks": len(chunks),
            "api_total": sum(totals) if totals else None,
            "records_fetched": fetched,
            "valid_records": valid,
            "rejected": rejected,
            "warehouse_rows_in_window": rows_in_window,
        },
    )


def _iso(moment: object) -> str:
    return moment.isoformat() if isinstance(moment, datetime.datetime) else str(moment)


def _evidence_result(evidence: RefreshWindowEvidence) -> dg.AssetCheckResult:
    last = evidence.last_day
    late = last is not None and last.changed > 0
    table = ["| days after send | campaigns | changed then or later | share |", "|---:|---:|---:|---:|"]
    metadata: dict[str, float] = {}
    for row in evidence.by_age:
        share = "" if row.share is None else f"{row.share:.1%}"
        marker = " (window's last day)" if row is last else ""
        table.append(f"| {row.days}{marker} | {row.campaigns} | {row.changed} | {share} |")
        if row.share is not None:
            metadata[f"changed_after_{row.days}d_share"] = round(row.share, 4)
    description = (
        f"{last.changed} of {last.campaigns} campaigns still changed {last.days}+ days after the send, on the "
        f"{evidence.refresh_days}-day refresh window's last day: lengthen CINNOX_REFRESH_DAYS"
        if late and last is not None
        else f"No campaign was seen changing on the {evidence.refresh_days}-day refresh window's last day"
    )
    return dg.AssetCheckResult(
        passed=not late,
        severity=dg.AssetCheckSeverity.WARN,
        description=description,
        metadata={
            **metadata,
            "refresh_days": evidence.refresh_days,
            "changes_by_age": dg.MetadataValue.md("\n".join(table)),
            "campaigns_past_window": evidence.campaigns_past_window,
            "unsettled_past_window": evidence.unsettled_past_window,
        },
    )


def build_checks(app: AppSettings, refresh_days: int) -> list[dg.AssetChecksDefinition]:
    key = sent_campaigns_key(app)

    @dg.asset_check(
        asset=key,
        name="unique_campaign_ids",
        description="Each campaign id occurs once per app in cinnox.fact_sent_campaign (the fact's grain).",
        blocking=True,
    )
    def unique_campaign_ids(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        return _result(
            _retrying(duplicate_campaign_keys, warehouse.engine, app.app_id), "share their id with another row"
        )

    @dg.asset_check(
        asset=key,
        name="non_negative_counters",
        description="No counter (recipients, delivered, read, replied, pending, failed) is below zero.",
    )
    def non_negative_counters(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        return _result(_retrying(negative_counters, warehouse.engine, app.app_id), "have a negative counter")

    @dg.asset_check(
        asset=key,
        name="counters_in_order",
        description="delivered <= total_recipients and read <= delivered, where the channel reports both.",
    )
    def counters_in_order(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        return _result(_retrying(counters_out_of_order, warehouse.engine, app.app_id), "count more than they could")

    @dg.asset_check(
        asset=key,
        name="dimension_keys_resolve",
        description=(
            "Every fact row's app, channel, date, sender, staff and template keys find their dimension "
            "row, and sender, staff and template belong to the same app (and sender to the same channel); "
            "every counter-history row finds its campaign."
        ),
    )
    def dimension_keys_resolve(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        return _result(
            _retrying(dangling_dimension_keys, warehouse.engine, app.app_id), "have a key without its dimension"
        )

    @dg.asset_check(
        asset=key,
        name="count_reconciled_with_api",
        description=(
            "Every chunk of the latest run fetched as many records as CINNOX's `total` for its window, "
            "and every valid record is a fact row sent in the run's window (from cinnox_ops.load_chunk)."
        ),
    )
    def count_reconciled_with_api(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
    ) -> dg.AssetCheckResult:
        # This run's chunks (its retries included); run on its own, the app's latest run's.
        family = context.run.root_run_id or context.run.run_id
        chunks = _retrying(run_chunks, warehouse.engine, app.app_id, family)
        if not chunks:
            return dg.AssetCheckResult(
                passed=False, severity=dg.AssetCheckSeverity.WARN, description="No chunk loaded yet"
            )
        start, end = run_window(chunks)
        return reconcile(chunks, _retrying(campaigns_in_window, warehouse.engine, app.app_id, start, end))

    @dg.asset_check(
        asset=key,
        name="no_counter_regressions",
        description="No delivered, read, replied or failed counter went backwards in this run's load "
        "(each drop is kept in cinnox.counter_regression). A warning: the fact holds what CINNOX says now.",
    )
    def no_counter_regressions(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
    ) -> dg.AssetCheckResult:
        outcome = _retrying(counter_regressions, warehouse.engine, app.app_id, context.run.run_id)
        result = _result(outcome, "had a counter go backwards (campaign.counter in the sample)")
        return dg.AssetCheckResult(
            passed=result.passed,
            severity=dg.AssetCheckSeverity.WARN,
            description=result.description,
            metadata=result.metadata,
        )

    @dg.asset_check(
        asset=key,
        name="refresh_window_covers_changes",
        description=(
            "From the counter history: the share of campaigns whose counters still changed N days after the "
            f"send, for N up to the {refresh_days}-day refresh window and beyond. Warns when changes are still "
            "seen on the window's last day, i.e. the window may be too short to catch the final counters."
        ),
    )
    def refresh_window_covers_changes(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        return _evidence_result(_retrying(refresh_window_evidence, warehouse.engine, app.app_id, refresh_days))

    return [
        unique_campaign_ids,
        non_negative_counters,
        counters_in_order,
        dimension_keys_resolve,
        count_reconciled_with_api,
        no_counter_regressions,
        refresh_window_covers_changes,
    ]


def schedule_interval(cron: str) -> datetime.timedelta:
    """The longest gap between two ticks of `cron` (UTC) over a week: how stale the schedule allows."""
    start = datetime.datetime(2026, 1, 5, tzinfo=datetime.UTC).timestamp()  # a Monday
    ticks = cron_string_iterator(start, cron, "UTC")
    previous = next(ticks)
    longest = datetime.timedelta(0)
    for tick in ticks:
        longest = max(longest, tick - previous)
        previous = tick
        if tick.timestamp() - start > 8 * 86400:
            break
    return longest


def build_freshness_checks(settings: PipelineSettings) -> tuple[list[dg.AssetChecksDefinition], dg.SensorDefinition]:
    """One check per app, and the sensor that evaluates them between runs.

    At each tick of the refresh schedule the previous tick's run must have landed: a
    materialization no older than one schedule interval before the latest tick. Dagster 1.13
    marks these factories as superseded by `FreshnessPolicy`, but a policy yields no asset check
    (nothing in the Checks tab, no check to block or alert on) and needs the freshness daemon.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # dagster's SupersessionWarning
        checks = list(
            dg.build_last_update_freshness_checks(
                assets=[sent_campaigns_key(app) for app in settings.apps],
                lower_bound_delta=schedule_interval(settings.refresh_cron),
                deadline_cron=settings.refresh_cron,
                timezone="UTC",
            )
        )
        built = dg.build_sensor_for_freshness_checks(freshness_checks=checks, name=FRESHNESS_SENSOR)

    def evaluate(context: dg.SensorEvaluationContext) -> Any:
        return built(context)

    # The same sensor with a description that names its target: the UI shows the check-key
    # selection only as its Python repr (it has no selection-string form).
    targets = ", ".join(sorted(key.to_user_string() for check in checks for key in check.check_keys))
    sensor = dg.SensorDefinition(
        name=FRESHNESS_SENSOR,
        evaluation_fn=evaluate,
        asset_selection=built.asset_selection,
        minimum_interval_seconds=built.minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Evaluates the freshness checks ({targets}) between runs, whenever one could have become "
            "overdue; a run that materializes the asset evaluates them too."
        ),
    )
    return checks, sensor


def build_check_definitions(settings: PipelineSettings) -> dg.Definitions:
    freshness, sensor = build_freshness_checks(settings)
    return dg.Definitions(
        asset_checks=[
            *(check for app in settings.apps for check in build_checks(app, settings.refresh_days)),
            *freshness,
        ],
        sensors=[sensor],
    )
