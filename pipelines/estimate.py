"""What a backfill will cost, before it runs: API requests and time at the configured rate.

    python -m pipelines.estimate --app my-app-id --start 2025-01-01 --end 2025-12-31
    make estimate APP=my-app-id START=2025-01-01 END=2025-12-31

A backfill of an app is one run (the asset's single-run backfill policy) that reads its range
in chunks of at most CINNOX_CHUNK_RECORDS records, the plan the run itself makes: one request
with limit=1 asks for the range's `total`, then each chunk takes its pages, the last one short.
Each request first waits for the app's request budget, so the time is the requests over
CINNOX_REQUESTS_PER_SECOND, or the requests times the API's answer time when that is slower.
Retries, and a chunk's re-read after paging drift, come on top.

Reads the same environment as the code location: CINNOX_BASE_URL, CINNOX_TOKEN_<APP>,
CINNOX_PAGE_SIZE, CINNOX_REQUESTS_PER_SECOND, CINNOX_AUTH_HEADER / _SCHEME, CINNOX_TOTAL_KEY.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, timedelta

from cinnox import SENT_CAMPAIGNS_SUMMARY, CinnoxClient, CinnoxError, Window
from pipelines.settings import AppSettings
from warehouse.load.chunks import DEFAULT_CHUNK_RECORDS
from warehouse.load.plan import requests_for

DEFAULT_PAGE_SIZE = 100
DEFAULT_REQUESTS_PER_SECOND = 10


@dataclass(frozen=True, slots=True)
class Estimate:
    app_id: str
    first_day: str
    last_day: str
    days: int
    runs: int
    campaigns: int
    page_size: int
    chunk_records: int
    chunks: int
    requests: int
    requests_per_second: float | None
    probe_seconds: float  # how long CINNOX took to answer the limit=1 request
    seconds: float

    def describe(self) -> str:
        rate = f"{self.requests_per_second:g} requests/s" if self.requests_per_second else "no rate limit"
        return (
            f"CINNOX app {self.app_id}, send dates {self.first_day}..{self.last_day} ({self.days} days), "
            f"{self.runs} run (single-run backfill):\n"
            f"  campaigns now in the window: {self.campaigns} (CINNOX's total)\n"
            f"  API requests: {self.requests} in {self.chunks} chunk(s) of up to {self.chunk_records} records "
            f"(pages of {self.page_size}; retries and drift re-reads extra)\n"
            f"  time at {rate}: about {_duration(self.seconds)} "
            f"(CINNOX answered the probe in {self.probe_seconds:.2f}s)"
        )


def estimate(
    client: CinnoxClient,
    first_day: date,
    last_day: date,
    page_size: int,
    requests_per_second: float | None,
    chunk_records: int = DEFAULT_CHUNK_RECORDS,
) -> Estimate:
    """Ask CINNOX for the window's `total` with one limit=1 request, and plan the run's chunks."""
    if last_day < first_day:
        raise ValueError(f"--end {last_day} is before --start {first_day}")
    start = datetime.combine(first_day, datetime.min.time(), UTC)
    window = Window(start, datetime.combine(last_day + timedelta(days=1), datetime.min.time(), UTC))
    began = time.monotonic()
    page = client.probe(window)  # one request, as the run's own first
    probe = time.monotonic() - began
    if page.total is None:
        raise CinnoxError(
            f"CINNOX app {client.app_id!r} returned no total for {window}; the estimate needs it "
            "(CINNOX_TOTAL_KEY names where it is)",
            app_id=client.app_id,
        )
    chunks, requests = requests_for(page.total, chunk_records, page_size)
    per_request = max(1 / requests_per_second if requests_per_second else 0.0, probe)
    return Estimate(
        app_id=client.app_id,
        first_day=first_day.isoformat(),
        last_day=last_day.isoformat(),
        days=(last_day - first_day).days + 1,
        runs=1,
        campaigns=page.total,
        page_size=page_size,
        chunk_records=chunk_records,
        chunks=chunks,
        requests=requests,
        requests_per_second=requests_per_second,
        probe_seconds=round(probe, 3),
        seconds=round(requests * per_request, 1),
    )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _whole(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name, str(default)).strip()
    if not text.isdigit():
        raise SystemExit(f"{name}: {text!r} is not a whole number")
    return int(text)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.estimate", description=__doc__.splitlines()[0])
    parser.add_argument("--app", required=True, help="CINNOX App ID")
    parser.add_argument("--start", required=True, type=date.fromisoformat, help="first send date, YYYY-MM-DD")
    parser.add_argument("--end", required=True, type=date.fromisoformat, help="last send date, YYYY-MM-DD")
    parser.add_argument("--json", action="store_true", help="print the estimate as JSON")
    args = parser.parse_args(argv)
    app = AppSettings(args.app)
    base_url = environ.get("CINNOX_BASE_URL", "")
    token = environ.get(app.token_env_var, "")
    if not base_url or not token:
        print(f"set CINNOX_BASE_URL and {app.token_env_var} (the App Token) first", file=sys.stderr)
        return 2
    page_size = _whole(environ, "CINNOX_PAGE_SIZE", DEFAULT_PAGE_SIZE)
    rate = _whole(environ, "CINNOX_REQUESTS_PER_SECOND", DEFAULT_REQUESTS_PER_SECOND) or None
    chunk_records = _whole(environ, "CINNOX_CHUNK_RECORDS", DEFAULT_CHUNK_RECORDS) or DEFAULT_CHUNK_RECORDS
    endpoint = SENT_CAMPAIGNS_SUMMARY
    if "CINNOX_TOTAL_KEY" in environ:
        endpoint = replace(endpoint, total_key=environ["CINNOX_TOTAL_KEY"] or None)
    try:
        with CinnoxClient(
            base_url,
            app.app_id,
            token,
            auth_header=environ.get("CINNOX_AUTH_HEADER", "Authorization"),
            auth_scheme=environ.get("CINNOX_AUTH_SCHEME", "Bearer"),
            page_size=1,
            endpoint=endpoint,
        ) as client:
            result = estimate(client, args.start, args.end, page_size, rate, chunk_records)
    except (CinnoxError, ValueError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(json.dumps(asdict(result)) if args.json else result.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
