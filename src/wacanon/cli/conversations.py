"""``wacanon conversations`` and ``wacanon identities``: read, close and rebuild what
routing made of the events (``docs/routing.md``)."""

from __future__ import annotations

from typing import Annotated

import orjson
import typer

from wacanon.cli import app, fail
from wacanon.cli.options import (
    ConfigOption,
    JsonOption,
    print_json,
    router_for,
    store_at_head,
    to_second,
)
from wacanon.routing.threads import identity_of_wa_id
from wacanon.store import conversation_reads as reads
from wacanon.store.routing import routed_shoppers

conversations_app = typer.Typer(
    help="Conversations routing built: list, show, close, rebuild.", no_args_is_help=True
)
identities_app = typer.Typer(
    help="The identity graph: a customer's linked ids.", no_args_is_help=True
)
app.add_typer(conversations_app, name="conversations")
app.add_typer(identities_app, name="identities")
events_app = typer.Typer(help="Stored canonical events.", no_args_is_help=True)
app.add_typer(events_app, name="events")


@conversations_app.command("list")
def list_command(
    shopper: Annotated[str | None, typer.Option("--shopper", help="Only this shopper's.")] = None,
    status: Annotated[str | None, typer.Option("--status", help="open or closed.")] = None,
    chat_type: Annotated[str | None, typer.Option("--chat-type", help="private or group.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Conversations, newest activity first."""
    if status not in (None, "open", "closed"):
        raise fail(f"--status must be open or closed, got {status!r}")
    if chat_type not in (None, "private", "group"):
        raise fail(f"--chat-type must be private or group, got {chat_type!r}")
    _, engine = store_at_head(config)
    with engine.connect() as connection:
        page = reads.list_conversations(
            connection, shopper_id=shopper, status=status, chat_type=chat_type, limit=limit
        )
    if as_json:
        print_json({"items": page.items, "next_cursor": page.next_cursor})
        return
    if not page.items:
        typer.echo("no conversations" + (f" for shopper {shopper}" if shopper else ""))
        return
    typer.echo(
        f"{'ID':36}  {'SHOPPER':10} {'TYPE':7} {'STATUS':6}  {'LAST ACTIVITY':20}  {'SKM':14} CHAT"
    )
    for item in page.items:
        skm = item["skm_id"] or ("(waiting)" if item.get("waiting_since") else "–")
        typer.echo(
            f"{item['id']:36}  {item['shopper_id'][:10]:10} {item['chat_type']:7} "
            f"{item['status']:6}  {to_second(item['last_event_at']):20}  {skm[:14]:14} "
            f"{item['chat_id']}"
        )
    if page.next_cursor:
        typer.echo(f"(more: raise --limit; showing the newest {limit})")


@conversations_app.command("show")
def show_command(
    conversation_id: Annotated[str, typer.Argument(help="A conversation id.")],
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """One conversation: its ids, participants and messages with their current status."""
    _, engine = store_at_head(config)
    with engine.connect() as connection:
        row = reads.get_conversation(connection, conversation_id)
        if row is None:
            raise fail(f"no conversation {conversation_id}", 1)
        item = reads.conversation_dict(connection, row)
        item["participants"] = reads.participants_of(connection, conversation_id)
        item["messages"] = reads.messages_of(connection, conversation_id, limit=1000).items
    if as_json:
        print_json(item)
        return
    typer.echo(f"conversation {item['id']} ({item['status']})")
    for name in ("thread_key", "shopper_id", "chat_type", "chat_id", "skm_id", "opened_at",
                 "closed_at", "last_event_at", "first_response_at"):  # fmt: skip
        typer.echo(f"  {name:18} {item[name] if item[name] is not None else '–'}")
    if item.get("merged_into"):
        typer.echo(f"  {'merged_into':18} {item['merged_into']}")
    ids = ", ".join(f"{k}={v}" for k, v in item["identities"].items() if v)
    if ids:
        typer.echo(f"  {'identities':18} {ids}")
    typer.echo(f"participants ({len(item['participants'])})")
    for p in item["participants"]:
        left = f", left {p['left_at']}" if p["left_at"] else ""
        name = f" {p['display_name']!r}" if p["display_name"] else ""
        typer.echo(f"  {p['role']:8} {p['wa_id'] or 'lid:' + str(p['lid'])}{name}{left}")
    typer.echo(f"messages ({len(item['messages'])})")
    for m in item["messages"]:
        typer.echo(
            f"  {to_second(m['occurred_at']) if m['occurred_at'] else '(not arrived yet)':20}  "
            f"{m['direction'] or '?':8} "
            f"{m['type'] or '?':11} {m['status'] or '–':9} {m['message_id']}"
        )


@conversations_app.command("close")
def close_command(
    conversation_id: Annotated[str, typer.Argument(help="A conversation id.")],
    config: ConfigOption = None,
) -> None:
    """Close a conversation now (a `whatsapp.conversation.closed` event, reason `command`)."""
    loaded, engine = store_at_head(config)
    try:
        closed = router_for(loaded.settings, engine).close_conversation(conversation_id)
    except LookupError:
        raise fail(f"no conversation {conversation_id}", 1) from None
    typer.echo(f"closed {conversation_id}" if closed else f"{conversation_id} was not open")


@conversations_app.command("rebuild")
def rebuild_command(
    shopper: Annotated[
        str | None, typer.Option("--shopper", help="Only this shopper (default: all).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Recompute conversations from the stored events, exactly as live routing does.

    Run it after turning routing on for a shopper (a running server also does it by
    itself within seconds) or after a fix; events of shoppers with routing off stay
    passed over.
    """
    loaded, engine = store_at_head(config)
    router = router_for(loaded.settings, engine)
    with engine.connect() as connection:
        with_events = routed_shoppers(connection)
    if shopper is not None and shopper not in with_events:
        known = ", ".join(with_events) or "none yet"
        raise fail(f"no events for shopper {shopper!r} (shoppers with events: {known})")
    if shopper is not None and router.routing_off([shopper]):
        raise fail(
            f"routing is off for shopper {shopper} here, so a rebuild would leave it without "
            "conversations: run this with the server's environment, or turn it on with "
            f"`wacanon flags set WHATSAPP_ROUTING_ENABLED true --shopper {shopper}`"
        )

    def progress(_: str, done: int) -> None:
        typer.echo(f"  routed {done} events…", err=True)

    everyone = with_events if shopper is None else [shopper]
    for name in router.routing_off(everyone):
        typer.echo(f"wacanon: routing is off for shopper {name} here; left as it is", err=True)
    queued = router.rebuild(shopper, progress)
    total = sum(queued.values())
    typer.echo(f"rebuilt {len(queued)} shopper(s) from {total} events")
    with engine.connect() as connection:
        for name, count in sorted(queued.items()):
            made = reads.count_conversations(connection, name)
            typer.echo(f"  {name}: {count} events, {made} conversations")


@identities_app.command("show")
def identities_show(
    wa_id: Annotated[str, typer.Argument(help="A phone number, lid:<digits> or bsuid:<BSUID>.")],
    shopper: Annotated[str, typer.Option("--shopper", help="The shopper (required).")],
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """A customer's linked ids for one shopper (phone, LID, BSUID), first seen first."""
    if identity_of_wa_id(wa_id) is None:
        raise fail(
            f"{wa_id!r} is not a customer id: write a phone number (any spelling), "
            "lid:<digits> or bsuid:<BSUID>"
        )
    _, engine = store_at_head(config)
    with engine.connect() as connection:
        links = reads.identity_links(connection, shopper, wa_id)
        conversation = reads.lookup(connection, shopper, wa_id) if links else None
    if links is None:
        raise fail(f"no identity {wa_id!r} for shopper {shopper}", 1)
    rows = [{"identity": r.identity, "first_seen_at": reads.iso(r.first_seen_at)} for r in links]
    if as_json:
        print_json(
            {
                "shopper_id": shopper,
                "customer_id": links[0].customer_id,
                "identities": rows,
                "conversation_id": conversation.id if conversation is not None else None,
            }
        )
        return
    typer.echo(f"customer {links[0].customer_id} (shopper {shopper})")
    for r in rows:
        typer.echo(f"  {r['identity']:40} first seen {r['first_seen_at']}")
    if conversation is not None:
        typer.echo(f"conversation {conversation.id} ({conversation.status})")


@events_app.command("list")
def events_list(
    shopper: Annotated[str | None, typer.Option("--shopper", help="Only this shopper's.")] = None,
    event_type: Annotated[
        str | None, typer.Option("--type", help="e.g. whatsapp.message.inbound")
    ] = None,
    conversation: Annotated[
        str | None, typer.Option("--conversation", help="Only this conversation's.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Stored events (oldest first; a conversation's in occurred_at order), routing
    fields filled."""
    _, engine = store_at_head(config)
    with engine.connect() as connection:
        if conversation is not None:
            if reads.get_conversation(connection, conversation) is None:
                raise fail(f"no conversation {conversation}", 1)
            page = reads.events_of(connection, conversation, limit=limit)
        else:
            shoppers = frozenset({shopper}) if shopper else None
            page = reads.list_events(
                connection, shoppers=shoppers, event_type=event_type, limit=limit
            )
    items = page.items
    if conversation is not None and (shopper or event_type):
        items = [
            e
            for e in items
            if (shopper is None or e["routing"]["shopper_id"] == shopper)
            and (event_type is None or e["event_type"] == event_type)
        ]
    if as_json:
        for event in items:
            typer.echo(orjson.dumps(event).decode())
        return
    if not items:
        typer.echo("no events")
        return
    for e in items:
        who = e["actor"].get("wa_id") or e["actor"]["role"]
        conv = e["routing"].get("conversation_id") or "–"
        typer.echo(f"{to_second(e['occurred_at']):20}  {e['event_type']:34} {who:22} {conv}")
    if page.next_cursor:
        typer.echo(f"(more: raise --limit; showing {limit})")
