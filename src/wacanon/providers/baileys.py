"""Baileys (WhiskeySockets) socket events, as POSTed by the wacanon bridge (``bridges/baileys``).

The bridge forwards each ``sock.ev`` event unchanged::

    {"event": "messages.upsert", "session": "loja-centro", "sent_at": 1767225600123,
     "data": <the event argument, JSON.stringify'd>}

``session`` is the account id; ``sent_at`` (unix ms, fixed per event, so a retried POST
carries the same bytes) stands in for the provider's time when an event has none of its
own (connection, group and contact events). Baileys emits plain objects and protobufjs
instances side by side, so a timestamp may be a number, a numeric string or a Long
object, and an enum a number or its name: :mod:`wacanon.providers.wa_web` reads them all
and maps message content, shared with the Evolution normalizer (Evolution runs Baileys).

One fact reported twice is keyed by what it is about (spec, "Identity"): a delete for
everyone comes as a ``protocolMessage`` REVOKE upsert and as a ``messages.update`` stub;
an edit as a MESSAGE_EDIT upsert and as a ``messages.update``; a reaction as an upsert and
as ``messages.reaction``. Each pair gives one idempotency key.

Decisions worth knowing:

- Stub messages in ``messages.upsert`` (group notifications, missed calls, CIPHERTEXT)
  are ignored: Baileys reports the same facts as ``group-participants.update``,
  ``groups.update`` and ``call``; a decryption failure is re-sent later with the same id.
- ``messages.delete {jid, all: true}`` (clear a whole chat) is ignored: it names no
  message, and Baileys 6.7 / 7 never emit it.
- Events without a time of their own (group, connection) put the bridge's ``sent_at``
  in their identity, so the same change made twice (a member added, removed, added
  again) is not swallowed as a duplicate, while a retried POST still is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import msgspec
import pydantic

from wacanon.canonical.ids import (
    MalformedId,
    Person,
    checked_group,
    is_group_jid,
    is_unroutable_jid,
    person_from_jids,
)
from wacanon.canonical.schema import CanonicalEvent
from wacanon.providers.common import (
    BUSINESS_ACTOR,
    SYSTEM_ACTOR,
    EventBuilder,
    NormalizeContext,
    NormalizeError,
    NormalizeResult,
    StandIn,
    actor_dict,
    content_digest,
    convert,
    decode_body,
    edit_identity,
    group_chat,
    iso_time,
    malformed_id_error,
    private_chat,
    stand_in,
    unix_time,
)
from wacanon.providers.wa_web import (
    WRAPPERS,
    Content,
    KeyParties,
    LongLike,
    MessageKey,
    content_key,
    enum_value,
    key_parties,
    long_value,
    map_content,
)

# ------------------------------------------------------------------------ boundary types


class Envelope(msgspec.Struct, forbid_unknown_fields=False):
    """The bridge's POST body."""

    event: str
    data: Any = None
    session: str | None = None
    sent_at: LongLike = None


class WAMessage(msgspec.Struct, forbid_unknown_fields=False):
    """One ``WAMessage`` of ``messages.upsert`` (plain object or protobufjs JSON)."""

    key: MessageKey
    message: dict[str, Any] | None = None
    messageTimestamp: LongLike = None
    pushName: str | None = None
    participant: str | None = None
    messageStubType: int | str | None = None


class Upsert(msgspec.Struct, forbid_unknown_fields=False):
    messages: list[Any]
    type: str | None = None


class UpdateFields(msgspec.Struct, forbid_unknown_fields=False):
    """``Partial<WAMessage>`` of ``messages.update``: a status, a revoke stub or an edit."""

    status: int | str | None = None
    message: dict[str, Any] | None = None
    messageStubType: int | str | None = None
    messageStubParameters: list[Any] | None = None
    messageTimestamp: LongLike = None
    key: MessageKey | None = None


class MessageUpdate(msgspec.Struct, forbid_unknown_fields=False):
    key: MessageKey
    update: UpdateFields


