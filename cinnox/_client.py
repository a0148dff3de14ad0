"""The CINNOX open API client: App Token auth, window filters, paging and retries."""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import random
import re
import ssl
import sys
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from cinnox._deadline import RequestDeadline, transport_with_deadline
from cinnox._endpoints import SENT_CAMPAIGNS_SUMMARY, Endpoint
from cinnox._errors import (
    CinnoxAuthError,
    CinnoxPaginationDrift,
    CinnoxRequestError,
    CinnoxRetryLater,
    CinnoxUnavailable,
    CinnoxUnreachable,
)
from cinnox._models import (
    ChunkRead,
    ExtractionStats,
    NumberLiteral,
    Page,
    Probe,
    ReadStopped,
    Window,
    WindowTooLarge,
    format_rfc3339,
)
from cinnox._ratelimit import RateLimiter
from cinnox._retry import CODE_BAD_QUERY, TRANSIENT_CODES, RetryPolicy, parse_retry_after

_REDACTED = "********"
_SUCCESS_CODES = (None, 0, "0", 200)  # the envelope's `code` on success; see docs/cinnox-api.md
_FIRST_CONTACT_ATTEMPTS = 3  # refused connections before the first answer, then give up for good
# 100 records of a few hundred bytes each are well under 1 MiB; 16 MiB leaves room for
# verbose records while a compressed "bomb" is cut off long before it costs real memory.
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024
# What an HTTP header value may hold here: visible ASCII. A control character (a trailing
# newline from a mounted secret file, CR, NUL) makes h11 refuse the header with the value in
# its message, so such a value is refused up front without ever being shown.
_HEADER_VALUE = re.compile(r"[\x21-\x7e]+")
_JSON_DEPTH = 3000  # the stdlib parser's recursion limit, above orjson's 1,024 levels
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class _AppTokenAuth(httpx.Auth):
    """Adds the App Token to each request, so it never sits in a loggable default header."""

    def __init__(self, header: str, scheme: str, token: str) -> None:
        self._header = header
        # An empty scheme, or "none", sends the bare token (some gateways want no "Bearer").
        self._value = f"{scheme} {token}" if scheme and scheme.lower() != "none" else token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[self._header] = self._value
        yield request

    def __repr__(self) -> str:
        return f"_AppTokenAuth(header={self._header!r}, token={_REDACTED!r})"


@dataclass(frozen=True, slots=True)
class _Transient:
    """A failed attempt worth retrying, and what to say about it if it was the last."""

    status: int | None
    code: object
    message: str
    retry_after: float | None = None


