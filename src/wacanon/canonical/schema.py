"""Canonical WhatsApp events, schema 1.0 — the public contract as Pydantic models.

Every path and value set of ``shared/spec/canonical-events-v1.md`` is here under the
same name; fields marked *addition* are ours (the spec allows additions, never
renames). Downstream consumers read nothing else, so this module is the one place
the contract is written in code, and ``docs/canonical-events.md`` is generated from it.

Normalizers build each event as a plain dict from values already typed at the
provider boundary and validate it here exactly once (pydantic-core validates a nested
dict faster than ``model_construct`` builds the same tree in Python; see
``benchmarks/normalize.py``). Times are timezone-aware UTC, which pydantic serializes
as RFC 3339 with a ``Z``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION: Literal["1.0"] = "1.0"

ProviderName = Literal["cloud_api", "evolution", "baileys", "simulated"]
PROVIDER_NAMES: tuple[ProviderName, ...] = ("cloud_api", "evolution", "baileys", "simulated")

ActorRole = Literal["customer", "business", "system", "skm"]
ChatType = Literal["private", "group"]
Direction = Literal["inbound", "outbound"]
MessageType = Literal[
    "text",
    "image",
    "video",
    "audio",
    "document",
    "sticker",
    "location",
    "contacts",
    "interactive",
    "button",
    "reaction",
    "order",
    "poll",
    "template",
    "system",
    "unsupported",
]
StatusValue = Literal["queued", "sent", "delivered", "read", "played", "failed"]
DeleteScope = Literal["me", "everyone"]
GroupAction = Literal[
    "add", "remove", "promote", "demote", "create", "update", "leave", "join", "modify"
]

#: Business events other systems record through ``POST /v1/events`` (the seed system's
#: catalog; the SKM score weighs them, docs/assignment.md).
BusinessEventType = Literal[
    "commerce.intent.detected",
    "commerce.cart.created",
    "commerce.order.created",
    "commerce.payment.pending",
    "commerce.payment.confirmed",
    "commerce.refund.requested",
    "commerce.refund.completed",
    "commerce.chargeback.opened",
    "commerce.chargeback.won",
    "commerce.chargeback.lost",
    "delivery.created",
    "delivery.dispatched",
    "delivery.in_transit",
    "delivery.delivered",
    "delivery.failed",
    "delivery.returned",
]
BUSINESS_EVENT_TYPES: frozenset[str] = frozenset(get_args(BusinessEventType))

EventType = Literal[
    BusinessEventType,
    "whatsapp.message.inbound",
    "whatsapp.message.outbound",
    "whatsapp.message.status.queued",
    "whatsapp.message.status.sent",
    "whatsapp.message.status.delivered",
    "whatsapp.message.status.read",
    "whatsapp.message.status.played",
    "whatsapp.message.status.failed",
    "whatsapp.message.reaction",
    "whatsapp.message.edited",
    "whatsapp.message.deleted",
    "whatsapp.group.joined",
    "whatsapp.group.left",
    "whatsapp.group.updated",
    "whatsapp.contact.updated",
    "whatsapp.connection.updated",
    "whatsapp.call.received",
    "whatsapp.conversation.opened",
    "whatsapp.conversation.closed",
    "whatsapp.conversation.merged",
    "whatsapp.thread.assigned",
]

#: Event types only the system itself emits, never a normalizer.
SYSTEM_EVENT_TYPES: frozenset[str] = frozenset(
    {
        "whatsapp.conversation.opened",
        "whatsapp.conversation.closed",
        "whatsapp.conversation.merged",
        "whatsapp.thread.assigned",
    }
)


class _Model(BaseModel):
    """Base of every canonical model: immutable facts; unknown keys refused when reading back.

    Frozen, so parts that every event of one webhook shares (its trace, its routing) can
    be one instance; change an event with ``model_copy(update=...)``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Model):
    """Where the event came from, in the provider's own terms."""

    provider: ProviderName
    account_id: str = Field(
        description="Cloud API phone_number_id, Evolution instance name, Baileys session id."
    )
    provider_event: str = Field(
        description="The provider's own name for what it sent (`messages`, `messages.upsert`, ...)."
    )
    provider_message_id: str | None = Field(
        default=None,
        description="Message events: the message id; status events: the id of the message "
        "whose status changed; reaction / edit / delete: the id of that message when the "
        "provider gives one, else the target's.",
    )


