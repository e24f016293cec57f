"""Meta WhatsApp Cloud API webhooks → canonical events.

One POST is ``{"object", "entry": [{"id", "changes": [{"field", "value"}]}]}`` and Meta
batches freely (up to 1000 updates): several entries, several changes, several
messages / statuses / echoes / group updates per ``value``.

Two roads in, one mapping. A well-formed POST is typed whole in one decoder pass
(:class:`~wacanon.providers.cloud_api_types.TypedEnvelope`), the hot path. Anything that
pass refuses is read again level by level, each item typed on its own
(:func:`~wacanon.providers.common.convert`), so one malformed item becomes one
:class:`NormalizeError` with its full path and its neighbours still give events. Both
roads hand typed items to the same functions, and paths are formatted only for items
that are reported.

Dispatch is by table twice: ``changes[].field`` picks a change handler
(:data:`_FIELDS`; any other field carries nothing canonical and counts as ignored, one
per change), and a message's ``type`` picks a content mapper (:data:`_CONTENT`; an
unknown type becomes ``unsupported`` with ``provider_type`` set, never an error).

Identity: a person is known by the phone digits (``from`` / ``wa_id`` /
``recipient_id`` / ``to``), by the business-scoped user id (BSUID: ``from_user_id`` /
``user_id`` / ``recipient_user_id`` / ``to_user_id``), or both. Meta omits the phone of
username users since 2026, so ``wa_id`` falls back to ``bsuid:<BSUID>``
(:class:`~wacanon.canonical.ids.Person`). ``value.contacts`` is joined to items by phone
or BSUID, never by index (aggregated group statuses carry several contacts).

Decisions the research left open (see ``tests/providers/test_cloud_api.py``):

- ``request_welcome`` (the customer opened the chat for the first time) is an inbound
  ``system`` message with ``system.kind == "request_welcome"``: it names the customer and
  starts a conversation, so it is worth an event.
- ``edit`` / ``revoke`` (coexistence numbers) → ``whatsapp.message.edited`` / ``deleted``
  (a revoke is a delete for everyone).
- A ``context.referred_product`` (product inquiry) has no field of its own in schema 1.0;
  it goes to ``message.referral`` with ``source_type "product"`` and ``source_id`` = the
  product's retailer id.
- Status ``deleted`` (legacy On-Prem) and unknown status values are ignored.
- ``value.errors`` (Meta's own errors: a rate limit, an unknown message type) are facts
  Meta reports, not payloads we failed to read: an ``unsupported`` message of the same
  change carries them in ``message.errors``; a value with nothing else counts as ignored.
- Groups: participants joining / leaving, group creation and subject / description
  changes become group events; join requests, deletions, suspensions and failed
  business operations are ignored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import msgspec
import pydantic

from wacanon.canonical.ids import Person, phone_digits
from wacanon.providers.cloud_api_types import (
    CardIn,
    CardName,
    Change,
    ContactIn,
    Content,
    ContextIn,
    Entry,
    Envelope,
    ErrorIn,
    GroupIn,
    GroupTextIn,
    IdChange,
    Ident,
    InteractiveIn,
    MediaIn,
    MessageIn,
    Metadata,
    NfmReplyIn,
    Number,
    ParticipantIn,
    Profile,
    ReferralIn,
    ReplyIn,
    Stamp,
    StatusIn,
    SystemIn,
    TypedEnvelope,
    TypedValue,
    UserIdUpdateIn,
    Value,
)
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
    private_chat,
    unix_time,
)

#: ``CC.rest`` (``BR.1502576394655843``): a BSUID where a phone was expected is taken as one.
_BSUID = re.compile(r"^[A-Z]{2}\.")


# ------------------------------------------------------------------ per-change state


class _Contacts:
    """``value.contacts`` indexed by phone digits and by BSUID (the first entry wins)."""

    __slots__ = ("by_key", "only")

    def __init__(self, contacts: list[ContactIn]) -> None:
        self.by_key: dict[str, ContactIn] = {}
        for contact in contacts:
            phone = _digits(contact.wa_id)
            if phone:
                self.by_key.setdefault(phone, contact)
            if contact.user_id:
                self.by_key.setdefault(contact.user_id, contact)
        #: With a single contact, an item that names nobody is taken to be about it.
        self.only = contacts[0] if len(contacts) == 1 else None

    def resolve(self, phone_or_id: str | None, user_id: str | None) -> tuple[Person, ContactIn]:
        """A person from an item's own ids, completed by its contact entry.

        With no id at all on the item, a lone contact is taken as the person (Meta's
        contact-request reply carries neither ``from`` nor ``from_user_id``).
        """
        phone, bsuid = _split_id(phone_or_id)
        user_id = user_id or bsuid
        found = self.by_key.get(phone) if phone else None
        if found is None and user_id:
            found = self.by_key.get(user_id)
        if found is None and not phone and not user_id:
            found = self.only
        contact = found or _NO_CONTACT
        return Person(
            phone=phone or _digits(contact.wa_id), user_id=user_id or contact.user_id
        ), contact


_NO_CONTACT = ContactIn()
_NO_CONTACTS = _Contacts([])

T = TypeVar("T")

#: Where an item sits in its change's ``value``: (array name, index). Its path string is
#: built only when the item is reported, so the hot path never formats one.
_At = tuple[str, int]


class _Change:
    """One ``changes[]`` item being mapped, and what its items share.

    ``typed`` says whether the value's arrays already hold Structs (the one-pass decode)
    or raw JSON still to be typed item by item (the tolerant path). Opening a change
    reads its ``contacts`` and reports its ``value.errors`` before any item is mapped,
    as they sit in the body. A plain class: positional construction of one per change
    is measurably cheaper than a dataclass called with a dozen keywords.
    """

    __slots__ = (
        "account",
        "at",
        "builder",
        "business_phone",
        "contacts",
        "field",
        "result",
        "typed",
        "value",
        "value_errors",
    )

    def __init__(
        self,
        builder: EventBuilder,
        result: NormalizeResult,
        field: str,
        at: tuple[int, int],
        account: str,
        value: Value | TypedValue,
        business_phone: str | None,
    ) -> None:
        self.builder = builder
        self.result = result
        self.field = field
        self.at = at  # (entry, change) indices, for paths built only on error
        self.account = account
        self.value = value
        self.typed = isinstance(value, TypedValue)
        self.business_phone = business_phone
        self.contacts = _index_contacts(self)
        self.value_errors = _value_errors(self)

    @property
    def path(self) -> str:
        return f"$.entry[{self.at[0]}].changes[{self.at[1]}].value"

    def item_path(self, at: _At) -> str:
        return f"{self.path}.{at[0]}[{at[1]}]"

    def error(self, path: str, message: str, provider_event: str | None = None) -> None:
        event = provider_event or self.field
        self.result.errors.append(NormalizeError(path=path, message=message, provider_event=event))

    def no_person(
        self, at: _At, field: str, given: str | None, missing: str, event: str | None = None
    ) -> None:
        """The error of an item whose person could not be named: at ``field`` when it holds
        something that is neither a phone number nor a BSUID (a masked ``55XXXXXXXXX`` is
        never cut down to ``55``), else ``missing`` at the item."""
        if given:
            reason = f"not a well-formed phone number or BSUID: {given!r}"
            self.error(f"{self.item_path(at)}.{field}", reason, event)
        else:
            self.error(self.item_path(at), missing, event)

    def items(
        self, array: str, model: type[T], provider_event: str | None = None
    ) -> Iterable[tuple[int, T]]:
        """(index, item as ``model``) for one array of the value, in order.

        Raw items are typed one at a time, lazily, so an item that does not fit is
        reported (with its path) between its neighbours' events, as it sits in the body.
        """
        found: list[Any] = getattr(self.value, array) or []
        if self.typed:
            return enumerate(found)
        return self._typed_each(found, array, model, provider_event)

    def _typed_each(
        self, raw: list[Any], array: str, model: type[T], provider_event: str | None
    ) -> Iterator[tuple[int, T]]:
        for k, item in enumerate(raw):
            typed = convert(item, model, self.item_path((array, k)))
            if isinstance(typed, NormalizeError):
                self.error(typed.path, typed.message, provider_event)
                continue
            yield k, typed

    def emit(
        self,
        at: _At,
        provider_event: str,
        *,
        event_type: str,
        identity: tuple[str | None, ...],
        occurred_at: datetime,
        provider_message_id: str | None,
        actor: Mapping[str, Any],
        chat: Mapping[str, Any],
        message: dict[str, Any] | None = None,
        status: dict[str, Any] | None = None,
        group: dict[str, Any] | None = None,
        contact: dict[str, Any] | None = None,
    ) -> None:
        """Build one event; a value the schema refuses is an error of this item, not a crash.

        Every part is passed by name, never re-packed with ``**``: merging keyword dicts
        twice per event cost more than the rest of mapping a text message. The body
        objects an event does not have stay None, which the builder leaves out.
        """
        try:
            event = self.builder.build(
                account=self.account,
                provider_event=provider_event,
                event_type=event_type,
                identity=identity,
                occurred_at=occurred_at,
                provider_message_id=provider_message_id,
                actor=actor,
                chat=chat,
                message=message,
                status=status,
                group=group,
                contact=contact,
            )
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            reason = f"event fails the schema at {where}: {first['msg']}"
            self.error(self.item_path(at), reason, provider_event)
            return
        self.result.events.append(event)


@dataclass(slots=True)
class _Parties:
    """Who sent a message and in which chat; ``reactor`` keys reactions."""

    direction: str
    actor: dict[str, Any]
    chat: dict[str, Any]
    reactor: str


# ------------------------------------------------------------------ small helpers


def _digits(text: str | None) -> str | None:
    """Phone digits (no ``+``, spaces or dashes); Meta's ids are already bare digits."""
    if not text:
        return None
    return phone_digits(text)


