"""Asset checks: the warehouse rows of each app obey the fact's rules."""

import dagster as dg

from pipelines.assets import sent_campaigns_key
from pipelines.resources import WarehouseResource
from pipelines.settings import AppSettings, PipelineSettings
from warehouse.quality import CheckOutcome, duplicate_campaign_keys, negative_counters


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

    return [unique_campaign_ids, non_negative_counters]


def build_check_definitions(settings: PipelineSettings) -> dg.Definitions:
    return dg.Definitions(asset_checks=[check for app in settings.apps for check in build_checks(app)])