class Routing(_Model):
    """Tenant and conversation. Normalizers fill `shopper_id` only; routing fills the rest."""

    shopper_id: str | None = Field(
        default=None, description="Tenant that owns `source.account_id` (from configuration)."
    )
    skm_id: str | None = Field(default=None, description="Agent assigned (filled by routing).")
    conversation_id: str | None = Field(default=None, description="Filled by routing.")
    thread_key: str | None = Field(
        default=None, description="Deterministic conversation key (filled by routing)."
    )


class Actor(_Model):
    """Who did it; `wa_id` falls back to `lid:<digits>` or `bsuid:<BSUID>` without a phone."""

    wa_id: str | None = Field(
        default=None,
        description="Digits only, international form; `lid:<digits>` when only a LID is "
        "known, `bsuid:<BSUID>` when only a BSUID is known.",
    )
    lid: str | None = Field(default=None, description="The sender's LID digits, when carried.")
    user_id: str | None = Field(
        default=None, description="The sender's business-scoped user id (BSUID), exactly as given."
    )
    username: str | None = Field(default=None, description="WhatsApp username, when carried.")
    role: ActorRole = Field(
        description="`business` when the account itself acted (outbound, fromMe); `skm` "
        "when routing recognises one of the shopper's SKMs (never set by a normalizer)."
    )
    display_name: str | None = Field(default=None, description="Push name / profile name.")


class Chat(_Model):
    """The conversation the event belongs to."""

    type: ChatType = Field(description="Private chat with one customer, or a group.")
    id: str = Field(
        description="Private: the customer's wa_id (the recipient for outbound messages and "
        "statuses); group: the group id as the provider gives it."
    )
    lid: str | None = Field(
        default=None, description="*Addition.* Private chats: the customer's LID digits when known."
    )
    user_id: str | None = Field(
        default=None, description="*Addition.* Private chats: the customer's BSUID when known."
    )
    phone: str | None = Field(
        default=None,
        description="*Addition.* Private chats: the customer's phone digits when the payload "
        "carries them (equals `id` unless the customer is known only by LID / BSUID).",
    )


class Media(_Model):
    """A media attachment; `url` is the provider's download URL (often short-lived or encrypted)."""

    mime_type: str | None = None
    media_id: str | None = None
    url: str | None = None
    sha256: str | None = None
    file_name: str | None = None
    size: int | None = None
    voice: bool = False
    animated: bool | None = Field(default=None, description="*Addition.* Stickers and GIF videos.")
    seconds: int | None = Field(default=None, description="*Addition.* Audio / video duration.")
    width: int | None = Field(default=None, description="*Addition.*")
    height: int | None = Field(default=None, description="*Addition.*")


class Location(_Model):
    """A shared place; `live` marks a live-location share (*addition*)."""

    latitude: float | None = None
    longitude: float | None = None
    name: str | None = None
    address: str | None = None
    url: str | None = Field(default=None, description="*Addition.*")
    live: bool = Field(default=False, description="*Addition.*")


class ContactCard(_Model):
    """One shared contact card."""

    name: str | None = None
    phones: list[str] = Field(default_factory=list)
    wa_ids: list[str] = Field(default_factory=list)
    emails: list[str] = Field(default_factory=list)
    organization: str | None = None
    vcard: str | None = None


class Interactive(_Model):
    """The customer's answer to an interactive prompt (button, list, flow)."""

    kind: str = Field(
        description="`button_reply`, `list_reply`, `nfm_reply`, `template_button_reply`, ..."
    )
    id: str | None = None
    title: str | None = None
    description: str | None = Field(default=None, description="*Addition.*")
    response_json: str | None = Field(
        default=None, description="*Addition.* Flow (nfm_reply / native flow) answers, as sent."
    )


class Reaction(_Model):
    """A reaction; `emoji == ""` means the reaction was removed."""

    emoji: str
    message_id: str | None = Field(description="The message reacted to.")


class Poll(_Model):
    """*Addition.* A poll the message creates."""

    name: str | None = None
    options: list[str] = Field(default_factory=list)
    selectable_count: int | None = None


class OrderItem(_Model):
    """*Addition.* One product line of an order."""

    product_retailer_id: str | None = None
    quantity: float | None = None
    item_price: float | None = None
    currency: str | None = None


class Order(_Model):
    """*Addition.* A cart / order sent from a catalog."""

    catalog_id: str | None = None
    text: str | None = None
    items: list[OrderItem] = Field(default_factory=list)
    order_id: str | None = Field(
        default=None, description="WhatsApp Web order messages: the order's id."
    )


