"""Who may open the operator's console: the holder of an all-shoppers API token
(``[[api_tokens]]`` with ``shopper_id = "*"``), given as ``Authorization: Bearer`` or
once, through the login form, for a session cookie.

The cookie holds no token and no server state: ``<issued>.<HMAC-SHA256(token, issued)>``.
Any node sharing the configuration checks it (two ``wacanon serve`` behind one address
need nothing shared), it expires after :data:`SESSION_SECONDS`, and it dies with its
token: remove the token from the configuration and every session made with it is gone.
A form posted with the cookie also carries a CSRF value derived the same way (the
cookie is ``SameSite=Strict`` too); a Bearer request needs none — a browser never adds
that header to a cross-site post by itself.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

from wacanon.config import ApiTokenConfig

COOKIE = "wacanon_console"
SESSION_SECONDS = 12 * 3600
#: A session made by a node whose clock runs this much ahead is still good on the others.
CLOCK_SKEW_SECONDS = 60
_ISSUED = re.compile(r"[0-9]{1,12}")  # ASCII digits only: str.isdigit() takes '²'
ALL_SHOPPERS = "*"


@dataclass(frozen=True, slots=True)
class Credential:
    """An all-shoppers token, and the moment its session began (None: a Bearer request)."""

    token: str
    issued: int | None = None

    @property
    def csrf(self) -> str | None:
        if self.issued is None:
            return None
        return _mac(self.token, f"csrf:{self.issued}")

    def cookie(self) -> str:
        assert self.issued is not None
        return f"{self.issued}.{_mac(self.token, f'session:{self.issued}')}"


def _mac(token: str, message: str) -> str:
    return hmac.new(token.encode(), message.encode(), hashlib.sha256).hexdigest()


def session_of(tokens: Iterable[ApiTokenConfig], cookie: str, now: float) -> Credential | None:
    """The credential a session cookie stands for, if it is one this configuration made,
    for an all-shoppers token, and younger than :data:`SESSION_SECONDS`."""
    issued_text, _, mac = cookie.partition(".")
    if not _ISSUED.fullmatch(issued_text):
        return None
    issued = int(issued_text)
    if not issued - CLOCK_SKEW_SECONDS <= now < issued + SESSION_SECONDS:
        return None
    found = None
    for entry in tokens:
        expected = _mac(entry.token, f"session:{issued}")
        if (
            hmac.compare_digest(expected.encode(), mac.encode())
            and entry.shopper_id == ALL_SHOPPERS
        ):
            found = Credential(entry.token, issued)
    return found


def csrf_holds(credential: Credential, given: str | None) -> bool:
    expected = credential.csrf
    if expected is None:
        return True
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())
