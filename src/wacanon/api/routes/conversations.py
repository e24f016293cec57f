"""The read API under ``/v1``: conversations, their events and messages, and events.

Every request carries ``Authorization: Bearer <token>`` of an ``[[api_tokens]]`` entry; a
missing or wrong token is 401. A token belongs to one shopper (or ``"*"``, all): another
shopper's data is 404, exactly as if it did not exist — whether asked for by id or by a
``shopper_id`` filter. Handlers are plain functions: FastAPI runs them in its thread pool,
so their database reads never hold up the event loop (or the webhooks on it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from wacanon.api.deps import ServiceDep
from wacanon.api.replies import reply
from wacanon.api.tokens import matching_token
from wacanon.canonical.times import as_utc
from wacanon.store import conversation_reads as reads

router = APIRouter(prefix="/v1", tags=["read"])
ALL = "*"


class ApiError(Exception):
    """An answer other than 200, raised from deep in a handler or a dependency; the app
    answers it with :func:`api_error`."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


@dataclass(frozen=True, slots=True)
class Scope:
    """Which shoppers a token may see: one, or all (``shoppers`` None)."""

    shoppers: frozenset[str] | None

    def sees(self, shopper_id: str) -> bool:
        return self.shoppers is None or shopper_id in self.shoppers

    def narrowed(self, shopper_id: str | None) -> frozenset[str] | None:
        """The shoppers a query may return; another shopper's filter is 404."""
        if shopper_id is None:
            return self.shoppers
        if not self.sees(shopper_id):
            raise ApiError(404, f"no shopper {shopper_id!r}")
        return frozenset({shopper_id})


def token_scope(request: Request, service: ServiceDep) -> Scope:
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="wacanon"'}
    if scheme.lower() != "bearer" or not given.strip():
        raise ApiError(401, "missing bearer token (Authorization: Bearer <token>)", challenge)
    found = matching_token(service.settings.api_tokens, given.strip())
    if found is None:
        raise ApiError(401, "unknown bearer token", challenge)
    return Scope(None if found.shopper_id == ALL else frozenset({found.shopper_id}))


ScopeDep = Annotated[Scope, Depends(token_scope)]
Limit = Annotated[int, Query(ge=1, le=500)]


def api_error(request: Request, exc: Exception) -> Response:
    """The answer to :class:`ApiError` and to a forged cursor (exception handlers)."""
    if isinstance(exc, ApiError):
        return reply(exc.status, {"error": exc.message}, exc.headers)
    return reply(400, {"error": "cursor: not one this server gave out"})


def parse_time(text: str | None, name: str = "since") -> datetime | None:
    """A query parameter's RFC 3339 time (UTC when it names no offset)."""
    if text is None:
        return None
    try:
        return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise ApiError(400, f"{name}: expected an RFC 3339 time, got {text!r}") from None


def owned(connection: sa.Connection, scope: Scope, conversation_id: str) -> Any:
    row = reads.get_conversation(connection, conversation_id)
    if row is None or not scope.sees(row.shopper_id):
        raise ApiError(404, f"no conversation {conversation_id!r}")
    return row


def _page(page: reads.Page) -> Response:
    return reply(200, {"items": page.items, "next_cursor": page.next_cursor})


@router.get("/conversations")
def list_conversations(
    service: ServiceDep,
    scope: ScopeDep,
    shopper_id: str | None = None,
    status: Annotated[str | None, Query(pattern="^(open|closed)$")] = None,
    chat_type: Annotated[str | None, Query(pattern="^(private|group)$")] = None,
    since: str | None = None,
    cursor: str | None = None,
    limit: Limit = 50,
) -> Response:
    """Conversations, newest activity first: ``{"items": [...], "next_cursor"}``."""
    shoppers = scope.narrowed(shopper_id)
    with service.engine.connect() as connection:
        return _page(
            reads.list_conversations(
                connection,
                shoppers=shoppers,
                status=status,
                chat_type=chat_type,
                since=parse_time(since),
                cursor=cursor,
                limit=limit,
            )
        )


@router.get("/conversations/lookup")
def lookup(service: ServiceDep, scope: ScopeDep, shopper_id: str, wa_id: str) -> Response:
    """The conversation a customer id (a phone, ``lid:…`` or ``bsuid:…``) resolves to."""
    scope.narrowed(shopper_id)
    with service.engine.connect() as connection:
        row = reads.lookup(connection, shopper_id, wa_id)
        if row is None:
            raise ApiError(404, f"no conversation for {wa_id!r}")
        return reply(200, reads.conversation_dict(connection, row))


@router.get("/conversations/{conversation_id}")
def get_conversation(service: ServiceDep, scope: ScopeDep, conversation_id: str) -> Response:
    """One conversation with its ``participants``."""
    with service.engine.connect() as connection:
        item = reads.conversation_dict(connection, owned(connection, scope, conversation_id))
        item["participants"] = reads.participants_of(connection, conversation_id)
        return reply(200, item)


@router.get("/conversations/{conversation_id}/events")
def conversation_events(
    service: ServiceDep,
    scope: ScopeDep,
    conversation_id: str,
    cursor: str | None = None,
    limit: Limit = 100,
) -> Response:
    """Its canonical events in ``occurred_at`` order, routing fields filled."""
    with service.engine.connect() as connection:
        owned(connection, scope, conversation_id)
        return _page(reads.events_of(connection, conversation_id, cursor, limit))


@router.get("/conversations/{conversation_id}/messages")
def conversation_messages(
    service: ServiceDep,
    scope: ScopeDep,
    conversation_id: str,
    cursor: str | None = None,
    limit: Limit = 100,
) -> Response:
    """Its messages with their current status."""
    with service.engine.connect() as connection:
        owned(connection, scope, conversation_id)
        return _page(reads.messages_of(connection, conversation_id, cursor, limit))


@router.post("/conversations/{conversation_id}/close")
def close_conversation(service: ServiceDep, scope: ScopeDep, conversation_id: str) -> Response:
    """Close it now (``whatsapp.conversation.closed``, reason ``command``)."""
    with service.engine.connect() as connection:
        owned(connection, scope, conversation_id)
    closed = service.routing.router.close_conversation(conversation_id)
    with service.engine.connect() as connection:
        item = reads.conversation_dict(connection, owned(connection, scope, conversation_id))
    return reply(200, {**item, "closed_now": closed})


@router.get("/events")
def list_events(
    service: ServiceDep,
    scope: ScopeDep,
    shopper_id: str | None = None,
    type: str | None = None,
    since: str | None = None,
    cursor: str | None = None,
    limit: Limit = 100,
) -> Response:
    """Stored events, oldest first: ``{"items": [canonical event], "next_cursor"}``."""
    with service.engine.connect() as connection:
        return _page(
            reads.list_events(
                connection,
                shoppers=scope.narrowed(shopper_id),
                event_type=type,
                since=parse_time(since),
                cursor=cursor,
                limit=limit,
            )
        )
