"""The fault matrix: one full Dagster run per fault against the simulator on loopback and the
real PostgreSQL. Each row ends with the warehouse equal, row for row, to a run without faults,
or with the clear failure the fault calls for, after which a clean run gives that same warehouse.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from cinnox.simulator import FaultKind, SimulatorServer
from tests.pipelines.conftest import run_asset_range
from warehouse.db import create_warehouse_engine
from warehouse.migrate import upgrade_to_head

APP = "sim-app-1"
TOKEN = "tok-matrix-7d1e"
NOW = datetime(2026, 6, 15, tzinfo=UTC)
FIRST, LAST = "2026-06-10", "2026-06-11"  # two days, a few pages of 10

# Natural content of every warehouse table: no surrogate keys, run ids or load times.
SNAPSHOT = {
    "fact": """
        SELECT a.app_id, f.campaign_id, f.sent_at, d.calendar_date, c.channel, s.phone,
               s.whatsapp_channel_name, s.template_source_name, s.sender_eid, st.staff_name, t.subject,
               f.campaign_name, f.total_recipients, f.delivered, f.read, f.replied, f.pending, f.failed,
               f.missing_at_source_since IS NOT NULL AS missing
        FROM cinnox.fact_sent_campaign f
        JOIN cinnox.dim_app a USING (app_key) JOIN cinnox.dim_date d ON d.date_key = f.sent_date_key
        JOIN cinnox.dim_channel c USING (channel_key) JOIN cinnox.dim_sender s USING (sender_key)
        LEFT JOIN cinnox.dim_staff st USING (staff_key) LEFT JOIN cinnox.dim_template t USING (template_key)
        ORDER BY a.app_id, f.campaign_id""",
    "raw": "SELECT app_id, campaign_id, payload_hash, payload::text"
    " FROM cinnox_raw.sent_campaign_payload ORDER BY 1, 2, 3",
    "rejects": "SELECT app_id, campaign_id, reasons, payload_hash FROM cinnox_raw.sent_campaign_reject ORDER BY 4",
    "fields": "SELECT app_id, field_path, known FROM cinnox_raw.source_field ORDER BY 1, 2",
    "regressions": "SELECT campaign_id, counter, previous_value, new_value"
    " FROM cinnox.counter_regression ORDER BY 1, 2",
    # The counter history holds one row per change seen: a fault that makes the client re-read
    # a window must not add any.
    "history": """
        SELECT f.campaign_id, h.sent_at, h.total_recipients, h.delivered, h.read, h.replied, h.pending, h.failed
        FROM cinnox.fact_sent_campaign_snapshot h JOIN cinnox.fact_sent_campaign f USING (sent_campaign_key)
        ORDER BY 1, 2""",
    "sender_versions": """
        SELECT phone, coalesce(whatsapp_channel_name, ''), coalesce(sender_eid, ''), valid_from, valid_to, is_current
        FROM cinnox.dim_sender ORDER BY 1, 2, 3, 4""",
    "dimensions": """
        SELECT 'sender', phone || '|' || coalesce(whatsapp_channel_name, '') || '|' || coalesce(sender_eid, '')
        FROM cinnox.dim_sender UNION ALL SELECT 'staff', staff_name FROM cinnox.dim_staff
        UNION ALL SELECT 'template', subject FROM cinnox.dim_template
        UNION ALL SELECT 'date', calendar_date::text FROM cinnox.dim_date ORDER BY 1, 2""",
}


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {name: [tuple(row) for row in conn.execute(text(query))] for name, query in SNAPSHOT.items()}


@dataclass(frozen=True)
class Row:
    """One fault of the matrix: what to inject, and whether the run must fail and how."""

    name: str
    faults: list[dict[str, Any]]
    fails_with: list[str] = field(default_factory=list)  # every piece the error must name
    metadata: dict[str, Any] = field(default_factory=dict)  # expected materialization metadata


ON_PAGE_2 = {"offset": 10}
MATRIX = [
    Row(
        "429 with Retry-After",
        [{"kind": FaultKind.HTTP_429, "retry_after": "0", **ON_PAGE_2}],
        metadata={"run_retries": 1},
    ),
    Row(
        "429 without Retry-After", [{"kind": FaultKind.HTTP_429, "times": 2, **ON_PAGE_2}], metadata={"run_retries": 2}
    ),
    Row("6451010 in a 200 body", [{"kind": FaultKind.THROTTLED_IN_BODY, **ON_PAGE_2}], metadata={"run_retries": 1}),
    Row("500 with 6451001", [{"kind": FaultKind.HTTP_500, **ON_PAGE_2}], metadata={"run_retries": 1}),
    Row("6451001 in a 200 body", [{"kind": FaultKind.BAD_RESPONSE_IN_BODY, **ON_PAGE_2}], metadata={"run_retries": 1}),
    Row("slower than the client timeout", [{"kind": FaultKind.SLOW, "seconds": 1.5, **ON_PAGE_2}]),
    Row("connection dropped mid-body", [{"kind": FaultKind.DROP_CONNECTION, **ON_PAGE_2}], metadata={"run_retries": 1}),
    Row("truncated JSON", [{"kind": FaultKind.TRUNCATED_JSON, **ON_PAGE_2}], metadata={"run_retries": 1}),
    Row("HTML page instead of JSON", [{"kind": FaultKind.HTML_BODY, **ON_PAGE_2}], metadata={"run_retries": 1}),
    Row("new campaign while paging", [{"kind": FaultKind.NEW_CAMPAIGN, **ON_PAGE_2}], metadata={"run_reads": 2}),
    Row("same record on two pages", [{"kind": FaultKind.DUPLICATE_RECORD, **ON_PAGE_2}], metadata={"run_reads": 2}),
    Row("short page before the end", [{"kind": FaultKind.SHORT_PAGE, **ON_PAGE_2}], metadata={"run_reads": 1}),
    Row("total changes between pages", [{"kind": FaultKind.TOTAL_CHANGES, **ON_PAGE_2}], metadata={"run_reads": 2}),
    Row(
        "unknown field",
        [{"kind": FaultKind.UNKNOWN_FIELD, **ON_PAGE_2}],
        metadata={"run_new_unknown_fields": ["costPerMessage"]},
    ),
    Row(
        "throttled past every retry",
        [{"kind": FaultKind.HTTP_429, "times": 1000, **ON_PAGE_2}],
        fails_with=[
            f"CINNOX app '{APP}'",
            "window [2026-06-10T00:00:00.000Z, 2026-06-12T00:00:00.000Z)",
            "offset 10",
            "HTTP 429",
            "code 6451010",
            "Too many requests",
            "gave up after 3 attempts",
        ],
    ),
    Row(
        "paging drifting on every read",
        [{"kind": FaultKind.DUPLICATE_RECORD, "times": 1000, **ON_PAGE_2}],
        fails_with=[f"CINNOX app '{APP}'", "paging kept drifting", "came twice"],
    ),
    Row(
        "malformed records over the reject share",
        [{"kind": FaultKind.MALFORMED_RECORDS, **ON_PAGE_2}],
        fails_with=["records rejected (", "more than the 5.0% allowed", "delivered 'n/a' is not a whole number"],
    ),
]


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(apps={APP: TOKEN}, now=NOW) as server:
        yield server


@pytest.fixture
def run(
    sim: SimulatorServer, warehouse: Engine, warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> Callable[[], dg.ExecuteInProcessResult]:
    import pipelines.assets

    monkeypatch.setattr(pipelines.assets, "RETRY_SECONDS", 0)  # Dagster's own retries, without the minute
    environment = {
        "DATABASE_URL": warehouse_url,
        "CINNOX_BASE_URL": sim.url,
        "CINNOX_APP_IDS": APP,
        "CINNOX_TOKEN_SIM_APP_1": TOKEN,
        "CINNOX_PAGE_SIZE": "10",
        "CINNOX_TIMEOUT_SECONDS": "1",
        "CINNOX_MAX_ATTEMPTS": "3",
        "CINNOX_BACKOFF_MS": "10",
        "CINNOX_REQUESTS_PER_SECOND": "0",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    def execute() -> dg.ExecuteInProcessResult:
        return run_asset_range(dg.AssetKey(["cinnox", "sent_campaigns", "sim_app_1"]), FIRST, LAST)

    return execute


def run_metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    """The last day's materialization metadata: that day's figures and the run's (run_...)."""
    event = max(result.get_asset_materialization_events(), key=lambda e: str(e.partition))
    return {k: v.value for k, v in event.materialization.metadata.items()}


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert failures, "the run failed without a step failure"
    error = failures[-1].step_failure_data.error
    return error.to_string() if error else ""


