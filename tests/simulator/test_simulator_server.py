"""The simulator over real HTTP on loopback: contract, errors, faults, control endpoints."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from cinnox.simulator import DEFAULT_APPS, FaultKind, SimulatorServer, parse_rfc3339

PATH = "/v1/api/apps/{app_id}/data/sent-campaigns-summary"
NOW = datetime(2024, 6, 15, tzinfo=UTC)
DAY = timedelta(days=1)
START = datetime(2024, 6, 1, tzinfo=UTC)
WINDOW = {"startAt": "2024-06-01T00:00:00Z", "endAt": "2024-06-04T00:00:00Z"}


def auth(app_id: str = "sim-app-1") -> dict[str, str]:
    return {"Authorization": f"Bearer {DEFAULT_APPS[app_id]}"}


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorServer]:
    with SimulatorServer(now=NOW) as sim:
        yield sim


@pytest.fixture
def sim(server: SimulatorServer) -> Iterator[SimulatorServer]:
    # One server for the module; each test gets it back clean.
    yield server
    server.clear_faults()
    server.reset_requests()
    server.now = NOW


@pytest.fixture(scope="module")
def shared_client(server: SimulatorServer) -> Iterator[httpx.Client]:
    # One keep-alive client: building an httpx.Client (its TLS context) costs ~25 ms.
    with httpx.Client(base_url=server.url, timeout=10) as http:
        yield http


@pytest.fixture
def client(sim: SimulatorServer, shared_client: httpx.Client) -> httpx.Client:
    """No default headers: `get` sends the app's token, raw calls send none."""
    return shared_client


def get(client: httpx.Client, app_id: str = "sim-app-1", **params: Any) -> httpx.Response:
    return client.get(PATH.format(app_id=app_id), params=params, headers=auth(app_id))


def fetch_all(client: httpx.Client, limit: int, **window: str) -> tuple[list[dict[str, Any]], list[int]]:
    records: list[dict[str, Any]] = []
    totals: list[int] = []
    offset = 0
    while True:
        body = get(client, **window, offset=offset, limit=limit).json()
        totals.append(body["total"])
        records += body["data"]
        if len(body["data"]) < limit:
            return records, totals
        offset += limit


# -- the contract ---------------------------------------------------------------------------


def test_ok_envelope_and_headers(client: httpx.Client) -> None:
    response = get(client, **WINDOW)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    body = response.json()
    assert set(body) == {"code", "message", "total", "data"}
    assert (body["code"], body["message"]) == (0, "OK")
    assert len(body["data"]) == min(100, body["total"])  # default limit
    assert body["total"] > 100


def test_same_seed_and_now_give_identical_bodies_other_seed_differs() -> None:
    bodies = []
    for seed in (7, 7, 8):
        with SimulatorServer(seed=seed, now=NOW) as sim, httpx.Client(base_url=sim.url) as http:
            bodies.append(get(http, **WINDOW, limit=200).content)
    assert bodies[0] == bodies[1]
    assert bodies[0] != bodies[2]


def test_keys_dates_and_window_over_http(client: httpx.Client) -> None:
    # A window given with an offset means the same instants as in UTC.
    window = {"startAt": "2024-06-02T08:00:00+08:00", "endAt": "2024-06-03T00:00:00.000Z"}
    records, _ = fetch_all(client, 200, **window)
    start, end = parse_rfc3339(window["startAt"]), parse_rfc3339(window["endAt"])
    assert records
    for record in records:
        assert start <= parse_rfc3339(record["date"]) < end
        if record["channel"] == "SMS":
            assert "read" not in record
            assert "subject" not in record
            assert set(record["sender"]) == {"phone", "senderEID"}
        else:
            assert record["channel"] == "WhatsApp"
            assert set(record["sender"]) == {"phone", "channelName", "sourceName"}


def test_unencoded_plus_in_offsets_is_understood(client: httpx.Client) -> None:
    encoded = get(client, startAt="2024-06-02T08:00:00+08:00", endAt="2024-06-03T08:00:00+08:00").json()
    raw = client.get(
        f"{PATH.format(app_id='sim-app-1')}?startAt=2024-06-02T08:00:00+08:00&endAt=2024-06-03T08:00:00+08:00",
        headers=auth(),
    ).json()
    assert raw == encoded