def _split_id(text: str | None) -> tuple[str | None, str | None]:
    """(phone digits, BSUID) from a phone field; a BSUID there is taken as a BSUID."""
    if not text:
        return None, None
    if text.isdigit():  # the hot path: Meta's phone ids are bare digits
        return text, None
    if _BSUID.match(text):
        return None, text
    return _digits(text), None


def _text_id(value: Ident) -> str | None:
    return None if value is None else str(value)


def _number(value: Number) -> float | None:
    """A JSON number or numeric string; NaN, infinities and junk become None."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _provider_error(e: ErrorIn) -> dict[str, str | None]:
    detail = (e.error_data.details if e.error_data else None) or e.details or e.message
    return {"code": _text_id(e.code), "title": e.title, "detail": detail}


def _errors(items: Iterable[ErrorIn] | None) -> list[dict[str, str | None]]:
    return [_provider_error(e) for e in items or ()]


def _business_actor(phone: str | None) -> dict[str, Any]:
    return {**BUSINESS_ACTOR, "wa_id": phone} if phone else dict(BUSINESS_ACTOR)


_NO_PROFILE = Profile()


def _customer_actor(person: Person, contact: ContactIn) -> dict[str, Any]:
    profile = contact.profile or _NO_PROFILE
    return actor_dict(person, "customer", display_name=profile.name, username=profile.username)


# ------------------------------------------------------------------ content mappers


def _text(c: Content) -> dict[str, Any] | None:
    return None if c.text is None else {"type": "text", "text": c.text.body}


def _media(kind: str, m: MediaIn | None) -> dict[str, Any] | None:
    if m is None:
        return None
    media = {
        "mime_type": m.mime_type,
        "media_id": _text_id(m.id),
        "url": m.url,
        "sha256": m.sha256,
        "file_name": m.filename,
        "voice": bool(m.voice),
        "animated": m.animated,
    }
    return {"type": kind, "text": m.caption or None, "media": media}


def _location(c: Content) -> dict[str, Any] | None:
    loc = c.location
    if loc is None:
        return None
    place = {
        "latitude": _number(loc.latitude),
        "longitude": _number(loc.longitude),
        "name": loc.name,
        "address": loc.address,
        "url": loc.url,
    }
    return {"type": "location", "location": place}


def _card(card: CardIn) -> dict[str, Any]:
    """A shared contact card; phones stay as written, WhatsApp ids become digits."""
    name = card.name or CardName()
    full = name.formatted_name or " ".join(n for n in (name.first_name, name.last_name) if n)
    phones = card.phones or []
    return {
        "name": full or None,
        "phones": [p.phone for p in phones if p.phone],
        "wa_ids": [w for w in (_digits(p.wa_id) for p in phones) if w],
        "emails": [e.email for e in card.emails or () if e.email],
        "organization": card.org.company if card.org else None,
        "vcard": card.vcard,
    }


def _contacts(c: Content) -> dict[str, Any] | None:
    if c.contacts is None:
        return None
    return {"type": "contacts", "contacts": [_card(card) for card in c.contacts]}


def _reply(kind: str, reply: ReplyIn | None) -> dict[str, Any]:
    r = reply or ReplyIn()
    return {"kind": kind, "id": r.id, "title": r.title, "description": r.description}


def _nfm(i: InteractiveIn) -> dict[str, Any]:
    r = i.nfm_reply or NfmReplyIn()
    return {"kind": "nfm_reply", "id": r.name, "title": r.body, "response_json": r.response_json}


def _call_permission(i: InteractiveIn) -> dict[str, Any]:
    response = i.call_permission_reply.response if i.call_permission_reply else None
    return {"kind": "call_permission_reply", "id": response}


_INTERACTIVE: dict[str, Callable[[InteractiveIn], dict[str, Any]]] = {
    "button_reply": lambda i: _reply("button_reply", i.button_reply),
    "list_reply": lambda i: _reply("list_reply", i.list_reply),
    "nfm_reply": _nfm,
    "call_permission_reply": _call_permission,
}


def _interactive(c: Content) -> dict[str, Any] | None:
    i = c.interactive
    if i is None:
        return None
    mapper = _INTERACTIVE.get(i.type or "")
    answer = mapper(i) if mapper else {"kind": i.type or "unknown"}
    return {"type": "interactive", "text": answer.get("title"), "interactive": answer}


def _button(c: Content) -> dict[str, Any] | None:
    """A template quick-reply tap: the same canonical shape as WhatsApp Web's template replies."""
    b = c.button
    if b is None:
        return None
    answer = {"kind": "template_button_reply", "id": b.payload, "title": b.text}
    return {"type": "button", "text": b.text, "interactive": answer}


