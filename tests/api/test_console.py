"""``/console`` over HTTP on both databases (issue #9 §6): who may open it (Bearer or the
login form's cookie, all-shoppers tokens only), what it shows (probes left out, hostile
text escaped), and the replay button with its CSRF check. The browser test is
``test_console_browser.py``."""

from __future__ import annotations

import re
import time
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

from tests.api.conftest import PERSIST, LiveServer, bearer, make_settings, sim_body, sim_message
from tests.conftest import _clean
from tests.ingest.proxy import CuttableProxy
from tests.ingest.test_assignment_live import wait_for
from tests.ingest.test_routing_live import ROUTING_ON
from wacanon.api.app import create_app
from wacanon.api.console_auth import COOKIE, SESSION_SECONDS, Credential
from wacanon.flags import CANONICAL_SHADOW_MODE, GLOBAL
from wacanon.probe import PROBE
from wacanon.store.database import create_engine
from wacanon.store.repository import set_flag
from wacanon.store.rollout import purge_probe
from wacanon.store.tables import dead_letters, webhook_journal

ALL_TOKEN = "console-all-shoppers-0123456789"
SHOP_TOKEN = "console-shop-1-only-0123456789"
TOKENS = [{"token": ALL_TOKEN, "shopper_id": "*"}, {"token": SHOP_TOKEN, "shopper_id": "shop-1"}]
SKMS = [
    {"id": "skm-ana", "shopper_id": "shop-1", "name": "Ana", "capacity": 1},
    {"id": "skm-caio", "shopper_id": "shop-2", "name": "Caio", "capacity": 2},
]


def figure(html: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}">([^<]*)<', html)
    assert found, f"no #{element_id} in the page"
    return unescape(found.group(1)).strip()


