"""`make dev`: the Dagster UI on the same defaults as `make run`.

    python -m devenv.dev [--port 3000] [--simulator-port 8765]    (make dev PORT=3001 SIMULATOR_PORT=0)

Starts what the environment does not provide (embedded PostgreSQL, the simulator), applies
migrations, then runs `dagster dev` with the settings exported, until Ctrl-C. A taken UI port
stops it with one line naming PORT; a taken simulator port gives the simulator a free one, and
the URL printed is the one it really serves. One `make dev` per Dagster instance: a second one
would start a second daemon on the same runs and schedules, so it stops instead.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devenv.errors import OperatorError, check_cinnox, cli, migrated_engine
from devenv.instance import lock_file, opened_instance
from devenv.postgres import PROJECT_ROOT
from devenv.stack import local_stack
from pipelines.settings import PipelineSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Start the Dagster UI on the local defaults.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000, help="the UI's port (make dev PORT=...)")
    parser.add_argument(
        "--simulator-port", type=int, default=8765, help="the simulator's port, 0 for any (make dev SIMULATOR_PORT=...)"
    )
    args = parser.parse_args(argv)
    return cli(lambda: _dev(args.host, args.port, args.simulator_port))


def _dev(host: str, port: int, simulator_port: int) -> int:
    require_free_port(host, port, "PORT", "the Dagster UI")
    url = f"http://{host}:{port}"
    with one_dev_per_instance(url), local_stack(simulator_port=simulator_port) as stack:
        if stack.simulator is None:
            check_cinnox(os.environ, PipelineSettings.from_env(os.environ).apps)
        migrated_engine(stack.database_url).dispose()
        with opened_instance():
            pass  # made here, in turns with any `make run`, before `dagster dev` opens it
        if stack.simulator is not None:
            print(f"CINNOX simulator: {stack.simulator.url}")
        print(f"Dagster UI: {url}  (Ctrl-C to stop)", flush=True)
        command = [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-h", host, "-p", str(port)]
        try:
            return subprocess.call(command, cwd=PROJECT_ROOT, env=os.environ.copy())
        except KeyboardInterrupt:
            return 0


def require_free_port(host: str, port: int, variable: str, what: str) -> None:
    """Stop with one line when something already listens on host:port."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise OperatorError(
                f"port {port} on {host} is taken ({exc.strerror}), so {what} cannot listen there: "
                f"stop what uses it, or pick another with {variable}=<port>"
            ) from None


@contextmanager
def one_dev_per_instance(url: str) -> Iterator[None]:
    """Hold a lock for the Dagster instance (DAGSTER_HOME) while `dagster dev` runs."""
    home = Path(os.environ.get("DAGSTER_HOME") or PROJECT_ROOT).resolve()
    with open(lock_file("dev"), "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            where = lock.read().strip() or "unknown"
            raise OperatorError(
                f"a `make dev` already runs on this Dagster instance (DAGSTER_HOME={home}), at {where}: "
                "use that one, or stop it first; a second would start a second daemon"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"{url} (pid {os.getpid()})\n")
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


if __name__ == "__main__":
    sys.exit(main())
