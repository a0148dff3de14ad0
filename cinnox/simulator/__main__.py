"""`python -m cinnox.simulator`: serve the simulator until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from ._data import DEFAULT_APPS, DEFAULT_SEED
from ._server import SimulatorServer
from ._time import parse_rfc3339


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cinnox.simulator",
        description="Serve a simulated CINNOX sent-campaigns-summary API on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument(
        "--port",
        type=int,
        default=8765,
        help="0 picks a free port (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help="data seed (default: %(default)s)",
    )
    parser.add_argument(
        "--apps",
        default=",".join(DEFAULT_APPS),
        help="comma-separated app ids; each gets the token sim-token-<app id> (default: %(default)s)",
    )
    parser.add_argument(
        "--now",
        type=parse_rfc3339,
        default=None,
        help="simulated clock, RFC3339 with Z or an offset (default: today 00:00 UTC)",
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        help="seconds slept before each API answer",
    )
    parser.add_argument("--rate-limit", type=float, default=None, help="requests per second per app")
    parser.add_argument("--max-limit", type=int, default=200, help="largest page size accepted")
    parser.add_argument(
        "--clock-running",
        action="store_true",
        help="let the simulated clock move with real time from --now (default: it stands still)",
    )
    parser.add_argument(
        "--sends-per-request",
        type=int,
        default=0,
        help="new campaigns each app sends, dated that instant, with every API request (a busy sender)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    return parser


def env_name(app_id: str) -> str:
    """The variable a client reads the app's token from, e.g. CINNOX_TOKEN_SIM_APP_1."""
    return "CINNOX_TOKEN_" + re.sub(r"[^A-Z0-9]", "_", app_id.upper())


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    app_ids = [app.strip() for app in args.apps.split(",") if app.strip()]
    if not app_ids:
        _parser().error("--apps needs at least one app id")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        server = SimulatorServer(
            apps={app: f"sim-token-{app}" for app in app_ids},
            seed=args.seed,
            now=args.now,
            host=args.host,
            port=args.port,
            max_limit=args.max_limit,
            default_limit=min(100, args.max_limit),
            latency=args.latency,
            rate_limit=args.rate_limit,
            clock_running=args.clock_running,
            sends_per_request=args.sends_per_request,
        )
    except ValueError as exc:
        _parser().error(str(exc))

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    try:
        server.start()
    except OSError as exc:
        # One line, no traceback: the usual cause is `make dev`'s simulator on the same port.
        print(
            f"error: port {args.port} on {args.host} is taken ({exc.strerror or exc}): stop what uses it, or pick "
            "another with --port (make simulator SIMULATOR_PORT=<port>; 0 picks a free one)",
            file=sys.stderr,
        )
        return 2
    with server:
        lines = [
            f"CINNOX simulator listening on {server.url} (seed {server.seed}, now {server.now.isoformat()})",
            *(f"  app {app} token {token}" for app, token in server.apps.items()),
            "Client settings:",
            f"CINNOX_BASE_URL={server.url}",
            f"CINNOX_APP_IDS={','.join(server.apps)}",
            *(f"{env_name(app)}={token}" for app, token in server.apps.items()),
        ]
        print("\n".join(lines), flush=True)
        # A timed wait so the signal handler runs promptly on every platform.
        while not stop.wait(0.5):
            pass
    print("CINNOX simulator stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
