"""One partitioned asset per CINNOX app: its sent campaigns, extracted and loaded together."""

import time
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import dagster as dg
import psycopg
from sqlalchemy.exc import OperationalError

from cinnox import (
    CinnoxAuthError,
    CinnoxRequestError,
    CinnoxRetryLater,
    CinnoxUnavailable,
    ExtractionStats,
    Page,
    Window,
)
from pipelines.resources import CinnoxResource, WarehouseResource
from pipelines.settings import DEFAULT_MAX_REJECT_SHARE, AppSettings, PipelineSettings
from pipelines.table_metadata import api_table_schema, fact_column_lineage, fact_table_name, fact_table_schema
from warehouse.load import LoadResult, MergeLockTimeout

GROUP = "cinnox"
API_GROUP = "cinnox_api"
OWNERS = ["team:data-engineering"]
RETRIES = 2  # more tries of a whole unit after a transient failure, beyond the client's own
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
        context.log.info(f"Reading CINNOX app {app.app_id} for {window} ({len(context.partition_keys)} days)")
        stats = ExtractionStats()
        started = time.monotonic()
        try:
            client = cinnox.client(app.app_id, logger=context.log)
        except ValueError as exc:  # a setting the client refuses, e.g. plain http off loopback
            raise dg.Failure(f"CINNOX app {app.app_id!r}: {exc}", allow_retries=False) from exc
        try:
            with client:
                result = warehouse.load_sent_campaigns(
                    app.app_id,
                    window,
                    _logging_progress(client.sent_campaign_pages(window, stats), stats, context.log),
                    context.run.run_id,
                    max_reject_share=max_reject_share,
                    logger=context.log,
                )
        except CinnoxAuthError as exc:
            raise dg.Failure(
                f"{exc} (the token comes from {cinnox.token_env_var(app.app_id) or 'the cinnox resource'})",
                allow_retries=False,
            ) from exc
        except CinnoxRetryLater as exc:
            # CINNOX asked for a longer pause than a run should sit out: not retried by Dagster
            # either; the schedule's next tick after `retry_at` reads the window again.
            raise dg.Failure(str(exc), metadata={"retry_at": exc.retry_at.isoformat()}, allow_retries=False) from None
        except CinnoxRequestError as exc:
            raise dg.Failure(str(exc), allow_retries=False) from exc
        except MergeLockTimeout as exc:
            raise dg.Failure(str(exc)) from None
        except (CinnoxUnavailable, OperationalError, psycopg.OperationalError) as exc:
            # psycopg's own error: COPY runs on the driver connection, outside SQLAlchemy's wrapping.
            # Transient (CINNOX kept failing, the database connection dropped): try the whole
            # unit again later. The load is atomic, so a retry starts from the warehouse as it was.
            first_line = str(exc).splitlines()[0]  # SQLAlchemy appends the statement and parameters
            context.log.error(f"{first_line}; the step will be retried in {RETRY_SECONDS}s")
            raise dg.RetryRequested(max_retries=RETRIES, seconds_to_wait=RETRY_SECONDS) from exc
        seconds = time.monotonic() - started
        if result.reject_share_exceeded:
            reasons = dict(result.reject_reasons.most_common(10))
            raise dg.Failure(
                f"CINNOX app {app.app_id!r}, window {window}: {result.rejected} of {result.records} records "
                f"({result.reject_share:.1%}) were rejected, more than the {max_reject_share:.1%} allowed "
                f"(CINNOX_MAX_REJECT_SHARE); nothing was merged, the rejects are kept in "
                f"cinnox_raw.sent_campaign_reject. Reasons: {reasons}",
                metadata={
                    "rejected": result.rejected,
                    "records_fetched": result.records,
                    "reject_reasons": dg.MetadataValue.json(reasons),
                },
                allow_retries=False,
            )
        if stats.api_total is not None and stats.api_total != stats.window_records:
            context.log.warning(
                f"CINNOX said {stats.api_total} records for {window} but {stats.window_records} were read"
            )
        if result.new_fields:
            context.log.warning(f"CINNOX sent fields never seen before, kept in raw JSON only: {result.new_fields}")
        if result.counter_regressions:
            context.log.warning(f"{result.counter_regressions} counters went backwards; see cinnox.counter_regression")
        if result.marked_missing:
            context.log.warning(f"{result.marked_missing} campaigns of {window} are no longer returned by CINNOX")
        if result.stale:
            context.log.info(
                f"{result.stale} campaigns were left as they are: another run had loaded them from a newer read"
            )
        if result.rejected:
            context.log.warning(f"{result.rejected} records rejected: {dict(result.reject_reasons.most_common(5))}")
        context.log.info(
            f"Loaded {window}: {result.inserted} inserted, {result.updated} updated, {result.unchanged} unchanged, "
            f"{result.rejected} rejected in {seconds:.1f}s"
        )
        if stats.rate_limit_wait_seconds >= 1:
            context.log.info(
                f"Waited {stats.rate_limit_wait_seconds:.1f}s in all for the app's request budget "
                f"({cinnox.requests_per_second}/s, kept in {cinnox.request_budget})"
            )
        metadata = {
            **_metadata(window, stats, result, seconds),
            "request_budget": cinnox.request_budget,
            "dagster/column_lineage": fact_column_lineage(api_key(app)),
        }
        return dg.MaterializeResult(metadata=metadata)

    return sent_campaigns


