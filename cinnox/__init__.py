"""A client for the CINNOX open API's sent-campaigns summary.

    from cinnox import CinnoxClient, Window, parse_sent_campaign

    with CinnoxClient(base_url, app_id, token) as client:
        for page in client.sent_campaign_pages(Window(start, end)):
            campaigns = [parse_sent_campaign(record) for record in page.records]

The simulator that implements the same contract on loopback is `cinnox.simulator`.
"""

from cinnox._client import DEFAULT_MAX_RESPONSE_BYTES, CinnoxClient, is_loopback_url, parse_json_body
from cinnox._endpoints import SENT_CAMPAIGNS_SUMMARY, Endpoint
from cinnox._errors import (
    CinnoxAuthError,
    CinnoxError,
    CinnoxPaginationDrift,
    CinnoxRequestError,
    CinnoxRetryLater,
    CinnoxUnavailable,
    CinnoxUnreachable,
)
from cinnox._models import (
    Channel,
    ChunkRead,
    ExtractionStats,
    NumberLiteral,
    Page,
    Probe,
    ReadStopped,
    Sender,
    SentCampaign,
    Window,
    WindowTooLarge,
    format_rfc3339,
)
from cinnox._parse import COUNTER_FIELDS, InvalidRecord, normalize_channel, parse_send_time, parse_sent_campaign
from cinnox._ratelimit import RateLimiter
from cinnox._retry import RetryPolicy, parse_retry_after

__all__ = [
    "COUNTER_FIELDS",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "SENT_CAMPAIGNS_SUMMARY",
    "Channel",
    "ChunkRead",
    "CinnoxAuthError",
    "CinnoxClient",
    "CinnoxError",
    "CinnoxPaginationDrift",
    "CinnoxRequestError",
    "CinnoxRetryLater",
    "CinnoxUnavailable",
    "CinnoxUnreachable",
    "Endpoint",
    "ExtractionStats",
    "InvalidRecord",
    "NumberLiteral",
    "Page",
    "Probe",
    "RateLimiter",
    "ReadStopped",
    "RetryPolicy",
    "Sender",
    "SentCampaign",
    "Window",
    "WindowTooLarge",
    "format_rfc3339",
    "is_loopback_url",
    "normalize_channel",
    "parse_json_body",
    "parse_retry_after",
    "parse_send_time",
    "parse_sent_campaign",
]