@pytest.mark.parametrize("row", MATRIX, ids=[row.name for row in MATRIX])
def test_fault_matrix(
    row: Row,
    sim: SimulatorServer,
    warehouse: Engine,
    run: Callable[[], dg.ExecuteInProcessResult],
    empty_warehouse: Callable[[Engine], None],
) -> None:
    for fault in row.faults:
        sim.add_fault(**fault)
    faulted = run()
    if row.fails_with:
        assert not faulted.success
        message = failure_message(faulted)
        for piece in row.fails_with:
            assert piece in message
        assert TOKEN not in message
        after_failure = snapshot(warehouse)
        sim.clear_faults()
        later = run()  # the later clean run on the warehouse the failure left
        assert later.success
        got = snapshot(warehouse)
    else:
        assert faulted.success, failure_message(faulted)
        assert [rule.kind for rule in sim.faults] == []  # every fault fired
        meta = run_metadata(faulted)
        for key, value in row.metadata.items():
            assert meta[key] == value, key
        checks = {c.check_name: c.passed for c in faulted.get_asset_check_evaluations()}
        assert checks["count_reconciled_with_api"] is True
        got = snapshot(warehouse)

    empty_warehouse(warehouse)
    clean = run()  # the same simulator, faults spent: what a run without faults loads
    assert clean.success
    expected = snapshot(warehouse)
    assert expected["fact"]  # a matrix of empty warehouses would prove nothing
    if row.fails_with and "reject share" in row.name:
        # The rejects of the failed run are kept by design; all else equals the clean run.
        assert len(after_failure["rejects"]) == 10
        assert after_failure["fact"] == []
        assert got["rejects"] == after_failure["rejects"]
        got = {**got, "rejects": expected["rejects"]}
    elif row.fails_with:
        assert after_failure == {name: [] for name in SNAPSHOT}  # the failure left nothing behind
    elif row.name == "unknown field":
        # Kept on purpose: the page's records as they came, the new field in their raw JSON.
        extra = sorted(set(got["raw"]) - set(expected["raw"]))
        assert len(extra) == 10
        assert all(json.loads(payload)["costPerMessage"] == 0.0042 for *_, payload in extra)
        assert set(got["fields"]) - set(expected["fields"]) == {(APP, "costPerMessage", False)}
        got = {**got, "raw": expected["raw"], "fields": expected["fields"]}
    assert got == expected