class CinnoxClient:
    """Reads one CINNOX app's sent-campaign summaries, page by page.

    >>> with CinnoxClient("https://example.cinnox.com", "my-app-id", token) as client:
    ...     for page in client.sent_campaign_pages(window):
    ...         handle(page.records)

    Retries 429 / code 6451010 (honouring Retry-After), 5xx / code 6451001, timeouts, dropped
    connections and unreadable bodies with exponential backoff and jitter, up to
    `retry.max_attempts` requests and `retry.max_elapsed` seconds per page; then raises
    `CinnoxUnavailable`. A bad query (6451000, other 4xx) raises `CinnoxRequestError` and
    401/403 `CinnoxAuthError` at once.

    Every request first waits for `rate_limiter`, which callers share between all clients of
    one app in a run. TLS certificates are always verified (`ca_bundle` names extra trusted
    roots); plain http is refused except to a loopback host, unless `allow_plain_http`.
    """

    def __init__(
        self,
        base_url: str,
        app_id: str,
        token: str,
        *,
        auth_header: str = "Authorization",
        auth_scheme: str = "Bearer",
        page_size: int = 100,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        endpoint: Endpoint = SENT_CAMPAIGNS_SUMMARY,
        transport: httpx.BaseTransport | None = None,
        logger: logging.Logger | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rate_limiter: RateLimiter | None = None,
        max_reads: int = 4,
        ca_bundle: str | None = None,
        allow_plain_http: bool = False,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        read_clock: Callable[[], datetime] | None = None,
    ) -> None:
        try:
            parts = urlsplit(base_url)
            has_userinfo = parts.username is not None or parts.password is not None or "@" in parts.netloc
        except ValueError:
            raise ValueError("CINNOX base URL is not a valid URL") from None
        if has_userinfo:
            # Never echoed: the part before "@" is a user name and password.
            raise ValueError(
                "CINNOX base URL carries credentials (user:password@host); remove them: the App Token is "
                "the only credential sent to CINNOX, and a URL is printed in errors"
            )
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"CINNOX base URL must start with http:// or https://, got {base_url!r}")
        if base_url.startswith("http://") and not allow_plain_http and not is_loopback_url(base_url):
            raise ValueError(
                f"CINNOX base URL {base_url!r} is plain http to a host that is not loopback: the App Token "
                "would cross the network unencrypted. Use https, or set CINNOX_ALLOW_PLAIN_HTTP=true "
                "if this is really wanted"
            )
        if max_reads < 2:
            raise ValueError(f"max_reads must be at least 2 (a drifting read is read again), got {max_reads}")
        if not app_id.strip():
            raise ValueError("CINNOX app id is empty")
        if not token:
            raise CinnoxAuthError(f"no App Token given for CINNOX app {app_id!r}", app_id=app_id)
        if not _HEADER_VALUE.fullmatch(token):
            raise ValueError(
                f"CINNOX app {app_id!r}: the App Token holds a character an HTTP header cannot carry (a control "
                "character such as a trailing newline or NUL, a space, or non-ASCII); a secret read from a file "
                "often ends in a newline: strip it where the secret is set"
            )
        if auth_scheme and not _HEADER_VALUE.fullmatch(auth_scheme):
            raise ValueError(
                "the auth scheme holds a character an HTTP header cannot carry (a control character such as "
                "a trailing newline, a space, or non-ASCII)"
            )
        if not _HEADER_NAME.fullmatch(auth_header):
            raise ValueError("the auth header name holds a character an HTTP header name cannot carry")
        if max_response_bytes < 1:
            raise ValueError(f"max_response_bytes must be positive, got {max_response_bytes}")
        if page_size < 1 or (endpoint.max_limit is not None and page_size > endpoint.max_limit):
            limit = endpoint.max_limit or "the API maximum"
            raise ValueError(f"page size must be between 1 and {limit}, got {page_size}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.base_url = base_url.rstrip("/")
        self.app_id = app_id
        self.page_size = page_size
        self.endpoint = endpoint
        self.retry = retry or RetryPolicy()
        self._token = token
        self._auth_value = _AppTokenAuth(auth_header, auth_scheme, token)._value
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self._log = logger or logging.getLogger("cinnox.client")
        self._sleep = sleep
        self._clock = clock
        self._limiter = rate_limiter or RateLimiter(None)
        self.max_reads = max_reads
        self._answered = False  # any HTTP answer yet: after one, a refused connection is a blip
        # When each page was read. Runs pass the warehouse's clock, so that which of two reads
        # is newer never depends on the clocks of the workers that made them.
        self.read_clock = read_clock or _utc_now
        self._rng = random.Random()
        # Never False: a CA bundle may add trust, nothing here can take verification away.
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True
        self._deadline = RequestDeadline()
        self._http = httpx.Client(
            base_url=self.base_url,
            auth=_AppTokenAuth(auth_header, auth_scheme, token),
            timeout=httpx.Timeout(timeout),
            verify=verify,
            # Every socket operation gets at most what is left of the request's total deadline.
            transport=transport if transport is not None else transport_with_deadline(verify, self._deadline),
            headers={"Accept": "application/json", "User-Agent": "cinnox-warehouse/0.1"},
        )

    def __repr__(self) -> str:
        return f"CinnoxClient(base_url={self.base_url!r}, app_id={self.app_id!r})"

    def __enter__(self) -> CinnoxClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def sent_campaign_pages(self, window: Window, stats: ExtractionStats | None = None) -> Iterator[Page]:
        """Yield every page of the window's campaigns, fetching the next only when asked.

        The window is read as one chunk (see `read_chunk` for how a read ends and how drift is
        healed); pages of every read are yielded, so a caller keeping the last version of each
        id also keeps records that vanished between reads. For large windows use `read_chunk`
        on bounded sub-windows instead: a drift then costs one chunk, not the whole window.
        """
        stats = stats if stats is not None else ExtractionStats()
        for read in range(1, self.max_reads + 1):
            check = _ReadCheck(window, self.page_size)
            yield from self._read_window(window, stats, check)
            stats.reads += 1
            if self._accepts(check, window, read, stats):
                return
        raise self._drift_error(window, stats)

    def probe(self, window: Window, stats: ExtractionStats | None = None) -> Probe:
        """One `limit=1` request: the window's `total`, and the time on CINNOX's clock."""
        stats = stats if stats is not None else ExtractionStats()
        page = self._fetch_page(window, 0, stats, limit=1)
        return Probe(window, page.total, page.api_time)

    def read_chunk(
        self,
        window: Window,
        stats: ExtractionStats | None = None,
        *,
        max_records: int | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> ChunkRead:
        """Read the window to its end, in memory, re-reading it while paging drifts.

        A read ends at an empty page, or at a short page once `total` records are in; a full
        page always asks for one more, so a `total` that is too low cannot cut a read short.
        A read drifted when a record came twice, `total` changed between pages, fewer distinct
        records came than `total` said, or a page brought nothing new (a server ignoring
        `offset`): then the window is read again, up to `max_reads` times in all, and the first
        read without drift is accepted. When none is, raises `CinnoxPaginationDrift`.

        With `max_records`, raises `WindowTooLarge` after the first page if its `total` is
        larger: the caller splits the window rather than hold that many records. When `stop`
        returns True before a page is asked for, raises `ReadStopped`.
        """
        stats = stats if stats is not None else ExtractionStats()
        earlier: dict[str, tuple[Page, object]] = {}  # id -> (page, record) of earlier reads
        for read in range(1, self.max_reads + 1):
            check = _ReadCheck(window, self.page_size)
            started = self.read_clock()
            pages: list[Page] = []
            for page in self._read_window(window, stats, check, stop):
                if max_records is not None and read == 1 and not pages and (page.total or 0) > max_records:
                    raise WindowTooLarge(window, page.total or 0)
                pages.append(page)
            stats.reads += 1
            if self._accepts(check, window, read, stats):
                accepted = set(check.seen)
                gone = [(page, record) for key, (page, record) in earlier.items() if key not in accepted]
                return ChunkRead(
                    window=window,
                    pages=pages,
                    vanished=[replace(page, records=[record]) for page, record in gone],
                    read_started=started,
                    read_finished=self.read_clock(),
                    reads=read,
                    total=check.totals[-1] if check.totals else None,
                    drift=[note for note in stats.drift if note.startswith(f"{window} ")],
                )
            for page in pages:
                for record in page.records:
                    key = _record_key(record)
                    if key is not None:
                        earlier[key] = (page, record)
        raise self._drift_error(window, stats)

    def _accepts(self, check: _ReadCheck, window: Window, read: int, stats: ExtractionStats) -> bool:
        problems = check.problems()
        if not problems:
            stats.window_records = check.distinct
            if read > 1:
                self._log.warning(
                    "CINNOX app %s window %s: paging drift healed; read %d has %d records without drift",
                    self.app_id,
                    window,
                    read,
                    check.distinct,
                )
            return True
        stats.drift.append(f"{window} read {read}: " + "; ".join(problems))
        self._log.warning(
            "CINNOX app %s window %s: paging drift in read %d (%s); reading the window again",
            self.app_id,
            window,
            read,
            "; ".join(problems),
        )
        return False

    def _drift_error(self, window: Window, stats: ExtractionStats) -> CinnoxPaginationDrift:
        notes = [note for note in stats.drift if note.startswith(f"{window} ")]
        return CinnoxPaginationDrift(
            f"CINNOX app {self.app_id!r}, window {window}: paging kept drifting; none of {self.max_reads} "
            f"reads came without drift ({' | '.join(notes)})",
            app_id=self.app_id,
        )

    def _read_window(
        self, window: Window, stats: ExtractionStats, check: _ReadCheck, stop: Callable[[], bool] | None = None
    ) -> Iterator[Page]:
        """One pass over the window, page by page, until it ends or stops making progress."""
        offset = 0
        while True:
            if stop is not None and stop():
                raise ReadStopped(f"CINNOX app {self.app_id!r}, window {window}: read stopped at offset {offset}")
            page = self._fetch_page(window, offset, stats)
            stats.pages += 1
            stats.records += len(page.records)
            if page.total is not None:
                stats.api_total = page.total
            self._log.debug(
                "CINNOX app %s window %s: page at offset %d has %d records (total %s)",
                self.app_id,
                window,
                offset,
                len(page.records),
                page.total,
            )
            yield page
            received = len(page.records)
            if not check.add(page) or received == 0:
                return
            if received < self.page_size and (page.total is None or offset + received >= page.total):
                return
            offset += received

    def _fetch_page(self, window: Window, offset: int, stats: ExtractionStats, limit: int | None = None) -> Page:
        endpoint = self.endpoint
        path = endpoint.path.format(app_id=self.app_id)
        params = {
            endpoint.start_param: format_rfc3339(window.start),
            endpoint.end_param: format_rfc3339(window.end),
            endpoint.offset_param: str(offset),
            endpoint.limit_param: str(limit or self.page_size),
        }
        failure: _Transient | None = None
        began = self._clock()
        attempt = 0
        for attempt in range(1, self.retry.max_attempts + 1):
            if failure is not None:
                delay = self.retry.delay(attempt - 1, failure.retry_after, self._rng)
                if failure.retry_after is not None and failure.retry_after > min(
                    self.retry.max_elapsed, self.retry.max_retry_after
                ):
                    raise self._retry_later(window, offset, failure)
                if self._clock() - began + delay > self.retry.max_elapsed:
                    attempt -= 1
                    break
                self._log.warning(
                    "%s; retry %d of %d in %.2fs",
                    self._describe(window, offset, failure.status, failure.code, failure.message),
                    attempt - 1,
                    self.retry.max_attempts - 1,
                    delay,
                )
                stats.retries += 1
                stats.retry_wait_seconds += delay
                self._sleep(delay)
            stats.rate_limit_wait_seconds += self._limiter.acquire()
            stats.requests += 1
            try:
                sent = self._send(path, params, window, offset)
            except httpx.RequestError as exc:
                # Timeouts, refused or dropped connections, bodies cut short or undecodable: all
                # worth a retry. The message is rebuilt, never passed on: some hold the headers.
                failure = _Transient(None, None, self._transport_message(exc))
                stats.statuses[type(exc).__name__] = stats.statuses.get(type(exc).__name__, 0) + 1
                if isinstance(exc, httpx.ConnectError) and not self._answered and attempt >= _FIRST_CONTACT_ATTEMPTS:
                    # Never reached at all: a wrong base URL or a server that is down. Minutes of
                    # retries (and Dagster's re-runs) cannot fix that; a restart would have ended.
                    raise CinnoxUnreachable(
                        self._describe(window, offset, None, None, failure.message)
                        + f"; no connection in {attempt} attempts. Check CINNOX_BASE_URL ({_safe_url(self.base_url)}) "
                        "and that the server is up",
                        app_id=self.app_id,
                    ) from None
                continue
            if isinstance(sent, _Transient):
                failure = sent
                stats.statuses["TotalTimeout"] = stats.statuses.get("TotalTimeout", 0) + 1
                continue
            self._answered = True
            response, content = sent
            stats.statuses[str(response.status_code)] = stats.statuses.get(str(response.status_code), 0) + 1
            outcome = self._read(response, content, window, offset, attempt)
            if isinstance(outcome, Page):
                return outcome
            failure = outcome
        assert failure is not None
        if failure.retry_after is not None and failure.retry_after > min(
            self.retry.max_elapsed, self.retry.max_retry_after
        ):
            raise self._retry_later(window, offset, failure)
        raise CinnoxUnavailable(
            self._describe(window, offset, failure.status, failure.code, failure.message)
            + f"; gave up after {attempt} attempts in {self._clock() - began:.1f}s"
            + f" (limits: {self.retry.max_attempts} attempts, {self.retry.max_elapsed:g}s)",
            app_id=self.app_id,
            status_code=failure.status,
            api_code=_as_code(failure.code),
            api_message=failure.message,
        ) from None  # never chained: a transport error's message can hold the request's headers

    def _send(
        self, path: str, params: dict[str, str], window: Window, offset: int
    ) -> tuple[httpx.Response, bytes] | _Transient:
        """One request, bounded in time and size.

        httpx's timeout bounds each read, not the request: a server sending a byte every few
        seconds would hold it forever. Every socket operation gets only what is left of the
        timeout (`RequestDeadline`), headers included; with a transport passed in from outside,
        the streamed body is still checked chunk by chunk.
        The decoded body is counted as it arrives, so a compressed "bomb" is cut off at
        `max_response_bytes` instead of being inflated into memory.
        """
        deadline = time.monotonic() + self.timeout
        with self._deadline.within(self.timeout), self._http.stream("GET", path, params=params) as response:
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise CinnoxRequestError(
                        self._describe(window, offset, response.status_code, None, "response body too large")
                        + f": more than {self.max_response_bytes} bytes once decompressed "
                        "(CINNOX_MAX_RESPONSE_BYTES); not retried. Lower CINNOX_PAGE_SIZE, or raise the limit "
                        "if pages this large are expected",
                        app_id=self.app_id,
                        status_code=response.status_code,
                    )
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    return _Transient(
                        None,
                        None,
                        f"the response took longer than {self.timeout:g}s in all (CINNOX_TIMEOUT_SECONDS) "
                        f"and was given up after {size} bytes",
                    )
        return response, b"".join(chunks)

    def _transport_message(self, exc: httpx.RequestError) -> str:
        name = type(exc).__name__
        if isinstance(exc, httpx.LocalProtocolError):
            # h11 names the offending header, value included: never repeat it.
            return f"{name}: the request could not be sent (details withheld: they may hold a header)"
        text = self._redact(str(exc))
        return f"{name}: {text}".rstrip(": ")

    def _retry_later(self, window: Window, offset: int, failure: _Transient) -> CinnoxRetryLater:
        assert failure.retry_after is not None
        retry_at = datetime.now(UTC) + timedelta(seconds=failure.retry_after)
        return CinnoxRetryLater(
            self._describe(window, offset, failure.status, failure.code, failure.message)
            + f"; CINNOX asked to wait {failure.retry_after:.0f}s (Retry-After), longer than the retry budget "
            f"({min(self.retry.max_elapsed, self.retry.max_retry_after):g}s, CINNOX_RETRY_BUDGET_SECONDS): not "
            f"retried, come back after {format_rfc3339(retry_at)}",
            app_id=self.app_id,
            retry_at=retry_at,
            status_code=failure.status,
        )

    def _read(
        self, response: httpx.Response, content: bytes, window: Window, offset: int, attempt: int
    ) -> Page | _Transient:
        """A page, a transient failure to retry, or an exception for a permanent one."""
        status = response.status_code
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        body = parse_json_body(content)
        code = body.get("code") if isinstance(body, dict) else None
        message = self._redact(_api_message(body, response))

        if status in (401, 403):
            raise CinnoxAuthError(
                self._describe(window, offset, status, code, message)
                + ": the App Token was refused; check it was created for this App ID and not revoked",
                app_id=self.app_id,
                status_code=status,
                api_code=_as_code(code),
                api_message=message,
            )
        if status == 429 or status >= 500 or code in TRANSIENT_CODES:
            return _Transient(status, code, message, retry_after)
        if status != 200 or code == CODE_BAD_QUERY or code not in _SUCCESS_CODES:
            hint = " (not retried: the query itself was refused)" if status < 500 else ""
            raise CinnoxRequestError(
                self._describe(window, offset, status, code, message) + hint,
                app_id=self.app_id,
                status_code=status,
                api_code=_as_code(code),
                api_message=message,
            )
        if not isinstance(body, dict):
            # A proxy's HTML page or JSON cut short: the next attempt may well be whole.
            return _Transient(status, None, f"response body is not a JSON object ({len(content)} bytes)")
        records = body.get(self.endpoint.records_key)
        if not isinstance(records, list):
            raise CinnoxRequestError(
                self._describe(window, offset, status, code, message)
                + f": no list under the records key {self.endpoint.records_key!r} (keys: {sorted(body)[:10]});"
                " set CINNOX_RECORDS_KEY if the envelope differs",
                app_id=self.app_id,
                status_code=status,
                api_code=_as_code(code),
                api_message=message,
            )
        total = body.get(self.endpoint.total_key) if self.endpoint.total_key else None
        return Page(
            app_id=self.app_id,
            window=window,
            offset=offset,
            records=records,
            total=total if isinstance(total, int) and not isinstance(total, bool) and total >= 0 else None,
            fetched_at=self.read_clock(),
            attempts=attempt,
            api_time=_api_time(response.headers.get("Date")),
        )

    def _describe(self, window: Window, offset: int, status: int | None, code: object, message: str) -> str:
        said = f"HTTP {status}" if status is not None else "no response"
        if code is not None:
            said += f", code {code}"
        return f"CINNOX app {self.app_id!r}, window {window}, offset {offset}: {said}: {message}"

    def _redact(self, text: str) -> str:
        for secret in (self._auth_value, self._token):
            if secret in text:
                text = text.replace(secret, _REDACTED)
        return text


class _ReadCheck:
    """What one read of a window has shown so far, to judge whether its paging drifted."""

    def __init__(self, window: Window, page_size: int) -> None:
        self.window = window
        self.page_size = page_size
        self.seen: dict[str, None] = {}  # ids in the order they came; a dict keeps it small and ordered
        self.anonymous = 0
        self.repeated = 0
        self.totals: list[int] = []
        self.records = 0
        self.stalled: str | None = None

    @property
    def distinct(self) -> int:
        return len(self.seen) + self.anonymous

    def add(self, page: Page) -> bool:
        """Count the page in; False when the read must stop because it makes no progress."""
        new = 0
        for record in page.records:
            key = _record_key(record)
            if key is None:
                self.anonymous += 1
                new += 1
            elif key in self.seen:
                self.repeated += 1
            else:
                self.seen[key] = None
                new += 1
        self.records += len(page.records)
        if page.total is not None and (not self.totals or self.totals[-1] != page.total):
            self.totals.append(page.total)
        if page.records and not new:
            self.stalled = (
                f"the page at offset {page.offset} brought no record not already read "
                "(does the server ignore `offset`?)"
            )
            return False
        # A read may run past a `total` that is too low, but not without end.
        bound = 2 * max(self.totals[-1] if self.totals else 0, self.page_size) + self.page_size
        if self.records > bound:
            self.stalled = f"{self.records} records read where `total` said {self.totals[-1] if self.totals else '?'}"
            return False
        return True

    def problems(self) -> list[str]:
        problems = []
        if self.stalled:
            problems.append(self.stalled)
        if self.repeated:
            problems.append(f"{self.repeated} record(s) came twice")
        if len(self.totals) > 1:
            problems.append("total changed between pages: " + " -> ".join(map(str, self.totals)))
        if self.totals and self.distinct < self.totals[-1]:
            problems.append(f"{self.distinct} distinct records but total {self.totals[-1]}")
        return problems


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _api_time(header: str | None) -> datetime | None:
    """The Date header as an aware UTC datetime; None when absent or unreadable."""
    if not header:
        return None
    try:
        moment = parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _safe_url(url: str) -> str:
    """The URL's scheme, host and port only: never user info, path or query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def is_loopback_url(url: str) -> bool:
    """True for http(s)://localhost, 127.0.0.0/8 and ::1: traffic that never leaves the machine."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _record_key(record: object) -> str | None:
    """The id paging drift is judged by; None for a record without a usable one."""
    if isinstance(record, dict):
        value = record.get("id")
        if isinstance(value, str) and value:
            return value  # byte for byte: ids that differ only in spaces are different ids
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return None


def parse_json_body(content: bytes) -> Any:
    """The JSON value of a response body; None when it is not JSON.

    orjson first (fast). What it refuses, the stdlib may still read: `NaN`/`Infinity`
    literals (kept as `NumberLiteral`, so only the records holding them are rejected) and
    escaped lone surrogates (rejected per record by the loader). Nesting too deep for either
    parser is not JSON this client can read.
    """
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        pass
    # At least as deep as orjson reads (1,024 levels): a page holding both a NaN and a deeply
    # nested record must not be refused for the nesting alone.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, _JSON_DEPTH))
    try:
        return json.loads(content, parse_constant=NumberLiteral, parse_float=_parse_float, parse_int=_parse_int)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    finally:
        sys.setrecursionlimit(limit)


def _parse_float(text: str) -> float | NumberLiteral:
    value = float(text)
    return value if math.isfinite(value) else NumberLiteral(text)


def _parse_int(text: str) -> int | NumberLiteral:
    # Python refuses to convert more than 4,300 digits; no counter or id is that long.
    return int(text) if len(text) <= 1000 else NumberLiteral(text)


def _api_message(body: Any, response: httpx.Response) -> str:
    if isinstance(body, dict) and body.get("message") is not None:
        return str(body["message"])[:300]
    return response.reason_phrase or "no message"


def _as_code(code: object) -> int | str | None:
    return code if isinstance(code, (int, str)) and not isinstance(code, bool) else None
