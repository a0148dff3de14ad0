"""An operator's mistake in one line: what is wrong, where, and what to do.

`make run`, `make dev`, `make psql` and `make estimate` run their `main` through `cli`. An
expected failure (a database that is down or misnamed, a missing token, a CINNOX that refuses
connections) prints `error: ...` and exits 2; `VERBOSE=1` shows the traceback instead. Nothing
printed here ever holds a password or a token.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

import psycopg
from sqlalchemy import Engine
from sqlalchemy.exc import ArgumentError, OperationalError

from cinnox import is_loopback_url
from pipelines.settings import AppSettings, SettingsError
from warehouse.db import connection_problem, create_warehouse_engine
from warehouse.migrate import upgrade_to_head

EXIT_MISTAKE = 2


class OperatorError(Exception):
    """A mistake in the setup; the message is the one line to print."""


def verbose(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get("VERBOSE", "0").strip().lower() not in ("", "0", "false", "no")


def cli(main: Callable[[], int]) -> int:
    """Run `main`; an expected failure becomes one `error:` line on stderr and exit code 2."""
    try:
        return main()
    except KeyboardInterrupt:
        return 130
    except (OperatorError, SettingsError) as exc:
        if verbose():
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_MISTAKE


def migrated_engine(url: str, variable: str = "DATABASE_URL") -> Engine:
    """An engine on the warehouse at `url`, migrated to head; a refused connection says why."""
    try:
        engine = create_warehouse_engine(url)
    except (ArgumentError, ValueError) as exc:
        raise OperatorError(f"{variable} is not a PostgreSQL URL ({exc}); e.g. postgresql://user@host:5432/db") from exc
    try:
        upgrade_to_head(engine)
    except (OperationalError, psycopg.OperationalError) as exc:
        engine.dispose()
        raise OperatorError(connection_problem(exc, url, variable)) from exc
    return engine


def check_cinnox(environ: Mapping[str, str], apps: tuple[AppSettings, ...], timeout: float = 3.0) -> None:
    """Before any run: the real CINNOX's settings are complete and its host takes connections.

    Only for CINNOX_BASE_URL set by the operator; the simulator is started right here. One TCP
    connection, no request: a refused or unresolvable host fails now instead of after a run's
    retries.
    """
    base_url = environ.get("CINNOX_BASE_URL", "")
    if not environ.get("CINNOX_APP_IDS", "").strip():
        raise OperatorError(
            "CINNOX_BASE_URL is set but CINNOX_APP_IDS is not: name the CINNOX App IDs to read "
            "(comma-separated), or unset CINNOX_BASE_URL for the simulator"
        )
    missing = [app.token_env_var for app in apps if not environ.get(app.token_env_var)]
    if missing:
        raise OperatorError(
            f"CINNOX_BASE_URL is set but {', '.join(missing)} is not: export the App Token of "
            f"{'each app' if len(missing) > 1 else 'the app'} (or unset CINNOX_BASE_URL and CINNOX_APP_IDS "
            "for the simulator)"
        )
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OperatorError(f"CINNOX_BASE_URL {base_url!r} is not an http(s) URL, e.g. https://api.example.com")
    allow_plain = environ.get("CINNOX_ALLOW_PLAIN_HTTP", "false").strip().lower() == "true"
    if parts.scheme == "http" and not allow_plain and not is_loopback_url(base_url):
        raise OperatorError(
            f"CINNOX_BASE_URL {base_url!r} is plain http to a host that is not loopback: the App Token would "
            "cross the network unencrypted. Use https, or set CINNOX_ALLOW_PLAIN_HTTP=true"
        )
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass
    except ConnectionRefusedError:
        raise OperatorError(
            f"CINNOX at {parts.hostname}:{port} (CINNOX_BASE_URL) refuses connections: check the URL and "
            "that the API is up, or unset CINNOX_BASE_URL for the simulator"
        ) from None
    except socket.gaierror:
        raise OperatorError(f"CINNOX host {parts.hostname!r} (CINNOX_BASE_URL) is unknown: check the URL") from None
    except OSError as exc:
        raise OperatorError(
            f"CINNOX at {parts.hostname}:{port} (CINNOX_BASE_URL) cannot be reached ({exc.strerror or exc}): "
            "check the URL and the network"
        ) from None
