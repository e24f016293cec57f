"""The service commands as an operator runs them: init, db, flags, replay (real subprocesses)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson
import sqlalchemy as sa

from wacanon.config import Settings
from wacanon.flags import FlagSnapshot, ShopperFlags
from wacanon.ingest.metrics import Metrics
from wacanon.ingest.pipeline import Pipeline, Received
from wacanon.store.database import create_engine
from wacanon.store.repository import write_batch
from wacanon.store.tables import dead_letters, events


def wacanon(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wacanon", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def config(tmp_path: Path) -> Path:
    path = tmp_path / "wacanon.toml"
    path.write_text(
        f'database_url = "sqlite:///{tmp_path / "w.db"}"\ndefault_shopper_id = "shop-1"\n'
    )
    return path


def test_init_writes_an_example_and_refuses_to_overwrite(tmp_path: Path) -> None:
    first = wacanon(tmp_path, "init")
    assert first.returncode == 0
    assert "[providers.cloud_api]" in (tmp_path / "wacanon.toml").read_text()
    again = wacanon(tmp_path, "init")
    assert again.returncode == 2
    assert "--force" in again.stderr


def test_db_upgrade_and_status(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    up = wacanon(tmp_path, "db", "upgrade", "--config", str(cfg))
    assert up.returncode == 0, up.stderr
    assert "database at head" in up.stdout
    status = wacanon(tmp_path, "db", "status", "--config", str(cfg))
    assert "events: 0" in status.stdout


def test_serve_refuses_a_database_behind_head(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE something_else (x INTEGER)"))
    engine.dispose()
    done = wacanon(tmp_path, "serve", "--config", str(cfg), "--port", "1")
    assert done.returncode == 2
    assert "run `wacanon db upgrade`" in done.stderr


def test_serve_refuses_invalid_config_naming_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("max_body_bytes = 'big'\n")
    done = wacanon(tmp_path, "serve", "--config", str(cfg))
    assert done.returncode == 2
    assert "max_body_bytes" in done.stderr
    assert "Traceback" not in done.stderr


def test_flags_set_list_explain_unset(tmp_path: Path) -> None:
    cfg = str(config(tmp_path))
    assert wacanon(tmp_path, "db", "upgrade", "--config", cfg).returncode == 0
    done = wacanon(tmp_path, "flags", "set", "WHATSAPP_ROUTING_ENABLED", "true", "--config", cfg)
    assert done.returncode == 0, done.stderr
    wacanon(
        tmp_path, "flags", "set", "WHATSAPP_ROUTING_ENABLED_ALLOWLIST", "shop-beta", "--config", cfg
    )
    listed = wacanon(tmp_path, "flags", "list", "--overrides", "--config", cfg).stdout
    assert "WHATSAPP_ROUTING_ENABLED = true for every shopper" in listed
    beta = wacanon(tmp_path, "flags", "explain", "--shopper", "shop-beta", "--config", cfg).stdout
    other = wacanon(tmp_path, "flags", "explain", "--shopper", "shop-9", "--config", cfg).stdout
    assert "WHATSAPP_ROUTING_ENABLED = true" in beta
    assert "WHATSAPP_ROUTING_ENABLED = false" in other
    assert "not in WHATSAPP_ROUTING_ENABLED_ALLOWLIST" in other
    bad = wacanon(tmp_path, "flags", "set", "WHATSAPP_ROUTNG_ENABLED", "true", "--config", cfg)
    assert bad.returncode == 2
    assert "unknown flag" in bad.stderr
    wacanon(tmp_path, "flags", "unset", "WHATSAPP_ROUTING_ENABLED", "--config", cfg)
    after = wacanon(tmp_path, "flags", "explain", "--shopper", "shop-beta", "--config", cfg).stdout
    assert "WHATSAPP_ROUTING_ENABLED = false" in after
    again = wacanon(tmp_path, "flags", "unset", "WHATSAPP_ROUTING_ENABLED", "--config", cfg)
    assert again.stdout.strip() == (
        "nothing to remove: no WHATSAPP_ROUTING_ENABLED override for all shoppers (the global one)"
    )


def test_replay_dead_letters_and_since(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    assert wacanon(tmp_path, "db", "upgrade", "--config", str(cfg)).returncode == 0
    url = f"sqlite:///{tmp_path / 'w.db'}"
    settings = Settings.model_validate({"database_url": url, "default_shopper_id": "shop-1"})
    shadow = FlagSnapshot(env={}, overrides={})
    pipeline = Pipeline(settings, lambda s: ShopperFlags.resolve(shadow, s), Metrics())
    body = orjson.dumps(
        {
            "account": "a",
            "events": [
                {"type": "message", "id": "M1", "from": "5511987654321", "text": "oi"},
                {"type": "teleport"},
            ],
        }
    )
    plan = pipeline.plan(Received("simulated", body, "c-1", datetime(2026, 3, 1, tzinfo=UTC), True))
    engine = create_engine(url)
    with engine.begin() as connection:
        write_batch(connection, [plan.write])  # journaled in shadow mode: no event row
    persist = {"WHATSAPP_CANONICAL_SHADOW_MODE": "false"}
    dead = wacanon(tmp_path, "replay", "--dead-letter", "--config", str(cfg), env=persist)
    assert dead.returncode == 0, dead.stderr
    assert "1 new event(s)" in dead.stderr
    assert "1 still failing" in dead.stderr
    since = wacanon(tmp_path, "replay", "--since", "2026-01-01", "--config", str(cfg), env=persist)
    assert "0 new event(s), 1 duplicate(s)" in since.stderr
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(events)).scalar_one() == 1
        assert connection.execute(sa.select(dead_letters.c.replayed_at)).scalar_one() is None
    engine.dispose()
    neither = wacanon(tmp_path, "replay", "--config", str(cfg))
    assert neither.returncode == 2


def test_serve_refuses_several_workers_on_sqlite(tmp_path: Path) -> None:
    done = wacanon(tmp_path, "serve", "--config", str(config(tmp_path)), "--workers", "2")
    assert done.returncode == 2
    assert "SQLite has one writer" in done.stderr


def flags_config(tmp_path: Path) -> str:
    path = tmp_path / "wacanon.toml"
    path.write_text(
        f'database_url = "sqlite:///{tmp_path / "w.db"}"\ndefault_shopper_id = "shop-1"\n'
        "[[accounts]]\nprovider = 'cloud_api'\naccount_id = '1'\nshopper_id = 'shop-beta'\n"
    )
    assert wacanon(tmp_path, "db", "upgrade", "--config", str(path)).returncode == 0
    return str(path)


def table(stdout: str) -> dict[str, dict[str, str]]:
    """The ``flags list`` table as {shopper: {column: value}}."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    header_at = next(i for i, line in enumerate(lines) if line.startswith("shopper "))
    header = lines[header_at].split()
    rows = {}
    for line in lines[header_at + 1 :]:
        cells = line.split()
        if len(cells) != len(header):
            break
        rows[cells[0]] = dict(zip(header[1:], cells[1:], strict=True))
    return rows


