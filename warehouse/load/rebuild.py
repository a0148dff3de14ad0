"""Rebuild the star from the raw layer: no API request, today's normalisation rules.

    raw versions and rejects of an app, in read order  ->  replay steps (a campaign's n-th
    version in step n; `replay.ReplayReader`, beside the deletes)  ->  per step: COPY into
    the stage through `stage_record`, then the load's own merges (dimensions, regressions,
    fact and history, raw, rejects)

One transaction per app: the app's derived rows are deleted, the replay writes them again,
and the commit swaps old for new at once; readers keep seeing the old rows until then (MVCC),
and loads of the app wait on its merge lock.

What raw cannot say, carried over from the rows the rebuild replaces (docs/warehouse.md):
`settled_at` set by a read that saw no change (no new version, so nothing in raw), and
`missing_at_source_since` (an observation of absence). With no rows to replace, the chunk
ledger's later reads settle what stayed quiet.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Integer,
    Interval,
    MetaData,
    Table,
    Text,
    and_,
    delete,
    func,
    literal,
    or_,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.dialects.postgresql import TIMESTAMP

from cinnox import Window, parse_json_body
from warehouse.load import DEFAULT_MERGE_LOCK_TIMEOUT, take_merge_lock
from warehouse.load.dimensions import durable_sender_key, ensure_app, merge_dimensions
from warehouse.load.fact import counters_complete, merge_fact
from warehouse.load.raw import insert_raw_versions, insert_rejects
from warehouse.load.replay import FROM_RAW, FROM_REJECT, ReplayReader
from warehouse.load.result import DEFAULT_SETTLE, LoadResult, SettlePolicy
from warehouse.load.stage import (
    prepare_stage,
    stage,
    stage_copy,
    stage_row,
    stored_version_row,
    tune_merge_transaction,
)
from warehouse.models import (
    COUNTER_COLUMNS,
    CounterRegression,
    DimSender,
    DimStaff,
    DimTemplate,
    FactSentCampaign,
    FactSentCampaignSnapshot,
    LoadChunk,
    SentCampaignPayload,
    SentCampaignReject,
    table_of,
)

_log = logging.getLogger("warehouse.rebuild")
# A rebuild of millions of campaigns takes minutes in one transaction; whoever watches it
# (make rebuild, the Dagster run's log) sees a line about this often while records are staged.
PROGRESS_SECONDS = 10.0
# Reject hashes per DELETE ... IN (...): one bind parameter each, far below the 65,535 allowed.
_HASHES_PER_DELETE = 5000
# A stored version was inside the window it was read for; the window itself is not kept.
_ANY_TIME = Window(datetime(1, 1, 2, tzinfo=UTC), datetime(9999, 12, 30, tzinfo=UTC))

_temp = MetaData()
# The fact rows the rebuild replaces, where they hold what raw cannot reproduce.
_previous = Table(
    "rebuild_previous",
    _temp,
    Column("campaign_id", Text, primary_key=True),
    *(Column(name, Integer) for name in COUNTER_COLUMNS),
    Column("counters_changed_at", TIMESTAMP(timezone=True)),
    Column("values_observed_at", TIMESTAMP(timezone=True)),
    Column("settled_at", TIMESTAMP(timezone=True)),
    Column("missing_at_source_since", TIMESTAMP(timezone=True)),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)


class RebuildError(RuntimeError):
    """An operator mistake or an empty raw layer; the message says what to do."""


@dataclass(slots=True)
class RebuildResult:
    """What the rebuild of one app read and wrote."""

    app_id: str
    records: int = 0  # raw versions and rejects replayed
    steps: int = 0
    valid: int = 0  # records today's rules load
    rejected: int = 0  # records today's rules reject
    now_loaded: int = 0  # stored rejects today's rules load (their rejects are gone, their versions in raw)
    newly_rejected: int = 0  # stored versions today's rules reject (now in the rejects)
    fact_rows: int = 0
    snapshot_rows: int = 0
    dimension_rows: int = 0
    counter_regressions: int = 0
    dimension_rows_dropped: int = 0  # versions, staff or templates no rebuilt campaign uses
    settled_carried: int = 0
    missing_carried: int = 0
    settled_from_ledger: int = 0  # no rows to carry over: settled by a later read in the ledger
    seconds: float = 0.0

    @property
    def rows_written(self) -> int:
        return (
            self.fact_rows
            + self.snapshot_rows
            + self.dimension_rows
            + self.counter_regressions
            + self.now_loaded
            + self.newly_rejected
        )

    def describe(self) -> str:
        return (
            f"{self.app_id}: {self.records} raw records in {self.steps} step(s) -> {self.fact_rows} campaigns, "
            f"{self.snapshot_rows} history rows, {self.dimension_rows} dimension rows, "
            f"{self.counter_regressions} counter regressions, {self.rejected} rejected "
            f"({self.now_loaded} earlier rejects now load, {self.newly_rejected} versions now rejected), "
            f"settled carried over {self.settled_carried} (from the ledger {self.settled_from_ledger}), "
            f"missing carried over {self.missing_carried}, "
            f"{self.seconds:.1f}s"
        )


def raw_app_ids(engine: Engine) -> list[str]:
    """The apps the raw layer holds records of."""
    raw = table_of(SentCampaignPayload)
    rejects = table_of(SentCampaignReject)
    apps = union_all(select(raw.c.app_id).distinct(), select(rejects.c.app_id).distinct()).subquery()
    with engine.connect() as conn:
        return sorted(set(conn.scalars(select(apps.c.app_id).distinct())))


def rebuild(
    engine: Engine,
    app_ids: Sequence[str] | None = None,
    *,
    settle: SettlePolicy = DEFAULT_SETTLE,
    lock_timeout: float = DEFAULT_MERGE_LOCK_TIMEOUT,
    logger: logging.Logger | None = None,
) -> list[RebuildResult]:
    """Rebuild `app_ids` (None: every app raw holds), one transaction per app.

    Raises `RebuildError` naming the problem when raw is empty or an app has no records in it.
    """
    log = logger or _log
    known = raw_app_ids(engine)
    if not known:
        raise RebuildError(
            "the raw layer (cinnox_raw) holds no records: there is nothing to rebuild from; load from the API first"
        )
    wanted = list(dict.fromkeys(app_ids)) if app_ids else known
    unknown = [app for app in wanted if app not in known]
    if unknown:
        raise RebuildError(
            f"CINNOX app(s) {', '.join(map(repr, unknown))} have no records in cinnox_raw; "
            f"apps there: {', '.join(known)}. Name one of those, or none for all"
        )
    results = []
    for app_id in wanted:
        result = rebuild_app(engine, app_id, settle=settle, lock_timeout=lock_timeout, logger=log)
        log.info("rebuilt %s", result.describe())
        results.append(result)
    return results


def rebuild_app(
    engine: Engine,
    app_id: str,
    *,
    settle: SettlePolicy = DEFAULT_SETTLE,
    lock_timeout: float = DEFAULT_MERGE_LOCK_TIMEOUT,
    logger: logging.Logger | None = None,
) -> RebuildResult:
    """Re-derive one app's star from its raw records in one transaction."""
    began = time.monotonic()
    result = RebuildResult(app_id)
    log = logger or _log
    with engine.begin() as conn:
        take_merge_lock(conn, app_id, lock_timeout, log)
        # For the deletes' hash joins too, not only the merges (the reader sets its own).
        tune_merge_transaction(conn)
        app_key = ensure_app(conn, app_id)
        fact = table_of(FactSentCampaign)
        had_rows = conn.scalar(select(fact.c.sent_campaign_key).where(fact.c.app_key == app_key).limit(1)) is not None
        # Started under the merge lock: the reader's connection then sees the app's raw
        # records as this transaction does. It plans the replay while the deletes run here.
        with ReplayReader(engine, app_id) as replay:
            _keep_previous(conn, app_key)
            _delete_derived(conn, app_key)
            reject_window = _ledger_span(conn, app_id)
            sizes = replay.step_sizes()
            result.steps = len(sizes)
            progress = _Progress(log, app_id, sizes, began)
            for step in range(1, result.steps + 1):
                _replay_step(conn, app_id, app_key, step, replay.batches(step), settle, reject_window, result, progress)
        result.dimension_rows_dropped = _drop_unused_dimensions(conn, app_key)
        result.settled_carried, result.missing_carried = _carry_over(conn, app_key)
        if not had_rows:
            result.settled_from_ledger = _settle_from_ledger(conn, app_id, app_key, settle)
        result.fact_rows = int(conn.scalar(select(func.count()).where(fact.c.app_key == app_key)) or 0)
    result.seconds = time.monotonic() - began
    return result


