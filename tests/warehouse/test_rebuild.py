"""Rebuild from raw against the simulator on loopback and a real PostgreSQL: the rebuilt star
equals the loaded one, readers never see a half-built one, and today's rules apply."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text

from cinnox import CinnoxClient, InvalidRecord, NumberLiteral, Page, SentCampaign, Window
from cinnox.simulator import FaultKind, SimulatorServer
from pipelines.rebuild_job import cinnox_rebuild
from pipelines.resources import WarehouseResource
from warehouse import normalize
from warehouse.load import LedgerKey, SettlePolicy, load_sent_campaigns, replay
from warehouse.load import rebuild as rebuild_module
from warehouse.load.chunks import load_window
from warehouse.load.rebuild import RebuildError, rebuild
from warehouse.models import (
    CounterRegression,
    DimApp,
    DimDate,
    DimSender,
    DimStaff,
    DimTemplate,
    FactSentCampaign,
    FactSentCampaignSnapshot,
    SentCampaignPayload,
    SentCampaignReject,
)

from .conftest import RenamedSender

APPS = ("sim-app-1", "sim-app-2")
# Reads are stamped with the real clock, seconds apart: a second of quiet settles complete
# counters at the next read that sees no change, which raw keeps no trace of.
SETTLE = SettlePolicy(quiet=timedelta(seconds=1), final_age=timedelta(days=100_000))


def load_history(engine: Engine, sim: SimulatorServer, window: Window) -> None:
    """Both apps' window read at several clock times, as refreshes over days would: a page of
    malformed records first, a vanished campaign and a counter going back at the end."""
    times = [window.end + timedelta(hours=h) for h in (1, 26, 75)] + [window.end + timedelta(days=40)]
    for n, at in enumerate(times):
        sim.now = at
        if n == 0:
            sim.add_fault(FaultKind.MALFORMED_RECORDS, app_id=APPS[0], offset=100)
        if n == len(times) - 1:
            sim.add_fault(FaultKind.CAMPAIGN_VANISHES, app_id=APPS[1], times=1)
        for app in APPS:
            with CinnoxClient(sim.url, app, f"sim-token-{app}", page_size=100) as client:
                load_window(engine, client, window, LedgerKey(app, f"run-{n}-{app}", window, f"run-{n}"), settle=SETTLE)
        time.sleep(1.1)
    # A counter CINNOX reports smaller than before, read after everything else.
    records = sim.universe.campaigns(APPS[0], window.start, window.end, times[-1])
    target = next(r for r in records if (r.get("read") or 0) > 1)
    lower = {**target, "read": target["read"] - 1}
    batch = [lower if r is target else r for r in records]
    page = Page(APPS[0], window, 0, batch, len(batch), datetime.now(UTC), 1)
    load_sent_campaigns(engine, APPS[0], window, [page], run_id="regression", settle=SETTLE)


def star(engine: Engine) -> dict[str, Any]:
    """Every derived table by natural keys: surrogate keys, run ids and load times left out."""
    counters = ("total_recipients", "delivered", "read", "replied", "pending", "failed")
    with engine.connect() as conn:
        apps = dict(conn.execute(select(DimApp.app_key, DimApp.app_id)).all())
        senders = {
            row.sender_key: row
            for row in conn.execute(select(DimSender.__table__)).all()  # type: ignore[arg-type]
        }

        def sender(key: int) -> tuple[Any, ...]:
            s = senders[key]
            return (
                apps[s.app_key],
                s.channel_key,
                s.phone,
                s.whatsapp_channel_name,
                s.template_source_name,
                s.sender_eid,
            )

        staff = dict(conn.execute(select(DimStaff.staff_key, DimStaff.staff_name)).all())
        templates = dict(conn.execute(select(DimTemplate.template_key, DimTemplate.subject)).all())
        facts = {}
        keys = {}
        for f in conn.execute(select(FactSentCampaign.__table__)).mappings():  # type: ignore[arg-type]
            keys[f["sent_campaign_key"]] = (apps[f["app_key"]], f["campaign_id"])
            facts[keys[f["sent_campaign_key"]]] = (
                f["sent_at"],
                f["sent_date_key"],
                f["channel_key"],
                sender(f["sender_key"]),
                staff.get(f["staff_key"]),
                templates.get(f["template_key"]),
                f["campaign_name"],
                *(f[c] for c in counters),
                f["counters_changed_at"],
                f["values_observed_at"],
                f["settled_at"],
                f["missing_at_source_since"],
            )
        history = {
            (keys[s["sent_campaign_key"]], s["observed_at"]): (s["sent_at"], *(s[c] for c in counters))
            for s in conn.execute(select(FactSentCampaignSnapshot.__table__)).mappings()  # type: ignore[arg-type]
        }
        return {
            "fact": facts,
            "history": history,
            "senders": sorted(
                (sender(k), s.valid_from, s.valid_to, s.is_current, sender(s.durable_sender_key))
                for k, s in senders.items()
            ),
            "staff": sorted(conn.execute(select(DimStaff.app_key, DimStaff.staff_name)).all(), key=repr),
            "templates": sorted(conn.execute(select(DimTemplate.app_key, DimTemplate.subject)).all(), key=repr),
            "regressions": sorted(
                conn.execute(
                    select(
                        CounterRegression.app_key,
                        CounterRegression.campaign_id,
                        CounterRegression.counter,
                        CounterRegression.previous_value,
                        CounterRegression.new_value,
                    )
                ),
                key=repr,
            ),
            "rejects": sorted(
                conn.execute(
                    select(
                        SentCampaignReject.app_id,
                        SentCampaignReject.campaign_id,
                        SentCampaignReject.reasons,
                        SentCampaignReject.payload_hash,
                        SentCampaignReject.window_start,
                        SentCampaignReject.window_end,
                        SentCampaignReject.rejected_at,
                    )
                ),
                key=repr,
            ),
            "raw": sorted(
                conn.execute(
                    select(
                        SentCampaignPayload.app_id,
                        SentCampaignPayload.campaign_id,
                        SentCampaignPayload.payload_hash,
                        SentCampaignPayload.extracted_at,
                    )
                ),
                key=repr,
            ),
            "days": sorted(conn.scalars(select(DimDate.calendar_date))),
        }


def test_the_rebuilt_star_equals_the_loaded_one(
    warehouse: Engine, simulator: SimulatorServer, renamed_sender: RenamedSender
) -> None:
    phone, _, window = renamed_sender
    load_history(warehouse, simulator, window)
    loaded = star(warehouse)
    # What the comparison covers is there: a rename, history, rejects, a drop, a vanished campaign.
    assert len({s[0][3] for s in loaded["senders"] if s[0][2] == phone}) == 2
    assert max(sum(1 for k in loaded["history"] if k[0] == c) for c in loaded["fact"]) >= 3
    assert len(loaded["rejects"]) >= 100
    assert len(loaded["regressions"]) == 1
    assert {row[-1] is not None for row in loaded["fact"].values()} == {True, False}  # missing marks
    assert {row[-2] is not None for row in loaded["fact"].values()} == {True, False}  # settled
    assert {app for app, _ in loaded["fact"]} == set(APPS)
    requests = len(simulator.requests)

    results = rebuild(warehouse, settle=SETTLE)

    assert [r.app_id for r in results] == sorted(APPS)
    assert sum(r.settled_carried for r in results) > 0
    assert sum(r.missing_carried for r in results) == 1
    assert sum(r.fact_rows for r in results) == len(loaded["fact"])
    rebuilt = star(warehouse)
    for name in loaded:
        assert rebuilt[name] == loaded[name], name
    assert len(simulator.requests) == requests  # not one API request
    # A second rebuild of the rebuilt warehouse is the same again.
    rebuild(warehouse, [APPS[1]], settle=SETTLE)
    assert star(warehouse) == loaded


def test_a_rebuild_applies_todays_rules_and_readers_see_old_or_new(
    warehouse: Engine, simulator: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = Window(datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 5, 21, tzinfo=UTC))
    simulator.add_fault(FaultKind.MALFORMED_RECORDS, app_id=APPS[0], offset=100)
    with CinnoxClient(simulator.url, APPS[0], f"sim-token-{APPS[0]}", page_size=100) as client:
        load_window(warehouse, client, window, LedgerKey(APPS[0], "first", window))
    count = text("SELECT count(*), count(*) FILTER (WHERE campaign_name LIKE 'RULE %') FROM cinnox_mart.sent_campaign")
    with warehouse.connect() as conn:
        before = tuple(conn.execute(count).one())
        rejected = conn.scalar(select(func.count()).select_from(SentCampaignReject))
    assert before[1] == 0
    assert rejected == 100

    # Today's rules: "n/a" counts as no delivery report (the malformed page now loads), every
    # campaign name is prefixed, and SMS campaigns are refused.
    parse = normalize.parse_sent_campaign

    def todays_rules(record: object) -> SentCampaign:
        if isinstance(record, dict) and record.get("delivered") == "n/a":
            record = {**record, "delivered": None}
        campaign = parse(record)
        if campaign.channel.value == "SMS":
            raise InvalidRecord(["channel: SMS is no longer loaded"], campaign.id)
        return dataclasses.replace(campaign, campaign_name=f"RULE {campaign.campaign_name}")

    monkeypatch.setattr(normalize, "parse_sent_campaign", todays_rules)
    # The rules changed, so the fast path that mirrors the old ones goes too (a real change
    # of rules changes both, held together by a property test).
    monkeypatch.setattr(normalize, "well_formed_fields", lambda record: None)

    samples: list[tuple[int, int]] = []
    done = threading.Event()

    def reader() -> None:
        with warehouse.connect() as conn:
            while not done.is_set():
                samples.append(tuple(conn.execute(count).one()))  # type: ignore[arg-type]
                conn.rollback()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        (result,) = rebuild(warehouse, [APPS[0]])
    finally:
        done.set()
        thread.join()
    with warehouse.connect() as conn:
        after = tuple(conn.execute(count).one())
        sms = conn.scalar(text("SELECT count(*) FROM cinnox_mart.sent_campaign WHERE channel = 'SMS'"))
        reasons = conn.scalars(select(SentCampaignReject.reasons)).all()
    # The malformed page's WhatsApp records load now; its SMS ones stay rejected, for the new reason.
    assert 0 < result.now_loaded < 100
    assert result.newly_rejected > 0
    assert sms == 0
    assert result.dimension_rows_dropped > 0  # the SMS senders no campaign uses any more
    assert after[0] == after[1] == before[0] + result.now_loaded - result.newly_rejected
    assert all(r == ["channel: SMS is no longer loaded"] for r in reasons)
    assert len(reasons) == result.newly_rejected + 100 - result.now_loaded
    assert len(samples) >= 2
    assert set(samples) <= {before, after}, "a reader saw a half-built warehouse"


def test_operator_mistakes_are_one_clear_line(warehouse: Engine, simulator: SimulatorServer) -> None:
    with pytest.raises(RebuildError, match="holds no records"):
        rebuild(warehouse)
    window = Window(datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 5, 2, tzinfo=UTC))
    with CinnoxClient(simulator.url, APPS[0], f"sim-token-{APPS[0]}") as client:
        load_window(warehouse, client, window, LedgerKey(APPS[0], "first", window))
    with pytest.raises(RebuildError, match=r"'nope' have no records in cinnox_raw; apps there: sim-app-1"):
        rebuild(warehouse, ["nope"])


def test_make_rebuild_and_the_dagster_job(warehouse: Engine, simulator: SimulatorServer) -> None:
    window = Window(datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 5, 4, tzinfo=UTC))
    for app in APPS:
        with CinnoxClient(simulator.url, app, f"sim-token-{app}") as client:
            load_window(warehouse, client, window, LedgerKey(app, "first", window))
    loaded = star(warehouse)
    url = warehouse.url.render_as_string(hide_password=False)
    env = {**os.environ, "DATABASE_URL": url}
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.rebuild", "--app", APPS[1]], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "Rebuilt 1 app(s) from cinnox_raw" in done.stdout
    assert star(warehouse) == loaded
    wrong = subprocess.run(
        [sys.executable, "-m", "pipelines.rebuild", "--app", "nope"], env=env, capture_output=True, text=True
    )
    assert wrong.returncode == 2
    assert wrong.stderr.strip().splitlines() == [
        "error: CINNOX app(s) 'nope' have no records in cinnox_raw; apps there: sim-app-1, sim-app-2. "
        "Name one of those, or none for all"
    ]
    down = subprocess.run(
        [sys.executable, "-m", "pipelines.rebuild"],
        env={**env, "DATABASE_URL": "postgresql+psycopg://nobody:secret-pw@127.0.0.1:9/none"},
        capture_output=True,
        text=True,
    )
    assert down.returncode == 1
    assert len(down.stderr.strip().splitlines()) == 1
    assert down.stderr.startswith("error: rebuild failed")
    assert "secret-pw" not in down.stderr

    resources = {"warehouse": WarehouseResource(database_url=url)}
    ran = cinnox_rebuild.execute_in_process(
        run_config={"ops": {"rebuild_from_raw": {"config": {"app_id": ""}}}}, resources=resources
    )
    assert ran.success
    assert star(warehouse) == loaded
    failed = cinnox_rebuild.execute_in_process(
        run_config={"ops": {"rebuild_from_raw": {"config": {"app_id": "nope"}}}},
        resources=resources,
        raise_on_error=False,
    )
    assert not failed.success
    assert "'nope' have no records in cinnox_raw" in str(failed.failure_data_for_node("rebuild_from_raw"))


def test_rejects_kept_as_text_survive_a_rebuild(warehouse: Engine, simulator: SimulatorServer) -> None:
    window = Window(datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 5, 2, tzinfo=UTC))
    records = simulator.universe.campaigns(APPS[0], window.start, window.end, simulator.now)[:3]
    nul = {**records[0], "campaignName": "a\x00b"}  # jsonb cannot hold it: kept as text
    nan = {**records[1], "delivered": NumberLiteral("NaN")}
    surrogate = {**records[2], "createdBy": "\ud800"}
    page = Page(APPS[0], window, 0, [nul, nan, surrogate], 3, datetime.now(UTC), 1)
    loaded = load_sent_campaigns(warehouse, APPS[0], window, [page])
    assert loaded.rejected == 3
    before = star(warehouse)
    with warehouse.connect() as conn:
        texts = sorted(conn.execute(select(SentCampaignReject.payload_text, SentCampaignReject.reasons)).all())
    assert all(t is not None for t, _ in texts)

    (result,) = rebuild(warehouse)

    assert (result.records, result.rejected, result.now_loaded, result.newly_rejected) == (3, 3, 0, 0)
    assert star(warehouse) == before
    with warehouse.connect() as conn:
        assert sorted(conn.execute(select(SentCampaignReject.payload_text, SentCampaignReject.reasons)).all()) == texts


@pytest.mark.parametrize("failing", ["reader", "rebuild"])
def test_a_failure_on_either_side_ends_the_replay_reader(
    warehouse: Engine, simulator: SimulatorServer, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """The replay is read on a thread with a connection of its own. An error there is raised
    in the rebuild, and an error in the rebuild stops the reader while it waits to hand over
    a batch; either way the transaction rolls back and the thread and its connection end."""
    window = Window(datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 5, 3, tzinfo=UTC))
    with CinnoxClient(simulator.url, APPS[0], f"sim-token-{APPS[0]}") as client:
        load_window(warehouse, client, window, LedgerKey(APPS[0], "first", window))
    before = star(warehouse)
    # Batches of two records: the reader is far ahead of the rebuild, blocked on a full hand-over.
    monkeypatch.setattr(replay, "REPLAY_BATCH", 2)
    monkeypatch.setattr(replay, "_FIRST_BATCH", 2)

    def broken(*args: object, **kwargs: object) -> object:
        raise ValueError(f"broken on the {failing}'s side")

    if failing == "reader":
        monkeypatch.setattr(replay, "_step_records", broken)
    else:
        monkeypatch.setattr(rebuild_module, "stored_version_row", broken)
    with pytest.raises(ValueError, match=f"broken on the {failing}'s side"):
        rebuild(warehouse, [APPS[0]])

    assert not [t for t in threading.enumerate() if t.name.startswith("cinnox-replay")]
    assert warehouse.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert star(warehouse) == before
    monkeypatch.undo()
    (result,) = rebuild(warehouse, [APPS[0]])
    assert result.fact_rows == len(before["fact"]) > 0
    assert star(warehouse) == before


def test_a_long_rebuild_says_how_far_it_is(
    warehouse: Engine, simulator: SimulatorServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A line when the replay is planned, then while each step is staged and before it merges:
    here with no wait between lines and batches of 50 records."""
    window = Window(datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 5, 3, tzinfo=UTC))
    for n in range(2):  # two reads a day apart: the campaigns whose counters moved have two versions
        simulator.now = window.end + timedelta(days=n)
        with CinnoxClient(simulator.url, APPS[0], f"sim-token-{APPS[0]}") as client:
            load_window(warehouse, client, window, LedgerKey(APPS[0], f"run-{n}", window))
    with warehouse.connect() as conn:
        campaigns = conn.scalar(select(func.count()).select_from(FactSentCampaign))
        versions = conn.scalar(select(func.count()).select_from(SentCampaignPayload))
    assert versions > campaigns > 50
    monkeypatch.setattr(rebuild_module, "PROGRESS_SECONDS", 0.0)
    monkeypatch.setattr(replay, "REPLAY_BATCH", 50)
    monkeypatch.setattr(replay, "_FIRST_BATCH", 50)
    caplog.set_level(logging.INFO, logger="warehouse.rebuild")

    (result,) = rebuild(warehouse, [APPS[0]])

    # Without the seconds at the end of each progress line.
    lines = [re.sub(r", \d+s$", "", r.getMessage()) for r in caplog.records if r.name == "warehouse.rebuild"]
    second = versions - campaigns  # each campaign has at most two versions here
    prefix = f"rebuilding {APPS[0]}: step"

    def step(n: int, size: int, merged: int) -> list[str]:
        so_far = f"{merged:,} of {versions:,} records merged so far"
        staged = [f"{prefix} {n} of 2, staging: {k:,} of its {size:,} records; {so_far}" for k in range(50, size, 50)]
        return [*staged, f"{prefix} {n} of 2, staging: {size:,} of its {size:,} records; {so_far}",
                f"{prefix} {n} of 2, merging its {size:,} records; {so_far}"]  # fmt: skip

    assert result.steps == 2
    assert lines[:-1] == [
        f"rebuilding {APPS[0]}: {versions:,} stored record(s) to replay in 2 step(s), the first holding {campaigns:,}",
        *step(1, campaigns, 0),
        *step(2, second, campaigns),
    ]
    assert lines[-1].startswith(f"rebuilt {APPS[0]}: {versions} raw records in 2 step(s)")


