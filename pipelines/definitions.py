"""The code location: small Definitions merged; each module owns its part."""

from __future__ import annotations

import os
from collections.abc import Mapping

import dagster as dg

from pipelines.assets import build_asset_definitions
from pipelines.checks import build_check_definitions
from pipelines.partitions import send_date_partitions
from pipelines.rebuild_job import build_rebuild_definitions
from pipelines.resources import build_resources
from pipelines.schedules import build_schedule_definitions
from pipelines.settings import PipelineSettings


def build_definitions(environ: Mapping[str, str] = os.environ) -> dg.Definitions:
    settings = PipelineSettings.from_env(environ)
    partitions = send_date_partitions(settings.partitions_start)
    return dg.Definitions.merge(
        build_asset_definitions(settings, partitions),
        build_check_definitions(settings),
        build_schedule_definitions(settings, partitions),
        build_rebuild_definitions(),
        build_resources(settings, environ),
        # A run is one app: its extraction step, then a few seconds of check queries, in order.
        # One process runs them all; the default multiprocess executor would start a Python
        # process per step (7 imports of Dagster) for no parallelism.
        dg.Definitions(executor=dg.in_process_executor),
    )


# Let a run store the materializations of a partition range in one batch, not a commit or two
# per partition: on production's PostgreSQL storage that is most of a backfill's bookkeeping.
# Dagster reads the variable in the process that runs the step (a run worker, or `make run`);
# the sqlite and in-memory storages store a batch event by event, as without it. Set it to 0 to
# turn batching off.
os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", "1000")

defs = build_definitions()
