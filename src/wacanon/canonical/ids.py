"""Identity: who a JID / wa_id / LID / BSUID names, and the keys that make events unique.

One person reaches a business under up to three identities — a phone number, a LID
(``…@lid``, WhatsApp's privacy id) and a BSUID (Cloud API business-scoped user id for
username users) — and payloads carry them in many spellings. Everything that turns a
provider's spelling into the spec's ``wa_id`` lives here, so every normalizer agrees.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import time
import uuid
from dataclasses import dataclass
from typing import Literal, NamedTuple

import orjson

#: ``event_id = uuid5(EVENT_ID_NAMESPACE, idempotency_key)``.
EVENT_ID_NAMESPACE = uuid.NAMESPACE_URL
_NAMESPACE_BYTES = EVENT_ID_NAMESPACE.bytes


JidKind = Literal["pn", "lid", "group", "broadcast", "newsletter", "other"]

_SERVER_KINDS: dict[str, JidKind] = {
    "s.whatsapp.net": "pn",
    "c.us": "pn",
    "hosted": "pn",
    "lid": "lid",
    "hosted.lid": "lid",
    "g.us": "group",
    "broadcast": "broadcast",
    "newsletter": "newsletter",
}


@dataclass(frozen=True, slots=True)
class Jid:
    """A parsed WhatsApp JID: ``user[:device]@server`` with the device dropped."""

    user: str
    server: str

    @property
    def kind(self) -> JidKind:
        return _SERVER_KINDS.get(self.server, "other")


def parse_jid(text: str) -> Jid:
    """Split a JID; a bare number (no ``@``) is taken as a phone-number JID."""
    user, at, server = text.strip().partition("@")
    if not at:
        server = "s.whatsapp.net"
    user = user.partition(":")[0]  # device suffix, ``5511…:12``
    if server != "g.us":
        user = user.partition("_")[0]  # agent suffix of hosted / multi-device user parts
    return Jid(user=user, server=server.lower())


#: Longer than any phone number (E.164: 15 digits) or LID seen; a longer run is not an id.
MAX_ID_DIGITS = 20

#: What people write around a phone number's digits: ``+55 (11) 98765-4321``.
_PHONE_FORMATTING = re.compile(r"[\s+\-().]+")


def phone_digits(text: str) -> str | None:
    """The digits of a phone number written any way (``+55 (11) 98765-4321``), or None
    when the text is not a phone number.

    Never cuts a value down to the digits it happens to contain: a masked or mistyped
    number (``55XXXXXXXXX``, ``9176434xxxxx``) would become another, real-looking number
    (``55``), and every message carrying it would land in one wrong conversation.
    """
    if text.isascii() and text.isdigit():
        return text if len(text) <= MAX_ID_DIGITS else None
    cleaned = _PHONE_FORMATTING.sub("", text)
    return cleaned if _is_id_digits(cleaned) else None


def _is_id_digits(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= MAX_ID_DIGITS


def id_digits(text: str) -> str | None:
    """``text`` when it is all digits and no longer than an id can be (a LID), else None."""
    return text if _is_id_digits(text) else None


class MalformedId(ValueError):
    """A JID or number that names no phone, LID or group, where the payload gives no good
    alternative: the item is an error (with its path), never a truncated identity."""

    def __init__(self, value: str) -> None:
        super().__init__(f"not a well-formed phone number, LID or group JID: {value!r}")
        self.value = value


#: A group JID's user part: digits, or old-style ``<creator digits>-<time digits>``.
_GROUP_USER = re.compile(r"[0-9]{1,40}(?:-[0-9]{1,40})?")


def checked_group(jid: str) -> str:
    """A group JID, as given, once its user part is known to be a group id (digits, or
    old-style ``<digits>-<digits>``); else :class:`MalformedId`."""
    if not _GROUP_USER.fullmatch(jid.strip().partition("@")[0]):
        raise MalformedId(jid)
    return jid


def _user_part(text: str) -> tuple[str, str]:
    """(user without device / agent suffix, lower-case server) — the hot path of every JID."""
    user, at, server = text.strip().partition("@")
    return user.partition(":")[0].partition("_")[0], (server.lower() if at else "s.whatsapp.net")


def phone_of(text: str | None) -> str | None:
    """The phone digits a JID or number names, or None when it names no phone."""
    if not text:
        return None
    kind, number = _classified(text)
    return number if kind == "pn" else None


def lid_of(text: str | None) -> str | None:
    """The LID digits a ``…@lid`` JID names, or None for any other JID."""
    if not text or "@" not in text:
        return None
    kind, number = _classified(text)
    return number if kind == "lid" else None


def is_group_jid(text: str | None) -> bool:
    return bool(text) and str(text).lower().endswith("@g.us")


def is_unroutable_jid(text: str | None) -> bool:
    """Status broadcasts (stories) and channels: not a conversation with a customer.

    Reads only the server's kind (what :func:`parse_jid` would give), from the cache of
    :func:`_classified`: every message of every webhook asks this once.
    """
    if not text or "@" not in text:
        return False
    return _classified(text)[0] in _UNROUTABLE_KINDS


_UNROUTABLE_KINDS = frozenset({"broadcast", "newsletter"})


class Person(NamedTuple):
    """Every identity of one person that a payload revealed.

    A named tuple rather than a frozen dataclass: it is built for every event, and a
    tuple is several times cheaper to create while just as immutable.
    """

    phone: str | None = None
    lid: str | None = None
    user_id: str | None = None

    @property
    def wa_id(self) -> str | None:
        """The spec's ``wa_id``: phone digits, else ``lid:<digits>``, else ``bsuid:<BSUID>``."""
        if self.phone:
            return self.phone
        if self.lid:
            return f"lid:{self.lid}"
        if self.user_id:
            return f"bsuid:{self.user_id}"
        return None

    def merged(self, other: Person) -> Person:
        """Fill what this one lacks from ``other`` (first seen wins)."""
        return Person(
            phone=self.phone or other.phone,
            lid=self.lid or other.lid,
            user_id=self.user_id or other.user_id,
        )


