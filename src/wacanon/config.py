"""Configuration: ``wacanon.toml`` (path from ``--config`` or ``WACANON_CONFIG``) plus environment.

One settings class validates everything at start-up, so a bad file stops the server
with a message naming the key and the problem instead of failing on the first webhook.
``WACANON_DATABASE_URL`` overrides ``database_url``.

Environment references in string values of the file:

- ``${NAME}`` (``NAME`` = letters, digits and ``_``, not starting with a digit) is
  replaced by the variable's value; a reference to an unset variable leaves that value
  unset (a provider without its secret refuses webhooks) and the start-up lines say so.
- ``$$`` is a literal ``$`` (``"pa$$word"`` is ``pa$word``).
- A ``$`` followed by anything but a name character or ``{`` (a space, ``!``, the end of
  the value) is a literal ``$``.
- Anything else that starts like a reference — ``$NAME`` without braces, an unclosed
  ``${NAME``, an empty ``${}``, ``${1BAD}`` — refuses to load, naming the key: a typo
  must not silently become the literal secret.
"""

from __future__ import annotations

import os
import re
import secrets
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import structlog
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from wacanon.errors import ConfigError
from wacanon.files import loose_mode
from wacanon.probe import PROBE, PROBE_PROVIDER

DEFAULT_CONFIG_NAME = "wacanon.toml"
DEFAULT_DATABASE_URL = "sqlite:///./wacanon.db"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Every ``$`` and what follows it: ``$$``, ``${...}`` (closed or not), ``$word``, or a lone ``$``.
_DOLLAR = re.compile(r"\$(\$|\{[^}]*\}?|[A-Za-z0-9_]+)?")
#: First trial: ``wacanon simulate``'s accounts name their shopper (sim-shop-2-main → shop-2).
_TRIAL_SIM_ACCOUNT = re.compile(r"sim-shop-([1-9][0-9]*)-")
TRIAL_SIMULATED_SHOPPERS = 3  # `wacanon simulate --shoppers` default

log = structlog.get_logger("wacanon.config")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Secrets(_Strict):
    """A provider section: a blank secret is no secret (never an HMAC key of "")."""

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value


class CloudApiConfig(_Secrets):
    app_secret: str | None = None
    verify_token: str | None = None
    allow_unsigned: bool = False


class EvolutionConfig(_Secrets):
    api_key: str | None = None
    allow_unsigned: bool = False


class BaileysConfig(_Secrets):
    secret: str | None = None
    allow_unsigned: bool = False


class SimulatedConfig(_Secrets):
    token: str | None = None
    allow_unsigned: bool = False


class ProvidersConfig(_Strict):
    cloud_api: CloudApiConfig = CloudApiConfig()
    evolution: EvolutionConfig = EvolutionConfig()
    baileys: BaileysConfig = BaileysConfig()
    simulated: SimulatedConfig = SimulatedConfig()

    def secret_of(self, provider: str) -> str | None:
        """The one secret that verifies a provider's webhooks."""
        match provider:
            case "cloud_api":
                return self.cloud_api.app_secret
            case "evolution":
                return self.evolution.api_key
            case "baileys":
                return self.baileys.secret
            case _:
                return self.simulated.token

    def allows_unsigned(self, provider: str) -> bool:
        section: CloudApiConfig | EvolutionConfig | BaileysConfig | SimulatedConfig = getattr(
            self, provider
        )
        return section.allow_unsigned


_LEGACY_URL = r"^https?://[^\s/?#]+[^\s#]*$"


class AccountConfig(_Strict):
    provider: Literal["cloud_api", "evolution", "baileys", "simulated"]
    account_id: str = Field(min_length=1)
    shopper_id: str = Field(min_length=1)
    #: The seller's own number: this account's private chats are this SKM's.
    skm_id: str | None = Field(default=None, min_length=1)
    #: The team's existing handler for this account's webhooks (beats ``[legacy]``).
    legacy_url: str | None = Field(default=None, pattern=_LEGACY_URL)


class LegacyConfig(_Strict):
    """``[legacy]``: where each provider's webhooks went before wacanon (forwarded
    byte-identical; docs/operations.md, "Legacy passthrough")."""

    cloud_api: str | None = Field(default=None, pattern=_LEGACY_URL)
    evolution: str | None = Field(default=None, pattern=_LEGACY_URL)
    baileys: str | None = Field(default=None, pattern=_LEGACY_URL)
    simulated: str | None = Field(default=None, pattern=_LEGACY_URL)


