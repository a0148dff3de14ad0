"""The exceptions the CINNOX client raises.

    CinnoxError                 any failure talking to CINNOX
    ├── CinnoxRequestError      CINNOX refused the request; retrying cannot help
    │   ├── CinnoxAuthError     401/403: the App Token is wrong or revoked
    │   ├── CinnoxUnreachable   no connection at all before the first answer: wrong URL, server down
    │   └── CinnoxRetryLater    CINNOX asked to wait longer than the retry budget
    └── CinnoxUnavailable       retries exhausted on 429, 5xx, timeouts or bad bodies
        └── CinnoxPaginationDrift  every read of a chunk showed paging drift

Every message names the app, the window and what CINNOX said, and never the token.
"""

from __future__ import annotations

from datetime import datetime


class CinnoxError(Exception):
    """Base class: a request to the CINNOX open API did not yield a page."""

    def __init__(
        self,
        message: str,
        *,
        app_id: str,
        status_code: int | None = None,
        api_code: int | str | None = None,
        api_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.app_id = app_id
        self.status_code = status_code
        self.api_code = api_code
        self.api_message = api_message


class CinnoxRequestError(CinnoxError):
    """CINNOX rejected the request itself (code 6451000, other 4xx): fix the query or config."""


class CinnoxAuthError(CinnoxRequestError):
    """CINNOX answered 401 or 403: the App Token is missing, wrong or revoked."""


class CinnoxUnreachable(CinnoxRequestError):
    """The client's first requests found no server at the base URL: a setting to fix, not a blip."""


class CinnoxRetryLater(CinnoxRequestError):
    """CINNOX's Retry-After asked for a longer wait than the page's retry budget allows.

    Not retried: waiting inside a run would hold its slot, and retrying sooner goes against
    what the server asked. `retry_at` says when to come back.
    """

    def __init__(self, message: str, *, app_id: str, retry_at: datetime, status_code: int | None = None) -> None:
        super().__init__(message, app_id=app_id, status_code=status_code)
        self.retry_at = retry_at


class CinnoxUnavailable(CinnoxError):
    """CINNOX kept failing transiently until the retry budget ran out."""


class CinnoxPaginationDrift(CinnoxUnavailable):
    """The window's pages kept shifting (ids twice, fewer records than `total`) across re-reads."""
