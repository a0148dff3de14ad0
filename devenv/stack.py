"""Fill in what the environment leaves unset: an embedded warehouse and a simulated CINNOX.

`DATABASE_URL` set: that database is used. Unset: the embedded PostgreSQL under `.local/`.
`CINNOX_BASE_URL` set: the real CINNOX (with `CINNOX_APP_IDS` and a token per app). Unset: the
built-in simulator on loopback, with its demo apps and tokens.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from cinnox.simulator import DEFAULT_APPS, SimulatorServer
from devenv.postgres import PROJECT_ROOT, embedded_warehouse_url
from pipelines.settings import AppSettings, SettingsError

log = logging.getLogger("devenv")


@dataclass
class LocalStack:
    database_url: str
    embedded_database: bool
    simulator: SimulatorServer | None
    provided: dict[str, str] = field(default_factory=dict)  # variables this stack set


@contextmanager
def local_stack(environ: MutableMapping[str, str] = os.environ, simulator_port: int = 0) -> Iterator[LocalStack]:
    """Start what is missing, export its settings into `environ`, and stop it afterwards."""
    if environ.get("CINNOX_APP_IDS") and not environ.get("CINNOX_BASE_URL"):
        raise SettingsError(
            "CINNOX_APP_IDS is set but CINNOX_BASE_URL is not: set both to use CINNOX, or neither for the simulator"
        )
    provided: dict[str, str] = {}
    embedded = "DATABASE_URL" not in environ
    if embedded:
        provided["DATABASE_URL"] = embedded_warehouse_url()
    simulator = None
    if not environ.get("CINNOX_BASE_URL"):
        try:
            simulator = SimulatorServer(port=simulator_port).start()
        except OSError:
            if not simulator_port:
                raise
            log.warning("port %d is taken; the simulator takes a free one", simulator_port)
            simulator = SimulatorServer().start()
        provided["CINNOX_BASE_URL"] = simulator.url
        provided["CINNOX_APP_IDS"] = ",".join(DEFAULT_APPS)
        for app_id, token in DEFAULT_APPS.items():
            provided[AppSettings(app_id).token_env_var] = token
    # Dagster's own instance (runs, event logs) lives beside the project unless told otherwise.
    if "DAGSTER_HOME" not in environ:
        provided["DAGSTER_HOME"] = str(PROJECT_ROOT)
    environ.update(provided)
    try:
        yield LocalStack(environ["DATABASE_URL"], embedded, simulator, provided)
    finally:
        if simulator is not None:
            simulator.stop()
        for name in provided:
            environ.pop(name, None)
