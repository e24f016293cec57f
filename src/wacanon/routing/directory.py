"""The SKM directory as one routing batch sees it: each shopper's SKMs, how to recognise
them (``wa_ids``), the accounts bound to one of them, and each shopper's rules.

The store fills it (``wacanon.store.assignment``); the projection only reads it, except
for what assignments change (an SKM's ``last_assigned_at``, round robin's cursor), which
it marks for the store to write back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from wacanon.routing.threads import identity_of_wa_id


@dataclass(slots=True)
class Skm:
    id: str
    shopper_id: str
    name: str
    wa_ids: tuple[str, ...]
    capacity: int
    active: bool
    last_assigned_at: datetime | None = None
    #: Their open conversations the batch did not load (the loaded ones are counted live).
    unloaded_open: int = 0
    changed: bool = False


@dataclass(slots=True)
class Directory:
    skms: dict[str, Skm] = field(default_factory=dict)
    #: (provider, account) → the SKM whose own number the account is.
    account_skms: Mapping[tuple[str, str], str] = field(default_factory=dict)
    default_skms: Mapping[str, str] = field(default_factory=dict)
    #: shopper → ``WHATSAPP_ASSIGNMENT_POLICY`` as its flags resolve.
    policies: Mapping[str, str] = field(default_factory=dict)
    #: Shoppers for whom ``WHATSAPP_GROUP_ROUTING_ENABLED`` is on.
    group_routing: frozenset[str] = frozenset()
    cursors: dict[str, str] = field(default_factory=dict)
    changed_cursors: set[str] = field(default_factory=set)
    _by_identity: dict[tuple[str, str], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for skm in sorted(self.skms.values(), key=lambda s: s.id):
            for wa_id in skm.wa_ids:
                identity = identity_of_wa_id(wa_id)
                if identity is not None:
                    self._by_identity.setdefault((skm.shopper_id, identity), skm.id)

    def of(self, shopper_id: str) -> list[Skm]:
        return sorted(
            (s for s in self.skms.values() if s.shopper_id == shopper_id), key=lambda s: s.id
        )

    def recognise(self, shopper_id: str, identities: list[str]) -> Skm | None:
        """The shopper's SKM one of these ids (graph spellings) belongs to."""
        for identity in identities:
            found = self._by_identity.get((shopper_id, identity))
            if found is not None:
                return self.skms[found]
        return None

    def policy(self, shopper_id: str) -> str:
        return self.policies.get(shopper_id, "default")
