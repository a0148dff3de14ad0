"""Each CINNOX report endpoint described once, as data.

Adding another endpoint of the same shape (e.g. the sent-campaign details) is a new
`Endpoint` value, not new control flow in the client.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where an endpoint lives and how its window, paging and envelope are spelled."""

    name: str
    path: str  # formatted with app_id
    records_key: str = "data"  # the envelope is undocumented; see docs/cinnox-api.md
    total_key: str | None = "total"
    start_param: str = "startAt"
    end_param: str = "endAt"
    offset_param: str = "offset"
    limit_param: str = "limit"
    max_limit: int | None = None  # CINNOX answers "exceed maximum limit" above it


SENT_CAMPAIGNS_SUMMARY = Endpoint(
    name="sent-campaigns-summary",
    path="/v1/api/apps/{app_id}/data/sent-campaigns-summary",
)