def _order(c: Content) -> dict[str, Any] | None:
    o = c.order
    if o is None:
        return None
    items = [
        {
            "product_retailer_id": p.product_retailer_id,
            "quantity": _number(p.quantity),
            "item_price": _number(p.item_price),
            "currency": p.currency,
        }
        for p in o.product_items or ()
    ]
    order = {"catalog_id": o.catalog_id, "text": o.text or None, "items": items}
    return {"type": "order", "text": o.text or None, "order": order}


def _system(c: Content) -> dict[str, Any] | None:
    s = c.system
    if s is None:
        return None
    info = {
        "kind": s.type,
        "body": s.body,
        "new_wa_id": _digits(s.wa_id or s.new_wa_id),
        "new_user_id": s.user_id,
    }
    return {"type": "system", "system": info}


def _request_welcome(c: Content) -> dict[str, Any]:
    """The customer opened the chat for the first time; there is no payload object."""
    return {"type": "system", "system": {"kind": "request_welcome"}}


_CONTENT: dict[str, Callable[[Content], dict[str, Any] | None]] = {
    "text": _text,
    "image": lambda c: _media("image", c.image),
    "video": lambda c: _media("video", c.video),
    "audio": lambda c: _media("audio", c.audio),
    "document": lambda c: _media("document", c.document),
    "sticker": lambda c: _media("sticker", c.sticker),
    "location": _location,
    "contacts": _contacts,
    "interactive": _interactive,
    "button": _button,
    "order": _order,
    "system": _system,
    "request_welcome": _request_welcome,
}


