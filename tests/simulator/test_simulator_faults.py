"""The faults that spoil a normal answer, seen from a plain HTTP client on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from cinnox.simulator import DEFAULT_APPS, FaultKind, SimulatorServer

PATH = "/v1/api/apps/sim-app-1/data/sent-campaigns-summary"
NOW = datetime(2024, 6, 15, tzinfo=UTC)
WINDOW = {"startAt": "2024-06-01T00:00:00Z", "endAt": "2024-06-04T00:00:00Z"}
HEADERS = {"Authorization": f"Bearer {DEFAULT_APPS['sim-app-1']}"}


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    # A server per test: NEW_CAMPAIGN changes the data for good.
    with SimulatorServer(now=NOW) as server:
        yield server


def get(sim: SimulatorServer, timeout: float = 10, **params: Any) -> httpx.Response:
    with httpx.Client(base_url=sim.url, timeout=timeout) as http:
        return http.get(PATH, params={**WINDOW, **params}, headers=HEADERS)


def clean_page(sim: SimulatorServer, offset: int, limit: int) -> dict[str, Any]:
    body: dict[str, Any] = get(sim, offset=offset, limit=limit).json()
    return body


@pytest.mark.parametrize(
    ("kind", "code"), [(FaultKind.THROTTLED_IN_BODY, 6451010), (FaultKind.BAD_RESPONSE_IN_BODY, 6451001)]
)
def test_error_codes_inside_a_200_body(sim: SimulatorServer, kind: FaultKind, code: int) -> None:
    sim.add_fault(kind)
    response = get(sim)
    assert response.status_code == 200
    assert response.json()["code"] == code
    assert "data" not in response.json()


def test_html_instead_of_json(sim: SimulatorServer) -> None:
    sim.add_fault(FaultKind.HTML_BODY)
    response = get(sim)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html"
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_truncated_json_is_a_complete_http_answer_with_half_a_body(sim: SimulatorServer) -> None:
    whole = get(sim, limit=5).content
    sim.add_fault(FaultKind.TRUNCATED_JSON)
    response = get(sim, limit=5)
    assert response.status_code == 200
    assert response.content == whole[: len(whole) // 2]


def test_a_dropped_connection_cuts_the_body_short(sim: SimulatorServer) -> None:
    sim.add_fault(FaultKind.DROP_CONNECTION)
    with pytest.raises(httpx.RemoteProtocolError):
        get(sim, limit=5)
    assert get(sim, limit=5).status_code == 200  # the next connection is fine


def test_slow_answers_outlast_a_short_timeout(sim: SimulatorServer) -> None:
    sim.add_fault(FaultKind.SLOW, seconds=0.5)
    with pytest.raises(httpx.ReadTimeout):
        get(sim, timeout=0.1)


def test_duplicate_record_starts_the_page_one_early(sim: SimulatorServer) -> None:
    first = clean_page(sim, 0, 4)["data"]
    second = clean_page(sim, 4, 4)["data"]
    sim.add_fault(FaultKind.DUPLICATE_RECORD, offset=4)
    shifted = clean_page(sim, 4, 4)["data"]
    assert shifted == [first[-1], *second[:3]]


def test_short_page_and_changed_total(sim: SimulatorServer) -> None:
    clean = clean_page(sim, 0, 6)
    sim.add_fault(FaultKind.SHORT_PAGE)
    sim.add_fault(FaultKind.TOTAL_CHANGES)
    short = clean_page(sim, 0, 6)
    assert short["data"] == clean["data"][:3]
    assert short["total"] == clean["total"]
    assert clean_page(sim, 0, 6)["total"] == clean["total"] + 1


def test_a_new_campaign_appears_first_and_stays(sim: SimulatorServer) -> None:
    before = clean_page(sim, 0, 3)
    sim.add_fault(FaultKind.NEW_CAMPAIGN)
    during = clean_page(sim, 0, 3)
    after = clean_page(sim, 0, 3)
    assert during == after
    assert during["total"] == before["total"] + 1
    assert during["data"][1:] == before["data"][:2]
    assert during["data"][0]["id"].startswith("000000-late-")
    assert during["data"][0]["date"] == before["data"][0]["date"]


def test_faults_from_the_control_endpoint_take_seconds(sim: SimulatorServer) -> None:
    with httpx.Client(base_url=sim.url) as http:
        added = http.post("/_simulator/faults", json={"kind": "slow", "seconds": 0.2}).json()
        assert added["faults"][0]["seconds"] == 0.2
        refused = http.post("/_simulator/faults", json={"kind": "slow", "seconds": "soon"})
        assert refused.status_code == 400


def test_malformed_records_and_unknown_fields(sim: SimulatorServer) -> None:
    clean = clean_page(sim, 0, 4)["data"]
    sim.add_fault(FaultKind.MALFORMED_RECORDS)
    sim.add_fault(FaultKind.UNKNOWN_FIELD)
    assert clean_page(sim, 0, 4)["data"] == [{**r, "delivered": "n/a"} for r in clean]
    assert clean_page(sim, 0, 4)["data"] == [{**r, "costPerMessage": 0.0042} for r in clean]


def test_a_hidden_campaign_is_not_served_until_shown_again(sim: SimulatorServer) -> None:
    clean = clean_page(sim, 0, 5)
    sim.hide_campaign("sim-app-1", clean["data"][1]["id"])
    hidden = clean_page(sim, 0, 5)
    assert hidden["total"] == clean["total"] - 1
    assert hidden["data"][:4] == [clean["data"][0], *clean["data"][2:5]]
    sim.hide_campaign("sim-app-1", clean["data"][1]["id"], hidden=False)
    assert clean_page(sim, 0, 5) == clean
