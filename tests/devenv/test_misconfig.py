"""Every expected mistake, through the real `make` target: a few lines that name the cause, no secret.

Each case runs `make <target>` as a newcomer would, against a real PostgreSQL (the session's
embedded server), the simulator on loopback, a port held by a listener of the test's own and
a closed port for CINNOX. It asserts a non-zero exit, at most 15 lines of output, the cause
in the last 3 lines, no password or token anywhere, and a bounded time.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from cinnox.simulator import SimulatorServer
from devenv.dev import one_dev_per_instance

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "pw-Secret-4711"
TOKEN = "tok-Secret-0815"
MAX_LINES = 15
MAX_SECONDS = 60  # most take 3 to 8 s: Python, Dagster's import, one refused connection


@dataclass
class Case:
    target: list[str]  # make's arguments: the target and its variables
    env: dict[str, str]
    cause: list[str]  # each must be in the last 3 lines
    secrets: list[str] = field(default_factory=lambda: [PASSWORD, TOKEN])


@pytest.fixture(scope="module")
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def held_port() -> Iterator[int]:
    """A loopback port a dummy listener holds for the whole module."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


@pytest.fixture(scope="module")
def base_env() -> Iterator[dict[str, str]]:
    """Nothing configured, as on a fresh clone; Dagster and any embedded data in a temp folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CINNOX_", "DATABASE_URL", "DAGSTER_", "VERBOSE"))}
    folder = Path(tempfile.mkdtemp(prefix="cinnox-misconfig-"))
    (folder / "dagster").mkdir()
    # Storage under the folder itself; telemetry off as in the project's own dagster.yaml.
    (folder / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env["DAGSTER_HOME"] = str(folder / "dagster")
    env["EMBEDDED_PGDATA"] = str(folder / "pgdata")
    env.pop("MAKEFLAGS", None)
    try:
        yield env
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def server_url(postgres_server_url: str) -> str:
    """The test server with a password in the URL: it must never be printed."""
    return make_url(postgres_server_url).set(password=PASSWORD).render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def wrong_token_simulator() -> Iterator[SimulatorServer]:
    with SimulatorServer() as sim:
        yield sim


def run_case(case: Case, base_env: dict[str, str]) -> tuple[list[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        ["make", "--no-print-directory", *case.target],
        cwd=ROOT,
        env={**base_env, **case.env},
        capture_output=True,
        text=True,
        timeout=MAX_SECONDS * 3,
    )
    seconds = time.monotonic() - started
    output = done.stdout + done.stderr
    lines = [line for line in output.splitlines() if line.strip()]
    where = f"make {' '.join(case.target)} ({seconds:.1f}s):\n{output}"
    assert done.returncode != 0, where
    assert len(lines) <= MAX_LINES, where
    tail = "\n".join(lines[-3:])
    for cause in case.cause:
        assert cause in tail, where
    for secret in case.secrets:
        assert secret not in output, where
    assert "Traceback" not in output, where
    assert seconds < MAX_SECONDS, where
    return lines, seconds


@pytest.fixture(scope="module")
def database(create_database: Callable[[], str]) -> str:
    """An empty database the cases that reach CINNOX migrate, with a password in its URL."""
    return make_url(create_database()).set(password=PASSWORD).render_as_string(hide_password=False)


def _cases(server_url: str, closed_port: int, held_port: int, database: str, sim: SimulatorServer) -> dict[str, Case]:
    server = make_url(server_url)
    down = f"postgresql://warehouse:{PASSWORD}@127.0.0.1:{closed_port}/cinnox"
    cinnox = {"CINNOX_APP_IDS": "acme-hk", "CINNOX_TOKEN_ACME_HK": TOKEN}
    return {
        "run: database down": Case(
            ["run"], {"DATABASE_URL": down}, [f"127.0.0.1:{closed_port}", "DATABASE_URL", "Connection refused"]
        ),
        "run: no such database": Case(
            ["run"],
            {"DATABASE_URL": server.set(database="no_such_db").render_as_string(hide_password=False)},
            ['database "no_such_db" does not exist', "DATABASE_URL"],
        ),
        "run: unknown role": Case(
            ["run"],
            {"DATABASE_URL": server.set(username="no_such_role").render_as_string(hide_password=False)},
            ['role "no_such_role" does not exist', "DATABASE_URL"],
        ),
        "run: no token": Case(
            ["run"],
            {"DATABASE_URL": database, "CINNOX_APP_IDS": "acme-hk", "CINNOX_BASE_URL": "https://cinnox.example.com"},
            ["CINNOX_TOKEN_ACME_HK"],
        ),
        "run: CINNOX refuses connections": Case(
            ["run"],
            {"DATABASE_URL": database, **cinnox, "CINNOX_BASE_URL": f"http://127.0.0.1:{closed_port}"},
            [f"127.0.0.1:{closed_port}", "CINNOX_BASE_URL", "refuses connections"],
        ),
        "run: wrong token": Case(
            ["run"],
            {
                "DATABASE_URL": database,
                "CINNOX_APP_IDS": "sim-app-1",
                "CINNOX_BASE_URL": sim.url,
                "CINNOX_TOKEN_SIM_APP_1": TOKEN,
            },
            ["App Token was refused", "CINNOX_TOKEN_SIM_APP_1"],
        ),
        "run: plain http to a remote host": Case(
            ["run"],
            {"DATABASE_URL": database, **cinnox, "CINNOX_BASE_URL": "http://cinnox.example.com"},
            ["plain http", "CINNOX_ALLOW_PLAIN_HTTP"],
        ),
        "dev: UI port taken": Case(["dev", f"PORT={held_port}"], {}, [f"port {held_port}", "PORT="]),
        "dev: database down": Case(
            ["dev", f"PORT={closed_port}", "SIMULATOR_PORT=0"],
            {"DATABASE_URL": down},
            [f"127.0.0.1:{closed_port}", "DATABASE_URL", "Connection refused"],
        ),
        "simulator: port taken": Case(
            ["simulator", f"SIMULATOR_PORT={held_port}"], {}, [f"port {held_port}", "SIMULATOR_PORT="]
        ),
        "estimate: unknown app": Case(["estimate", "APP=nope"], {}, ["'nope' is not a known app", "sim-app-1"]),
        "estimate: bad date": Case(["estimate", "START=2025-13-01"], {}, ["START", "'2025-13-01' is not a date"]),
        "estimate: no token": Case(
            ["estimate", "APP=acme-hk"],
            {"CINNOX_APP_IDS": "acme-hk", "CINNOX_BASE_URL": "https://cinnox.example.com"},
            ["CINNOX_TOKEN_ACME_HK"],
        ),
        "estimate: CINNOX refuses connections": Case(
            ["estimate", "APP=acme-hk"],
            {**cinnox, "CINNOX_BASE_URL": f"http://127.0.0.1:{closed_port}"},
            [f"127.0.0.1:{closed_port}", "refuses connections"],
        ),
        "psql: database down": Case(["psql"], {"DATABASE_URL": down}, [f"127.0.0.1:{closed_port}", "DATABASE_URL"]),
    }


CASES = [
    "run: database down",
    "run: no such database",
    "run: unknown role",
    "run: no token",
    "run: CINNOX refuses connections",
    "run: wrong token",
    "run: plain http to a remote host",
    "dev: UI port taken",
    "dev: database down",
    "simulator: port taken",
    "estimate: unknown app",
    "estimate: bad date",
    "estimate: no token",
    "estimate: CINNOX refuses connections",
    "psql: database down",
]


@pytest.mark.parametrize("name", CASES)
def test_a_mistake_is_a_few_lines_that_name_it(
    name: str,
    base_env: dict[str, str],
    server_url: str,
    closed_port: int,
    held_port: int,
    database: str,
    wrong_token_simulator: SimulatorServer,
) -> None:
    case = _cases(server_url, closed_port, held_port, database, wrong_token_simulator)[name]
    run_case(case, base_env)


def test_alembic_with_the_database_down_is_one_line(base_env: dict[str, str], closed_port: int) -> None:
    env = {**base_env, "DATABASE_URL": f"postgresql://warehouse:{PASSWORD}@127.0.0.1:{closed_port}/cinnox"}
    done = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "alembic"), "upgrade", "head"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=MAX_SECONDS,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert PASSWORD not in output
    assert "Traceback" not in output, output
    last = output.strip().splitlines()[-1]
    assert f"127.0.0.1:{closed_port}" in last, output
    assert "DATABASE_URL" in last, output


def test_a_second_make_dev_on_the_same_instance_stops(base_env: dict[str, str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = int(probe.getsockname()[1])
    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = base_env["DAGSTER_HOME"]
    try:
        # The first `make dev`'s hold on the instance, as it keeps it while `dagster dev` runs.
        with one_dev_per_instance("http://127.0.0.1:3000"):
            lines, _ = run_case(
                Case(["dev", f"PORT={free}"], {}, ["already runs on this Dagster instance", "http://127.0.0.1:3000"]),
                base_env,
            )
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_HOME")
        else:
            os.environ["DAGSTER_HOME"] = previous
    assert not any("Dagster UI:" in line for line in lines)  # it never claimed to serve