def test_large_records_are_replayed_in_smaller_batches(
    warehouse: Engine, simulator: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader cuts its batches by the stored text they carry, not by count alone: here
    records of over 2,000 characters against a budget of 10,000 a batch."""
    window = Window(datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 5, 2, tzinfo=UTC))
    records = simulator.universe.campaigns(APPS[0], window.start, window.end, simulator.now)[:40]
    large = [{**record, "subject": "x" * 2000} for record in records]
    load_sent_campaigns(warehouse, APPS[0], window, [Page(APPS[0], window, 0, large, len(large), datetime.now(UTC), 1)])
    loaded = star(warehouse)
    monkeypatch.setattr(replay, "REPLAY_BATCH_CHARS", 10_000)
    monkeypatch.setattr(replay, "_FIRST_BATCH", 3)
    handed: list[list[int]] = []  # the stored text of each record, batch by batch
    hand = replay.ReplayReader._hand

    def noting(reader: replay.ReplayReader, kind: str, value: Any) -> None:
        if kind == "rows":
            handed.append([len(row[7] or "") + len(row[8] or "") for row in value])
        hand(reader, kind, value)

    monkeypatch.setattr(replay.ReplayReader, "_hand", noting)

    (result,) = rebuild(warehouse, [APPS[0]])

    assert star(warehouse) == loaded
    assert result.records == sum(map(len, handed)) == 40
    assert min(map(min, handed)) > 2000
    assert len(handed[0]) == 3
    assert all(sum(batch) <= 10_000 for batch in handed)
    assert len(handed) >= 10


def test_a_year_of_two_apps_rebuilds_to_the_same_star(warehouse: Engine, simulator: SimulatorServer) -> None:
    year = Window(simulator.now - timedelta(days=365), simulator.now)
    week = Window(simulator.now - timedelta(days=7), simulator.now)
    for n, window in enumerate((year, week)):  # the last week read again two days later
        simulator.now = year.end + timedelta(days=2 * n)
        for app in APPS:
            with CinnoxClient(simulator.url, app, f"sim-token-{app}", page_size=200) as client:
                load_window(warehouse, client, window, LedgerKey(app, f"run-{n}", window), chunk_records=5000)
    loaded = star(warehouse)
    renamed = {s[4] for s in loaded["senders"] if s[0] != s[4]}
    assert renamed, "a sender with more than one version"
    assert len(loaded["history"]) > len(loaded["fact"]) > 10_000

    rebuild(warehouse)

    assert star(warehouse) == loaded


def test_with_the_fact_emptied_the_ledger_settles_what_quiet_reads_settled(
    warehouse: Engine, simulator: SimulatorServer
) -> None:
    window = Window(datetime(2026, 5, 25, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC))
    for n in range(3):
        simulator.now = window.end + timedelta(hours=1 + 24 * n)
        with CinnoxClient(simulator.url, APPS[0], f"sim-token-{APPS[0]}", page_size=200) as client:
            load_window(warehouse, client, window, LedgerKey(APPS[0], f"run-{n}", window), settle=SETTLE)
        time.sleep(1.1)
    loaded = star(warehouse)["fact"]
    with warehouse.begin() as conn:  # a damaged table: the fact and its history emptied
        conn.execute(text("DELETE FROM cinnox.fact_sent_campaign_snapshot"))
        conn.execute(text("DELETE FROM cinnox.fact_sent_campaign"))

    (result,) = rebuild(warehouse, settle=SETTLE)

    rebuilt = star(warehouse)["fact"]
    assert result.settled_carried == 0
    assert result.settled_from_ledger > 0
    assert rebuilt.keys() == loaded.keys()
    assert {c for c, row in rebuilt.items() if row[-2]} == {c for c, row in loaded.items() if row[-2]}
    # Settled at the end of the read whose page settled it: within that read's few seconds.
    for campaign, row in rebuilt.items():
        if row[-2] is not None:
            assert timedelta(0) <= row[-2] - loaded[campaign][-2] < timedelta(seconds=5), campaign
