"""``wacanon rollout plan|apply|resume`` and ``wacanon rollback``: the seed checklist's
phases as runtime flag changes, and a rollback that a resume undoes without losing a
webhook (docs/rollout.md).

Every change goes through the override store, so running servers obey it within
``flag_refresh_seconds`` and nothing restarts. Like ``wacanon flags``, these commands
read this shell's environment beside the stored overrides: run them with the server's.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Annotated

import sqlalchemy as sa
import typer

from wacanon.cli import app, fail
from wacanon.cli.options import (
    ConfigOption,
    JsonOption,
    load_or_fail,
    print_json,
    store_at_head,
)
from wacanon.config import saved_trial_token
from wacanon.errors import ConfigError, CouldNotCheck
from wacanon.flags import GLOBAL, FlagSnapshot
from wacanon.probe import PROBE_PROVIDER
from wacanon.rollout import phases
from wacanon.rollout.apply import apply_step
from wacanon.rollout.check import FAIL, OK, SKIP, Check, Item, parse_window
from wacanon.rollout.phases import Step
from wacanon.rollout.rollback import ROLLBACK_VALUES, Progress, active, resume, roll_back
from wacanon.store.database import bounded_lock_waits, create_engine, first_line
from wacanon.store.repository import flag_overrides_map

rollout_app = typer.Typer(
    help="The seed checklist as commands: plan, apply, check, resume, drill.",
    no_args_is_help=True,
)
app.add_typer(rollout_app, name="rollout")


def _snapshot(engine: sa.Engine) -> FlagSnapshot:
    with engine.connect() as connection:
        return FlagSnapshot(env=dict(os.environ), overrides=flag_overrides_map(connection))


def _current(snapshot: FlagSnapshot) -> dict[str, str | None]:
    try:
        return phases.current(snapshot)
    except ConfigError as exc:
        raise fail(f"invalid flag: {exc}") from None


# ------------------------------------------------------------------ plan


@rollout_app.command("plan")
def plan_command(config: ConfigOption = None) -> None:
    """The seed's phases with the exact flag values of each step; ← marks the current one."""
    _, engine = store_at_head(config)
    snapshot = _snapshot(engine)
    now = phases.matching(_current(snapshot))
    allow = now.allow if now is not None else frozenset()
    typer.echo("The seed checklist's steps, in order (global flag values; docs/rollout.md):")
    for step in phases.plan():
        shown = Step(step.phase, step.percent, _shown_allow(step, allow))
        here = now is not None and (now.phase, now.percent) == (step.phase, step.percent)
        typer.echo("")
        typer.echo(f"{'←' if here else ' '} Phase {step.label}: {_title(step)}")
        for line in shown.lines():
            typer.echo(f"    {line}")
        typer.echo(f"    apply: wacanon rollout apply {_apply_args(step)}")
        typer.echo(f"    check: wacanon rollout check --phase {step.phase}")
    typer.echo("")
    if now is None:
        typer.echo(
            "the current global flags match no step exactly (`wacanon flags list`); "
            "`wacanon rollout apply` sets one"
        )
    else:
        typer.echo(f"← the current global flags are at Phase {now.label}")
    _note_shopper_overrides(snapshot)


def _title(step: Step) -> str:
    title = phases.TITLES[step.phase]
    if step.phase == 3:
        day = phases.PERCENTS.index(step.percent or 0) + 1
        return f"{title} (day {day}: {step.percent:g} % of the shoppers)"
    return title


def _shown_allow(step: Step, allow: frozenset[str]) -> frozenset[str]:
    if step.phase == 2:
        return allow or frozenset({"SHOPPER,…"})
    if step.phase == 3:
        return allow  # the beta's shoppers stay on until 100 %
    return frozenset()


def _apply_args(step: Step) -> str:
    if step.phase == 2:
        return "--phase 2 --allow SHOPPER [--allow SHOPPER…]"
    if step.phase == 3:
        return f"--phase 3 --percent {step.percent:g}"
    return f"--phase {step.phase}"


