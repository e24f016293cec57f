"""Identity helpers: every spelling of a person reduces to the spec's wa_id."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wacanon.canonical.ids import (
    Person,
    event_id,
    idempotency_key,
    is_group_jid,
    is_unroutable_jid,
    lid_of,
    parse_jid,
    person_from_jids,
    phone_of,
)


@pytest.mark.parametrize(
    ("text", "phone"),
    [
        ("5511987654321@s.whatsapp.net", "5511987654321"),
        ("5511987654321:12@s.whatsapp.net", "5511987654321"),
        ("5511987654321@c.us", "5511987654321"),
        ("+55 (11) 98765-4321", "5511987654321"),
        ("5511987654321", "5511987654321"),
        ("103899771998284@lid", None),
        ("120363041234567890@g.us", None),
        ("status@broadcast", None),
        ("", None),
        (None, None),
    ],
)
def test_phone_of(text: str | None, phone: str | None) -> None:
    assert phone_of(text) == phone


def test_lid_of_drops_the_device_suffix() -> None:
    assert lid_of("103899771998284:7@lid") == "103899771998284"
    assert lid_of("5511987654321@s.whatsapp.net") is None


def test_group_ids_are_kept_as_given() -> None:
    old_style = "5511987654321-1600000000@g.us"
    assert is_group_jid(old_style)
    assert parse_jid(old_style).user == "5511987654321-1600000000"


def test_unroutable_jids() -> None:
    assert is_unroutable_jid("status@broadcast")
    assert is_unroutable_jid("120363200000000000@newsletter")
    assert not is_unroutable_jid("5511987654321@s.whatsapp.net")


def test_person_classifies_each_jid_by_its_server_not_its_field() -> None:
    # Baileys 7 "pn" mode: the alternative holds the LID; "lid" mode: it holds the phone.
    pn_mode = person_from_jids("5511987654321@s.whatsapp.net", "103899771998284@lid")
    lid_mode = person_from_jids("103899771998284@lid", "5511987654321@s.whatsapp.net")
    assert pn_mode == lid_mode == Person(phone="5511987654321", lid="103899771998284")
    assert pn_mode.wa_id == "5511987654321"


def test_wa_id_falls_back_to_lid_then_bsuid() -> None:
    assert Person(lid="103899771998284").wa_id == "lid:103899771998284"
    assert Person(user_id="BR.1502576394655843").wa_id == "bsuid:BR.1502576394655843"
    assert Person().wa_id is None


def test_event_id_is_uuid5_of_the_key() -> None:
    key = idempotency_key("cloud_api", "106540352242922", "message", "wamid.X")
    assert event_id(key) == str(uuid.uuid5(uuid.NAMESPACE_URL, key))
    assert uuid.UUID(event_id(key)).version == 5


@given(st.lists(st.one_of(st.none(), st.text()), max_size=6), st.text(), st.text())
def test_key_is_64_lowercase_hex_and_deterministic(parts: list[str | None], a: str, b: str) -> None:
    key = idempotency_key(a, b, *parts)
    assert len(key) == 64
    assert key == key.lower()
    assert key == idempotency_key(a, b, *parts)


@given(st.lists(st.text(), min_size=1, max_size=5), st.lists(st.text(), min_size=1, max_size=5))
def test_different_identities_never_share_a_key(x: list[str], y: list[str]) -> None:
    if x != y:
        assert idempotency_key("p", "a", *x) != idempotency_key("p", "a", *y)


def test_joined_parts_cannot_collide() -> None:
    assert idempotency_key("p", "a", "x|y", "z") != idempotency_key("p", "a", "x", "y|z")