class UserReceipt(msgspec.Struct, forbid_unknown_fields=False):
    userJid: str | None = None
    receiptTimestamp: LongLike = None
    readTimestamp: LongLike = None
    playedTimestamp: LongLike = None


class ReceiptUpdate(msgspec.Struct, forbid_unknown_fields=False):
    key: MessageKey
    receipt: UserReceipt


class ReactionBody(msgspec.Struct, forbid_unknown_fields=False):
    """``reaction`` of ``messages.reaction``; its ``key`` is the reaction message's (reactor)."""

    key: MessageKey | None = None
    text: str | None = None
    senderTimestampMs: LongLike = None


class ReactionUpdate(msgspec.Struct, forbid_unknown_fields=False):
    """Top-level ``key`` is the message reacted to."""

    key: MessageKey
    reaction: ReactionBody


class DeleteEvent(msgspec.Struct, forbid_unknown_fields=False):
    keys: list[Any] | None = None
    jid: str | None = None
    all: bool | None = None


class GroupParticipant(msgspec.Struct, forbid_unknown_fields=False):
    """Baileys 7 participant object; 6.7 sends a bare JID string instead."""

    id: str | None = None
    phoneNumber: str | None = None
    lid: str | None = None


class ParticipantsUpdate(msgspec.Struct, forbid_unknown_fields=False):
    id: str
    action: str
    participants: list[str | GroupParticipant] = msgspec.field(default_factory=list)
    author: str | None = None
    authorPn: str | None = None


class GroupInfo(msgspec.Struct, forbid_unknown_fields=False):
    """``Partial<GroupMetadata>`` of ``groups.update`` / ``groups.upsert``."""

    id: str
    subject: str | None = None
    desc: str | None = None
    announce: bool | None = None
    restrict: bool | None = None
    memberAddMode: bool | None = None
    joinApprovalMode: bool | None = None
    inviteCode: str | None = None
    ephemeralDuration: int | None = None
    author: str | None = None
    authorPn: str | None = None


class ContactInfo(msgspec.Struct, forbid_unknown_fields=False):
    """``Contact``: 7 has ``phoneNumber``, 6.7 has ``jid``; ``id`` may be either form."""

    id: str | None = None
    lid: str | None = None
    phoneNumber: str | None = None
    jid: str | None = None
    name: str | None = None
    notify: str | None = None
    verifiedName: str | None = None
    username: str | None = None
    imgUrl: str | None = None


class BoomOutput(msgspec.Struct, forbid_unknown_fields=False):
    statusCode: int | str | None = None


class DisconnectError(msgspec.Struct, forbid_unknown_fields=False):
    """A Boom error as JSON; a plain ``Error`` serializes to ``{}``."""

    output: BoomOutput | None = None


class LastDisconnect(msgspec.Struct, forbid_unknown_fields=False):
    error: DisconnectError | None = None
    date: str | None = None


class ConnectionUpdate(msgspec.Struct, forbid_unknown_fields=False):
    connection: str | None = None
    lastDisconnect: LastDisconnect | None = None


class CallEvent(msgspec.Struct, forbid_unknown_fields=False):
    id: str
    status: str
    caller: str | None = msgspec.field(default=None, name="from")
    callerPn: str | None = None
    chatId: str | None = None
    groupJid: str | None = None
    isGroup: bool | None = None
    isVideo: bool | None = None
    date: str | int | float | None = None


# ------------------------------------------------------------------------------ tables

#: ``proto.WebMessageInfo.Status`` names and numbers, to canonical status values.
STATUS_NAMES = {
    "ERROR": 0,
    "PENDING": 1,
    "SERVER_ACK": 2,
    "DELIVERY_ACK": 3,
    "READ": 4,
    "PLAYED": 5,
}
STATUS_VALUES = {0: "failed", 1: "queued", 2: "sent", 3: "delivered", 4: "read", 5: "played"}
SYSTEM_STATUSES = frozenset({"queued", "sent", "failed"})

