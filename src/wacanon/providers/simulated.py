"""The simulated provider: a small, readable webhook dialect for tests, demos and load.

A body names the account and lists what happened, one object per fact, tagged by
``type``; the format is documented in ``docs/simulated-provider.md``::

    {"account": "sim-store-1",
     "events": [
       {"type": "message", "id": "sim-1", "from": "5511987654321", "name": "Ana",
        "text": "Oi! Vocês têm esse tênis no 42?", "timestamp": 1767225600},
       {"type": "status", "message_id": "sim-0", "status": "read", "recipient": "5511987654321"}
     ]}

People are written as phone digits, ``lid:<digits>`` or ``bsuid:<BSUID>`` — several ids
of one person comma-separated (``5511987654321,lid:103899771998284``); ``group``
names a group chat. Everything a real provider can say has a simulated spelling, so the
generator (:mod:`wacanon.simulate`) can exercise every canonical event type.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, get_args

import msgspec
import pydantic

from wacanon.canonical.ids import Person, id_digits, phone_digits
from wacanon.canonical.schema import GroupAction, MessageType
from wacanon.providers.common import (
    BUSINESS_ACTOR,
    SYSTEM_ACTOR,
    EventBuilder,
    NormalizeContext,
    NormalizeError,
    NormalizeResult,
    actor_dict,
    content_digest,
    convert,
    decode_body,
    edit_identity,
    group_chat,
    iso_time,
    private_chat,
    unix_time,
)

Timestamp = int | float | str | None


class _Fact(msgspec.Struct, tag_field="type", forbid_unknown_fields=False):
    timestamp: Timestamp = None


class SimMedia(msgspec.Struct, forbid_unknown_fields=False):
    mime_type: str | None = None
    url: str | None = None
    media_id: str | None = None
    sha256: str | None = None
    file_name: str | None = None
    size: int | None = None
    voice: bool = False


class SimLocation(msgspec.Struct, forbid_unknown_fields=False):
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None


class SimMessage(_Fact, tag="message"):
    """A message from a customer (``from``) or from the business (``to``)."""

    id: str = ""
    kind: str = "text"
    text: str | None = None
    sender: str | None = msgspec.field(default=None, name="from")
    to: str | None = None
    group: str | None = None
    name: str | None = None
    reply_to: str | None = None
    forwarded: bool = False
    media: SimMedia | None = None
    location: SimLocation | None = None


class SimStatus(_Fact, tag="status"):
    message_id: str = ""
    status: str = ""
    recipient: str | None = None
    group: str | None = None
    participant: str | None = None
    error: str | None = None


class _AboutAMessage(_Fact):
    """Facts about an earlier message: sent by a customer (``from``) or the business (``to``)."""

    target: str = ""
    id: str | None = None
    sender: str | None = msgspec.field(default=None, name="from")
    to: str | None = None
    group: str | None = None


class SimReaction(_AboutAMessage, tag="reaction"):
    emoji: str = ""


class SimEdit(_AboutAMessage, tag="edit"):
    text: str = ""


class SimDelete(_AboutAMessage, tag="delete"):
    scope: str = "everyone"


class SimGroup(_Fact, tag="group"):
    group: str = ""
    action: str = "update"
    participants: list[str] = msgspec.field(default_factory=list)
    subject: str | None = None
    author: str | None = None


class SimContact(_Fact, tag="contact"):
    wa_id: str = ""
    name: str | None = None


class SimConnection(_Fact, tag="connection"):
    state: str = ""
    reason: str | None = None


class SimCall(_Fact, tag="call"):
    id: str = ""
    sender: str | None = msgspec.field(default=None, name="from")
    status: str = "offer"
    video: bool = False


SimFact = (
    SimMessage
    | SimStatus
    | SimReaction
    | SimEdit
    | SimDelete
    | SimGroup
    | SimContact
    | SimConnection
    | SimCall
)


class SimEnvelope(msgspec.Struct, forbid_unknown_fields=False):
    events: list[Any]
    account: str | None = None


#: What ``kind`` may say: every message type but the ones other facts make.
MESSAGE_KINDS = frozenset(get_args(MessageType)) - {"reaction", "unsupported"}
STATUS_VALUES = frozenset({"queued", "sent", "delivered", "read", "played", "failed"})
GROUP_ACTIONS = frozenset(get_args(GroupAction))
GROUP_EVENT_TYPES = {
    "add": "whatsapp.group.joined",
    "join": "whatsapp.group.joined",
    "remove": "whatsapp.group.left",
    "leave": "whatsapp.group.left",
}


def person(text: str | None) -> Person:
    """A simulated person: phone digits, ``lid:<digits>`` or ``bsuid:<BSUID>`` — or several
    of one person's ids, comma-separated (``5511987654321,lid:103899771998284``), as a real
    provider carries a phone beside a LID or a BSUID."""
    if not text:
        return Person()
    if "," in text:
        found = Person()
        for part in text.split(","):
            found = found.merged(person(part.strip()))
        return found
    if text.startswith("lid:"):
        return Person(lid=id_digits(text[4:]))
    if text.startswith("bsuid:"):
        return Person(user_id=text[6:] or None)
    return Person(phone=phone_digits(text))


class _Mapper:
    """Maps one simulated body's facts; holds what all its events share."""

    def __init__(self, builder: EventBuilder, account: str) -> None:
        self.builder = builder
        self.account = account

    def when(self, fact: _Fact) -> Any:
        value = fact.timestamp
        received = self.builder.ctx.received_at
        if isinstance(value, str) and not value.strip().isdigit():
            return iso_time(value, received)
        return unix_time(value, received)

    def party(
        self, sender: str | None, to: str | None, group: str | None, name: str | None = None
    ) -> tuple[dict[str, Any], dict[str, Any], str]:
        """(actor, chat, direction) of a fact sent by ``sender`` or, by the business, ``to``."""
        outbound = sender is None
        customer = person(to if outbound else sender)
        chat = group_chat(group) if group else private_chat(customer)
        if outbound:
            return dict(BUSINESS_ACTOR), chat, "outbound"
        return actor_dict(customer, "customer", display_name=name), chat, "inbound"

    def build(self, fact: _Fact, **fields: Any) -> Any:
        return self.builder.build(
            account=self.account,
            occurred_at=self.when(fact),
            provider_event=f"simulated.{fact.__struct_config__.tag}",
            **fields,
        )

    def message(self, fact: SimMessage) -> Any:
        kind = fact.kind if fact.kind in MESSAGE_KINDS else "unsupported"
        actor, chat, direction = self.party(fact.sender, fact.to, fact.group, fact.name)
        message: dict[str, Any] = {
            "id": fact.id,
            "direction": direction,
            "type": kind,
            "text": fact.text,
            "reply_to": fact.reply_to,
            "forwarded": fact.forwarded,
            "provider_type": fact.kind,
        }
        if fact.media is not None:
            message["media"] = msgspec.structs.asdict(fact.media)
        if fact.location is not None:
            message["location"] = msgspec.structs.asdict(fact.location)
        return self.build(
            fact,
            event_type=f"whatsapp.message.{direction}",
            identity=("message", fact.id),
            provider_message_id=fact.id,
            actor=actor,
            chat=chat,
            message=message,
        )

    def status(self, fact: SimStatus) -> Any:
        recipient = person(fact.recipient)
        participant = person(fact.participant).wa_id if fact.group else None
        chat = group_chat(fact.group) if fact.group else private_chat(recipient)
        if fact.status in ("queued", "sent", "failed"):
            actor = dict(SYSTEM_ACTOR)
        else:
            actor = actor_dict(person(fact.participant) if fact.group else recipient, "customer")
        errors = [{"code": "simulated", "title": fact.error, "detail": None}] if fact.error else []
        return self.build(
            fact,
            event_type=f"whatsapp.message.status.{fact.status}",
            identity=("status", fact.message_id, fact.status, participant),
            provider_message_id=fact.message_id,
            actor=actor,
            chat=chat,
            status={
                "value": fact.status,
                "message_id": fact.message_id,
                "recipient_wa_id": recipient.wa_id,
                "participant": participant,
                "errors": errors,
            },
        )

    def reaction(self, fact: SimReaction) -> Any:
        actor, chat, direction = self.party(fact.sender, fact.to, fact.group)
        reactor = "business" if direction == "outbound" else actor.get("wa_id")
        return self.build(
            fact,
            event_type="whatsapp.message.reaction",
            identity=("reaction", fact.target, reactor, fact.emoji),
            provider_message_id=fact.id or fact.target,
            actor=actor,
            chat=chat,
            message={
                "id": fact.id or fact.target,
                "direction": direction,
                "type": "reaction",
                "reaction": {"emoji": fact.emoji, "message_id": fact.target},
            },
        )

    def edit(self, fact: SimEdit) -> Any:
        actor, chat, direction = self.party(fact.sender, fact.to, fact.group)
        return self.build(
            fact,
            event_type="whatsapp.message.edited",
            identity=edit_identity(fact.target, "text", fact.text),
            provider_message_id=fact.id or fact.target,
            actor=actor,
            chat=chat,
            message={
                "id": fact.id or fact.target,
                "direction": direction,
                "type": "text",
                "text": fact.text,
                "target_id": fact.target,
            },
        )

    def delete(self, fact: SimDelete) -> Any:
        actor, chat, direction = self.party(fact.sender, fact.to, fact.group)
        return self.build(
            fact,
            event_type="whatsapp.message.deleted",
            identity=("delete", fact.target, fact.scope),
            provider_message_id=fact.id or fact.target,
            actor=actor,
            chat=chat,
            message={
                "id": fact.id or fact.target,
                "direction": direction,
                "type": "system",
                "target_id": fact.target,
                "delete_scope": fact.scope,
            },
        )

    def group(self, fact: SimGroup) -> Any:
        members = sorted(filter(None, (person(p).wa_id for p in fact.participants)))
        author = person(fact.author)
        actor = actor_dict(author, "customer") if author.wa_id else dict(SYSTEM_ACTOR)
        changed = content_digest({"subject": fact.subject}) if fact.subject else None
        return self.build(
            fact,
            event_type=GROUP_EVENT_TYPES.get(fact.action, "whatsapp.group.updated"),
            identity=("group", fact.group, fact.action, *members, changed, str(fact.timestamp)),
            provider_message_id=None,
            actor=actor,
            chat=group_chat(fact.group),
            group={
                "id": fact.group,
                "subject": fact.subject,
                "action": fact.action,
                "participants": members,
                "author": author.wa_id,
            },
        )

    def contact(self, fact: SimContact) -> Any:
        who = person(fact.wa_id)
        return self.build(
            fact,
            event_type="whatsapp.contact.updated",
            identity=("contact", who.wa_id, content_digest({"name": fact.name})),
            provider_message_id=None,
            actor=actor_dict(who, "customer", display_name=fact.name),
            chat=private_chat(who),
            contact={"wa_id": who.wa_id, "lid": who.lid, "display_name": fact.name},
        )

    def connection(self, fact: SimConnection) -> Any:
        return self.build(
            fact,
            event_type="whatsapp.connection.updated",
            # The fact's own timestamp, never the time of receipt (a redelivery must
            # keep its key): two facts without timestamps are the same fact.
            identity=("connection", fact.state, fact.reason, str(fact.timestamp)),
            provider_message_id=None,
            actor=dict(SYSTEM_ACTOR),
            chat={"type": "private", "id": self.account},
            connection={"state": fact.state, "reason": fact.reason},
        )

    def call(self, fact: SimCall) -> Any:
        caller = person(fact.sender)
        return self.build(
            fact,
            event_type="whatsapp.call.received",
            identity=("call", fact.id, fact.status),
            provider_message_id=None,
            actor=actor_dict(caller, "customer"),
            chat=private_chat(caller),
            call={"id": fact.id, "status": fact.status, "video": fact.video},
        )


