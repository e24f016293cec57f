"""CLI commands print what a person reads: no library log lines (httpx's ``HTTP Request``,
JSON log records) on their streams. Real subprocesses against a real server and database."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.api.conftest import SIM_TOKEN, LiveServer, make_settings
from tests.test_cli_service import wacanon
from wacanon.api.app import create_app
from wacanon.load import PostReport
from wacanon.store.database import create_engine, upgrade


def json_lines(text: str) -> list[str]:
    found = []
    for line in text.splitlines():
        try:
            if isinstance(orjson.loads(line), dict):
                found.append(line)
        except orjson.JSONDecodeError:
            continue
    return found


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    engine = create_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture
def server(sqlite_url: str, tmp_path: Path) -> Iterator[str]:
    live = LiveServer(create_app(make_settings(sqlite_url, tmp_path), env={}))
    try:
        yield live.start()
    finally:
        live.stop()


def test_simulate_post_prints_no_http_request_lines(server: str, tmp_path: Path) -> None:
    done = wacanon(tmp_path, "simulate", "--post", server, "--count", "20", "--token", SIM_TOKEN)
    assert done.returncode == 0, done.stderr
    assert "HTTP Request" not in done.stderr
    assert json_lines(done.stderr) == []
    assert "20" in done.stdout  # the summary
    # the summary alone (progress goes to stderr): what was posted, what routing must give
    summary, expectation = done.stdout.splitlines()
    assert summary.startswith("posted 20 webhooks in "), summary
    assert "; HTTP 200: 20; " in summary, summary  # every one answered 200, no other code
    assert expectation.startswith("conversations this stream must give, with routing on: ")


def test_the_post_summary_says_when_shadow_mode_stored_nothing() -> None:
    report = PostReport(sent=3, events=3, shadow=3, seconds=1.0)
    report.statuses[200] = 3
    first, second = report.summary().splitlines()
    assert first.startswith("posted 3 webhooks")
    assert second.startswith("shadow mode: 3 webhooks were normalized and counted but not stored")
    assert "WHATSAPP_CANONICAL_SHADOW_MODE false" in second
    assert len(PostReport(sent=1, seconds=1.0).summary().splitlines()) == 1


def test_replay_prints_no_json_log_lines(server: str, tmp_path: Path, sqlite_url: str) -> None:
    # Journal a webhook through the real server (shadow mode: journaled, no event row) …
    posted = wacanon(tmp_path, "simulate", "--post", server, "--count", "5", "--token", SIM_TOKEN)
    assert posted.returncode == 0, posted.stderr
    cfg = tmp_path / "wacanon.toml"
    cfg.write_text(f'database_url = "{sqlite_url}"\ndefault_shopper_id = "shop-1"\n')
    # … then replay it with shadow mode turned off by a stored override (the flag cache
    # and the pipeline log at INFO while replay runs).
    off = wacanon(
        tmp_path, "flags", "set", "WHATSAPP_CANONICAL_SHADOW_MODE", "false", "--config", str(cfg)
    )
    assert off.returncode == 0, off.stderr
    done = wacanon(tmp_path, "replay", "--since", "2000-01-01", "--config", str(cfg))
    assert done.returncode == 0, done.stderr
    assert "replayed 5 webhook(s)" in done.stderr
    assert "new event(s)" in done.stderr
    assert json_lines(done.stdout) == []
    assert json_lines(done.stderr) == []
    assert "HTTP Request" not in done.stderr


def test_simulate_post_to_nothing_says_it_reached_nothing(tmp_path: Path) -> None:
    """Nothing listening: it printed a rate, 'HTTP 0: 200' and latencies of nothing."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    done = wacanon(
        tmp_path, "simulate", "--post", f"http://127.0.0.1:{port}", "--count", "20", "--token", "t"
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert f"wacanon: could not reach http://127.0.0.1:{port}/webhooks/simulated: Connect" in (
        done.stderr
    )
    no_scheme = wacanon(tmp_path, "simulate", "--post", "127.0.0.1:8000", "--token", "t")
    assert no_scheme.returncode == 2
    assert "e.g. http://127.0.0.1:8000" in no_scheme.stderr


def test_simulate_post_takes_the_token_of_the_configuration_here(
    server: str, tmp_path: Path
) -> None:
    """After a first trial, `wacanon init` (then serve) makes ./wacanon.toml the server's
    configuration: its token is the one to send, not the first trial's saved one."""
    (tmp_path / ".wacanon-dev-token").write_text("stale-first-trial-token\n")
    (tmp_path / "wacanon.toml").write_text(f'[providers.simulated]\ntoken = "{SIM_TOKEN}"\n')
    done = wacanon(tmp_path, "simulate", "--post", server, "--count", "5")
    assert done.returncode == 0, done.stderr
    assert "; HTTP 200: 5; " in done.stdout
