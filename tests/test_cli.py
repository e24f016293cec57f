"""The command line as a user runs it: a real subprocess, real files, exit codes and streams."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
TEXT = FIXTURES / "simulated" / "text_inbound.json"


def wacanon(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "wacanon", *args], input=stdin, capture_output=True, timeout=60
    )


def test_prints_one_event_per_line() -> None:
    done = wacanon("normalize", "--provider", "simulated", str(TEXT))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 1
    event = orjson.loads(lines[0])
    assert event["event_type"] == "whatsapp.message.inbound"
    assert event["message"]["text"] == "Oi! Vocês têm esse tênis no 42? 👟"
    assert done.stderr == b""


def test_reads_stdin_and_fixes_received_at() -> None:
    done = wacanon(
        "normalize",
        "-p",
        "simulated",
        "--received-at",
        "2026-03-01T12:00:00Z",
        "-",
        stdin=TEXT.read_bytes(),
    )
    assert done.returncode == 0
    assert orjson.loads(done.stdout)["received_at"] == "2026-03-01T12:00:00Z"


def test_pretty_indents() -> None:
    done = wacanon("normalize", "-p", "simulated", "--pretty", str(TEXT))
    assert done.returncode == 0
    assert done.stdout.startswith(b'{\n  "schema_version": "1.0"')


def test_no_event_is_still_success() -> None:
    done = wacanon("normalize", "-p", "simulated", "-", stdin=b'{"account": "a", "events": []}')
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")


@pytest.mark.parametrize(
    ("args", "stdin", "needle"),
    [
        (["-p", "simulated", "-"], b'{"account": ', b"invalid JSON"),
        (["-p", "telegram", "-"], b"{}", b"unknown provider 'telegram'"),
        (["-p", "simulated", "/no/such/file.json"], None, b"cannot read /no/such/file.json"),
    ],
)
def test_unusable_input_exits_2_with_one_line(
    args: list[str], stdin: bytes | None, needle: bytes
) -> None:
    done = wacanon("normalize", *args, stdin=stdin)
    assert done.returncode == 2
    assert done.stdout == b""
    assert len(done.stderr.splitlines()) == 1
    assert needle in done.stderr
    assert b"Traceback" not in done.stderr


def test_partly_understood_payload_prints_events_and_exits_1() -> None:
    case = FIXTURES / "simulated" / "broken_items_keep_the_rest.json"
    done = wacanon("normalize", "-p", "simulated", str(case))
    assert done.returncode == 1
    assert len(done.stdout.splitlines()) == 1
    errors = done.stderr.decode().splitlines()
    assert len(errors) == 4
    assert "$.events[1].type" in errors[0]
    assert b"Traceback" not in done.stderr


def test_simulate_is_deterministic_and_normalizes_cleanly() -> None:
    first = wacanon("simulate", "--count", "300", "--seed", "7")
    again = wacanon("simulate", "--count", "300", "--seed", "7")
    assert first.returncode == 0
    assert first.stdout == again.stdout
    bodies = first.stdout.splitlines()
    assert len(bodies) == 300
    assert len(set(bodies)) < 300  # exact redeliveries are part of the stream
    from wacanon import normalize

    kinds = set()
    for body in bodies:
        result = normalize("simulated", body)
        assert result.errors == []
        kinds.update(e.event_type for e in result.events)
    assert {"whatsapp.message.inbound", "whatsapp.message.outbound"} <= kinds
    assert any(k.startswith("whatsapp.message.status.") for k in kinds)


def test_received_at_makes_the_output_byte_identical() -> None:
    args = ("normalize", "-p", "simulated", "--received-at", "2026-03-01T12:00:00Z", str(TEXT))
    first, again = wacanon(*args), wacanon(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout == again.stdout
    same_instant = wacanon(
        "normalize", "-p", "simulated", "--received-at", "2026-03-01T09:00:00-03:00", str(TEXT)
    )
    assert same_instant.stdout == first.stdout
    later = wacanon(
        "normalize", "-p", "simulated", "--received-at", "2026-03-01T12:00:01Z", str(TEXT)
    )
    first_id = orjson.loads(first.stdout)["trace"]["correlation_id"]
    assert orjson.loads(later.stdout)["trace"]["correlation_id"] != first_id


def test_the_derived_correlation_id_follows_the_documented_rule() -> None:
    import hashlib
    import uuid

    done = wacanon(
        "normalize", "-p", "simulated", "--received-at", "2026-03-01T12:00:00Z", str(TEXT)
    )
    digest = hashlib.sha256(TEXT.read_bytes()).hexdigest()
    expected = uuid.uuid5(uuid.NAMESPACE_URL, f"wacanon:normalize:{digest}:2026-03-01T12:00:00Z")
    assert orjson.loads(done.stdout)["trace"]["correlation_id"] == str(expected)


def test_correlation_id_option_sets_the_trace() -> None:
    done = wacanon("normalize", "-p", "simulated", "--correlation-id", "req-42", str(TEXT))
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["trace"]["correlation_id"] == "req-42"


def test_without_received_at_each_run_gets_its_own_correlation_id() -> None:
    first = orjson.loads(wacanon("normalize", "-p", "simulated", str(TEXT)).stdout)
    again = orjson.loads(wacanon("normalize", "-p", "simulated", str(TEXT)).stdout)
    assert first["trace"]["correlation_id"] != again["trace"]["correlation_id"]
