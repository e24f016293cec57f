"""The exceptions wacanon raises on purpose, in one tree::

    WacanonError
    ├── UnknownProviderError   a provider name that is not in the registry
    ├── ConfigError            configuration that cannot be used (named key, problem)
    ├── VerificationError      a webhook whose signature / API key / token does not verify
    ├── StoreError             the database cannot be used (schema behind, …)
    │   └── DatabaseUnreachable    it does not answer (the server spools meanwhile)
    └── CouldNotCheck          `rollout check` / `doctor` could not measure (exit 2)

Bad *data* is never an exception: normalizers return error values
(:class:`wacanon.providers.common.NormalizeError`) so that one bad item does not lose
the rest of a batch.
"""

from __future__ import annotations


class WacanonError(Exception):
    """Base of every error wacanon raises on purpose."""


class UnknownProviderError(WacanonError, ValueError):
    """The provider name is not one wacanon knows."""

    def __init__(self, provider: str, known: tuple[str, ...]) -> None:
        self.provider = provider
        self.known = known
        super().__init__(f"unknown provider {provider!r}; expected one of: {', '.join(known)}")


class ConfigError(WacanonError):
    """Configuration that cannot be used; the message names the key and the problem."""


class VerificationError(WacanonError):
    """A webhook's signature, API key or token is missing or wrong."""


class StoreError(WacanonError):
    """The database cannot be used; driver errors are translated into this at the store edge."""


class DatabaseUnreachable(StoreError):
    """The database does not answer (down, refused, partitioned) — unlike a schema problem,
    this is expected to pass: the server starts anyway and spools until it answers."""


class CouldNotCheck(WacanonError):
    """``wacanon rollout check`` or ``wacanon doctor`` could not measure (a server that
    does not answer, or answers what cannot be read): exit 2, saying why."""
