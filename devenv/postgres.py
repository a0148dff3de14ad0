"""An embedded PostgreSQL (the `pgserver` package) for `make run`, `make dev` and the tests."""

from __future__ import annotations

import os
import subprocess
from contextlib import suppress
from pathlib import Path

import psycopg
from pgserver._commands import POSTGRES_BIN_PATH
from pgserver.postgres_server import PostgresServer, get_server
from psycopg import sql

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WAREHOUSE_DATABASE = "cinnox"


def data_dir() -> Path:
    """Where the embedded server keeps its data: EMBEDDED_PGDATA, else .local/pgdata."""
    return Path(os.environ.get("EMBEDDED_PGDATA") or PROJECT_ROOT / ".local" / "pgdata").resolve()


def start_embedded_postgres(folder: Path | None = None, *, keep_running: bool = True) -> PostgresServer:
    """Start (or attach to) the embedded server whose data lives in `data_dir`.

    With `keep_running` the server outlives this process, so `make psql` and `make dev`
    find the warehouse that `make run` filled; `make stop` shuts it down.
    """
    folder = folder or data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return get_server(folder, cleanup_mode=None if keep_running else "stop")


def ensure_database(server_uri: str, name: str) -> None:
    """Create database `name` on the server unless it exists."""
    with psycopg.connect(server_uri, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            # Another `make run` or `make dev`, started at the same moment, may make it first.
            with suppress(psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def embedded_warehouse_url(folder: Path | None = None) -> str:
    """The SQLAlchemy URL of the warehouse database on the embedded server, starting it if needed."""
    server = start_embedded_postgres(folder)
    ensure_database(server.get_uri(), WAREHOUSE_DATABASE)
    uri: str = server.get_uri(WAREHOUSE_DATABASE)
    return uri.replace("postgresql://", "postgresql+psycopg://", 1)


def stop_embedded_postgres(folder: Path | None = None) -> bool:
    """Stop the embedded server if it runs; True when there was one to stop."""
    folder = folder or data_dir()
    if not (folder / "postmaster.pid").exists():
        return False
    # pg_ctl directly: pgserver's own cleanup only stops a server when no other process (or
    # earlier handle in this one) still holds it, which is exactly when `make stop` is not needed.
    # As root, pgserver runs the server as its own `pgserver` user, so pg_ctl must too.
    user = "pgserver" if hasattr(os, "geteuid") and os.geteuid() == 0 else None
    command = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(folder), "-w", "-m", "fast", "stop"]
    done = subprocess.run(command, user=user, capture_output=True, text=True, check=False)
    if done.returncode == 0:
        return True
    if not (folder / "postmaster.pid").exists():  # a stale pid file of a server that had died
        return False
    raise RuntimeError(f"could not stop the embedded PostgreSQL in {folder}: {done.stderr.strip()}")
