"""``GET /console``: the operator's console, server-rendered (Jinja2, no build step, no
script): the flags each shopper gets and the rollout phase they match, every node's live
rates and latency (each process publishes its window: :mod:`wacanon.store.node_windows`),
the stored figures (events, open and waiting
conversations per SKM, the latest events and dead letters), the spool, and a button
that replays the dead letters.

For an all-shoppers API token only (:mod:`wacanon.api.console_auth`): Bearer, or the
login form's session cookie. The page is refused to frames, never cached, and loads
nothing but its own stylesheet.
"""

from __future__ import annotations

import functools
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
from wacanon.ingest.window import LIVE_SECONDS, Counts, summarize
from wacanon.probe import PROBE
from wacanon.rollout import phases
from wacanon.store import node_windows
from wacanon.store.console_reads import ConsoleFigures, console_figures
from wacanon.store.repository import pending_dead_letters

router = APIRouter(include_in_schema=False)
log = structlog.get_logger("wacanon.console")

REFRESH_SECONDS = 10
#: A login or replay form is a few hundred bytes; nothing bigger is read.
MAX_FORM_BYTES = 4096
MAX_FORM_FIELDS = 8
ONE_SHOPPER = 'the console needs an all-shoppers token (shopper_id = "*")'
FORM_EXPIRED = "the form has expired: reload the console and try again"
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
TEMPLATES = Path(__file__).parent.parent / "templates"
_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _credential(request: Request, service: Service) -> Credential:
    """The caller's all-shoppers credential, or :class:`_Refused` (401: none or unknown;
    403: a token of one shopper)."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and given.strip():
        found = matching_token(service.settings.api_tokens, given.strip())
        if found is None:
            raise _Refused(401, "unknown bearer token")
        if found.shopper_id != ALL_SHOPPERS:
            raise _Refused(403, ONE_SHOPPER)
        return Credential(found.token)
    cookie = request.cookies.get(COOKIE)
    if cookie:
        session = session_of(service.settings.api_tokens, cookie, time.time())
        if session is not None:
            return session
        raise _Refused(401, "your session has ended: sign in again")
    raise _Refused(401, "")  # a first visit: the form, no complaint


async def _form_sender(request: Request, service: Service) -> Credential:
    """Who posted one of the console's own forms: signed in, and (with a cookie) the
    form's CSRF value right — what a form another site posts cannot have."""
    credential = _credential(request, service)
    if not csrf_holds(credential, (await _form(request)).get("csrf")):
        raise _Refused(403, FORM_EXPIRED)
    return credential


def _page(name: str, status: int = 200, **context: Any) -> Response:
    html = _templates.get_template(name).render(**context)
    return Response(html, status_code=status, media_type="text/html", headers=PAGE_HEADERS)


def _login(status: int, message: str) -> Response:
    """The sign-in form; ``message`` says what went wrong (empty on a first visit)."""
    response = _page("console_login.html", status, message=message)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="wacanon console"'
    return response


async def _form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body of at most :data:`MAX_FORM_BYTES`
    (what the console's own forms send; an empty body is an empty form)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise _Refused(413, "form too large")
    if body and kind != "application/x-www-form-urlencoded":
        raise _Refused(415, "send the form as application/x-www-form-urlencoded")
    try:
        fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=MAX_FORM_FIELDS)
    except ValueError:
        raise _Refused(400, "malformed form") from None
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
    return "between phases (see: wacanon flags explain --shopper ID)"


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


@dataclass(frozen=True, slots=True)
class _Live:
    """The live window of every node that published lately (this one's fresh from
    memory), added up, and each node's own figures."""

    summary: dict[str, Any]
    nodes: list[tuple[str, dict[str, Any]]]
    every_node: bool  # False: the database is away, this process only


def _read(service: Service) -> tuple[ConsoleFigures | None, _Live, int]:
    """The database's figures (None when it does not answer), the live windows, and
    this process's spool."""
    depth = service.spool.depth()
    own, _ = service.window.counts(LIVE_SECONDS, probes=False)
    windows: list[tuple[str, Counts]] = [(service.node, own)]
    figures = None
    try:
        with service.engine.connect() as connection:
            figures = console_figures(connection)
            others = node_windows.fresh(connection, datetime.now(UTC))
        windows += [(w.node, Counts.of(w.counts)) for w in others if w.node != service.node]
    except sa.exc.SQLAlchemyError as exc:
        log.warning("console: database unreachable", error=type(exc).__name__)
    total = Counts()
    for _, counts in windows:
        total.add(counts)
    live = _Live(
        summarize(total, LIVE_SECONDS),
        sorted((node, summarize(counts, LIVE_SECONDS)) for node, counts in windows),
        figures is not None,
    )
    return figures, live, depth