def person_from_jids(*jids: str | None, user_id: str | None = None) -> Person:
    """Collect the phone and LID among JIDs that name one person in different addressing.

    Providers put the alternative in fields whose meaning flips with the addressing mode
    (``remoteJidAlt`` holds the phone when ``remoteJid`` is a LID, and the LID when it is
    a phone), so each value is classified by its own server, never by the field name.
    A malformed JID is passed over for a good alternative; when there is none, this is
    :class:`MalformedId` — an identity is never invented from the digits of a bad one.
    """
    phone: str | None = None
    lid: str | None = None
    bad: str | None = None
    for jid in jids:
        if not jid:
            continue
        kind, number = _classified(jid)
        if kind == "pn":
            if number is None:
                bad = bad or jid
            elif phone is None:
                phone = number
        elif kind == "lid":
            if number is None:
                bad = bad or jid
            elif lid is None:
                lid = number
        if phone is not None and lid is not None:
            break
    if bad is not None and phone is None and lid is None and not user_id:
        raise MalformedId(bad)
    return Person(phone, lid, user_id or None)


def lenient_person(*jids: str | None) -> Person:
    """:func:`person_from_jids` where a missing person is an answer, not an error (a
    mentioned JID, a receipt's reader): a malformed JID names nobody."""
    try:
        return person_from_jids(*jids)
    except MalformedId:
        return Person()


@functools.lru_cache(maxsize=4096)
def _classified(jid: str) -> tuple[JidKind | None, str | None]:
    """(kind, digits) of one JID: what :func:`phone_of` / :func:`lid_of` would answer;
    digits None for a phone or LID JID whose user part is not all digits.

    Pure and asked for every party of every message; a conversation repeats the same few
    JIDs, so a bounded cache answers most of them without parsing.
    """
    user, server = _user_part(jid)
    kind = _SERVER_KINDS.get(server)
    if kind not in ("pn", "lid"):
        return kind, None
    if "@" not in jid:  # a bare number, written any way
        return kind, phone_digits(user)
    return kind, user if _is_id_digits(user) else None


def idempotency_key(provider: str, account: str, *identity: str | None) -> str:
    """SHA-256 over the event's identity; never include the time of receipt.

    ``identity`` is (kind, ids...). The parts are JSON-encoded as a list, so
    ``("a|b", "c")`` and ``("a", "b|c")`` never collide the way joined strings would.
    """
    payload = orjson.dumps([provider, account, *identity])
    return hashlib.sha256(payload).hexdigest()


def event_id(key: str) -> str:
    """UUIDv5 of the idempotency key, computed without ``uuid.uuid5``'s object overhead.

    The version nibble (hex digit 12) becomes ``5`` and the variant bits (top two of hex
    digit 16) become ``10``, exactly as RFC 4122 sets them on the SHA-1 digest's bytes.
    """
    h = hashlib.sha1(_NAMESPACE_BYTES + key.encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT_DIGIT[h[16]]}{h[17:20]}-{h[20:32]}"


#: The RFC 4122 variant's hex digit (``10xx``), by the digest's own digit there.
_VARIANT_DIGIT = {d: "89ab"[int(d, 16) & 0x3] for d in "0123456789abcdef"}


def new_correlation_id() -> str:
    """A received webhook's id: a UUIDv7 as 32 hex digits — unique (74 random bits), and
    ordered by time, so the journal's unique index on it grows at its end instead of
    dirtying a random page of it for every webhook of a commit (on SQLite a page is
    4 KiB of WAL, and again at the checkpoint)."""
    random = int.from_bytes(os.urandom(10), "big")
    value = (
        (time.time_ns() // 1_000_000) << 80
        | 0x7 << 76
        | (random >> 68) << 64
        | 0b10 << 62
        | (random & ((1 << 62) - 1))
    )
    return f"{value:032x}"
