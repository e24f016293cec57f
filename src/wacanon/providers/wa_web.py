"""WhatsApp Web message shapes shared by Evolution API and Baileys (Evolution is built on Baileys).

Both carry WhatsApp's protobuf ``WebMessageInfo`` as JSON, in three serialization flavours
that coexist in one stream: protobufjs ``toJSON`` (enums as names, 64-bit numbers as
decimal strings, bytes as base64), plain JS objects (enums and times as numbers, Long
objects ``{low, high, unsigned}``, bytes as ``{"type": "Buffer", "data": [...]}`` or
``{"0": 12, ...}``). The boundary types below accept all of them, and the mapping
functions turn one message's content into canonical fields by a table keyed by the
content's proto field name (``conversation``, ``imageMessage``, ...).
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgspec

from wacanon.canonical.ids import (
    Person,
    checked_group,
    is_group_jid,
    lenient_person,
    person_from_jids,
)

# --------------------------------------------------------------------------- scalars


class Long(msgspec.Struct, forbid_unknown_fields=False):
    """protobufjs / long.js 64-bit integer as JSON."""

    low: int = 0
    high: int = 0
    unsigned: bool = False


LongLike = int | float | str | Long | None


def long_value(value: LongLike) -> int | None:
    """Any 64-bit integer spelling as an int; None when it is no number."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Long):
        number = (value.high & 0xFFFFFFFF) * 2**32 + (value.low & 0xFFFFFFFF)
        if not value.unsigned and value.high < 0:
            number -= 2**64
        return number
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    text = value.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    return None


def enum_value(value: int | str | None, names: dict[str, int]) -> int | None:
    """A proto enum sent as its number or its name."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    text = value.strip()
    if text.isdigit():
        return int(text)
    return names.get(text.upper())


def bytes_b64(value: Any) -> str | None:
    """A bytes field (base64 text, Node Buffer JSON or Uint8Array JSON) as base64 text."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    raw: list[int] | None = None
    if isinstance(value, dict):
        data = value.get("data") if value.get("type") == "Buffer" else None
        if isinstance(data, list):
            raw = data
        elif all(k.isdigit() for k in value):
            raw = [value[k] for k in sorted(value, key=int)]
    elif isinstance(value, list):
        raw = value
    if raw is None or not all(isinstance(b, int) and 0 <= b < 256 for b in raw):
        return None
    return base64.b64encode(bytes(raw)).decode("ascii")


# ---------------------------------------------------------------------- message keys


class MessageKey(msgspec.Struct, forbid_unknown_fields=False):
    """``WAMessageKey`` with every LID / phone alternative field seen across versions.

    Baileys 6.7 put ``senderPn`` / ``senderLid`` / ``participantPn`` / ``participantLid``
    on the key; Baileys 7 uses ``remoteJidAlt`` / ``participantAlt`` whose meaning flips
    with ``addressingMode``; Evolution 2.3 adds ``previousRemoteJid`` and swaps
    ``remoteJid`` with ``remoteJidAlt``. Each value is classified by its own server.
    """

    remoteJid: str | None = None
    fromMe: bool | None = None
    id: str | None = None
    participant: str | None = None
    remoteJidAlt: str | None = None
    participantAlt: str | None = None
    senderPn: str | None = None
    senderLid: str | None = None
    participantPn: str | None = None
    participantLid: str | None = None
    previousRemoteJid: str | None = None
    addressingMode: str | None = None


class KeyParties(NamedTuple):
    """Who is on each side of a message key.

    Immutable like a frozen dataclass, but a tuple is built in a fraction of the time,
    and every message of every webhook builds one.
    """

    group_id: str | None
    customer: Person  # private chats: the other party; groups: empty
    sender: Person  # the author when not the business (groups: the participant)
    from_me: bool

    @property
    def is_group(self) -> bool:
        return self.group_id is not None


#: The customer of a group message: nobody (a Person is immutable, so one is shared).
_NOBODY = Person()


def key_parties(key: MessageKey, *, participant: str | None = None) -> KeyParties:
    """Resolve a key's chat and author, using every alternative JID it carries."""
    return _parties(
        bool(key.fromMe),
        key.remoteJid,
        key.participant or participant,
        key.participantAlt,
        key.participantPn,
        key.participantLid,
        key.senderPn,
        key.senderLid,
        key.remoteJidAlt,
        key.previousRemoteJid,
    )


