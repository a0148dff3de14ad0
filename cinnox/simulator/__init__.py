"""A CINNOX open-API simulator: deterministic sent-campaign data over real HTTP on loopback.

    with SimulatorServer(seed=7) as sim:  # 127.0.0.1, a free port, now = today 00:00 UTC
        sim.add_fault(FaultKind.HTTP_429, retry_after="1")  # the next API request is throttled
        url = f"{sim.url}/v1/api/apps/sim-app-1/data/sent-campaigns-summary"
        params = {"startAt": "2024-01-01T00:00:00Z", "endAt": "2024-01-02T00:00:00Z"}
        httpx.get(url, params=params, headers={"Authorization": "Bearer sim-token-sim-app-1"})

Standalone: `python -m cinnox.simulator --port 8765` (see `--help`); a running simulator is
steered over `/_simulator/state`, `/_simulator/clock` and `/_simulator/faults`.
"""

from ._data import (
    DEFAULT_APPS,
    DEFAULT_SEED,
    FIRST_DAY,
    SETTLE_MAX,
    AppProfile,
    CampaignUniverse,
    Staff,
    WhatsAppSender,
)
from ._faults import FaultKind, FaultRule
from ._server import RequestRecord, SimulatorServer
from ._time import parse_rfc3339, start_of_utc_day

__all__ = [
    "DEFAULT_APPS",
    "DEFAULT_SEED",
    "FIRST_DAY",
    "SETTLE_MAX",
    "AppProfile",
    "CampaignUniverse",
    "FaultKind",
    "FaultRule",
    "RequestRecord",
    "SimulatorServer",
    "Staff",
    "WhatsAppSender",
    "parse_rfc3339",
    "start_of_utc_day",
]
