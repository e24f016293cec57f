"""No input ever makes a normalizer raise: arbitrary JSON, and real fixtures mutated."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.golden import cases
from wacanon import PROVIDERS, normalize
from wacanon.providers.common import decode_body

WHEN = datetime(2026, 3, 1, tzinfo=UTC)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)


def check(provider: str, body: bytes) -> None:
    result = normalize(provider, body, received_at=WHEN, correlation_id="c")
    # The registry turns a normalizer exception into an "internal" error value so that
    # production loses nothing; here it must never happen at all.
    internal = [str(e) for e in result.errors if e.code == "internal"]
    assert not internal, internal
    assert result.ignored >= 0
    for event in result.events:
        assert event.source.provider == provider
        orjson.loads(event.model_dump_json())  # serializes to valid JSON


@pytest.mark.parametrize("provider", list(PROVIDERS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values)
def test_arbitrary_json_never_raises(provider: str, value: Any) -> None:
    check(provider, json.dumps(value).encode())


def _mutations(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    """Every (path, original) of a decoded payload, so a test can replace any node."""
    found = [(path, value)]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _mutations(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _mutations(child, (*path, index))
    return found


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, *rest = path
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], tuple(rest), new)}
    copy = list(value)
    copy[head] = _replace(copy[head], tuple(rest), new)
    return copy


FIXTURES = [(p, c) for p in PROVIDERS for c in cases(p)]


@pytest.mark.parametrize(("provider", "case"), FIXTURES, ids=[f"{p}/{c.stem}" for p, c in FIXTURES])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_fixtures_never_raise(provider: str, case: Any, data: st.DataObject) -> None:
    original = json.loads(case.read_bytes())  # lone surrogates too (a fixture has them)
    nodes = _mutations(original)
    path, _ = data.draw(st.sampled_from(nodes))
    mutated = _replace(original, path, data.draw(json_values))
    check(provider, json.dumps(mutated).encode())


@pytest.mark.parametrize("provider", list(PROVIDERS))
@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"null",
        b"[]",
        b'"x"',
        b"1e999999",
        b"{" * 5000,
        b'{"a": ' + b"[" * 3000 + b"]" * 3000 + b"}",
        b"\xff\xfe",
        b'{"entry": 5, "event": 5, "data": 5, "events": 5}',
    ],
)
def test_hostile_bodies_give_errors_not_exceptions(provider: str, body: bytes) -> None:
    result = normalize(provider, body, received_at=WHEN)
    assert not [e for e in result.errors if e.code == "internal"]
    assert result.events == []
    assert result.errors or result.ignored


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b'{"t":"Oi \\ud83d"}', "Oi \ufffd"),  # a high half at the end (a text cut short)
        (b'{"t":"\\udc4d ok"}', "\ufffd ok"),  # a low half alone
        (b'{"t":"\\ud83d\\u0041"}', "\ufffdA"),  # a high half before another escape
        (b'{"t":"\\\\ud83d \\ud83d"}', "\\ud83d \ufffd"),  # an escaped backslash: text
        (b'{"t":"\\ud83d\\udc5f"}', "\U0001f45f"),  # a pair is one character
    ],
)
def test_a_lone_surrogate_escape_reads_as_the_replacement_character(body: bytes, text: str) -> None:
    """What JavaScript's JSON.stringify writes for a string cut mid-emoji: strict
    decoders refused the whole body (every message of a batch lost to one character);
    the Baileys fixture ``upsert_text_cut_mid_emoji_as_node_writes_it`` is the whole
    case."""
    assert decode_body(body) == {"t": text}


#: ISO times a provider may send that are no plausible time — some at the edge of what
#: Python's datetime holds, where the conversion to UTC itself fails.
EDGE_TIMES = [
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "0001-01-01T00:00:00",
    "1969-12-31T23:59:59Z",
    "3000-01-01T00:00:00Z",
]


@pytest.mark.parametrize("when", EDGE_TIMES)
def test_an_implausible_iso_time_is_flagged_and_costs_no_other_fact(when: str) -> None:
    body = {
        "account": "sim-a",
        "events": [
            {"type": "message", "id": "GOOD", "from": "5511987654321", "text": "oi",
             "timestamp": 1772366400},
            {"type": "message", "id": "EDGE", "from": "5511987654321", "text": "oi",
             "timestamp": when},
        ],
    }  # fmt: skip
    result = normalize("simulated", orjson.dumps(body), received_at=WHEN, correlation_id="c")
    assert result.errors == []
    good, edge = result.events
    assert good.occurred_at == datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert good.security.risk_flags == []
    assert edge.occurred_at == WHEN
    assert "timestamp_out_of_range" in edge.security.risk_flags


@pytest.mark.parametrize("when", EDGE_TIMES)
def test_an_evolution_envelope_time_at_the_edge_still_gives_its_event(when: str) -> None:
    body = {
        "event": "connection.update",
        "instance": "loja-1",
        "data": {"instance": "loja-1", "state": "open", "statusReason": 200},
        "date_time": when,
        "sender": "5511988887777@s.whatsapp.net",
    }
    result = normalize("evolution", orjson.dumps(body), received_at=WHEN, correlation_id="c")
    assert result.errors == []
    (event,) = result.events
    assert event.occurred_at == WHEN