@functools.lru_cache(maxsize=4096)
def _parties(
    from_me: bool,
    remote_jid: str | None,
    participant: str | None,
    participant_alt: str | None,
    participant_pn: str | None,
    participant_lid: str | None,
    sender_pn: str | None,
    sender_lid: str | None,
    remote_jid_alt: str | None,
    previous_remote_jid: str | None,
) -> KeyParties:
    """:func:`key_parties` over the key's JIDs only (not its message id), so the answer
    is pure and immutable: a conversation's messages and receipts repeat the same JIDs,
    and a bounded cache resolves them once."""
    if remote_jid and is_group_jid(remote_jid):
        checked_group(remote_jid)
        sender = person_from_jids(
            participant, participant_alt, participant_pn, participant_lid, sender_pn, sender_lid
        )
        return KeyParties(remote_jid, _NOBODY, sender, from_me)
    customer = person_from_jids(
        remote_jid, remote_jid_alt, sender_pn, sender_lid, previous_remote_jid
    )
    return KeyParties(None, customer, customer, from_me)


# ------------------------------------------------------------------ message content


class ContextInfo(msgspec.Struct, forbid_unknown_fields=False):
    stanzaId: str | None = None
    participant: str | None = None
    remoteJid: str | None = None
    mentionedJid: list[str] | None = None
    isForwarded: bool | None = None
    forwardingScore: int | None = None


class _WithContext(msgspec.Struct, forbid_unknown_fields=False):
    contextInfo: ContextInfo | None = None


class ExtendedText(_WithContext):
    text: str | None = None


class MediaContent(_WithContext):
    """Image, video, audio, document, sticker and video-note content share one shape."""

    url: str | None = None
    mimetype: str | None = None
    caption: str | None = None
    fileSha256: Any = None
    fileLength: LongLike = None
    fileName: str | None = None
    title: str | None = None
    seconds: int | None = None
    ptt: bool | None = None
    gifPlayback: bool | None = None
    isAnimated: bool | None = None
    height: int | None = None
    width: int | None = None
    directPath: str | None = None


class LocationContent(_WithContext):
    degreesLatitude: float | None = None
    degreesLongitude: float | None = None
    name: str | None = None
    address: str | None = None
    url: str | None = None
    caption: str | None = None


class ContactContent(_WithContext):
    displayName: str | None = None
    vcard: str | None = None


class ContactsArrayContent(_WithContext):
    displayName: str | None = None
    contacts: list[ContactContent] | None = None


class ReactionContent(msgspec.Struct, forbid_unknown_fields=False):
    key: MessageKey | None = None
    text: str | None = None
    senderTimestampMs: LongLike = None


class PollOption(msgspec.Struct, forbid_unknown_fields=False):
    optionName: str | None = None


class PollContent(_WithContext):
    name: str | None = None
    options: list[PollOption] | None = None
    selectableOptionsCount: int | None = None


class ProtocolContent(msgspec.Struct, forbid_unknown_fields=False):
    key: MessageKey | None = None
    type: int | str | None = None
    editedMessage: dict[str, Any] | None = None
    timestampMs: LongLike = None


class ButtonsResponse(_WithContext):
    selectedButtonId: str | None = None
    selectedDisplayText: str | None = None


class SingleSelectReply(msgspec.Struct, forbid_unknown_fields=False):
    selectedRowId: str | None = None


class ListResponse(_WithContext):
    title: str | None = None
    description: str | None = None
    singleSelectReply: SingleSelectReply | None = None


class TemplateButtonReply(_WithContext):
    selectedId: str | None = None
    selectedDisplayText: str | None = None


class NativeFlowResponse(msgspec.Struct, forbid_unknown_fields=False):
    name: str | None = None
    paramsJson: str | None = None


class InteractiveBody(msgspec.Struct, forbid_unknown_fields=False):
    text: str | None = None


class InteractiveResponse(_WithContext):
    body: InteractiveBody | None = None
    nativeFlowResponseMessage: NativeFlowResponse | None = None


class OrderContent(_WithContext):
    orderId: str | None = None
    message: str | None = None
    orderTitle: str | None = None
    itemCount: int | None = None
    totalAmount1000: LongLike = None
    totalCurrencyCode: str | None = None


class GroupInviteContent(_WithContext):
    groupJid: str | None = None
    groupName: str | None = None
    caption: str | None = None


class TextOnlyContent(_WithContext):
    """Business-sent structured messages: we keep only their visible text."""

    text: str | None = None
    contentText: str | None = None
    caption: str | None = None
    description: str | None = None
    name: str | None = None
    hydratedTemplate: dict[str, Any] | None = None