def _keep_previous(conn: Connection, app_key: int) -> None:
    _previous.create(conn)
    fact = table_of(FactSentCampaign)
    columns = [c.name for c in _previous.columns]
    rows = select(*(fact.c[name] for name in columns)).where(
        fact.c.app_key == app_key,
        or_(fact.c.settled_at.is_not(None), fact.c.missing_at_source_since.is_not(None)),
    )
    conn.execute(_previous.insert().from_select(columns, rows))


def _delete_derived(conn: Connection, app_key: int) -> None:
    """The app's history, regressions and fact rows. Its dimension rows stay, keys and all:
    sender validity is derived again by the replay (valid_from cleared here, set by the
    merges from the first send of each version), and the rows no rebuilt campaign uses go at
    the end (`_drop_unused_dimensions`). Deleting them all would change every key BI tools may
    have noted and, where the fact still has foreign keys (before revision 0010), cost a scan of
    the fact per deleted row."""
    fact = table_of(FactSentCampaign)
    snapshot = table_of(FactSentCampaignSnapshot)
    regressions = table_of(CounterRegression)
    keys = select(fact.c.sent_campaign_key).where(fact.c.app_key == app_key)
    conn.execute(delete(snapshot).where(snapshot.c.sent_campaign_key.in_(keys)))
    conn.execute(delete(regressions).where(regressions.c.app_key == app_key))
    conn.execute(delete(fact).where(fact.c.app_key == app_key))
    sender = table_of(DimSender)
    conn.execute(sender.update().where(sender.c.app_key == app_key).values(valid_from=None))


