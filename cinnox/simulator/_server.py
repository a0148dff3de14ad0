"""The HTTP side: CINNOX's sent-campaigns-summary endpoint plus control endpoints."""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import re
import socket
import socketserver
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Protocol, Self
from urllib.parse import parse_qsl, unquote, urlsplit

from ._data import DEFAULT_APPS, DEFAULT_SEED, CampaignUniverse
from ._faults import (
    THROTTLED,
    FaultKind,
    FaultPlan,
    FaultRule,
    Reply,
    canned_response,
    distort,
    error_body,
    parse_kind,
)
from ._time import parse_rfc3339, require_aware, start_of_utc_day, to_us

_log = logging.getLogger("cinnox.simulator")

API_PATH = re.compile(r"/v1/api/apps/(?P<app_id>[^/]+)/data/sent-campaigns-summary/?")
CONTROL_PREFIX = "/_simulator"
BAD_QUERY = 6451000
METHOD_NOT_FOUND = 6450001
_INTEGER = re.compile(r"-?[0-9]+")


class _Headers(Protocol):
    def get(self, name: str, /) -> str | None: ...


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One API request as the simulator answered it (control requests are not logged)."""

    at: float
    """`time.monotonic()` when the answer was ready."""
    method: str
    path: str
    app_id: str | None
    params: dict[str, str]
    status: int
    fault: FaultKind | None = None
    rate_limited: bool = False


class _BadQuery(Exception):
    """A query CINNOX would answer with code 6451000."""


class _TokenBucket:
    """`rate` requests per second, with a burst of up to one second's worth."""

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._capacity = max(1.0, rate)
        self._tokens = self._capacity
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False


