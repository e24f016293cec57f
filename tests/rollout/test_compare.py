"""Comparative logs and ``wacanon compare`` (issue #9 §3): a raw field is mapped when an
event field derives from it (measured by perturbing it), named by JSON path; the
aggregate lists what the normalizers still ignore; the server's comparison line carries
paths, ids and types at INFO, never a value."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import structlog
import structlog.testing

from tests.api.conftest import SIM_TOKEN, bearer, sim_body
from tests.test_cli_service import wacanon
from wacanon.rollout.compare import Aggregate, compare, generic, json_path

FIXTURES = Path(__file__).parent.parent / "fixtures"
CLOUD_TEXT = {
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
                        "contacts": [{"profile": {"name": "Joana"}, "wa_id": "5511987654321"}],
                        "messages": [
                            {
                                "from": "5511987654321",
                                "id": "wamid.HBgLNTUxMTk4NzY1NDMyMRUCABIYFjNFQjBDMEY",
                                "timestamp": "1772366400",
                                "type": "text",
                                "text": {"body": "Oi! Tem o tênis 42? 👟"},
                            }
                        ],
                    },
                }
            ],
        }
    ],
}


def test_what_the_cloud_api_events_derive_from_and_what_they_ignore() -> None:
    found = compare("cloud_api", orjson.dumps(CLOUD_TEXT))
    value = "$.entry[0].changes[0].value"
    assert {
        f"{value}.messages[0].text.body",
        f"{value}.messages[0].id",
        f"{value}.messages[0].timestamp",
        f"{value}.metadata.phone_number_id",
        f"{value}.contacts[0].profile.name",
    } <= set(found.mapped)
    assert {"$.object", "$.entry[0].id", f"{value}.messaging_product"} <= set(found.unmapped)
    assert not set(found.mapped) & set(found.unmapped)
    assert len(found.mapped) + len(found.unmapped) == 13  # every leaf, once
    assert [t for _, t in found.events] == ["whatsapp.message.inbound"]


def test_the_masked_api_key_of_an_evolution_body_is_unmapped() -> None:
    path = next(
        p for p in sorted((FIXTURES / "evolution").glob("*.json")) if "expected" not in p.name
    )
    found = compare("evolution", path.read_bytes())
    if "$.apikey" in found.mapped + found.unmapped:
        assert "$.apikey" in found.unmapped
    assert "$.data.key.id" in found.mapped


def test_a_body_that_is_not_json_has_no_fields_and_says_why() -> None:
    found = compare("simulated", b"not json")
    assert (found.mapped, found.unmapped) == ([], [])
    assert found.errors


def test_paths_quote_keys_that_are_not_identifiers_and_generalize_indexes() -> None:
    assert json_path(("entry", 0, "a-b", "x y", 2)) == '$.entry[0]["a-b"]["x y"][2]'
    assert generic("$.entry[0].changes[12].value") == "$.entry[*].changes[*].value"


def test_a_big_body_is_examined_up_to_a_bound() -> None:
    facts = [
        {"type": "message", "id": f"M{i}", "from": "5511987654321", "text": "oi", "timestamp": 1}
        for i in range(50)
    ]
    found = compare("simulated", sim_body(*facts), max_leaves=40)
    assert len(found.mapped) + len(found.unmapped) == 40
    assert found.not_examined == 50 * 5 + 1 - 40


def test_the_aggregate_counts_each_field_once_per_webhook() -> None:
    aggregate = Aggregate()
    for _ in range(3):
        aggregate.add(compare("cloud_api", orjson.dumps(CLOUD_TEXT)))
    top = dict(aggregate.top("cloud_api"))
    assert top["$.object"] == 3
    assert top["$.entry[*].id"] == 3
    assert aggregate.webhooks["cloud_api"] == 3


def test_compare_a_file_and_the_journal_from_the_command_line(
    make_client: Any, database_url: str, tmp_path: Path
) -> None:
    payload = tmp_path / "cloud.json"
    payload.write_bytes(orjson.dumps(CLOUD_TEXT))
    one = wacanon(tmp_path, "compare", "--provider", "cloud_api", str(payload))
    assert one.returncode == 0, one.stderr
    assert "UNMAPPED  $.object" in one.stdout
    assert "mapped    $.entry[0].changes[0].value.messages[0].text.body" in one.stdout
    assert "whatsapp.message.inbound" in one.stdout

    client = make_client(env={})
    for i in range(3):
        body = sim_body({"type": "message", "id": f"C{i}", "from": "5511987654321",
                         "text": "oi", "timestamp": 1772366400, "extra": {"x": 1}})  # fmt: skip
        assert client.post("/webhooks/simulated", content=body, headers=bearer()).status_code == 200
    config = tmp_path / "wacanon.toml"
    config.write_text(f'database_url = "{database_url}"\n')
    journal = wacanon(
        tmp_path, "compare", "--from-journal", "--since", "2020-01-01T00:00:00Z",
        "--json", "--config", str(config),
    )  # fmt: skip
    assert journal.returncode == 0, journal.stderr
    report = orjson.loads(journal.stdout)
    assert report["webhooks"] == 3
    unmapped = {u["path"]: u["webhooks"] for u in report["providers"]["simulated"]["unmapped"]}
    assert unmapped["$.events[*].extra.x"] == 3
    refused = wacanon(tmp_path, "compare", str(payload))
    assert refused.returncode == 2
    assert "--provider" in refused.stderr


def test_a_sampled_webhook_logs_one_comparison_without_values(make_client: Any) -> None:
    client = make_client(env={"WACANON_COMPARATIVE_LOGS": "true"}, comparative_logs_sample_rate=1.0)
    body = sim_body({"type": "message", "id": "CMP-1", "from": "+55 11 98765-4321",
                     "name": "Joana Prado", "text": "meu CPF é 123", "timestamp": 1772366400,
                     "mood": "ótimo"})  # fmt: skip
    with structlog.testing.capture_logs() as logs:
        answer = client.post("/webhooks/simulated", content=body, headers=bearer(SIM_TOKEN))
        assert answer.status_code == 200
        deadline = time.monotonic() + 5
        # Both lines: the comparison is logged off the request, its values just after.
        while not {"comparison", "comparison values"} <= {x["event"] for x in logs}:
            assert time.monotonic() < deadline, "no comparison logged"
            time.sleep(0.05)
    (line,) = [x for x in logs if x["event"] == "comparison"]
    assert line["log_level"] == "info"
    assert line["correlation_id"] == answer.json()["correlation_id"]
    assert "$.events[0].mood" in line["unmapped_paths"]
    assert "$.events[0].text" in line["mapped_paths"]
    assert line["event_types"] == ["whatsapp.message.inbound"]
    info = repr([x for x in logs if x["log_level"] == "info"])
    for secret in ("98765", "Joana", "CPF", "ótimo"):
        assert secret not in info, secret
    assert any(x["event"] == "comparison values" and x["log_level"] == "debug" for x in logs)


def test_a_shopper_without_comparative_logs_is_not_compared(make_client: Any) -> None:
    client = make_client(env={}, comparative_logs_sample_rate=1.0)
    body = sim_body({"type": "message", "id": "CMP-2", "from": "5511987654321", "text": "oi",
                     "timestamp": 1772366400})  # fmt: skip
    with structlog.testing.capture_logs() as logs:
        assert client.post("/webhooks/simulated", content=body, headers=bearer()).status_code == 200
        time.sleep(0.3)
    assert not [x for x in logs if x["event"] == "comparison"]
