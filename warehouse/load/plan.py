"""The chunk plan: a window cut into sub-windows of a bounded number of records.

Pure functions. CINNOX says how many records a window holds (`total`), not where they lie,
so a window is cut into equal spans of time, as many as `total / chunk_records` asks; a span
that turns out to hold too many (sends are not spread evenly) is cut again when its first page
says so. Bounds fall on whole seconds, which RFC3339 query parameters carry exactly.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from cinnox import Window

_SECOND = timedelta(seconds=1)


def split(window: Window, parts: int) -> list[Window]:
    """`window` in up to `parts` consecutive spans of about equal length, on whole seconds."""
    seconds = math.floor((window.end - window.start) / _SECOND)
    parts = max(1, min(parts, seconds))
    if parts == 1:
        return [window]
    bounds = [window.start]
    for index in range(1, parts):
        bound = _floor_second(window.start + (window.end - window.start) * index / parts)
        if bounds[-1] < bound < window.end:
            bounds.append(bound)
    bounds.append(window.end)
    return [Window(start, end) for start, end in itertools.pairwise(bounds)]


def parts_for(records: int | None, chunk_records: int) -> int:
    return max(1, math.ceil((records or 0) / chunk_records))


def can_split(window: Window) -> bool:
    return window.end - window.start >= 2 * _SECOND


def subtract(window: Window, done: list[Window]) -> list[Window]:
    """What of `window` the `done` windows do not cover, in order."""
    gaps: list[Window] = []
    cursor = window.start
    for piece in sorted(done, key=lambda w: w.start):
        if piece.end <= cursor or piece.start >= window.end:
            continue
        if piece.start > cursor:
            gaps.append(Window(cursor, piece.start))
        cursor = max(cursor, piece.end)
    if cursor < window.end:
        gaps.append(Window(cursor, window.end))
    return gaps


def plan(window: Window, total: int | None, chunk_records: int, done: Sequence[Window] = ()) -> list[Window]:
    """The chunks left to read of `window`, given its `total` and the chunks already `done`.

    Records of the gaps are estimated by their share of the window's time.
    """
    length = (window.end - window.start) / _SECOND or 1.0
    chunks: list[Window] = []
    for gap in subtract(window, list(done)):
        share = None if total is None else math.ceil(total * ((gap.end - gap.start) / _SECOND) / length)
        chunks.extend(split(gap, parts_for(share, chunk_records)))
    return chunks


def requests_for(total: int, chunk_records: int, page_size: int) -> tuple[int, int]:
    """(chunks, requests) to read a window of `total` records: the probe, then each chunk's
    pages, the last one short or empty (a full last page asks for one more)."""
    if total == 0:
        return 1, 1  # the probe found the window empty: it is the whole read
    chunks = parts_for(total, chunk_records)
    per_chunk = total / chunks
    return chunks, 1 + chunks * (math.floor(per_chunk / page_size) + 1)


def live_edge(window: Window, api_time: datetime) -> Window | None:
    """The part of `window` sent before `api_time` (CINNOX's clock, whole seconds), or None."""
    end = min(window.end, _floor_second(api_time))
    return Window(window.start, end) if end > window.start else None


def _floor_second(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(microsecond=0)
