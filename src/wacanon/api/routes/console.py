"""``GET /console``: the operator's console, server-rendered (Jinja2, no build step, no
script): the flags each shopper gets and the rollout phase they match, this process's
live rates and latency, every node's stored figures (events, open and waiting
conversations per SKM, the latest events and dead letters), the spool, and a button
that replays the dead letters.

For an all-shoppers API token only (:mod:`wacanon.api.console_auth`): Bearer, or the
login form's session cookie. The page is refused to frames, never cached, and loads
nothing but its own stylesheet.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jinja2
import sqlalchemy as sa
import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from wacanon.api.console_auth import (
    ALL_SHOPPERS,
    COOKIE,
    SESSION_SECONDS,
    Credential,
    csrf_holds,
    session_of,
)
from wacanon.api.deps import ServiceDep
from wacanon.api.service import Service
from wacanon.api.tokens import matching_token
from wacanon.errors import ConfigError
from wacanon.flags import ASSIGNMENT_POLICY, FlagSnapshot, known_shoppers
from wacanon.ingest.replay import ReplayTotals, replay
from wacanon.probe import PROBE
from wacanon.rollout import phases
from wacanon.store.console_reads import ConsoleFigures, console_figures
from wacanon.store.repository import pending_dead_letters

router = APIRouter(include_in_schema=False)
log = structlog.get_logger("wacanon.console")

#: The live figures' window (this process's webhooks).
LIVE_SECONDS = 300
REFRESH_SECONDS = 10
#: A login or replay form is a few hundred bytes; nothing bigger is read.
MAX_FORM_BYTES = 4096
SWITCH_LABELS = dict(
    zip(
        phases.SWITCHES,
        ("events", "shadow", "routing", "group routing", "comparative logs"),
        strict=True,
    )
)
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}
_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent.parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _tokens(service: Service) -> list[tuple[str, str]]:
    return [(t.token, t.shopper_id) for t in service.settings.api_tokens]


def _credential(request: Request, service: Service) -> Credential:
    """The caller's all-shoppers credential, or :class:`_Refused` (401: none or unknown;
    403: a token of one shopper)."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and given.strip():
        found = matching_token(_tokens(service), given.strip())
        if found is None:
            raise _Refused(401, "unknown bearer token")
        if found[1] != ALL_SHOPPERS:
            raise _Refused(403, 'the console needs an all-shoppers token (shopper_id = "*")')
        return Credential(found[0])
    cookie = request.cookies.get(COOKIE)
    if cookie:
        session = session_of(_tokens(service), cookie, time.time())
        if session is not None:
            return session
        raise _Refused(401, "your session has ended: sign in again")
    raise _Refused(401, "sign in with an all-shoppers API token")


def _page(name: str, status: int = 200, **context: Any) -> Response:
    html = _templates.get_template(name).render(**context)
    return Response(html, status_code=status, media_type="text/html", headers=PAGE_HEADERS)


def _login(status: int, message: str) -> Response:
    return _page("console_login.html", status, message=message)


async def _form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body of at most :data:`MAX_FORM_BYTES`."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise _Refused(413, "form too large")
    fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=8)
    return {name: values[0] for name, values in fields.items()}


@dataclass(frozen=True, slots=True)
class _ShopperRow:
    shopper: str
    values: dict[str, bool]
    policy: str
    phase: str


def _phase_name(values: dict[str, bool]) -> str:
    phase = phases.phase_of(values)
    if phase is not None:
        return "2–3 production" if phase == 2 else f"{phase} {phases.TITLES[phase].split(':')[0]}"
    if not values[phases.SWITCHES[0]]:
        return "none: canonical events off (rolled back?)"
    return "between phases (`wacanon flags explain --shopper ID`)"


def _rollout(snapshot: FlagSnapshot, configured: list[str]) -> dict[str, Any]:
    """The global step the flags are at, and each shopper's effective switches."""
    try:
        step = phases.matching(phases.current(snapshot))
    except ConfigError as exc:
        return {"step": None, "problem": f"invalid flag: {exc}", "rows": []}
    shoppers: list[str | None] = [
        s for s in known_shoppers(configured, snapshot.overrides) if s != PROBE
    ]
    rows = []
    for shopper in shoppers or [None]:
        values = {name: bool(snapshot.boolean(name, shopper).value) for name in phases.SWITCHES}
        rows.append(
            _ShopperRow(
                shopper or "(every shopper)",
                values,
                str(snapshot.string(ASSIGNMENT_POLICY, shopper).value),
                _phase_name(values),
            )
        )
    label = None
    if step is not None:
        label = f"Phase {step.label}: {phases.TITLES[step.phase]}"
        if step.allow:
            label += f" (allowlist: {', '.join(sorted(step.allow))})"
    return {"step": label, "problem": None, "rows": rows}


