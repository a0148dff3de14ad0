"""Asset checks: the warehouse rows of each app obey the fact's rules."""

import dagster as dg

from pipelines.assets import sent_campaigns_key
from pipelines.resources import WarehouseResource
from pipelines.settings import AppSettings, PipelineSettings
from warehouse.quality import (
    CheckOutcome,
    RefreshWindowEvidence,
    counter_regressions,
    duplicate_campaign_keys,
    negative_counters,
    refresh_window_evidence,
)


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
        return _result(duplicate_campaign_keys(warehouse.engine, app.app_id), "share their id with another row")

    @dg.asset_check(
        asset=key,
        name="non_negative_counters",
        description="No counter (recipients, delivered, read, replied, pending, failed) is below zero.",
    )
    def non_negative_counters(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        return _result(negative_counters(warehouse.engine, app.app_id), "have a negative counter")

    @dg.asset_check(
        asset=key,
        name="no_counter_regressions",
        description="No delivered, read, replied or failed counter went backwards in this run's load "
        "(each drop is kept in cinnox.counter_regression). A warning: the fact holds what CINNOX says now.",
    )
    def no_counter_regressions(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
    ) -> dg.AssetCheckResult:
        outcome = counter_regressions(warehouse.engine, app.app_id, context.run.run_id)
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
        return _evidence_result(refresh_window_evidence(warehouse.engine, app.app_id, refresh_days))

    return [unique_campaign_ids, non_negative_counters, no_counter_regressions, refresh_window_covers_changes]


def build_check_definitions(settings: PipelineSettings) -> dg.Definitions:
    return dg.Definitions(
        asset_checks=[check for app in settings.apps for check in build_checks(app, settings.refresh_days)]
    )