async def _console(
    service: Service,
    credential: Credential,
    replayed: ReplayTotals | None = None,
    status: int = 200,
) -> Response:
    figures, live, spool_depth = await run_in_threadpool(_read, service)
    return _page(
        "console.html",
        status,
        node=service.node,
        now=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        refresh=REFRESH_SECONDS,
        rollout=_rollout(service.flags.snapshot, service.settings.known_shoppers),
        labels=SWITCH_LABELS,
        live=live.summary,
        live_nodes=live.nodes,
        live_every_node=live.every_node,
        live_rate=live.summary["webhooks"] / LIVE_SECONDS,
        figures=figures,
        spool_depth=spool_depth,
        csrf=credential.csrf,
        cookie_session=credential.issued is not None,
        replayed=replayed,
        replay_failed=status == 503,
    )


@router.api_route("/console", methods=["GET", "HEAD"])
async def console(request: Request, service: ServiceDep) -> Response:
    try:
        credential = _credential(request, service)
    except _Refused as refused:
        return _login(refused.status, str(refused))
    return await _console(service, credential)


@router.get("/console/style.css")
async def style() -> Response:
    return Response(_css(), media_type="text/css", headers={"Cache-Control": "max-age=300"})


@functools.cache
def _css() -> bytes:
    """Read once: it ships with the package."""
    return (TEMPLATES / "console.css").read_bytes()


@router.get("/console/login")
@router.get("/console/logout")
@router.get("/console/replay")
async def back_to_console() -> Response:
    """The address bar after a form: the console itself."""
    return Response(status_code=303, headers={"Location": "/console"})


@router.post("/console/login")
async def login(request: Request, service: ServiceDep) -> Response:
    try:
        given = (await _form(request)).get("token", "").strip()
    except _Refused as refused:
        return _login(refused.status, str(refused))
    found = matching_token(service.settings.api_tokens, given) if given else None
    if found is None:
        log.warning("console: sign-in refused", reason="unknown token")
        return _login(401, "unknown token")
    if found.shopper_id != ALL_SHOPPERS:
        log.warning("console: sign-in refused", reason="one shopper's token")
        return _login(403, ONE_SHOPPER)
    session = Credential(found.token, int(time.time()))
    response = Response(status_code=303, headers={"Location": "/console"})
    secure = service.settings.console_secure_cookie
    response.set_cookie(
        COOKIE,
        session.cookie(),
        max_age=SESSION_SECONDS,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https" if secure is None else secure,
    )
    return response


@router.post("/console/logout")
async def logout(request: Request, service: ServiceDep) -> Response:
    """Forget this browser's session (its form carries the CSRF value: no other site can
    sign an operator out). Other sessions of the token end with the token."""
    try:
        await _form_sender(request, service)
    except _Refused as refused:
        return _login(refused.status, str(refused))
    response = Response(status_code=303, headers={"Location": "/console"})
    response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict")
    return response


@router.post("/console/replay")
async def replay_dead_letters(request: Request, service: ServiceDep) -> Response:
    """Replay every dead letter not yet replayed (as ``wacanon replay --dead-letter``),
    and show the console with the counts."""
    try:
        credential = await _form_sender(request, service)
    except _Refused as refused:
        return _login(refused.status, str(refused))
    try:
        totals = await run_in_threadpool(_replay, service)
    except sa.exc.SQLAlchemyError as exc:
        log.warning("console: replay failed, the database does not answer", error=str(exc))
        return await _console(service, credential, status=503)
    log.info("console: dead letters replayed", **totals.as_dict())
    return await _console(service, credential, replayed=totals)


def _replay(service: Service) -> ReplayTotals:
    with service.engine.connect() as connection:
        letters = pending_dead_letters(connection)
    totals = replay(service.engine, service.uncounted_pipeline, letters)
    service.routing.wake()  # the new events' conversations
    return totals
