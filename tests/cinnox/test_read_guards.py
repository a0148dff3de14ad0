"""A read that cannot end or would end short, against a real HTTP server on loopback: a server
that ignores `offset` is stopped within a few requests, and a `total` that is too low does not
cut a read short or mark campaigns missing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from sqlalchemy import Engine, func, select

from cinnox import CinnoxClient, CinnoxPaginationDrift, ExtractionStats, Window
from tests.loopback import LoopbackServer, send_json
from warehouse.load import LedgerKey
from warehouse.load.chunks import load_window
from warehouse.models import FactSentCampaign

WINDOW = Window(datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 2, tzinfo=UTC))


def campaign(number: int) -> dict[str, Any]:
    sent = WINDOW.start + timedelta(minutes=number)
    return {
        "id": f"c-{number:05d}",
        "date": sent.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "campaignName": f"Campaign {number}",
        "channel": "SMS",
        "sender": {"phone": "+85200000000"},
        "totalRecipients": 10,
        "delivered": 9,
    }


class _Hostile:
    """What the server does wrong: ignore `offset`, or under-report `total`."""

    def __init__(self, records: list[dict[str, Any]], *, total: int, ignore_offset: bool = False) -> None:
        self.records, self.total, self.ignore_offset = records, total, ignore_offset
        self.requests = 0


@pytest.fixture
def hostile() -> Iterator[tuple[str, _Hostile]]:
    state = _Hostile([], total=0)

    def answer(handler: BaseHTTPRequestHandler) -> None:
        state.requests += 1
        params = dict(parse_qsl(urlsplit(handler.path).query))
        offset = 0 if state.ignore_offset else int(params.get("offset", "0"))
        limit = int(params.get("limit", "100"))
        body = json.dumps({"code": 0, "total": state.total, "data": state.records[offset : offset + limit]})
        send_json(handler, 200, body.encode())

    with LoopbackServer(answer) as server:
        yield server.url, state


def test_a_server_that_ignores_offset_is_stopped_within_a_few_requests(hostile: tuple[str, _Hostile]) -> None:
    url, state = hostile
    state.records, state.total, state.ignore_offset = [campaign(n) for n in range(100)], 10**12, True
    with CinnoxClient(url, "app", "token", max_reads=4) as client, pytest.raises(CinnoxPaginationDrift) as raised:
        client.read_chunk(WINDOW, ExtractionStats())
    assert "brought no record not already read" in str(raised.value)
    assert "ignore `offset`" in str(raised.value)
    assert state.requests <= 8  # two pages a read, four reads; Dagster's two retries make 24


def test_a_total_that_is_too_low_does_not_cut_the_read_short(hostile: tuple[str, _Hostile], warehouse: Engine) -> None:
    url, state = hostile
    state.records, state.total = [campaign(n) for n in range(300)], 300
    with CinnoxClient(url, "app", "token") as client:
        own_clock = client.read_clock
        first = load_window(warehouse, client, WINDOW, LedgerKey("app", "first", WINDOW))
        assert client.read_clock is own_clock  # the warehouse's clock was the load's only
    assert first.result.inserted == 300
    state.total = 200  # CINNOX now under-counts: the full pages still lead on to every record
    with CinnoxClient(url, "app", "token") as client:
        second = load_window(warehouse, client, WINDOW, LedgerKey("app", "second", WINDOW))
    assert second.result.records == 300
    assert second.result.marked_missing == 0
    with warehouse.connect() as conn:
        missing = conn.scalar(select(func.count()).where(FactSentCampaign.missing_at_source_since.is_not(None)))
    assert missing == 0
