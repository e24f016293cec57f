"""Masking secrets never changes what a webhook says."""

from __future__ import annotations

import orjson
import pytest

from wacanon.ingest import masking
from wacanon.ingest.masking import mask_secrets

KEY = "B6D711FCDE4D4FD5936544120E713976"


def test_evolution_api_key_values_are_masked_at_any_depth() -> None:
    body = orjson.dumps({"apikey": "instance-token-1", "data": {"apikey": KEY, "n": 1}})
    kept, masked = mask_secrets("evolution", body, KEY)
    assert masked
    assert orjson.loads(kept) == {"apikey": "***", "data": {"apikey": "***", "n": 1}}


def test_a_secret_inside_a_number_or_a_key_is_left_alone() -> None:
    secret = "17001230"
    body = b'{"apikey":"x","ts":1700123000,"17001230":{"data":1},"note":"id 17001230 here"}'
    kept, masked = mask_secrets("cloud_api", body, secret)
    assert masked
    assert orjson.loads(kept) == {
        "apikey": "x",
        "ts": 1700123000,
        "17001230": {"data": 1},
        "note": "id *** here",
    }


def test_a_short_secret_is_not_hunted_for() -> None:
    body = b'{"data":"data"}'
    assert mask_secrets("simulated", body, "data") == (body, False)


def test_bodies_the_decoder_refuses_do_not_crash_and_lose_the_secret() -> None:
    body = b'{"apikey":"\\u0041BC","x":1e400,"t":"' + KEY.encode() + b'"}'
    kept, masked = mask_secrets("evolution", body, KEY)
    assert masked
    assert KEY.encode() not in kept
    broken = b'{"apikey": "' + KEY.encode() + b'", "data": '
    kept, masked = mask_secrets("evolution", broken, KEY)
    assert masked
    assert KEY.encode() not in kept


def test_nothing_to_mask_returns_the_same_bytes() -> None:
    body = b'{"object":"whatsapp_business_account","entry":[]}'
    assert mask_secrets("cloud_api", body, "meta-app-secret-xyz") == (body, False)


def test_a_secret_written_with_json_escapes_is_masked_too() -> None:
    """``\\u002d`` for ``-``, ``\\/`` for ``/``: not the secret's bytes, but the secret once
    decoded — which is what the events derived from the body would have kept."""
    for secret, escaped in [
        ("evoKey-ABCDEFGHIJ123456", b"evoKey\\u002dABCDEFGHIJ123456"),
        ("meta/Secret+0123456789", b"meta\\/Secret+0123456789"),
        ("chave-secreta-ção-2026", b"chave-secreta-\\u00e7\\u00e3o-2026"),
    ]:
        body = b'{"entry":[{"text":{"body":"k=' + escaped + b' ok \\ud83d\\udc4d"}}]}'
        kept, masked = mask_secrets("cloud_api", body, secret)
        assert masked
        text = orjson.loads(kept)["entry"][0]["text"]["body"]
        assert text == "k=*** ok 👍"


def test_escapes_that_do_not_spell_the_secret_leave_the_body_as_it_came() -> None:
    body = b'{"url":"https:\\/\\/lookaside.fbsbx.com\\/x","t":"\\ud83d\\udc4d"}'
    assert mask_secrets("cloud_api", body, "meta-app-secret-xyz") == (body, False)


def test_a_lone_surrogate_does_not_hide_an_escaped_secret() -> None:
    body = b'{"t":"cut \\ud83d","k":"evoKey\\u002dABCDEFGHIJ123456"}'
    kept, masked = mask_secrets("evolution", body, "evoKey-ABCDEFGHIJ123456")
    assert masked
    assert orjson.loads(kept) == {"t": "cut \ufffd", "k": "***"}


def test_a_bom_does_not_hide_an_escaped_secret_and_a_key_is_not_a_value() -> None:
    secret = "evoKey-ABCDEFGHIJ123456"
    bom = b'\xef\xbb\xbf{"t":"k=evoKey\\u002dABCDEFGHIJ123456"}'
    kept, masked = mask_secrets("evolution", bom, secret)
    assert masked
    assert orjson.loads(kept) == {"t": "k=***"}
    in_a_key = b'{"evoKey-ABCDEFGHIJ123456":{"n":1.0e2}}'  # keys are never masked
    assert mask_secrets("cloud_api", in_a_key, secret) == (in_a_key, False)


def test_common_escapes_are_not_a_reason_to_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Meta writes non-ASCII as \\uXXXX and slashes as \\/: a secret of ASCII letters and
    digits cannot hide behind those, so such a body (1 MiB here) is left as it came,
    without a decode (16 ms on the event loop, when every escape was a reason)."""

    def no_decode(*_: object) -> object:
        raise AssertionError("decoded")

    monkeypatch.setattr(masking.msgspec.json, "decode", no_decode)
    item = b'{"text":"Ol\\u00e1 \\ud83d\\udc4d","url":"https:\\/\\/x.example\\/m"},'
    body = b'{"items":[' + item * (1_000_000 // len(item)) + b"{}]}"
    kept, masked = mask_secrets("cloud_api", body, "meta0app0secret0xyz")
    assert kept is body
    assert not masked