def test_flags_list_shows_effective_values_per_configured_shopper(tmp_path: Path) -> None:
    cfg = flags_config(tmp_path)
    env = {"WHATSAPP_CANONICAL_SHADOW_MODE": "", "WHATSAPP_ROUTING_ENABLED": ""}
    wacanon(tmp_path, "flags", "set", "WHATSAPP_ROUTING_ENABLED", "true", "--config", cfg)
    wacanon(
        tmp_path, "flags", "set", "WHATSAPP_ROUTING_ENABLED_ALLOWLIST", "shop-beta", "--config", cfg
    )
    wacanon(
        tmp_path,
        "flags",
        "set",
        "WHATSAPP_CANONICAL_SHADOW_MODE",
        "false",
        "--shopper",
        "shop-7",
        "--config",
        cfg,
    )
    done = wacanon(tmp_path, "flags", "list", "--config", cfg, env=env)
    assert done.returncode == 0, done.stderr
    rows = table(done.stdout)
    # configured shoppers (accounts, default_shopper_id) and those with their own override
    assert sorted(rows) == ["shop-1", "shop-7", "shop-beta"]
    assert rows["shop-beta"]["ROUTING_ENABLED"] == "true"
    assert rows["shop-1"]["ROUTING_ENABLED"] == "false"
    assert rows["shop-7"]["CANONICAL_SHADOW_MODE"] == "false"
    assert rows["shop-1"]["CANONICAL_SHADOW_MODE"] == "true"
    assert rows["shop-1"]["ASSIGNMENT_POLICY"] == "default"
    assert "3 stored override(s)" in done.stdout
    overrides = wacanon(tmp_path, "flags", "list", "--overrides", "--config", cfg).stdout
    assert "WHATSAPP_CANONICAL_SHADOW_MODE = false for shopper shop-7" in overrides


def test_flags_list_in_first_trial_shows_the_simulated_shoppers(tmp_path: Path) -> None:
    assert wacanon(tmp_path, "db", "upgrade").returncode == 0  # ./wacanon.db, no config file
    done = wacanon(tmp_path, "flags", "list", env={"WACANON_SIMULATED_TOKEN": "t"})
    assert done.returncode == 0, done.stderr
    assert sorted(table(done.stdout)) == ["shop-1", "shop-2", "shop-3"]