PROTOCOL_TYPES = {"REVOKE": 0, "EPHEMERAL_SETTING": 3, "MESSAGE_EDIT": 14}
PROTOCOL_REVOKE = 0
PROTOCOL_MESSAGE_EDIT = 14

#: Content keys that wrap another message: unwrap them and map what is inside.
WRAPPERS = frozenset(
    {
        "ephemeralMessage",
        "viewOnceMessage",
        "viewOnceMessageV2",
        "viewOnceMessageV2Extension",
        "documentWithCaptionMessage",
        "editedMessage",
        "deviceSentMessage",
        "botInvokeMessage",
        "groupMentionedMessage",
        "lottieStickerMessage",
        "associatedChildMessage",
    }
)

#: Keys beside the content that carry metadata, never content.
METADATA_KEYS = frozenset(
    {
        "messageContextInfo",
        "senderKeyDistributionMessage",
        "fastRatchetKeySenderKeyDistributionMessage",
        "base64",
        "mediaUrl",
        "speechToText",
    }
)

#: Content that carries nothing canonical (poll votes are end-to-end encrypted, key shares...).
IGNORED_CONTENT = frozenset(
    {
        "pollUpdateMessage",
        "keepInChatMessage",
        "pinInChatMessage",
        "encReactionMessage",
        "encEventResponseMessage",
        "secretEncryptedMessage",
        "callLogMesssage",
        "callLogMessage",
        "albumMessage",
        "messageHistoryBundle",
        "placeholderMessage",
        "requestPhoneNumberMessage",
        "peerDataOperationRequestMessage",
        "peerDataOperationRequestResponseMessage",
        "appStateSyncKeyShare",
    }
)


@dataclass(slots=True)
class Content:
    """What one message's content means, before it becomes an event.

    ``kind`` is ``message`` (a new message), ``reaction``, ``edit``, ``revoke``, or
    ``ignored`` (nothing canonical: key shares, encrypted poll votes, empty content).
    """

    kind: str
    message: dict[str, Any] = field(default_factory=dict)
    target: MessageKey | None = None
    emoji: str | None = None
    provider_type: str | None = None


def _media(c: MediaContent, *, voice: bool = False) -> dict[str, Any]:
    return {
        "mime_type": c.mimetype,
        "media_id": c.directPath,
        "url": c.url,
        "sha256": bytes_b64(c.fileSha256),
        "file_name": c.fileName,
        "size": long_value(c.fileLength),
        "voice": voice,
        "animated": c.isAnimated if c.isAnimated is not None else c.gifPlayback,
        "seconds": c.seconds,
        "width": c.width,
        "height": c.height,
    }


def _with_context(msg: dict[str, Any], ctx: ContextInfo | None) -> dict[str, Any]:
    if ctx is not None:
        msg["reply_to"] = ctx.stanzaId or None
        msg["forwarded"] = bool(ctx.isForwarded)
        msg["frequently_forwarded"] = (ctx.forwardingScore or 0) >= 5
        msg["mentions"] = [m for m in (_mention(j) for j in ctx.mentionedJid or ()) if m]
    return msg


def _mention(jid: str) -> str | None:
    return lenient_person(jid).wa_id


def _text(raw: Any) -> Content:
    return Content("message", {"type": "text", "text": raw if isinstance(raw, str) else None})


def _extended_text(raw: Any) -> Content:
    c = msgspec.convert(raw, ExtendedText, strict=False)
    return Content("message", _with_context({"type": "text", "text": c.text}, c.contextInfo))


def _media_of(kind: str, *, voice_from_ptt: bool = False) -> Callable[[Any], Content]:
    def mapper(raw: Any) -> Content:
        c = msgspec.convert(raw, MediaContent, strict=False)
        voice = bool(c.ptt) if voice_from_ptt else False
        caption = c.caption if kind != "document" else (c.caption or None)
        media = _media(c, voice=voice)
        if kind == "document" and not media["file_name"]:
            media["file_name"] = c.title
        msg = {"type": kind, "text": caption, "media": media}
        return Content("message", _with_context(msg, c.contextInfo))

    return mapper


def _location(live: bool) -> Callable[[Any], Content]:
    def mapper(raw: Any) -> Content:
        c = msgspec.convert(raw, LocationContent, strict=False)
        location = {
            "latitude": c.degreesLatitude,
            "longitude": c.degreesLongitude,
            "name": c.name,
            "address": c.address,
            "url": c.url,
            "live": live,
        }
        msg = {"type": "location", "text": c.caption, "location": location}
        return Content("message", _with_context(msg, c.contextInfo))

    return mapper


