"""The Cloud API webhook as msgspec Structs: the boundary between JSON and the mapping.

Two readings of the same envelope share every item type. :class:`TypedEnvelope` types a
whole POST in one decoder pass — the fast path, taken whenever every item is well formed.
:class:`Envelope` stops at each level with ``list[Any]``, so the tolerant path can type
item by item (:func:`~wacanon.providers.common.convert`) and report a malformed item with
its path while its neighbours still give events. The typed reading is never looser than
the tolerant one: whatever it accepts, per-item typing would accept with the same values.
"""

from __future__ import annotations

from typing import Any

import msgspec

Stamp = int | float | str | None
Ident = str | int | None
Number = float | str | None


# ------------------------------------------------------------------ items


class Metadata(msgspec.Struct):
    display_phone_number: Ident = None
    phone_number_id: Ident = None


class Profile(msgspec.Struct):
    name: str | None = None
    username: str | None = None


class ContactIn(msgspec.Struct):
    profile: Profile | None = None
    wa_id: str | None = None
    user_id: str | None = None


class ErrorData(msgspec.Struct):
    details: str | None = None


class ErrorIn(msgspec.Struct):
    """Meta's error object; ``code`` is an int in messages, a string in group webhooks."""

    code: int | str | None = None
    title: str | None = None
    message: str | None = None
    details: str | None = None  # On-Prem era ``unknown`` messages
    error_data: ErrorData | None = None


class TextIn(msgspec.Struct):
    body: str | None = None


class MediaIn(msgspec.Struct):
    id: Ident = None
    mime_type: str | None = None
    sha256: str | None = None
    url: str | None = None
    caption: str | None = None
    filename: str | None = None
    voice: bool | None = None
    animated: bool | None = None


class LocationIn(msgspec.Struct):
    latitude: Number = None
    longitude: Number = None
    name: str | None = None
    address: str | None = None
    url: str | None = None


class CardName(msgspec.Struct):
    formatted_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None


class CardPhone(msgspec.Struct):
    phone: str | None = None
    wa_id: str | None = None


class CardEmail(msgspec.Struct):
    email: str | None = None


class CardOrg(msgspec.Struct):
    company: str | None = None


class CardIn(msgspec.Struct):
    name: CardName | None = None
    phones: list[CardPhone] | None = None
    emails: list[CardEmail] | None = None
    org: CardOrg | None = None
    vcard: str | None = None


class ReplyIn(msgspec.Struct):
    """``button_reply`` and ``list_reply`` (the latter with a description)."""

    id: str | None = None
    title: str | None = None
    description: str | None = None


class NfmReplyIn(msgspec.Struct):
    name: str | None = None
    body: str | None = None
    response_json: str | None = None


class CallPermissionIn(msgspec.Struct):
    response: str | None = None


class InteractiveIn(msgspec.Struct):
    type: str | None = None
    button_reply: ReplyIn | None = None
    list_reply: ReplyIn | None = None
    nfm_reply: NfmReplyIn | None = None
    call_permission_reply: CallPermissionIn | None = None


class ButtonIn(msgspec.Struct):
    payload: str | None = None
    text: str | None = None


class ReactionIn(msgspec.Struct):
    message_id: str
    emoji: str | None = None


class ProductItem(msgspec.Struct):
    product_retailer_id: str | None = None
    quantity: Number = None
    item_price: Number = None
    currency: str | None = None


class OrderIn(msgspec.Struct):
    catalog_id: str | None = None
    text: str | None = None
    product_items: list[ProductItem] | None = None


class SystemIn(msgspec.Struct):
    type: str | None = None
    body: str | None = None
    wa_id: str | None = None
    new_wa_id: str | None = None
    user_id: str | None = None
    previous_user_id: str | None = None


class IdChange(msgspec.Struct):
    """``{"previous": …, "current": …}`` of a ``user_id_update`` item."""

    previous: str | None = None
    current: str | None = None


class UserIdUpdateIn(msgspec.Struct):
    """One item of a ``user_id_update`` change: a customer's BSUID (and parent) changed."""

    wa_id: str | None = None
    user_id: IdChange | None = None
    parent_user_id: IdChange | None = None
    timestamp: str | int | float | None = None


class UnsupportedIn(msgspec.Struct):
    type: str | None = None


class ReferredProduct(msgspec.Struct):
    catalog_id: str | None = None
    product_retailer_id: str | None = None


class ContextIn(msgspec.Struct):
    id: str | None = None
    forwarded: bool | None = None
    frequently_forwarded: bool | None = None
    referred_product: ReferredProduct | None = None