DEFAULT_SKM_CAPACITY = 20


class SkmConfig(_Strict):
    """One sales agent (``[[skms]]``); seeds the runtime directory (docs/assignment.md)."""

    id: str = Field(min_length=1, max_length=128)
    shopper_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    #: The WhatsApp numbers they write from: how they are recognised in groups.
    wa_ids: list[str] = Field(default_factory=list)
    capacity: int = Field(default=DEFAULT_SKM_CAPACITY, ge=0)
    active: bool = True


class ApiTokenConfig(_Strict):
    """A bearer token of the read API (``[[api_tokens]]``): one shopper's, or ``"*"``."""

    token: str = Field(min_length=16)
    shopper_id: str = Field(min_length=1)


DEFAULT_CLOSE_AFTER_HOURS = 24.0


class ShopperConfig(_Strict):
    """A shopper's own settings (``[[shoppers]]``); the assignment issue extends it."""

    id: str = Field(min_length=1)
    #: A conversation closes after this long without a message either way (the
    #: WhatsApp service window is 24 h).
    close_after_hours: float = Field(default=DEFAULT_CLOSE_AFTER_HOURS, gt=0)
    #: The ``default`` policy's fallback SKM (one of this shopper's ``[[skms]]``).
    default_skm: str | None = Field(default=None, min_length=1)
    #: A private conversation whose customer waits longer than this for the first reply
    #: of the SKM it was assigned to goes to another SKM by the policy (off: None).
    reassign_unanswered_minutes: float | None = Field(default=None, gt=0)