class Referral(_Model):
    """*Addition.* The ad or post a click-to-WhatsApp message came from."""

    source_url: str | None = None
    source_id: str | None = None
    source_type: str | None = None
    headline: str | None = None
    body: str | None = None
    media_type: str | None = None
    ctwa_clid: str | None = None


class SystemInfo(_Model):
    """*Addition.* A system message (number change, identity change)."""

    kind: str | None = None
    body: str | None = None
    new_wa_id: str | None = None
    new_user_id: str | None = None


class ProviderError(_Model):
    """A provider error object, normalized."""

    code: str | None = None
    title: str | None = None
    detail: str | None = None


class Message(_Model):
    """The message an event is about."""

    id: str | None = Field(default=None, description="The message id.")
    direction: Direction = Field(description="`inbound` = from a customer to the account.")
    type: MessageType = Field(
        description="Kind of content; `unsupported` for types we do not know."
    )
    text: str | None = Field(default=None, description="Text body, or the caption of media.")
    reply_to: str | None = Field(default=None, description="Id of the quoted message.")
    forwarded: bool = Field(default=False, description="The message was forwarded.")
    media: Media | None = Field(default=None, description="Media attachment.")
    location: Location | None = Field(default=None, description="Shared location.")
    contacts: list[ContactCard] | None = Field(default=None, description="Shared contact cards.")
    interactive: Interactive | None = Field(default=None, description="Interactive reply.")
    reaction: Reaction | None = Field(default=None, description="Reaction events.")
    target_id: str | None = Field(
        default=None, description="Edited / deleted events: the message edited or deleted."
    )
    delete_scope: DeleteScope | None = Field(
        default=None, description="Deleted events: `me` or `everyone`."
    )
    frequently_forwarded: bool = Field(default=False, description="*Addition.*")
    mentions: list[str] = Field(default_factory=list, description="*Addition.* wa_ids mentioned.")
    poll: Poll | None = Field(default=None, description="*Addition.*")
    order: Order | None = Field(default=None, description="*Addition.*")
    referral: Referral | None = Field(default=None, description="*Addition.*")
    system: SystemInfo | None = Field(default=None, description="*Addition.*")
    errors: list[ProviderError] = Field(
        default_factory=list, description="*Addition.* Why a message is `unsupported`."
    )
    provider_type: str | None = Field(
        default=None, description="*Addition.* The provider's own message type name."
    )


class Status(_Model):
    """A delivery / read status of one message."""

    value: StatusValue = Field(
        description="queued < sent < delivered < read < played; failed is final."
    )
    message_id: str = Field(description="The message whose status changed.")
    recipient_wa_id: str | None = Field(
        default=None, description="Who received it; null for a read receipt of an inbound message."
    )
    errors: list[ProviderError] = Field(
        default_factory=list, description="Provider errors, normalized to {code, title, detail}."
    )
    participant: str | None = Field(
        default=None, description="*Addition.* Group receipts: whose receipt it is (wa_id)."
    )
    recipient_user_id: str | None = Field(default=None, description="*Addition.* Recipient BSUID.")
    conversation: dict[str, Any] | None = Field(
        default=None, description="*Addition.* Cloud API conversation object, as sent."
    )
    pricing: dict[str, Any] | None = Field(
        default=None, description="*Addition.* Cloud API pricing object, as sent."
    )


class Group(_Model):
    """A group and what happened to it."""

    id: str = Field(description="The group id as the provider gives it (`120363…@g.us`).")
    subject: str | None = Field(default=None, description="Group name, when carried.")
    action: GroupAction | None = Field(default=None, description="What happened to the group.")
    participants: list[str] = Field(
        default_factory=list, description="wa_ids of the participants the action concerns."
    )
    description: str | None = Field(default=None, description="*Addition.*")
    author: str | None = Field(default=None, description="*Addition.* Who made the change (wa_id).")


class Contact(_Model):
    """*Addition.* A contact's profile, for `whatsapp.contact.updated`."""

    wa_id: str
    lid: str | None = None
    user_id: str | None = None
    display_name: str | None = None
    picture_url: str | None = None
    previous_wa_id: str | None = Field(
        default=None, description="The phone number the customer changed from, when given."
    )
    previous_user_id: str | None = Field(
        default=None, description="The BSUID that was replaced (Cloud API `user_id_update`)."
    )
    parent_user_id: str | None = Field(default=None, description="The parent BSUID, when given.")
    previous_parent_user_id: str | None = Field(
        default=None, description="The parent BSUID that was replaced."
    )