def cookie(value: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={value}"}


def signed_in(client: httpx.Client, token: str = ALL_TOKEN) -> httpx.Response:
    return client.post(
        "/console/login",
        content=f"token={token}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )


def test_only_an_all_shoppers_token_opens_it_by_bearer_or_by_cookie(make_client: Any) -> None:
    client = make_client(api_tokens=TOKENS)
    anonymous = client.get("/console")
    assert anonymous.status_code == 401
    assert 'action="/console/login"' in anonymous.text
    assert client.get("/console", headers={"Authorization": "Bearer nope"}).status_code == 401
    one_shop = client.get("/console", headers={"Authorization": f"Bearer {SHOP_TOKEN}"})
    assert one_shop.status_code == 403
    assert "all-shoppers token" in one_shop.text

    page = client.get("/console", headers={"Authorization": f"Bearer {ALL_TOKEN}"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    assert figure(page.text, "events-stored") == "0"
    assert 'name="csrf"' not in page.text  # a Bearer request needs none
    css = client.get("/console/style.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")

    assert signed_in(client, "wrong-token-0123456789").status_code == 401
    assert signed_in(client, SHOP_TOKEN).status_code == 403
    assert COOKIE not in client.cookies
    answer = signed_in(client)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console"
    given = answer.headers["set-cookie"]
    for attribute in ("HttpOnly", "SameSite=strict", "Path=/console", f"Max-Age={SESSION_SECONDS}"):
        assert attribute.lower() in given.lower(), given
    assert ALL_TOKEN not in given  # the token itself never travels back
    page = client.get("/console")
    assert page.status_code == 200
    assert 'id="sign-out"' in page.text

    value = client.cookies[COOKIE]
    client.cookies.clear()
    forged = value[:-4] + ("0000" if not value.endswith("0000") else "1111")
    assert client.get("/console", headers=cookie(forged)).status_code == 401
    stale = Credential(ALL_TOKEN, int(time.time()) - SESSION_SECONDS - 5).cookie()
    assert client.get("/console", headers=cookie(stale)).status_code == 401
    shop_session = Credential(SHOP_TOKEN, int(time.time())).cookie()
    assert client.get("/console", headers=cookie(shop_session)).status_code == 401
    assert client.get("/console", headers=cookie(value)).status_code == 200

    form = {"Content-Type": "application/x-www-form-urlencoded"}
    elsewhere = client.post("/console/logout", headers={**cookie(value), **form})
    assert elsewhere.status_code == 403  # another site's form: no CSRF value
    assert "set-cookie" not in elsewhere.headers
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert csrf is not None
    out = client.post(
        "/console/logout", content=f"csrf={csrf.group(1)}", headers={**cookie(value), **form}
    )
    assert out.status_code == 303
    assert f'{COOKIE}=""' in out.headers["set-cookie"] or "Max-Age=0" in out.headers["set-cookie"]
    huge = client.post(
        "/console/login",
        content=b"token=" + b"x" * 10_000,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert huge.status_code == 413


def test_a_session_dies_with_its_token(make_client: Any) -> None:
    first = make_client(api_tokens=TOKENS)
    assert signed_in(first).status_code == 303
    value = first.cookies[COOKIE]
    # Another node with the same tokens honours it; one whose configuration dropped it does not.
    same = make_client(api_tokens=TOKENS)
    assert same.get("/console", headers=cookie(value)).status_code == 200
    rotated = make_client(api_tokens=[{"token": "rotated-all-0123456789", "shopper_id": "*"}])
    assert rotated.get("/console", headers=cookie(value)).status_code == 401


def test_figures_leave_probes_out_and_escape_what_providers_sent(
    make_client: Any, database_url: str
) -> None:
    client = make_client(env=ROUTING_ON, api_tokens=TOKENS, skms=SKMS)
    for i in range(3):
        body = sim_body(sim_message(f"C-{i}", sender=f"5511955500{i:03d}"))
        assert client.post("/webhooks/simulated", content=body, headers=bearer()).status_code == 200
    hostile = orjson.dumps({"account": "sim-store-2", "events": [{"type": "<script>x()</script>"}]})
    assert client.post("/webhooks/simulated", content=hostile, headers=bearer()).status_code == 200
    # What `wacanon rollout check` sends (and removes afterwards): left out of every figure.
    probe = sim_body(sim_message("P-1"), account=PROBE)
    assert client.post("/webhooks/simulated", content=probe, headers=bearer()).status_code == 200
    auth = {"Authorization": f"Bearer {ALL_TOKEN}"}

    def routed() -> str | None:
        html = client.get("/console", headers=auth).text
        return html if re.search(r'data-skm="skm-ana">.*?class="open">1<', html, re.S) else None

    html = wait_for(routed)
    stored = int(figure(html, "events-stored"))
    listed = client.get("/v1/events?limit=500", headers=auth).json()["items"]
    probes = [e for e in listed if e["routing"]["shopper_id"] == PROBE]
    assert probes  # the probe's events are stored...
    assert stored == len(listed) - len(probes)  # ... and not counted
    assert PROBE not in html
    assert figure(html, "open-conversations") == "3"
    waiting = re.search(r'data-waiting="shop-1">.*?class="count">(\d+)<', html, re.S)
    assert waiting is not None
    assert waiting.group(1) == "2"  # Ana has room for one of the three
    assert figure(html, "dead-letters-pending") == "1"
    assert "<script>x()" not in html
    assert "&lt;script&gt;x()" in html
    assert figure(html, "live-webhooks") == "4"  # the probe is not one of them
    assert 'data-shopper="shop-1"' in html
    row = re.search(r'data-shopper="shop-1">(.*?)</tr>', html, re.S)
    assert row is not None
    assert "between phases" in row.group(1)  # routing on, group routing off: no phase's


def test_the_replay_button_replays_dead_letters_and_checks_its_form(
    make_client: Any, database_url: str
) -> None:
    client = make_client(env={}, api_tokens=TOKENS)  # the defaults: Phase 0, shadow mode
    body = orjson.dumps(
        {
            "account": "sim-store-1",
            "events": [
                {"type": "message", "id": "R-1", "from": "5511987654321", "text": "oi"},
                {"type": "teleport"},
            ],
        }
    )
    assert client.post("/webhooks/simulated", content=body, headers=bearer()).status_code == 200
    engine = create_engine(database_url)
    with engine.begin() as connection:  # leaving shadow mode: now the message is stored
        set_flag(connection, GLOBAL, CANONICAL_SHADOW_MODE, "false")
    engine.dispose()
    time.sleep(0.6)  # flag_refresh_seconds 0.2
    assert signed_in(client).status_code == 303
    html = client.get("/console").text
    assert figure(html, "dead-letters-pending") == "1"
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert csrf is not None
    form = {"Content-Type": "application/x-www-form-urlencoded"}

    refused = client.post("/console/replay", content="csrf=0123", headers=form)
    assert refused.status_code == 403
    assert figure(client.get("/console").text, "events-stored") == "0"

    done = client.post("/console/replay", content=f"csrf={csrf.group(1)}", headers=form)
    assert done.status_code == 200
    after = done.text
    notice = "Replayed 1 dead letter(s): 1 new event(s), 0 duplicate(s), 1 still failing."
    assert notice in " ".join(after.split())
    assert figure(after, "events-stored") == "1"
    assert figure(after, "dead-letters-pending") == "1"  # the teleport part still fails

    client.cookies.clear()
    by_bearer = client.post(
        "/console/replay", headers={"Authorization": f"Bearer {ALL_TOKEN}", **form}
    )
    assert by_bearer.status_code == 200
    assert "0 new event(s), 1 duplicate(s)" in " ".join(by_bearer.text.split())


@pytest.mark.parametrize("path", ["/console", "/console/replay"])
def test_a_read_api_token_of_one_shopper_cannot_replay(make_client: Any, path: str) -> None:
    client = make_client(api_tokens=TOKENS)
    auth = {"Authorization": f"Bearer {SHOP_TOKEN}"}
    answer = client.request("POST" if path.endswith("replay") else "GET", path, headers=auth)
    assert answer.status_code == 403


def test_with_the_database_away_it_says_so_and_shows_the_spool(
    postgres_server: str, tmp_path: Path
) -> None:
    target = sa.engine.make_url(postgres_server)
    proxy = CuttableProxy(target.host or "127.0.0.1", target.port or 5432)
    proxy.open()
    via_proxy = target.set(port=proxy.port).render_as_string(hide_password=False)
    _clean(postgres_server)
    settings = make_settings(via_proxy, tmp_path, api_tokens=TOKENS)
    server = LiveServer(create_app(settings, env=PERSIST))
    auth = {"Authorization": f"Bearer {ALL_TOKEN}"}
    try:
        with httpx.Client(base_url=server.start(), timeout=30) as client:
            proxy.cut()
            body = sim_body(sim_message("AWAY-1"))
            answer = client.post("/webhooks/simulated", content=body, headers=bearer())
            assert answer.json().get("spooled") is True
            page = client.get("/console", headers=auth)
    finally:
        server.stop()
        proxy.cut()
    assert page.status_code == 200
    assert 'id="database-down"' in page.text
    assert figure(page.text, "live-webhooks") == "1"
    assert figure(page.text, "spool-depth") == "1"


def test_hostile_and_odd_requests_get_answers_never_a_500(make_client: Any) -> None:
    client = make_client(api_tokens=TOKENS)
    first = client.get("/console")
    assert first.status_code == 401
    assert first.headers["www-authenticate"] == 'Bearer realm="wacanon console"'
    assert 'class="message"' not in first.text  # a first visit is no error
    superscript = client.get("/console", headers={"Cookie": "wacanon_console=\u00b2.abc".encode()})
    assert superscript.status_code == 401
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    many = "&".join(f"f{i}=1" for i in range(12))
    assert client.post("/console/login", content=many, headers=form).status_code == 400
    multipart = client.post("/console/login", files={"token": (None, ALL_TOKEN)})
    assert multipart.status_code == 415
    assert "x-www-form-urlencoded" in multipart.text
    for path in ("/console/login", "/console/replay", "/console/logout"):
        back = client.get(path)
        assert (back.status_code, back.headers["location"]) == (303, "/console")
    head = client.head("/console", headers={"Authorization": f"Bearer {ALL_TOKEN}"})
    assert head.status_code == 200
    ahead = Credential(ALL_TOKEN, int(time.time()) + 30).cookie()  # another node's clock
    assert client.get("/console", headers=cookie(ahead)).status_code == 200
    future = Credential(ALL_TOKEN, int(time.time()) + 600).cookie()
    assert client.get("/console", headers=cookie(future)).status_code == 401
    assert "secure" not in signed_in(client).headers["set-cookie"].lower()  # plain http
    behind_tls = make_client(api_tokens=TOKENS, console_secure_cookie=True)
    assert "secure" in signed_in(behind_tls).headers["set-cookie"].lower()


def test_probes_dead_letters_stay_out_and_are_never_replayed(
    make_client: Any, database_url: str
) -> None:
    client = make_client(api_tokens=TOKENS)
    broken = {"type": "bogus-probe-type", "id": "PX"}
    probe = orjson.dumps({"account": PROBE, "events": [broken]})
    real = orjson.dumps({"account": "sim-store-1", "events": [{**broken, "id": "RX"}]})
    for body in (probe, real):
        assert client.post("/webhooks/simulated", content=body, headers=bearer()).status_code == 200
    auth = {"Authorization": f"Bearer {ALL_TOKEN}"}
    html = client.get("/console", headers=auth).text
    assert (figure(html, "dead-letters-pending"), figure(html, "dead-letters")) == ("1", "1")
    done = client.post("/console/replay", headers={**auth, "Content-Type": "text/plain"})
    assert "Replayed 1 dead letter(s)" in " ".join(done.text.split())
    engine = create_engine(database_url)
    j = webhook_journal.c
    with engine.begin() as connection:  # the probe's journal row names it: purged with it
        owners = connection.execute(sa.select(j.account_id, j.shopper_id).order_by(j.id)).all()
        assert [tuple(o) for o in owners] == [(PROBE, PROBE), (None, None)]
        purge_probe(connection)
        left = connection.execute(sa.select(sa.func.count()).select_from(dead_letters))
        assert left.scalar_one() == 1
    engine.dispose()