STUB_REVOKE = 1
STUB_NAMES = {"UNKNOWN": 0, "REVOKE": 1, "CIPHERTEXT": 2}

#: ``group-participants.update`` action → (event type, canonical action).
PARTICIPANT_ACTIONS = {
    "add": ("whatsapp.group.joined", "add"),
    "remove": ("whatsapp.group.left", "remove"),
    "promote": ("whatsapp.group.updated", "promote"),
    "demote": ("whatsapp.group.updated", "demote"),
    "modify": ("whatsapp.group.updated", "modify"),
}

#: Group settings whose change ``groups.update`` reports (digested into the identity).
GROUP_FIELDS = (
    "subject",
    "desc",
    "announce",
    "restrict",
    "memberAddMode",
    "joinApprovalMode",
    "inviteCode",
    "ephemeralDuration",
)

#: Content reported by another Baileys event (a group call offer comes as ``call`` too).
REPORTED_ELSEWHERE = frozenset({"call"})

#: A plausible time is below this many milliseconds (year 5138); larger numbers are junk.
_MAX_TIME = 10**14


# ------------------------------------------------------------------------------ helpers


def _number(value: LongLike) -> int | None:
    """A 64-bit number in any spelling, or None when it is none (or absurdly large)."""
    number = long_value(value)
    if number is None or not -_MAX_TIME < number < _MAX_TIME:
        return None
    return number


def _is_stub(value: int | str | None) -> bool:
    """A stub message (notification, decryption failure): any stub type but UNKNOWN."""
    return value not in (None, 0, "", "0", "UNKNOWN")


def _direction(from_me: bool) -> str:
    return "outbound" if from_me else "inbound"


def _chat(parties: KeyParties) -> dict[str, Any]:
    if parties.group_id is not None:
        return group_chat(checked_group(parties.group_id))
    return private_chat(parties.customer)


def _actor(parties: KeyParties, display_name: str | None = None) -> dict[str, Any]:
    """The author of what a key names: the business (with its own JID in groups) or a customer."""
    if parties.from_me:
        own = parties.sender if parties.is_group else Person()
        return {**BUSINESS_ACTOR, "wa_id": own.wa_id, "lid": own.lid}
    return actor_dict(parties.sender, "customer", display_name=display_name)


def _participant(item: str | GroupParticipant) -> Person:
    if isinstance(item, str):
        return person_from_jids(item)
    return person_from_jids(item.id, item.phoneNumber, item.lid)


def _status_errors(params: list[Any] | None) -> list[dict[str, Any]]:
    """``messageStubParameters`` of an error ack: the server's error code, then a text."""
    if not params:
        return []
    texts = [str(p) for p in params]
    return [{"code": texts[0], "title": texts[1] if len(texts) > 1 else None, "detail": None}]