def _drop_unused_dimensions(conn: Connection, app_key: int) -> int:
    """Delete the app's dimension rows no rebuilt campaign refers to (a version today's rules
    no longer produce); returns how many. Sender versions the replay never staged still have
    no valid_from."""
    fact = table_of(FactSentCampaign)
    sender = table_of(DimSender)
    dropped = 0
    for model, key in ((DimStaff, "staff_key"), (DimTemplate, "template_key"), (DimSender, "sender_key")):
        table = table_of(model)
        # The keys in use, hashed from one scan of the fact: as NOT EXISTS the planner scanned
        # the fact once per dimension row (2.2 s for 50 staff at 1M, past the deleted rows).
        used = select(fact.c[key]).where(fact.c.app_key == app_key, fact.c[key].is_not(None)).distinct()
        unused = table.c[key].not_in(used)
        statement = delete(table).where(table.c.app_key == app_key, unused)
        dropped += conn.execute(statement.execution_options(preserve_rowcount=True)).rowcount
    if dropped:
        # A sender's durable key is its first version's key: that version may have gone.
        versions = sender.alias("versions")
        first = (
            select(versions.c.sender_key, durable_sender_key(versions).label("durable"))
            .where(versions.c.app_key == app_key)
            .subquery("first")
        )
        conn.execute(
            sender.update()
            .values(durable_sender_key=first.c.durable)
            .where(sender.c.sender_key == first.c.sender_key, sender.c.durable_sender_key != first.c.durable)
        )
    return dropped


def _ledger_span(conn: Connection, app_id: str) -> Window | None:
    """The span of every window the app's loads read (the ledger), for versions today's rules
    reject: raw does not keep the window a version was read for."""
    ledger = table_of(LoadChunk)
    start, end = conn.execute(
        select(func.min(ledger.c.window_start), func.max(ledger.c.window_end)).where(ledger.c.app_id == app_id)
    ).one()
    return Window(start, end) if start is not None and end is not None else None


def _replay_step(
    conn: Connection,
    app_id: str,
    app_key: int,
    step: int,
    records: Iterable[Sequence[Any]],
    settle: SettlePolicy,
    reject_window: Window | None,
    result: RebuildResult,
    progress: _Progress,
) -> None:
    """The step's records through the stage and the load's merges, as one chunk's load."""
    stage.create(conn)
    now_loaded: list[bytes] = []
    campaigns_distinct = _copy_step(conn, records, result, now_loaded, lambda staged: progress.staged(step, staged))
    progress.merging(step)
    superseded = prepare_stage(conn, campaigns_distinct=campaigns_distinct)
    first, last = conn.execute(select(func.min(stage.c.sent_at), func.max(stage.c.sent_at))).one()
    window = (
        Window(_day(first), _day(last) + timedelta(days=1))
        if first is not None
        else Window(_ANY_TIME.start, _ANY_TIME.start)
    )
    figures = LoadResult()
    if now_loaded:
        # Earlier rejects that load now: their versions join raw (before the fact merge, which
        # would make them look stored), their reject rows go.
        insert_raw_versions(conn, app_id, app_key, None, repeats=superseded > 0)
    result.dimension_rows += merge_dimensions(conn, app_key, window)
    # The first step's merge finds the app's fact emptied by `_delete_derived`.
    merge_fact(conn, app_key, None, settle, figures, app_was_empty=step == 1)
    result.snapshot_rows += figures.snapshots_inserted
    result.counter_regressions += figures.counter_regressions
    if now_loaded:
        rejects = table_of(SentCampaignReject)
        for start in range(0, len(now_loaded), _HASHES_PER_DELETE):
            conn.execute(
                delete(rejects).where(
                    rejects.c.app_id == app_id,
                    rejects.c.payload_hash.in_(now_loaded[start : start + _HASHES_PER_DELETE]),
                )
            )
    # Stored rejects are staged under their own hash: their rows stay, with today's reasons.
    rejects = table_of(SentCampaignReject)
    conn.execute(
        rejects.update()
        .values(reasons=stage.c.reject_reasons)
        .where(
            rejects.c.app_id == app_id,
            rejects.c.payload_hash == stage.c.payload_hash,
            stage.c.reject_reasons.is_not(None),
            rejects.c.reasons != stage.c.reject_reasons,
        )
    )
    result.newly_rejected += insert_rejects(conn, app_id, reject_window or window, None)
    stage.drop(conn)
    progress.merged(step)


