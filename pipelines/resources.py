"""Dagster resources: one per external system, each handing out domain objects."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
from pydantic import Field, PrivateAttr
from sqlalchemy import Engine

from cinnox import (
    DEFAULT_MAX_RESPONSE_BYTES,
    SENT_CAMPAIGNS_SUMMARY,
    CinnoxClient,
    Page,
    RateLimiter,
    RetryPolicy,
    Window,
)
from pipelines.settings import PipelineSettings, SettingsError, whole_number
from warehouse.budget import PostgresRateLimiter
from warehouse.db import create_warehouse_engine
from warehouse.load import DEFAULT_MERGE_LOCK_TIMEOUT, LedgerKey, LoadResult, SettlePolicy, load_sent_campaigns
from warehouse.load.chunks import DEFAULT_CHUNK_RECORDS, ChunkProgress, WindowLoad, load_window


class CinnoxAppToken(dg.Config):
    """The App Token of one CINNOX app; set it with `EnvVar`, never as a literal."""

    app_id: str
    token: str = Field(repr=False, description="The App Token; from an environment variable, never a literal.")
    token_env_var: str = ""  # named in errors so the data engineer knows what to fix


class CinnoxResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The CINNOX open API: builds a client per app, with that app's token.

    >>> with cinnox.client("my-app-id") as client:
    ...     for page in client.sent_campaign_pages(window): ...
    """

    base_url: str
    apps: list[CinnoxAppToken]
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"
    page_size: int = 100
    timeout_seconds: int = 30
    max_attempts: int = 6
    records_key: str = SENT_CAMPAIGNS_SUMMARY.records_key
    total_key: str = "total"
    requests_per_second: int = 10  # per app; 0: no limit
    # Where the per-app budget lives: a PostgreSQL URL shares it between every run and process
    # (cinnox_ops.api_request_budget); empty keeps it in this process, shared by this run only.
    request_budget_url: str = Field(
        default="",
        repr=False,
        description="Database holding the per-app request budget (CINNOX_REQUEST_BUDGET_URL, else "
        "DATABASE_URL); empty: per run only.",
    )
    backoff_ms: int = 500  # first retry's backoff, doubled each time
    retry_budget_seconds: int = 300  # per page, whatever the attempts left
    max_reads: int = 4  # reads of a drifting window before giving up
    ca_bundle: str = ""  # extra trusted roots (PEM file); verification itself cannot be disabled
    allow_plain_http: str = "false"  # "true" allows http:// to a non-loopback host
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES  # per response, once decompressed
    _limiters: dict[str, RateLimiter] = PrivateAttr(default_factory=dict)
    _limiters_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _budget_engine: Engine | None = PrivateAttr(default=None)

    @property
    def request_budget(self) -> str:
        """Where the budget is kept, as the run's metadata says it."""
        if not self.requests_per_second:
            return "none"
        return "postgres" if self.request_budget_url else "process"

    def rate_limiter(self, app_id: str) -> RateLimiter:
        """The app's limiter: one per resource instance, so every client of a run shares it.

        With `request_budget_url`, the limiter takes its tokens from PostgreSQL, so every other
        run and process of the app shares the same budget too.
        """
        with self._limiters_lock:
            if app_id not in self._limiters:
                rate = self.requests_per_second or None
                if self.request_budget_url and rate is not None:
                    if self._budget_engine is None:
                        self._budget_engine = create_warehouse_engine(self.request_budget_url)
                    self._limiters[app_id] = PostgresRateLimiter(self._budget_engine, app_id, rate)
                else:
                    self._limiters[app_id] = RateLimiter(rate)
            return self._limiters[app_id]

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self.check_settings()

    def check_settings(self) -> None:
        """Refuse, before any request, what would leak or could never work; name the variable,
        never the value. Raises `dg.Failure` (not retried)."""
        problems = []
        for app in self.apps:
            if app.token and not _VISIBLE_ASCII.fullmatch(app.token):
                problems.append(
                    f"{app.token_env_var or 'the App Token of ' + repr(app.app_id)} holds a character an HTTP "
                    "header cannot carry (a control character such as a trailing newline, CR or NUL, a space, or "
                    "non-ASCII). A secret mounted from a file often ends in a newline: strip it where the "
                    'secret is created (e.g. `printf %s "$TOKEN"`, not `echo`)'
                )
        if self.auth_scheme and not _VISIBLE_ASCII.fullmatch(self.auth_scheme):
            problems.append(
                "CINNOX_AUTH_SCHEME holds a character an HTTP header cannot carry (a control character such as "
                "a trailing newline, a space, or non-ASCII)"
            )
        if _has_userinfo(self.base_url):
            problems.append(
                "CINNOX_BASE_URL carries credentials (user:password@host); remove them: the App Token is the "
                "only credential sent to CINNOX"
            )
        if problems:
            raise dg.Failure("; ".join(problems), allow_retries=False)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._budget_engine is not None:
            self._budget_engine.dispose()
            self._budget_engine = None

    def token_env_var(self, app_id: str) -> str:
        return next((app.token_env_var for app in self.apps if app.app_id == app_id), "")

    def client(self, app_id: str, logger: logging.Logger | None = None) -> CinnoxClient:
        tokens = {app.app_id: app.token for app in self.apps}
        if app_id not in tokens:
            raise dg.Failure(f"CINNOX app {app_id!r} has no App Token configured in the cinnox resource")
        self.check_settings()
        endpoint = SENT_CAMPAIGNS_SUMMARY
        if self.records_key != endpoint.records_key or self.total_key != endpoint.total_key:
            endpoint = replace(endpoint, records_key=self.records_key, total_key=self.total_key or None)
        return CinnoxClient(
            self.base_url,
            app_id,
            tokens[app_id],
            auth_header=self.auth_header,
            auth_scheme=self.auth_scheme,
            page_size=self.page_size,
            timeout=self.timeout_seconds,
            retry=RetryPolicy(
                max_attempts=self.max_attempts,
                backoff_base=self.backoff_ms / 1000,
                max_elapsed=self.retry_budget_seconds,
            ),
            endpoint=endpoint,
            logger=logger,
            rate_limiter=self.rate_limiter(app_id),
            max_reads=self.max_reads,
            ca_bundle=self.ca_bundle or None,
            allow_plain_http=_flag("CINNOX_ALLOW_PLAIN_HTTP", self.allow_plain_http),
            max_response_bytes=self.max_response_bytes,
        )


class WarehouseResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The PostgreSQL warehouse: one engine per run, loads and data checks."""

    database_url: str
    settle_quiet_hours: int = Field(
        default=48, description="Counters unchanged this long (and complete) count as settled."
    )
    settle_final_days: int = Field(
        default=30, description="Complete counters first seen at least this long after the send count as settled."
    )
    chunk_records: int = Field(
        default=DEFAULT_CHUNK_RECORDS,
        description="Records per chunk: each chunk of a run's window is read and merged in a transaction of its own.",
    )
    merge_lock_timeout_seconds: int = Field(
        default=int(DEFAULT_MERGE_LOCK_TIMEOUT),
        description="Longest wait for the app's merge lock before the load fails naming who holds it.",
    )
    _engine: Engine | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._engine = create_warehouse_engine(self.database_url)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:  # used outside a run, e.g. from a test or a script
            self._engine = create_warehouse_engine(self.database_url)
        return self._engine

    @property
    def settle_policy(self) -> SettlePolicy:
        return SettlePolicy(
            quiet=timedelta(hours=self.settle_quiet_hours), final_age=timedelta(days=self.settle_final_days)
        )

    def load_sent_campaigns(
        self,
        app_id: str,
        window: Window,
        pages: Iterable[Page],
        run_id: str | None,
        max_reject_share: float | None = None,
        logger: logging.Logger | None = None,
    ) -> LoadResult:
        """One window as one unit of work (tests and scripts); runs use `load_window`."""
        return load_sent_campaigns(
            self.engine,
            app_id,
            window,
            pages,
            run_id=run_id,
            max_reject_share=max_reject_share,
            settle=self.settle_policy,
            lock_timeout=self.merge_lock_timeout_seconds,
            logger=logger,
        )

    def load_window(
        self,
        client: CinnoxClient,
        window: Window,
        ledger: LedgerKey,
        max_reject_share: float | None = None,
        progress: Callable[[ChunkProgress], None] | None = None,
        log: logging.Logger | None = None,
    ) -> WindowLoad:
        """Read and merge a run's window chunk by chunk (see warehouse/load/chunks.py)."""
        if self.chunk_records < 1:
            raise dg.Failure(f"CINNOX_CHUNK_RECORDS must be a whole number >= 1, got {self.chunk_records}")
        return load_window(
            self.engine,
            client,
            window,
            ledger,
            chunk_records=self.chunk_records,
            max_reject_share=max_reject_share,
            settle=self.settle_policy,
            progress=progress,
            log=log,
            lock_timeout=self.merge_lock_timeout_seconds,
        )


