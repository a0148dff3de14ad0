"""devenv.stack fills in only what the environment leaves unset, and takes it back after."""

from __future__ import annotations

import socket

import httpx
import pytest

from devenv.stack import local_stack
from pipelines.settings import SettingsError


def test_unset_cinnox_settings_start_the_simulator_and_are_removed_after() -> None:
    environ = {"DATABASE_URL": "postgresql://warehouse@db.example/cinnox", "DAGSTER_HOME": "/srv/dagster"}
    with local_stack(environ) as stack:
        assert stack.simulator is not None
        assert not stack.embedded_database
        assert environ["CINNOX_BASE_URL"] == stack.simulator.url
        assert environ["CINNOX_APP_IDS"] == "sim-app-1,sim-app-2"
        token = environ["CINNOX_TOKEN_SIM_APP_1"]
        answer = httpx.get(
            f"{stack.simulator.url}/v1/api/apps/sim-app-1/data/sent-campaigns-summary",
            params={"startAt": "2026-01-01T00:00:00Z", "endAt": "2026-01-02T00:00:00Z"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert answer.status_code == 200
    assert environ == {"DATABASE_URL": "postgresql://warehouse@db.example/cinnox", "DAGSTER_HOME": "/srv/dagster"}


def test_a_configured_cinnox_is_left_alone() -> None:
    environ = {
        "DATABASE_URL": "postgresql://warehouse@db.example/cinnox",
        "CINNOX_BASE_URL": "https://cinnox.example",
        "CINNOX_APP_IDS": "acme",
        "CINNOX_TOKEN_ACME": "t",
    }
    before = dict(environ)
    with local_stack(environ) as stack:
        assert stack.simulator is None
        assert {k: v for k, v in environ.items() if k != "DAGSTER_HOME"} == before


def test_a_busy_simulator_port_falls_back_to_a_free_one() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with local_stack({"DATABASE_URL": "postgresql://x@/y"}, simulator_port=port) as stack:
            assert stack.simulator is not None
            assert not stack.simulator.url.endswith(f":{port}")


def test_app_ids_without_a_base_url_is_an_error_before_anything_starts() -> None:
    with pytest.raises(SettingsError, match="CINNOX_BASE_URL"), local_stack({"CINNOX_APP_IDS": "acme"}):
        pass