def test_day_windows_partition_a_multi_day_window(client: httpx.Client) -> None:
    whole, _ = fetch_all(client, 200, **WINDOW)
    by_day: list[dict[str, Any]] = []
    for i in range(3):
        day, _ = fetch_all(client, 200, startAt=iso(START + i * DAY), endAt=iso(START + (i + 1) * DAY))
        by_day += day
    ids = [r["id"] for r in by_day]
    assert len(ids) == len(set(ids))
    assert sorted(by_day, key=lambda r: r["id"]) == whole


def test_paging_reproduces_the_full_list(client: httpx.Client) -> None:
    full = get(client, **WINDOW, limit=200).json()
    assert full["total"] <= 200, "window chosen to fit one max page"
    paged, totals = fetch_all(client, 37, **WINDOW)
    assert paged == full["data"]
    assert len({r["id"] for r in paged}) == len(paged) == full["total"]
    assert set(totals) == {full["total"]}


def test_limit_zero_and_offset_past_the_end(client: httpx.Client) -> None:
    total = get(client, **WINDOW).json()["total"]
    assert get(client, **WINDOW, limit=0).json() == {"code": 0, "message": "OK", "total": total, "data": []}
    assert get(client, **WINDOW, offset=total + 5).json()["data"] == []


def test_empty_window_is_ok(client: httpx.Client) -> None:
    body = get(client, startAt="2024-06-01T00:00:00Z", endAt="2024-06-01T00:00:00Z").json()
    assert (body["total"], body["data"]) == (0, [])


def test_nothing_is_sent_at_or_after_now(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.now = datetime(2024, 6, 2, 12, 34, 56, 789000, tzinfo=UTC)
    records, _ = fetch_all(client, 200, **WINDOW)
    assert records
    assert max(parse_rfc3339(r["date"]) for r in records) < sim.now
    assert get(client, startAt=iso(sim.now), endAt="2024-06-10T00:00:00Z").json()["total"] == 0


def test_counters_settle_as_the_clock_moves(sim: SimulatorServer, client: httpx.Client) -> None:
    window = {"startAt": "2024-06-14T00:00:00Z", "endAt": "2024-06-15T00:00:00Z"}
    seen: dict[str, dict[str, Any]] = {}
    for days in range(12):
        sim.now = NOW + days * DAY
        records, _ = fetch_all(client, 200, **window)
        for record in records:
            assert 0 <= record["delivered"] <= record["totalRecipients"]
            if record["channel"] == "WhatsApp":
                assert record["replied"] <= record["read"] <= record["delivered"]
                assert record["pending"] == record["totalRecipients"] - record["delivered"] - record["failed"]
            before = seen.get(record["id"])
            if before is not None:
                assert record["delivered"] >= before["delivered"]
                assert record.get("read", 0) >= before.get("read", 0)
                assert record.get("failed", 0) >= before.get("failed", 0)
            seen[record["id"]] = record
    assert all(r["pending"] == 0 for r in seen.values() if r["channel"] == "WhatsApp")


# -- bad queries, auth, routing --------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "missing one of startAt, endAt"),
        ({"startAt": "2024-06-01T00:00:00Z"}, "missing one of startAt, endAt"),
        ({"endAt": "2024-06-01T00:00:00Z"}, "missing one of startAt, endAt"),
        ({"startAt": "", "endAt": "2024-06-01T00:00:00Z"}, "missing one of startAt, endAt"),
        ({"startAt": "2024-06-02T00:00:00Z", "endAt": "2024-06-01T00:00:00Z"}, "endAt is prior to startAt"),
        # Same instant as the start, written in another offset: not prior.
        ({**WINDOW, "offset": "-1"}, "negative offset"),
        ({**WINDOW, "limit": "-5"}, "negative limit"),
        ({**WINDOW, "limit": "201"}, "exceed maximum limit 200"),
        ({"startAt": "2024-06-01", "endAt": "2024-06-02T00:00:00Z"}, "Bad query"),
        # No offset: RFC3339 requires one, and a guess would shift the window.
        ({"startAt": "2024-06-01T00:00:00", "endAt": "2024-06-02T00:00:00Z"}, "Bad query"),
        ({"startAt": "2024-02-30T00:00:00Z", "endAt": "2024-06-02T00:00:00Z"}, "Bad query"),
        ({**WINDOW, "offset": "ten"}, "Bad query"),
        ({**WINDOW, "limit": "1.5"}, "Bad query"),
        ({**WINDOW, "limit": ""}, "Bad query"),
    ],
)
def test_bad_queries(client: httpx.Client, params: dict[str, str], message: str) -> None:
    response = get(client, **params)
    assert response.status_code == 400
    assert response.json() == {"code": 6451000, "message": message}