def _admin(warehouse: Engine) -> psycopg.Connection[Any]:
    url = warehouse.url.set(drivername="postgresql").render_as_string(hide_password=False)
    return psycopg.connect(url, autocommit=True)


def test_a_connection_killed_mid_load_is_retried_by_dagster_and_completes(
    sim: SimulatorServer,
    warehouse: Engine,
    run: Callable[[], dg.ExecuteInProcessResult],
    empty_warehouse: Callable[[Engine], None],
) -> None:
    clean = run()
    assert clean.success
    expected = snapshot(warehouse)
    empty_warehouse(warehouse)
    # A session holds the app's merge lock, so the load waits inside its transaction (its chunk
    # read and copied) until its connection is killed; then the lock is let go.
    killed: list[int] = []

    def kill_the_loader() -> None:
        with _admin(warehouse) as holder, _admin(warehouse) as admin:
            holder.execute("SELECT pg_advisory_lock(hashtextextended('cinnox.load:' || %s, 0))", (APP,))
            for _ in range(1000):
                rows = admin.execute(
                    # Only this test's database: the server may be shared with other test runs.
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE query ILIKE '%%advisory%%' AND pid NOT IN (%s, pg_backend_pid())"
                    " AND datname = current_database()",
                    (holder.info.backend_pid,),
                ).fetchall()
                if rows:
                    killed.append(len(rows))
                    return
                time.sleep(0.01)

    killer = threading.Thread(target=kill_the_loader)
    killer.start()
    faulted = run()
    killer.join()
    assert killed == [1]
    assert faulted.success
    retried = [e for e in faulted.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert len(retried) == 1
    assert snapshot(warehouse) == expected


def test_a_campaign_cinnox_stops_returning_is_marked_then_unmarked(
    sim: SimulatorServer, warehouse: Engine, run: Callable[[], dg.ExecuteInProcessResult]
) -> None:
    def meta(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
        assert result.success
        return run_metadata(result)

    first = meta(run())
    expected = snapshot(warehouse)
    gone = expected["fact"][3][1]  # a campaign id the warehouse holds
    sim.hide_campaign(APP, gone)
    hidden = meta(run())
    assert (hidden.get("run_marked_missing_at_source"), hidden.get("run_missing_at_source")) == (1, 1)
    assert hidden["run_records_fetched"] == first["run_records_fetched"] - 1
    facts = {row[1]: row for row in snapshot(warehouse)["fact"]}
    assert len(facts) == len(expected["fact"])  # kept, never deleted
    assert facts[gone][-1] is True
    assert [key for key, row in facts.items() if row[-1]] == [gone]

    sim.hide_campaign(APP, gone, hidden=False)
    back = meta(run())
    assert (back.get("run_reappeared_at_source"), back.get("run_missing_at_source", 0)) == (1, 0)
    assert snapshot(warehouse) == expected


def test_a_step_retry_resumes_after_the_chunks_it_committed(
    sim: SimulatorServer,
    warehouse: Engine,
    run: Callable[[], dg.ExecuteInProcessResult],
    empty_warehouse: Callable[[Engine], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CINNOX_CHUNK_RECORDS", "30")  # two days of about 90 campaigns: several chunks
    clean = run()
    assert clean.success
    expected = snapshot(warehouse)
    planned = run_metadata(clean)["run_chunks"]
    assert planned >= 3
    empty_warehouse(warehouse)
    # The window's probe and the first two chunks' first pages go through; the third chunk's
    # first page fails on every attempt, so the step fails as CINNOX being down and is retried.
    sim.add_fault(FaultKind.HTTP_500, times=3, offset=0, skip=3)
    sim.reset_requests()
    faulted = run()
    assert faulted.success, failure_message(faulted)
    retried = [e for e in faulted.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert len(retried) == 1
    meta = run_metadata(faulted)
    assert meta["run_chunks_resumed"] == 2  # shown when a run resumed
    assert meta["run_chunks"] == planned - 2
    assert snapshot(warehouse) == expected
    # The two committed chunks were read once: every page beyond the retry's probe and the
    # chunks it had left was read in the first try.
    assert len(sim.requests) <= clean_requests(clean) + 3 + 1


def ledger_rows(url: str) -> list[tuple[Any, ...]]:
    engine = create_warehouse_engine(
        make_url(url)
        .set(query={k: v for k, v in make_url(url).query.items() if k != "options"})
        .render_as_string(hide_password=False)
    )
    with engine.connect() as conn:
        rows = [tuple(row) for row in conn.execute(text("SELECT window_start FROM cinnox_ops.load_chunk"))]
    engine.dispose()
    return rows


def clean_requests(result: dg.ExecuteInProcessResult) -> int:
    return int(run_metadata(result)["run_requests"])


@pytest.mark.parametrize(
    ("trigger", "options", "says"),
    [
        (
            "RAISE EXCEPTION USING ERRCODE = 'disk_full', MESSAGE = 'could not extend file: No space left'",
            "",
            "out of disk space",
        ),
        ("PERFORM pg_sleep(3)", "-c statement_timeout=1000", "statement_timeout"),
    ],
    ids=["disk full", "statement timeout"],
)
def test_a_permanent_database_error_fails_at_once_without_reading_on(
    sim: SimulatorServer,
    run: Callable[[], dg.ExecuteInProcessResult],
    create_database: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
    trigger: str,
    options: str,
    says: str,
) -> None:
    url = create_database()
    engine = create_warehouse_engine(url)
    upgrade_to_head(engine)
    with engine.begin() as conn:
        # The database's own errors, raised where a chunk's merge writes the fact.
        conn.execute(
            text(
                "CREATE FUNCTION cinnox.fail_the_load() RETURNS trigger LANGUAGE plpgsql AS"
                f" $$ BEGIN {trigger}; RETURN NEW; END $$"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER fail_the_load BEFORE INSERT ON cinnox.fact_sent_campaign"
                " FOR EACH ROW EXECUTE FUNCTION cinnox.fail_the_load()"
            )
        )
    engine.dispose()
    if options:
        url = make_url(url).update_query_dict({"options": options}).render_as_string(hide_password=False)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("CINNOX_CHUNK_RECORDS", "30")
    result = run()
    assert not result.success
    message = failure_message(result)
    assert says in message
    assert "loading into the warehouse failed" in message
    assert not [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    # Nothing read on: the first chunk, and at most the one read beside its failing merge, which
    # stops at its next page.
    windows = {(r.params["startAt"], r.params["endAt"]) for r in sim.requests if r.params.get("limit") != "1"}
    assert len(windows) <= 2
    assert len(ledger_rows(url)) == 0
