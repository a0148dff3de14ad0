"""The refresh schedule (the recent days, always) and the settle sensor (older days, until settled)."""

import dagster as dg

from pipelines.assets import sent_campaigns_key
from pipelines.partitions import range_tags
from pipelines.run_tags import APP_TAG, cinnox_asks_to_wait
from pipelines.settings import AppSettings, PipelineSettings
from pipelines.settle import Clock, build_settle_sensor, utc_now

REFRESH_JOB = "cinnox_refresh"
MAX_RUNTIME_TAG = "dagster/max_runtime"  # seconds; read by Dagster's run monitoring
REFRESH_MAX_RUNTIME_SECONDS = 3600


def build_schedule_definitions(
    settings: PipelineSettings, partitions: dg.PartitionsDefinition, clock: Clock = utc_now
) -> dg.Definitions:
    keys = [sent_campaigns_key(app) for app in settings.apps]
    apps: dict[str, AppSettings] = {sent_campaigns_key(app).to_user_string(): app for app in settings.apps}
    job = dg.define_asset_job(
        REFRESH_JOB,
        selection=dg.AssetSelection.assets(*keys),
        description="Refresh CINNOX sent campaigns: the recent days, and older days until they settle.",
    )

    @dg.schedule(
        job=job,
        cron_schedule=settings.refresh_cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            f"Re-reads the last {settings.refresh_days} days (today included) of every app: CINNOX counters "
            "keep changing for days after a send, so recent days are read again until they settle."
        ),
    )
    def cinnox_refresh_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
        partition_keys = partitions.get_partition_keys(current_time=context.scheduled_execution_time)
        recent = partition_keys[-settings.refresh_days :]
        if not recent:
            return []
        tick = context.scheduled_execution_time.isoformat()
        requests, waiting = [], []
        # One run per app, each covering the whole window: apps fail and retry independently.
        for key in keys:
            app = apps[key.to_user_string()]
            retry_at = cinnox_asks_to_wait(context.instance, app.slug, context.scheduled_execution_time)
            if retry_at is not None:  # CINNOX said when to come back: not before
                waiting.append(f"{app.app_id} until {retry_at.isoformat()}")
                continue
            requests.append(
                dg.RunRequest(
                    run_key=f"{key.to_user_string()}:{tick}",
                    asset_selection=[key],
                    # A refresh reads a few days in seconds; one still running at the next tick is
                    # stuck, and the run monitor (production instance) cancels it.
                    tags={
                        **range_tags(recent[0], recent[-1]),
                        MAX_RUNTIME_TAG: str(REFRESH_MAX_RUNTIME_SECONDS),
                        APP_TAG: app.slug,
                    },
                )
            )
        if not requests and waiting:
            return dg.SkipReason(f"CINNOX asked to come back later: {', '.join(waiting)}")
        return requests

    return dg.Definitions(
        jobs=[job], schedules=[cinnox_refresh_schedule], sensors=[build_settle_sensor(settings, job, clock)]
    )
