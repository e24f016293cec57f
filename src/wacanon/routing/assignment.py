"""Assignment inside the projection: the rules that decide *when* a conversation is
assigned, and the bookkeeping of load and the waiting queue; :mod:`.policies` decides
*to whom*.

- A private conversation is assigned by its shopper's policy when it opens unassigned,
  reopens, or lost its SKM; when the seller writes from an account bound to them, the
  chat is theirs. Nobody with room: it waits in the shopper's queue, oldest first, and
  is assigned the moment an SKM's conversation closes (here) or the directory gains room.
- A group (``WHATSAPP_GROUP_ROUTING_ENABLED``) is claimed by the first SKM who writes in
  it (``entry_point``), and routed to an SKM a customer @mentions (``mention``). Reactions
  and forwarded messages never claim; the shopper's own account claims nothing.

Load is counted, not tracked: an SKM's open conversations are those the store did not
load plus the loaded ones open with their id now — so every path (close, merge, reopen)
is right without bookkeeping of its own.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import datetime

from wacanon.routing.facts import StoredEvent
from wacanon.routing.policies import Decision, Facts, Load, choose
from wacanon.routing.state import Assignment, Conversation, Lifecycle, RoutingState
from wacanon.routing.threads import identity_of_wa_id

MESSAGE_TYPES = frozenset({"whatsapp.message.inbound", "whatsapp.message.outbound"})
REACTION_TYPE = "whatsapp.message.reaction"


class Assigner:
    def __init__(self, state: RoutingState) -> None:
        self.state = state

    # ------------------------------------------------------------ load

    def pool(self, shopper: str, exclude: Conversation | None = None) -> list[Load]:
        directory = self.state.directory
        if directory is None:
            return []
        loaded = Counter(
            c.skm_id
            for c in self.state.by_id.values()
            if c.status == "open" and c.skm_id is not None and c is not exclude
        )
        return [
            Load(s.id, s.unloaded_open + loaded[s.id], s.capacity, s.active, s.last_assigned_at)
            for s in directory.of(shopper)
        ]

    # ------------------------------------------------------------ who acted

    def actor_skm(self, event: StoredEvent, shopper: str) -> str | None:
        """The SKM who acted in this event: recognised by ``wa_ids``; in a private chat,
        the seller writing from the account bound to them."""
        directory = self.state.directory
        if directory is None:
            return None
        actor = event.actor
        if actor.role == "business":
            if event.chat.type != "private":
                return None  # the shopper's own account in a group is not an SKM
            return directory.account_skms.get((event.source.provider, event.source.account_id))
        if actor.role == "system":
            return None
        ids = [i for i in (actor.wa_id, f"lid:{actor.lid}" if actor.lid else None) if i]
        ids += [f"bsuid:{actor.user_id}"] if actor.user_id else []
        found = directory.recognise(shopper, [x for x in map(identity_of_wa_id, ids) if x])
        return found.id if found is not None else None

    # ------------------------------------------------------------ rules

    def after_event(
        self, c: Conversation, event: StoredEvent, actor_skm: str | None, reopened: bool
    ) -> None:
        directory = self.state.directory
        if directory is None or not directory.of(c.shopper_id) or c.status != "open":
            return
        at = event.occurred_at
        if c.chat_type == "group":
            if c.shopper_id in directory.group_routing:
                self._group(c, event, actor_skm, at)
            return
        account = (event.source.provider, event.source.account_id)
        own = directory.account_skms.get(account)
        m = event.message
        if own is not None and actor_skm == own and c.skm_id != own and m is not None:
            self._claim(c, own, "own_account", "wrote from their own account", at)
            return
        if reopened or (c.skm_id is None and c.waiting_since is None):
            self._by_policy(c, account, at, reopened=reopened)

    def _group(
        self, c: Conversation, event: StoredEvent, actor_skm: str | None, at: datetime
    ) -> None:
        m = event.message
        if event.event_type not in MESSAGE_TYPES or m is None or m.forwarded:
            return
        if m.type == "reaction" or event.event_type == REACTION_TYPE:
            return  # engagement, never a claim
        if actor_skm is not None:
            if c.skm_id is None:
                self._claim(c, actor_skm, "entry_point", "wrote first in the group", at)
            return
        if event.actor.role != "customer" or self.state.directory is None:
            return
        for mentioned in m.mentions:
            identity = identity_of_wa_id(mentioned)
            skm = self.state.directory.recognise(c.shopper_id, [identity] if identity else [])
            if skm is not None:
                if skm.id != c.skm_id:
                    self._claim(c, skm.id, "mention", "was @mentioned by a customer", at)
                return

    def _claim(self, c: Conversation, skm_id: str, step: str, what: str, at: datetime) -> None:
        """A rule names the SKM; they still need room (capacity is never exceeded
        automatically)."""
        pool = self.pool(c.shopper_id, exclude=c)
        load = next((x for x in pool if x.skm_id == skm_id), None)
        if load is None or not load.has_room:
            return
        policy = "group" if c.chat_type == "group" else "rules"
        reason = f"{step}: {skm_id} {what} ({load.open}/{load.capacity})"
        self._assign(c, Decision(skm_id, policy, step, reason, tuple(pool)), at)

    def _facts(self, c: Conversation, account: tuple[str, str], reopened: bool) -> Facts:
        directory = self.state.directory
        assert directory is not None
        return Facts(
            account_skm=directory.account_skms.get(account),
            current_skm=None if reopened else c.skm_id,
            last_served=c.skm_id if reopened and c.skm_id else c.last_skm_id,
            default_skm=directory.default_skms.get(c.shopper_id),
            cursor=directory.cursors.get(c.shopper_id),
        )

    def _by_policy(
        self,
        c: Conversation,
        account: tuple[str, str],
        at: datetime,
        *,
        reopened: bool = False,
        losing: bool = False,
    ) -> None:
        """Assign by the shopper's policy. ``reopened``: its SKM served the last opening;
        ``losing``: its SKM can no longer hold it (deactivated). Either way, when it has to
        wait, the record names the SKM it had."""
        directory = self.state.directory
        assert directory is not None
        previous = c.skm_id if reopened or losing else None
        queue = self._queue(c.shopper_id)
        if queue and c not in queue:  # others wait already: behind them
            self._wait(c, at, previous=previous)
            self.drain(c.shopper_id, at)
            return
        decision = choose(
            directory.policy(c.shopper_id),
            self.pool(c.shopper_id, exclude=c),
            self._facts(c, account, reopened),
        )
        if decision is None:
            self._wait(c, at, previous=previous)
        elif decision.skm_id != c.skm_id:
            self._assign(c, decision, at)
        else:
            c.waiting_since = None

    # ------------------------------------------------------------ the queue

    def _queue(self, shopper: str) -> list[Conversation]:
        queue = self.state.waiting.setdefault(shopper, [])
        queue[:] = [
            q
            for q in queue
            if q.status == "open" and q.skm_id is None and q.waiting_since is not None
        ]
        return queue

    def _wait(self, c: Conversation, at: datetime, previous: str | None) -> None:
        if previous is not None:  # it had an SKM who has no room now: say so
            directory = self.state.directory
            policy = directory.policy(c.shopper_id) if directory else "default"
            reason = f"queue: {previous} and every other SKM are full or inactive; waiting"
            self._record(c, Assignment(None, previous, policy, "queue", reason), at)
            c.skm_id = None
        if c.waiting_since is None:
            c.waiting_since, c.changed = at, True
            self.state.waiting.setdefault(c.shopper_id, []).append(c)

    def drain(self, shopper: str, at: datetime) -> int:
        """Assign waiting conversations, oldest first, while someone has room."""
        directory = self.state.directory
        if directory is None:
            return 0
        done = 0
        queue = self._queue(shopper)
        while queue:
            c = queue[0]
            account = (c.provider, c.account_id)
            decision = choose(
                directory.policy(shopper), self.pool(shopper), self._facts(c, account, False)
            )
            if decision is None:
                break
            queue.pop(0)
            waited = c.waiting_since
            # An idle close is dated when the conversation went idle, which may be before
            # this one started waiting: it is assigned no earlier than it began to wait.
            when = at if waited is None or waited <= at else waited
            self._assign(c, decision, when, waited_since=waited)
            done += 1
        return done

    # ------------------------------------------------------------ recording

    def _assign(
        self, c: Conversation, d: Decision, at: datetime, waited_since: datetime | None = None
    ) -> None:
        directory = self.state.directory
        assert directory is not None
        reason = d.reason
        if waited_since is not None:
            reason = f"waited in the queue since {waited_since.isoformat()}; {reason}"
        record = Assignment(d.skm_id, c.skm_id, d.policy, d.step, reason, d.candidates)
        self._record(c, record, at)
        self._take(c, d.skm_id, at)
        if d.cursor is not None:
            directory.cursors[c.shopper_id] = d.cursor
            directory.changed_cursors.add(c.shopper_id)

    def _take(self, c: Conversation, skm_id: str, at: datetime) -> None:
        """The conversation is this SKM's now (it leaves the queue)."""
        c.skm_id = c.last_skm_id = skm_id
        c.waiting_since, c.assigned_at, c.changed = None, at, True
        directory = self.state.directory
        skm = directory.skms.get(skm_id) if directory is not None else None
        if skm is not None:
            skm.last_assigned_at, skm.changed = at, True

    def _record(
        self, c: Conversation, record: Assignment, at: datetime, *, given: bool = False
    ) -> None:
        c.assignments += 1
        c.changed = True
        self.state.emitted.append(
            Lifecycle("assigned", c, at, record.step, c.assignments, input=given, assignment=record)
        )

    # ------------------------------------------------------------ commands, directory changes

    def manual(self, c: Conversation, skm_id: str, at: datetime) -> Assignment | None:
        """Assign by command to the named SKM, even above capacity (the reason says so);
        None when it is theirs already. Raises ``LookupError`` when the shopper has no such
        SKM and ``ValueError`` when they are inactive. Recorded as an input: a rebuild
        replays it (:meth:`replay_manual`) instead of deciding again."""
        directory = self.state.directory
        skm = directory.skms.get(skm_id) if directory is not None else None
        if skm is None or skm.shopper_id != c.shopper_id:
            raise LookupError(skm_id)
        if not skm.active:
            raise ValueError(f"{skm_id} is inactive: activate them first")
        if c.skm_id == skm_id:
            return None
        pool = self.pool(c.shopper_id, exclude=c)
        load = next(x for x in pool if x.skm_id == skm_id)
        reason = f"manual: assigned to {skm_id} by hand ({load.open}/{load.capacity})"
        if c.status == "open" and not load.has_room:
            reason += "; above capacity (a manual assignment may exceed it)"
        previous = c.skm_id
        record = Assignment(skm_id, previous, "manual", "manual", reason, tuple(pool))
        self._record(c, record, at, given=True)
        self._take(c, skm_id, at)
        self._freed(c, previous, at)
        return record

    def replay_manual(self, c: Conversation, skm_id: str | None, at: datetime) -> None:
        """A manual assignment, replayed by a rebuild where it happened. An SKM who is
        inactive today cannot hold an open conversation: it goes by the policy, as a
        deactivation would have done."""
        previous = c.skm_id
        c.assignments += 1
        if skm_id is None:
            return
        self._take(c, skm_id, at)
        directory = self.state.directory
        skm = directory.skms.get(skm_id) if directory is not None else None
        if skm is not None and not skm.active and c.status == "open":
            self.lose(c, at)
        self._freed(c, previous, at)

    def lose(self, c: Conversation, at: datetime) -> None:
        """Its SKM can no longer hold this open conversation (deactivated): a private
        chat goes by the policy (or waits, naming them); a group is free for the next SKM
        who writes in it."""
        if c.status != "open" or c.skm_id is None or self.state.directory is None:
            return
        if c.chat_type == "group":
            previous = c.skm_id
            reason = f"deactivated: {previous} is inactive; the next SKM who writes claims it"
            self._record(c, Assignment(None, previous, "group", "deactivated", reason), at)
            c.skm_id, c.changed = None, True
            return
        self._by_policy(c, (c.provider, c.account_id), at, losing=True)

    def unanswered(self, c: Conversation, at: datetime, minutes: float) -> bool:
        """Its SKM left the customer waiting longer than the shopper allows: another SKM
        by the policy, the one who did not answer left out. Nobody else with room: it
        stays theirs (better someone than the queue). Whether it moved."""
        directory = self.state.directory
        left = c.skm_id
        if directory is None or left is None or c.status != "open" or c.chat_type != "private":
            return False
        pool = [x for x in self.pool(c.shopper_id, exclude=c) if x.skm_id != left]
        account = directory.account_skms.get((c.provider, c.account_id))
        facts = Facts(
            account_skm=None if account == left else account,
            default_skm=directory.default_skms.get(c.shopper_id),
            cursor=directory.cursors.get(c.shopper_id),
        )
        decision = choose(directory.policy(c.shopper_id), pool, facts)
        if decision is None:
            return False
        why = f"unanswered: {left} did not answer within {minutes:g} min; "
        self._assign(c, replace(decision, reason=why + decision.reason), at)
        self._freed(c, left, at)
        return True

    def _freed(self, c: Conversation, previous: str | None, at: datetime) -> None:
        """The SKM who had this open conversation has room again: the queue moves."""
        if c.status == "open" and previous is not None and previous != c.skm_id:
            self.drain(c.shopper_id, at)