def _day(moment: datetime) -> datetime:
    return datetime.combine(moment.astimezone(UTC).date(), datetime.min.time(), UTC)


def _copy_step(
    conn: Connection,
    records: Iterable[Sequence[Any]],
    result: RebuildResult,
    now_loaded: list[bytes],
    staged: Callable[[int], None],
) -> bool:
    """COPY the step's records (batches of `ReplayReader.batches`) into the stage, through
    today's rules. Returns whether no valid campaign was staged twice: true when each kept the
    id the replay order gave it (a step holds one record of each), so the stage needs no
    repeated-reads pass. `staged` hears how many records of the step are staged, after each batch."""
    distinct = True
    count = 0
    for batch in records:
        with stage_copy(conn) as copy:
            for row, kept_id in replay_rows(batch, result, now_loaded):
                distinct = distinct and kept_id
                copy.write_row(row)
        count += len(batch)
        staged(count)
    return distinct


def replay_rows(
    batch: Iterable[Sequence[Any]], result: RebuildResult, now_loaded: list[bytes]
) -> Iterator[tuple[tuple[Any, ...], bool]]:
    """Stored records (rows of `ReplayReader.batches`) through today's rules: each one's stage
    row, and whether it kept the id the replay order gave it (a rejected one does). Counts them
    in `result`; the hashes of stored rejects that load now go to `now_loaded`."""
    for ord_, campaign_id, source, stored_hash, extracted_at, start, end, payload, payload_text in batch:
        result.records += 1
        stored = (payload if payload is not None else payload_text or "null").encode()
        record: Any = parse_json_body(stored)
        if record is None and stored.strip() != b"null" and source == FROM_REJECT:
            # Text no JSON parser here reads: nothing to re-examine; the reject stays as it is.
            result.rejected += 1
            continue
        if source == FROM_RAW:
            row, rejection = stored_version_row(ord_, record, stored, stored_hash, campaign_id, _ANY_TIME, extracted_at)
        else:
            row, rejection = stage_row(ord_, True, record, Window(start, end), extracted_at)
        if rejection is not None:
            result.rejected += 1
            if source == FROM_REJECT:
                # The same record: keyed by its stored hash, so its row is kept.
                row = (*row[:7], stored_hash, *row[8:])
            yield row, True
            continue
        result.valid += 1
        if source == FROM_REJECT:
            result.now_loaded += 1
            now_loaded.append(stored_hash)
        # Today's rules may read an id another record of the step has (a reject kept without
        # one, an id read differently).
        yield row, row[2] == campaign_id