def _store(service: Service) -> tuple[ConsoleFigures | None, int]:
    """The database's figures (None when it does not answer) and this process's spool."""
    depth = service.spool.depth()
    try:
        with service.engine.connect() as connection:
            return console_figures(connection), depth
    except sa.exc.SQLAlchemyError as exc:
        log.warning("console: database unreachable", error=type(exc).__name__)
        return None, depth


def _replayed(query: dict[str, str]) -> dict[str, int] | None:
    names = ("webhooks", "new", "duplicates", "failing")
    if not all(query.get(n, "").isdigit() for n in names):
        return None
    return {n: int(query[n]) for n in names}


@router.get("/console")
async def console(request: Request, service: ServiceDep) -> Response:
    try:
        credential = _credential(request, service)
    except _Refused as refused:
        return _login(refused.status, str(refused))
    figures, spool_depth = await run_in_threadpool(_store, service)
    live = service.window.summary(LIVE_SECONDS, probes=False)  # on the loop: no lock
    return _page(
        "console.html",
        node=f"{socket.gethostname()} pid {os.getpid()}",
        now=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        refresh=REFRESH_SECONDS,
        rollout=_rollout(service.flags.snapshot, service.settings.known_shoppers),
        labels=SWITCH_LABELS,
        live=live,
        live_rate=live["webhooks"] / LIVE_SECONDS,
        figures=figures,
        spool_depth=spool_depth,
        csrf=credential.csrf,
        cookie_session=credential.issued is not None,
        replayed=_replayed(dict(request.query_params)),
    )


@router.get("/console/style.css")
async def style() -> Response:
    css = (Path(__file__).parent.parent / "templates" / "console.css").read_bytes()
    return Response(css, media_type="text/css", headers={"Cache-Control": "max-age=300"})


@router.post("/console/login")
async def login(request: Request, service: ServiceDep) -> Response:
    try:
        given = (await _form(request)).get("token", "").strip()
    except _Refused as refused:
        return _login(refused.status, str(refused))
    found = matching_token(_tokens(service), given) if given else None
    if found is None:
        log.warning("console: sign-in refused", reason="unknown token")
        return _login(401, "unknown token")
    if found[1] != ALL_SHOPPERS:
        log.warning("console: sign-in refused", reason="one shopper's token")
        return _login(403, 'the console needs an all-shoppers token (shopper_id = "*")')
    session = Credential(found[0], int(time.time()))
    response = Response(status_code=303, headers={"Location": "/console"})
    response.set_cookie(
        COOKIE,
        session.cookie(),
        max_age=SESSION_SECONDS,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/console/logout")
async def logout() -> Response:
    response = Response(status_code=303, headers={"Location": "/console"})
    response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict")
    return response


@router.post("/console/replay")
async def replay_dead_letters(request: Request, service: ServiceDep) -> Response:
    """Replay every dead letter not yet replayed (as ``wacanon replay --dead-letter``),
    then show the console with the counts."""
    try:
        credential = _credential(request, service)
        form = await _form(request)
        if not csrf_holds(credential, form.get("csrf")):
            raise _Refused(403, "the form has expired: reload the console and try again")
    except _Refused as refused:
        return _login(refused.status, str(refused))
    totals = await run_in_threadpool(_replay, service)
    log.info("console: dead letters replayed", **totals.as_dict())
    query = (
        f"webhooks={totals.webhooks}&new={totals.new}"
        f"&duplicates={totals.duplicates}&failing={totals.failing}"
    )
    return Response(status_code=303, headers={"Location": f"/console?{query}"})


def _replay(service: Service) -> ReplayTotals:
    with service.engine.connect() as connection:
        letters = pending_dead_letters(connection)
    totals = replay(service.engine, service.uncounted_pipeline, letters)
    service.routing.wake()  # the new events' conversations
    return totals