def test_same_instant_in_two_offsets_is_not_prior(client: httpx.Client) -> None:
    response = get(client, startAt="2024-06-01T08:00:00+08:00", endAt="2024-06-01T00:00:00Z")
    assert response.status_code == 200


def test_max_limit_is_configurable() -> None:
    with SimulatorServer(now=NOW, max_limit=50, default_limit=20) as sim, httpx.Client(base_url=sim.url) as http:
        assert len(get(http, **WINDOW).json()["data"]) == 20
        assert get(http, **WINDOW, limit=51).json()["message"] == "exceed maximum limit 50"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer nope"}, 401),
        ({"Authorization": "sim-token-sim-app-1"}, 401),  # no scheme
        ({"Authorization": "Basic sim-token-sim-app-1"}, 401),
        ({"Authorization": "Bearer"}, 401),
        ({"Authorization": "Bearer sim-token-sim-app-2"}, 403),  # another app's token
        ({"Authorization": "bearer sim-token-sim-app-1"}, 200),  # schemes are case-insensitive
    ],
)
def test_auth(client: httpx.Client, headers: dict[str, str], status: int) -> None:
    response = client.get(PATH.format(app_id="sim-app-1"), params=WINDOW, headers=headers)
    assert response.status_code == status
    if status != 200:
        expected = "Unauthorized" if status == 401 else "Forbidden"
        assert response.json() == {"code": status, "message": expected}
        assert "sim-token" not in response.text


def test_unknown_app_is_forbidden(client: httpx.Client) -> None:
    response = client.get(PATH.format(app_id="no-such-app"), params=WINDOW, headers=auth())
    assert response.status_code == 403
    assert response.json() == {"code": 403, "message": "Forbidden"}


def test_auth_header_and_scheme_are_configurable() -> None:
    with SimulatorServer(now=NOW, auth_header="X-Api-Key", auth_scheme="") as sim:
        url = sim.url + PATH.format(app_id="sim-app-1")
        assert httpx.get(url, params=WINDOW, headers={"X-Api-Key": "sim-token-sim-app-1"}).status_code == 200
        assert httpx.get(url, params=WINDOW, headers=auth()).status_code == 401


def test_unknown_paths_and_methods(client: httpx.Client) -> None:
    response = client.get("/v1/api/apps/sim-app-1/data/nope")
    assert response.status_code == 404
    assert response.json() == {
        "code": 6450001,
        "message": "method not found, method: GET url: /v1/api/apps/sim-app-1/data/nope",
    }
    response = client.post(PATH.format(app_id="sim-app-1"), headers=auth())
    assert response.status_code == 404
    assert "method: POST" in response.json()["message"]


def test_keep_alive_reuses_one_connection(sim: SimulatorServer, client: httpx.Client) -> None:
    ports = set()
    for _ in range(5):
        response = get(client, **WINDOW, limit=1)
        assert response.http_version == "HTTP/1.1"
        assert response.headers.get("connection") != "close"
        stream = response.extensions["network_stream"]
        ports.add(stream.get_extra_info("client_addr"))
    assert len(ports) == 1


def test_request_log(sim: SimulatorServer, client: httpx.Client) -> None:
    get(client, **WINDOW, limit=3)
    get(client, "sim-app-2", **WINDOW)
    log = sim.requests
    assert [(r.app_id, r.status, r.fault) for r in log] == [("sim-app-1", 200, None), ("sim-app-2", 200, None)]
    assert log[0].params == {**WINDOW, "limit": "3"}
    assert log[0].at <= log[1].at <= time.monotonic()
    sim.reset_requests()
    assert sim.requests == []