def _note_shopper_overrides(snapshot: FlagSnapshot) -> None:
    """Per-shopper overrides beat every global value a phase sets: say so."""
    own = sorted(
        (shopper, name)
        for shopper, name in snapshot.overrides
        if shopper != GLOBAL and name in phases.MANAGED
    )
    if own:
        listed = ", ".join(f"{name} for {shopper}" for shopper, name in own[:5])
        more = f" and {len(own) - 5} more" if len(own) > 5 else ""
        typer.echo(
            f"note: {len(own)} per-shopper override(s) beat these global values: "
            f"{listed}{more} (`wacanon flags list --overrides`)"
        )


# ------------------------------------------------------------------ apply

AllowOption = Annotated[
    list[str] | None,
    typer.Option(
        "--allow",
        help="Narrow what this phase changes to these shoppers (repeat, or comma-separated).",
    ),
]


@rollout_app.command("apply")
def apply_command(
    phase: Annotated[int, typer.Option("--phase", help="0, 1, 2 or 3.")],
    percent: Annotated[
        float | None,
        typer.Option("--percent", help="Phase 3: the share of shoppers (10, 25, 50, 75, 100)."),
    ] = None,
    allow: AllowOption = None,
    config: ConfigOption = None,
) -> None:
    """Set a phase's flags at runtime (no restart) and print what changed."""
    allowed = sorted({s.strip() for item in allow or [] for s in item.split(",") if s.strip()})
    try:
        step = phases.step_for(phase, percent, allowed)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    loaded, engine = store_at_head(config)
    snapshot = _snapshot(engine)
    now = _current(snapshot)  # a malformed environment value stops here, with its name
    if phase == 3 and not step.allow and (percent or 0) < 100:
        step = Step(3, percent, phases.allowed(now))  # the beta's shoppers stay on
    with engine.begin() as connection:
        changes = apply_step(connection, step, os.environ)
    scope = f" for {', '.join(sorted(step.allow))}" if step.allow else ""
    if not changes:
        typer.echo(f"already at Phase {step.label}{scope}: nothing changed")
    else:
        typer.echo(f"Phase {step.label}{scope}: {phases.TITLES[step.phase]}")
        for change in changes:
            typer.echo(f"  {change.name}: {_shown(change.before)} → {_shown(change.after)}")
        typer.echo(
            f"running servers obey within {loaded.settings.flag_refresh_seconds:g} s "
            "(flag_refresh_seconds), no restart"
        )
    typer.echo(f"verify: wacanon rollout check --phase {step.phase}")
    _note_shopper_overrides(_snapshot(engine))


def _shown(value: str | None) -> str:
    return "(none)" if value is None else (value or '""')


# ------------------------------------------------------------------ rollback and resume

ShopperOption = Annotated[
    str | None,
    typer.Option("--shopper", help="Only this shopper (default: every shopper)."),
]


@app.command("rollback")
def rollback_command(shopper: ShopperOption = None, config: ConfigOption = None) -> None:
    """Switch canonical events and routing off at runtime; `wacanon rollout resume` undoes it.

    Webhooks keep being verified, journaled (with their raw bodies) and forwarded to the
    legacy handler; nothing else is stored until the resume replays them.
    """
    loaded, engine = store_at_head(config)
    before = _snapshot(engine)
    record, new = roll_back(engine, shopper)
    after = _snapshot(engine)
    who = f"shopper {shopper}" if shopper else "every shopper"
    when = _iso(record.started_at)
    if new:
        typer.echo(f"rolled back {who} at {when}:")
    else:
        typer.echo(f"{who} is already rolled back (since {when}); its flags are off again:")
    for name in ROLLBACK_VALUES:
        typer.echo(_change(name, _value(before, name, shopper), _value(after, name, shopper)))
    own = sorted({s for s, _, _ in record.replaced if s != record.scope})
    if own:
        typer.echo(f"  and for {', '.join(own)}, whose own overrides would have beaten it")
    typer.echo(
        f"in force within {loaded.settings.flag_refresh_seconds:g} s on every server, no "
        "restart; webhooks are still journaled and forwarded to the legacy handler"
    )
    resume = "wacanon rollout resume" + (f" --shopper {shopper}" if shopper else "")
    typer.echo(f"undo, replaying what is journaled meanwhile: {resume}")