_REQUIRED: dict[type[_Fact], tuple[str, ...]] = {
    SimMessage: ("id",),
    SimStatus: ("message_id", "status"),
    SimReaction: ("target",),
    SimEdit: ("target",),
    SimDelete: ("target",),
    SimGroup: ("group",),
    SimContact: ("wa_id",),
    SimConnection: ("state",),
    SimCall: ("id",),
}

_DISPATCH: dict[type[_Fact], Callable[[_Mapper, Any], Any]] = {
    SimMessage: _Mapper.message,
    SimStatus: _Mapper.status,
    SimReaction: _Mapper.reaction,
    SimEdit: _Mapper.edit,
    SimDelete: _Mapper.delete,
    SimGroup: _Mapper.group,
    SimContact: _Mapper.contact,
    SimConnection: _Mapper.connection,
    SimCall: _Mapper.call,
}


def _problem(fact: _Fact) -> str | None:
    """What makes a typed fact unusable: a missing id, a status we do not know, ..."""
    for name in _REQUIRED[type(fact)]:
        if not getattr(fact, name):
            return f"`{name}` is required for a {fact.__struct_config__.tag} fact"
    if isinstance(fact, SimStatus) and fact.status not in STATUS_VALUES:
        return f"unknown status {fact.status!r}; expected one of {sorted(STATUS_VALUES)}"
    if isinstance(fact, SimContact) and person(fact.wa_id).wa_id is None:
        return f"`wa_id` {fact.wa_id!r} names no phone number, lid:<digits> or bsuid:<BSUID>"
    if isinstance(fact, SimGroup) and fact.action not in GROUP_ACTIONS:
        return f"unknown group action {fact.action!r}; expected one of {sorted(GROUP_ACTIONS)}"
    if isinstance(fact, SimDelete) and fact.scope not in ("me", "everyone"):
        return f"unknown delete scope {fact.scope!r}; expected 'me' or 'everyone'"
    if isinstance(fact, SimMessage) and not (fact.sender or fact.to):
        return "a message needs `from` (customer) or `to` (business)"
    return None