class FieldError(ValueError):
    """A mistyped field deep in an item; ``where`` is its path below the item."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(reason)
        self.where = where


def _content(message: dict[str, Any], where: str = "message") -> Content:
    """``map_content``, with a mistyped field reported by its path inside the message."""
    try:
        return map_content(message)
    except msgspec.ValidationError as exc:
        reason, _, tail = str(exc).rpartition(" - at `$")
        raise FieldError(where + _content_path(message) + tail.rstrip("`"), reason) from exc


def _content_path(message: dict[str, Any]) -> str:
    """``.ephemeralMessage.message.imageMessage``: where the mapped content sits."""
    path = ""
    for _ in range(8):
        name = content_key(message)
        if name is None:
            break
        inner = message.get(name)
        path += f".{name}"
        if name not in WRAPPERS or not isinstance(inner, dict):
            break
        nested = inner.get("message")
        message = nested if isinstance(nested, dict) else {}
        path += ".message"
    return path


# ------------------------------------------------------------------------------ mapping


class _Mapper:
    """Maps one bridge body; holds what all its events share (builder, account, fallback time)."""

    def __init__(self, builder: EventBuilder, account: str, envelope: Envelope) -> None:
        self.builder = builder
        self.account = account
        self.event = envelope.event
        received_at = builder.ctx.received_at
        number = _number(envelope.sent_at)
        sent = unix_time(number, received_at) if number else None
        if sent is None and envelope.sent_at not in (None, "", 0):  # sent, but not a time
            sent = stand_in(received_at)
        #: The bridge's time, for identities; never the time of receipt standing in for an
        #: implausible one, or a redelivery would get another key.
        self.sent_at = None if isinstance(sent, StandIn) else sent
        #: ``occurred_at`` of events without a time of their own (a stand-in is flagged).
        self.fallback = sent or received_at

    def time(self, value: LongLike) -> datetime:
        """The provider's time; none → the bridge's ``sent_at``; none → received_at."""
        return unix_time(_number(value), self.fallback)

    def stamp(self, own: datetime | None = None) -> str | None:
        """The time that goes into identities of events without ids: never received_at."""
        when = own if own is not None and not isinstance(own, StandIn) else self.sent_at
        return when.isoformat() if when is not None else None

    def build(self, **fields: Any) -> CanonicalEvent:
        return self.builder.build(account=self.account, provider_event=self.event, **fields)

    # ---------------------------------------------------------------- messages.upsert

    def upserted(self, msg: WAMessage) -> Iterator[CanonicalEvent]:
        """A new message, or the reaction / edit / revoke its content carries."""
        key = msg.key
        if is_unroutable_jid(key.remoteJid) or _is_stub(msg.messageStubType) or not msg.message:
            return
        content = _content(msg.message)
        if content.kind == "ignored" or content.provider_type in REPORTED_ELSEWHERE:
            return
        parties = key_parties(key, participant=msg.participant)
        when = self.time(msg.messageTimestamp)
        actor = _actor(parties, msg.pushName)
        target = content.target.id if content.target else None
        if content.kind == "message":
            yield self.new_message(msg, parties, content, when, actor)
        elif content.kind == "reaction":
            yield self.reaction(key, parties, target, content.emoji or "", when, actor)
        elif content.kind == "edit":
            yield self.edit(key.id, parties, content, target, when, actor)
        elif content.kind == "revoke":
            yield self.delete(key.id, parties, target, "everyone", when, actor)

    def new_message(
        self,
        msg: WAMessage,
        parties: KeyParties,
        content: Content,
        when: datetime,
        actor: dict[str, Any],
    ) -> CanonicalEvent:
        direction = _direction(parties.from_me)
        message = {
            **content.message,
            "id": msg.key.id,
            "direction": direction,
            "provider_type": content.provider_type,
        }
        return self.build(
            event_type=f"whatsapp.message.{direction}",
            identity=("message", msg.key.id),
            occurred_at=when,
            provider_message_id=msg.key.id,
            actor=actor,
            chat=_chat(parties),
            message=message,
        )

    def reaction(
        self,
        own: MessageKey,
        parties: KeyParties,
        target: str | None,
        emoji: str,
        when: datetime,
        actor: dict[str, Any] | None = None,
    ) -> CanonicalEvent:
        """``own`` is the reaction message's key: it names the reactor and the chat."""
        if not target:
            raise ValueError("reaction without the id of the message reacted to")
        actor = actor or _actor(parties)
        reactor = "business" if parties.from_me else actor.get("wa_id")
        return self.build(
            event_type="whatsapp.message.reaction",
            identity=("reaction", target, reactor, emoji),
            occurred_at=when,
            provider_message_id=own.id or target,
            actor=actor,
            chat=_chat(parties),
            message={
                "id": own.id or target,
                "direction": _direction(parties.from_me),
                "type": "reaction",
                "reaction": {"emoji": emoji, "message_id": target},
            },
        )

    def edit(
        self,
        own_id: str | None,
        parties: KeyParties,
        content: Content,
        target_id: str | None,
        when: datetime,
        actor: dict[str, Any] | None = None,
    ) -> CanonicalEvent:
        if not target_id:
            raise ValueError("edit without the id of the edited message")
        message = {
            **content.message,
            "id": own_id or target_id,
            "direction": _direction(parties.from_me),
            "target_id": target_id,
            "provider_type": content.provider_type,
        }
        return self.build(
            event_type="whatsapp.message.edited",
            identity=edit_identity(
                target_id, content.message.get("type"), content.message.get("text")
            ),
            occurred_at=when,
            provider_message_id=own_id or target_id,
            actor=actor or _actor(parties),
            chat=_chat(parties),
            message=message,
        )

    def delete(
        self,
        own_id: str | None,
        parties: KeyParties,
        target: str | None,
        scope: str,
        when: datetime,
        actor: dict[str, Any] | None = None,
    ) -> CanonicalEvent:
        if not target:
            raise ValueError("delete without the id of the deleted message")
        return self.build(
            event_type="whatsapp.message.deleted",
            identity=("delete", target, scope),
            occurred_at=when,
            provider_message_id=own_id or target,
            actor=actor or _actor(parties),
            chat=_chat(parties),
            message={
                "id": own_id or target,
                "direction": _direction(parties.from_me),
                "type": "system",
                "target_id": target,
                "delete_scope": scope,
            },
        )

    # ---------------------------------------------------------------- messages.update

    def updated(self, item: MessageUpdate) -> Iterator[CanonicalEvent]:
        """A revoke stub, an edit or a status; stars, poll and event votes are ignored."""
        key, update = item.key, item.update
        if is_unroutable_jid(key.remoteJid):
            return
        parties = key_parties(key)
        when = self.time(update.messageTimestamp)
        if enum_value(update.messageStubType, STUB_NAMES) == STUB_REVOKE:
            own_id = update.key.id if update.key else None
            yield self.delete(own_id, parties, key.id, "everyone", when)
        elif update.message and self._is_edit(update.message):
            content = _content(update.message, "update.message")
            target = content.target if content.kind == "edit" else key
            if content.kind in ("edit", "message") and target is not None:
                yield self.edit(None, parties, content, target.id, when)
        elif update.status is not None:
            number = enum_value(update.status, STATUS_NAMES)
            value = STATUS_VALUES.get(number) if number is not None else None
            if value is None:
                raise ValueError(f"unknown message status {update.status!r}")
            errors = _status_errors(update.messageStubParameters) if value == "failed" else []
            yield self.status(key, parties, value, when, errors=errors)

    @staticmethod
    def _is_edit(message: dict[str, Any]) -> bool:
        """An edit is ``editedMessage`` or a protocol MESSAGE_EDIT; a media re-upload is not."""
        name = content_key(message)
        return name == "editedMessage" or (
            name == "protocolMessage" and map_content(message).kind == "edit"
        )

    def status(
        self,
        key: MessageKey,
        parties: KeyParties,
        value: str,
        when: datetime,
        *,
        reader: Person | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> CanonicalEvent:
        """``reader`` is the group member whose receipt it is; private chats: the customer."""
        if not key.id:
            raise ValueError("status without a message id")
        recipient = reader if reader is not None else parties.customer
        if value in SYSTEM_STATUSES or (parties.from_me and recipient.wa_id is None):
            actor: dict[str, Any] = dict(SYSTEM_ACTOR)  # a group update names no reader
        elif parties.from_me:
            actor = actor_dict(recipient, "customer")
        else:  # the business read / played a customer's message
            actor, recipient = dict(BUSINESS_ACTOR), Person()
        participant = reader.wa_id if reader is not None else None
        return self.build(
            event_type=f"whatsapp.message.status.{value}",
            identity=("status", key.id, value, participant),
            occurred_at=when,
            provider_message_id=key.id,
            actor=actor,
            chat=_chat(parties),
            status={
                "value": value,
                "message_id": key.id,
                "recipient_wa_id": recipient.wa_id if parties.from_me else None,
                "participant": participant,
                "errors": errors or [],
            },
        )

    # ------------------------------------------------------- receipts, reactions, deletes

    def receipt(self, item: ReceiptUpdate) -> Iterator[CanonicalEvent]:
        """Group receipts: one status per timestamp given (live receipts carry exactly one)."""
        if is_unroutable_jid(item.key.remoteJid):
            return
        parties = key_parties(item.key)
        reader = person_from_jids(item.receipt.userJid)
        for value, stamp in (
            ("delivered", item.receipt.receiptTimestamp),
            ("read", item.receipt.readTimestamp),
            ("played", item.receipt.playedTimestamp),
        ):
            if stamp is not None:
                yield self.status(item.key, parties, value, self.time(stamp), reader=reader)

    def reacted(self, item: ReactionUpdate) -> Iterator[CanonicalEvent]:
        own = item.reaction.key
        if own is None:
            raise ValueError("reaction without the reaction message's key (the reactor)")
        if is_unroutable_jid(own.remoteJid or item.key.remoteJid):
            return
        parties = key_parties(own)
        when = self.time(item.reaction.senderTimestampMs)
        yield self.reaction(own, parties, item.key.id, item.reaction.text or "", when)

    def deleted_for_me(self, key: MessageKey) -> CanonicalEvent | None:
        """Delete for me, done by the account on another device: the business acted."""
        if is_unroutable_jid(key.remoteJid):
            return None
        parties = key_parties(key)
        actor = dict(BUSINESS_ACTOR)
        return self.delete(None, parties, key.id, "me", self.fallback, actor=actor)

    # -------------------------------------------------------------------- groups

    def participants(self, data: ParticipantsUpdate) -> CanonicalEvent:
        event_type, action = PARTICIPANT_ACTIONS.get(
            data.action, ("whatsapp.group.updated", "update")
        )
        members = sorted({p.wa_id for p in map(_participant, data.participants) if p.wa_id})
        author = person_from_jids(data.author, data.authorPn)
        stamp = self.stamp()
        return self.build(
            event_type=event_type,
            identity=("group", data.id, action, *members, None, stamp),
            occurred_at=self.fallback,
            provider_message_id=None,
            actor=actor_dict(author, "customer") if author.wa_id else dict(SYSTEM_ACTOR),
            chat=group_chat(checked_group(data.id)),
            group={
                "id": data.id,
                "action": action,
                "participants": members,
                "author": author.wa_id,
            },
        )

    def group_info(self, data: GroupInfo) -> CanonicalEvent:
        changed = {f: getattr(data, f) for f in GROUP_FIELDS if getattr(data, f) is not None}
        author = person_from_jids(data.author, data.authorPn)
        return self.build(
            event_type="whatsapp.group.updated",
            identity=("group", data.id, "update", content_digest(changed), self.stamp()),
            occurred_at=self.fallback,
            provider_message_id=None,
            actor=actor_dict(author, "customer") if author.wa_id else dict(SYSTEM_ACTOR),
            chat=group_chat(checked_group(data.id)),
            group={
                "id": data.id,
                "subject": data.subject,
                "description": data.desc,
                "action": "update",
                "author": author.wa_id,
            },
        )

    # ---------------------------------------------------------- contacts, connection, calls

    def contact(self, data: ContactInfo) -> CanonicalEvent | None:
        """A profile change; a group icon or a bare picture ping carries nothing canonical."""
        if not data.id:
            raise ValueError("contact without an id")
        if is_group_jid(data.id) or is_unroutable_jid(data.id):
            return None
        who = person_from_jids(data.id, data.phoneNumber, data.jid, data.lid)
        picture = data.imgUrl if data.imgUrl and data.imgUrl.startswith("http") else None
        name = data.notify or data.verifiedName or data.name
        if not (name or picture or data.username or (who.lid and who.phone)):
            return None
        profile = {f: v for f, v in msgspec.structs.asdict(data).items() if v is not None}
        profile.pop("id", None)
        return self.build(
            event_type="whatsapp.contact.updated",
            identity=("contact", who.wa_id, content_digest(profile)),
            occurred_at=self.fallback,
            provider_message_id=None,
            actor=actor_dict(who, "customer", display_name=name, username=data.username),
            chat=private_chat(who),
            contact={
                "wa_id": who.wa_id,
                "lid": who.lid,
                "display_name": name,
                "picture_url": picture,
            },
        )

    def connection(self, data: ConnectionUpdate) -> CanonicalEvent | None:
        """open / connecting / close; QR refreshes and online pings carry no state."""
        if not data.connection:
            return None
        last = data.lastDisconnect
        output = last.error.output if last and last.error else None
        reason = str(output.statusCode) if output and output.statusCode is not None else None
        own = iso_time(last.date, self.fallback) if last and last.date else None
        when = own or self.fallback
        return self.build(
            event_type="whatsapp.connection.updated",
            identity=("connection", data.connection, reason, self.stamp(own)),
            occurred_at=when,
            provider_message_id=None,
            actor=dict(SYSTEM_ACTOR),
            chat={"type": "private", "id": self.account},
            connection={"state": data.connection, "reason": reason},
        )

    def call(self, data: CallEvent) -> CanonicalEvent:
        caller = person_from_jids(data.caller, data.callerPn, data.chatId)
        group = data.groupJid if data.isGroup and is_group_jid(data.groupJid) else None
        if isinstance(data.date, str) and not data.date.strip().isdigit():
            when = iso_time(data.date, self.fallback)
        else:
            when = self.time(data.date)
        return self.build(
            event_type="whatsapp.call.received",
            identity=("call", data.id, data.status),
            occurred_at=when,
            provider_message_id=None,
            actor=actor_dict(caller, "customer"),
            chat=group_chat(checked_group(group)) if group else private_chat(caller),
            call={
                "id": data.id,
                "status": data.status,
                "video": bool(data.isVideo),
                "group": bool(data.isGroup),
            },
        )


# ----------------------------------------------------------------------------- dispatch

#: Exceptions a mapper may raise for a malformed item; each becomes one NormalizeError.
_ITEM_ERRORS = (msgspec.ValidationError, pydantic.ValidationError, ValueError, OverflowError)

Events = Iterator[CanonicalEvent] | CanonicalEvent | None
ItemHandler = Callable[[_Mapper, Any], Events]
Handler = Callable[[_Mapper, Any, NormalizeResult], None]


def _run_item(
    mapper: _Mapper,
    handler: ItemHandler,
    model: type[Any],
    raw: Any,
    path: str,
    result: NormalizeResult,
) -> None:
    """Type one item, map it; a malformed item is one error and its siblings still map."""
    item = convert(raw, model, path)
    if isinstance(item, NormalizeError):
        result.errors.append(dataclasses.replace(item, provider_event=mapper.event))
        return
    before = len(result.events)
    try:
        produced = handler(mapper, item)
        if isinstance(produced, CanonicalEvent):
            result.events.append(produced)
        elif produced is not None:
            result.events.extend(produced)
    except MalformedId as exc:
        del result.events[before:]
        result.errors.append(malformed_id_error(exc, item, path, mapper.event))
        return
    except FieldError as exc:
        del result.events[before:]
        result.errors.append(NormalizeError(f"{path}.{exc.where}", str(exc), mapper.event))
        return
    except _ITEM_ERRORS as exc:
        del result.events[before:]
        result.errors.append(NormalizeError(path, _reason(exc), mapper.event))
        return
    if len(result.events) == before:
        result.ignored += 1


def _reason(exc: Exception) -> str:
    text = str(exc)
    return text.rpartition(" - at `")[0] or text


def _each(model: type[Any], handler: ItemHandler) -> Handler:
    """``data`` is an array: type and map each item alone."""

    def run(mapper: _Mapper, data: Any, result: NormalizeResult) -> None:
        if not isinstance(data, list):
            result.errors.append(NormalizeError("$.data", "expected an array", mapper.event))
            return
        for index, raw in enumerate(data):
            _run_item(mapper, handler, model, raw, f"$.data[{index}]", result)

    return run


def _single(model: type[Any], handler: ItemHandler) -> Handler:
    """``data`` is one object."""

    def run(mapper: _Mapper, data: Any, result: NormalizeResult) -> None:
        _run_item(mapper, handler, model, data, "$.data", result)

    return run


def _upserts(mapper: _Mapper, data: Any, result: NormalizeResult) -> None:
    """``{messages, type}``: every message of the batch, ``notify`` and ``append`` alike."""
    upsert = convert(data, Upsert, "$.data")
    if isinstance(upsert, NormalizeError):
        result.errors.append(dataclasses.replace(upsert, provider_event=mapper.event))
        return
    for index, raw in enumerate(upsert.messages):
        path = f"$.data.messages[{index}]"
        _run_item(mapper, _upsert_item, WAMessage, raw, path, result)


def _deletes(mapper: _Mapper, data: Any, result: NormalizeResult) -> None:
    """``{keys}``: one event per key; ``{jid, all: true}``: ignored (see the module doc)."""
    parsed = convert(data, DeleteEvent, "$.data")
    if isinstance(parsed, NormalizeError):
        result.errors.append(dataclasses.replace(parsed, provider_event=mapper.event))
        return
    if not parsed.keys:
        result.ignored += 1
        return
    for index, raw in enumerate(parsed.keys):
        path = f"$.data.keys[{index}]"
        _run_item(mapper, _delete_item, MessageKey, raw, path, result)


def _upsert_item(mapper: _Mapper, msg: WAMessage) -> Events:
    if not msg.key.id:
        raise ValueError("message key without an id")
    return mapper.upserted(msg)


def _update_item(mapper: _Mapper, item: MessageUpdate) -> Events:
    if not item.key.id:
        raise ValueError("message key without an id")
    return mapper.updated(item)


def _delete_item(mapper: _Mapper, key: MessageKey) -> Events:
    if not key.id:
        raise ValueError("message key without an id")
    return mapper.deleted_for_me(key)


_HANDLERS: dict[str, Handler] = {
    "messages.upsert": _upserts,
    "messages.update": _each(MessageUpdate, _update_item),
    "message-receipt.update": _each(ReceiptUpdate, _Mapper.receipt),
    "messages.reaction": _each(ReactionUpdate, _Mapper.reacted),
    "messages.delete": _deletes,
    "group-participants.update": _single(ParticipantsUpdate, _Mapper.participants),
    "groups.update": _each(GroupInfo, _Mapper.group_info),
    "groups.upsert": _each(GroupInfo, _Mapper.group_info),
    "contacts.upsert": _each(ContactInfo, _Mapper.contact),
    "contacts.update": _each(ContactInfo, _Mapper.contact),
    "connection.update": _single(ConnectionUpdate, _Mapper.connection),
    "call": _each(CallEvent, _Mapper.call),
}


def normalize(body: bytes | str, ctx: NormalizeContext) -> NormalizeResult:
    """Normalize one bridge POST (one Baileys event)."""
    result = NormalizeResult()
    decoded = decode_body(body)
    envelope = decoded if isinstance(decoded, NormalizeError) else convert(decoded, Envelope, "$")
    if isinstance(envelope, NormalizeError):
        result.errors.append(envelope)
        return result
    builder = EventBuilder("baileys", ctx)
    account = builder.account(envelope.session)
    if account is None:
        result.errors.append(
            NormalizeError("$.session", "no account id in payload; pass --account", envelope.event)
        )
        return result
    handler = _HANDLERS.get(envelope.event)
    if handler is None:  # presence, chats.*, history sync, creds, labels, ...: nothing canonical
        result.ignored += 1
        return result
    handler(_Mapper(builder, account, envelope), envelope.data, result)
    return result