class SimulatorServer:
    """A CINNOX API on loopback, serving deterministic campaigns for a settable clock.

    >>> with SimulatorServer() as sim:  # doctest: +SKIP
    ...     httpx.get(f"{sim.url}/v1/api/apps/sim-app-1/data/sent-campaigns-summary",
    ...               params={"startAt": "2024-01-01T00:00:00Z", "endAt": "2024-01-02T00:00:00Z"},
    ...               headers={"Authorization": "Bearer sim-token-sim-app-1"}).json()["total"]
    """

    def __init__(
        self,
        apps: Mapping[str, str] | None = None,
        seed: int = DEFAULT_SEED,
        now: datetime | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        max_limit: int = 200,
        default_limit: int = 100,
        latency: float = 0.0,
        rate_limit: float | None = None,
        auth_header: str = "Authorization",
        auth_scheme: str = "Bearer",
        clock_running: bool = False,
        sends_per_request: int = 0,
    ) -> None:
        self._apps = dict(DEFAULT_APPS if apps is None else apps)
        if not self._apps:
            raise ValueError("the simulator needs at least one app")
        if not all(self._apps.values()):
            raise ValueError("every app needs a non-empty token")
        if max_limit < 1 or not 0 <= default_limit <= max_limit:
            raise ValueError(
                f"need 1 <= max_limit and 0 <= default_limit <= max_limit, got "
                f"max_limit={max_limit}, default_limit={default_limit}"
            )
        if latency < 0:
            raise ValueError(f"latency must be >= 0, got {latency}")
        if rate_limit is not None and rate_limit <= 0:
            raise ValueError(f"rate_limit must be > 0 or None, got {rate_limit}")
        self._universe = CampaignUniverse(seed, tuple(self._apps))
        if sends_per_request < 0:
            raise ValueError(f"sends_per_request must be >= 0, got {sends_per_request}")
        self._now = start_of_utc_day() if now is None else require_aware(now, "now")
        # A running clock moves with real time from the moment `now` was last set; a still one
        # (the default) moves only when told, so tests can pin what "now" serves.
        self._clock_running = clock_running
        self._now_set_at = time.monotonic()
        self.sends_per_request = sends_per_request
        self._sent_live = 0
        self._host = host
        self._port = port
        self.max_limit = max_limit
        self.default_limit = default_limit
        self.latency = latency
        self._rate_limit = rate_limit
        self._auth_header = auth_header
        self._auth_scheme = auth_scheme
        self._faults = FaultPlan()
        self._requests: deque[RequestRecord] = deque(maxlen=10_000)
        self._buckets: dict[str, _TokenBucket] = {}
        self._extra: dict[str, list[dict[str, Any]]] = {}  # campaigns added while serving
        self._hidden: set[tuple[str, str]] = set()  # (app, campaign) no longer served
        self._lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        where = self.url if self._httpd is not None else "not started"
        return f"<SimulatorServer {where} seed={self.seed} now={self.now.isoformat()}>"

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind and serve from a daemon thread; returns self so it can be chained."""
        if self._httpd is not None:
            raise RuntimeError("simulator already started")
        httpd = _HTTPServer((self._host, self._port), self)
        thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"cinnox-simulator-{httpd.server_port}",
            daemon=True,
        )
        thread.start()
        self._httpd, self._thread = httpd, thread
        _log.info("CINNOX simulator serving on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and drop open keep-alive connections; safe to call twice."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._httpd = self._thread = None
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self if self._httpd is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- state -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. http://127.0.0.1:54321."""
        if self._httpd is None:
            raise RuntimeError("simulator not started")
        host = self._httpd.server_name
        host = f"[{host}]" if ":" in host else host  # IPv6 literals are bracketed in URLs
        return f"http://{host}:{self._httpd.server_port}"

    @property
    def apps(self) -> dict[str, str]:
        """App id -> token (a copy)."""
        return dict(self._apps)

    @property
    def seed(self) -> int:
        return self._universe.seed

    @property
    def universe(self) -> CampaignUniverse:
        return self._universe

    @property
    def now(self) -> datetime:
        """The simulated clock: nothing is sent at or after it; counters stand as at it."""
        with self._lock:
            return self._clock()

    @now.setter
    def now(self, value: datetime) -> None:
        aware = require_aware(value, "now")
        with self._lock:
            self._now, self._now_set_at = aware, time.monotonic()

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock by `delta` (may be negative); returns the new now."""
        with self._lock:
            self._now, self._now_set_at = self._clock() + delta, time.monotonic()
            return self._now

    @property
    def clock_running(self) -> bool:
        return self._clock_running

    @clock_running.setter
    def clock_running(self, running: bool) -> None:
        """Start or stop the clock where it stands."""
        with self._lock:
            self._now, self._now_set_at = self._clock(), time.monotonic()
            self._clock_running = running

    def _clock(self) -> datetime:
        # Callers hold self._lock.
        if not self._clock_running:
            return self._now
        return self._now + timedelta(seconds=time.monotonic() - self._now_set_at)

    # -- faults and the request log --------------------------------------------------------

    def add_fault(
        self,
        kind: FaultKind | str,
        *,
        times: int = 1,
        retry_after: str | None = None,
        app_id: str | None = None,
        offset: int | None = None,
        skip: int = 0,
        seconds: float | None = None,
    ) -> None:
        """Queue a fault for the next matching API requests; see `FaultRule`."""
        self._faults.add(FaultRule(parse_kind(kind), times, retry_after, app_id, offset, skip, seconds))

    def add_campaign(self, app_id: str, record: Mapping[str, Any]) -> None:
        """Serve `record` from now on too, in every window its `date` falls in (sorted by id)."""
        with self._lock:
            self._extra.setdefault(app_id, []).append(dict(record))

    def hide_campaign(self, app_id: str, campaign_id: str, hidden: bool = True) -> None:
        """Stop serving a campaign (as if CINNOX lost it), or serve it again with hidden=False."""
        with self._lock:
            if hidden:
                self._hidden.add((app_id, campaign_id))
            else:
                self._hidden.discard((app_id, campaign_id))

    def _send_live(self, app_id: str) -> None:
        """A sender that never stops: `sends_per_request` new campaigns, dated this instant."""
        now = self.now
        template = self._universe.campaigns(app_id, now - timedelta(days=30), now, now)[-1:]
        if not template:
            return
        for _ in range(self.sends_per_request):
            with self._lock:
                self._sent_live += 1
                number = self._sent_live
            sent = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            self.add_campaign(
                app_id, {**template[0], "id": f"live-{number:08d}", "date": sent, "campaignName": f"Live {number}"}
            )

    def _first_in_window(self, app_id: str, params: Mapping[str, str]) -> dict[str, Any] | None:
        """The campaign that sorts first in the requested window, if the query is good and it has one."""
        try:
            start, end, _, _ = self._parse_query(params)
        except _BadQuery:
            return None
        existing = self._records(app_id, start, end)
        return existing[0] if existing else None

    def _vanish_first(self, app_id: str, params: Mapping[str, str]) -> None:
        """The campaign that sorts first in the requested window stops being served."""
        first = self._first_in_window(app_id, params)
        if first is not None:
            self.hide_campaign(app_id, str(first["id"]))

    def _new_campaign(self, app_id: str, params: Mapping[str, str]) -> None:
        """A campaign that sorts first in the requested window, copied from its first one."""
        first = self._first_in_window(app_id, params)
        if first is None:
            return
        with self._lock:
            number = sum(len(extra) for extra in self._extra.values()) + 1
        record = {**first, "id": f"000000-late-{number:04d}", "campaignName": f"Late campaign {number}"}
        self.add_campaign(app_id, record)

    def campaigns(self, app_id: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Every campaign the API serves now for [start, end), added ones included, hidden ones not."""
        return self._records(app_id, start, end)

    def _records(self, app_id: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """The window's records including added campaigns, sorted by id (a fault path only)."""
        now = self.now
        records = self._universe.campaigns(app_id, start, end, now)
        with self._lock:
            extra = list(self._extra.get(app_id, ()))
        records += [r for r in extra if start <= parse_rfc3339(r["date"]) < min(end, now)]
        with self._lock:
            hidden = {campaign for app, campaign in self._hidden if app == app_id}
        records = [r for r in records if r["id"] not in hidden]
        records.sort(key=lambda record: str(record["id"]))
        return records

    def clear_faults(self) -> None:
        self._faults.clear()

    @property
    def faults(self) -> list[FaultRule]:
        """Rules not yet used up, with their remaining `times` and `skip` (copies)."""
        return self._faults.pending()

    @property
    def requests(self) -> list[RequestRecord]:
        """The API requests served so far, oldest first (the last 10,000)."""
        with self._lock:
            return list(self._requests)

    def reset_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def state(self) -> dict[str, Any]:
        """What `GET /_simulator/state` answers."""
        with self._lock:
            now, count = self._clock(), len(self._requests)
        return {
            "now": now.isoformat(),
            "seed": self.seed,
            "apps": list(self._apps),
            "faults": [rule.to_dict() for rule in self._faults.pending()],
            "requests": count,
        }

    # -- request handling (called from the handler threads) --------------------------------

    def _handle(self, method: str, path: str, query: str, headers: _Headers, body: bytes) -> Reply:
        if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            try:
                return self._control(method, path, body)
            except (ValueError, TypeError, OverflowError) as exc:
                return _json(400, {"code": 400, "message": str(exc)})
        return self._api(method, path, query, headers)

    def _api(self, method: str, path: str, query: str, headers: _Headers) -> Reply:
        params = dict(parse_qsl(query, keep_blank_values=True))
        match = API_PATH.fullmatch(path) if method == "GET" else None
        app_id = unquote(match["app_id"]) if match else None
        fault: FaultKind | None = None
        rate_limited = False
        if self.latency:
            time.sleep(self.latency)
        try:
            if app_id is None:
                message = f"method not found, method: {method} url: {path}"
                reply = _json(404, {"code": METHOD_NOT_FOUND, "message": message})
            elif (denied := self._authorize(app_id, headers.get(self._auth_header))) is not None:
                reply = denied
            else:
                rule = self._faults.take(app_id, _offset_for_matching(params))
                fault = None if rule is None else rule.kind
                canned = None if rule is None else canned_response(rule)
                if canned is not None:
                    reply = canned
                elif not self._within_rate(app_id):
                    # Retry-After: 1 because the bucket refills within a second.
                    reply = Reply(429, error_body(*THROTTLED), headers=(("Retry-After", "1"),))
                    rate_limited = True
                else:
                    if self.sends_per_request:
                        self._send_live(app_id)
                    if rule is not None and rule.kind is FaultKind.NEW_CAMPAIGN:
                        self._new_campaign(app_id, params)
                    if rule is not None and rule.kind is FaultKind.CAMPAIGN_VANISHES:
                        self._vanish_first(app_id, params)
                    if rule is not None and rule.kind is FaultKind.SLOW:
                        time.sleep(1.0 if rule.seconds is None else rule.seconds)
                    reply = self._summary(app_id, params, rule)
                    if rule is not None:
                        reply = distort(rule, reply)
        except Exception:  # a simulator bug must still answer, not leave the client hanging
            _log.exception("simulator failed on %s %s?%s", method, path, query)
            reply = _json(500, {"code": 500, "message": "simulator error; see its log"})
        record = RequestRecord(
            time.monotonic(),
            method,
            path,
            app_id,
            params,
            reply.status,
            fault,
            rate_limited,
        )
        with self._lock:
            self._requests.append(record)
        return reply

    def _authorize(self, app_id: str, header: str | None) -> Reply | None:
        """None when allowed; 401 for a missing or wrong token, 403 for another app's."""
        token = _token_from(header, self._auth_scheme)
        if token is None:
            return _json(401, {"code": 401, "message": "Unauthorized"})
        expected = self._apps.get(app_id)
        if expected is not None and _same(token, expected):
            return None
        if expected is None or any(_same(token, other) for other in self._apps.values()):
            return _json(403, {"code": 403, "message": "Forbidden"})
        return _json(401, {"code": 401, "message": "Unauthorized"})

    def _within_rate(self, app_id: str) -> bool:
        if self._rate_limit is None:
            return True
        with self._lock:
            bucket = self._buckets.setdefault(app_id, _TokenBucket(self._rate_limit))
        return bucket.take()

    def _summary(self, app_id: str, params: Mapping[str, str], rule: FaultRule | None = None) -> Reply:
        try:
            start, end, offset, limit = self._parse_query(params)
        except _BadQuery as exc:
            return _json(400, {"code": BAD_QUERY, "message": str(exc)})
        kind = None if rule is None else rule.kind
        with self._lock:
            has_extra = bool(self._extra.get(app_id)) or any(app == app_id for app, _ in self._hidden)
        if has_extra or kind is FaultKind.DUPLICATE_RECORD:
            records = self._records(app_id, start, end)
            total = len(records)
            first = max(0, offset - 1) if kind is FaultKind.DUPLICATE_RECORD else offset
            data = records[first : first + limit]
        else:
            total, data = self._universe.page(app_id, start, end, self.now, offset, limit)
        if kind is FaultKind.SHORT_PAGE:
            data = data[: max(1, limit // 2)]
        elif kind is FaultKind.TOTAL_CHANGES:
            total += 1
        elif kind is FaultKind.MALFORMED_RECORDS:
            data = [{**record, "delivered": "n/a"} for record in data]
        elif kind is FaultKind.UNKNOWN_FIELD:
            data = [{**record, "costPerMessage": 0.0042} for record in data]
        return _json(200, {"code": 0, "message": "OK", "total": total, "data": data})

    def _parse_query(self, params: Mapping[str, str]) -> tuple[datetime, datetime, int, int]:
        start_raw, end_raw = params.get("startAt", ""), params.get("endAt", "")
        if not start_raw or not end_raw:
            raise _BadQuery("missing one of startAt, endAt")
        try:
            start, end = parse_rfc3339(start_raw), parse_rfc3339(end_raw)
            to_us(start), to_us(end)  # out-of-range instants fail here, not mid-request
        except (ValueError, OverflowError):
            raise _BadQuery("Bad query") from None
        offset = _int_param(params, "offset", 0)
        limit = _int_param(params, "limit", self.default_limit)
        if end < start:
            raise _BadQuery("endAt is prior to startAt")
        if offset < 0:
            raise _BadQuery("negative offset")
        if limit < 0:
            raise _BadQuery("negative limit")
        if limit > self.max_limit:
            raise _BadQuery(f"exceed maximum limit {self.max_limit}")
        return start, end, offset, limit

    def _control(self, method: str, path: str, body: bytes) -> Reply:
        routes: dict[str, dict[str, Callable[[bytes], Reply]]] = {
            "/_simulator/state": {"GET": lambda _: _json(200, self.state())},
            "/_simulator/clock": {
                "GET": lambda _: _json(200, {"now": self.now.isoformat()}),
                "PUT": self._put_clock,
            },
            "/_simulator/faults": {
                "GET": lambda _: _json(200, {"faults": self._fault_dicts()}),
                "POST": self._post_fault,
                "DELETE": self._delete_faults,
            },
            "/_simulator/requests": {
                "GET": lambda _: _json(200, {"requests": self._request_dicts()}),
                "DELETE": self._delete_requests,
            },
        }
        methods = routes.get(path.rstrip("/"))
        if methods is None:
            known = ", ".join(routes)
            return _json(
                404,
                {"code": 404, "message": f"no control endpoint {path}; try {known}"},
            )
        handler = methods.get(method)
        if handler is None:
            allowed = ", ".join(methods)
            message = f"{method} not allowed on {path}; allowed: {allowed}"
            return _json(405, {"code": 405, "message": message}, (("Allow", allowed),))
        return handler(body)

    def _put_clock(self, body: bytes) -> Reply:
        payload = _json_object(body, '{"now": "2024-01-01T00:00:00Z"} or {"advance_seconds": 86400}')
        if set(payload) == {"now"} and isinstance(payload["now"], str):
            self.now = parse_rfc3339(payload["now"])
        elif (
            set(payload) == {"advance_seconds"}
            and isinstance(payload["advance_seconds"], int | float)
            and not isinstance(payload["advance_seconds"], bool)
        ):
            self.advance(timedelta(seconds=payload["advance_seconds"]))
        else:
            raise ValueError(
                'clock body must be {"now": "<RFC3339 with Z or an offset>"} or {"advance_seconds": <number>}'
            )
        return _json(200, {"now": self.now.isoformat()})

    def _post_fault(self, body: bytes) -> Reply:
        self._faults.add(FaultRule.from_dict(_json_object(body, '{"kind": "http_429"}')))
        return _json(201, {"faults": self._fault_dicts()})

    def _delete_faults(self, _: bytes) -> Reply:
        self.clear_faults()
        return _json(200, {"faults": []})

    def _delete_requests(self, _: bytes) -> Reply:
        self.reset_requests()
        return _json(200, {"requests": []})

    def _fault_dicts(self) -> list[dict[str, Any]]:
        return [rule.to_dict() for rule in self._faults.pending()]

    def _request_dicts(self) -> list[dict[str, Any]]:
        return [
            {
                "at": r.at,
                "method": r.method,
                "path": r.path,
                "app_id": r.app_id,
                "params": r.params,
                "status": r.status,
                "fault": None if r.fault is None else str(r.fault),
                "rate_limited": r.rate_limited,
            }
            for r in self.requests
        ]


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], simulator: SimulatorServer) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.simulator = simulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a DNS lookup that can stall for
        # seconds; the simulator only ever names itself by the address it bound.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (its timeout, a test closing early) is routine, not a crash
        # worth a traceback on stderr.
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            _log.debug("client %s went away: %r", client_address, error)
            return
        super().handle_error(request, client_address)

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        """Wake handler threads blocked on idle keep-alive connections."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so every answer carries Content-Length
    server_version = "CinnoxSimulator/1.0"
    timeout = 120  # an idle keep-alive connection frees its thread eventually
    # Headers and body leave in separate writes; with Nagle on, a keep-alive client's delayed
    # ACK would hold every body back ~40 ms.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def do_GET(self) -> None:
        body = self._read_body()
        parts = urlsplit(self.path)
        reply = self.server.simulator._handle(self.command, parts.path, parts.query, self.headers, body)
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        if reply.drop_after is None:
            self.wfile.write(reply.body)
            return
        # The connection dropped mid-body: the client holds a promise of more bytes than came.
        self.wfile.write(reply.body[: reply.drop_after])
        self.wfile.flush()
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        try:
            size = int(length)
        except ValueError:
            self.close_connection = True  # cannot tell where the next request starts
            return b""
        return self.rfile.read(size) if size > 0 else b""

    def date_time_string(self, timestamp: float | None = None) -> str:
        # The Date header tells the simulated time, as a real server's tells its own clock:
        # clients take the live edge of a read from it.
        return format_datetime(self.server.simulator.now.astimezone(UTC), usegmt=True)

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s %s", self.address_string(), format % args)


def _json(status: int, payload: object, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return Reply(status, body, "application/json", headers)


def _json_object(body: bytes, example: str) -> dict[str, Any]:
    try:
        payload = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"body is not JSON ({exc}); expected e.g. {example}") from None
    if not isinstance(payload, dict):
        raise TypeError(f"body must be a JSON object, e.g. {example}")
    return payload


def _int_param(params: Mapping[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if not _INTEGER.fullmatch(raw):
        raise _BadQuery("Bad query")
    try:
        return int(raw)
    except ValueError:  # more digits than int() accepts
        raise _BadQuery("Bad query") from None


def _offset_for_matching(params: Mapping[str, str]) -> int | None:
    raw = params.get("offset", "0")
    return int(raw) if _INTEGER.fullmatch(raw) and len(raw) < 20 else None


def _token_from(header: str | None, scheme: str) -> str | None:
    if not header:
        return None
    if not scheme:
        return header.strip() or None
    given, _, token = header.strip().partition(" ")
    # Auth schemes are case-insensitive (RFC 9110 section 11.1).
    if given.lower() != scheme.lower() or not token.strip():
        return None
    return token.strip()


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