def _change(name: str, before: str, after: str) -> str:
    """One flag's line: ``before → after``, or its value when it did not change."""
    return f"  {name}: {before} (unchanged)" if before == after else f"  {name}: {before} → {after}"


def _value(snapshot: FlagSnapshot, name: str, shopper: str | None) -> str:
    try:
        return str(snapshot.boolean(name, shopper).value).lower()
    except ConfigError:
        found = snapshot.raw(name, shopper)
        return found[0] if found else "(unset)"


@rollout_app.command("resume")
def resume_command(shopper: ShopperOption = None, config: ConfigOption = None) -> None:
    """Restore what the last rollback replaced and replay everything journaled since it.

    Replayed events are deduplicated by their idempotency keys (nothing is stored twice),
    then routed here, in order, as live routing would have.
    """
    loaded, engine = store_at_head(config)
    record = active(engine, shopper)
    if record is None:
        which = f" for shopper {shopper}" if shopper else ""
        raise fail(f"no rollback in force{which}: nothing to resume", code=1)
    before = _snapshot(engine)
    scoped = None if record.scope == GLOBAL else record.scope
    who = "every shopper" if scoped is None else f"shopper {scoped}"
    typer.echo(f"resuming {who} (rolled back at {_iso(record.started_at)}):")

    def waiting(seconds: float) -> None:
        after = _snapshot(engine)
        for name in ROLLBACK_VALUES:
            typer.echo(_change(name, _value(before, name, scoped), _value(after, name, scoped)))
        own = sorted({s for s, _, _ in record.replaced if s != record.scope})
        if own:
            typer.echo(f"  and the per-shopper overrides of {', '.join(own)}, as they were")
        typer.echo(f"waiting {seconds:g} s for every server to obey the restored flags…", err=True)

    done = resume(
        engine,
        loaded.settings,
        os.environ,
        record,
        Progress(
            waiting=waiting,
            replayed=lambda t: typer.echo(f"... {t.webhooks} webhook(s) replayed", err=True),
            routed=lambda n: typer.echo(f"... {n} event(s) routed", err=True),
        ),
    )
    totals = done.totals
    typer.echo(
        f"resumed {who}: {totals.webhooks} webhook(s) replayed, {totals.new} new event(s), "
        f"{totals.duplicates} already stored, {totals.failing} failing, {done.routed} "
        f"event(s) routed, conversations {done.conversations_before} → "
        f"{done.conversations_after}, {done.seconds:.1f} s"
    )
    if totals.duplicates:
        typer.echo(
            "  (already stored: webhooks received before every server had obeyed the "
            "rollback, or redelivered by the provider — each fact is stored once)"
        )
    if totals.not_stored:
        typer.echo(
            f"wacanon: {totals.not_stored} webhook(s) not stored: shadow mode or canonical "
            "events are off for their shopper in this shell's environment and the stored "
            "overrides (`wacanon flags explain --shopper ID`)",
            err=True,
        )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# ------------------------------------------------------------------ check

MARKS = {OK: "✓", FAIL: "✗", SKIP: "–"}


