"""The reserved probe: ``wacanon rollout check`` sends webhooks of the simulated account
``wacanon-probe``, owned by the shopper ``wacanon-probe``, through the live endpoint.

A probe is the front of the rollout: it sees the flags the first shoppers of a phase see
(in every rollout list, at bucket 0 — :mod:`wacanon.flags`), so an allowlisted beta is
measured even when no real beta traffic arrives. It is never forwarded to a legacy
handler, never counted in ``/metrics`` (only in the check's own window), and the check
deletes what it stored. The name is refused as a configured shopper or account.
"""

from __future__ import annotations

from collections.abc import Collection

PROBE = "wacanon-probe"
PROBE_PROVIDER = "simulated"


def is_probe(provider: str, accounts: Collection[str]) -> bool:
    """A webhook that is a probe: the simulated provider, the probe account only."""
    return provider == PROBE_PROVIDER and len(accounts) == 1 and PROBE in accounts
