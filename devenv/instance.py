"""Dagster's local instance (DAGSTER_HOME), opened by one process at a time the first time.

A fresh instance creates its sqlite storage and stamps Dagster's own schema version on first
open. Two processes doing that at once (`make run` and `make dev`, or two `make run`, on a fresh
clone) can stamp it twice, and every later open then fails. So opening it is serialised on a
file lock under `.local/`, one per instance folder.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from devenv.postgres import PROJECT_ROOT


def lock_file(name: str) -> Path:
    """A lock file under `.local/` for the instance in DAGSTER_HOME (never inside it)."""
    home = Path(os.environ.get("DAGSTER_HOME") or PROJECT_ROOT).resolve()
    folder = PROJECT_ROOT / ".local"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}-{hashlib.sha256(str(home).encode()).hexdigest()[:12]}.lock"


@contextmanager
def opened_instance() -> Iterator[dg.DagsterInstance]:
    """DagsterInstance.get(), its first open (storage creation) taken in turns."""
    with open(lock_file("dagster-instance"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            instance = dg.DagsterInstance.get()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    with instance:
        yield instance
