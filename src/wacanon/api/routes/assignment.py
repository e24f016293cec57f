"""The assignment API under ``/v1``: the SKM directory, the waiting queue, manual
assignment and each conversation's assignment history (``docs/assignment.md``). Same
tokens and scoping as the read API: another shopper's SKM is 404, as if it did not
exist, and a shopper's token manages only that shopper's SKMs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from wacanon.api.deps import ServiceDep
from wacanon.api.replies import reply
from wacanon.api.routes.conversations import ApiError, Scope, ScopeDep, owned, parse_time
from wacanon.canonical.schema import CanonicalEvent
from wacanon.config import SkmConfig
from wacanon.store import assignment as directory
from wacanon.store import conversation_reads as reads
from wacanon.store.score import skm_score

router = APIRouter(prefix="/v1", tags=["assignment"])


class SkmPatch(BaseModel):
    """``PATCH /v1/skms/{id}``: any of the editable fields."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1)
    wa_ids: list[str] | None = None
    capacity: int | None = Field(default=None, ge=0)
    active: bool | None = None


class AssignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    skm_id: str = Field(min_length=1)


def _followed(stored: list[CanonicalEvent]) -> list[dict[str, Any]]:
    """The assignments a directory change caused, as the reply lists them."""
    out = []
    for event in stored:
        if event.assignment is None or event.routing.conversation_id is None:
            continue
        out.append(
            {
                "conversation_id": event.routing.conversation_id,
                "skm_id": event.assignment.skm_id,
                "previous_skm_id": event.assignment.previous_skm_id,
                "reason": event.assignment.reason,
            }
        )
    return out


def _skm(service: ServiceDep, scope: Scope, skm_id: str) -> dict[str, Any]:
    with service.engine.connect() as connection:
        for item in directory.list_skms(connection, scope.shoppers, skm_id=skm_id):
            return item
    raise ApiError(404, f"no SKM {skm_id!r}")


def _refused(exc: directory.DirectoryError) -> ApiError:
    return ApiError(exc.status, str(exc))


@router.get("/skms")
def list_skms(service: ServiceDep, scope: ScopeDep, shopper_id: str | None = None) -> Response:
    """The SKMs a token sees, with their open conversations: ``{"items": [...]}``."""
    with service.engine.connect() as connection:
        return reply(200, {"items": directory.list_skms(connection, scope.narrowed(shopper_id))})


@router.get("/skms/{skm_id}")
def get_skm(service: ServiceDep, scope: ScopeDep, skm_id: str) -> Response:
    return reply(200, _skm(service, scope, skm_id))


@router.get("/skms/{skm_id}/score")
def score(
    service: ServiceDep,
    scope: ScopeDep,
    skm_id: str,
    since: str | None = None,
    until: str | None = None,
) -> Response:
    """The SKM's points and figures over ``since`` ≤ t < ``until`` (docs/assignment.md):
    ``{skm_id, points, open, closed, waiting, first_response_p50_s,
    first_response_p90_s, unanswered, risk_flags}``."""
    start, end = parse_time(since, "since"), parse_time(until, "until")
    if start is not None and end is not None and end <= start:
        raise ApiError(400, "until: must be after since")
    _skm(service, scope, skm_id)
    with service.engine.connect() as connection:
        return reply(200, skm_score(connection, skm_id, start, end).as_dict())


@router.post("/skms")
def add_skm(service: ServiceDep, scope: ScopeDep, body: SkmConfig) -> Response:
    """A new SKM; 201 with the SKM and the ``assignments`` their room made at once (the
    queue's head)."""
    scope.narrowed(body.shopper_id)
    try:
        stored = service.routing.router.add_skm(body)
    except directory.DirectoryError as exc:
        raise _refused(exc) from None
    return reply(201, {**_skm(service, scope, body.id), "assignments": _followed(stored)})


@router.patch("/skms/{skm_id}")
def update_skm(service: ServiceDep, scope: ScopeDep, skm_id: str, body: SkmPatch) -> Response:
    """Change name, wa_ids, capacity or active; the SKM and the ``assignments`` that
    followed (a deactivated SKM's open conversations reassigned; the queue's head when
    someone gained room)."""
    _skm(service, scope, skm_id)  # another shopper's: 404
    changes = body.model_dump(exclude_unset=True)
    if any(value is None for value in changes.values()):
        empty = next(k for k, v in changes.items() if v is None)
        raise ApiError(422, f"{empty}: may not be null")
    try:
        stored = service.routing.router.update_skm(skm_id, changes)
    except directory.DirectoryError as exc:
        raise _refused(exc) from None
    return reply(200, {**_skm(service, scope, skm_id), "assignments": _followed(stored)})


@router.get("/queue")
def queue(service: ServiceDep, scope: ScopeDep, shopper_id: str | None = None) -> Response:
    """Conversations waiting for an SKM with room, oldest first."""
    with service.engine.connect() as connection:
        return reply(200, {"items": directory.queue_of(connection, scope.narrowed(shopper_id))})


@router.get("/conversations/{conversation_id}/assignments")
def assignments(service: ServiceDep, scope: ScopeDep, conversation_id: str) -> Response:
    """Every assignment of the conversation with its reason, oldest first."""
    with service.engine.connect() as connection:
        owned(connection, scope, conversation_id)
        return reply(200, {"items": reads.assignments_of(connection, conversation_id)})


@router.post("/conversations/{conversation_id}/assign")
def assign(
    service: ServiceDep, scope: ScopeDep, conversation_id: str, body: AssignRequest
) -> Response:
    """Assign to an SKM of its shopper by hand, even above capacity (the reason says
    so): the conversation plus ``assigned_now`` (false when it was theirs already), the
    ``assignment`` and the ``assignments`` that followed (the room it freed)."""
    with service.engine.connect() as connection:
        owned(connection, scope, conversation_id)
    try:
        stored = service.routing.router.assign_conversation(conversation_id, body.skm_id)
    except directory.DirectoryError as exc:
        raise _refused(exc) from None
    except LookupError:  # gone meanwhile (a rebuild)
        raise ApiError(404, f"no conversation {conversation_id!r}") from None
    with service.engine.connect() as connection:
        item = reads.conversation_dict(connection, owned(connection, scope, conversation_id))
    assignment = None
    if stored and stored[0].assignment is not None:
        assignment = stored[0].assignment.model_dump(mode="json")
    return reply(
        200,
        {
            **item,
            "assigned_now": bool(stored),
            "assignment": assignment,
            "assignments": _followed(stored[1:]),
        },
    )