def test_flags_explain_without_shopper_explains_every_configured_shopper(tmp_path: Path) -> None:
    cfg = flags_config(tmp_path)
    wacanon(
        tmp_path, "flags", "set", "WHATSAPP_ROUTING_ENABLED_ALLOWLIST", "shop-beta", "--config", cfg
    )
    done = wacanon(
        tmp_path, "flags", "explain", "--config", cfg, env={"WHATSAPP_ROUTING_ENABLED": "true"}
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "shopper shop-1" in out
    assert "shopper shop-beta" in out
    beta = out[out.index("shopper shop-beta") :]
    one = out[out.index("shopper shop-1") : out.index("shopper shop-beta")]
    assert "WHATSAPP_ROUTING_ENABLED = true" in beta
    assert "WHATSAPP_ROUTING_ENABLED = false" in one
    assert "not in WHATSAPP_ROUTING_ENABLED_ALLOWLIST" in one


def test_flags_explain_with_no_shopper_configured_explains_the_switches(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    cfg.write_text(f'database_url = "sqlite:///{tmp_path / "w.db"}"\n')
    assert wacanon(tmp_path, "db", "upgrade", "--config", str(cfg)).returncode == 0
    done = wacanon(tmp_path, "flags", "explain", "--config", str(cfg))
    assert done.returncode == 0, done.stderr
    assert "no shopper configured" in done.stdout
    assert "WHATSAPP_CANONICAL_EVENTS_ENABLED = true" in done.stdout


def test_serve_refuses_a_malformed_environment_reference(tmp_path: Path) -> None:
    cfg = tmp_path / "wacanon.toml"
    cfg.write_text('[providers.evolution]\napi_key = "$EVOLUTION_API_KEY"\n')
    done = wacanon(
        tmp_path, "serve", "--config", str(cfg), "--port", "1", env={"EVOLUTION_API_KEY": "k"}
    )
    assert done.returncode == 2
    assert "providers.evolution.api_key: malformed environment reference" in done.stderr
    assert "write ${EVOLUTION_API_KEY}" in done.stderr
    assert "verifying" not in done.stderr


def test_a_store_command_before_the_first_serve_creates_nothing(tmp_path: Path) -> None:
    """In a fresh directory (a first trial), `flags set` and friends refuse, saying what
    creates the database, and leave no empty database or token file behind."""
    for args in (
        ("flags", "set", "WHATSAPP_CANONICAL_SHADOW_MODE", "false"),
        ("flags", "list"),
        ("conversations", "list"),
    ):
        result = wacanon(tmp_path, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "no database at ./wacanon.db yet: `wacanon serve` creates it" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_serve_on_a_taken_port_says_so_before_saying_listening(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = wacanon(tmp_path, "serve", "--config", str(config(tmp_path)), "--port", str(port))
    assert done.returncode == 2, done.stderr
    assert "listening" not in done.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr
    assert "--port" in done.stderr
    out_of_range = wacanon(tmp_path, "serve", "--config", str(config(tmp_path)), "--port", "99999")
    assert out_of_range.returncode == 2
    assert "65535" in out_of_range.stderr
    assert "listening" not in out_of_range.stderr


def test_db_status_before_the_first_serve_creates_nothing(tmp_path: Path) -> None:
    done = wacanon(tmp_path, "db", "status", env={"WACANON_DATABASE_URL": "sqlite:///./f2.db"})
    assert done.returncode == 0, done.stderr
    assert "no database at ./f2.db yet" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_serve_says_whether_the_read_api_and_console_take_a_token(tmp_path: Path) -> None:
    """After `wacanon init`, the first trial's API token no longer works: start-up says
    the read API refuses everyone until [[api_tokens]] names a token."""
    from wacanon.cli.serve import startup_lines
    from wacanon.config import load

    bare = startup_lines(load(config(tmp_path)), "at head", "127.0.0.1", 8000, 1, {})
    assert "read API /v1 and console /console: refusing (no [[api_tokens]] configured)" in bare
    with_tokens = tmp_path / "tokens.toml"
    with_tokens.write_text(
        config(tmp_path).read_text()
        + '[[api_tokens]]\ntoken = "token-for-all-shoppers"\nshopper_id = "*"\n'
        + '[[api_tokens]]\ntoken = "token-for-shop-1-only"\nshopper_id = "shop-1"\n'
    )
    lines = startup_lines(load(with_tokens), "at head", "127.0.0.1", 8000, 1, {})
    assert (
        "read API /v1 and console /console: 2 token(s), 1 for every shopper ([[api_tokens]])"
        in lines
    )
