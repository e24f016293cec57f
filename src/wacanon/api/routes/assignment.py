"""The assignment API under ``/v1``: the SKM directory, the waiting queue and each
conversation's assignment history (``docs/assignment.md``). Same tokens and scoping as
the read API: another shopper's SKM is 404, as if it did not exist."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from wacanon.api.deps import ServiceDep
from wacanon.api.replies import reply
from wacanon.api.routes.conversations import ApiError, ScopeDep, owned
from wacanon.store import assignment as directory
from wacanon.store import conversation_reads as reads

router = APIRouter(prefix="/v1", tags=["assignment"])


@router.get("/skms")
def list_skms(service: ServiceDep, scope: ScopeDep, shopper_id: str | None = None) -> Response:
    """The SKMs a token sees, with their open conversations: ``{"items": [...]}``."""
    with service.engine.connect() as connection:
        return reply(200, {"items": directory.list_skms(connection, scope.narrowed(shopper_id))})


@router.get("/skms/{skm_id}")
def get_skm(service: ServiceDep, scope: ScopeDep, skm_id: str) -> Response:
    with service.engine.connect() as connection:
        for item in directory.list_skms(connection, scope.shoppers):
            if item["id"] == skm_id:
                return reply(200, item)
    raise ApiError(404, f"no SKM {skm_id!r}")


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
