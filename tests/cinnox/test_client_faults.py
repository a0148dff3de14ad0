"""The client against every simulator fault on loopback: each one ends with every campaign
of the window read (the last version of each id), or with a clear error."""

from __future__ import annotations

import ssl
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cinnox import (
    CinnoxClient,
    CinnoxPaginationDrift,
    CinnoxUnavailable,
    ExtractionStats,
    RateLimiter,
    RetryPolicy,
    Window,
    is_loopback_url,
)
from cinnox.simulator import DEFAULT_APPS, FaultKind, SimulatorServer
from tests.loopback import LoopbackServer, send_json

APP = "sim-app-1"
TOKEN = DEFAULT_APPS[APP]
WINDOW = Window(datetime(2026, 6, 10, tzinfo=UTC), datetime(2026, 6, 12, tzinfo=UTC))
PAGE = 10
# Tiny waits: every retry in these tests sleeps for real, against the real server.
FAST = RetryPolicy(max_attempts=4, backoff_base=0.01, backoff_max=0.02, min_delay=0.01, max_retry_after=0.05)


class FakeTime:
    """A clock that moves only when the code under test sleeps: budgets without waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def read_all(sim: SimulatorServer, stats: ExtractionStats, **kwargs: Any) -> dict[str, dict[str, Any]]:
    """Every record read, the last version of each id winning (as the loader keeps them)."""
    options: dict[str, Any] = {"page_size": PAGE, "retry": FAST, "timeout": 0.5, **kwargs}
    with CinnoxClient(sim.url, APP, TOKEN, **options) as client:
        return {r["id"]: r for page in client.sent_campaign_pages(WINDOW, stats) for r in page.records}


# Each fault hits the second page (offset 10) of the first read, so paging is under way.
FAULTS: list[tuple[str, dict[str, Any]]] = [
    ("429 with Retry-After", {"kind": FaultKind.HTTP_429, "retry_after": "0"}),
    ("429 without Retry-After", {"kind": FaultKind.HTTP_429}),
    ("6451010 in a 200 body", {"kind": FaultKind.THROTTLED_IN_BODY}),
    ("6451001 in a 200 body", {"kind": FaultKind.BAD_RESPONSE_IN_BODY}),
    ("500 with 6451001", {"kind": FaultKind.HTTP_500, "times": 2}),
    ("503 from a proxy", {"kind": FaultKind.HTTP_503}),
    ("slower than the timeout", {"kind": FaultKind.SLOW, "seconds": 0.8}),
    ("connection dropped mid-body", {"kind": FaultKind.DROP_CONNECTION}),
    ("truncated JSON", {"kind": FaultKind.TRUNCATED_JSON}),
    ("HTML instead of JSON", {"kind": FaultKind.HTML_BODY}),
    ("short page before the end", {"kind": FaultKind.SHORT_PAGE}),
]
DRIFTS: list[tuple[str, dict[str, Any]]] = [
    ("new campaign while paging", {"kind": FaultKind.NEW_CAMPAIGN}),
    ("same record on two pages", {"kind": FaultKind.DUPLICATE_RECORD}),
    ("total changes between pages", {"kind": FaultKind.TOTAL_CHANGES}),
]


@pytest.mark.parametrize(("name", "fault"), FAULTS, ids=[n for n, _ in FAULTS])
def test_transient_faults_end_with_every_campaign(simulator: SimulatorServer, name: str, fault: dict[str, Any]) -> None:
    expected = {r["id"]: r for r in simulator.universe.campaigns(APP, WINDOW.start, WINDOW.end, simulator.now)}
    simulator.add_fault(**fault, offset=PAGE)
    stats = ExtractionStats()
    assert read_all(simulator, stats) == expected
    assert simulator.faults == []  # the fault did fire
    assert stats.window_records == len(expected)
    assert stats.reads == 1
    if fault["kind"] is not FaultKind.SHORT_PAGE:
        assert stats.retries == fault.get("times", 1)


@pytest.mark.parametrize(("name", "fault"), DRIFTS, ids=[n for n, _ in DRIFTS])
def test_paging_drift_is_healed_by_reading_again(simulator: SimulatorServer, name: str, fault: dict[str, Any]) -> None:
    simulator.add_fault(**fault, offset=PAGE)
    stats = ExtractionStats()
    records = read_all(simulator, stats)
    # Whatever the window holds after the fault (a new campaign stays), nothing is missing.
    expected = {r["id"]: r for r in simulator.universe.campaigns(APP, WINDOW.start, WINDOW.end, simulator.now)}
    if fault["kind"] is FaultKind.NEW_CAMPAIGN:
        assert len(records) == len(expected) + 1
        assert {k: v for k, v in records.items() if k in expected} == expected
    else:
        assert records == expected
    assert stats.reads >= 2
    assert stats.drift
    assert stats.drift[0].startswith(f"{WINDOW} read 1: ")
    assert stats.window_records == len(records)


def test_drift_that_never_settles_is_reported_not_lost(simulator: SimulatorServer) -> None:
    simulator.add_fault(FaultKind.DUPLICATE_RECORD, offset=PAGE, times=100)
    stats = ExtractionStats()
    with pytest.raises(CinnoxPaginationDrift) as raised:
        read_all(simulator, stats, max_reads=3)
    message = str(raised.value)
    assert APP in message
    assert str(WINDOW) in message
    assert "came twice" in message
    assert stats.reads == 3
    assert isinstance(raised.value, CinnoxUnavailable)  # transient: Dagster retries the run


def test_retries_stop_at_the_time_budget_before_the_attempt_budget(simulator: SimulatorServer) -> None:
    clock = FakeTime()
    simulator.add_fault(FaultKind.HTTP_429, retry_after="4", times=100)
    policy = RetryPolicy(max_attempts=50, max_elapsed=10.0)
    with (
        CinnoxClient(simulator.url, APP, TOKEN, retry=policy, sleep=clock.sleep, clock=clock.monotonic) as client,
        pytest.raises(CinnoxUnavailable) as raised,
    ):
        list(client.sent_campaign_pages(WINDOW))
    assert clock.sleeps == [4.0, 4.0]  # a third wait would pass 10 s
    assert len(simulator.requests) == 3
    message = str(raised.value)
    assert "gave up after 3 attempts" in message
    assert f"window {WINDOW}, offset 0: HTTP 429, code 6451010: Too many requests" in message
    assert "'sim-app-1'" in message


def test_retry_after_zero_and_missing_never_loop_tightly(simulator: SimulatorServer) -> None:
    clock = FakeTime()
    simulator.add_fault(FaultKind.HTTP_429, retry_after="0", times=2)
    simulator.add_fault(FaultKind.THROTTLED_IN_BODY, times=2)
    policy = RetryPolicy(max_attempts=5, min_delay=0.05)
    with CinnoxClient(simulator.url, APP, TOKEN, retry=policy, sleep=clock.sleep, clock=clock.monotonic) as client:
        list(client.sent_campaign_pages(WINDOW))
    assert len(clock.sleeps) == 4
    assert all(wait >= 0.05 for wait in clock.sleeps)


def test_the_rate_limiter_spaces_requests_from_many_threads() -> None:
    clock = FakeTime()
    lock = threading.Lock()

    def sleep(seconds: float) -> None:
        with lock:
            clock.sleeps.append(seconds)

    limiter = RateLimiter(4, clock=clock.monotonic, sleep=sleep)
    threads = [threading.Thread(target=limiter.acquire) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # The clock stood still: the 8 callers got the slots 0, 0.25, ..., 1.75 s, one each.
    assert sorted(clock.sleeps) == [0.25 * n for n in range(1, 8)]
    assert limiter.waited == sum(0.25 * n for n in range(1, 8))


def test_the_client_waits_for_the_shared_limiter_and_counts_it(simulator: SimulatorServer) -> None:
    clock = FakeTime()
    limiter = RateLimiter(2, clock=clock.monotonic, sleep=clock.sleep)
    stats = ExtractionStats()
    with CinnoxClient(simulator.url, APP, TOKEN, page_size=PAGE, rate_limiter=limiter) as client:
        pages = list(client.sent_campaign_pages(WINDOW, stats))
    assert len(pages) > 2
    assert clock.sleeps == [0.5] * (len(pages) - 1)
    assert stats.rate_limit_wait_seconds == pytest.approx(0.5 * (len(pages) - 1))


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:8765", True),
        ("http://127.8.0.1", True),
        ("http://localhost:1", True),
        ("http://[::1]:80", True),
        ("http://cinnox.example.com", False),
        ("http://10.0.0.1", False),
        ("http://127.0.0.1.example.com", False),
    ],
)
def test_loopback_urls(url: str, loopback: bool) -> None:
    assert is_loopback_url(url) is loopback


def test_plain_http_is_refused_off_loopback_unless_allowed() -> None:
    with pytest.raises(ValueError, match="plain http to a host that is not loopback") as raised:
        CinnoxClient("http://api.cinnox.example", APP, TOKEN)
    assert TOKEN not in str(raised.value)
    CinnoxClient("http://api.cinnox.example", APP, TOKEN, allow_plain_http=True).close()
    CinnoxClient("https://api.cinnox.example", APP, TOKEN).close()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """An HTTPS server on loopback with a self-signed certificate nobody trusts by default."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with LoopbackServer(
        lambda handler: send_json(handler, 200, b'{"code":0,"total":0,"data":[]}'), tls=context
    ) as server:
        yield server.url, cert


def test_tls_certificates_are_verified(tls_server: tuple[str, Path]) -> None:
    url, cert = tls_server
    one_try = RetryPolicy(max_attempts=1)
    with CinnoxClient(url, APP, TOKEN, retry=one_try) as client, pytest.raises(CinnoxUnavailable) as raised:
        list(client.sent_campaign_pages(WINDOW))
    assert "CERTIFICATE_VERIFY_FAILED" in str(raised.value)
    # Trust can be added with a CA bundle; there is no switch that takes verification away.
    with CinnoxClient(url, APP, TOKEN, retry=one_try, ca_bundle=str(cert)) as client:
        assert [page.records for page in client.sent_campaign_pages(WINDOW)] == [[]]