class Settings(BaseSettings):
    """Everything ``wacanon serve`` needs, validated.

    Any key can also come from the environment as ``WACANON_<KEY>`` (nested keys with
    ``__``, e.g. ``WACANON_PROVIDERS__CLOUD_API__APP_SECRET``); the environment beats
    the file, so ``WACANON_DATABASE_URL`` overrides ``database_url``.
    """

    model_config = SettingsConfigDict(
        env_prefix="WACANON_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    database_url: str = DEFAULT_DATABASE_URL
    default_shopper_id: str | None = None
    providers: ProvidersConfig = ProvidersConfig()
    accounts: list[AccountConfig] = Field(default_factory=list)
    shoppers: list[ShopperConfig] = Field(default_factory=list)
    skms: list[SkmConfig] = Field(default_factory=list)
    api_tokens: list[ApiTokenConfig] = Field(default_factory=list)
    #: The console's session cookie is ``Secure``: true, false, or (unset) when the
    #: request came over https — behind a TLS proxy, as uvicorn reads X-Forwarded-Proto
    #: from the addresses in FORWARDED_ALLOW_IPS (default 127.0.0.1).
    console_secure_cookie: bool | None = None
    legacy: LegacyConfig = LegacyConfig()
    #: A legacy handler slower than this: the provider gets 502 (and retries).
    legacy_timeout_seconds: float = Field(default=10.0, gt=0)
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    # Slow and greedy clients (see wacanon.api.limits and docs/operations.md, "Limits").
    header_read_timeout_seconds: float = Field(default=10.0, gt=0)
    body_read_timeout_seconds: float = Field(default=10.0, gt=0)
    max_inflight_body_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    max_connections: int = Field(default=1000, gt=0)
    keep_alive_timeout_seconds: int = Field(default=5, gt=0)
    #: Python's GIL switch interval; None: chosen by database (see ``Service.start``).
    gil_switch_interval_seconds: float | None = Field(default=None, gt=0, le=0.1)
    #: ``wacanon serve`` commits in a child process of each worker, fed and answered by
    #: its event loop (see ``wacanon.ingest.writer_process``); false: a thread of it.
    writer_process: bool = True
    spool_path: str = "./wacanon-spool"
    #: How long the writer waits for a lock held elsewhere (a command holding SQLite's
    #: write lock; LOCK TABLE, VACUUM FULL or a migration on PostgreSQL) before it sends
    #: the batch to the spool; also the lock wait of ``wacanon doctor`` and ``rollout check``.
    #: At most 5 s: a webhook's answer may wait for two such waits (a drain attempt's, then
    #: its own), and past 10 s of silence the writer process is reported stuck.
    writer_lock_timeout_seconds: float = Field(default=5.0, gt=0, le=5)
    flag_refresh_seconds: float = Field(default=2.0, gt=0, le=5)
    #: The share of webhooks ``WACANON_COMPARATIVE_LOGS`` compares (docs/rollout.md).
    comparative_logs_sample_rate: float = Field(default=0.01, gt=0, le=1)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # Set by :func:`first_trial` only (not a key of the file or the environment).
    _first_trial: bool = PrivateAttr(default=False)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        return normalize_database_url(value)

    @model_validator(mode="after")
    def _one_body_fits_in_flight(self) -> Settings:
        """A legal body that could never fit the in-flight bound would get 503 forever."""
        if self.max_inflight_body_bytes < self.max_body_bytes:
            raise ValueError(
                f"max_inflight_body_bytes ({self.max_inflight_body_bytes}) must be at least "
                f"max_body_bytes ({self.max_body_bytes})"
            )
        return self

    @model_validator(mode="after")
    def _probe_is_reserved(self) -> Settings:
        """``wacanon-probe`` is `wacanon rollout check`'s own shopper and account."""
        named = [
            ("default_shopper_id", self.default_shopper_id),
            *((f"accounts[{a.account_id}].shopper_id", a.shopper_id) for a in self.accounts),
            *((f"accounts[{a.account_id}].account_id", a.account_id) for a in self.accounts),
            *((f"shoppers[{s.id}].id", s.id) for s in self.shoppers),
            *((f"skms[{k.id}].shopper_id", k.shopper_id) for k in self.skms),
        ]
        for where, value in named:
            if value == PROBE:
                raise ValueError(f"{where}: {PROBE!r} is reserved for `wacanon rollout check`")
        return self

    @model_validator(mode="after")
    def _skms_are_consistent(self) -> Settings:
        """SKM ids are unique across shoppers; every reference names an SKM of its shopper."""
        owner: dict[str, str] = {}
        for skm in self.skms:
            if skm.id in owner:
                raise ValueError(f"skms: id {skm.id!r} is given twice")
            owner[skm.id] = skm.shopper_id
        for shopper in self.shoppers:
            if shopper.default_skm and owner.get(shopper.default_skm) != shopper.id:
                raise ValueError(
                    f"shoppers[{shopper.id}].default_skm: {shopper.default_skm!r} is not an "
                    f"SKM of shopper {shopper.id!r} in [[skms]]"
                )
        for account in self.accounts:
            if account.skm_id and owner.get(account.skm_id) != account.shopper_id:
                raise ValueError(
                    f"accounts[{account.account_id}].skm_id: {account.skm_id!r} is not an "
                    f"SKM of shopper {account.shopper_id!r} in [[skms]]"
                )
        return self

    def shopper_config(self, shopper_id: str) -> ShopperConfig | None:
        for shopper in self.shoppers:
            if shopper.id == shopper_id:
                return shopper
        return None

    def default_skm(self, shopper_id: str) -> str | None:
        found = self.shopper_config(shopper_id)
        return found.default_skm if found else None

    @cached_property
    def account_skms(self) -> Mapping[tuple[str, str], str]:
        """(provider, account) → the SKM whose own number the account is."""
        return {(a.provider, a.account_id): a.skm_id for a in self.accounts if a.skm_id}

    def shopper_for(self, provider: str, account_id: str) -> str | None:
        """The shopper owning an account, else ``default_shopper_id``, else None.

        In a first trial (no configuration file) a simulated account named
        ``sim-shop-N-…`` — what ``wacanon simulate --shoppers N`` sends — belongs to
        shopper ``shop-N``, so a simulated stream keeps its tenants apart.
        """
        if provider == PROBE_PROVIDER and account_id == PROBE:
            return PROBE  # `wacanon rollout check`'s reserved shopper
        owner = self.account_owners.get((provider, account_id))
        if owner is not None:
            return owner
        if self._first_trial and provider == "simulated":
            match = _TRIAL_SIM_ACCOUNT.match(account_id)
            if match:
                return f"shop-{match.group(1)}"
        return self.default_shopper_id

    @property
    def known_shoppers(self) -> list[str]:
        """The shoppers this configuration names (accounts, ``default_shopper_id``; in a
        first trial the shoppers of ``wacanon simulate``'s default stream), sorted."""
        names = {a.shopper_id for a in self.accounts}
        names.update(s.id for s in self.shoppers)
        names.update(s.shopper_id for s in self.skms)
        if self.default_shopper_id:
            names.add(self.default_shopper_id)
        if self._first_trial:
            names.update(f"shop-{i}" for i in range(1, TRIAL_SIMULATED_SHOPPERS + 1))
        return sorted(names)

    def legacy_target(self, provider: str, accounts: Sequence[str]) -> str | None:
        """Where a webhook of these accounts is forwarded: the accounts' ``legacy_url``
        when they name one (all the same one), else the provider's ``[legacy]`` URL."""
        urls = {
            a.legacy_url
            for a in self.accounts
            if a.provider == provider and a.account_id in accounts and a.legacy_url
        }
        if len(urls) == 1:
            return urls.pop()
        found: str | None = getattr(self.legacy, provider, None)
        return found

    @cached_property
    def legacy_on(self) -> bool:
        """Whether any webhook is forwarded at all."""
        return bool(self.legacy.model_dump(exclude_none=True)) or any(
            a.legacy_url for a in self.accounts
        )

    def reassign_unanswered(self, shopper_id: str) -> float | None:
        """``reassign_unanswered_minutes`` of this shopper (None: off)."""
        found = self.shopper_config(shopper_id)
        return found.reassign_unanswered_minutes if found else None

    def close_after(self, shopper_id: str) -> timedelta:
        """How long a conversation of this shopper stays open without a message."""
        for shopper in self.shoppers:
            if shopper.id == shopper_id:
                return timedelta(hours=shopper.close_after_hours)
        return timedelta(hours=DEFAULT_CLOSE_AFTER_HOURS)

    @cached_property
    def account_owners(self) -> Mapping[tuple[str, str], str]:
        return {(a.provider, a.account_id): a.shopper_id for a in self.accounts}


def normalize_database_url(url: str) -> str:
    """Accept the common spellings and pick the driver we ship (psycopg 3 for PostgreSQL)."""
    url = url.strip()
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    if url.startswith(("sqlite://", "postgresql+psycopg://")):
        return url
    raise ValueError(
        "expected sqlite:///PATH or postgresql+psycopg://USER@HOST/DB, got " + _redact(url)
    )


def _redact(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


@dataclass
class LoadedConfig:
    """Settings plus what the start-up lines must say about how they were obtained."""

    settings: Settings
    source: Path | None
    notes: list[str] = field(default_factory=list)
    first_trial: bool = False


TRIAL_TOKEN_FILE = ".wacanon-dev-token"
TRIAL_API_TOKEN_FILE = ".wacanon-dev-api-token"
TRIAL_SHOPPER = "shop-1"


def trial_token(env: Mapping[str, str], notes: list[str] | None = None) -> str:
    """The simulated provider's token for a first trial: from the environment, else a file
    in the working directory (created once, mode 0600), so ``wacanon simulate --post``
    finds it too. A group/world-readable existing file is used but reported."""
    if env.get("WACANON_SIMULATED_TOKEN"):
        return env["WACANON_SIMULATED_TOKEN"]
    return _saved_secret(Path(TRIAL_TOKEN_FILE), "the simulated provider's token file", notes)


def _saved_secret(path: Path, what: str, notes: list[str] | None) -> str:
    """A random secret kept in ``path``: created once with mode 0600 (never readable by
    others in between), read back at every later start; a loose existing file is used
    but reported, in ``notes`` when the caller prints them."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        problem = loose_mode(path)
        if problem and notes is not None:  # the caller prints its notes: say it once, there
            notes.append(f"WARNING: {what} {problem}")
        elif problem:
            log.warning(f"{what} {problem}")
        return path.read_text(encoding="utf-8").strip()
    secret = secrets.token_urlsafe(24)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)  # exactly 0600, whatever the umask
        handle.write(secret + "\n")
    return secret


def saved_trial_token() -> str | None:
    """The token a first-trial ``wacanon serve`` saved in the working directory, if any
    (what ``simulate --post`` and ``rollout check`` fall back on)."""
    return _saved(Path(TRIAL_TOKEN_FILE))


def _saved(path: Path) -> str | None:
    return path.read_text(encoding="utf-8").strip() if path.exists() else None


def trial_api_token(notes: list[str] | None = None) -> str:
    """The first trial's read-API and console token (every shopper): random, kept in
    ``.wacanon-dev-api-token`` so it is the same at every start — never derived from the
    simulated provider's token, which whoever sends webhooks holds."""
    return _saved_secret(Path(TRIAL_API_TOKEN_FILE), "the read API's token file", notes)


def first_trial(env: Mapping[str, str], *, writes: bool = True) -> LoadedConfig:
    """No configuration at all: SQLite in the working directory, the simulated provider
    open with a token, real providers refusing until configured, simulated accounts
    ``sim-shop-N-…`` → shop-N and every other account → shop-1."""
    warnings: list[str] = []
    if writes:
        token = trial_token(env, warnings)
        api_token = trial_api_token(warnings)
    else:  # what is saved, else throwaway values: nothing is written
        token = env.get("WACANON_SIMULATED_TOKEN") or saved_trial_token() or secrets.token_hex(16)
        api_token = _saved(Path(TRIAL_API_TOKEN_FILE)) or secrets.token_hex(16)
    raw: dict[str, Any] = {
        "default_shopper_id": TRIAL_SHOPPER,
        "providers": {"simulated": {"token": token}},
        "api_tokens": [{"token": api_token, "shopper_id": "*"}],
    }
    try:
        settings = Settings(**raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, None)) from None
    settings._first_trial = True
    notes = [
        f"no {DEFAULT_CONFIG_NAME} found: first-trial mode (`wacanon init` writes one)",
        f"simulated provider open with token {settings.providers.simulated.token} "
        f"(saved in {TRIAL_TOKEN_FILE})",
        "simulated accounts sim-shop-N-... belong to shopper shop-N (as `wacanon simulate "
        f"--shoppers N` sends them); every other account to shopper {TRIAL_SHOPPER}",
        "cloud_api, evolution and baileys refuse webhooks until configured",
        f"read API (/v1) and operator's console (/console) open to token "
        f"{api_token} (every shopper; saved in {TRIAL_API_TOKEN_FILE})",
        *warnings,
    ]
    return LoadedConfig(settings=settings, source=None, notes=notes, first_trial=True)


def expand(
    value: Any, env: Mapping[str, str], path: str, notes: list[str], problems: list[str]
) -> Any:
    """Expand ``${NAME}`` and ``$$`` in every string (the rules are in the module's
    docstring); an unset name leaves the value unset (None) and adds a note, a malformed
    reference adds a problem naming the key."""
    if isinstance(value, dict):
        return {
            k: expand(v, env, f"{path}.{k}" if path else k, notes, problems)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [expand(v, env, f"{path}[{i}]", notes, problems) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value
    missing: list[str] = []
    bad: list[str] = []

    def replace(match: re.Match[str]) -> str:
        what = match.group(1)
        if what is None:  # a $ before a space, punctuation or the end: itself
            return "$"
        if what == "$":
            return "$"
        if not what.startswith("{"):
            hint = f"${{{what}}}" if _NAME.fullmatch(what) else "${NAME}"
            bad.append(
                f"malformed environment reference '${what}' (write {hint}, or $$ for a literal $)"
            )
            return ""
        name = what[1:-1] if what.endswith("}") else what[1:]
        if not what.endswith("}"):
            hint = f"${{{name}}}" if _NAME.fullmatch(name) else "${NAME}"
            bad.append(f"unclosed environment reference '${what}' (write {hint})")
        elif not name:
            bad.append("empty environment reference '${}' (write ${NAME}, or $${} for '${}')")
        elif not _NAME.fullmatch(name):
            bad.append(
                f"'${what}' is not a valid environment variable name (letters, digits and _, "
                "not starting with a digit; $$ for a literal $)"
            )
        elif name not in env:
            missing.append(name)
        else:
            return env[name]
        return ""

    expanded = _DOLLAR.sub(replace, value)
    if bad:
        problems.extend(f"{path}: {problem}" for problem in bad)
        return None
    if missing:
        notes.append(f"{path}: ${{{missing[0]}}} is not set in the environment; left unset")
        return None
    return expanded


def load(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    *,
    writes: bool = True,
) -> LoadedConfig:
    """Read and validate configuration; raises ConfigError naming the key and the problem.
    ``writes=False`` (``wacanon doctor``): a first trial creates no token file."""
    env = os.environ if env is None else env
    chosen = (
        Path(path) if path else (Path(env["WACANON_CONFIG"]) if env.get("WACANON_CONFIG") else None)
    )
    if chosen is None and Path(DEFAULT_CONFIG_NAME).exists():
        chosen = Path(DEFAULT_CONFIG_NAME)
    notes: list[str] = []
    if chosen is None:
        return first_trial(env, writes=writes)
    try:
        raw: dict[str, Any] = tomllib.loads(chosen.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {chosen} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{chosen}: not valid TOML: {exc}") from None
    problems: list[str] = []
    raw = expand(raw, env, "", notes, problems)
    if problems:
        raise ConfigError(f"{chosen}: " + "; ".join(problems))
    try:
        settings = Settings(**raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, chosen)) from None
    return LoadedConfig(settings=settings, source=chosen, notes=notes)


def _describe(exc: ValidationError, source: Path | None) -> str:
    where = f"{source}: " if source else ""
    problems = []
    for error in exc.errors():
        key = ".".join(str(p) for p in error["loc"]) or "(top level)"
        message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        problems.append(f"{key}: {message}")
    return where + "; ".join(problems)


EXAMPLE = """\
# wacanon configuration. Every key is optional; values shown are the defaults or examples.
# ${NAME} is replaced by the environment variable NAME (unset: the value stays unset).
# $$ is a literal $ ("pa$$word" is pa$word). $NAME without braces, an unclosed ${NAME,
# ${} or ${1BAD} refuse to load, naming the key; any other $ is itself.

database_url = "sqlite:///./wacanon.db"    # WACANON_DATABASE_URL overrides
                                           # PostgreSQL: "postgresql+psycopg://user@host/db"
default_shopper_id = "shop-1"              # optional: shopper for unlisted accounts

# Largest webhook body accepted, in bytes (413 above it).
max_body_bytes = 1048576
# Slow and greedy clients: request headers and a body must arrive within these (408),
# the bodies being received at once may declare this many bytes together (503 above),
# and this many connections are served at once (503 above); idle keep-alive connections
# close after keep_alive_timeout_seconds.
header_read_timeout_seconds = 10.0
body_read_timeout_seconds = 10.0
max_inflight_body_bytes = 67108864
max_connections = 1000
keep_alive_timeout_seconds = 5
# Where webhooks go while the database is unreachable (replayed when it is back).
spool_path = "./wacanon-spool"
# How long the writer waits for a lock held elsewhere before it spools the batch
# (at most 5).
writer_lock_timeout_seconds = 5.0
# wacanon serve commits in a writer process of its own, one per worker (false: a
# thread of the serving process, which shares its interpreter lock; docs/operations.md).
writer_process = true

[providers.cloud_api]
app_secret = "${META_APP_SECRET}"          # verifies X-Hub-Signature-256
verify_token = "${META_VERIFY_TOKEN}"      # answers Meta's GET subscription challenge

[providers.evolution]
api_key = "${EVOLUTION_API_KEY}"           # the body's `apikey` or an `apikey` header

[providers.baileys]
secret = "${BAILEYS_BRIDGE_SECRET}"        # X-Wacanon-Signature HMAC secret of the bridge

[providers.simulated]
token = "dev-token"                        # Authorization: Bearer dev-token
allow_unsigned = false                     # true accepts unverified webhooks: local trials only

[[accounts]]                               # provider account -> shopper (tenant)
provider = "cloud_api"
# Cloud API phone_number_id / Evolution instance name / Baileys session id:
account_id = "106540352242922"
shopper_id = "shop-1"

[[shoppers]]                               # optional: a shopper's own settings
id = "shop-1"
close_after_hours = 24                     # conversations close after this silence

# Read API (/v1) tokens; one of every shopper ("*") also opens the console (/console).
# [[api_tokens]]
# token = "${WACANON_ADMIN_TOKEN}"         # at least 16 characters
# shopper_id = "*"
"""
