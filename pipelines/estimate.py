"""What a backfill will cost, before it runs: API requests and time at the configured rate.

    python -m pipelines.estimate --app my-app-id --start 2025-01-01 --end 2025-12-31
    make estimate APP=my-app-id START=2025-01-01 END=2025-12-31

Without arguments: every app, the last 30 days. Without CINNOX_BASE_URL: the simulator, like
`make run` and `make dev`.

A backfill of an app is one run (the asset's single-run backfill policy) that reads its range
in chunks of at most CINNOX_CHUNK_RECORDS records, the plan the run itself makes: one request
with limit=1 asks for CINNOX's count of the range's campaigns (`total`), then each chunk takes
its pages, the last one short (`plan_requests`). Each request first waits for the app's request
budget, and then for CINNOX's answer, so the time is the requests over
CINNOX_REQUESTS_PER_SECOND when the rate is the limit, or the requests times CINNOX's answer
time (measured on warm connections, the first one's set-up left out) when that is slower.
Retries, and a chunk's re-read after paging drift, come on top.

Reads the same environment as the code location: CINNOX_BASE_URL, CINNOX_APP_IDS,
CINNOX_TOKEN_<APP>, CINNOX_PAGE_SIZE, CINNOX_CHUNK_RECORDS, CINNOX_REQUESTS_PER_SECOND,
CINNOX_AUTH_HEADER / _SCHEME, CINNOX_TOTAL_KEY.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, timedelta

from cinnox import SENT_CAMPAIGNS_SUMMARY, CinnoxClient, CinnoxError, Window
from pipelines.settings import AppSettings, PipelineSettings, SettingsError, whole_number
from warehouse.load.chunks import DEFAULT_CHUNK_RECORDS, format_duration
from warehouse.load.plan import requests_for

DEFAULT_PAGE_SIZE = 100
DEFAULT_REQUESTS_PER_SECOND = 10
DEFAULT_DAYS = 30
WARM_PROBES = 2  # limit=1 requests after the first, on the open connection, to time an answer


# -- the plan: small and pure, so it can change without touching the command line ---------------


def plan_requests(total: int, page_size: int, chunk_records: int = DEFAULT_CHUNK_RECORDS) -> tuple[int, int]:
    """(chunks, API requests) of a single-run backfill of a window with `total` campaigns,
    retries aside: the run's own chunk plan (warehouse/load/plan.py)."""
    return requests_for(total, chunk_records, page_size)


def plan_seconds(requests: int, requests_per_second: float | None, answer_seconds: float) -> float:
    """Time of `requests` made one after another: each waits for the budget, then for the answer.

    The budget admits one request every 1/rate seconds; a request whose answer takes longer
    than that is the limit instead. So the slower of the two, per request, never their sum.
    """
    interval = 1 / requests_per_second if requests_per_second else 0.0
    return requests * max(interval, answer_seconds)


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
    probe_seconds: float  # CINNOX's answer time on a warm connection (the median of the probes)
    seconds: float

    def describe(self) -> str:
        rate = f"{self.requests_per_second:g} requests/s" if self.requests_per_second else "no rate limit"
        limit = (
            "the rate limit"
            if self.requests_per_second and 1 / self.requests_per_second >= self.probe_seconds
            else "CINNOX's answer time"
        )
        return (
            f"CINNOX app {self.app_id}, send dates {self.first_day}..{self.last_day} ({self.days} days), "
            f"{self.runs} run (single-run backfill):\n"
            f"  campaigns now in the window: {self.campaigns} (CINNOX's total)\n"
            f"  API requests: {self.requests} in {self.chunks} chunk{'s' if self.chunks != 1 else ''} "
            f"of up to {self.chunk_records} records (the probe, then pages of {self.page_size}; "
            "retries and drift re-reads extra)\n"
            f"  time at {rate}: about {format_duration(self.seconds)}, set by {limit} "
            f"(CINNOX answered a probe in {self.probe_seconds:.3f}s)"
        )


def estimate(
    client: CinnoxClient,
    first_day: date,
    last_day: date,
    page_size: int,
    requests_per_second: float | None,
    chunk_records: int = DEFAULT_CHUNK_RECORDS,
) -> Estimate:
    """Ask CINNOX for the window's `total` with limit=1 requests, and plan the backfill from it."""
    if last_day < first_day:
        raise ValueError(f"END {last_day} is before START {first_day}")
    start = datetime.combine(first_day, datetime.min.time(), UTC)
    window = Window(start, datetime.combine(last_day + timedelta(days=1), datetime.min.time(), UTC))
    total, answer = _probe(client, window)
    chunks, requests = plan_requests(total, page_size, chunk_records)
    return Estimate(
        app_id=client.app_id,
        first_day=first_day.isoformat(),
        last_day=last_day.isoformat(),
        days=(last_day - first_day).days + 1,
        runs=1,
        campaigns=total,
        page_size=page_size,
        chunk_records=chunk_records,
        chunks=chunks,
        requests=requests,
        requests_per_second=requests_per_second,
        probe_seconds=round(answer, 4),
        seconds=round(plan_seconds(requests, requests_per_second, answer), 1),
    )