def _content(c: Content) -> dict[str, Any]:
    """Canonical fields of one content; unknown types and missing payloads are unsupported."""
    mapper = _CONTENT.get(c.type or "")
    fields = mapper(c) if mapper is not None else None
    if fields is None:
        inner = c.unsupported.type if c.unsupported else None
        return {"type": "unsupported", "provider_type": inner or c.type}
    fields["provider_type"] = c.type
    return fields


def _context(ctx: ContextIn | None) -> dict[str, Any]:
    if ctx is None:
        return {}
    frequently = bool(ctx.frequently_forwarded)
    fields: dict[str, Any] = {
        "reply_to": ctx.id,
        "forwarded": bool(ctx.forwarded) or frequently,
        "frequently_forwarded": frequently,
    }
    product = ctx.referred_product
    if product is not None:
        fields["referral"] = {"source_type": "product", "source_id": product.product_retailer_id}
    return fields


def _referral(r: ReferralIn) -> dict[str, Any]:
    return {
        "source_url": r.source_url,
        "source_id": r.source_id,
        "source_type": r.source_type,
        "headline": r.headline,
        "body": r.body,
        "media_type": r.media_type,
        "ctwa_clid": r.ctwa_clid,
    }


# ------------------------------------------------------------------ message events


#: ``direction`` → event type, spelled once rather than formatted per message.
_MESSAGE_EVENT_TYPES = {
    "inbound": "whatsapp.message.inbound",
    "outbound": "whatsapp.message.outbound",
}


def _plain(ch: _Change, m: MessageIn, who: _Parties, at: _At, event: str) -> None:
    message = _content(m)  # a fresh dict: the message grows from it
    message["id"] = m.id
    message["direction"] = who.direction
    if m.context is not None:
        message.update(_context(m.context))
    if m.referral is not None:
        message["referral"] = _referral(m.referral)
    errors = _errors(m.errors) if m.errors else []
    if not errors and message["type"] == "unsupported":
        errors = ch.value_errors  # e.g. an ``interactive`` without its payload
    message["errors"] = errors
    ch.emit(
        at,
        event,
        event_type=_MESSAGE_EVENT_TYPES[who.direction],
        identity=("message", m.id),
        occurred_at=unix_time(m.timestamp, ch.builder.ctx.received_at),
        provider_message_id=m.id,
        actor=who.actor,
        chat=who.chat,
        message=message,
    )


