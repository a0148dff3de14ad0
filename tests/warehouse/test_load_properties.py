"""Property-based, through the whole load into PostgreSQL: whatever a page holds, every record
is loaded or rejected with a reason, nothing raises, and the good records beside it load.

The normaliser's own property test feeds `stage_record`; this one goes on through COPY, the
merges, the raw layer and the source fields, where a record that the parser accepted could
still fail the window (a NUL in a key name, text too long for a btree entry, more field
names than one statement can bind).
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from cinnox import Page, Window, parse_json_body
from warehouse.load import load_sent_campaigns
from warehouse.models import FactSentCampaign, SentCampaignReject
from warehouse.normalize import MAX_FIELD_NAME_LENGTH

from .test_normalize_properties import VALID, json_values, records

APP = "prop-app"
WINDOW = Window(datetime(2024, 5, 24, tzinfo=UTC), datetime(2024, 5, 25, tzinfo=UTC))
FETCHED = datetime(2024, 5, 26, tzinfo=UTC)
_ids = itertools.count()

# Beyond the normaliser's strategy: long text and key names, NULs in names, very wide records.
long_text = st.sampled_from([512, 513, 3000]).map(lambda n: ("é" + "x" * n)[:n])
hostile_records = st.one_of(
    records(),
    st.builds(lambda name, value: {**VALID, name: value}, st.text(max_size=4).map(lambda t: t + "\x00"), json_values),
    st.builds(lambda text, field: {**VALID, field: text}, long_text, st.sampled_from(["createdBy", "subject", "id"])),
    st.builds(lambda text: {**VALID, text: 1}, long_text),
    st.builds(lambda text: {**VALID, "sender": {"phone": text, "sender\x00EID": 1}}, long_text),
)


def _good() -> dict[str, Any]:
    return {**VALID, "id": f"good-{next(_ids)}"}


def _page(records: list[Any]) -> Page:
    return Page(app_id=APP, window=WINDOW, offset=0, records=records, total=None, fetched_at=FETCHED, attempts=1)


def _load_and_check(engine: Engine, records: list[Any], good_ids: list[str]) -> None:
    result = load_sent_campaigns(engine, APP, WINDOW, [_page(records)], max_reject_share=None)
    assert result.records == len(records)
    assert result.valid + result.rejected == len(records)
    assert sum(result.reject_reasons.values()) >= result.rejected  # each reject has a reason
    with engine.connect() as conn:
        loaded = set(
            conn.scalars(select(FactSentCampaign.campaign_id).where(FactSentCampaign.campaign_id.in_(good_ids)))
        )
        unexplained = conn.scalar(
            select(func.count())
            .select_from(SentCampaignReject)
            .where(func.cardinality(SentCampaignReject.reasons) == 0)
        )
    assert loaded == set(good_ids)
    assert unexplained == 0


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
@given(st.lists(hostile_records, max_size=5))
def test_any_records_load_or_are_rejected_and_the_others_load(warehouse: Engine, hostile: list[Any]) -> None:
    before, after = _good(), _good()
    _load_and_check(warehouse, [before, *hostile, after], [before["id"], after["id"]])


# Bytes between two good records of a page: often not JSON at all (then the client refuses
# the page, and there is nothing to load), sometimes JSON with NaN, Infinity, huge numbers.
fragments = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=40).map(str.encode),
    st.sampled_from([b"NaN", b"-Infinity", b"1e400", b"9" * 5000, b'"\\ud800"', b'{"a\\u0000": 1}']).map(
        lambda literal: (
            b'{"id": "odd", "date": "2024-05-24T10:00:00Z", "channel": "SMS", "delivered": ' + literal + b"}"
        )
    ),
    st.builds(lambda value: json.dumps(value).encode(), json_values),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(fragments)
def test_any_bytes_in_a_page_are_read_or_refused_and_never_fail_the_load(warehouse: Engine, fragment: bytes) -> None:
    before, after = _good(), _good()
    body = (
        b'{"code": 0, "data": ['
        + json.dumps(before).encode()
        + b","
        + fragment
        + b","
        + json.dumps(after).encode()
        + b"]}"
    )
    envelope = parse_json_body(body)  # never raises: a value, or None for "not JSON"
    if not isinstance(envelope, dict) or not isinstance(envelope.get("data"), list):
        return  # the client refuses the page as a whole (a transient failure), loads nothing
    _load_and_check(warehouse, envelope["data"], [before["id"], after["id"]])


def test_field_names_at_the_length_limit_load(warehouse: Engine) -> None:
    at_limit = {**_good(), "n" * MAX_FIELD_NAME_LENGTH: 1, "sender": {"s" * MAX_FIELD_NAME_LENGTH: 1}}
    _load_and_check(warehouse, [at_limit], [at_limit["id"]])
