"""`make dev`: the Dagster UI on the same defaults as `make run`.

Starts what the environment does not provide (embedded PostgreSQL, the simulator), applies
migrations, then runs `dagster dev` with the settings exported, until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from devenv.postgres import PROJECT_ROOT
from devenv.stack import local_stack
from warehouse.db import create_warehouse_engine
from warehouse.migrate import upgrade_to_head


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Start the Dagster UI on the local defaults.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", default="3000")
    parser.add_argument("--simulator-port", type=int, default=8765)
    args = parser.parse_args(argv)
    with local_stack(simulator_port=args.simulator_port) as stack:
        engine = create_warehouse_engine(stack.database_url)
        upgrade_to_head(engine)
        engine.dispose()
        if stack.simulator is not None:
            print(f"CINNOX simulator: {stack.simulator.url}")
        print(f"Dagster UI: http://{args.host}:{args.port}  (Ctrl-C to stop)", flush=True)
        command = [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-h", args.host, "-p", args.port]
        try:
            return subprocess.call(command, cwd=PROJECT_ROOT, env=os.environ.copy())
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
