"""Identity: who a JID / wa_id / LID / BSUID names, and the keys that make events unique.

One person reaches a business under up to three identities — a phone number, a LID
(``…@lid``, WhatsApp's privacy id) and a BSUID (Cloud API business-scoped user id for
username users) — and payloads carry them in many spellings. Everything that turns a
provider's spelling into the spec's ``wa_id`` lives here, so every normalizer agrees.
"""

from __future__ import annotations

import functools
import hashlib
import re
import uuid
from dataclasses import dataclass
from typing import Literal, NamedTuple

import orjson

#: ``event_id = uuid5(EVENT_ID_NAMESPACE, idempotency_key)``.
EVENT_ID_NAMESPACE = uuid.NAMESPACE_URL
_NAMESPACE_BYTES = EVENT_ID_NAMESPACE.bytes

_NON_DIGITS = re.compile(r"[^0-9]+")

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


def digits(text: str) -> str:
    """Only the digits of a phone number written any way (``+55 (11) 98765-4321``)."""
    if text.isascii() and text.isdigit():
        return text
    return _NON_DIGITS.sub("", text)


def _user_part(text: str) -> tuple[str, str]:
    """(user without device / agent suffix, lower-case server) — the hot path of every JID."""
    user, at, server = text.strip().partition("@")
    return user.partition(":")[0].partition("_")[0], (server.lower() if at else "s.whatsapp.net")


def phone_of(text: str | None) -> str | None:
    """The phone digits a JID or number names, or None when it names no phone."""
    if not text:
        return None
    user, server = _user_part(text)
    if _SERVER_KINDS.get(server) != "pn":
        return None
    return digits(user) or None


def lid_of(text: str | None) -> str | None:
    """The LID digits a ``…@lid`` JID names, or None for any other JID."""
    if not text or "@" not in text:
        return None
    user, server = _user_part(text)
    if _SERVER_KINDS.get(server) != "lid":
        return None
    return digits(user) or None


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
    """
    phone: str | None = None
    lid: str | None = None
    for jid in jids:
        if not jid:
            continue
        kind, number = _classified(jid)
        if kind == "pn":
            if phone is None:
                phone = number
        elif kind == "lid" and lid is None:
            lid = number
        if phone is not None and lid is not None:
            break
    return Person(phone, lid, user_id or None)


@functools.lru_cache(maxsize=4096)
def _classified(jid: str) -> tuple[JidKind | None, str | None]:
    """(kind, digits) of one JID: what :func:`phone_of` / :func:`lid_of` would answer.

    Pure and asked for every party of every message; a conversation repeats the same few
    JIDs, so a bounded cache answers most of them without parsing.
    """
    user, server = _user_part(jid)
    kind = _SERVER_KINDS.get(server)
    return kind, (digits(user) or None) if kind in ("pn", "lid") else None


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
