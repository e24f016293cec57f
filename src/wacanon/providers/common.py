"""What every provider normalizer shares: its context, its result, and the event builder.

A normalizer is a pure function ``normalize(body, ctx) -> NormalizeResult``: no I/O, no
clock (``ctx.received_at`` is passed in), no exception for bad data. What does not
parse becomes a :class:`NormalizeError` naming the path that failed, and the items of a
batch that did parse still give their events.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache, partial
from typing import Any, TypeVar

import msgspec
import orjson

from wacanon.canonical.ids import MalformedId, Person, event_id, idempotency_key
from wacanon.canonical.schema import CanonicalEvent, ProviderName, Routing

#: JSON decoding shared by all providers: bytes to plain Python values, no validation.
decode_json = msgspec.json.Decoder().decode


@dataclass(slots=True)
class NormalizeContext:
    """Everything a normalizer needs that is not in the body (treat it as read-only).

    Not a frozen dataclass: one is built per webhook, and frozen ``__init__`` costs
    several times more on the hot path.
    """

    received_at: datetime
    correlation_id: str
    account: str | None = None
    shopper_id: str | None = None
    #: Which shopper owns an account (from configuration), used when ``shopper_id`` is not given.
    shopper_of: Callable[[str], str | None] | None = None
    signature_valid: bool = False


@dataclass(frozen=True, slots=True)
class NormalizeError:
    """One part of a payload that could not be understood, and where it is."""

    path: str
    message: str
    provider_event: str | None = None
    #: ``invalid_json`` (the body is not JSON at all), ``unrecognized`` (JSON we cannot read)
    #: or ``internal`` (a normalizer bug: the body is kept and the error reported).
    code: str = "unrecognized"

    def __str__(self) -> str:
        where = f"{self.provider_event} " if self.provider_event else ""
        return f"{where}at {self.path}: {self.message}"


@dataclass(slots=True)
class NormalizeResult:
    """Events out of one payload, how many items carried nothing canonical, and the errors."""

    events: list[CanonicalEvent] = field(default_factory=list)
    ignored: int = 0
    errors: list[NormalizeError] = field(default_factory=list)

    def extend(self, other: NormalizeResult) -> None:
        self.events.extend(other.events)
        self.ignored += other.ignored
        self.errors.extend(other.errors)


Normalizer = Callable[[bytes | str, NormalizeContext], NormalizeResult]


T = TypeVar("T")


def convert(value: Any, model: type[T], path: str) -> T | NormalizeError:
    """Type one item at the boundary; a mismatch becomes an error value with its full path."""
    try:
        return msgspec.convert(value, model, strict=False)
    except msgspec.ValidationError as exc:
        return NormalizeError(path=_join_path(path, str(exc)), message=_reason(str(exc)))


def malformed_id_error(
    exc: MalformedId, item: Any, path: str, provider_event: str | None
) -> NormalizeError:
    """The error of an item naming a customer or group by a malformed id, at the path of
    the field that holds it (looked up only now: errors are rare, items many)."""
    where = _path_to(msgspec.to_builtins(item), exc.value)
    return NormalizeError(path + (where or ""), str(exc), provider_event)


def _path_to(tree: Any, value: str, depth: int = 0) -> str | None:
    """The JSON path below ``tree`` of the first string equal to ``value``."""
    if depth > 32:
        return None
    if isinstance(tree, dict):
        for key, child in tree.items():
            if child == value:
                return f".{key}"
            found = _path_to(child, value, depth + 1)
            if found is not None:
                return f".{key}{found}"
    elif isinstance(tree, list):
        for index, child in enumerate(tree):
            if child == value:
                return f"[{index}]"
            found = _path_to(child, value, depth + 1)
            if found is not None:
                return f"[{index}]{found}"
    return None


def _reason(text: str) -> str:
    return text.rpartition(" - at `")[0] or text


def _join_path(prefix: str, text: str) -> str:
    """msgspec says ``… - at `$.a[0]```; graft that onto where the item sits in the body."""
    _, sep, tail = text.rpartition(" - at `$")
    return prefix + tail.rstrip("`") if sep else prefix


def decode_body(body: bytes | str) -> Any | NormalizeError:
    """Decode JSON; invalid JSON is an error value (the CLI turns it into exit 2).

    A UTF-8 byte-order mark, which some tools write before a saved payload, is skipped.
    """
    if isinstance(body, bytes) and body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    elif isinstance(body, str) and body.startswith("\ufeff"):
        body = body[1:]
    try:
        return decode_json(body)
    except msgspec.DecodeError as exc:
        repaired = without_lone_surrogates(body)
        if repaired is not None:
            return decode_body(repaired)
        return NormalizeError(path="$", message=f"invalid JSON: {exc}", code="invalid_json")
    except RecursionError:  # msgspec gives up on JSON nested about 1,000 deep
        return NormalizeError(
            path="$", message="invalid JSON: nested too deeply to read", code="invalid_json"
        )
    except UnicodeError as exc:  # a str body with lone surrogates cannot be UTF-8
        return NormalizeError(path="$", message=f"invalid JSON: {exc}", code="invalid_json")


#: One JSON escape, left to right (so ``\\`` is one, and what follows it is text): a
#: surrogate pair, a lone surrogate, or any other escape.
_ESCAPE = re.compile(
    rb"\\(?:u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    rb"|(u[dD][89a-fA-F][0-9a-fA-F]{2})|.)",
    re.DOTALL,
)


def without_lone_surrogates(body: bytes | str) -> bytes | None:
    """``body`` with each lone UTF-16 surrogate escape (``\\ud83d`` not followed by its
    low half) written as U+FFFD, or None when it has none.

    JavaScript's ``JSON.stringify`` writes a string cut in the middle of an emoji that
    way (the Baileys bridge, Evolution: a text truncated by its sender), and strict
    decoders refuse the whole body — every message of a batch lost to one character.
    Python's own ``json`` reads it; here it reads as the replacement character, as a NUL
    does in a text the database stores."""
    raw = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    if b"\\u" not in raw:
        return None
    found = False

    def replace(match: re.Match[bytes]) -> bytes:
        nonlocal found
        if match.group(1) is None:
            return match.group(0)
        found = True
        return b"\\ufffd"

    repaired = _ESCAPE.sub(replace, raw)
    return repaired if found else None


class StandIn(datetime):
    """The fallback time standing in for a provider time that was sent but is not a
    plausible time (out of range, not a number): :meth:`EventBuilder.build` turns it back
    into a plain time and flags the event ``timestamp_out_of_range``."""

    def plain(self) -> datetime:
        return datetime(
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            self.microsecond,
            tzinfo=self.tzinfo,
        )


def stand_in(fallback: datetime) -> StandIn:
    """``fallback``, marked as standing in for an implausible provider time."""
    if isinstance(fallback, StandIn):
        return fallback
    return StandIn(
        fallback.year,
        fallback.month,
        fallback.day,
        fallback.hour,
        fallback.minute,
        fallback.second,
        fallback.microsecond,
        tzinfo=fallback.tzinfo,
    )


def unix_time(value: float | int | str | None, fallback: datetime) -> datetime:
    """A provider timestamp in seconds or milliseconds (number or numeric string), as UTC.

    No timestamp falls back to the time of receipt, as the spec says for events without
    a timestamp of their own; one that is not a plausible time does too, as a
    :class:`StandIn` so the event says so in its risk flags.
    """
    if value is None or value == "":
        return fallback
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return stand_in(fallback)
    if number > 1e11:  # milliseconds (1e11 s is the year 5138)
        number /= 1000.0
    if not 0 < number < _YEAR_3000_SECONDS:
        return stand_in(fallback)
    return datetime.fromtimestamp(number, UTC)


def iso_time(value: str | None, fallback: datetime) -> datetime:
    """An ISO 8601 provider time (Evolution's ``date_time``), as UTC; an unreadable one,
    or one outside the times :func:`unix_time` takes as plausible (1970 to 3000), is a
    :class:`StandIn` for ``fallback``. A time at the edge of what Python can hold
    (``0001-01-01T00:00:00+01:00``) has no UTC: it is not plausible either, and must not
    cost the other facts of its webhook (the conversion raised)."""
    if not value:
        return fallback
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        utc = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return stand_in(fallback)
    if not _EPOCH < utc < _YEAR_3000:
        return stand_in(fallback)
    return utc


#: Plausible provider times, one window for both spellings: after 1970, before 3000.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_YEAR_3000 = datetime(3000, 1, 1, tzinfo=UTC)
_YEAR_3000_SECONDS = int(_YEAR_3000.timestamp())


def actor_dict(
    person: Person,
    role: str,
    *,
    display_name: str | None = None,
    username: str | None = None,
) -> dict[str, Any]:
    """The canonical ``actor`` object for a person.

    Absent parts are left out rather than set to None: the schema's default is None, and
    validating an explicit None costs as much as a value (this runs for every event).
    """
    actor: dict[str, Any] = {"role": role}
    phone, lid, user_id = person
    if phone or lid or user_id:
        actor["wa_id"] = person.wa_id
        if lid:
            actor["lid"] = lid
        if user_id:
            actor["user_id"] = user_id
    if username:
        actor["username"] = username
    if display_name:
        actor["display_name"] = display_name
    return actor


BUSINESS_ACTOR: Mapping[str, Any] = {"role": "business"}
SYSTEM_ACTOR: Mapping[str, Any] = {"role": "system"}


def private_chat(customer: Person) -> dict[str, Any]:
    """A private chat is named by the customer's ``wa_id``; the other identities ride along
    (absent ones left out, as in :func:`actor_dict`)."""
    chat: dict[str, Any] = {"type": "private", "id": customer.wa_id or "unknown"}
    phone, lid, user_id = customer
    if lid:
        chat["lid"] = lid
    if user_id:
        chat["user_id"] = user_id
    if phone:
        chat["phone"] = phone
    return chat


def group_chat(group_id: str) -> dict[str, Any]:
    return {"type": "group", "id": group_id}


class EventBuilder:
    """Turns a normalizer's typed findings into validated canonical events.

    Holds what is the same for every event of one payload (provider, context), so the
    mapping functions pass only what is specific to each event.
    """

    __slots__ = ("ctx", "provider")

    def __init__(self, provider: ProviderName, ctx: NormalizeContext) -> None:
        self.provider = provider
        self.ctx = ctx

    def _shopper(self, account: str) -> str | None:
        if self.ctx.shopper_id is not None or self.ctx.shopper_of is None:
            return self.ctx.shopper_id
        return self.ctx.shopper_of(account)

    def account(self, from_payload: str | None) -> str | None:
        """An explicit ``--account`` beats the payload's own account id."""
        return self.ctx.account or from_payload or None

    def build(
        self,
        *,
        account: str,
        event_type: str,
        identity: tuple[str | None, ...],
        occurred_at: datetime,
        provider_event: str,
        provider_message_id: str | None,
        actor: Mapping[str, Any],
        chat: Mapping[str, Any],
        message: Mapping[str, Any] | None = None,
        status: Mapping[str, Any] | None = None,
        group: Mapping[str, Any] | None = None,
        contact: Mapping[str, Any] | None = None,
        connection: Mapping[str, Any] | None = None,
        call: Mapping[str, Any] | None = None,
    ) -> CanonicalEvent:
        """One event. ``identity`` is (kind, ids...) — the facts that make it unique.

        The optional top-level objects (``message``, ``status``, ``group``, ``contact``,
        ``connection``, ``call``) are None when not relevant.
        """
        key = idempotency_key(self.provider, account, *identity)
        flags = risk_flags(actor, message)
        if occurred_at.__class__ is StandIn:
            occurred_at = occurred_at.plain()
            flags.append("timestamp_out_of_range")
        data: dict[str, Any] = {
            "event_id": event_id(key),
            "event_type": event_type,
            "occurred_at": occurred_at,
            "received_at": self.ctx.received_at,
            "idempotency_key": key,
            "source": {
                "provider": self.provider,
                "account_id": account,
                "provider_event": provider_event,
                "provider_message_id": provider_message_id,
            },
            "routing": _routing(self._shopper(account)),
            "actor": actor,
            "chat": chat,
            "security": {
                "signature_valid": self.ctx.signature_valid,
                "risk_flags": flags,
            },
            "trace": {"correlation_id": self.ctx.correlation_id},
        }
        # Only the parts present: validating an explicit None costs as much as a field.
        if message is not None:
            data["message"] = message
        if status is not None:
            data["status"] = status
        if group is not None:
            data["group"] = group
        if contact is not None:
            data["contact"] = contact
        if connection is not None:
            data["connection"] = connection
        if call is not None:
            data["call"] = call
        return _validate_event(data)


#: The schema's compiled validator, called directly (``model_validate`` adds a Python
#: layer), without the unknown-key check: the builder writes every key itself, and the
#: check costs a sixth of validation. The test suite swaps in the strict validator
#: (``tests/conftest.py``), so a misspelt key still fails there.
_validate_event: Callable[[dict[str, Any]], CanonicalEvent] = partial(
    CanonicalEvent.__pydantic_validator__.validate_python, extra="ignore"
)


@lru_cache(maxsize=4096)
def _routing(shopper_id: str | None) -> Routing:
    """A normalizer's routing part, one shared (frozen) instance per shopper: validating a
    ready instance is a type check, cheaper than validating the same dict every time."""
    return Routing(shopper_id=shopper_id)


def content_digest(value: Any) -> str:
    """A short stable digest of content, for identities keyed by what changed (edits)."""
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def edit_identity(
    target_id: str | None, new_type: str | None, new_text: str | None
) -> tuple[str | None, ...]:
    """An edit is keyed by (edited message, new content) — the same fact whether it came
    as a protocol message, an update or an edited-message webhook."""
    return ("edit", target_id, content_digest({"type": new_type, "text": new_text}))


def risk_flags(actor: Mapping[str, Any], message: Mapping[str, Any] | None) -> list[str]:
    """Facts a consumer may want to treat with care: unreachable identities, viral forwards."""
    flags = []
    wa_id = actor.get("wa_id")
    if wa_id and not wa_id[0].isdigit():
        if wa_id.startswith("lid:"):
            flags.append("actor_lid_only")
        elif wa_id.startswith("bsuid:"):
            flags.append("actor_bsuid_only")
    if message is not None and message.get("frequently_forwarded"):
        flags.append("frequently_forwarded")
    return flags
