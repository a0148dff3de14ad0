"""A hostile CINNOX and a careless operator: one case per edge a single answer, record or
setting used to turn into a leaked secret, a failed window or a run that hangs.

Real HTTP on loopback (a tiny server below answers whatever each case needs), the real
PostgreSQL, and a real Dagster run where the run's outcome is the point.
"""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import Engine, func, select, text

from cinnox import CinnoxClient, CinnoxRequestError, CinnoxRetryLater, CinnoxUnavailable, RetryPolicy, Window
from pipelines.definitions import build_definitions
from pipelines.settings import SettingsError
from tests.loopback import LoopbackServer, send_json
from tests.pipelines.conftest import run_asset_range
from warehouse.db import retry_transient
from warehouse.models import FactSentCampaign, SentCampaignReject, SourceField

APP = "hostile-app"
TOKEN = "tok-hostile-4b1d"
DAY = "2026-06-14"
WINDOW = Window(datetime(2026, 6, 14, tzinfo=UTC), datetime(2026, 6, 15, tzinfo=UTC))
KEY = dg.AssetKey(["cinnox", "sent_campaigns", "hostile_app"])


def _envelope(records: list[str], total: int | None = None) -> bytes:
    """A page whose records are JSON texts as given: some hostile ones are not what json.dumps writes."""
    count = len(records) if total is None else total
    return ('{"code": 0, "data": [' + ",".join(records) + f'], "total": {count}}}').encode()


def _good(index: int, **changes: object) -> dict[str, object]:
    record: dict[str, object] = {
        "id": f"good-{index:02d}",
        "date": f"{DAY}T{index % 24:02d}:00:00.000Z",
        "campaignName": f"Campaign {index}",
        "channel": "SMS",
        "createdBy": "Ada",
        "sender": {"phone": "+85230001234", "senderEID": "eid-ada"},
        "totalRecipients": 100,
        "delivered": 90,
    }
    record.update(changes)
    return record


def _noise(length: int) -> str:
    """Incompressible text: what a btree entry cannot hold beyond ~2.7 KB."""
    return base64.b64encode(random.Random(length).randbytes(length)).decode()[:length]


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(lambda handler: send_json(handler, 200, _envelope([]))) as hostile:
        yield hostile