def _reaction(ch: _Change, m: MessageIn, who: _Parties, at: _At, event: str) -> None:
    """Keyed by (target, reactor, emoji): an empty or missing emoji means removed."""
    if m.reaction is None:
        _plain(ch, m, who, at, event)
        return
    target, emoji = m.reaction.message_id, m.reaction.emoji or ""
    message = {
        "id": m.id,
        "direction": who.direction,
        "type": "reaction",
        "reaction": {"emoji": emoji, "message_id": target},
        "provider_type": "reaction",
    }
    ch.emit(
        at,
        event,
        event_type="whatsapp.message.reaction",
        identity=("reaction", target, who.reactor, emoji),
        occurred_at=unix_time(m.timestamp, ch.builder.ctx.received_at),
        provider_message_id=m.id,
        actor=who.actor,
        chat=who.chat,
        message=message,
    )


def _edit(ch: _Change, m: MessageIn, who: _Parties, at: _At, event: str) -> None:
    """The new content, keyed by (edited message, new type and text)."""
    if m.edit is None:
        _plain(ch, m, who, at, event)
        return
    target = m.edit.original_message_id
    content = _content(m.edit.message or Content())
    message = {"id": m.id, "direction": who.direction, **content, "target_id": target}
    ch.emit(
        at,
        event,
        event_type="whatsapp.message.edited",
        identity=edit_identity(target, content["type"], content.get("text")),
        occurred_at=unix_time(m.timestamp, ch.builder.ctx.received_at),
        provider_message_id=m.id,
        actor=who.actor,
        chat=who.chat,
        message=message,
    )


def _revoke(ch: _Change, m: MessageIn, who: _Parties, at: _At, event: str) -> None:
    """A revoke removes the message for everyone."""
    if m.revoke is None:
        _plain(ch, m, who, at, event)
        return
    target = m.revoke.original_message_id
    message = {
        "id": m.id,
        "direction": who.direction,
        "type": "system",
        "target_id": target,
        "delete_scope": "everyone",
        "provider_type": "revoke",
    }
    ch.emit(
        at,
        event,
        event_type="whatsapp.message.deleted",
        identity=("delete", target, "everyone"),
        occurred_at=unix_time(m.timestamp, ch.builder.ctx.received_at),
        provider_message_id=m.id,
        actor=who.actor,
        chat=who.chat,
        message=message,
    )


_MessageMapper = Callable[[_Change, MessageIn, _Parties, _At, str], None]

#: Message types that are not new messages; every other type goes to :func:`_plain`.
_KINDS: dict[str, _MessageMapper] = {"reaction": _reaction, "edit": _edit, "revoke": _revoke}


def _emit_message(ch: _Change, m: MessageIn, who: _Parties, at: _At, event: str) -> None:
    if m.type == "system" and m.system is not None and m.system.type in _ID_CHANGES:
        _identity_change(ch, m, m.system, who, at)
        return
    _KINDS.get(m.type or "", _plain)(ch, m, who, at, event)


#: System messages that say a customer's id changed: they update the identity graph.
_ID_CHANGES = frozenset({"user_changed_number", "customer_changed_number", "user_changed_user_id"})


def _identity_change(ch: _Change, m: MessageIn, s: SystemIn, who: _Parties, at: _At) -> None:
    """ "User changed number" / "user changed BSUID" system messages: a
    ``whatsapp.contact.updated`` with the old and the new id, so routing links them."""
    old_phone = _digits(m.from_)
    new_phone = _digits(s.wa_id or s.new_wa_id) or None
    number_change = s.type != "user_changed_user_id"
    previous_user = s.previous_user_id if not number_change else None
    current_user = s.user_id or (m.from_user_id if number_change else None)
    person = Person(phone=new_phone or (None if number_change else old_phone), user_id=current_user)
    if person.wa_id is None:
        ch.error(ch.item_path(at), "identity change names no new id (system.wa_id or user_id)")
        return
    contact = {
        "wa_id": person.wa_id,
        "user_id": person.user_id,
        "previous_wa_id": old_phone if number_change and old_phone != new_phone else None,
        "previous_user_id": previous_user,
    }
    ch.emit(
        at,
        "messages",
        event_type="whatsapp.contact.updated",
        identity=("identity_change", m.id),
        occurred_at=unix_time(m.timestamp, ch.builder.ctx.received_at),
        provider_message_id=m.id,
        actor=actor_dict(person, "customer"),
        chat=private_chat(person),
        contact=contact,
    )


def _sender_user_id(m: MessageIn) -> str | None:
    """The sender's BSUID; a BSUID-change system message may name only the old one."""
    if m.from_user_id or m.from_:
        return m.from_user_id
    return m.system.previous_user_id if m.system else None


