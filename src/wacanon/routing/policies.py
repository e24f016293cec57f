"""Assignment policies: which SKM a private conversation goes to, and why.

Pure and deterministic: the same pool, conversation facts and cursor give the same
decision, and every decision says which step decided and what each earlier step found
(the ``reason`` readers see at ``/v1/conversations/{id}/assignments``). Capacity is hard:
no policy returns an SKM who is inactive or has ``open >= capacity``; when nobody has
room the answer is None and the conversation waits in its shopper's queue.

Policies (``WHATSAPP_ASSIGNMENT_POLICY``, see ``docs/assignment.md``):

- ``default``: the account's own SKM → the current SKM → the SKM who served this
  customer last → the shopper's ``default_skm`` → least loaded;
- ``sticky``: the SKM who served this customer last → round robin;
- ``round_robin``: the next SKM with room after the shopper's cursor, in id order;
- ``least_loaded``: the lowest ``open / capacity``; ties → longest since their last
  assignment, then id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

POLICIES = ("default", "sticky", "round_robin", "least_loaded")

_NEVER = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Load:
    """One SKM as a decision sees them."""

    skm_id: str
    open: int
    capacity: int
    active: bool = True
    last_assigned_at: datetime | None = None

    @property
    def has_room(self) -> bool:
        return self.active and self.open < self.capacity

    def describe(self) -> str:
        if not self.active:
            return f"{self.skm_id} is inactive"
        return f"{self.skm_id} is full ({self.open}/{self.capacity})"


@dataclass(frozen=True, slots=True)
class Facts:
    """What a policy knows of the conversation (all optional)."""

    account_skm: str | None = None
    current_skm: str | None = None
    last_served: str | None = None
    default_skm: str | None = None
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    skm_id: str
    policy: str
    step: str
    reason: str
    candidates: tuple[Load, ...]
    #: round robin's cursor after this decision (None: unchanged).
    cursor: str | None = None


@dataclass(slots=True)
class _Notes:
    """What each step found, in order: the decision's ``reason``."""

    parts: list[str] = field(default_factory=list)

    def passed(self, step: str, why: str) -> None:
        self.parts.append(f"{step}: {why}")

    def text(self, step: str, why: str) -> str:
        return "; ".join([*self.parts, f"{step}: {why}"])


def choose(policy: str, pool: Sequence[Load], facts: Facts) -> Decision | None:
    """The SKM this policy picks from ``pool`` (the shopper's SKMs), or None: nobody has
    room. Raises ``ValueError`` for an unknown policy name."""
    if policy not in POLICIES:
        raise ValueError(f"unknown assignment policy {policy!r}; known: {', '.join(POLICIES)}")
    ordered = tuple(sorted(pool, key=lambda load: load.skm_id))
    by_id = {load.skm_id: load for load in ordered}
    notes = _Notes()

    def named(step: str, skm_id: str | None, what: str) -> Decision | None:
        if skm_id is None:
            return None
        load = by_id.get(skm_id)
        if load is None:
            notes.passed(step, f"{skm_id} is not in the directory")
            return None
        if not load.has_room:
            notes.passed(step, load.describe())
            return None
        why = f"{skm_id} {what} ({load.open}/{load.capacity})"
        return Decision(skm_id, policy, step, notes.text(step, why), ordered)

    if policy == "default":
        for step, skm_id, what in (
            ("account", facts.account_skm, "owns the account the customer wrote to"),
            ("current", facts.current_skm, "already has this conversation"),
            ("last_served", facts.last_served, "served this customer last"),
            ("default_skm", facts.default_skm, "is the shopper's default SKM"),
        ):
            found = named(step, skm_id, what)
            if found is not None:
                return found
        return _least_loaded(policy, ordered, notes)
    if policy == "sticky":
        found = named(
            "last_served", facts.last_served or facts.current_skm, "served this customer last"
        )
        return found or _round_robin(policy, ordered, facts.cursor, notes)
    if policy == "round_robin":
        return _round_robin(policy, ordered, facts.cursor, notes)
    return _least_loaded(policy, ordered, notes)


def _least_loaded(policy: str, ordered: tuple[Load, ...], notes: _Notes) -> Decision | None:
    room = [load for load in ordered if load.has_room]
    if not room:
        return None
    best = min(
        room,
        key=lambda load: (
            load.open / load.capacity,
            load.last_assigned_at is not None,  # never assigned: longest since
            load.last_assigned_at or _NEVER,
            load.skm_id,
        ),
    )
    why = f"{best.skm_id} has the lowest load ({best.open}/{best.capacity})"
    return Decision(best.skm_id, policy, "least_loaded", notes.text("least_loaded", why), ordered)


def _round_robin(
    policy: str, ordered: tuple[Load, ...], cursor: str | None, notes: _Notes
) -> Decision | None:
    """The first SKM with room after the cursor, in id order, wrapping around."""
    after = [load for load in ordered if cursor is None or load.skm_id > cursor]
    before = [load for load in ordered if cursor is not None and load.skm_id <= cursor]
    for load in (*after, *before):
        if load.has_room:
            why = (
                f"{load.skm_id} is next after {cursor or 'the start'} ({load.open}/{load.capacity})"
            )
            return Decision(
                load.skm_id,
                policy,
                "round_robin",
                notes.text("round_robin", why),
                ordered,
                cursor=load.skm_id,
            )
    return None