class _Progress:
    """The rebuild's progress lines: one when the replay is planned, then at most one every
    PROGRESS_SECONDS, saying the step, what it does and how many records are behind it."""

    def __init__(self, log: Any, app_id: str, sizes: Sequence[int], began: float) -> None:
        self._log = log
        self._app_id = app_id
        self._sizes = sizes
        self._total = sum(sizes)
        self._merged = 0
        self._began = began
        self._last = time.monotonic()
        self._reported = 0  # the last step a line was written for
        log.info(
            "rebuilding %s: %s stored record(s) to replay in %d step(s), the first holding %s",
            app_id,
            f"{self._total:,}",
            len(sizes),
            f"{sizes[0]:,}" if sizes else "none",
        )

    def staged(self, step: int, count: int) -> None:
        self._line(step, f"staging: {count:,} of its {self._sizes[step - 1]:,} records")

    def merging(self, step: int) -> None:
        # A step long enough to report its staging gets its merge announced too: the merge is
        # one statement, as long again, with no line in between.
        self._line(step, f"merging its {self._sizes[step - 1]:,} records", now=self._reported == step)

    def merged(self, step: int) -> None:
        self._merged += self._sizes[step - 1]

    def _line(self, step: int, doing: str, *, now: bool = False) -> None:
        moment = time.monotonic()
        if not now and moment - self._last < PROGRESS_SECONDS:
            return
        self._last = moment
        self._reported = step
        self._log.info(
            "rebuilding %s: step %d of %d, %s; %s of %s records merged so far, %.0fs",
            self._app_id,
            step,
            len(self._sizes),
            doing,
            f"{self._merged:,}",
            f"{self._total:,}",
            moment - self._began,
        )


def _carry_over(conn: Connection, app_key: int) -> tuple[int, int]:
    """What raw cannot reproduce, from the rows the rebuild replaced.

    `settled_at` of a campaign whose rebuilt counters and counters_changed_at are the old
    row's: the read that settled it returned the same record, so raw holds no trace of it (the
    row's values_observed_at was that read's time, kept too). `missing_at_source_since` of a
    campaign no version in raw is newer than: the read that found it gone returned nothing.
    """
    fact = table_of(FactSentCampaign)
    p = _previous
    same = and_(fact.c.app_key == app_key, fact.c.campaign_id == p.c.campaign_id)
    settled = conn.execute(
        fact.update()
        .values(
            settled_at=p.c.settled_at,
            values_observed_at=func.greatest(fact.c.values_observed_at, p.c.values_observed_at),
        )
        .where(
            same,
            p.c.settled_at.is_not(None),
            fact.c.settled_at.is_distinct_from(p.c.settled_at),
            fact.c.counters_changed_at == p.c.counters_changed_at,
            tuple_(*(fact.c[n] for n in COUNTER_COLUMNS)).is_not_distinct_from(
                tuple_(*(p.c[n] for n in COUNTER_COLUMNS))
            ),
        )
        .execution_options(preserve_rowcount=True)
    ).rowcount
    missing = conn.execute(
        fact.update()
        .values(missing_at_source_since=p.c.missing_at_source_since)
        .where(
            same,
            p.c.missing_at_source_since.is_not(None),
            p.c.missing_at_source_since >= fact.c.values_observed_at,
        )
        .execution_options(preserve_rowcount=True)
    ).rowcount
    return settled, missing


def _settle_from_ledger(conn: Connection, app_id: str, app_key: int, settle: SettlePolicy) -> int:
    """With no replaced rows to carry `settled_at` over from (the app's fact was emptied), the
    chunk ledger supplies the reads that saw no change: a committed read of a window holding
    the campaign, begun after the campaign's latest version was read, returned that same
    version or nothing. Complete counters unchanged for `settle.quiet` at the end of such a read
    are settled then (the load settled them at that read's page, a little earlier)."""
    fact = table_of(FactSentCampaign)
    ledger = table_of(LoadChunk)
    later_read = (
        select(fact.c.sent_campaign_key, func.min(ledger.c.read_finished_at).label("settled_at"))
        .join(
            ledger,
            and_(
                ledger.c.app_id == app_id,
                ledger.c.window_start <= fact.c.sent_at,
                ledger.c.window_end > fact.c.sent_at,
                ledger.c.read_started_at > fact.c.values_observed_at,
                ledger.c.read_finished_at - fact.c.counters_changed_at >= literal(settle.quiet, Interval),
            ),
        )
        .where(
            fact.c.app_key == app_key,
            fact.c.settled_at.is_(None),
            counters_complete(fact),
        )
        .group_by(fact.c.sent_campaign_key)
        .subquery("later_read")
    )
    statement = (
        fact.update()
        .values(settled_at=later_read.c.settled_at, values_observed_at=later_read.c.settled_at)
        .where(fact.c.sent_campaign_key == later_read.c.sent_campaign_key)
    )
    return conn.execute(statement.execution_options(preserve_rowcount=True)).rowcount


def describe_apps(results: Sequence[RebuildResult]) -> str:
    return "\n".join(result.describe() for result in results)


__all__ = [
    "RebuildError",
    "RebuildResult",
    "describe_apps",
    "raw_app_ids",
    "rebuild",
    "rebuild_app",
    "replay_rows",
]