def _inbound(ch: _Change, m: MessageIn, k: int) -> None:
    at = ("messages", k)
    person, contact = ch.contacts.resolve(m.from_, _sender_user_id(m))
    if person.wa_id is None:
        missing = "message names no sender (no from, from_user_id or contact)"
        ch.no_person(at, "from", m.from_, missing, "messages")
        return
    chat = group_chat(m.group_id) if m.group_id else private_chat(person)
    who = _Parties("inbound", _customer_actor(person, contact), chat, person.wa_id)
    _emit_message(ch, m, who, at, "messages")


def _echo(ch: _Change, m: MessageIn, k: int) -> None:
    """A message the business sent from the WhatsApp Business app (coexistence)."""
    at = ("message_echoes", k)
    person, _ = ch.contacts.resolve(m.to, m.to_user_id)
    if m.group_id:
        chat = group_chat(m.group_id)
    elif person.wa_id is not None:
        chat = private_chat(person)
    else:
        ch.no_person(at, "to", m.to, "echo names no recipient (no to, to_user_id or contact)")
        return
    actor = _business_actor(_digits(m.from_) or ch.business_phone)
    _emit_message(ch, m, _Parties("outbound", actor, chat, "business"), at, ch.field)


# ------------------------------------------------------------------ status events

_STATUS_VALUES = frozenset({"queued", "sent", "delivered", "read", "played", "failed"})
#: Statuses the platform reports on its own; the others are the recipient's doing.
_SYSTEM_STATUSES = frozenset({"queued", "sent", "failed"})


def _status(ch: _Change, s: StatusIn, k: int) -> None:
    at = ("statuses", k)
    if s.status not in _STATUS_VALUES:  # ``deleted`` (legacy) and values we do not know
        ch.result.ignored += 1
        return
    participant_id = s.recipient_participant_id or s.participant_recipient_id
    in_group = s.recipient_type == "group" or bool(
        participant_id or s.recipient_participant_user_id
    )
    if in_group:
        person, contact = ch.contacts.resolve(participant_id, s.recipient_participant_user_id)
        chat = group_chat(s.recipient_id) if s.recipient_id else None
    else:
        person, contact = ch.contacts.resolve(s.recipient_id, s.recipient_user_id)
        chat = private_chat(person) if person.wa_id else None
    if chat is None:
        if in_group:
            ch.error(ch.item_path(at), "group status names no group (no recipient_id)", "statuses")
        else:
            missing = "status names no recipient (no recipient_id or recipient_user_id)"
            ch.no_person(at, "recipient_id", s.recipient_id, missing, "statuses")
        return
    by_system = s.status in _SYSTEM_STATUSES or person.wa_id is None
    status = {
        "value": s.status,
        "message_id": s.id,
        "recipient_wa_id": person.wa_id,
        "recipient_user_id": person.user_id,
        "participant": person.wa_id if in_group else None,
        "errors": _errors(s.errors),
        "conversation": s.conversation,
        "pricing": s.pricing,
    }
    ch.emit(
        at,
        "statuses",
        event_type=f"whatsapp.message.status.{s.status}",
        identity=("status", s.id, s.status, person.wa_id if in_group else None),
        occurred_at=unix_time(s.timestamp, ch.builder.ctx.received_at),
        provider_message_id=s.id,
        actor=SYSTEM_ACTOR if by_system else _customer_actor(person, contact),
        chat=chat,
        status=status,
    )


# ------------------------------------------------------------------ group events


@dataclass(frozen=True, slots=True)
class _GroupChange:
    """What one group update means canonically; None fields are not part of it."""

    event_type: str
    action: str
    participants: list[Person]
    changed: dict[str, Any] | None = None


def _participants(items: list[ParticipantIn] | None) -> list[Person]:
    people = []
    for p in items or ():
        phone, bsuid = _split_id(p.wa_id or p.input)
        person = Person(phone=phone, user_id=p.user_id or bsuid)
        if person.wa_id:
            people.append(person)
    return people


def _group_add(g: GroupIn) -> _GroupChange | None:
    people = _participants(g.added_participants)
    action = "join" if g.reason == "invite_link" else "add"
    return _GroupChange("whatsapp.group.joined", action, people) if people else None


def _group_remove(g: GroupIn) -> _GroupChange | None:
    people = _participants(g.removed_participants)
    action = "leave" if g.initiated_by == "participant" else "remove"
    return _GroupChange("whatsapp.group.left", action, people) if people else None


def _group_create(g: GroupIn) -> _GroupChange | None:
    changed = {"subject": g.subject, "description": g.description}
    return None if g.errors else _GroupChange("whatsapp.group.updated", "create", [], changed)


def _succeeded(item: GroupTextIn | None) -> str | None:
    return item.text if item is not None and item.update_successful else None


