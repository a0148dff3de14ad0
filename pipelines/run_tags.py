"""Run tags the code location sets and reads, and what they tell the schedule and the sensors."""

import datetime

import dagster as dg

APP_TAG = "cinnox/app"
# Set on a run that CINNOX told to come back later (Retry-After beyond the retry budget): the
# refresh schedule and the settle sensor start no run of that app before then.
RETRY_AT_TAG = "cinnox/retry_at"


def cinnox_asks_to_wait(instance: dg.DagsterInstance, slug: str, now: datetime.datetime) -> datetime.datetime | None:
    """When CINNOX last told a run of this app to come back, if that is still ahead of `now`."""
    for record in instance.get_run_records(dg.RunsFilter(tags={APP_TAG: slug}), limit=20):
        value = record.dagster_run.tags.get(RETRY_AT_TAG)
        if value:
            retry_at = datetime.datetime.fromisoformat(value)
            return retry_at if retry_at > now else None
    return None
