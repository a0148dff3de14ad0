"""The CINNOX client against the simulator on loopback: paging, retries, clear failures."""

from __future__ import annotations

import logging
import socket
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from cinnox import (
    CinnoxAuthError,
    CinnoxClient,
    CinnoxRequestError,
    CinnoxUnavailable,
    ExtractionStats,
    RetryPolicy,
    Window,
)
from cinnox.simulator import DEFAULT_APPS, FaultKind, SimulatorServer

APP = "sim-app-1"
TOKEN = DEFAULT_APPS[APP]
WEEK = Window(datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 8, tzinfo=UTC))


class Sleeps(list[float]):
    """Records the client's waits instead of sleeping them, so retry tests take no time."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client_for(
    sim: SimulatorServer, *, token: str = TOKEN, sleeps: Sleeps | None = None, **kwargs: object
) -> CinnoxClient:
    return CinnoxClient(sim.url, APP, token, sleep=sleeps if sleeps is not None else Sleeps(), **kwargs)  # type: ignore[arg-type]


def test_pages_stream_every_campaign_of_the_window_once(simulator: SimulatorServer) -> None:
    expected = simulator.universe.campaigns(APP, WEEK.start, WEEK.end, simulator.now)
    stats = ExtractionStats()
    with client_for(simulator, page_size=25) as client:
        pages = list(client.sent_campaign_pages(WEEK, stats))
    records = [record for page in pages for record in page.records]
    assert records == expected
    assert [page.offset for page in pages] == list(range(0, len(expected), 25))
    assert stats.pages == len(pages) == -(-len(expected) // 25)
    assert stats.records == stats.api_total == len(expected)
    assert stats.retries == 0


def test_pages_are_fetched_lazily(simulator: SimulatorServer) -> None:
    with client_for(simulator, page_size=10) as client:
        pages = client.sent_campaign_pages(WEEK)
        assert simulator.requests == []
        next(pages)
        assert len(simulator.requests) == 1


def test_query_sent_to_cinnox(simulator: SimulatorServer) -> None:
    with client_for(simulator, page_size=50) as client:
        next(client.sent_campaign_pages(WEEK))
    (request,) = simulator.requests
    assert request.params == {
        "startAt": "2026-06-01T00:00:00.000Z",
        "endAt": "2026-06-08T00:00:00.000Z",
        "offset": "0",
        "limit": "50",
    }


def test_empty_window_is_one_request(simulator: SimulatorServer) -> None:
    future = Window(simulator.now + timedelta(days=1), simulator.now + timedelta(days=2))
    with client_for(simulator) as client:
        pages = list(client.sent_campaign_pages(future))
    assert [len(page.records) for page in pages] == [0]


def test_429_with_retry_after_then_500_then_success(simulator: SimulatorServer) -> None:
    simulator.add_fault(FaultKind.HTTP_429, retry_after="2")
    simulator.add_fault(FaultKind.HTTP_500)
    sleeps, stats = Sleeps(), ExtractionStats()
    with client_for(simulator, sleeps=sleeps, page_size=200) as client:
        page = next(client.sent_campaign_pages(WEEK, stats))
    assert [r.status for r in simulator.requests] == [429, 500, 200]
    assert sleeps[0] == 2.0  # Retry-After honoured
    assert 0 < sleeps[1] <= RetryPolicy().backoff_base * 2  # exponential backoff for the 500
    assert stats.retries == 2
    assert page.attempts == 3
    assert len(page.records) == 200


def test_retry_after_as_http_date_and_503(simulator: SimulatorServer) -> None:
    simulator.add_fault(FaultKind.HTTP_503, retry_after="Wed, 21 Oct 2015 07:28:00 GMT")  # in the past
    sleeps = Sleeps()
    with client_for(simulator, sleeps=sleeps) as client:
        next(client.sent_campaign_pages(WEEK))
    assert sleeps == [RetryPolicy().min_delay]  # a past date is no reason to hammer the API


def test_retries_are_bounded_and_the_error_says_everything(simulator: SimulatorServer) -> None:
    simulator.add_fault(FaultKind.HTTP_500, times=10)
    sleeps = Sleeps()
    with (
        client_for(simulator, sleeps=sleeps, retry=RetryPolicy(max_attempts=3)) as client,
        pytest.raises(CinnoxUnavailable) as caught,
    ):
        list(client.sent_campaign_pages(WEEK))
    message = str(caught.value)
    assert len(simulator.requests) == 3
    assert len(sleeps) == 2
    for part in (APP, "2026-06-01T00:00:00.000Z", "offset 0", "HTTP 500", "6451001", "Bad response from the service"):
        assert part in message
    assert caught.value.api_code == 6451001


def test_throttling_on_a_later_page_retries_that_page_only(simulator: SimulatorServer) -> None:
    simulator.add_fault(FaultKind.THROTTLED_6451010, offset=20, retry_after="1")
    with client_for(simulator, page_size=20) as client:
        records = [r for page in client.sent_campaign_pages(WEEK) for r in page.records]
    offsets = [r.params["offset"] for r in simulator.requests]
    assert offsets[:3] == ["0", "20", "20"]
    assert len(records) == len({r["id"] for r in records})


def test_bad_query_fails_at_once_naming_app_window_and_cinnox_message(simulator: SimulatorServer) -> None:
    sleeps = Sleeps()
    # The simulator's maximum is 200: CINNOX answers 6451000 "exceed maximum limit".
    with client_for(simulator, sleeps=sleeps, page_size=500) as client, pytest.raises(CinnoxRequestError) as caught:
        list(client.sent_campaign_pages(WEEK))
    assert len(simulator.requests) == 1
    assert sleeps == []
    message = str(caught.value)
    for part in (APP, "2026-06-01T00:00:00.000Z", "HTTP 400", "6451000", "exceed maximum limit 200"):
        assert part in message
    assert not isinstance(caught.value, CinnoxAuthError)


@pytest.mark.parametrize(
    ("token", "status"),
    [("not-the-token", 401), (DEFAULT_APPS["sim-app-2"], 403)],  # wrong, and another app's
)
def test_refused_token_fails_at_once_without_printing_it(
    simulator: SimulatorServer, token: str, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with client_for(simulator, token=token) as client, pytest.raises(CinnoxAuthError) as caught:
        list(client.sent_campaign_pages(WEEK))
    assert len(simulator.requests) == 1
    assert caught.value.status_code == status
    assert APP in str(caught.value)
    assert f"HTTP {status}" in str(caught.value)
    for text in (str(caught.value), repr(caught.value), repr(client), caplog.text):
        assert token not in text


def test_unreachable_server_is_retried_then_reported() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sleeps = Sleeps()
    client = CinnoxClient(f"http://127.0.0.1:{port}", APP, TOKEN, retry=RetryPolicy(max_attempts=2), sleep=sleeps)
    with client, pytest.raises(CinnoxUnavailable, match="ConnectError") as caught:
        list(client.sent_campaign_pages(WEEK))
    assert len(sleeps) == 1
    assert "no response" in str(caught.value)


def test_timeout_is_retried(simulator: SimulatorServer) -> None:
    slow = SimulatorServer(now=simulator.now, latency=0.5).start()
    try:
        with (
            CinnoxClient(
                slow.url, APP, TOKEN, timeout=0.1, retry=RetryPolicy(max_attempts=2), sleep=Sleeps()
            ) as client,
            pytest.raises(CinnoxUnavailable, match="ReadTimeout"),
        ):
            next(client.sent_campaign_pages(WEEK))
    finally:
        slow.stop()


# Narrow unit cases of envelope handling, where a real server cannot easily misbehave this way.


def mock_client(handler: httpx.MockTransport, **kwargs: object) -> CinnoxClient:
    return CinnoxClient("https://cinnox.test", APP, TOKEN, transport=handler, sleep=Sleeps(), **kwargs)  # type: ignore[arg-type]


def test_throttle_code_inside_a_200_body_is_retried_not_loaded() -> None:
    answers = iter(
        [
            httpx.Response(200, json={"code": 6451010, "message": "Too many requests"}),
            httpx.Response(200, json={"code": 0, "data": [{"id": "a"}], "total": 1}),
        ]
    )
    with mock_client(httpx.MockTransport(lambda request: next(answers))) as client:
        (page,) = client.sent_campaign_pages(WEEK)
    assert page.records == [{"id": "a"}]
    assert page.attempts == 2


def test_html_error_page_is_retried() -> None:
    answers = iter(
        [
            httpx.Response(200, text="<html>502 Bad Gateway</html>"),
            httpx.Response(200, json={"data": [], "total": 0}),
        ]
    )
    with mock_client(httpx.MockTransport(lambda request: next(answers))) as client:
        (page,) = client.sent_campaign_pages(WEEK)
    assert page.attempts == 2


def test_missing_records_key_names_the_setting() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"result": []}))
    with mock_client(transport) as client, pytest.raises(CinnoxRequestError, match="CINNOX_RECORDS_KEY"):
        list(client.sent_campaign_pages(WEEK))


def test_without_total_paging_stops_at_a_short_page() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params["offset"])
        return httpx.Response(200, json={"data": [{"id": str(i)} for i in range(offset, min(offset + 10, 25))]})

    with mock_client(httpx.MockTransport(handler), page_size=10) as client:
        pages = list(client.sent_campaign_pages(WEEK))
    assert [len(p.records) for p in pages] == [10, 10, 5]


def test_token_goes_in_the_configured_header_only() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"data": [], "total": 0})

    with mock_client(httpx.MockTransport(handler), auth_header="X-App-Token", auth_scheme="") as client:
        list(client.sent_campaign_pages(WEEK))
    assert seen[0].headers["X-App-Token"] == TOKEN
    assert "Authorization" not in seen[0].headers
    assert TOKEN not in str(seen[0].url)


def test_constructor_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="http"):
        CinnoxClient("ftp://x", APP, TOKEN)
    with pytest.raises(CinnoxAuthError, match=APP):
        CinnoxClient("https://x", APP, "")
    with pytest.raises(ValueError, match="page size"):
        CinnoxClient("https://x", APP, TOKEN, page_size=0)


def test_ids_are_judged_byte_for_byte_in_paging() -> None:
    from cinnox._client import _record_key

    assert _record_key({"id": " a "}) == " a "
    assert _record_key({"id": "a"}) != _record_key({"id": " a "})
    assert _record_key({"id": ""}) is None
