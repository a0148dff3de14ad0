"""Campaign send dates as Dagster partitions: UTC days."""

from __future__ import annotations

from datetime import date

import dagster as dg

# The run tags Dagster itself sets on a single-run backfill (documented under "backfill
# policies"); a run carrying them materializes every partition from start to end.
PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"


def send_date_partitions(start: date) -> dg.DailyPartitionsDefinition:
    # end_offset=1 adds today: campaigns sent since midnight are already in the API.
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone="UTC", end_offset=1)


def range_tags(first: str, last: str) -> dict[str, str]:
    """Run tags that make one run cover partitions first..last."""
    return {PARTITION_RANGE_START_TAG: first, PARTITION_RANGE_END_TAG: last}
