"""The Dagster job `cinnox_rebuild`: the star re-derived from cinnox_raw, launchable from the UI
(config `app_id`, empty for every app). No CINNOX request; see warehouse.load.rebuild."""

from typing import Any

import dagster as dg
from pydantic import Field

from pipelines.resources import WarehouseResource
from warehouse.errors import classify
from warehouse.load import MergeLockTimeout
from warehouse.load.rebuild import RebuildError, RebuildResult, rebuild

REBUILD_JOB = "cinnox_rebuild"


class RebuildConfig(dg.Config):
    app_id: str = Field(
        default="",
        description="The CINNOX app to rebuild; empty: every app the raw layer holds records of.",
    )


@dg.op(
    name="rebuild_from_raw",
    description="Re-derive the star (fact, type-2 dimensions, counter history, regressions, rejects) from "
    "cinnox_raw with today's normalisation rules, one transaction per app; no CINNOX request.",
    tags={"kind": "postgres"},
)
def rebuild_from_raw(context: dg.OpExecutionContext, config: RebuildConfig, warehouse: WarehouseResource) -> None:
    apps = [config.app_id] if config.app_id.strip() else None
    try:
        results = rebuild(
            warehouse.engine,
            apps,
            settle=warehouse.settle_policy,
            lock_timeout=float(warehouse.merge_lock_timeout_seconds),
            logger=context.log,
        )
    except (RebuildError, MergeLockTimeout) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    except Exception as exc:
        failure = classify(exc)
        if failure is None:
            raise
        raise dg.Failure(description=f"rebuild failed: {failure.message}", allow_retries=False) from None
    context.add_output_metadata(_metadata(results))


def _metadata(results: list[RebuildResult]) -> dict[str, Any]:
    return {
        "apps": ", ".join(r.app_id for r in results),
        "raw_records": sum(r.records for r in results),
        "fact_rows": sum(r.fact_rows for r in results),
        "history_rows": sum(r.snapshot_rows for r in results),
        "rejected": sum(r.rejected for r in results),
        "rejects_now_loaded": sum(r.now_loaded for r in results),
        "versions_now_rejected": sum(r.newly_rejected for r in results),
        "settled_carried_over": sum(r.settled_carried for r in results),
        "missing_carried_over": sum(r.missing_carried for r in results),
        "seconds": round(sum(r.seconds for r in results), 1),
    }


@dg.job(
    name=REBUILD_JOB,
    description="Rebuild the warehouse from cinnox_raw (config: app_id, empty for all apps). No API request; "
    "readers see an app's old rows until its rebuild commits.",
    tags={"dagster/max_runtime": str(6 * 3600)},
)
def cinnox_rebuild() -> None:
    rebuild_from_raw()


def build_rebuild_definitions() -> dg.Definitions:
    return dg.Definitions(jobs=[cinnox_rebuild])