def _probe(client: CinnoxClient, window: Window) -> tuple[int, float]:
    """The window's total, and CINNOX's answer time without the first connection's set-up."""
    timings: list[float] = []
    total: int | None = None
    for _ in range(1 + WARM_PROBES):
        began = time.monotonic()
        page = client.probe(window)  # one limit=1 request, as the run's own first
        timings.append(time.monotonic() - began)
        total = page.total
        if total is None:
            raise CinnoxError(
                f"CINNOX app {client.app_id!r} returned no total for {window}; the estimate needs it "
                "(CINNOX_TOTAL_KEY names where it is)",
                app_id=client.app_id,
            )
    assert total is not None
    warm = sorted(timings[1:])
    return total, warm[len(warm) // 2]


# -- the command line ------------------------------------------------------------------------------


class _Mistake(Exception):
    """An argument or setting is wrong; the message names it."""


def _day(text: str, name: str, default: date) -> date:
    if not text.strip():
        return default
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise _Mistake(f"{name} {text!r} is not a date: use YYYY-MM-DD, e.g. {default.isoformat()}") from None


@contextmanager
def _source(environ: Mapping[str, str]) -> Iterator[tuple[str, dict[str, str], str]]:
    """(base URL, app id -> token, where the app list comes from): the environment's, or the simulator's."""
    base_url = environ.get("CINNOX_BASE_URL", "").strip()
    if base_url:
        apps = PipelineSettings.from_env(environ).apps if environ.get("CINNOX_APP_IDS", "").strip() else ()
        if not apps:
            raise _Mistake("CINNOX_BASE_URL is set but CINNOX_APP_IDS is not: name the apps to estimate")
        # Imported here: the code location never needs devenv.
        from devenv.errors import check_cinnox

        check_cinnox(environ, apps)
        yield base_url, {app.app_id: environ[app.token_env_var] for app in apps}, "CINNOX_APP_IDS"
        return
    from cinnox.simulator import DEFAULT_APPS, SimulatorServer

    with SimulatorServer() as simulator:
        yield simulator.url, dict(DEFAULT_APPS), "the simulator (CINNOX_BASE_URL is unset)"


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.estimate", description=__doc__.splitlines()[0])
    parser.add_argument("--app", default="", help="CINNOX App ID (default: every app)")
    parser.add_argument("--start", default="", help=f"first send date, YYYY-MM-DD (default: {DEFAULT_DAYS} days ago)")
    parser.add_argument("--end", default="", help="last send date, YYYY-MM-DD (default: today, UTC)")
    parser.add_argument("--json", action="store_true", help="print the estimates as JSON, one a line")
    args = parser.parse_args(argv)
    from devenv.errors import OperatorError, verbose

    try:
        with ExitStack() as stack:
            results = _estimates(stack, args, environ)
    except (_Mistake, SettingsError, OperatorError, CinnoxError, ValueError) as exc:
        if verbose(environ):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, CinnoxError) else 2
    for result in results:
        print(json.dumps(asdict(result)) if args.json else result.describe())
    return 0


def _estimates(stack: ExitStack, args: argparse.Namespace, environ: Mapping[str, str]) -> list[Estimate]:
    today = datetime.now(UTC).date()
    last_day = _day(args.end, "END (--end)", today)
    first_day = _day(args.start, "START (--start)", last_day - timedelta(days=DEFAULT_DAYS - 1))
    if last_day < first_day:
        raise _Mistake(f"END (--end) {last_day} is before START (--start) {first_day}")

    def setting(name: str, default: int, minimum: int) -> int:
        return whole_number(name, environ.get(name, str(default)), minimum=minimum)

    page_size = setting("CINNOX_PAGE_SIZE", DEFAULT_PAGE_SIZE, 1)
    rate = setting("CINNOX_REQUESTS_PER_SECOND", DEFAULT_REQUESTS_PER_SECOND, 0) or None
    chunk_records = setting("CINNOX_CHUNK_RECORDS", DEFAULT_CHUNK_RECORDS, 1)
    base_url, tokens, known_from = stack.enter_context(_source(environ))
    wanted = [args.app.strip()] if args.app.strip() else list(tokens)
    for app_id in wanted:
        if app_id not in tokens:
            raise _Mistake(f"APP (--app) {app_id!r} is not a known app; {known_from} has: {', '.join(tokens)}")
    endpoint = SENT_CAMPAIGNS_SUMMARY
    if "CINNOX_TOTAL_KEY" in environ:
        endpoint = replace(endpoint, total_key=environ["CINNOX_TOTAL_KEY"] or None)
    results = []
    for app_id in wanted:
        with CinnoxClient(
            base_url,
            AppSettings(app_id).app_id,
            tokens[app_id],
            auth_header=environ.get("CINNOX_AUTH_HEADER", "Authorization"),
            auth_scheme=environ.get("CINNOX_AUTH_SCHEME", "Bearer"),
            page_size=1,
            endpoint=endpoint,
            allow_plain_http=environ.get("CINNOX_ALLOW_PLAIN_HTTP", "false").strip().lower() == "true",
        ) as client:
            results.append(estimate(client, first_day, last_day, page_size, rate, chunk_records))
    return results


if __name__ == "__main__":
    sys.exit(main())
