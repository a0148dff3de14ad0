"""Load phase: the project's normalise + validate + load path against plain COPY.

    python -m bench.load --records 100000            # every load figure
    python -m bench.load --records 1000000 --memory  # first load only, for its peak RSS

Run by `python -m bench` in a subprocess of its own. For the timed figures the records are
generated before the clock starts and held in memory (as decoded API pages), and COPY gets the
same records already flattened: each figure times the path, not the generator. The --memory
run instead generates pages as the load asks for them, so its peak RSS is the load's own.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from bench.common import Figure, current_xid, emit, fresh_database, peak_rss_mb, quiesce, rows_written_since
from cinnox import Page, Window
from devenv.psql import libpq_url
from warehouse.db import create_warehouse_engine
from warehouse.load import load_sent_campaigns
from warehouse.migrate import upgrade_to_head

APP = "bench-app"
START = datetime(2025, 1, 1, tzinfo=UTC)
WINDOW = Window(START, START + timedelta(days=366))
PAGE_SIZE = 100
CHANGE_EVERY = 10  # the changed re-load bumps every tenth record's counters


def synthetic_records(count: int, *, changed: bool = False, seed: int = 7) -> Iterator[dict[str, Any]]:
    """Summary records with the API's shape and realistic cardinalities: 300 senders, 50 staff,
    200 templates, both channels, spread over a year. The same seed gives the same records;
    `changed` bumps the counters of every tenth (delivered + 1, pending - 1: still consistent)."""
    rng = random.Random(seed)
    staff = [f"Staff {i}" for i in range(50)]
    templates = [f"template_{i}_v{i % 3}" for i in range(200)]
    sms_senders = [{"phone": f"+8523{i:07d}", "senderEID": f"eid-{i % 50:04d}"} for i in range(150)]
    wa_senders = [
        {"phone": f"+8529{i:07d}", "channelName": f"Channel {i}", "sourceName": f"WABA {i % 7}"} for i in range(150)
    ]
    for i in range(count):
        sent = START + timedelta(seconds=rng.randrange(365 * 86400))
        total = rng.randrange(2, 5000)
        delivered = rng.randrange(0, total)  # below total, so a bump stays <= total
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
            failed = rng.randrange(0, total - delivered)
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
        if changed and i % CHANGE_EVERY == 0:
            record["delivered"] += 1
            if record.get("pending") is not None:
                record["pending"] -= 1
        yield record


def pages(count: int, *, changed: bool = False, fetched: datetime | None = None) -> Iterator[Page]:
    fetched = fetched or datetime.now(UTC)
    batch: list[dict[str, Any]] = []
    offset = 0
    for record in synthetic_records(count, changed=changed):
        batch.append(record)
        if len(batch) == PAGE_SIZE:
            yield Page(APP, WINDOW, offset, batch, count, fetched, 1)
            offset += len(batch)
            batch = []
    if batch:
        yield Page(APP, WINDOW, offset, batch, count, fetched, 1)


def flatten(record: dict[str, Any]) -> tuple[Any, ...]:
    sender = record["sender"]
    return (
        record["id"], record["date"], record["channel"], record["campaignName"], record["createdBy"],
        sender.get("phone"), sender.get("channelName"), sender.get("sourceName"), sender.get("senderEID"),
        record.get("subject"), record["totalRecipients"], record["delivered"], record.get("read"),
        record.get("replied"), record.get("pending"), record.get("failed"),
    )  # fmt: skip


def source_seconds(count: int) -> float:
    """What generating the pages alone costs (the --memory run streams them into the load)."""
    started = time.perf_counter()
    for _ in pages(count):
        pass
    return time.perf_counter() - started


# COPY runs a few seconds where a load runs tens: one sample moved the 1M first load's ratio
# from 0.09 to 0.15 within an hour. Each phase takes the median of this many.
COPY_SAMPLES = 3


def copy_baseline_seconds(url: str, rows: list[tuple[Any, ...]]) -> float:
    """COPY of the same flattened rows into a logged table with a primary key, in this database."""
    with psycopg.connect(libpq_url(url)) as conn:
        conn.execute("DROP TABLE IF EXISTS public.bench_copy_baseline")
        conn.execute(
            "CREATE TABLE public.bench_copy_baseline (id text PRIMARY KEY, sent_at timestamptz, channel text,"
            " campaign_name text, created_by text, phone text, channel_name text, source_name text,"
            " sender_eid text, subject text, total_recipients int, delivered int, read int, replied int,"
            " pending int, failed int)"
        )
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY public.bench_copy_baseline FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        seconds = time.perf_counter() - started
        conn.execute("DROP TABLE public.bench_copy_baseline")
        conn.commit()
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Load phase of the benchmark")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--memory", action="store_true", help="first load only; report its peak RSS")
    args = parser.parse_args(argv)
    n = args.records
    url = fresh_database("cinnox_bench")
    engine = create_warehouse_engine(url)
    upgrade_to_head(engine)

    if args.memory:
        generation = source_seconds(n)
        started = time.perf_counter()
        result = load_sent_campaigns(engine, APP, WINDOW, pages(n))
        seconds = time.perf_counter() - started
        assert result.inserted == n, result
        emit({"records": n, "seconds": seconds, "source_seconds": generation, "peak_rss_mb": peak_rss_mb()})
        engine.dispose()
        return 0

    source = list(pages(n))
    copy_rates: list[float] = []

    def sample_copy(records: list[Page]) -> None:
        # Flattened afresh each time, not held: a million tuples more for the collector to
        # walk would slow the loads timed between the samples.
        rows = [flatten(record) for page in records for record in page.records]  # type: ignore[arg-type]
        quiesce(url)
        copy_rates.append(n / copy_baseline_seconds(url, rows))

    # COPY_SAMPLES of them: before, between and after the loads, each on the machine of its minute.
    sample_copy(source)
    quiesce(url)
    xid = current_xid(url)
    started = time.perf_counter()
    first = load_sent_campaigns(engine, APP, WINDOW, source)
    load_rate = n / (time.perf_counter() - started)
    first_written = rows_written_since(url, xid)
    assert first.inserted == n, first
    sample_copy(source)

    quiesce(url)
    xid = current_xid(url)
    started = time.perf_counter()
    again = load_sent_campaigns(engine, APP, WINDOW, source)
    noop_rate = n / (time.perf_counter() - started)
    noop_written = rows_written_since(url, xid)
    assert again.unchanged == n, again

    del source
    changed_source = list(pages(n, changed=True))
    changed = len(range(0, n, CHANGE_EVERY))
    quiesce(url)
    xid = current_xid(url)
    started = time.perf_counter()
    delta = load_sent_campaigns(engine, APP, WINDOW, changed_source)
    delta_rate = n / (time.perf_counter() - started)
    delta_written = rows_written_since(url, xid)
    assert delta.updated == changed, delta
    engine.dispose()
    sample_copy(changed_source)  # the same shapes, every tenth counter one higher
    copy_rate = statistics.median(copy_rates)

    figures = [
        Figure(f"COPY into logged table with PK, median of {len(copy_rates)}", copy_rate, "rows/s", "itself",
               copy_rate, 1.0, n),
        Figure(f"first load, {n:,} records (dims, fact, history, raw)", load_rate, "rows/s",
               "COPY into logged table with PK", copy_rate, load_rate / copy_rate,
               first_written.get("cinnox.fact_sent_campaign", 0), ">= 0.11 (0.5 the aim)"),
        Figure("no-op re-load", noop_rate, "rows/s", "COPY into logged table with PK", copy_rate,
               noop_rate / copy_rate, sum(noop_written.values()), ">= 0.2, 0 rows written"),
        Figure(f"re-load, {changed:,} counters changed", delta_rate, "rows/s", "COPY into logged table with PK",
               copy_rate, delta_rate / copy_rate, delta_written.get("cinnox.fact_sent_campaign", 0),
               f"fact rows written = {changed:,}"),
    ]  # fmt: skip
    emit(
        {
            "records": n,
            "figures": figures,
            "written": {"first": first_written, "noop": noop_written, "changed": delta_written},
            "copy_rates": copy_rates,
            "peak_rss_mb": peak_rss_mb(),
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
