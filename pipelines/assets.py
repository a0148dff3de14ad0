"""One partitioned asset per CINNOX app: its sent campaigns, extracted and loaded together."""

import datetime
import logging
import warnings
from collections.abc import Callable
from typing import Any

import dagster as dg

from cinnox import CinnoxAuthError, CinnoxRequestError, CinnoxRetryLater, CinnoxUnavailable, Window
from pipelines.resources import CinnoxResource, WarehouseResource
from pipelines.run_tags import APP_TAG, RETRY_AT_TAG
from pipelines.settings import DEFAULT_MAX_REJECT_SHARE, AppSettings, PipelineSettings
from pipelines.table_metadata import api_table_schema, fact_column_lineage, fact_table_name, fact_table_schema
from warehouse.errors import classify
from warehouse.load import DayFigures, LedgerKey, LoadResult, MergeLockTimeout
from warehouse.load.chunks import ChunkProgress, WindowLoad, format_duration

GROUP = "cinnox"
API_GROUP = "cinnox_api"
OWNERS = ["team:data-engineering"]
RETRIES = 2  # more tries of the step after a transient failure, beyond the client's own; each resumes
RETRY_SECONDS = 60


def sent_campaigns_key(app: AppSettings) -> dg.AssetKey:
    return dg.AssetKey(["cinnox", "sent_campaigns", app.slug])


def api_key(app: AppSettings) -> dg.AssetKey:
    return dg.AssetKey(["cinnox_api", "sent_campaigns_summary", app.slug])


def build_api_spec(app: AppSettings) -> dg.AssetSpec:
    """The CINNOX endpoint as an external asset: the source end of the column lineage."""
    return dg.AssetSpec(
        key=api_key(app),
        group_name=API_GROUP,
        kinds={"cinnox"},
        owners=OWNERS,
        tags={"cinnox/app": app.slug},
        description=(
            f"CINNOX open API: the sent-campaigns summary of app `{app.app_id}` "
            "(GET /v1/api/apps/{app_id}/data/sent-campaigns-summary). Read by the pipeline, not stored "
            "by Dagster; its fields and what the project assumes about them are in docs/cinnox-api.md."
        ),
        metadata={
            "cinnox/app_id": app.app_id,
            "dagster/column_schema": api_table_schema(),
        },
    )


def build_sent_campaigns_asset(
    app: AppSettings, partitions: dg.PartitionsDefinition, max_reject_share: float = DEFAULT_MAX_REJECT_SHARE
) -> dg.AssetsDefinition:
    with warnings.catch_warnings():
        # backfill_policy is marked beta in Dagster 1.13; it is the documented way to get
        # single-run backfills, and the pinned version is tested here.
        warnings.simplefilter("ignore", dg.BetaWarning)
        return _sent_campaigns_asset(app, partitions, max_reject_share)


