"""`python -m cinnox.simulator` as a separate process, the way the demo and benchmarks run it."""

from __future__ import annotations

import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from cinnox.simulator import parse_rfc3339
from cinnox.simulator.__main__ import env_name

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("stop_with", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_until_signalled(stop_with: signal.Signals) -> None:
    command = [
        sys.executable,
        "-m",
        "cinnox.simulator",
        "--port",
        "0",
        "--apps",
        "acme.prod,sim-app-2",
        "--now",
        "2024-06-15T08:00:00+08:00",
        "--seed",
        "5",
    ]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while not lines or not lines[-1].startswith("CINNOX_TOKEN_SIM_APP_2="):
            lines.append(proc.stdout.readline())
            assert lines[-1], f"simulator exited early: {proc.stderr.read() if proc.stderr else ''}"
        settings = dict(line.strip().split("=", 1) for line in lines if line.startswith("CINNOX_"))
        assert settings["CINNOX_APP_IDS"] == "acme.prod,sim-app-2"
        assert settings["CINNOX_TOKEN_ACME_PROD"] == "sim-token-acme.prod"
        assert settings["CINNOX_TOKEN_SIM_APP_2"] == "sim-token-sim-app-2"
        base_url = settings["CINNOX_BASE_URL"]
        assert base_url in lines[0]

        response = httpx.get(
            f"{base_url}/v1/api/apps/acme.prod/data/sent-campaigns-summary",
            params={"startAt": "2024-06-13T00:00:00Z", "endAt": "2024-06-16T00:00:00Z", "limit": 200},
            headers={"Authorization": f"Bearer {settings['CINNOX_TOKEN_ACME_PROD']}"},
        )
        assert response.status_code == 200
        body = response.json()
        assert body["total"] > 0
        # --now was 2024-06-15T00:00Z, so nothing from the 15th onward.
        cutoff = datetime(2024, 6, 15, tzinfo=UTC)
        assert all(parse_rfc3339(record["date"]) < cutoff for record in body["data"])
        state = httpx.get(f"{base_url}/_simulator/state").json()
        assert state["now"] == "2024-06-15T00:00:00+00:00"
        assert state["seed"] == 5

        proc.send_signal(stop_with)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "stopped" in out


def test_cli_rejects_bad_arguments() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cinnox.simulator", "--now", "yesterday"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "--now" in result.stderr


@pytest.mark.parametrize(
    ("app_id", "name"),
    [
        ("sim-app-1", "CINNOX_TOKEN_SIM_APP_1"),
        ("acme.prod", "CINNOX_TOKEN_ACME_PROD"),
        ("Shop 42", "CINNOX_TOKEN_SHOP_42"),
    ],
)
def test_env_name(app_id: str, name: str) -> None:
    assert env_name(app_id) == name
