"""Load benchmark: the project's normalise + validate + load path against plain COPY.

    python -m bench.load --records 100000

Every figure is a ratio to a baseline measured in the same run on the same database, since
absolute times drift between machines and runs. Prints a table and writes JSON to
bench/results/load-<records>.json. Uses DATABASE_URL's server, else the embedded PostgreSQL,
and a database of its own (`cinnox_bench`, dropped and recreated).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import Engine, literal_column, select
from sqlalchemy.engine import make_url

import devenv  # noqa: F401  (quiets pgserver's import-time warning)
from cinnox import Page, Window
from devenv.postgres import embedded_warehouse_url, ensure_database
from devenv.psql import libpq_url
from warehouse.db import create_warehouse_engine
from warehouse.load import load_sent_campaigns
from warehouse.migrate import upgrade_to_head
from warehouse.models import Base

RESULTS = Path(__file__).resolve().parent / "results"
APP = "bench-app"
START = datetime(2025, 1, 1, tzinfo=UTC)
PAGE_SIZE = 100


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    baseline: str
    baseline_value: float
    ratio: float
    rows_written: int | None = None


def synthetic_records(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """Summary records with the API's shape and realistic cardinalities: ~300 senders, 50 staff,
    200 templates, both channels, spread over a year."""
    rng = random.Random(seed)
    staff = [f"Staff {i}" for i in range(50)]
    templates = [f"template_{i}_v{i % 3}" for i in range(200)]
    sms_senders = [{"phone": f"+8523{i:07d}", "senderEID": f"eid-{i % 50:04d}"} for i in range(150)]
    wa_senders = [
        {"phone": f"+8529{i:07d}", "channelName": f"Channel {i}", "sourceName": f"WABA {i % 7}"} for i in range(150)
    ]
    records = []
    for i in range(count):
        sent = START + timedelta(seconds=rng.randrange(365 * 86400))
        total = rng.randrange(1, 5000)
        delivered = rng.randrange(0, total + 1)
        record: dict[str, Any] = {
            "id": f"{i:024x}",
            "date": sent.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "campaignName": f"Campaign {i % 997}",
            "createdBy": rng.choice(staff),
            "totalRecipients": total,
            "delivered": delivered,
        }
        if rng.random() < 0.4:
            record |= {"channel": "SMS", "sender": rng.choice(sms_senders)}
        else:
            failed = rng.randrange(0, total - delivered + 1)
            read = rng.randrange(0, delivered + 1)
            record |= {
                "channel": "WhatsApp",
                "sender": rng.choice(wa_senders),
                "subject": rng.choice(templates),
                "read": read,
                "replied": rng.randrange(0, read + 1),
                "failed": failed,
                "pending": total - delivered - failed,
            }
        records.append(record)
    return records


def pages(records: list[dict[str, Any]], window: Window, fetched: datetime | None = None) -> Iterator[Page]:
    fetched = fetched or datetime.now(UTC)
    for offset in range(0, len(records), PAGE_SIZE):
        yield Page(APP, window, offset, records[offset : offset + PAGE_SIZE], len(records), fetched, 1)


def flatten(record: dict[str, Any]) -> tuple[Any, ...]:
    sender = record["sender"]
    return (
        record["id"], record["date"], record["channel"], record["campaignName"], record["createdBy"],
        sender.get("phone"), sender.get("channelName"), sender.get("sourceName"), sender.get("senderEID"),
        record.get("subject"), record["totalRecipients"], record["delivered"], record.get("read"),
        record.get("replied"), record.get("pending"), record.get("failed"),
    )  # fmt: skip


def copy_baseline(server_url: str, rows: list[tuple[Any, ...]]) -> float:
    """Seconds to COPY the flattened rows into a logged table with a primary key."""
    with psycopg.connect(server_url) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_copy_baseline")
        conn.execute(
            "CREATE TABLE bench_copy_baseline (id text PRIMARY KEY, sent_at timestamptz, channel text,"
            " campaign_name text, created_by text, phone text, channel_name text, source_name text,"
            " sender_eid text, subject text, total_recipients int, delivered int, read int, replied int,"
            " pending int, failed int)"
        )
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY bench_copy_baseline FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        return time.perf_counter() - started


def row_versions(engine: Engine) -> set[tuple[str, str, str]]:
    versions: set[tuple[str, str, str]] = set()
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            query = select(literal_column("ctid::text"), literal_column("xmin::text")).select_from(table)
            versions |= {(table.fullname, ctid, xmin) for ctid, xmin in conn.execute(query)}
    return versions


def fresh_database(base_url: str, name: str = "cinnox_bench") -> str:
    server = libpq_url(base_url)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    ensure_database(server, name)
    return make_url(base_url).set(drivername="postgresql+psycopg", database=name).render_as_string(False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Load benchmark")
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args(argv)
    url = fresh_database(os.environ.get("DATABASE_URL") or embedded_warehouse_url())
    engine = create_warehouse_engine(url)
    upgrade_to_head(engine)
    window = Window(START, START + timedelta(days=366))
    records = synthetic_records(args.records)
    n = len(records)

    copy_seconds = copy_baseline(libpq_url(url), [flatten(r) for r in records])
    copy_rate = n / copy_seconds

    started = time.perf_counter()
    first = load_sent_campaigns(engine, APP, window, pages(records, window))
    load_seconds = time.perf_counter() - started
    assert first.inserted == n, first

    before = row_versions(engine)
    started = time.perf_counter()
    again = load_sent_campaigns(engine, APP, window, pages(records, window))
    reload_seconds = time.perf_counter() - started
    after = row_versions(engine)
    assert again.unchanged == n, again
    noop_written = len(after - before)

    for record in records[::10]:
        record["delivered"] += 1
    changed = len(records[::10])
    before = after
    started = time.perf_counter()
    delta = load_sent_campaigns(engine, APP, window, pages(records, window))
    delta_seconds = time.perf_counter() - started
    after = row_versions(engine)
    fact_written = sum(1 for table, *_ in after - before if table == "cinnox.fact_sent_campaign")
    assert delta.updated == changed, delta

    load_rate = n / load_seconds
    figures = [
        Figure("copy into logged table with PK", copy_rate, "rows/s", "itself", copy_rate, 1.0, n),
        Figure("first load (normalise+validate+load)", load_rate, "rows/s", "copy into logged table with PK",
               copy_rate, load_rate / copy_rate, n),
        Figure("no-op re-load", n / reload_seconds, "rows/s", "first load", load_rate,
               (n / reload_seconds) / load_rate, noop_written),
        Figure(f"re-load, {changed} counters changed (fact rows written)", n / delta_seconds, "rows/s", "first load",
               load_rate, (n / delta_seconds) / load_rate, fact_written),
    ]  # fmt: skip
    server = make_url(url).host or make_url(url).query.get("host")
    print(f"\nLoad benchmark, {n:,} records, {platform.node()} ({os.cpu_count()} cores), PostgreSQL at {server}")
    print(f"{'figure':<58} {'value':>12} {'unit':<7} {'ratio':>6} {'rows written':>13}")
    for f in figures:
        written = f"{f.rows_written:,}" if f.rows_written is not None else ""
        print(f"{f.name:<58} {f.value:>12,.0f} {f.unit:<7} {f.ratio:>6.2f} {written:>13}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"load-{n}.json"
    out.write_text(json.dumps({"records": n, "measured_at": datetime.now(UTC).isoformat(),
                               "figures": [asdict(f) for f in figures]}, indent=2))  # fmt: skip
    print(f"written to {out.relative_to(RESULTS.parent.parent)}")
    engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