class Connection(_Model):
    """*Addition.* The account's connection state, for `whatsapp.connection.updated`."""

    state: str
    reason: str | None = None
    wa_id: str | None = Field(default=None, description="The account's own number, when given.")


class Call(_Model):
    """*Addition.* A voice / video call, for `whatsapp.call.received`."""

    id: str
    status: str
    video: bool = False
    group: bool = False


class ConversationInfo(_Model):
    """*Addition.* The conversation a lifecycle event is about (`whatsapp.conversation.*`)."""

    id: str = Field(description="The conversation id (also `routing.conversation_id`).")
    thread_key: str = Field(description="Its thread key (also `routing.thread_key`).")
    reason: str = Field(
        description="Why: `first_event`, `reopened` (opened); `inactivity`, `command` "
        "(closed); `identity_linked` (merged)."
    )
    opening: int = Field(description="Which opening of the conversation this opens or closes.")
    merged_id: str | None = Field(
        default=None, description="Merged: the conversation absorbed into this one."
    )
    merged_thread_key: str | None = Field(default=None, description="Merged: its thread key.")


class AssignmentCandidate(_Model):
    """*Addition.* One SKM an assignment considered, with their load at that moment."""

    skm_id: str
    open: int = Field(description="Open conversations assigned to them before this one.")
    capacity: int


class AssignmentInfo(_Model):
    """*Addition.* Why a conversation went to an SKM (`whatsapp.thread.assigned`)."""

    skm_id: str | None = Field(description="The SKM now assigned (null: waits in the queue).")
    previous_skm_id: str | None = Field(default=None, description="The SKM it had before.")
    policy: str = Field(description="`default`, `sticky`, `round_robin`, `least_loaded`, "
                        "`group` (group rules) or `manual`.")  # fmt: skip
    step: str = Field(description="The step that decided (docs/assignment.md).")
    reason: str = Field(description="In words: what each step found.")
    candidates: list[AssignmentCandidate] = Field(default_factory=list)
    assigned_at: datetime


class Security(_Model):
    """Outcome of the provider's signature / API-key check; offline normalization is unverified."""

    signature_valid: bool = Field(
        default=False,
        description="Outcome of the signature / API-key check; false when nothing was checked "
        "(offline `wacanon normalize`).",
    )
    risk_flags: list[str] = Field(
        default_factory=list,
        description="`actor_lid_only`, `actor_bsuid_only` (no phone number known), "
        "`frequently_forwarded`, `timestamp_out_of_range` (the provider sent a time that is "
        "not plausible; `occurred_at` is then `received_at`).",
    )


class Trace(_Model):
    """One correlation id per received webhook, shared by all the events it produced."""

    correlation_id: str = Field(description="One id per received webhook.")


class CanonicalEvent(_Model):
    """One canonical WhatsApp event (schema 1.0)."""

    schema_version: Literal["1.0"] = Field(default=SCHEMA_VERSION, description="Always `1.0`.")
    event_id: str = Field(description="UUIDv5 of `idempotency_key`.")
    event_type: EventType = Field(description="What happened.")
    occurred_at: datetime = Field(
        description="When it happened, per the provider's timestamp (else `received_at`)."
    )
    received_at: datetime = Field(description="When the webhook reached us.")
    idempotency_key: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="SHA-256 (64 lowercase hex) of the event's identity."
    )
    source: Source = Field(description="Where it came from.")
    routing: Routing = Field(description="Tenant and conversation.")
    actor: Actor = Field(description="Who did it.")
    chat: Chat = Field(description="The conversation.")
    message: Message | None = Field(
        default=None, description="Message, reaction, edit, delete events."
    )
    status: Status | None = Field(default=None, description="Status events.")
    group: Group | None = Field(default=None, description="Group events.")
    contact: Contact | None = Field(default=None, description="*Addition.*")
    connection: Connection | None = Field(default=None, description="*Addition.*")
    call: Call | None = Field(default=None, description="*Addition.*")
    conversation: ConversationInfo | None = Field(default=None, description="*Addition.*")
    assignment: AssignmentInfo | None = Field(default=None, description="*Addition.*")
    data: dict[str, Any] | None = Field(
        default=None,
        description="*Addition.* A business event's own fields (`commerce.*`, `delivery.*`), "
        "as the system that recorded it sent them.",
    )
    security: Security
    trace: Trace

    def to_json(self) -> bytes:
        """The event as UTF-8 JSON bytes — the same text as ``model_dump_json()``, without
        its keyword handling and its decoding to ``str`` (what a socket or a file wants)."""
        return self.__pydantic_serializer__.to_json(self)
