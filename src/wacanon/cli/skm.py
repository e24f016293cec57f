"""``wacanon skm``, ``wacanon queue`` and ``wacanon conversations assign``: the SKM
directory at runtime, who waits for an SKM, and assignment by hand (``docs/assignment.md``).

A change here is what ``POST``/``PATCH /v1/skms`` do: under the routing lock, with its
consequences in the same transaction — a deactivated SKM's open conversations go to
others by the policy, and room gained takes the waiting queue's head at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from wacanon.canonical.schema import CanonicalEvent
from wacanon.canonical.times import as_utc
from wacanon.cli import app, fail
from wacanon.cli.conversations import conversations_app
from wacanon.cli.options import (
    ConfigOption,
    JsonOption,
    print_json,
    router_for,
    store_at_head,
    to_second,
)
from wacanon.config import DEFAULT_SKM_CAPACITY, SkmConfig
from wacanon.store import assignment as directory
from wacanon.store.score import skm_score

skm_app = typer.Typer(
    help="The SKM directory: add, list, show, update, deactivate, activate, score.",
    no_args_is_help=True,
)
queue_app = typer.Typer(help="Conversations waiting for an SKM with room.", no_args_is_help=True)
app.add_typer(skm_app, name="skm")
app.add_typer(queue_app, name="queue")

ShopperOption = Annotated[str | None, typer.Option("--shopper", help="Only this shopper's.")]
WaIdOption = Annotated[
    list[str] | None,
    typer.Option("--wa-id", help="A number they write from (repeat for several)."),
]


def _show_followed(stored: list[CanonicalEvent]) -> None:
    """The assignments a change caused, one line each."""
    for event in stored:
        a = event.assignment
        if a is None:
            continue
        who = a.skm_id or "(waits in the queue)"
        was = f" (was {a.previous_skm_id})" if a.previous_skm_id else ""
        typer.echo(f"  {event.routing.conversation_id} → {who}{was}: {a.reason}")
    if stored:
        typer.echo(f"{len(stored)} assignment(s) followed")


def _one(engine: Any, skm_id: str) -> dict[str, Any]:
    with engine.connect() as connection:
        found = directory.list_skms(connection, None, skm_id=skm_id)
    if not found:
        raise fail(f"no SKM {skm_id!r}", 1)
    return found[0]


def _line(item: dict[str, Any]) -> str:
    state = "active" if item["active"] else "inactive"
    load = f"{item['open']}/{item['capacity']}"
    return (
        f"{item['id']:20} {item['shopper_id'][:12]:12} {state:8} {load:>7}  "
        f"{to_second(item['last_assigned_at']):20}  {item['name']}"
    )


def _update(skm_id: str, changes: dict[str, Any], config: Any, said: str) -> None:
    loaded, engine = store_at_head(config)
    _one(engine, skm_id)
    try:
        stored = router_for(loaded.settings, engine).update_skm(skm_id, changes)
    except directory.DirectoryError as exc:
        raise fail(str(exc), 1 if exc.status == 404 else 2) from None
    typer.echo(f"{skm_id}: {said}")
    _show_followed(stored)


@skm_app.command("add")
def add_command(
    skm_id: Annotated[str, typer.Argument(help="A new SKM id (unique across shoppers).")],
    shopper: Annotated[str, typer.Option("--shopper", help="Their shopper (required).")],
    name: Annotated[str, typer.Option("--name", help="Their name (required).")],
    wa_id: WaIdOption = None,
    capacity: Annotated[
        int, typer.Option("--capacity", min=0, help="Most open conversations at once.")
    ] = DEFAULT_SKM_CAPACITY,
    inactive: Annotated[bool, typer.Option("--inactive", help="Add them inactive.")] = False,
    config: ConfigOption = None,
) -> None:
    """Add an SKM; waiting conversations go to them at once if they have room."""
    try:
        entry = SkmConfig(
            id=skm_id,
            shopper_id=shopper,
            name=name,
            wa_ids=wa_id or [],
            capacity=capacity,
            active=not inactive,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise fail(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    loaded, engine = store_at_head(config)
    try:
        stored = router_for(loaded.settings, engine).add_skm(entry)
    except directory.DirectoryError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"added {skm_id} to shopper {shopper} (capacity {capacity})")
    _show_followed(stored)


@skm_app.command("list")
def list_command(
    shopper: ShopperOption = None, as_json: JsonOption = False, config: ConfigOption = None
) -> None:
    """SKMs with their open conversations against their capacity."""
    _, engine = store_at_head(config)
    with engine.connect() as connection:
        items = directory.list_skms(connection, frozenset({shopper}) if shopper else None)
    if as_json:
        print_json({"items": items})
        return
    if not items:
        typer.echo("no SKMs" + (f" for shopper {shopper}" if shopper else ""))
        return
    typer.echo(f"{'ID':20} {'SHOPPER':12} {'STATE':8} {'OPEN':>7}  {'LAST ASSIGNED':20}  NAME")
    for item in items:
        typer.echo(_line(item))


@skm_app.command("show")
def show_command(
    skm_id: Annotated[str, typer.Argument(help="An SKM id.")],
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """One SKM."""
    _, engine = store_at_head(config)
    item = _one(engine, skm_id)
    if as_json:
        print_json(item)
        return
    for key in ("id", "shopper_id", "name", "capacity", "open", "active", "last_assigned_at"):
        typer.echo(f"{key:17} {item[key] if item[key] is not None else '–'}")
    typer.echo(f"{'wa_ids':17} {', '.join(item['wa_ids']) or '–'}")


@skm_app.command("update")
def update_command(
    skm_id: Annotated[str, typer.Argument(help="An SKM id.")],
    name: Annotated[str | None, typer.Option("--name", help="A new name.")] = None,
    wa_id: Annotated[
        list[str] | None,
        typer.Option("--wa-id", help="Their numbers (replaces the list; repeat for several)."),
    ] = None,
    no_wa_ids: Annotated[bool, typer.Option("--no-wa-ids", help="Clear their numbers.")] = False,
    capacity: Annotated[int | None, typer.Option("--capacity", min=0)] = None,
    config: ConfigOption = None,
) -> None:
    """Change an SKM's name, numbers or capacity (raising it assigns waiting
    conversations at once)."""
    changes: dict[str, Any] = {}
    if name is not None:
        if not name.strip():
            raise fail("--name may not be empty")
        changes["name"] = name
    if wa_id and no_wa_ids:
        raise fail("--wa-id and --no-wa-ids contradict each other")
    if wa_id or no_wa_ids:
        changes["wa_ids"] = list(wa_id or [])
    if capacity is not None:
        changes["capacity"] = capacity
    if not changes:
        raise fail("nothing to change: give --name, --wa-id, --no-wa-ids or --capacity")
    said = ", ".join(f"{k} = {v}" for k, v in changes.items())
    _update(skm_id, changes, config, said)


@skm_app.command("deactivate")
def deactivate_command(
    skm_id: Annotated[str, typer.Argument(help="An SKM id.")], config: ConfigOption = None
) -> None:
    """Take an SKM out of assignment; their open conversations go to others by the policy."""
    _update(skm_id, {"active": False}, config, "inactive")


@skm_app.command("activate")
def activate_command(
    skm_id: Annotated[str, typer.Argument(help="An SKM id.")], config: ConfigOption = None
) -> None:
    """Put an SKM back into assignment; waiting conversations go to them at once."""
    _update(skm_id, {"active": True}, config, "active")


@queue_app.command("list")
def queue_list(
    shopper: ShopperOption = None, as_json: JsonOption = False, config: ConfigOption = None
) -> None:
    """Who waits for an SKM with room, oldest first."""
    _, engine = store_at_head(config)
    with engine.connect() as connection:
        items = directory.queue_of(connection, frozenset({shopper}) if shopper else None)
    if as_json:
        print_json({"items": items})
        return
    if not items:
        typer.echo("nobody waits" + (f" for shopper {shopper}" if shopper else ""))
        return
    typer.echo(f"{'CONVERSATION':36}  {'SHOPPER':12} WAITING SINCE")
    for item in items:
        typer.echo(
            f"{item['conversation_id']:36}  {item['shopper_id'][:12]:12} "
            f"{to_second(item['waiting_since'])}"
        )


@conversations_app.command("assign")
def assign_command(
    conversation_id: Annotated[str, typer.Argument(help="A conversation id.")],
    skm_id: Annotated[str, typer.Argument(help="An SKM of its shopper.")],
    config: ConfigOption = None,
) -> None:
    """Assign a conversation by hand (a `whatsapp.thread.assigned` event, policy
    `manual`); may exceed the SKM's capacity, and says so."""
    loaded, engine = store_at_head(config)
    try:
        stored = router_for(loaded.settings, engine).assign_conversation(conversation_id, skm_id)
    except LookupError:
        raise fail(f"no conversation {conversation_id}", 1) from None
    except directory.DirectoryError as exc:
        raise fail(str(exc), 1 if exc.status == 404 else 2) from None
    if not stored or stored[0].assignment is None:
        typer.echo(f"{conversation_id} is {skm_id}'s already")
        return
    typer.echo(f"assigned {conversation_id} to {skm_id}: {stored[0].assignment.reason}")
    _show_followed(stored[1:])


