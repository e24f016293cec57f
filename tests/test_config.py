"""Configuration: the documented shape, ${ENV} expansion, clear errors, first-trial mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from wacanon.config import EXAMPLE, load
from wacanon.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "wacanon.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_documented_example_loads(tmp_path: Path) -> None:
    env = {
        "META_APP_SECRET": "s3cret",
        "META_VERIFY_TOKEN": "tok",
        "EVOLUTION_API_KEY": "k",
        "BAILEYS_BRIDGE_SECRET": "b",
    }
    loaded = load(write(tmp_path, EXAMPLE), env=env)
    s = loaded.settings
    assert s.database_url == "sqlite:///./wacanon.db"
    assert s.providers.cloud_api.app_secret == "s3cret"
    assert s.providers.simulated.token == "dev-token"
    assert s.shopper_for("cloud_api", "106540352242922") == "shop-1"
    assert s.shopper_for("evolution", "unlisted") == "shop-1"  # default_shopper_id
    assert loaded.notes == []


def test_unset_reference_leaves_the_secret_unset_and_says_so(tmp_path: Path) -> None:
    loaded = load(
        write(tmp_path, '[providers.cloud_api]\napp_secret = "${META_APP_SECRET}"\n'), env={}
    )
    assert loaded.settings.providers.cloud_api.app_secret is None
    assert "META_APP_SECRET" in loaded.notes[0]


def test_unlisted_account_without_default_has_no_shopper(tmp_path: Path) -> None:
    loaded = load(write(tmp_path, ""), env={})
    assert loaded.settings.shopper_for("cloud_api", "123") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("databse_url = 'x'\n", "databse_url: unknown key"),
        ('database_url = "mysql://x"\n', "database_url"),
        (
            "[[accounts]]\nprovider = 'telegram'\naccount_id = '1'\nshopper_id = 's'\n",
            "accounts.0.provider",
        ),
        ("max_body_bytes = 0\n", "max_body_bytes"),
        ("this is = not toml [", "not valid TOML"),
        (
            "[[accounts]]\nprovider = 'simulated'\naccount_id = 'wacanon-probe'\n"
            "shopper_id = 's'\n",
            "accounts\\[wacanon-probe\\].account_id: 'wacanon-probe' is reserved",
        ),
        ("default_shopper_id = 'wacanon-probe'\n", "default_shopper_id: 'wacanon-probe' is"),
    ],
)
def test_invalid_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(write(tmp_path, text), env={})


def test_environment_overrides_the_database_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WACANON_DATABASE_URL", "postgres://postgres@db/wacanon")
    loaded = load(write(tmp_path, 'database_url = "sqlite:///./a.db"\n'))
    assert loaded.settings.database_url == "postgresql+psycopg://postgres@db/wacanon"


def test_no_config_at_all_is_a_first_trial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    loaded = load(None, env={})
    assert loaded.first_trial
    s = loaded.settings
    assert s.database_url == "sqlite:///./wacanon.db"
    assert s.providers.simulated.token
    assert (tmp_path / ".wacanon-dev-token").read_text().strip() == s.providers.simulated.token
    assert s.providers.cloud_api.app_secret is None
    again = load(None, env={})
    assert again.settings.providers.simulated.token == s.providers.simulated.token
    # the read API is open to an all-shoppers token, the same at every start, and printed
    (api,) = s.api_tokens
    assert api.shopper_id == "*"
    assert api.token != s.providers.simulated.token
    assert again.settings.api_tokens == s.api_tokens
    assert any(api.token in note and "/v1" in note for note in loaded.notes)


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "nope.toml", env={})


def test_a_blank_secret_is_no_secret(tmp_path: Path) -> None:
    text = '[providers.cloud_api]\napp_secret = "${META_APP_SECRET}"\n'
    text += '[providers.baileys]\nsecret = " "\n'
    loaded = load(write(tmp_path, text), env={"META_APP_SECRET": ""})
    assert loaded.settings.providers.cloud_api.app_secret is None
    assert loaded.settings.providers.baileys.secret is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "$EVOLUTION_API_KEY",
            "providers.evolution.api_key: malformed environment reference '$EVOLUTION_API_KEY' "
            "(write ${EVOLUTION_API_KEY}",
        ),
        (
            "${EVOLUTION_API_KEY",
            "providers.evolution.api_key: unclosed environment reference '${EVOLUTION_API_KEY' "
            "(write ${EVOLUTION_API_KEY})",
        ),
        ("${}", "providers.evolution.api_key: empty environment reference '${}'"),
        ("${1BAD}", "providers.evolution.api_key: '${1BAD}' is not a valid environment variable"),
        ("key-$5", "providers.evolution.api_key: malformed environment reference '$5'"),
        ("${A}${B", "unclosed environment reference '${B'"),
    ],
)
def test_a_malformed_reference_refuses_to_load_naming_the_key(
    tmp_path: Path, value: str, message: str
) -> None:
    path = write(tmp_path, f"[providers.evolution]\napi_key = '{value}'\n")
    env = {"EVOLUTION_API_KEY": "k", "A": "a", "B": "b"}
    with pytest.raises(ConfigError) as caught:
        load(path, env=env)
    assert message in str(caught.value)


def test_a_malformed_reference_in_a_list_names_its_index(tmp_path: Path) -> None:
    text = "[[accounts]]\nprovider = 'simulated'\naccount_id = '$ACC'\nshopper_id = 's'\n"
    with pytest.raises(ConfigError, match=r"accounts\[0\]\.account_id: malformed"):
        load(write(tmp_path, text), env={"ACC": "a"})


@pytest.mark.parametrize(
    ("value", "expanded"),
    [
        ("pa$$word", "pa$word"),  # $$ is a literal $
        ("$${NOT_A_REFERENCE}", "${NOT_A_REFERENCE}"),
        ("pa$ 1", "pa$ 1"),  # a $ before anything but a name or { is itself
        ("ends with $", "ends with $"),
        ("x-${EVOLUTION_API_KEY}-$$", "x-k-$"),
    ],
)
def test_dollar_rules(tmp_path: Path, value: str, expanded: str) -> None:
    path = write(tmp_path, f"[providers.evolution]\napi_key = '{value}'\n")
    loaded = load(path, env={"EVOLUTION_API_KEY": "k"})
    assert loaded.settings.providers.evolution.api_key == expanded


def test_first_trial_simulated_accounts_belong_to_their_numbered_shopper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    loaded = load(None, env={})
    s = loaded.settings
    assert s.shopper_for("simulated", "sim-shop-1-main") == "shop-1"
    assert s.shopper_for("simulated", "sim-shop-2-main") == "shop-2"
    assert s.shopper_for("simulated", "sim-shop-3-main") == "shop-3"
    assert s.shopper_for("simulated", "sim-shop-12-main") == "shop-12"
    assert s.shopper_for("simulated", "my-store") == "shop-1"  # default_shopper_id
    assert s.shopper_for("cloud_api", "sim-shop-2-main") == "shop-1"  # only simulated accounts
    assert s.known_shoppers == ["shop-1", "shop-2", "shop-3"]
    note = " ".join(loaded.notes)
    assert "sim-shop-N-" in note
    assert "shop-N" in note
    assert "every account belongs to shopper shop-1" not in note


def test_a_config_file_keeps_simulated_accounts_to_the_listed_owners(tmp_path: Path) -> None:
    text = 'default_shopper_id = "shop-1"\n'
    text += "[[accounts]]\nprovider = 'simulated'\naccount_id = 'a'\nshopper_id = 'shop-9'\n"
    s = load(write(tmp_path, text), env={}).settings
    assert s.shopper_for("simulated", "sim-shop-2-main") == "shop-1"
    assert s.known_shoppers == ["shop-1", "shop-9"]


def test_the_in_flight_bound_must_hold_one_whole_body(tmp_path: Path) -> None:
    config = tmp_path / "wacanon.toml"
    config.write_text("max_body_bytes = 2000000\nmax_inflight_body_bytes = 1000000\n")
    with pytest.raises(ConfigError, match="max_inflight_body_bytes"):
        load(config, env={})
