"""Evolution API v2 webhooks → canonical events.

Every Evolution webhook is one envelope ``{event, instance, data, destination, date_time,
sender, server_url, apikey}``. The event name arrives dotted (``messages.upsert``), but
integrators also forward it in the UPPER_SNAKE form of Evolution's event filter
(``MESSAGES_UPSERT``) or the kebab suffix of "webhook by events" URLs
(``messages-upsert``): all three resolve to one handler through :func:`_event_key`.

``data`` is an object for most events and a list for some (contacts, groups), and which
one depends on the Evolution version, so every handler takes one item and the dispatcher
walks either shape. Message content is WhatsApp-Web protobuf JSON, mapped by the table
in :mod:`wacanon.providers.wa_web` that the Baileys normalizer shares.

Facts worth knowing (see the research notes):

* ``sender`` is the instance's OWN number, never the customer's.
* ``date_time`` is the server's local time labelled ``Z``: never a time here; it only tells
  apart repeated group-participant, group-update and connection events in their identity.
* Evolution 2.3 copies ``remoteJid`` into ``participant`` of ``messages.update`` and,
  lacking a status, reports ``DELETED``; the latest code reports ``SERVER_ACK`` instead.
* ``messages.edited`` carries only the ``protocolMessage``, whose key is seen from the
  author's side: when a customer edits, ``remoteJid`` is our own number and ``fromMe``
  is true (evolution-api issues #1367, #1647).
"""

from __future__ import annotations

import dataclasses
import functools
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, NamedTuple

import msgspec
import pydantic

