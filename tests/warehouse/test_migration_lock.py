"""Migrations take turns: any number of processes may upgrade one fresh database at once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import text

from warehouse.db import create_warehouse_engine
from warehouse.migrate import alembic_config

ROOT = Path(__file__).resolve().parents[2]


def test_alembic_processes_and_upgrade_to_head_at_once_on_a_fresh_database(
    create_database: Callable[[], str],
) -> None:
    url = create_database()
    env = {**os.environ, "DATABASE_URL": url}
    # Three `alembic upgrade head` (deploy jobs, say) and three processes migrating as `make run`
    # and `make dev` do (one each: Alembic's context is global to a process). Each waits for
    # the same moment once its imports are done, so their first statements meet.
    start_at = time.time() + 8
    wait = f"import time; time.sleep(max(0.0, {start_at} - time.time())); "
    cli = "import alembic.config; " + wait + "alembic.config.main(['upgrade', 'head'])"
    in_process = (
        "import os; from warehouse.db import create_warehouse_engine; "
        "from warehouse.migrate import upgrade_to_head; "
        "engine = create_warehouse_engine(os.environ['DATABASE_URL']); " + wait + "upgrade_to_head(engine)"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for code in [cli, in_process] * 3
    ]
    for process in processes:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    engine = create_warehouse_engine(url)
    with engine.connect() as conn:
        assert conn.scalars(text("SELECT version_num FROM alembic_version")).all() == [head]
        # Every migration ran once: no lock left behind, nothing half made.
        held = conn.scalar(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"))
    engine.dispose()
    assert held == 0