@rollout_app.command("check")
def check_command(
    phase: Annotated[int, typer.Option("--phase", help="The phase to verify: 0, 1, 2 or 3.")],
    url: Annotated[
        str, typer.Option("--url", help="The running server to probe.")
    ] = "http://127.0.0.1:8000",
    window: Annotated[
        str, typer.Option("--window", help="How far back the server's figures go (≤ 1h).")
    ] = "15m",
    json_output: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Verify every machine-checkable item of a phase, each with what was measured.

    Exit 0 when every item holds, 1 naming each ✗, 2 when it could not check.
    """
    if phase not in phases.TITLES:
        raise fail(f"--phase: expected 0, 1, 2 or 3, got {phase}")
    try:
        seconds = parse_window(window)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    loaded = load_or_fail(config)  # a schema behind head is an item (✗), not a refusal
    engine = bounded_lock_waits(
        create_engine(loaded.settings.database_url), loaded.settings.writer_lock_timeout_seconds
    )
    token = loaded.settings.providers.secret_of(PROBE_PROVIDER) or saved_trial_token()
    check = Check(
        phase,
        loaded,
        engine,
        url.rstrip("/"),
        seconds,
        token,
        progress=lambda what: typer.echo(f"... {what}", err=True),
    )
    try:
        items = check.run()
    except CouldNotCheck as exc:
        raise fail(f"could not check: {exc}") from None
    except sa.exc.SQLAlchemyError as exc:  # a lock held elsewhere, the database gone
        raise fail(f"could not check: the database: {first_line(exc)}") from None
    finally:
        engine.dispose()
    failed = [item for item in items if item.status == FAIL]
    if json_output:
        print_json(
            {
                "phase": phase,
                "url": url,
                "window_seconds": seconds,
                "ok": not failed,
                "items": [item.as_dict() for item in items],
            }
        )
    else:
        _print_checklist(phase, url, window, items, failed)
    for item in failed:
        typer.echo(f"✗ {item.name}: {item.measured}", err=True)
    if failed:
        raise typer.Exit(1)


def _print_checklist(
    phase: int, url: str, window: str, items: list[Item], failed: list[Item]
) -> None:
    typer.echo(f"Phase {phase} ({phases.TITLES[phase]}) against {url}, window {window}:")
    width = max(len(item.name) for item in items)
    for item in items:
        required = f"   (needs {item.required})" if item.required and item.status == FAIL else ""
        typer.echo(f"  {MARKS[item.status]} {item.name.ljust(width)}  {item.measured}{required}")
    skipped = sum(item.status == SKIP for item in items)
    typer.echo(
        f"{len(items) - len(failed) - skipped} ✓, {len(failed)} ✗, {skipped} – "
        f"of {len(items)} item(s)"
    )


# ------------------------------------------------------------------ drill


@rollout_app.command("drill")
def drill_command(
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="An empty database to run on (migrated first); default: a scratch SQLite file.",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Rehearse a rollback and check that nothing was lost or stored twice.

    Enable, ingest, rollback, ingest, resume, ingest — then verify every event is stored
    once and every conversation as live routing would have made it; prints the figures."""
    from wacanon.config import normalize_database_url
    from wacanon.rollout.drill import DrillRefused, run_drill

    url = None
    if database_url is not None:
        try:
            url = normalize_database_url(database_url)
        except ValueError as exc:
            raise fail(f"--database-url: {exc}") from None
    try:
        report = run_drill(url, progress=lambda what: typer.echo(f"... {what}", err=True))
    except DrillRefused as exc:
        raise fail(str(exc)) from None
    except sa.exc.OperationalError as exc:
        raise fail(f"--database-url: cannot use the database: {exc.orig}") from None
    figures = report.figures()
    if json_output:
        print_json(figures)
    else:
        where = "a scratch SQLite file" if url is None else "the given database"
        typer.echo(
            f"drill on {where}: {figures['webhooks']} webhook(s), {figures['events']} "
            f"event(s), {figures['duplicates']} stored twice, {figures['replayed_webhooks']} "
            f"replayed by the resume, {figures['conversations']} conversation(s), "
            f"{figures['seconds']:.1f} s"
        )
        typer.echo(
            "nothing lost, nothing stored twice; conversations equal a rebuild's; the "
            "legacy handler got every webhook once, in order"
            if report.ok
            else "FAILED:"
        )
    for failure in report.failures:
        typer.echo(f"✗ {failure}", err=True)
    if report.failures:
        raise typer.Exit(1)