from wacanon.canonical.ids import (
    MalformedId,
    Person,
    checked_group,
    is_group_jid,
    is_unroutable_jid,
    lenient_person,
    person_from_jids,
    phone_digits,
    phone_of,
)
from wacanon.providers.common import (
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
from wacanon.providers.evolution_types import (
    GROUP_CHANGE_FIELDS,
    CallItem,
    ConnectionItem,
    ContactItem,
    EditedItem,
    Envelope,
    GroupMember,
    GroupMeta,
    MemberData,
    ParticipantsUpdate,
    RawEnvelope,
    UpdateItem,
    UpsertItem,
)
from wacanon.providers.wa_web import (
    PROTOCOL_MESSAGE_EDIT,
    PROTOCOL_REVOKE,
    PROTOCOL_TYPES,
    Content,
    ContextInfo,
    KeyParties,
    LongLike,
    MessageKey,
    content_path,
    enum_value,
    key_parties,
    long_value,
    map_content,
)

PROVIDER: Final = "evolution"

# ------------------------------------------------------------------ payload context


@dataclass(slots=True)
class _Payload:
    """What every item of one webhook shares.

    The envelope's ``date_time`` is parsed only when an event needs it (a message has a
    timestamp of its own), hence :meth:`sent_at` and :meth:`sent_iso`.
    """

    builder: EventBuilder
    account: str
    event: str  # the dotted provider event name
    date_time: str | None  # the envelope's server time, as sent
    own: str | None  # the instance's own phone digits (envelope ``sender``)
    _sent_at: datetime | None = None

    def sent_at(self) -> datetime:
        """When an event without a timestamp of its own happened: the time of receipt.

        Not ``date_time``: Evolution writes the server's *local* time there with a ``Z``
        (the official image runs in America/Sao_Paulo), hours off from the truth.
        """
        return self.builder.ctx.received_at

    def sent_iso(self) -> str | None:
        """``date_time`` as sent (normalized), for identities only: stable across retries."""
        if self._sent_at is None:
            self._sent_at = iso_time(self.date_time, self.builder.ctx.received_at)
        sent_at = self._sent_at
        if sent_at is self.builder.ctx.received_at or isinstance(sent_at, StandIn):
            return None  # never the time of receipt: identities must survive redelivery
        return sent_at.isoformat()


#: Maps one item already typed as its event's struct (the route's ``model``).
Handler = Callable[[_Payload, Any, str, NormalizeResult], None]


def _fail(out: NormalizeResult, p: _Payload, path: str, message: str) -> None:
    out.errors.append(NormalizeError(path=path, message=message, provider_event=p.event))


def _typed_fail(out: NormalizeResult, p: _Payload, error: NormalizeError) -> None:
    out.errors.append(dataclasses.replace(error, provider_event=p.event))


def _emit(
    out: NormalizeResult,
    p: _Payload,
    path: str,
    *,
    event_type: str,
    identity: tuple[str | None, ...],
    occurred_at: datetime,
    provider_message_id: str | None,
    actor: dict[str, Any],
    chat: dict[str, Any],
    **body: dict[str, Any],
) -> None:
    """Build one event; a value the schema refuses becomes an error at the item's path."""
    try:
        event = p.builder.build(
            account=p.account,
            event_type=event_type,
            identity=identity,
            occurred_at=occurred_at,
            provider_event=p.event,
            provider_message_id=provider_message_id,
            actor=actor,
            chat=chat,
            **body,
        )
    except pydantic.ValidationError as exc:
        _fail(out, p, path, f"not a valid canonical event: {exc.errors()[0]['msg']}")
    else:
        out.events.append(event)


def _timestamp(value: LongLike, p: _Payload) -> datetime:
    """Seconds, milliseconds, numeric strings and Long objects; implausible → the
    envelope's time (read only then: :data:`_NO_TIME` marks unix_time's fallback)."""
    number = value if type(value) is int else long_value(value)  # JSON numbers: the usual
    if number is not None and 0 < number < 10**14:
        when = unix_time(number, _NO_TIME)
        if not isinstance(when, StandIn):
            return when
    if number is None and value is None:
        return p.sent_at()
    return stand_in(p.sent_at())


_NO_TIME: Final = datetime.min


def _business(p: _Payload) -> dict[str, Any]:
    return {"role": "business", "wa_id": p.own}


def _display_name(name: str | None, person: Person) -> str | None:
    """Evolution fills a missing push name with the JID's user part: that is no name."""
    if not name or name in (person.phone, person.lid):
        return None
    return name


def _actor(p: _Payload, parties: KeyParties, from_me: bool, name: str | None) -> dict[str, Any]:
    if from_me:
        return _business(p)  # never Evolution's literal "Você"
    return actor_dict(parties.sender, "customer", display_name=_display_name(name, parties.sender))


def _chat(parties: KeyParties) -> dict[str, Any]:
    if parties.group_id is not None:
        return group_chat(checked_group(parties.group_id))
    return private_chat(parties.customer)


def _direction(from_me: bool) -> str:
    return "outbound" if from_me else "inbound"


#: A new message's event type, by ``fromMe``.
_MESSAGE_EVENTS = {False: "whatsapp.message.inbound", True: "whatsapp.message.outbound"}


# ------------------------------------------------------------------ message events


class _Origin(NamedTuple):
    """Where a message-derived event came from: its key's parties and its own id."""

    parties: KeyParties
    from_me: bool
    own_id: str | None  # the id of the message that carried it (reaction / edit / revoke)
    occurred_at: datetime
    push_name: str | None = None


def _on_message(force_outbound: bool) -> Handler:
    """``messages.upsert`` and ``send.message`` (always ours) share one mapping."""

    def handle(p: _Payload, data: UpsertItem, path: str, out: NormalizeResult) -> None:
        key = data.key
        if not key.id:
            _fail(out, p, f"{path}.key.id", "message without an id")
            return
        if is_unroutable_jid(key.remoteJid) or not data.message:
            out.ignored += 1  # stories, channels, CIPHERTEXT stubs, empty content
            return
        content = _map(out, p, data.message, path, ".message")
        if content is None:
            return
        parties = key_parties(key, participant=data.participant)
        origin = _Origin(
            parties=parties,
            from_me=parties.from_me or force_outbound,
            own_id=key.id,
            occurred_at=_timestamp(data.messageTimestamp, p),
            push_name=data.pushName,
        )
        if content.kind == "message":
            _new_message(p, out, path, origin, content, data.contextInfo)
        else:
            _CONTENT_EVENTS[content.kind](p, out, f"{path}.message", origin, content)

    return handle


def _map(
    out: NormalizeResult, p: _Payload, message: dict[str, Any], path: str, field: str
) -> Content | None:
    """``wa_web.map_content`` with a mistyped field turned into an error at its path
    (``path`` + ``field`` + where the content sits, spelled out only on error)."""
    try:
        return map_content(message)
    except msgspec.ValidationError as exc:
        text = str(exc)
        reason, sep, where = text.rpartition(" - at `$")
        at = f"{path}{field}{content_path(message)}{where.rstrip('`') if sep else ''}"
        _fail(out, p, at, reason if sep else text)
        return None


def _new_message(
    p: _Payload,
    out: NormalizeResult,
    path: str,
    origin: _Origin,
    content: Content,
    context: ContextInfo | None,
) -> None:
    message = {
        "id": origin.own_id,
        "direction": _direction(origin.from_me),
        **content.message,
        "provider_type": content.provider_type,
    }
    if context is not None:
        _context_fallback(message, context)
    _emit(
        out,
        p,
        path,
        event_type=_MESSAGE_EVENTS[origin.from_me],
        identity=("message", origin.own_id),
        occurred_at=origin.occurred_at,
        provider_message_id=origin.own_id,
        actor=_actor(p, origin.parties, origin.from_me, origin.push_name),
        chat=_chat(origin.parties),
        message=message,
    )


def _context_fallback(message: dict[str, Any], context: ContextInfo) -> None:
    """Evolution 2.3 lifts the quote context out of the content into ``data.contextInfo``."""
    if not message.get("reply_to") and context.stanzaId:
        message["reply_to"] = context.stanzaId
    if not message.get("forwarded") and context.isForwarded:
        message["forwarded"] = True
        message["frequently_forwarded"] = (context.forwardingScore or 0) >= 5
    if not message.get("mentions") and context.mentionedJid:
        found = (lenient_person(jid).wa_id for jid in context.mentionedJid)
        message["mentions"] = [m for m in found if m]


def _reaction(p: _Payload, out: NormalizeResult, path: str, o: _Origin, c: Content) -> None:
    target = c.target.id if c.target is not None else None
    if not target:
        _fail(out, p, f"{path}.reactionMessage.key.id", "reaction without a target message id")
        return
    emoji = c.emoji or ""
    reactor = "business" if o.from_me else o.parties.sender.wa_id
    _emit(
        out,
        p,
        path,
        event_type="whatsapp.message.reaction",
        identity=("reaction", target, reactor, emoji),
        occurred_at=o.occurred_at,
        provider_message_id=o.own_id or target,
        actor=_actor(p, o.parties, o.from_me, o.push_name),
        chat=_chat(o.parties),
        message={
            "id": o.own_id or target,
            "direction": _direction(o.from_me),
            "type": "reaction",
            "reaction": {"emoji": emoji, "message_id": target},
            "provider_type": c.provider_type,
        },
    )


def _edit(p: _Payload, out: NormalizeResult, path: str, o: _Origin, c: Content) -> None:
    target = c.target.id if c.target is not None else None
    if not target:
        _fail(out, p, f"{path}.protocolMessage.key.id", "edit without a target message id")
        return
    _edited(p, out, path, o, target, c)


def _edited(
    p: _Payload, out: NormalizeResult, path: str, o: _Origin, target: str, new: Content
) -> None:
    """One edit, keyed by (target, new content) so every report of it is one fact."""
    new_type = new.message.get("type", "unsupported")
    new_text = new.message.get("text")
    message = {
        **new.message,
        "id": o.own_id or target,
        "direction": _direction(o.from_me),
        "target_id": target,
        "provider_type": new.provider_type,
    }
    _emit(
        out,
        p,
        path,
        event_type="whatsapp.message.edited",
        identity=edit_identity(target, new_type, new_text),
        occurred_at=o.occurred_at,
        provider_message_id=o.own_id or target,
        actor=_actor(p, o.parties, o.from_me, o.push_name),
        chat=_chat(o.parties),
        message=message,
    )


def _revoke(p: _Payload, out: NormalizeResult, path: str, o: _Origin, c: Content) -> None:
    target = c.target.id if c.target is not None else None
    if not target:
        _fail(out, p, f"{path}.protocolMessage.key.id", "revoke without a target message id")
        return
    _deleted(p, out, path, o, target)


def _deleted(p: _Payload, out: NormalizeResult, path: str, o: _Origin, target: str) -> None:
    """Delete for everyone, keyed by (target, scope): the upsert and messages.delete agree."""
    _emit(
        out,
        p,
        path,
        event_type="whatsapp.message.deleted",
        identity=("delete", target, "everyone"),
        occurred_at=o.occurred_at,
        provider_message_id=o.own_id or target,
        actor=_actor(p, o.parties, o.from_me, o.push_name),
        chat=_chat(o.parties),
        message={
            "id": o.own_id or target,
            "direction": _direction(o.from_me),
            "type": "system",
            "target_id": target,
            "delete_scope": "everyone",
        },
    )


def _ignore_content(p: _Payload, out: NormalizeResult, path: str, o: _Origin, c: Content) -> None:
    out.ignored += 1


_CONTENT_EVENTS: dict[str, Callable[[_Payload, NormalizeResult, str, _Origin, Content], None]] = {
    "reaction": _reaction,
    "edit": _edit,
    "revoke": _revoke,
    "ignored": _ignore_content,
}


# ------------------------------------------------------------------ statuses and changes

_STATUS_NAMES = {
    "ERROR": "failed",
    "PENDING": "queued",
    "SERVER_ACK": "sent",
    "DELIVERY_ACK": "delivered",
    "READ": "read",
    "PLAYED": "played",
}
_STATUS_NUMBERS = {0: "failed", 1: "queued", 2: "sent", 3: "delivered", 4: "read", 5: "played"}
#: Statuses that describe our own sending, so a system actor reports them.
_SYSTEM_STATUSES = frozenset({"queued", "sent", "failed"})


def _status_value(raw: int | str) -> str | None:
    if isinstance(raw, int):
        return _STATUS_NUMBERS.get(raw)
    text = raw.strip().upper()
    if text.isdigit():
        return _STATUS_NUMBERS.get(int(text))
    return _STATUS_NAMES.get(text)


def _on_update(p: _Payload, data: UpdateItem, path: str, out: NormalizeResult) -> None:
    """``messages.update``: a receipt, or Evolution's vehicle for edits and poll votes."""
    message_id = data.keyId or data.id
    if not message_id:
        _fail(out, p, f"{path}.keyId", "status update without a message id")
        return
    if is_unroutable_jid(data.remoteJid) or data.pollUpdates:
        out.ignored += 1
        return
    if data.participant == data.remoteJid:  # Evolution 2.3 copies remoteJid here
        data = msgspec.structs.replace(data, participant=None)
    parties = key_parties(data)
    if data.message:
        _update_message(p, out, path, data, message_id, parties)
        return
    _status(p, out, path, data, message_id, parties)


def _update_message(
    p: _Payload,
    out: NormalizeResult,
    path: str,
    data: UpdateItem,
    message_id: str,
    parties: KeyParties,
) -> None:
    """An update carrying content is an edit of ``keyId`` (``{editedMessage: {message}}``)."""
    content = _map(out, p, data.message or {}, path, ".message")
    if content is None:
        return
    origin = _Origin(parties=parties, from_me=parties.from_me, own_id=None, occurred_at=p.sent_at())
    if content.kind == "message":
        _edited(p, out, path, origin, message_id, content)
    else:
        _CONTENT_EVENTS[content.kind](p, out, f"{path}.message", origin, content)


def _status(
    p: _Payload,
    out: NormalizeResult,
    path: str,
    data: UpdateItem,
    message_id: str,
    parties: KeyParties,
) -> None:
    if data.status is None:
        out.ignored += 1  # the spec's edge rule: no status, no status event
        return
    if isinstance(data.status, str) and data.status.strip().upper() == "DELETED":
        out.ignored += 1  # Evolution 2.3's fallback for edits and poll votes
        return
    value = _status_value(data.status)
    if value is None:
        _fail(out, p, f"{path}.status", f"unknown message status {data.status!r}")
        return
    if not parties.from_me and value in ("queued", "sent"):
        out.ignored += 1  # the latest code's SERVER_ACK default; we never send inbound messages
        return
    # A group receipt names the member who received or read our message; when the business
    # read a member's message, the key's participant is that message's author, not a reader.
    participant = parties.sender.wa_id if parties.is_group and parties.from_me else None
    recipient = _recipient(parties)
    _emit(
        out,
        p,
        path,
        event_type=f"whatsapp.message.status.{value}",
        identity=("status", message_id, value, participant),
        occurred_at=p.sent_at(),
        provider_message_id=message_id,
        actor=_status_actor(p, parties, value, recipient),
        chat=_chat(parties),
        status={
            "value": value,
            "message_id": message_id,
            "recipient_wa_id": recipient.wa_id if parties.from_me else None,
            "participant": participant,
        },
    )


def _recipient(parties: KeyParties) -> Person:
    return parties.sender if parties.is_group else parties.customer


def _status_actor(
    p: _Payload, parties: KeyParties, value: str, recipient: Person
) -> dict[str, Any]:
    """Sending steps are the system's; a receipt is the reader's (the business for inbound)."""
    if value in _SYSTEM_STATUSES:
        return dict(SYSTEM_ACTOR)
    if not parties.from_me:
        return _business(p)
    if recipient.wa_id is None:
        return dict(SYSTEM_ACTOR)
    return actor_dict(recipient, "customer")


def _on_delete(p: _Payload, key: MessageKey, path: str, out: NormalizeResult) -> None:
    """``messages.delete``: the revoked message's key (latest adds ``status: DELETED``)."""
    if not key.id:
        _fail(out, p, f"{path}.id", "delete without a message id")
        return
    if is_unroutable_jid(key.remoteJid):
        out.ignored += 1
        return
    parties = key_parties(key)
    origin = _Origin(parties=parties, from_me=parties.from_me, own_id=None, occurred_at=p.sent_at())
    _deleted(p, out, path, origin, key.id)


def _on_edited(p: _Payload, data: EditedItem, path: str, out: NormalizeResult) -> None:
    """``messages.edited``: ANY protocolMessage; only edits (14) and revokes (0) count."""
    kind = enum_value(data.type, PROTOCOL_TYPES)
    if kind == PROTOCOL_MESSAGE_EDIT and data.editedMessage:
        content = _map(out, p, data.editedMessage, path, ".editedMessage")
    elif data.type is None and data.message:  # the whatsapp-web.js channel's shape
        content = _map(out, p, data.message, path, ".message")
    elif kind == PROTOCOL_REVOKE:
        content = Content("revoke", {"type": "system"})
    else:
        out.ignored += 1  # ephemeral settings, history-sync notices, key shares...
        return
    if content is not None:
        _edited_event(p, out, path, data, content)


def _edited_event(
    p: _Payload, out: NormalizeResult, path: str, data: EditedItem, content: Content
) -> None:
    key = data.key
    if key is None or not key.id:
        _fail(out, p, f"{path}.key.id", "edit or revoke without a target message id")
        return
    if is_unroutable_jid(key.remoteJid) or content.kind == "ignored":
        out.ignored += 1
        return
    parties = _author_side_parties(p, key)
    when = _timestamp(data.timestampMs or data.messageTimestamp, p)
    origin = _Origin(parties=parties, from_me=parties.from_me, own_id=None, occurred_at=when)
    if content.kind == "revoke":
        _deleted(p, out, path, origin, key.id)
    else:
        _edited(p, out, path, origin, key.id, content)


def _author_side_parties(p: _Payload, key: MessageKey) -> KeyParties:
    """A customer's edit names OUR number as ``remoteJid`` with ``fromMe`` true: the chat
    is then not in the payload at all, and the author is the (unknown) customer."""
    parties = key_parties(key)
    if parties.is_group or p.own is None or parties.customer.phone != p.own:
        return parties
    return KeyParties(group_id=None, customer=Person(), sender=Person(), from_me=False)


# ------------------------------------------------------------------ groups

_GROUP_EVENTS = {
    "add": "whatsapp.group.joined",
    "join": "whatsapp.group.joined",
    "remove": "whatsapp.group.left",
    "leave": "whatsapp.group.left",
    "promote": "whatsapp.group.updated",
    "demote": "whatsapp.group.updated",
    "modify": "whatsapp.group.updated",
}


def _member(entry: str | GroupMember, extra: dict[str, MemberData]) -> Person:
    """A participant from every JID the event gives for it (LID, phone, participantsData)."""
    if isinstance(entry, str):
        jid, phone, lid = entry, None, None
    else:
        jid, phone, lid = entry.id or "", entry.phoneNumber, entry.lid
    person = person_from_jids(jid, phone, lid)
    data = extra.get(jid)
    if data is not None and person.phone is None:
        person = person.merged(person_from_jids(_phone_jid(data.phoneNumber, person.lid)))
    return person


def _phone_jid(value: str | None, lid: str | None) -> str | None:
    """``participantsData.phoneNumber`` falls back to the bare LID digits when unresolved."""
    if not value or "@" in value:
        return value
    return None if phone_digits(value) == lid else value


def _member_data(data: list[MemberData] | None) -> dict[str, MemberData]:
    found: dict[str, MemberData] = {}
    for entry in data or ():
        jid = entry.jid.id if isinstance(entry.jid, GroupMember) else entry.jid
        if jid:
            found[jid] = entry
    return found


def _person_actor(p: _Payload, author: Person) -> dict[str, Any]:
    if author.wa_id is None:
        return dict(SYSTEM_ACTOR)
    if p.own is not None and author.phone == p.own:
        return _business(p)
    return actor_dict(author, "customer")


def _on_participants(
    p: _Payload, data: ParticipantsUpdate, path: str, out: NormalizeResult
) -> None:
    action = data.action.strip().lower()
    event_type = _GROUP_EVENTS.get(action)
    if event_type is None:
        _fail(out, p, f"{path}.action", f"unknown group action {data.action!r}")
        return
    extra = _member_data(data.participantsData)
    members = sorted({m for m in (_member(e, extra).wa_id for e in data.participants) if m})
    author = person_from_jids(data.author, data.authorPn)
    _emit(
        out,
        p,
        path,
        event_type=event_type,
        identity=("group", data.id, action, *members, None, p.sent_iso()),
        occurred_at=p.sent_at(),
        provider_message_id=None,
        actor=_person_actor(p, author),
        chat=group_chat(checked_group(data.id)),
        group={"id": data.id, "action": action, "participants": members, "author": author.wa_id},
    )


def _on_group_upsert(p: _Payload, g: GroupMeta, path: str, out: NormalizeResult) -> None:
    """``groups.upsert``: the instance joined or created a group; the whole metadata comes."""
    members = sorted({m for m in (_member(e, {}).wa_id for e in g.participants or ()) if m})
    author = (
        person_from_jids(g.author, g.authorPn) if g.author else person_from_jids(g.owner, g.ownerPn)
    )
    created = long_value(g.creation)
    changed = content_digest({"subject": g.subject, "desc": g.desc})
    _emit(
        out,
        p,
        path,
        event_type="whatsapp.group.updated",
        identity=("group", g.id, "create", *members, changed, str(created) if created else None),
        occurred_at=p.sent_at(),
        provider_message_id=None,
        actor=_person_actor(p, author),
        chat=group_chat(checked_group(g.id)),
        group=_group(g, "create", members, author),
    )


def _on_group_update(p: _Payload, g: GroupMeta, path: str, out: NormalizeResult) -> None:
    """``groups.update``: a partial metadata object holding only what changed."""
    changes = {f: getattr(g, f) for f in GROUP_CHANGE_FIELDS if getattr(g, f) is not None}
    author = person_from_jids(g.author, g.authorPn)
    _emit(
        out,
        p,
        path,
        event_type="whatsapp.group.updated",
        identity=("group", g.id, "update", content_digest(changes), p.sent_iso()),
        occurred_at=p.sent_at(),
        provider_message_id=None,
        actor=_person_actor(p, author),
        chat=group_chat(checked_group(g.id)),
        group=_group(g, "update", [], author),
    )


def _group(g: GroupMeta, action: str, members: list[str], author: Person) -> dict[str, Any]:
    return {
        "id": g.id,
        "subject": g.subject,
        "action": action,
        "participants": members,
        "description": g.desc,
        "author": author.wa_id,
    }


# ------------------------------------------------------------------ contacts, connection, calls


def _on_contact(p: _Payload, c: ContactItem, path: str, out: NormalizeResult) -> None:
    jid = c.remoteJid or c.id
    if not jid or "@" not in jid:
        _fail(out, p, f"{path}.remoteJid", "contact without a JID")
        return
    if is_group_jid(jid) or is_unroutable_jid(jid):
        out.ignored += 1
        return
    person = person_from_jids(jid)
    if person.wa_id is None:
        _fail(out, p, f"{path}.remoteJid", f"not a person's JID: {jid!r}")
        return
    name = _display_name(c.pushName, person)
    picture = c.profilePicUrl or c.profilePictureUrl
    _emit(
        out,
        p,
        path,
        event_type="whatsapp.contact.updated",
        identity=("contact", person.wa_id, content_digest({"name": name, "picture": picture})),
        occurred_at=p.sent_at(),
        provider_message_id=None,
        actor=actor_dict(person, "customer", display_name=name),
        chat=private_chat(person),
        contact={
            "wa_id": person.wa_id,
            "lid": person.lid,
            "display_name": name,
            "picture_url": picture,
        },
    )


def _on_connection(p: _Payload, c: ConnectionItem, path: str, out: NormalizeResult) -> None:
    reason = None if c.statusReason is None else str(c.statusReason)
    own = phone_of(c.wuid) or p.own
    _emit(
        out,
        p,
        path,
        event_type="whatsapp.connection.updated",
        identity=("connection", c.state, reason, p.sent_iso()),
        occurred_at=p.sent_at(),
        provider_message_id=None,
        actor=dict(SYSTEM_ACTOR),
        chat={"type": "private", "id": own or p.account},
        connection={"state": c.state, "reason": reason, "wa_id": own},
    )


def _on_call(p: _Payload, c: CallItem, path: str, out: NormalizeResult) -> None:
    caller = person_from_jids(c.from_, c.callerPn)
    status = c.status or "unknown"
    group_id = c.groupJid if c.isGroup and is_group_jid(c.groupJid) else None
    if isinstance(c.date, str) and not c.date.strip().isdigit():
        when = iso_time(c.date, p.sent_at())
    else:
        when = _timestamp(c.date, p)
    _emit(
        out,
        p,
        path,
        event_type="whatsapp.call.received",
        identity=("call", c.id, status),
        occurred_at=when,
        provider_message_id=None,
        actor=_person_actor(p, caller),
        chat=group_chat(checked_group(group_id)) if group_id else private_chat(caller),
        call={"id": c.id, "status": status, "video": bool(c.isVideo), "group": bool(c.isGroup)},
    )


# ------------------------------------------------------------------ dispatch


@dataclass(frozen=True, slots=True)
class _Route:
    """How one event's ``data`` is typed (``model``, one item) and mapped (``handle``)."""

    model: type[Any]
    handle: Handler
    #: The one-pass reader of ``data``: one item or a list of them, as Evolution sends.
    decoder: msgspec.json.Decoder[Any]


def _route(model: type[Any], handle: Handler) -> _Route:
    one_or_many = model | types.GenericAlias(list, (model,))
    return _Route(model, handle, msgspec.json.Decoder(one_or_many, strict=False))


_ROUTES: dict[str, _Route] = {
    "messages.upsert": _route(UpsertItem, _on_message(force_outbound=False)),
    "send.message": _route(UpsertItem, _on_message(force_outbound=True)),
    "messages.update": _route(UpdateItem, _on_update),
    "messages.delete": _route(MessageKey, _on_delete),
    "messages.edited": _route(EditedItem, _on_edited),
    "group-participants.update": _route(ParticipantsUpdate, _on_participants),
    "groups.upsert": _route(GroupMeta, _on_group_upsert),
    "groups.update": _route(GroupMeta, _on_group_update),
    "contacts.upsert": _route(ContactItem, _on_contact),
    "contacts.update": _route(ContactItem, _on_contact),
    "connection.update": _route(ConnectionItem, _on_connection),
    "call": _route(CallItem, _on_call),
}

#: Events with nothing canonical in them (QR codes, presence, chat lists, history sync...).
_IGNORED_EVENTS = frozenset(
    {
        "application.startup",
        "instance.create",
        "instance.delete",
        "remove.instance",
        "logout.instance",
        "status.instance",
        "qrcode.updated",
        "presence.update",
        "messages.set",
        "messaging-history.set",
        "contacts.set",
        "chats.set",
        "chats.upsert",
        "chats.update",
        "chats.delete",
        "labels.edit",
        "labels.association",
        "typebot.start",
        "typebot.change-status",
        "creds.update",
    }
)


@functools.lru_cache(maxsize=256)
def _own_number(sender: str | None) -> str | None:
    """The instance's own number; the same few ``sender`` values repeat in every webhook."""
    return phone_of(sender)


def _event_key(name: str) -> str:
    """``messages.upsert``, ``MESSAGES_UPSERT`` and ``messages-upsert`` are one event."""
    return name.strip().lower().replace(".", "_").replace("-", "_")


#: Every spelling's key, and the dotted names themselves (the usual spelling, found as is).
_EVENT_NAMES: dict[str, str] = {
    **{_event_key(n): n for n in (*_ROUTES, *_IGNORED_EVENTS)},
    **{n: n for n in (*_ROUTES, *_IGNORED_EVENTS)},
}


def _event_name(name: str) -> str | None:
    return _EVENT_NAMES.get(name) or _EVENT_NAMES.get(_event_key(name))


def _items(data: Any, path: str) -> Iterator[tuple[Any, str]]:
    """One item for an object, each element for a list (Evolution sends both, by version)."""
    if isinstance(data, list):
        for index, item in enumerate(data):
            yield item, f"{path}[{index}]"
    else:
        yield data, path


_RAW_ENVELOPE = msgspec.json.Decoder(RawEnvelope, strict=False)

#: What the one-pass reader gives up on; the tolerant reader then says what is wrong.
_UNREADABLE = (msgspec.DecodeError, RecursionError, UnicodeError)


def normalize(body: bytes | str, ctx: NormalizeContext) -> NormalizeResult:
    """Normalize one Evolution API webhook body; never raises for bad data.

    A well-formed body is read in one typed pass, envelope and items straight into their
    structs. A body that pass refuses (invalid JSON, a mistyped item, an event handled
    without items) is read again by :func:`_read_tolerant`, item by item, which names
    the path that broke while the other items still give their events. Both feed the
    same handlers, so they give the same events.
    """
    try:
        envelope = _RAW_ENVELOPE.decode(body)
        event = _event_name(envelope.event)
        route = _ROUTES.get(event) if event is not None else None
        data = route.decoder.decode(envelope.data) if route is not None else None
    except _UNREADABLE:
        return _read_tolerant(body, ctx)
    if route is None or event is None:  # unknown or ignored events: told apart there
        return _read_tolerant(body, ctx)
    out = NormalizeResult()
    payload = _payload(envelope, event, ctx, out)
    if payload is not None:
        if isinstance(data, list):
            for index, item in enumerate(data):
                _handle(route, payload, item, f"$.data[{index}]", out)
        else:
            _handle(route, payload, data, "$.data", out)
    return _finished(out)


def _handle(route: _Route, payload: _Payload, item: Any, path: str, out: NormalizeResult) -> None:
    """One item through its handler; an item naming its chat or author by a malformed JID
    is an error at that JID's path, and gives no event."""
    before = len(out.events)
    try:
        route.handle(payload, item, path, out)
    except MalformedId as exc:
        del out.events[before:]
        out.errors.append(malformed_id_error(exc, item, path, payload.event))


def _read_tolerant(body: bytes | str, ctx: NormalizeContext) -> NormalizeResult:
    """Decode to plain values, then type the envelope and each item alone."""
    raw = decode_body(body)
    if isinstance(raw, NormalizeError):
        return NormalizeResult(errors=[raw])
    envelope = convert(raw, Envelope, "$")
    if isinstance(envelope, NormalizeError):
        return NormalizeResult(errors=[envelope])
    event = _event_name(envelope.event)
    if event is None:
        message = f"unknown Evolution event {envelope.event!r}"
        return NormalizeResult(errors=[NormalizeError("$.event", message, envelope.event)])
    if event in _IGNORED_EVENTS:
        return NormalizeResult(ignored=1)
    out = NormalizeResult()
    payload = _payload(envelope, event, ctx, out)
    if payload is None:
        return out
    if not isinstance(envelope.data, dict | list):
        message = "data must be an object or a list of objects"
        out.errors.append(NormalizeError("$.data", message, event))
        return out
    route = _ROUTES[event]
    for item, path in _items(envelope.data, "$.data"):
        typed = convert(item, route.model, path)
        if isinstance(typed, NormalizeError):
            _typed_fail(out, payload, typed)
        else:
            _handle(route, payload, typed, path, out)
    return _finished(out)


def _payload(
    envelope: Envelope | RawEnvelope, event: str, ctx: NormalizeContext, out: NormalizeResult
) -> _Payload | None:
    """What the items share; None (and an error) when no account id is known."""
    builder = EventBuilder(PROVIDER, ctx)
    account = builder.account(envelope.instance)
    if account is None:
        message = "no account id in payload; pass --account"
        out.errors.append(NormalizeError("$.instance", message, event))
        return None
    date_time = envelope.date_time if isinstance(envelope.date_time, str) else None
    return _Payload(builder, account, event, date_time, _own_number(envelope.sender))


def _finished(out: NormalizeResult) -> NormalizeResult:
    if not out.events and not out.errors and not out.ignored:
        out.ignored = 1  # an empty batch: nothing canonical, and nothing wrong
    return out
