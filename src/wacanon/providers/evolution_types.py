"""Evolution API v2 webhook shapes, typed at the boundary (see :mod:`.evolution`).

Every struct ignores unknown fields: Evolution adds fields between versions, and what
the normalizer does not read must never make a payload unreadable. The same structs
serve both reading paths of the normalizer: the one-pass typed decode of a whole body
and the tolerant item-by-item ``convert`` that reports where a broken item breaks.
"""

from __future__ import annotations

from typing import Any

import msgspec

from wacanon.providers.wa_web import ContextInfo, LongLike, MessageKey, ProtocolContent


class Envelope(msgspec.Struct, forbid_unknown_fields=False):
    """The webhook body; ``destination``, ``server_url`` and ``apikey`` are not needed."""

    event: str
    instance: str | None = None
    data: Any = None
    #: Any JSON: a time that is not a string is no readable time, never a broken body
    #: (it is only ever used in identities, see ``evolution._Payload.sent_iso``).
    date_time: Any = None
    sender: str | None = None


class RawEnvelope(msgspec.Struct, forbid_unknown_fields=False):
    """:class:`Envelope` for the one-pass path: ``data`` stays raw JSON until the event
    name says which struct to decode it into. ``data`` is required here: a body without
    it takes the tolerant path, which reports it exactly as before."""

    event: str
    data: msgspec.Raw
    instance: str | None = None
    date_time: Any = None
    sender: str | None = None


class UpsertItem(msgspec.Struct, forbid_unknown_fields=False):
    """``messages.upsert`` / ``send.message`` data (Evolution's ``prepareMessage`` output).

    ``contextInfo`` is the quote context of the content in 2.3.x and the
    ``messageContextInfo`` in the latest code: only its quote fields are read.
    ``status`` is deliberately not read: a status inside an upsert is no status event.
    """

    key: MessageKey
    message: dict[str, Any] | None = None
    pushName: str | None = None
    messageTimestamp: LongLike = None
    contextInfo: ContextInfo | None = None
    participant: str | None = None


class UpdateItem(MessageKey, forbid_unknown_fields=False):
    """``messages.update`` data: the key flattened (``keyId``; v1 used ``id``) plus status."""

    keyId: str | None = None
    status: int | str | None = None
    message: dict[str, Any] | None = None
    pollUpdates: list[Any] | None = None


class EditedItem(ProtocolContent, forbid_unknown_fields=False):
    """``messages.edited`` data: a ``protocolMessage``; the whatsapp-web.js channel sends
    ``{key, message, messageTimestamp}`` instead."""

    message: dict[str, Any] | None = None
    messageTimestamp: LongLike = None


class GroupMember(msgspec.Struct, forbid_unknown_fields=False):
    """Baileys 7 ``GroupParticipant``; Baileys 6 sends a bare JID string instead."""

    id: str | None = None
    phoneNumber: str | None = None
    lid: str | None = None


class MemberData(msgspec.Struct, forbid_unknown_fields=False):
    """Evolution 2.3.5+ ``participantsData``: ``phoneNumber`` may be bare digits."""

    jid: str | GroupMember | None = None
    phoneNumber: str | None = None
    name: str | None = None


class ParticipantsUpdate(msgspec.Struct, forbid_unknown_fields=False):
    id: str
    action: str
    author: str | None = None
    authorPn: str | None = None
    participants: list[str | GroupMember] = []
    participantsData: list[MemberData] | None = None


class GroupMeta(msgspec.Struct, forbid_unknown_fields=False):
    """Baileys ``GroupMetadata``: whole in ``groups.upsert``, partial in ``groups.update``."""

    id: str
    subject: str | None = None
    desc: str | None = None
    owner: str | None = None
    ownerPn: str | None = None
    author: str | None = None
    authorPn: str | None = None
    creation: LongLike = None
    announce: bool | None = None
    restrict: bool | None = None
    memberAddMode: bool | None = None
    joinApprovalMode: bool | None = None
    ephemeralDuration: int | None = None
    participants: list[str | GroupMember] | None = None


#: groups.update fields whose values make up "what changed" in a group identity.
GROUP_CHANGE_FIELDS = (
    "subject",
    "desc",
    "announce",
    "restrict",
    "memberAddMode",
    "joinApprovalMode",
    "ephemeralDuration",
)


class ContactItem(msgspec.Struct, forbid_unknown_fields=False):
    """``contacts.upsert`` / ``contacts.update``; v1 used ``id`` and ``profilePictureUrl``."""

    remoteJid: str | None = None
    id: str | None = None
    pushName: str | None = None
    profilePicUrl: str | None = None
    profilePictureUrl: str | None = None


class ConnectionItem(msgspec.Struct, forbid_unknown_fields=False):
    state: str
    statusReason: int | str | None = None
    wuid: str | None = None


class CallItem(msgspec.Struct, forbid_unknown_fields=False):
    """Baileys ``WACallEvent`` as Evolution forwards it (``date`` is a JS Date → ISO)."""

    id: str
    from_: str | None = msgspec.field(default=None, name="from")
    callerPn: str | None = None
    chatId: str | None = None
    date: str | int | None = None
    status: str | None = None
    isVideo: bool | None = None
    isGroup: bool | None = None
    groupJid: str | None = None
