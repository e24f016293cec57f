"""Which raw fields of a webhook the canonical events derive from, by JSON path.

A field is *mapped* when an event field derives from it. That is measured, not
declared: every leaf of the body is perturbed in turn — changed (a string gets a
suffix, a number grows by one, a boolean flips) and then removed — and the body is
normalized again. When the events (their fields, errors and ignored count; the receipt
time and correlation id are held fixed) come out different, the events derive from that
leaf. A leaf whose change makes no difference is *unmapped*: what the normalizers still
ignore. This needs no list of paths kept beside each normalizer, so it cannot drift
from what they do.

The cost is two normalizations per leaf, so a body is examined up to ``max_leaves``
leaves; the rest are counted as not examined. Pure: no I/O, no logging.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from wacanon.providers.registry import normalize

MAX_LEAVES = 400
_FIXED_TIME = datetime(2026, 1, 1, tzinfo=UTC)
_FIXED_ID = "wacanon-compare"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INDEX = re.compile(r"\[\d+\]")

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Comparison:
    """One webhook: its leaves by JSON path, mapped or not, and the events produced."""

    provider: str
    mapped: list[str]
    unmapped: list[str]
    events: list[tuple[str, str]]  # (event_id, event_type)
    errors: list[str]
    not_examined: int = 0

    def as_log(self) -> dict[str, Any]:
        """What INFO may carry: paths, ids and types — no value of the body or events."""
        return {
            "provider": self.provider,
            "mapped_paths": self.mapped,
            "unmapped_paths": self.unmapped,
            "event_ids": [event_id for event_id, _ in self.events],
            "event_types": [event_type for _, event_type in self.events],
            "errors": len(self.errors),
            "not_examined": self.not_examined,
        }


def compare(provider: str, body: bytes, max_leaves: int = MAX_LEAVES) -> Comparison:
    """Compare one body with the events its provider's normalizer makes of it."""
    baseline = _normalized(provider, body)
    events = [(e.event_id, e.event_type) for e in baseline[0]]
    errors = [str(e) for e in baseline[1]]
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Comparison(provider, [], [], events, errors)
    reference = _fingerprint(baseline)
    mapped: list[str] = []
    unmapped: list[str] = []
    leaves = list(_leaves(data))
    for path, value in leaves[:max_leaves]:
        derived = any(
            _fingerprint(_normalized(provider, orjson.dumps(variant))) != reference
            for variant in _variants(data, path, value)
        )
        (mapped if derived else unmapped).append(json_path(path))
    return Comparison(provider, mapped, unmapped, events, errors, max(0, len(leaves) - max_leaves))


def _normalized(provider: str, body: bytes) -> tuple[list[Any], list[Any], int]:
    result = normalize(provider, body, received_at=_FIXED_TIME, correlation_id=_FIXED_ID)
    return result.events, result.errors, result.ignored


def _fingerprint(result: tuple[list[Any], list[Any], int]) -> bytes:
    events, errors, ignored = result
    return orjson.dumps(
        [
            [e.model_dump(mode="json") for e in events],
            [[e.path, e.message] for e in errors],
            ignored,
        ]
    )


def _leaves(value: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every scalar of a JSON document with its path (nulls included, empty containers
    count as leaves: their presence may matter)."""
    if isinstance(value, dict) and value:
        for key, child in value.items():
            yield from _leaves(child, (*path, key))
    elif isinstance(value, list) and value:
        for index, child in enumerate(value):
            yield from _leaves(child, (*path, index))
    else:
        yield path, value


def _variants(data: Any, path: Path, value: Any) -> Iterator[Any]:
    """The document with the leaf at ``path`` changed, then without it."""
    changed = _changed(value)
    if changed is not _SAME:
        yield _replaced(data, path, changed)
    if path:
        yield _replaced(data, path, _REMOVED)


_SAME = object()
_REMOVED = object()


def _changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "~"
    if value is None:
        return "~"
    return _SAME  # an empty container: only its removal is tried


def _replaced(data: Any, path: Path, new: Any) -> Any:
    """A copy of ``data`` with the leaf at ``path`` set to ``new`` (or removed)."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(data, dict):
        copy = dict(data)
        if rest:
            copy[head] = _replaced(data[head], rest, new)
        elif new is _REMOVED:
            del copy[head]
        else:
            copy[head] = new
        return copy
    items = list(data)
    assert isinstance(head, int)
    if rest:
        items[head] = _replaced(data[head], rest, new)
    elif new is _REMOVED:
        del items[head]
    else:
        items[head] = new
    return items


def json_path(path: Path) -> str:
    """``$.entry[0].changes[0].value`` (a key that is no identifier: ``$["a-b"]``)."""
    parts = ["$"]
    for step in path:
        if isinstance(step, int):
            parts.append(f"[{step}]")
        elif _IDENTIFIER.fullmatch(step):
            parts.append(f".{step}")
        else:
            parts.append(f"[{orjson.dumps(step).decode()}]")
    return "".join(parts)


def generic(path: str) -> str:
    """The path with its indexes as ``[*]``: one line per field in an aggregate."""
    return _INDEX.sub("[*]", path)


@dataclass
class Aggregate:
    """Over many webhooks, per provider: how often each field went unmapped."""

    webhooks: Counter[str] = field(default_factory=Counter)
    unmapped: dict[str, Counter[str]] = field(default_factory=dict)
    mapped: dict[str, Counter[str]] = field(default_factory=dict)

    def add(self, comparison: Comparison) -> None:
        provider = comparison.provider
        self.webhooks[provider] += 1
        for target, paths in (
            (self.unmapped, comparison.unmapped),
            (self.mapped, comparison.mapped),
        ):
            counter = target.setdefault(provider, Counter())
            counter.update({generic(p) for p in paths})  # once per webhook

    def top(self, provider: str, limit: int = 20) -> list[tuple[str, int]]:
        """The unmapped fields seen in most webhooks (a field mapped in some webhooks of
        the provider and unmapped in others is listed: sometimes it matters)."""
        return self.unmapped.get(provider, Counter()).most_common(limit)

    def providers(self) -> Iterable[str]:
        return sorted(self.webhooks)