class ReferralIn(msgspec.Struct):
    source_url: str | None = None
    source_id: str | None = None
    source_type: str | None = None
    headline: str | None = None
    body: str | None = None
    media_type: str | None = None
    ctwa_clid: str | None = None


class Content(msgspec.Struct, kw_only=True):
    """What a message says: ``type`` and the payload keyed by it (also ``edit.message``)."""

    type: str | None = None
    context: ContextIn | None = None
    text: TextIn | None = None
    image: MediaIn | None = None
    video: MediaIn | None = None
    audio: MediaIn | None = None
    document: MediaIn | None = None
    sticker: MediaIn | None = None
    location: LocationIn | None = None
    contacts: list[CardIn] | None = None
    interactive: InteractiveIn | None = None
    button: ButtonIn | None = None
    reaction: ReactionIn | None = None
    order: OrderIn | None = None
    system: SystemIn | None = None
    unsupported: UnsupportedIn | None = None


class EditIn(msgspec.Struct):
    original_message_id: str
    message: Content | None = None


class RevokeIn(msgspec.Struct):
    original_message_id: str


class MessageIn(Content, kw_only=True):
    """One ``messages[]`` (inbound) or ``message_echoes[]`` (business echo) item."""

    id: str
    timestamp: Stamp = None
    from_: str | None = msgspec.field(default=None, name="from")
    from_user_id: str | None = None
    to: str | None = None
    to_user_id: str | None = None
    group_id: str | None = None
    referral: ReferralIn | None = None
    errors: list[ErrorIn] | None = None
    edit: EditIn | None = None
    revoke: RevokeIn | None = None


class StatusIn(msgspec.Struct):
    """One ``statuses[]`` item; Meta spells the group participant field two ways."""

    id: str
    status: str
    timestamp: Stamp = None
    recipient_id: str | None = None
    recipient_user_id: str | None = None
    recipient_type: str | None = None
    recipient_participant_id: str | None = None
    participant_recipient_id: str | None = None
    recipient_participant_user_id: str | None = None
    conversation: dict[str, Any] | None = None
    pricing: dict[str, Any] | None = None
    errors: list[ErrorIn] | None = None


class ParticipantIn(msgspec.Struct):
    wa_id: str | None = None
    user_id: str | None = None
    username: str | None = None
    input: str | None = None


class GroupTextIn(msgspec.Struct):
    text: str | None = None
    update_successful: bool | None = None


class GroupIn(msgspec.Struct):
    """One ``groups[]`` item of the four ``group_*`` webhook fields."""

    group_id: str
    type: str | None = None
    timestamp: Stamp = None
    subject: str | None = None
    description: str | None = None
    request_id: str | None = None
    reason: str | None = None
    initiated_by: str | None = None
    added_participants: list[ParticipantIn] | None = None
    removed_participants: list[ParticipantIn] | None = None
    group_subject: GroupTextIn | None = None
    group_description: GroupTextIn | None = None
    errors: list[Any] | None = None


# ------------------------------------------------------------------ tolerant envelope


class Envelope(msgspec.Struct):
    entry: list[Any]


class Entry(msgspec.Struct):
    changes: list[Any]


class Change(msgspec.Struct):
    field: str
    value: Any = None


class Value(msgspec.Struct):
    """A change's ``value``: every array any handled field may carry (others are skipped)."""

    metadata: Metadata | None = None
    contacts: list[Any] | None = None
    messages: list[Any] | None = None
    statuses: list[Any] | None = None
    errors: list[Any] | None = None
    message_echoes: list[Any] | None = None
    groups: list[Any] | None = None
    user_id_update: list[Any] | None = None


# ------------------------------------------------------------------ typed envelope (one pass)


class TypedValue(msgspec.Struct):
    """:class:`Value` with its items typed; the same fields, the same defaults."""

    metadata: Metadata | None = None
    contacts: list[ContactIn] | None = None
    messages: list[MessageIn] | None = None
    statuses: list[StatusIn] | None = None
    errors: list[ErrorIn] | None = None
    message_echoes: list[MessageIn] | None = None
    groups: list[GroupIn] | None = None
    user_id_update: list[UserIdUpdateIn] | None = None


class TypedChange(msgspec.Struct):
    """``value`` is required here: a change without one takes the tolerant path's error."""

    field: str
    value: TypedValue


class TypedEntry(msgspec.Struct):
    changes: list[TypedChange]


class TypedEnvelope(msgspec.Struct):
    entry: list[TypedEntry]