def test_now_must_be_aware(sim: SimulatorServer) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        sim.now = datetime(2024, 1, 1)  # naive on purpose
    with pytest.raises(ValueError, match="timezone-aware"):
        SimulatorServer(now=datetime(2024, 1, 1))


def test_default_now_is_today_midnight_utc() -> None:
    sim = SimulatorServer()
    today = datetime.now(UTC).date()
    assert sim.now == datetime(today.year, today.month, today.day, tzinfo=UTC)


def test_latency_delays_answers() -> None:
    with SimulatorServer(now=NOW, latency=0.2) as sim, httpx.Client(base_url=sim.url) as http:
        began = time.monotonic()
        assert get(http, **WINDOW, limit=1).status_code == 200
        assert time.monotonic() - began >= 0.2


# -- faults ---------------------------------------------------------------------------------


@pytest.mark.parametrize("retry_after", ["1", "Wed, 21 Oct 2015 07:28:00 GMT", None])
def test_429_passes_retry_after_through(sim: SimulatorServer, client: httpx.Client, retry_after: str | None) -> None:
    sim.add_fault(FaultKind.HTTP_429, retry_after=retry_after)
    response = get(client, **WINDOW)
    assert response.status_code == 429
    assert response.json() == {"code": 6451010, "message": "Too many requests"}
    assert response.headers.get("retry-after") == retry_after
    assert get(client, **WINDOW).status_code == 200