@pytest.fixture
def run(
    server: LoopbackServer, warehouse: Engine, warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., dg.ExecuteInProcessResult]:
    import pipelines.assets

    monkeypatch.setattr(pipelines.assets, "RETRY_SECONDS", 0)
    environment = {
        "DATABASE_URL": warehouse_url,
        "CINNOX_BASE_URL": server.url,
        "CINNOX_APP_IDS": APP,
        "CINNOX_TOKEN_HOSTILE_APP": TOKEN,
        "CINNOX_TIMEOUT_SECONDS": "1",
        "CINNOX_MAX_ATTEMPTS": "2",
        "CINNOX_BACKOFF_MS": "10",
        "CINNOX_REQUESTS_PER_SECOND": "0",
        "CINNOX_RETRY_BUDGET_SECONDS": "30",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    def execute(instance: dg.DagsterInstance | None = None, **extra: str) -> dg.ExecuteInProcessResult:
        for name, value in extra.items():
            monkeypatch.setenv(name, value)
        return run_asset_range(KEY, DAY, DAY, instance)

    return execute


def _failure(result: dg.ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert failures, "the run failed without a step failure"
    error = failures[-1].step_failure_data.error
    return error.to_string() if error else ""


def _retried(result: dg.ExecuteInProcessResult) -> bool:
    return any(e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY for e in result.all_events)


# --- Secrets ------------------------------------------------------------------------------


def test_credentials_in_the_base_url_are_refused_without_echoing_them(
    run: Callable[..., dg.ExecuteInProcessResult], server: LoopbackServer
) -> None:
    host = server.url.removeprefix("http://")
    result = run(CINNOX_BASE_URL=f"http://operator:hunter2-pass@{host}")
    assert not result.success
    events = str([str(e) for e in result.all_events])
    assert "CINNOX_BASE_URL carries credentials" in events
    assert "hunter2-pass" not in events
    assert "operator" not in events
    assert server.requests == 0


def test_a_token_with_a_trailing_newline_is_refused_before_any_request(
    run: Callable[..., dg.ExecuteInProcessResult], server: LoopbackServer
) -> None:
    result = run(CINNOX_TOKEN_HOSTILE_APP=TOKEN + "\r\n")
    assert not result.success
    events = str([str(e) for e in result.all_events])
    assert "CINNOX_TOKEN_HOSTILE_APP holds a character an HTTP header cannot carry" in events
    assert TOKEN not in events
    assert server.requests == 0
    with pytest.raises(ValueError, match="holds a character an HTTP header cannot carry") as caught:
        CinnoxClient(server.url, APP, TOKEN + "\x00")
    assert TOKEN not in str(caught.value)


# --- One record never fails a window ------------------------------------------------------

DEEP = '{"a":' * 1000 + "1" + "}" * 1000
WIDE = {f"extra_{n}": n for n in range(17_000)}  # more field paths than one statement can bind
# (record as JSON text, what must become of it: "loaded" or a piece of the reject reason)
HOSTILE: list[tuple[str, str]] = [
    (json.dumps(_good(30, date="0001-01-01T00:30:00+01:00")), "outside the years 1 to 9999"),
    (json.dumps(_good(31, date="9999-12-31T23:30:00-01:00")), "outside the years 1 to 9999"),
    (json.dumps(_good(32, delivered="1" * 5000)), "delivered '111"),
    (json.dumps(_good(33, delivered="1" * 400 + ".0")), "is larger than 2147483647"),
    (json.dumps(_good(34))[:-1] + ', "nested": ' + DEEP + "}", "nested more than 255 levels deep"),
    (json.dumps(_good(35, **{"bad\u0000key": 1})), "the name of field 'bad\\x00key' holds a NUL"),
    (json.dumps(_good(36, sender={"phone\u0000": "1"})), "the name of field 'sender.phone\\x00' holds a NUL"),
    (json.dumps(_good(37, subject="a\u0000b")), "subject holds a NUL character"),
    (json.dumps(_good(38, id=_noise(3000))), "is longer than 512 characters"),
    (json.dumps(_good(39, **{_noise(3000): 1})), "is longer than 512 characters"),
    (json.dumps(_good(40))[:-1] + ', "delivered": NaN}', "delivered is 'NaN'"),
    (json.dumps(_good(41))[:-1] + ', "ratio": -Infinity}', "ratio is '-Infinity'"),
    # Long incompressible free text is loaded: its unique keys go through a hash.
    (json.dumps(_good(42, createdBy=_noise(3000), subject=_noise(3001))), "loaded"),
    (json.dumps(_good(43, sender={"phone": _noise(3002), "channelName": _noise(3003)})), "loaded"),
    (json.dumps(_good(44, **WIDE)), "loaded"),
    # Free text is data, byte for byte.
    (json.dumps(_good(45, campaignName="  Both sides  ", createdBy="   ", subject="")), "loaded"),
    (json.dumps(_good(46, id="  good-46  ")), "loaded"),
]


def test_no_single_record_fails_the_window(
    run: Callable[..., dg.ExecuteInProcessResult], server: LoopbackServer, warehouse: Engine
) -> None:
    good = [json.dumps(_good(index)) for index in range(20)]
    page = _envelope(good[:10] + [record for record, _ in HOSTILE] + good[10:])
    server.answer = lambda handler: send_json(handler, 200, page)
    result = run(CINNOX_MAX_REJECT_SHARE="1", CINNOX_PAGE_SIZE="100")
    assert result.success, _failure(result)
    assert server.requests == 2  # the probe, then the page read once, not refused and retried
    expected_rejects = [reason for _, reason in HOSTILE if reason != "loaded"]
    with warehouse.connect() as conn:
        campaigns = set(conn.scalars(select(FactSentCampaign.campaign_id)))
        reasons = [r for rs in conn.scalars(select(SentCampaignReject.reasons)) for r in rs]
        names = conn.execute(
            select(FactSentCampaign.campaign_name, FactSentCampaign.campaign_id).where(
                FactSentCampaign.campaign_id == "good-45"
            )
        ).one()
        staff = conn.scalar(text("SELECT staff_name FROM cinnox.dim_staff WHERE staff_name = '   '"))
        fields = conn.scalar(select(func.count()).select_from(SourceField))
    assert {f"good-{i:02d}" for i in range(20)} <= campaigns
    assert {"good-42", "good-43", "good-44", "good-45", "  good-46  "} <= campaigns
    assert names.campaign_name == "  Both sides  "
    assert staff == "   "
    assert fields > 17_000
    assert len(reasons) == len(expected_rejects)
    for piece in expected_rejects:
        assert any(piece in reason for reason in reasons), (piece, reasons)


# --- Nothing hangs, nothing floods ----------------------------------------------------------


def test_a_dripping_server_cannot_hold_a_request_past_the_timeout(server: LoopbackServer) -> None:
    body = _envelope([json.dumps(_good(1))])

    def drip(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        for byte in body:  # one byte every 0.2 s: each read is well within the timeout
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            time.sleep(0.2)

    server.answer = drip
    # The target is 3 x the timeout; the deadline holds it to 1 x.
    _read_is_cut_at_the_timeout(server, r"took longer than 1s in all \(CINNOX_TIMEOUT_SECONDS\)")


def test_a_server_dripping_its_headers_cannot_hold_a_request_either(server: LoopbackServer) -> None:
    def drip_headers(handler: BaseHTTPRequestHandler) -> None:
        for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: " + b"x" * 100:
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            time.sleep(0.2)

    server.answer = drip_headers
    _read_is_cut_at_the_timeout(server, r"ReadTimeout: the response took longer than 1s in all")


def _read_is_cut_at_the_timeout(server: LoopbackServer, error: str) -> None:
    """A read with a 1 s timeout and one attempt fails with `error` within 1.5 s."""
    with CinnoxClient(server.url, APP, TOKEN, timeout=1.0, retry=RetryPolicy(max_attempts=1)) as client:
        started = time.monotonic()
        with pytest.raises(CinnoxUnavailable, match=error):
            list(client.sent_campaign_pages(WINDOW))
        elapsed = time.monotonic() - started
    assert elapsed < 1.5, elapsed


BOMB_CHILD = """
import resource, sys
from datetime import UTC, datetime
from cinnox import CinnoxClient, CinnoxRequestError, RetryPolicy, Window
window = Window(datetime(2026, 6, 14, tzinfo=UTC), datetime(2026, 6, 15, tzinfo=UTC))
with CinnoxClient(sys.argv[1], "hostile-app", "tok", retry=RetryPolicy(max_attempts=1)) as client:
    try:
        list(client.sent_campaign_pages(window))
        print("no error")
    except CinnoxRequestError as exc:
        print(exc)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, "MB")
"""


def _gzip_bomb(megabytes: int) -> bytes:
    """A gzip body of `megabytes` MiB of zeros, made of one full-flushed block repeated: built
    in milliseconds. (Its trailer is not that of the whole; a capped client never gets there.)"""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"\0" * (1 << 20)
    head = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    return head + block * (megabytes - 1) + compressor.flush()


def test_a_gzip_bomb_is_cut_off_at_the_size_cap(server: LoopbackServer) -> None:
    bomb = _gzip_bomb(1600)  # 1.6 GB once inflated
    assert len(bomb) < 2_000_000
    server.answer = lambda handler: send_json(handler, 200, bomb, {"Content-Encoding": "gzip"})
    done = subprocess.run(
        [sys.executable, "-c", BOMB_CHILD, server.url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    assert "response body too large: more than 16777216 bytes once decompressed (CINNOX_MAX_RESPONSE_BYTES)" in (
        done.stdout
    )
    peak = int(done.stdout.split()[-2])
    assert peak < 400, done.stdout
    assert server.requests == 1  # not retried


def test_the_merge_lock_is_waited_for_with_a_timeout_naming_its_holder(
    run: Callable[..., dg.ExecuteInProcessResult], server: LoopbackServer, warehouse: Engine
) -> None:
    server.answer = lambda handler: send_json(handler, 200, _envelope([json.dumps(_good(1))]))
    with warehouse.connect() as holder:
        holder.execute(text("SET application_name = 'someones-psql'"))
        holder.execute(select(func.pg_advisory_xact_lock(func.hashtextextended("cinnox.load:" + APP, 0))))
        started = time.monotonic()
        result = run(CINNOX_MERGE_LOCK_TIMEOUT_SECONDS="1")
        elapsed = time.monotonic() - started
        holder.rollback()
    assert not result.success
    message = _failure(result)
    assert "waited 1s for the app's merge lock (CINNOX_MERGE_LOCK_TIMEOUT_SECONDS)" in message
    assert "application 'someones-psql'" in message
    assert elapsed < 30
    with warehouse.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(FactSentCampaign)) == 0


def test_a_retry_after_beyond_the_budget_fails_at_once_saying_when(
    run: Callable[..., dg.ExecuteInProcessResult], server: LoopbackServer
) -> None:
    server.answer = lambda handler: send_json(
        handler, 429, b'{"code": 6451010, "message": "slow down"}', {"Retry-After": "86400"}
    )
    started = time.monotonic()
    with dg.instance_for_test() as instance:
        result = run(instance=instance)
        assert time.monotonic() - started < 20
        assert not result.success
        # The schedule starts no run of the app before CINNOX's time, and does again after it.
        schedule = build_definitions(os.environ).resolve_schedule_def("cinnox_refresh_schedule")
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=datetime.now(UTC)) as context:
            tick = schedule.evaluate_tick(context)
        assert not tick.run_requests
        assert "CINNOX asked to come back later" in str(tick.skip_message)
        later = datetime.now(UTC) + timedelta(days=2)
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=later) as context:
            assert schedule.evaluate_tick(context).run_requests
    message = _failure(result)
    assert "CINNOX asked to wait 86400s (Retry-After), longer than the retry budget" in message
    assert "come back after 20" in message
    assert not _retried(result)  # neither the client nor Dagster asks again
    assert server.requests == 1
    with CinnoxClient(server.url, APP, TOKEN) as client, pytest.raises(CinnoxRetryLater) as caught:
        list(client.sent_campaign_pages(WINDOW))
    assert (caught.value.retry_at - datetime.now(UTC)).total_seconds() > 86000


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("CINNOX_REQUESTS_PER_SECOND", "-1", "CINNOX_REQUESTS_PER_SECOND: '-1' is not a whole number >= 0"),
        ("CINNOX_APP_IDS", " , ", "CINNOX_APP_IDS is set but names no app"),
        ("CINNOX_APP_IDS", "", "CINNOX_APP_IDS is set but names no app"),
    ],
)
def test_settings_that_would_silently_misbehave_are_refused(setting: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_definitions({"CINNOX_APP_IDS": APP, setting: value})


def test_checks_ask_again_when_the_database_drops_them(warehouse: Engine) -> None:
    """As in a PostgreSQL restart: the server ends the session (admin shutdown) mid-check."""
    attempts = []

    def query() -> int:
        attempts.append(1)
        with warehouse.connect() as conn:
            if len(attempts) == 1:
                conn.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
            return int(conn.scalar(text("SELECT 41 + 1")) or 0)

    assert retry_transient(query, budget=30) == 42
    assert len(attempts) == 2

    # A real error is not asked again.
    def wrong() -> int:
        attempts.append(1)
        with warehouse.connect() as conn:
            return int(conn.scalar(text("SELECT 1 / 0")) or 0)

    with pytest.raises(Exception, match="division by zero"):
        retry_transient(wrong, budget=30)
    assert len(attempts) == 3


def test_an_oversize_page_fails_the_run_clearly_without_retries(
    run: Callable[..., dg.ExecuteInProcessResult], server: LoopbackServer
) -> None:
    page = _envelope([json.dumps(_good(i, campaignName=_noise(2000))) for i in range(20)])
    server.answer = lambda handler: send_json(handler, 200, page)
    result = run(CINNOX_MAX_RESPONSE_BYTES="10000")
    assert not result.success
    assert "more than 10000 bytes once decompressed (CINNOX_MAX_RESPONSE_BYTES); not retried" in _failure(result)
    assert not _retried(result)
    assert server.requests == 1
    with CinnoxClient(server.url, APP, TOKEN, max_response_bytes=10_000) as client, pytest.raises(CinnoxRequestError):
        list(client.sent_campaign_pages(WINDOW))