def _group_settings(g: GroupIn) -> _GroupChange | None:
    changed = {
        "subject": _succeeded(g.group_subject),
        "description": _succeeded(g.group_description),
    }
    if changed["subject"] is None and changed["description"] is None:
        return None
    return _GroupChange("whatsapp.group.updated", "modify", [], changed)


#: ``groups[].type`` → meaning; join requests, deletes and suspensions are not mapped.
_GROUP_TYPES: dict[str, Callable[[GroupIn], _GroupChange | None]] = {
    "group_participants_add": _group_add,
    "group_participants_remove": _group_remove,
    "group_create": _group_create,
    "group_settings_update": _group_settings,
}


def _group_actor(ch: _Change, g: GroupIn, people: list[Person]) -> dict[str, Any]:
    """Business for its own API operations, the participant for a join / leave of their own."""
    if g.initiated_by == "business" or g.request_id:
        return _business_actor(ch.business_phone)
    if len(people) == 1:
        return actor_dict(people[0], "customer")
    return dict(SYSTEM_ACTOR)


def _stamp_key(value: Stamp) -> str | None:
    """The provider timestamp for an identity, spelled the same whether quoted or not."""
    if value is None:
        return None
    number = _number(value)
    return str(int(number)) if number is not None else str(value)


def _group(ch: _Change, g: GroupIn, k: int) -> None:
    mapper = _GROUP_TYPES.get(g.type or "")
    found = mapper(g) if mapper is not None else None
    if found is None:
        ch.result.ignored += 1
        return
    wa_ids = sorted(p.wa_id for p in found.participants if p.wa_id)
    digest = content_digest(found.changed) if found.changed is not None else None
    changed = found.changed or {}
    group = {
        "id": g.group_id,
        "action": found.action,
        "participants": wa_ids,
        "subject": changed.get("subject"),
        "description": changed.get("description"),
    }
    ch.emit(
        ("groups", k),
        ch.field,
        event_type=found.event_type,
        identity=("group", g.group_id, found.action, *wa_ids, digest, _stamp_key(g.timestamp)),
        occurred_at=unix_time(g.timestamp, ch.builder.ctx.received_at),
        provider_message_id=None,
        actor=_group_actor(ch, g, found.participants),
        chat=group_chat(g.group_id),
        group=group,
    )


# ------------------------------------------------------------------ change handlers


def _on_messages(ch: _Change) -> None:
    """Inbound messages and statuses of the business's own sends."""
    v = ch.value
    if not v.messages and not v.statuses:
        ch.result.ignored += 1  # value-level errors only, user_actions, ...
        return
    for k, m in ch.items("messages", MessageIn, "messages"):
        _inbound(ch, m, k)
    for k, s in ch.items("statuses", StatusIn, "statuses"):
        _status(ch, s, k)


def _on_echoes(ch: _Change) -> None:
    if not ch.value.message_echoes:
        ch.result.ignored += 1
        return
    for k, m in ch.items("message_echoes", MessageIn):
        _echo(ch, m, k)


def _on_user_id_update(ch: _Change) -> None:
    """``user_id_update``: a customer's BSUID (and parent BSUID) changed; the phone number
    is there when Meta may share it."""
    if not ch.value.user_id_update:
        ch.result.ignored += 1
        return
    for k, item in ch.items("user_id_update", UserIdUpdateIn):
        at = ("user_id_update", k)
        user, parent = item.user_id or _NO_CHANGE, item.parent_user_id or _NO_CHANGE
        phone = _digits(item.wa_id)
        if item.wa_id and phone is None:
            ch.no_person(at, "wa_id", item.wa_id, "")
            continue
        person = Person(phone=phone, user_id=user.current)
        if person.wa_id is None:
            ch.error(ch.item_path(at), "user_id_update names no id (no wa_id or user_id.current)")
            continue
        contact = {
            "wa_id": person.wa_id,
            "user_id": user.current,
            "previous_user_id": user.previous,
            "parent_user_id": parent.current,
            "previous_parent_user_id": parent.previous,
        }
        ch.emit(
            at,
            ch.field,
            event_type="whatsapp.contact.updated",
            identity=(
                "user_id_update",
                phone,
                user.previous,
                user.current,
                parent.current,
                _stamp_key(item.timestamp),
            ),
            occurred_at=unix_time(item.timestamp, ch.builder.ctx.received_at),
            provider_message_id=None,
            actor=actor_dict(person, "customer"),
            chat=private_chat(person),
            contact=contact,
        )


_NO_CHANGE = IdChange()


def _on_groups(ch: _Change) -> None:
    if not ch.value.groups:
        ch.result.ignored += 1
        return
    for k, g in ch.items("groups", GroupIn):
        _group(ch, g, k)


