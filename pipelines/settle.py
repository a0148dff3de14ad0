"""Refresh until settled: a sensor that re-reads exactly the send dates still changing.

The hourly schedule re-reads a fixed trailing window (CINNOX_REFRESH_DAYS). Counters of some
campaigns settle later than that, and re-reading every day up to a long window would cost
requests on days that have long settled. So past the window, a send date is read again only
while one of its campaigns has `settled_at IS NULL` in the warehouse, and never once it is
older than CINNOX_SETTLE_MAX_AGE_DAYS (a campaign stuck at CINNOX must not cost requests
forever).
"""

import datetime
from collections.abc import Callable, Iterable

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from sqlalchemy import Engine, func, select

from pipelines.assets import sent_campaigns_key
from pipelines.partitions import range_tags
from pipelines.resources import WarehouseResource
from pipelines.run_tags import APP_TAG, cinnox_asks_to_wait
from pipelines.settings import PipelineSettings
from warehouse.models import DimApp, FactSentCampaign, sent_between

SETTLE_SENSOR = "cinnox_settle_sensor"
TRIGGER_TAG = "cinnox/trigger"
UNSETTLED_DAYS_TAG = "cinnox/unsettled_days"

# A settle run of an app still in one of these: the next tick leaves that app alone, so runs
# do not pile up behind the app's pool while one waits or reads.
_UNFINISHED = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]

Clock = Callable[[], datetime.datetime]


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def unsettled_send_dates(engine: Engine, app_id: str, first: datetime.date, last: datetime.date) -> list[datetime.date]:
    """UTC send dates in [first, last] with a campaign whose counters have not settled.

    Campaigns CINNOX no longer returns are left out: re-reading cannot settle them.
    """
    fact = FactSentCampaign.__table__
    app = DimApp.__table__
    day = func.date(func.timezone("UTC", fact.c.sent_at))
    start = datetime.datetime.combine(first, datetime.time(), datetime.UTC)
    end = datetime.datetime.combine(last + datetime.timedelta(days=1), datetime.time(), datetime.UTC)
    query = (
        select(day)
        .distinct()
        .select_from(fact.join(app, app.c.app_key == fact.c.app_key))
        .where(
            app.c.app_id == app_id,
            sent_between(fact, start, end),  # the days' range: the (app_key, sent_date_key) index serves it
            fact.c.settled_at.is_(None),
            fact.c.missing_at_source_since.is_(None),
        )
        .order_by(day)
    )
    with engine.connect() as conn:
        return list(conn.scalars(query))


def contiguous_ranges(days: Iterable[datetime.date]) -> list[tuple[datetime.date, datetime.date]]:
    """Consecutive days joined into (first, last) ranges: one run reads one window."""
    ranges: list[tuple[datetime.date, datetime.date]] = []
    for day in sorted(set(days)):
        if ranges and ranges[-1][1] + datetime.timedelta(days=1) == day:
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ranges


def settle_window(settings: PipelineSettings, today: datetime.date) -> tuple[datetime.date, datetime.date] | None:
    """The send dates the sensor looks after: older than the schedule's window, at most max age.

    The schedule reads today and the `refresh_days - 1` days before it; the sensor takes over
    from there back to `today - settle_max_age_days`. None when that is empty.
    """
    first = max(today - datetime.timedelta(days=settings.settle_max_age_days), settings.partitions_start)
    last = today - datetime.timedelta(days=settings.refresh_days)
    return (first, last) if first <= last else None


def build_settle_sensor(
    settings: PipelineSettings, job: UnresolvedAssetJobDefinition, clock: Clock = utc_now
) -> dg.SensorDefinition:
    apps = {app.app_id: (app.slug, sent_campaigns_key(app)) for app in settings.apps}

    @dg.sensor(
        name=SETTLE_SENSOR,
        job=job,
        minimum_interval_seconds=settings.settle_sensor_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Refresh until settled: past the schedule's {settings.refresh_days}-day window, re-reads each send "
            "date that still has a campaign with unsettled counters (cinnox.fact_sent_campaign.settled_at IS "
            f"NULL), up to {settings.settle_max_age_days} days old (CINNOX_SETTLE_MAX_AGE_DAYS). Settled days "
            "are never read again. One run per app and run of consecutive days, tagged cinnox/trigger=settle."
        ),
    )
    def cinnox_settle_sensor(
        context: dg.SensorEvaluationContext, warehouse: WarehouseResource
    ) -> dg.SensorResult | dg.SkipReason:
        now = clock()
        window = settle_window(settings, now.date())
        if window is None:
            return dg.SkipReason("CINNOX_SETTLE_MAX_AGE_DAYS is within the refresh window: nothing to look after")
        tick = now.replace(second=0, microsecond=0).isoformat()
        requests = []
        busy = []
        for app_id, (slug, key) in apps.items():
            unfinished = context.instance.get_run_records(
                dg.RunsFilter(tags={TRIGGER_TAG: "settle", APP_TAG: slug}, statuses=_UNFINISHED), limit=1
            )
            if unfinished:
                busy.append(app_id)
                continue
            retry_at = cinnox_asks_to_wait(context.instance, slug, now)
            if retry_at is not None:
                context.log.info(f"CINNOX asked app {app_id} to come back after {retry_at.isoformat()}: not read now")
                continue
            days = unsettled_send_dates(warehouse.engine, app_id, *window)
            for first, last in contiguous_ranges(days):
                span = (last - first).days + 1
                requests.append(
                    dg.RunRequest(
                        run_key=f"{key.to_user_string()}:{first}:{last}:{tick}",
                        asset_selection=[key],
                        tags={
                            **range_tags(first.isoformat(), last.isoformat()),
                            TRIGGER_TAG: "settle",
                            APP_TAG: slug,
                            UNSETTLED_DAYS_TAG: str(span),
                        },
                    )
                )
        if busy:
            context.log.info(f"Apps with a settle run still queued or running, left for the next tick: {busy}")
        if not requests:
            if busy:
                return dg.SkipReason(f"Settle runs of {busy} are still queued or running")
            return dg.SkipReason(f"Every campaign sent {window[0]}..{window[1]} has settled")
        context.log.info(f"{len(requests)} runs for send dates with unsettled campaigns in {window[0]}..{window[1]}")
        return dg.SensorResult(run_requests=requests)

    return cinnox_settle_sensor