def _time_option(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    try:
        return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise fail(
            f"{name}: expected an RFC 3339 time (2026-03-01T00:00:00Z), got {text!r}"
        ) from None


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}s"


@skm_app.command("score")
def score_command(
    shopper: Annotated[str, typer.Option("--shopper", help="The shopper (required).")],
    since: Annotated[str | None, typer.Option("--since", help="From this time (RFC 3339).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Until this time, excluded.")] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Each SKM's points and figures (docs/assignment.md has the weights)."""
    start, end = _time_option(since, "--since"), _time_option(until, "--until")
    if start is not None and end is not None and end <= start:
        raise fail("--until must be after --since")
    _, engine = store_at_head(config)
    with engine.connect() as connection:
        skms = directory.list_skms(connection, frozenset({shopper}))
        scores = [skm_score(connection, item["id"], start, end) for item in skms]
    if as_json:
        print_json({"items": [s.as_dict() for s in scores]})
        return
    if not scores:
        raise fail(f"no SKMs for shopper {shopper}", 1)
    typer.echo(
        f"{'SKM':20} {'POINTS':>7} {'OPEN':>5} {'CLOSED':>6} {'WAITING':>7} "
        f"{'FR P50':>7} {'FR P90':>7} {'UNANSWERED':>10}  RISK"
    )
    for s in scores:
        typer.echo(
            f"{s.skm_id:20} {s.points:>7} {s.open:>5} {s.closed:>6} {s.waiting:>7} "
            f"{_seconds(s.first_response_p50_s):>7} {_seconds(s.first_response_p90_s):>7} "
            f"{s.unanswered:>10}  {', '.join(s.risk_flags) or '–'}"
        )