#: ``changes[].field`` → handler; every other field carries nothing canonical.
_FIELDS: dict[str, Callable[[_Change], None]] = {
    "messages": _on_messages,
    "smb_message_echoes": _on_echoes,
    "group_lifecycle_update": _on_groups,
    "group_participants_update": _on_groups,
    "group_settings_update": _on_groups,
    "group_status_update": _on_groups,
    "user_id_update": _on_user_id_update,
}


# ------------------------------------------------------------------ one change


def _index_contacts(ch: _Change) -> _Contacts:
    contacts = ch.value.contacts
    if not contacts:
        return _NO_CONTACTS
    if ch.typed:
        return _Contacts(contacts)
    return _Contacts([contact for _, contact in ch.items("contacts", ContactIn)])


def _value_errors(ch: _Change) -> list[dict[str, str | None]]:
    """``value.errors``: Meta's own errors (a rate limit, an unknown message type).

    They are facts Meta reports, not payloads we failed to read, so they are no
    normalization error: an ``unsupported`` message of the same change carries them in
    ``message.errors``; alone, the change counts as ignored (the raw body is journaled).
    """
    if not ch.value.errors:
        return []
    return [_provider_error(e) for _, e in ch.items("errors", ErrorIn)]


_NO_METADATA = Metadata()


def _open_change(
    builder: EventBuilder,
    result: NormalizeResult,
    field: str,
    value: Value | TypedValue,
    at: tuple[int, int],
) -> _Change | None:
    """The shared state of one handled change, or None (reported) when it names no account."""
    metadata = value.metadata or _NO_METADATA
    account = builder.account(_text_id(metadata.phone_number_id))
    if account is None:
        path = f"$.entry[{at[0]}].changes[{at[1]}].value.metadata"
        result.errors.append(
            NormalizeError(path, "no account id in payload; pass --account", field)
        )
        return None
    business_phone = _digits(_text_id(metadata.display_phone_number))
    return _Change(builder, result, field, at, account, value, business_phone)


# ------------------------------------------------------------------ envelope

#: The fast path: the whole POST typed in one pass, when every item is well formed.
_TYPED = msgspec.json.Decoder(TypedEnvelope, strict=False)


def normalize(body: bytes | str, ctx: NormalizeContext) -> NormalizeResult:
    """Every entry, every change, every item of one Cloud API webhook POST, in order.

    A body the one-pass decoder refuses (anything malformed anywhere, or not JSON) is
    read again item by item, which reports each problem with its path and still maps
    the items that are fine; both roads share every mapping function below the envelope.
    """
    builder = EventBuilder("cloud_api", ctx)
    try:
        envelope = _TYPED.decode(body)
    except (msgspec.DecodeError, RecursionError, UnicodeError):
        return _normalize_tolerant(builder, body)
    result = NormalizeResult()
    for i, entry in enumerate(envelope.entry):
        for j, change in enumerate(entry.changes):
            handler = _FIELDS.get(change.field)
            if handler is None:
                result.ignored += 1
                continue
            ch = _open_change(builder, result, change.field, change.value, (i, j))
            if ch is not None:
                handler(ch)
    return result


def _normalize_tolerant(builder: EventBuilder, body: bytes | str) -> NormalizeResult:
    """Type the envelope level by level and each item on its own (see :meth:`_Change.items`)."""
    result = NormalizeResult()
    data = decode_body(body)
    if isinstance(data, NormalizeError):
        result.errors.append(data)
        return result
    envelope = convert(data, Envelope, "$")
    if isinstance(envelope, NormalizeError):
        result.errors.append(envelope)
        return result
    for i, raw_entry in enumerate(envelope.entry):
        entry = convert(raw_entry, Entry, f"$.entry[{i}]")
        if isinstance(entry, NormalizeError):
            result.errors.append(entry)
            continue
        for j, raw_change in enumerate(entry.changes):
            _tolerant_change(builder, result, raw_change, (i, j))
    return result


def _tolerant_change(
    builder: EventBuilder, result: NormalizeResult, raw: Any, at: tuple[int, int]
) -> None:
    path = f"$.entry[{at[0]}].changes[{at[1]}]"
    change = convert(raw, Change, path)
    if isinstance(change, NormalizeError):
        result.errors.append(change)
        return
    handler = _FIELDS.get(change.field)
    if handler is None:
        result.ignored += 1
        return
    value = convert(change.value, Value, f"{path}.value")
    if isinstance(value, NormalizeError):
        result.errors.append(NormalizeError(value.path, value.message, change.field))
        return
    ch = _open_change(builder, result, change.field, value, at)
    if ch is not None:
        handler(ch)
