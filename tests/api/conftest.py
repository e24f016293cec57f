"""A real wacanon app on a real database, driven over HTTP (ASGI) with real signatures."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from wacanon.api.app import create_app
from wacanon.config import Settings

APP_SECRET = "meta-app-secret-for-tests"
VERIFY_TOKEN = "meta-verify-token"
EVOLUTION_KEY = "B6D711FCDE4D4FD5936544120E713976"
BRIDGE_SECRET = "baileys-bridge-secret"
SIM_TOKEN = "sim-token-for-tests"
PERSIST = {"WHATSAPP_CANONICAL_SHADOW_MODE": "false"}


def make_settings(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    raw: dict[str, Any] = {
        "database_url": database_url,
        "spool_path": str(tmp_path / "spool"),
        "flag_refresh_seconds": 0.2,
        "providers": {
            "cloud_api": {"app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN},
            "evolution": {"api_key": EVOLUTION_KEY},
            "baileys": {"secret": BRIDGE_SECRET},
            "simulated": {"token": SIM_TOKEN},
        },
        "accounts": [
            {"provider": "cloud_api", "account_id": "106540352242922", "shopper_id": "shop-1"},
            {"provider": "evolution", "account_id": "loja-centro", "shopper_id": "shop-1"},
            {"provider": "baileys", "account_id": "loja-centro", "shopper_id": "shop-2"},
            {"provider": "simulated", "account_id": "sim-store-1", "shopper_id": "shop-1"},
            {"provider": "simulated", "account_id": "sim-store-2", "shopper_id": "shop-2"},
        ],
    }
    raw.update(overrides)
    return Settings.model_validate(raw)


class LiveServer:
    """A real uvicorn server on a free loopback port, in a thread of the test process."""

    def __init__(self, app: Any, **options: Any) -> None:
        """``options`` are more ``uvicorn.Config`` arguments (e.g. ``wacanon serve``'s limits)."""
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", **options
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        (sock,) = [s for server in self.server.servers for s in server.sockets][:1]
        self.host, self.port = sock.getsockname()[:2]
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)


@pytest.fixture
def make_client(database_url: str, tmp_path: Path) -> Iterator[Any]:
    """``make_client(env=..., **settings_overrides)`` → an httpx client of a live server."""
    started: list[tuple[LiveServer, httpx.Client]] = []

    def build(env: dict[str, str] | None = None, **overrides: Any) -> httpx.Client:
        settings = make_settings(database_url, tmp_path, **overrides)
        server = LiveServer(create_app(settings, env=PERSIST if env is None else env))
        client = httpx.Client(base_url=server.start(), timeout=30)
        started.append((server, client))
        return client

    yield build
    for server, client in started:
        client.close()
        server.stop()


def sim_body(*facts: dict[str, Any], account: str = "sim-store-1") -> bytes:
    return orjson.dumps({"account": account, "events": list(facts)})


def sim_message(
    message_id: str, text: str = "Oi! 👟", sender: str = "5511987654321"
) -> dict[str, Any]:
    return {
        "type": "message",
        "id": message_id,
        "from": sender,
        "text": text,
        "timestamp": 1772366400,
    }


def bearer(token: str = SIM_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def hub_signature(body: bytes, secret: str = APP_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


def bridge_signature(body: bytes, secret: str = BRIDGE_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Wacanon-Signature": f"sha256={digest}", "Content-Type": "application/json"}
