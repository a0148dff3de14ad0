"""Alembic owns the schema: one head, upgrade, check, downgrade and back, from code and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import DBAPIError

from cinnox import CinnoxClient, Window
from cinnox.simulator import DEFAULT_APPS, SimulatorServer
from warehouse.db import create_warehouse_engine
from warehouse.load import load_sent_campaigns
from warehouse.migrate import alembic_config, upgrade_to_head
from warehouse.models import SCHEMAS, DimChannel, FactSentCampaign

ROOT = Path(__file__).resolve().parents[2]


def test_one_head_and_dated_revision_files() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1
    for revision in script.walk_revisions():
        assert revision.doc, revision.revision
        assert "Why:" in (revision.module.__doc__ or ""), revision.revision
    for path in (ROOT / "migrations" / "versions").glob("*.py"):
        assert path.name[:4].isdigit(), f"{path.name} should start with its date"


def _check(engine: Engine) -> None:
    """`alembic check`: raises when the models and the migrated schema differ."""
    with engine.begin() as conn:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.check(config)


def _downgrade_to_base(engine: Engine) -> None:
    with engine.begin() as conn:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.downgrade(config, "base")


def test_upgrade_check_downgrade_and_back_with_data(
    create_database: Callable[[], str], simulator: SimulatorServer
) -> None:
    engine = create_warehouse_engine(create_database())
    upgrade_to_head(engine)
    _check(engine)
    with engine.connect() as conn:
        assert list(conn.scalars(select(DimChannel.channel).order_by(DimChannel.channel_key))) == ["SMS", "WhatsApp"]

    window = Window(simulator.now.replace(day=1), simulator.now)
    with CinnoxClient(simulator.url, "sim-app-1", DEFAULT_APPS["sim-app-1"]) as client:
        loaded = load_sent_campaigns(engine, "sim-app-1", window, client.sent_campaign_pages(window))
    assert loaded.inserted > 0

    _downgrade_to_base(engine)
    schemas = set(inspect(engine).get_schema_names())
    assert not schemas & set(SCHEMAS)

    upgrade_to_head(engine)  # and back up, on a database that held data
    _check(engine)
    with engine.connect() as conn:
        assert conn.scalar(select(FactSentCampaign.campaign_id).limit(1)) is None
    engine.dispose()


def test_alembic_command_line_uses_database_url(create_database: Callable[[], str]) -> None:
    env = {**os.environ, "DATABASE_URL": create_database()}
    alembic = [sys.executable, "-m", "alembic"]
    for args in (["upgrade", "head"], ["check"], ["downgrade", "base"], ["upgrade", "head"], ["current"]):
        done = subprocess.run([*alembic, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert f"{head} (head)" in done.stdout


FAILING_REVISION = '''"""A revision that fails halfway, for the test.

Why: to prove a failed upgrade leaves the schema at the previous revision.
"""

import sqlalchemy as sa
from alembic import op

revision = "fail"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("half_done", sa.Column("id", sa.Integer(), primary_key=True), schema="cinnox")
    op.add_column("fact_sent_campaign", sa.Column("half_done", sa.Integer()), schema="cinnox")
    op.execute("SELECT 1 / 0")


def downgrade() -> None:
    pass
'''


def test_a_migration_failing_halfway_leaves_the_previous_revision(
    create_database: Callable[[], str], tmp_path: Path
) -> None:
    engine = create_warehouse_engine(create_database())
    upgrade_to_head(engine)
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    versions = tmp_path / "versions"
    versions.mkdir()
    for path in (ROOT / "migrations" / "versions").glob("*.py"):
        (versions / path.name).write_text(path.read_text())
    (versions / "2099_01_01_fail.py").write_text(FAILING_REVISION.replace("{head}", str(head)))
    config = alembic_config()
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.set_main_option("version_locations", str(versions))
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        with pytest.raises(DBAPIError, match="division by zero"):
            command.upgrade(config, "head")
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT version_num FROM alembic_version")) == head
        assert not inspect(conn).has_table("half_done", schema="cinnox")
        columns = {c["name"] for c in inspect(conn).get_columns("fact_sent_campaign", schema="cinnox")}
        assert "half_done" not in columns
    engine.dispose()


def test_alembic_without_database_url_says_what_to_set() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "current"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert "DATABASE_URL is not set" in done.stderr
