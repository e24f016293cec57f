"""How fast normalization is: events per second per provider, on one core.

Every figure goes through the library call — JSON bytes in, canonical models out,
serialized back to JSON with ``CanonicalEvent.to_json()`` (pydantic's own serializer:
the same bytes as ``model_dump_json()``) — and is the median of several runs. The same
run measures a trivial baseline (decode the body and encode it again with orjson) so each figure is
also a ratio that survives a noisy, shared machine, and pywa (the Python Cloud API
library) parsing the same Cloud API text payloads into its own objects.

    python benchmarks/normalize.py [--runs 5] [--seconds 1.0]

Needs the `bench` extra for the pywa comparison (`pip install -e '.[bench]'`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import orjson

from wacanon import normalize

FIXTURES = Path(__file__).parent.parent / "tests" / "fixtures"
WHEN = datetime(2026, 3, 1, tzinfo=UTC)


def cloud_text(i: int) -> bytes:
    """One realistic Cloud API text webhook, distinct ids per index."""
    phone = f"55119{87650000 + i % 9999:08d}"
    return orjson.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "102290129340398",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": "15550783881",
                                    "phone_number_id": "106540352242922",
                                },
                                "contacts": [
                                    {
                                        "profile": {"name": "Ana Souza"},
                                        "wa_id": phone,
                                        "user_id": f"BR.{1502576394655843 + i}",
                                    }
                                ],
                                "messages": [
                                    {
                                        "from": phone,
                                        "from_user_id": f"BR.{1502576394655843 + i}",
                                        "id": f"wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFDNB{i:012d}",
                                        "timestamp": str(1772366400 + i),
                                        "type": "text",
                                        "text": {"body": "Oi! Vocês têm esse tênis no 42? 👟"},
                                    }
                                ],
                            },
                        }
                    ],
                }
            ],
        }
    )


def evolution_text(i: int) -> bytes:
    """One realistic Evolution API v2 messages.upsert text webhook."""
    phone = f"55119{87650000 + i % 9999:08d}"
    return orjson.dumps(
        {
            "event": "messages.upsert",
            "instance": "loja-centro",
            "data": {
                "key": {
                    "remoteJid": f"{phone}@s.whatsapp.net",
                    "remoteJidAlt": f"{103899771998284 + i}@lid",
                    "fromMe": False,
                    "id": f"3EB0{i:016X}",
                    "addressingMode": "pn",
                },
                "pushName": "Ana Souza",
                "status": "DELIVERY_ACK",
                "message": {
                    "conversation": "Oi! Vocês têm esse tênis no 42? 👟",
                    "messageContextInfo": {"deviceListMetadataVersion": 2},
                },
                "messageType": "conversation",
                "messageTimestamp": 1772366400 + i,
                "instanceId": "6e1f3c1a-6b0e-4c59-9f7e-0d9f6f3b2a11",
                "source": "android",
            },
            "destination": "https://wacanon.example/webhooks/evolution",
            "date_time": "2026-03-01T09:00:00.000Z",
            "sender": "5511900000000@s.whatsapp.net",
            "server_url": "https://evo.example.com",
            "apikey": "B6D711FCDE4D4FD5936544120E713976",
        }
    )


def fixture_corpus(provider: str) -> list[bytes]:
    return [
        p.read_bytes()
        for p in sorted((FIXTURES / provider).glob("*.json"))
        if not p.name.endswith(".expected.json")
    ]


def wacanon_round_trip(provider: str) -> Callable[[bytes], int]:
    def run(body: bytes) -> int:
        result = normalize(provider, body, received_at=WHEN, correlation_id="bench")
        for event in result.events:
            event.to_json()
        return len(result.events)

    return run


def baseline(body: bytes) -> int:
    orjson.dumps(orjson.loads(body))
    return 1


def rate(work: Callable[[bytes], int], corpus: list[bytes], seconds: float) -> float:
    """Items per second over whole passes of the corpus for about ``seconds``."""
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for body in corpus:
            done += work(body)
        now = time.perf_counter()
        if now >= deadline:
            return done / (now - start)


def median_rate(
    work: Callable[[bytes], int], corpus: list[bytes], runs: int, seconds: float
) -> float:
    return statistics.median(rate(work, corpus, seconds) for _ in range(runs))


def pywa_parser() -> Callable[[bytes], int] | None:
    """pywa's own parse of a Cloud API message webhook, or None when pywa is missing."""
    try:
        from pywa import WhatsApp
        from pywa.types import Message
    except ImportError:
        return None
    client = WhatsApp(phone_id="106540352242922", token="bench-token", validate_updates=False)

    def run(body: bytes) -> int:
        Message.from_update(client, orjson.loads(body))
        return 1

    return run


def stage_costs(provider: str, corpus: list[bytes], runs: int, seconds: float) -> dict[str, float]:
    """Microseconds per webhook (one event each) for each stage, to show where the time goes."""
    decode = msgspec.json.Decoder().decode
    events = [e for b in corpus for e in normalize(provider, b, received_at=WHEN).events]

    def normalize_only(body: bytes) -> int:
        normalize(provider, body, received_at=WHEN, correlation_id="bench")
        return 1

    def dump_all(_: bytes) -> int:
        for event in events:
            event.to_json()
        return len(events)

    return {
        "decode JSON": 1e6 / median_rate(lambda b: decode(b) and 1, corpus, runs, seconds),
        "normalize (decode+map+validate)": 1e6 / median_rate(normalize_only, corpus, runs, seconds),
        "serialize the event": 1e6 / median_rate(dump_all, [b""], runs, seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    text = {
        "cloud_api": [cloud_text(i) for i in range(2000)],
        "evolution": [evolution_text(i) for i in range(2000)],
    }
    print(f"median of {args.runs} runs of {args.seconds:.1f} s, one core\n")
    base = median_rate(baseline, text["cloud_api"], args.runs, args.seconds)
    print(f"{'baseline: orjson loads+dumps (bodies/s)':48} {base:>12,.0f}")

    print("\ntext messages (target >= 40,000 events/s)")
    for provider, corpus in text.items():
        r = median_rate(wacanon_round_trip(provider), corpus, args.runs, args.seconds)
        verdict = "ok" if r >= 40_000 else "BELOW TARGET"
        print(f"  {provider:<12} {r:>12,.0f} events/s  {base / r:5.1f}x baseline cost  {verdict}")

    pywa = pywa_parser()
    if pywa is not None:
        p = median_rate(pywa, text["cloud_api"], args.runs, args.seconds)
        ours = median_rate(
            wacanon_round_trip("cloud_api"), text["cloud_api"], args.runs, args.seconds
        )
        print(f"  {'pywa parse':<12} {p:>12,.0f} updates/s  wacanon/pywa = {ours / p:.2f}x")
    else:
        print("  pywa not installed: pip install -e '.[bench]' for the comparison")

    print("\nfixture corpus (every shape, events/s)")
    for provider in ("cloud_api", "evolution", "baileys", "simulated"):
        corpus = fixture_corpus(provider)
        r = median_rate(wacanon_round_trip(provider), corpus, args.runs, args.seconds)
        print(f"  {provider:<12} {r:>12,.0f} events/s over {len(corpus)} payloads")

    print("\nstage costs, cloud_api text (µs per webhook)")
    for stage, micros in stage_costs(
        "cloud_api", text["cloud_api"], args.runs, args.seconds / 2
    ).items():
        print(f"  {stage:<36} {micros:8.1f}")


if __name__ == "__main__":
    main()
