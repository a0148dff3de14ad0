"""Asset checks: the warehouse rows of each app obey the fact's rules."""

import dagster as dg

from pipelines.assets import sent_campaigns_key
from pipelines.resources import WarehouseResource
from pipelines.settings import AppSettings, PipelineSettings
from warehouse.quality import CheckOutcome, counter_regressions, duplicate_campaign_keys, negative_counters


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


def build_checks(app: AppSettings) -> list[dg.AssetChecksDefinition]:
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

    return [unique_campaign_ids, non_negative_counters, no_counter_regressions]


def build_check_definitions(settings: PipelineSettings) -> dg.Definitions:
    return dg.Definitions(asset_checks=[check for app in settings.apps for check in build_checks(app)])
