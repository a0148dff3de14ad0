"""Fixtures of the code-location tests."""

import os

import dagster as dg
import pytest

from pipelines.definitions import build_definitions
from pipelines.partitions import range_tags


@pytest.fixture
def check_names() -> tuple[str, ...]:
    """Every asset check each app's asset should have, the freshness check included."""
    return (
        "unique_campaign_ids",
        "non_negative_counters",
        "counters_in_order",
        "dimension_keys_resolve",
        "count_reconciled_with_api",
        "no_counter_regressions",
        "refresh_window_covers_changes",
        "freshness_check",
    )


def run_asset_range(
    key: dg.AssetKey, first: str, last: str, instance: dg.DagsterInstance | None = None, *, raise_on_error: bool = False
) -> dg.ExecuteInProcessResult:
    """One single-run backfill of `key` over [first, last], as the UI launches it: the code
    location built from the environment as it is now (like a reload), an ephemeral instance
    unless one is given."""
    job = build_definitions(os.environ).resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        instance=instance or dg.DagsterInstance.ephemeral(),
        asset_selection=[key],
        tags=range_tags(first, last),
        raise_on_error=raise_on_error,
    )
