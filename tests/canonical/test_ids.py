"""Identity helpers: every spelling of a person reduces to the spec's wa_id."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wacanon.canonical.ids import (
    MalformedId,
    Person,
    checked_group,
    event_id,
    idempotency_key,
    is_group_jid,
    is_unroutable_jid,
    lenient_person,
    lid_of,
    parse_jid,
    person_from_jids,
    phone_digits,
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


# ------------------------------------------------------------------ malformed ids (issue #7)

#: As pasted in provider issue threads: masked or mistyped numbers. Each used to be cut
#: down to the digits it contains (``9176434``, ``55``) — a real-looking, wrong identity.
MALFORMED = [
    "9176434xxxxx@s.whatsapp.net",
    "55XXXXXXXXX@s.whatsapp.net",
    "55XXXXXXXXX",
    "12abc@lid",
    "5511 9876-abcd",
    "5511987654321" + "0" * 10 + "@s.whatsapp.net",  # longer than any number
]


@pytest.mark.parametrize("text", MALFORMED)
def test_a_malformed_number_names_no_phone_or_lid(text: str) -> None:
    assert phone_of(text) is None
    assert lid_of(text) is None


@pytest.mark.parametrize("text", MALFORMED)
def test_a_malformed_jid_alone_is_an_error_never_a_truncation(text: str) -> None:
    with pytest.raises(MalformedId) as raised:
        person_from_jids(text)
    assert raised.value.value == text
    assert repr(text) in str(raised.value)
    assert lenient_person(text) == Person()


def test_a_malformed_jid_gives_way_to_a_good_alternative() -> None:
    assert person_from_jids("55XXXXXXXXX@s.whatsapp.net", "103899771998284@lid") == Person(
        lid="103899771998284"
    )
    assert person_from_jids("5511987654321@s.whatsapp.net", "99x@lid") == Person(
        phone="5511987654321"
    )
    assert person_from_jids("55XXXXXXXXX", user_id="BR.1502576394655843") == Person(
        user_id="BR.1502576394655843"
    )


@pytest.mark.parametrize(
    ("text", "digits"),
    [
        ("+55 (11) 98765-4321", "5511987654321"),
        ("55 11 98765.4321", "5511987654321"),
        ("5511987654321", "5511987654321"),
        ("55XXXXXXXXX", None),
        ("+", None),
        ("", None),
        ("٥٥١١", None),  # Arabic-Indic digits are digits to str.isdigit, not to WhatsApp
    ],
)
def test_phone_digits_accepts_formatting_only(text: str, digits: str | None) -> None:
    assert phone_digits(text) == digits


@pytest.mark.parametrize("jid", ["120363041234567890@g.us", "5511987654321-1612345678@g.us"])
def test_group_ids_as_given(jid: str) -> None:
    assert checked_group(jid) == jid


@pytest.mark.parametrize("jid", ["1203630000xxxx@g.us", "@g.us", "grupo@g.us", "1-2-3@g.us"])
def test_a_malformed_group_id_is_an_error(jid: str) -> None:
    with pytest.raises(MalformedId):
        checked_group(jid)


@given(st.text(min_size=1, max_size=30))
def test_an_identity_is_never_built_from_part_of_a_value(text: str) -> None:
    """Whatever the text, a phone or LID found in it is the whole user part, not a piece."""
    for found in (phone_of(text), lid_of(text)):
        if found is not None:
            user = text.strip().partition("@")[0].partition(":")[0].partition("_")[0]
            assert found == user or found == phone_digits(user)