def test_faults_are_consumed_after_times(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.add_fault(FaultKind.HTTP_500, times=2)
    sim.add_fault(FaultKind.HTTP_503)
    sim.add_fault(FaultKind.THROTTLED_6451010)
    answers = [get(client, **WINDOW) for _ in range(5)]
    assert [r.status_code for r in answers] == [500, 500, 503, 429, 200]
    assert answers[0].json() == {"code": 6451001, "message": "Bad response from the service"}
    assert answers[2].text == "Service Unavailable"
    assert answers[3].json()["code"] == 6451010
    assert [r.fault for r in sim.requests] == [
        FaultKind.HTTP_500,
        FaultKind.HTTP_500,
        FaultKind.HTTP_503,
        FaultKind.THROTTLED_6451010,
        None,
    ]
    assert sim.faults == []


def test_fault_filters_by_app_offset_and_skip(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.add_fault(FaultKind.HTTP_500, app_id="sim-app-2")
    assert get(client, **WINDOW).status_code == 200
    assert get(client, "sim-app-2", **WINDOW).status_code == 500
    assert get(client, "sim-app-2", **WINDOW).status_code == 200

    sim.add_fault(FaultKind.HTTP_503, offset=100)
    assert get(client, **WINDOW).status_code == 200  # offset defaults to 0
    assert get(client, **WINDOW, offset=100).status_code == 503
    assert get(client, **WINDOW, offset=100).status_code == 200

    sim.add_fault(FaultKind.HTTP_429, skip=2, times=2)
    assert [get(client, **WINDOW).status_code for _ in range(5)] == [200, 200, 429, 429, 200]


def test_faults_come_after_auth(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.add_fault(FaultKind.HTTP_500)
    assert client.get(PATH.format(app_id="sim-app-1"), params=WINDOW).status_code == 401
    assert len(sim.faults) == 1


def test_faults_come_before_query_validation(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.add_fault(FaultKind.HTTP_503)
    assert get(client).status_code == 503
    assert get(client).status_code == 400


def test_clear_faults(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.add_fault(FaultKind.HTTP_500, times=3)
    sim.clear_faults()
    assert get(client, **WINDOW).status_code == 200


def test_rate_limit() -> None:
    with SimulatorServer(now=NOW, rate_limit=5) as sim, httpx.Client(base_url=sim.url) as http:
        statuses = [get(http, **WINDOW, limit=1) for _ in range(12)]
        throttled = [r for r in statuses if r.status_code == 429]
        assert 4 <= len(throttled) <= 8
        assert throttled[0].headers["retry-after"] == "1"
        assert throttled[0].json() == {"code": 6451010, "message": "Too many requests"}
        assert any(r.rate_limited for r in sim.requests)
        # Buckets are per app.
        assert get(http, "sim-app-2", **WINDOW, limit=1).status_code == 200
        time.sleep(1.0)
        assert get(http, **WINDOW, limit=1).status_code == 200


# -- control endpoints ----------------------------------------------------------------------


def test_control_state_clock_and_faults(sim: SimulatorServer, client: httpx.Client) -> None:
    control = client  # no auth header: the control plane only listens on loopback
    state = control.get("/_simulator/state").json()
    assert state["now"] == "2024-06-15T00:00:00+00:00"
    assert state["apps"] == ["sim-app-1", "sim-app-2"]
    assert (state["faults"], state["requests"]) == ([], 0)

    window = {"startAt": "2024-06-14T00:00:00Z", "endAt": "2024-06-16T00:00:00Z"}
    before = get(client, **window).json()["total"]
    moved = control.put("/_simulator/clock", json={"now": "2024-06-15T12:00:00+08:00"})
    assert moved.json() == {"now": "2024-06-15T04:00:00+00:00"}
    assert sim.now == datetime(2024, 6, 15, 4, tzinfo=UTC)
    assert get(client, **window).json()["total"] > before
    control.put("/_simulator/clock", json={"advance_seconds": 86400})
    assert sim.now == datetime(2024, 6, 16, 4, tzinfo=UTC)

    added = control.post("/_simulator/faults", json={"kind": "http_429", "retry_after": 2, "app_id": "sim-app-1"})
    assert added.status_code == 201
    assert added.json()["faults"] == [
        {
            "kind": "http_429",
            "times": 1,
            "retry_after": "2",
            "app_id": "sim-app-1",
            "offset": None,
            "skip": 0,
            "seconds": None,
        }
    ]
    control.post("/_simulator/faults", json={"kind": "HTTP_500", "times": 3})
    assert len(control.get("/_simulator/state").json()["faults"]) == 2
    response = get(client, **window)
    assert (response.status_code, response.headers["retry-after"]) == (429, "2")
    assert control.delete("/_simulator/faults").json() == {"faults": []}
    assert get(client, **window).status_code == 200
    assert control.get("/_simulator/state").json()["requests"] == 4


@pytest.mark.parametrize(
    ("method", "path", "body", "message"),
    [
        ("PUT", "/_simulator/clock", b"not json", "not JSON"),
        ("PUT", "/_simulator/clock", b"[1]", "JSON object"),
        ("PUT", "/_simulator/clock", b'{"now": "2024-06-15T00:00:00"}', "RFC3339"),
        ("PUT", "/_simulator/clock", b'{"when": "2024-06-15T00:00:00Z"}', '"now"'),
        ("POST", "/_simulator/faults", b'{"kind": "meteor"}', "unknown fault kind"),
        ("POST", "/_simulator/faults", b'{"times": 2}', "missing fault field: kind"),
        ("POST", "/_simulator/faults", b'{"kind": "http_500", "times": 0}', "times must be"),
        ("POST", "/_simulator/faults", b'{"kind": "http_500", "offset": -1}', "offset must be"),
        ("POST", "/_simulator/faults", b'{"kind": "http_500", "colour": "red"}', "unknown fault field"),
    ],
)
def test_bad_control_input(
    sim: SimulatorServer, client: httpx.Client, method: str, path: str, body: bytes, message: str
) -> None:
    response = client.request(method, path, content=body)
    assert response.status_code == 400
    assert message in response.json()["message"]
    assert sim.now == NOW
    assert sim.faults == []


def test_unknown_control_routes(client: httpx.Client) -> None:
    assert client.get("/_simulator/nope").status_code == 404
    response = client.post("/_simulator/state")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"


def test_stop_is_idempotent_and_frees_the_port() -> None:
    sim = SimulatorServer(now=NOW).start()
    url = sim.url
    with httpx.Client(base_url=url) as http:
        assert get(http, **WINDOW, limit=1).status_code == 200
        sim.stop()
        sim.stop()
        with pytest.raises(httpx.TransportError):
            get(http, **WINDOW, limit=1)
    with pytest.raises(RuntimeError, match="not started"):
        _ = sim.url