_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")


def _has_userinfo(url: str) -> bool:
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return False  # the client refuses it, without echoing it
    return "@" in netloc


def _flag(name: str, value: str) -> bool:
    text = value.strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", ""):
        return False
    raise dg.Failure(f"{name}: {value!r} is neither true nor false")


# Optional settings: resource field -> (environment variable, is it a whole number).
TUNABLE_SETTINGS = {
    "auth_header": ("CINNOX_AUTH_HEADER", False),
    "auth_scheme": ("CINNOX_AUTH_SCHEME", False),
    "page_size": ("CINNOX_PAGE_SIZE", True),
    "timeout_seconds": ("CINNOX_TIMEOUT_SECONDS", True),
    "max_attempts": ("CINNOX_MAX_ATTEMPTS", True),
    "records_key": ("CINNOX_RECORDS_KEY", False),
    "total_key": ("CINNOX_TOTAL_KEY", False),
    "requests_per_second": ("CINNOX_REQUESTS_PER_SECOND", True),
    "backoff_ms": ("CINNOX_BACKOFF_MS", True),
    "retry_budget_seconds": ("CINNOX_RETRY_BUDGET_SECONDS", True),
    "max_reads": ("CINNOX_MAX_READS", True),
    "ca_bundle": ("CINNOX_CA_BUNDLE", False),
    "allow_plain_http": ("CINNOX_ALLOW_PLAIN_HTTP", False),
    "max_response_bytes": ("CINNOX_MAX_RESPONSE_BYTES", True),
}
REQUEST_BUDGETS = ("database", "process")
WAREHOUSE_SETTINGS = {
    "settle_quiet_hours": "CINNOX_SETTLE_QUIET_HOURS",
    "settle_final_days": "CINNOX_SETTLE_FINAL_DAYS",
    "chunk_records": "CINNOX_CHUNK_RECORDS",
    "merge_lock_timeout_seconds": "CINNOX_MERGE_LOCK_TIMEOUT_SECONDS",
}


def build_resources(settings: PipelineSettings, environ: Mapping[str, str]) -> dg.Definitions:
    # A tunable that is set becomes an EnvVar, so the UI shows where the value comes from;
    # one that is not keeps the resource's default.
    whole_numbers = [var for var, whole in TUNABLE_SETTINGS.values() if whole] + list(WAREHOUSE_SETTINGS.values())
    for var in whole_numbers:
        if var in environ:
            whole_number(var, environ[var], minimum=0)
    overrides: dict[str, Any] = {
        field: dg.EnvVar.int(var) if whole else dg.EnvVar(var)
        for field, (var, whole) in TUNABLE_SETTINGS.items()
        if var in environ
    }
    budget = environ.get("CINNOX_REQUEST_BUDGET", "database").strip().lower() or "database"
    if budget not in REQUEST_BUDGETS:
        raise SettingsError(f"CINNOX_REQUEST_BUDGET: {budget!r} is neither 'database' nor 'process'")
    if budget == "database":
        # One budget per app for every run and process: in the warehouse's own database, or
        # in another one that several deployments reading the same CINNOX apps share.
        url_var = "CINNOX_REQUEST_BUDGET_URL" if environ.get("CINNOX_REQUEST_BUDGET_URL") else "DATABASE_URL"
        overrides["request_budget_url"] = dg.EnvVar(url_var)
    cinnox = CinnoxResource(
        base_url=dg.EnvVar("CINNOX_BASE_URL"),
        apps=[
            CinnoxAppToken(app_id=app.app_id, token=dg.EnvVar(app.token_env_var), token_env_var=app.token_env_var)
            for app in settings.apps
        ],
        **overrides,
    )
    warehouse = WarehouseResource(
        database_url=dg.EnvVar("DATABASE_URL"),
        **{field: dg.EnvVar.int(var) for field, var in WAREHOUSE_SETTINGS.items() if var in environ},
    )
    return dg.Definitions(resources={"cinnox": cinnox, "warehouse": warehouse})