class _TypedEnvelope(msgspec.Struct, forbid_unknown_fields=False):
    """The whole body typed in one pass: the fast path for well-formed bodies."""

    events: list[SimFact]
    account: str | None = None


_typed = msgspec.json.Decoder(_TypedEnvelope, strict=False)


def normalize(body: bytes | str, ctx: NormalizeContext) -> NormalizeResult:
    """Normalize one simulated webhook body.

    A well-formed body is typed in one decoding pass; any body that fails that takes the
    tolerant path, which types fact by fact so one bad fact costs only itself.
    """
    try:
        envelope = _typed.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, UnicodeError):
        return _tolerant(body, ctx)
    result = NormalizeResult()
    mapper = _mapper(envelope.account, ctx, result)
    if mapper is not None:
        for index, fact in enumerate(envelope.events):
            _map_fact(mapper, fact, index, result)
    return result


def _tolerant(body: bytes | str, ctx: NormalizeContext) -> NormalizeResult:
    result = NormalizeResult()
    decoded = decode_body(body)
    if isinstance(decoded, NormalizeError):
        result.errors.append(decoded)
        return result
    envelope = convert(decoded, SimEnvelope, "$")
    if isinstance(envelope, NormalizeError):
        result.errors.append(envelope)
        return result
    mapper = _mapper(envelope.account, ctx, result)
    if mapper is None:
        return result
    for index, item in enumerate(envelope.events):
        fact = convert(item, SimFact, f"$.events[{index}]")  # type: ignore[arg-type]
        if isinstance(fact, NormalizeError):
            result.errors.append(fact)
            continue
        _map_fact(mapper, fact, index, result)
    return result


def _mapper(account: str | None, ctx: NormalizeContext, result: NormalizeResult) -> _Mapper | None:
    builder = EventBuilder("simulated", ctx)
    chosen = builder.account(account)
    if chosen is None:
        result.errors.append(
            NormalizeError("$.account", "no account id in payload; pass --account")
        )
        return None
    return _Mapper(builder, chosen)


def _map_fact(mapper: _Mapper, fact: _Fact, index: int, result: NormalizeResult) -> None:
    problem = _problem(fact)
    if problem is not None:
        tag = fact.__struct_config__.tag
        result.errors.append(NormalizeError(f"$.events[{index}]", problem, f"simulated.{tag}"))
        return
    try:
        result.events.append(_DISPATCH[type(fact)](mapper, fact))
    except pydantic.ValidationError as exc:  # a value the schema refuses: this fact only
        tag = fact.__struct_config__.tag
        reason = f"not a valid canonical event: {exc.errors()[0]['msg']}"
        result.errors.append(NormalizeError(f"$.events[{index}]", reason, f"simulated.{tag}"))