def vcard_card(display_name: str | None, vcard: str | None) -> dict[str, Any]:
    """A contact card from a vCard: names, phones (with WhatsApp ids), emails, org."""
    phones: list[str] = []
    wa_ids: list[str] = []
    emails: list[str] = []
    org: str | None = None
    name = display_name
    for line in (vcard or "").splitlines():
        head, _, value = line.partition(":")
        tag = head.split(";")[0].split(".")[-1].upper()
        if tag == "TEL":
            phones.append(value.strip())
            wa = next((p[5:] for p in head.split(";") if p.lower().startswith("waid=")), None)
            if wa:
                wa_ids.append(wa)
        elif tag == "EMAIL":
            emails.append(value.strip())
        elif tag == "ORG":
            org = value.strip().strip(";") or None
        elif tag == "FN" and not name:
            name = value.strip()
    return {
        "name": name,
        "phones": phones,
        "wa_ids": wa_ids,
        "emails": emails,
        "organization": org,
        "vcard": vcard,
    }


def _contact(raw: Any) -> Content:
    c = msgspec.convert(raw, ContactContent, strict=False)
    msg = {"type": "contacts", "contacts": [vcard_card(c.displayName, c.vcard)]}
    return Content("message", _with_context(msg, c.contextInfo))


def _contacts_array(raw: Any) -> Content:
    c = msgspec.convert(raw, ContactsArrayContent, strict=False)
    cards = [vcard_card(x.displayName, x.vcard) for x in c.contacts or ()]
    return Content("message", _with_context({"type": "contacts", "contacts": cards}, c.contextInfo))


def _reaction(raw: Any) -> Content:
    c = msgspec.convert(raw, ReactionContent, strict=False)
    return Content("reaction", {"type": "reaction"}, target=c.key, emoji=c.text or "")


def _poll(raw: Any) -> Content:
    c = msgspec.convert(raw, PollContent, strict=False)
    options = [o.optionName for o in c.options or () if o.optionName is not None]
    poll = {"name": c.name, "options": options, "selectable_count": c.selectableOptionsCount}
    msg = {"type": "poll", "text": c.name, "poll": poll}
    return Content("message", _with_context(msg, c.contextInfo))


def _protocol(raw: Any) -> Content:
    c = msgspec.convert(raw, ProtocolContent, strict=False)
    kind = enum_value(c.type, PROTOCOL_TYPES)
    if kind == PROTOCOL_REVOKE and c.key is not None:
        return Content("revoke", {"type": "system"}, target=c.key)
    if kind == PROTOCOL_MESSAGE_EDIT and c.key is not None and c.editedMessage:
        edited = map_content(c.editedMessage)
        return Content("edit", edited.message, target=c.key, provider_type=edited.provider_type)
    return Content("ignored")


def _buttons_response(raw: Any) -> Content:
    c = msgspec.convert(raw, ButtonsResponse, strict=False)
    interactive = {"kind": "button_reply", "id": c.selectedButtonId, "title": c.selectedDisplayText}
    msg = {"type": "interactive", "text": c.selectedDisplayText, "interactive": interactive}
    return Content("message", _with_context(msg, c.contextInfo))


def _list_response(raw: Any) -> Content:
    c = msgspec.convert(raw, ListResponse, strict=False)
    row = c.singleSelectReply.selectedRowId if c.singleSelectReply else None
    interactive = {"kind": "list_reply", "id": row, "title": c.title, "description": c.description}
    msg = {"type": "interactive", "text": c.title, "interactive": interactive}
    return Content("message", _with_context(msg, c.contextInfo))


def _template_button_reply(raw: Any) -> Content:
    c = msgspec.convert(raw, TemplateButtonReply, strict=False)
    msg = {
        "type": "button",
        "text": c.selectedDisplayText,
        "interactive": {
            "kind": "template_button_reply",
            "id": c.selectedId,
            "title": c.selectedDisplayText,
        },
    }
    return Content("message", _with_context(msg, c.contextInfo))


def _interactive_response(raw: Any) -> Content:
    c = msgspec.convert(raw, InteractiveResponse, strict=False)
    flow = c.nativeFlowResponseMessage
    interactive = {
        "kind": "nfm_reply",
        "id": flow.name if flow else None,
        "title": c.body.text if c.body else None,
        "response_json": flow.paramsJson if flow else None,
    }
    msg = {"type": "interactive", "text": interactive["title"], "interactive": interactive}
    return Content("message", _with_context(msg, c.contextInfo))