def _sent_campaigns_asset(
    app: AppSettings, partitions: dg.PartitionsDefinition, max_reject_share: float
) -> dg.AssetsDefinition:
    @dg.asset(
        key=sent_campaigns_key(app),
        partitions_def=partitions,
        # A backfill is one run per app, reading its whole range as one window: one request
        # per page rather than one run (and many requests) per day.
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=f"cinnox_app_{app.slug}",
        group_name=GROUP,
        kinds={"cinnox", "postgres"},
        owners=OWNERS,
        deps=[api_key(app)],
        tags={"cinnox/app": app.slug},
        description=(
            f"Sent SMS and WhatsApp campaigns of CINNOX app `{app.app_id}`, by UTC send date. "
            "Each run reads its partitions' window from the sent-campaigns summary API and, in one "
            "transaction, keeps every record in `cinnox_raw` (rejects with their reasons) and upserts "
            "`cinnox.fact_sent_campaign` and its dimensions. Re-running a day writes nothing unless "
            "CINNOX changed something."
        ),
        metadata={
            "cinnox/app_id": app.app_id,
            "dagster/table_name": fact_table_name(),
            "dagster/column_schema": fact_table_schema(),
            "dagster/column_lineage": fact_column_lineage(api_key(app)),
        },
    )
    def sent_campaigns(
        context: dg.AssetExecutionContext, cinnox: CinnoxResource, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:  # type: ignore[type-arg]
        time_window = context.partition_time_window
        window = Window(time_window.start, time_window.end)
        days = len(context.partition_keys)
        context.log.info(f"Reading CINNOX app {app.app_id} for {window} ({days} day{'s' if days != 1 else ''})")
        # The run and its retries and re-executions share the root run id: the ledger key a
        # retry finds the chunks it already committed by.
        ledger = LedgerKey(app.app_id, context.run.root_run_id or context.run.run_id, window, context.run.run_id)
        try:
            client = cinnox.client(app.app_id, logger=RunLogger(context.log))
        except ValueError as exc:  # a setting the client refuses, e.g. plain http off loopback
            raise dg.Failure(f"CINNOX app {app.app_id!r}: {exc}", allow_retries=False) from exc
        try:
            with client:
                done = warehouse.load_window(
                    client,
                    window,
                    ledger,
                    max_reject_share=max_reject_share,
                    progress=_progress_logger(context.log),
                    log=context.log,
                )
        except CinnoxAuthError as exc:
            raise dg.Failure(
                f"{exc} (the token comes from {cinnox.token_env_var(app.app_id) or 'the cinnox resource'})",
                allow_retries=False,
            ) from exc
        except CinnoxRetryLater as exc:
            # CINNOX asked for a longer pause than a run should sit out: not retried by Dagster
            # either. The run's tag tells the schedule and the settle sensor to wait until then.
            context.instance.add_run_tags(
                context.run.run_id, {RETRY_AT_TAG: exc.retry_at.isoformat(), APP_TAG: app.slug}
            )
            raise dg.Failure(str(exc), metadata={"retry_at": exc.retry_at.isoformat()}, allow_retries=False) from None
        except CinnoxRequestError as exc:
            raise dg.Failure(str(exc), allow_retries=False) from exc
        except MergeLockTimeout as exc:
            raise dg.Failure(str(exc), allow_retries=False) from None
        except CinnoxUnavailable as exc:
            # CINNOX kept failing, or paging kept drifting: try again later; the retry skips
            # the chunks already committed.
            context.log.error(f"{str(exc).splitlines()[0]}; the step will be retried in {RETRY_SECONDS}s")
            raise dg.RetryRequested(max_retries=RETRIES, seconds_to_wait=RETRY_SECONDS) from exc
        except Exception as exc:
            failure = classify(exc)
            if failure is None:
                raise
            where = f"CINNOX app {app.app_id!r}, window {window}: loading into the warehouse failed: {failure.message}"
            if failure.transient:
                context.log.error(
                    f"{where}; the step will be retried in {RETRY_SECONDS}s from the last committed chunk"
                )
                raise dg.RetryRequested(max_retries=RETRIES, seconds_to_wait=RETRY_SECONDS) from exc
            # Retrying would read CINNOX again only to fail the same way.
            raise dg.Failure(f"{where}. The chunks committed before it are kept.", allow_retries=False) from None
        result, stats = done.result, done.stats
        if result.reject_share_exceeded:
            reasons = dict(result.reject_reasons.most_common(10))
            raise dg.Failure(
                f"CINNOX app {app.app_id!r}, window {window}: {result.rejected} of a chunk's {result.records} "
                f"records rejected ({result.reject_share:.1%}), more than the {max_reject_share:.1%} allowed "
                f"(CINNOX_MAX_REJECT_SHARE); the chunk was not "
                f"merged, its rejects are kept in cinnox_raw.sent_campaign_reject, and the chunks before it are "
                f"loaded. Reasons: {reasons}",
                metadata={
                    "rejected": result.rejected,
                    "records_fetched": result.records,
                    "reject_reasons": dg.MetadataValue.json(reasons),
                },
                allow_retries=False,
            )
        _log_outcome(context.log, done)
        if stats.rate_limit_wait_seconds >= 1:
            context.log.info(
                f"Waited {stats.rate_limit_wait_seconds:.1f}s in all for the app's request budget "
                f"({cinnox.requests_per_second}/s, kept in {cinnox.request_budget})"
            )
        # Each day's materialization carries that day's own figures; the run's figures go on
        # the last day only, so nothing is counted once per day.
        for key in context.partition_keys:
            context.add_asset_metadata(_day_metadata(result, key), partition_key=key)
        context.add_asset_metadata(
            {**_run_metadata(done), "run_request_budget": cinnox.request_budget},
            partition_key=context.partition_keys[-1],
        )
        return dg.MaterializeResult()

    return sent_campaigns


# Where the client's per-page debug lines go in a run, instead of the run's event log.
PAGE_LOGGER = "cinnox.client"


class RunLogger(logging.Logger):
    """The client's logger in a run: info and above to the run's log (`context.log`), debug
    lines (one per page) to the plain Python logger `cinnox.client`.

    Each line sent to `context.log` is a Dagster event, stored with the run: one per page cost
    the run more than the page's own bookkeeping. Retries, drift and other warnings stay in the
    run's log. An instance that wants the page lines in the event log too lists the logger
    under `python_logs: managed_python_loggers` in dagster.yaml.
    """

    def __init__(self, run_log: logging.Logger, pages: logging.Logger | None = None) -> None:
        super().__init__(run_log.name)
        self._run_log = run_log
        self._pages = pages or logging.getLogger(PAGE_LOGGER)

    def _target(self, level: int) -> logging.Logger:
        return self._pages if level < logging.INFO else self._run_log

    def isEnabledFor(self, level: int) -> bool:
        return self._target(level).isEnabledFor(level)

    def _log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        # One frame more to skip (this one), so a record names the client's line as its caller.
        kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 1
        self._target(level)._log(level, msg, *args, **kwargs)


def _progress_logger(log: Any) -> Callable[[ChunkProgress], None]:
    """Log each committed chunk, so a long backfill shows where it is and how long is left."""

    def progress(step: ChunkProgress) -> None:
        expected = f" of about {step.expected:,}" if step.expected is not None else ""
        left = step.seconds_left
        eta = f"; about {format_duration(left)} left" if left is not None and step.index < step.planned else ""
        reads = f" ({step.reads} reads: paging drifted)" if step.reads > 1 else ""
        waited = step.rate_limit_wait_seconds
        budget = f"; {waited:.1f}s waiting for the request budget so far" if waited >= 0.05 else ""
        log.info(
            f"chunk {step.index} of {step.planned} {step.window}: {step.records:,} records{reads}; "
            f"{step.records_so_far:,}{expected} so far, {step.requests:,} requests{eta}{budget}"
        )

    return progress


def _log_outcome(log: Any, done: WindowLoad) -> None:
    result, stats = done.result, done.stats
    if done.read is None:
        log.info(f"{done.requested} lies after CINNOX's clock ({done.live_edge}): nothing sent yet, nothing read")
        return
    if done.read != done.requested:
        log.info(f"Read up to the live edge {done.read.end.isoformat()}; later sends belong to the next refresh")
    if result.new_fields:
        log.warning(f"CINNOX sent fields never seen before, kept in raw JSON only: {result.new_fields}")
    if result.counter_regressions:
        log.warning(f"{result.counter_regressions} counters went backwards; see cinnox.counter_regression")
    if result.marked_missing:
        log.warning(f"{result.marked_missing} campaigns of {done.read} are no longer returned by CINNOX")
    if result.stale:
        log.info(f"{result.stale} campaigns were left as they are: another run had loaded them from a newer read")
    if result.rejected:
        log.warning(f"{result.rejected} records rejected: {dict(result.reject_reasons.most_common(5))}")
    resumed = f", {done.resumed_chunks} resumed from an earlier try" if done.resumed_chunks else ""
    log.info(
        f"Loaded {done.read}: {result.inserted} inserted, {result.updated} updated, {result.unchanged} unchanged, "
        f"{result.rejected} rejected in {done.chunks} chunk(s){resumed}, {stats.requests} requests, "
        f"{done.seconds:.1f}s"
    )


_DAY_FIGURES = (
    ("records", "records"),
    ("valid", "valid"),
    ("rejected", "rejected"),
    ("inserted", "inserted"),
    ("updated", "updated"),
    ("unchanged", "unchanged"),
    ("stale", "newer_in_warehouse"),
    ("marked_missing", "marked_missing_at_source"),
    ("missing_at_source", "missing_at_source"),
)


def _day_metadata(result: LoadResult, partition_key: str) -> dict[str, Any]:
    """One day's own figures: numbers, so the asset's plots show them per partition."""
    figures = result.days.get(datetime.date.fromisoformat(partition_key), DayFigures())
    return {name: getattr(figures, attribute) for attribute, name in _DAY_FIGURES}


def _run_metadata(done: WindowLoad) -> dict[str, Any]:
    """The run's own figures, prefixed run_: requests, chunks, waits and totals of the whole window.

    Kept small (an event's metadata is stored and sent as it is): what every run has, plus what
    only some runs have, when they have it. Each day's own figures are on its own event.
    """
    result, stats = done.result, done.stats
    metadata: dict[str, Any] = {
        "run_chunks": done.chunks,
        "run_requests": stats.requests,
        "run_pages": stats.pages,
        "run_reads": stats.reads,
        "run_retries": stats.retries,
        "run_rate_limit_wait_seconds": round(stats.rate_limit_wait_seconds, 3),
        "run_records_fetched": result.records,
        "run_rejected": result.rejected,
        "run_inserted": result.inserted,
        "run_updated": result.updated,
        "run_unchanged": result.unchanged,
        "run_seconds": round(done.seconds, 3),
    }
    if done.expected is not None:
        metadata["run_api_total"] = done.expected
    if done.read is not None and done.read.end < done.requested.end:
        metadata["run_live_edge"] = done.read.end.isoformat()
    occasional = {
        "run_chunks_resumed": done.resumed_chunks,
        "run_chunks_split": done.split_chunks,
        "run_retry_wait_seconds": round(stats.retry_wait_seconds, 3),
        "run_newer_in_warehouse": result.stale,
        "run_vanished_during_read": result.vanished,
        "run_counter_regressions": result.counter_regressions,
        "run_marked_missing_at_source": result.marked_missing,
        "run_reappeared_at_source": result.reappeared,
        "run_missing_at_source": result.missing_at_source,
    }
    metadata.update({name: value for name, value in occasional.items() if value})
    if result.reject_reasons:
        metadata["run_reject_reasons"] = dg.MetadataValue.json(dict(result.reject_reasons.most_common(5)))
    if stats.drift:
        metadata["run_paging_drift"] = dg.MetadataValue.json(stats.drift[-3:])
    if result.new_fields:
        metadata["run_new_unknown_fields"] = dg.MetadataValue.json(result.new_fields)
    return metadata


def build_asset_definitions(settings: PipelineSettings, partitions: dg.PartitionsDefinition) -> dg.Definitions:
    return dg.Definitions(
        assets=[
            *(build_api_spec(app) for app in settings.apps),
            *(build_sent_campaigns_asset(app, partitions, settings.max_reject_share) for app in settings.apps),
        ]
    )
