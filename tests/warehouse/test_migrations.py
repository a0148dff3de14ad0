"""Alembic owns the schema: one head, upgrade, check, downgrade and back, from code and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, func, inspect, select, text
from sqlalchemy.exc import DBAPIError

from cinnox import CinnoxClient, Page, Window
from cinnox.simulator import DEFAULT_APPS, SimulatorServer
from warehouse.db import create_warehouse_engine
from warehouse.load import load_sent_campaigns
from warehouse.load.fact import FACT_KEY_SEQUENCE
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
        config.attributes["allow_data_loss"] = True  # the test's data may go
        command.downgrade(config, "base")


def test_upgrade_check_downgrade_and_back_with_data(
    create_database: Callable[[], str], simulator: SimulatorServer
) -> None:
    engine = create_warehouse_engine(create_database())
    upgrade_to_head(engine)
    _check(engine)
    with engine.connect() as conn:
        assert list(conn.scalars(select(DimChannel.channel).order_by(DimChannel.channel_key))) == ["SMS", "WhatsApp"]
        # The fact merge draws new rows' keys from the identity's sequence, by its name.
        identity = func.pg_get_serial_sequence("cinnox.fact_sent_campaign", "sent_campaign_key")
        assert conn.scalar(select(identity)) == f"{FACT_KEY_SEQUENCE.schema}.{FACT_KEY_SEQUENCE.name}"

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
    for args in (
        ["upgrade", "head"],
        ["check"],
        ["-x", "allow-data-loss=true", "downgrade", "base"],
        ["upgrade", "head"],
        ["current"],
    ):
        done = subprocess.run([*alembic, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert f"{head} (head)" in done.stdout


def test_a_downgrade_that_deletes_data_is_refused_without_the_flag(create_database: Callable[[], str]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CINNOX_ALLOW_DATA_LOSS"}
    env["DATABASE_URL"] = create_database()
    alembic = [sys.executable, "-m", "alembic"]
    done = subprocess.run([*alembic, "upgrade", "head"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    done = subprocess.run(
        [*alembic, "downgrade", "0002"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert "downgrading revision 0003 deletes data: the counter regressions" in done.stderr
    assert "allow-data-loss=true" in done.stderr
    assert "Traceback" not in done.stderr
    current = subprocess.run([*alembic, "current"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert "0003" in current.stdout  # the revisions above it went down; 0003 and its data stayed
    done = subprocess.run(
        [*alembic, "downgrade", "0002"],
        cwd=ROOT,
        env={**env, "CINNOX_ALLOW_DATA_LOSS": "true"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_a_reader_role_that_can_log_in_is_refused(create_database: Callable[[], str]) -> None:
    env = {**os.environ, "DATABASE_URL": create_database(), "CINNOX_READER_ROLE": "postgres"}
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "CINNOX_READER_ROLE: the existing role 'postgres' can log in, is a superuser" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_existing_reader_role_needs_no_createrole(create_database: Callable[[], str]) -> None:
    """The migrating user may lack CREATEROLE when the DBA made the reader role beforehand."""
    url = create_database()
    engine = create_warehouse_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DO $$ BEGIN CREATE ROLE cinnox_reader NOLOGIN; EXCEPTION WHEN duplicate_object THEN END $$"))
        conn.execute(text("DROP ROLE IF EXISTS cinnox_test_migrator"))
        conn.execute(text("CREATE ROLE cinnox_test_migrator NOLOGIN NOCREATEROLE"))
        name = conn.scalar(text("SELECT current_database()"))
        conn.execute(text(f'ALTER DATABASE "{name}" OWNER TO cinnox_test_migrator'))
    try:
        with engine.begin() as conn:
            conn.execute(text("SET ROLE cinnox_test_migrator"))
            config = alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
            # TEMP is the owner's alone now: the reader cannot create temporary tables.
            assert (
                conn.scalar(text("SELECT has_database_privilege('cinnox_reader', current_database(), 'TEMP')")) is False
            )
            assert conn.scalar(text("SELECT has_database_privilege(current_user, current_database(), 'TEMP')"))
            assert conn.scalar(text("SELECT has_schema_privilege('cinnox_reader', 'cinnox_ops', 'USAGE')")) is False
            conn.execute(text("RESET ROLE"))
            conn.execute(text(f'ALTER DATABASE "{name}" OWNER TO CURRENT_USER'))
            conn.execute(text("REASSIGN OWNED BY cinnox_test_migrator TO CURRENT_USER"))
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP OWNED BY cinnox_test_migrator"))
            conn.execute(text("DROP ROLE IF EXISTS cinnox_test_migrator"))
        engine.dispose()


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


def _upgrade_to(engine: Engine, revision: str) -> None:
    with engine.begin() as conn:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def test_history_migration_carries_existing_rows_over(create_database: Callable[[], str]) -> None:
    """0002 on a warehouse loaded under 0001: each campaign's counters become its first
    snapshot, each sender row a version valid from its first campaign; 0006 dates each row's
    values by the newest read time it records."""
    engine = create_warehouse_engine(create_database())
    _upgrade_to(engine, "0001")
    changed = datetime(2026, 6, 3, 12, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO cinnox.dim_app (app_id) VALUES ('a')"))
        conn.execute(
            text(
                "INSERT INTO cinnox.dim_date VALUES (20260601, '2026-06-01', 2026, 2, 6, 'June', 1, 2026, 23, 1, "
                "'Monday', false)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO cinnox.dim_sender (app_key, channel_key, phone, whatsapp_channel_name) VALUES "
                "(1, 2, '+852', 'Old name'), (1, 2, '+852', 'New name')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO cinnox.fact_sent_campaign (app_key, campaign_id, sent_at, sent_date_key, channel_key, "
                "sender_key, delivered, read, last_changed_at) VALUES "
                "(1, 'c1', '2026-06-01T08:00Z', 20260601, 2, 1, 5, 2, :changed), "
                "(1, 'c2', '2026-06-01T09:00Z', 20260601, 2, 2, 7, 3, :changed)"
            ),
            {"changed": changed},
        )
    _upgrade_to(engine, "0005")
    settled = changed + timedelta(days=2)
    with engine.begin() as conn:  # settled under 0005: 0006 takes the later of the two read times
        conn.execute(
            text("UPDATE cinnox.fact_sent_campaign SET settled_at = :at WHERE campaign_id = 'c2'"), {"at": settled}
        )
    upgrade_to_head(engine)
    _check(engine)
    with engine.connect() as conn:
        snapshots = conn.execute(
            text(
                "SELECT sent_campaign_key, observed_at, sent_at, delivered, read "
                "FROM cinnox.fact_sent_campaign_snapshot ORDER BY 1"
            )
        ).all()
        senders = conn.execute(
            text(
                "SELECT sender_key, durable_sender_key, valid_from, valid_to, is_current "
                "FROM cinnox.dim_sender ORDER BY 1"
            )
        ).all()
        week, month = conn.execute(text("SELECT iso_week_start, month_start FROM cinnox.dim_date")).one()
        counters_changed = conn.scalars(
            text("SELECT counters_changed_at FROM cinnox.fact_sent_campaign ORDER BY campaign_id")
        ).all()
        observed = conn.scalars(
            text("SELECT values_observed_at FROM cinnox.fact_sent_campaign ORDER BY campaign_id")
        ).all()
    sent = [datetime(2026, 6, 1, 8, tzinfo=UTC), datetime(2026, 6, 1, 9, tzinfo=UTC)]
    assert [tuple(row) for row in snapshots] == [(1, changed, sent[0], 5, 2), (2, changed, sent[1], 7, 3)]
    assert [tuple(row) for row in senders] == [(1, 1, sent[0], sent[1], False), (2, 1, sent[1], None, True)]
    assert (week.isoformat(), month.isoformat()) == ("2026-06-01", "2026-06-01")
    assert counters_changed == [changed, changed]
    assert observed == [changed, settled]
    engine.dispose()


def test_stored_versions_hashed_again_by_revision_0012_match_the_loaders(
    create_database: Callable[[], str],
) -> None:
    # Versions written under revision 0011's hash (SHA-256 of the jsonb text, in SQL), then
    # hashed again by 0012 from the stored JSON: a re-load of the same records finds every one.
    # 0013 rewrites them as json holding the very text the hash is SHA-256 of.
    engine = create_warehouse_engine(create_database())
    upgrade_to_head(engine)
    window = Window(datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 2, tzinfo=UTC))
    records: list[dict[str, object]] = [
        {
            "id": f"c{i}",
            "date": f"2025-03-01T0{i}:00:00.000Z",
            "channel": "WhatsApp",
            "campaignName": name,
            "sender": {"phone": "+852", "channelName": "Shop \u00e9\u4e2d"},
            "delivered": i,
            "extra": extra,
        }
        for i, (name, extra) in enumerate(
            [
                ("plain", None),
                ('quote " and \\ and \t tab', [1, 2.5, {"b": True, "a": None}]),
                ("emoji \U0001f600", {"z": 1e-7, "y": 100.0, "x": 12345678.9}),
                ("\x01 control", "line\nbreak"),
            ]
        )
    ]
    fetched = datetime(2025, 3, 2, tzinfo=UTC)
    page = Page("sim-app-1", window, 0, records, len(records), fetched, 1)
    assert load_sent_campaigns(engine, "sim-app-1", window, [page]).inserted == len(records)
    stored = "SELECT campaign_id, payload_hash FROM cinnox_raw.sent_campaign_payload ORDER BY 1"
    text_hashed = (
        "SELECT campaign_id, sha256(convert_to(payload::text, 'UTF8')) = payload_hash"
        " FROM cinnox_raw.sent_campaign_payload ORDER BY 1"
    )
    with engine.connect() as conn:
        hashes = conn.execute(text(stored)).all()
        assert conn.execute(text(text_hashed)).all() == [(f"c{i}", True) for i in range(len(records))]
    with engine.begin() as conn:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.downgrade(config, "0011")
        assert conn.execute(text(stored)).all() != hashes  # the old definition
    upgrade_to_head(engine)
    with engine.connect() as conn:
        assert conn.execute(text(stored)).all() == hashes
        assert conn.execute(text(text_hashed)).all() == [(f"c{i}", True) for i in range(len(records))]
    again = load_sent_campaigns(engine, "sim-app-1", window, [page])
    assert (again.unchanged, again.raw_versions_inserted) == (len(records), 0)
    engine.dispose()