def _order(raw: Any) -> Content:
    c = msgspec.convert(raw, OrderContent, strict=False)
    order: dict[str, Any] = {"order_id": c.orderId, "text": c.message or c.orderTitle}
    return Content(
        "message",
        _with_context({"type": "order", "text": c.message, "order": order}, c.contextInfo),
    )


def _group_invite(raw: Any) -> Content:
    c = msgspec.convert(raw, GroupInviteContent, strict=False)
    return Content("message", _with_context({"type": "text", "text": c.caption}, c.contextInfo))


def _template_like(kind: str) -> Callable[[Any], Content]:
    def mapper(raw: Any) -> Content:
        c = msgspec.convert(raw, TextOnlyContent, strict=False)
        hydrated = c.hydratedTemplate or {}
        hydrated_text = hydrated.get("hydratedContentText")
        text = c.contentText or c.text or c.caption or c.description or c.name
        if not text and isinstance(hydrated_text, str):
            text = hydrated_text
        return Content("message", _with_context({"type": kind, "text": text}, c.contextInfo))

    return mapper


_MAPPERS: dict[str, Callable[[Any], Content]] = {
    "conversation": _text,
    "extendedTextMessage": _extended_text,
    "imageMessage": _media_of("image"),
    "videoMessage": _media_of("video"),
    "ptvMessage": _media_of("video"),
    "audioMessage": _media_of("audio", voice_from_ptt=True),
    "documentMessage": _media_of("document"),
    "stickerMessage": _media_of("sticker"),
    "locationMessage": _location(live=False),
    "liveLocationMessage": _location(live=True),
    "contactMessage": _contact,
    "contactsArrayMessage": _contacts_array,
    "reactionMessage": _reaction,
    "pollCreationMessage": _poll,
    "pollCreationMessageV2": _poll,
    "pollCreationMessageV3": _poll,
    "pollCreationMessageV5": _poll,
    "protocolMessage": _protocol,
    "buttonsResponseMessage": _buttons_response,
    "listResponseMessage": _list_response,
    "templateButtonReplyMessage": _template_button_reply,
    "interactiveResponseMessage": _interactive_response,
    "orderMessage": _order,
    "groupInviteMessage": _group_invite,
    "templateMessage": _template_like("template"),
    "buttonsMessage": _template_like("interactive"),
    "listMessage": _template_like("interactive"),
    "interactiveMessage": _template_like("interactive"),
    "productMessage": _template_like("order"),
    "eventMessage": _template_like("text"),
}


def content_key(message: dict[str, Any]) -> str | None:
    """The proto field that holds the content (Baileys' ``getContentType``)."""
    for name, value in message.items():
        if name not in METADATA_KEYS and value is not None:
            return name
    return None


def map_content(message: dict[str, Any]) -> Content:
    """Map one message's content; raises ``msgspec.ValidationError`` for a mistyped field.

    Wrappers (ephemeral, view-once, edited, document-with-caption) are unwrapped first;
    an unknown content key gives an ``unsupported`` message rather than an error, so a
    new WhatsApp message type never loses the event.
    """
    for _ in range(8):  # wrappers nest at most a few levels; a cycle cannot exist in JSON
        name = content_key(message)
        if name is None:
            return Content("ignored")
        raw = message[name]
        if name in WRAPPERS:
            inner = raw.get("message") if isinstance(raw, dict) else None
            if not isinstance(inner, dict):
                return Content("ignored", provider_type=name)
            message = inner
            continue
        if name in IGNORED_CONTENT:
            return Content("ignored", provider_type=name)
        mapper = _MAPPERS.get(name)
        if mapper is None:
            return Content("message", {"type": "unsupported"}, provider_type=name)
        content = mapper(raw)
        content.provider_type = content.provider_type or name
        return content
    return Content("message", {"type": "unsupported"}, provider_type="nested")


def content_path(message: dict[str, Any]) -> str:
    """Where ``map_content`` finds the content, as a JSON-path suffix for error messages.

    ``{"ephemeralMessage": {"message": {"imageMessage": ...}}}`` gives
    ``.ephemeralMessage.message.imageMessage``, so a mistyped field is reported where it is.
    """
    parts: list[str] = []
    for _ in range(8):
        name = content_key(message)
        if name is None:
            break
        parts.append(f".{name}")
        raw = message[name]
        inner = raw.get("message") if name in WRAPPERS and isinstance(raw, dict) else None
        if not isinstance(inner, dict):
            break
        parts.append(".message")
        message = inner
    return "".join(parts)