def _logging_progress(pages: Iterable[Page], stats: ExtractionStats, log: Any) -> Iterator[Page]:
    """Pass pages through, logging each, so a long backfill shows where it is and how long it
    has waited for the app's request budget (shared with the app's other runs)."""
    for page in pages:
        of_total = f" of {page.total}" if page.total is not None else ""
        waited = stats.rate_limit_wait_seconds
        budget = f"; {waited:.1f}s waiting for the request budget so far" if waited >= 0.05 else ""
        log.info(
            f"{page.window}: page {stats.pages} (offset {page.offset}, {len(page.records)} records), "
            f"{stats.records}{of_total} records so far{budget}"
        )
        yield page


def _stats_metadata(stats: ExtractionStats) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "pages": stats.pages,
        "records_fetched": stats.records,
        "requests": stats.requests,
        "retries": stats.retries,
        "retry_wait_seconds": round(stats.retry_wait_seconds, 3),
        "rate_limit_wait_seconds": round(stats.rate_limit_wait_seconds, 3),
        "reads": stats.reads,
        "paging_drift": dg.MetadataValue.json(stats.drift),
    }
    if stats.api_total is not None:
        metadata["api_total"] = stats.api_total
    return metadata


def _metadata(window: Window, stats: ExtractionStats, result: LoadResult, seconds: float) -> dict[str, Any]:
    return {
        "window_start": window.start.isoformat(),
        "window_end": window.end.isoformat(),
        **_stats_metadata(stats),
        "window_records": stats.window_records if stats.window_records is not None else result.records,
        "count_reconciled": stats.api_total is None or stats.api_total == stats.window_records,
        "valid": result.valid,
        "rejected": result.rejected,
        "duplicate_records": result.duplicates,
        "inserted": result.inserted,
        "updated": result.updated,
        "unchanged": result.unchanged,
        "newer_in_warehouse": result.stale,
        "raw_versions_inserted": result.raw_versions_inserted,
        "rejects_inserted": result.rejects_inserted,
        "dimension_rows_inserted": result.dimension_rows_inserted,
        "snapshots_inserted": result.snapshots_inserted,
        "reject_reasons": dg.MetadataValue.json(dict(result.reject_reasons.most_common(20))),
        "reject_share": round(result.reject_share, 4),
        "counter_regressions": result.counter_regressions,
        "marked_missing_at_source": result.marked_missing,
        "reappeared_at_source": result.reappeared,
        "missing_at_source": result.missing_at_source,
        "unknown_fields": dg.MetadataValue.json(result.unknown_fields),
        "new_unknown_fields": dg.MetadataValue.json(result.new_fields),
        "seconds": round(seconds, 3),
    }


def build_asset_definitions(settings: PipelineSettings, partitions: dg.PartitionsDefinition) -> dg.Definitions:
    return dg.Definitions(
        assets=[
            *(build_api_spec(app) for app in settings.apps),
            *(build_sent_campaigns_asset(app, partitions, settings.max_reject_share) for app in settings.apps),
        ]
    )
