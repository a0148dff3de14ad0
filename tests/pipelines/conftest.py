"""Fixtures of the code-location tests."""

import pytest


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
