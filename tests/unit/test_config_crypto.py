"""Settings and the person-ID protection."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from smis_tui.core.config import ConfigError, load_settings
from smis_tui.services.crypto import KeyFileError, KeyRing, create_key_file, person_id_slot


def test_environment_overrides_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('inactive_days = 90\ndatabase_url = "sqlite:///x"\n')
    settings = load_settings({"SMIS_DATA_DIR": str(tmp_path), "DATABASE_URL": "postgresql://h/db"})
    assert settings.inactive_days == 90
    assert settings.database_url == "postgresql://h/db"
    assert settings.sqlite_path == tmp_path / "smis.sqlite3"
    assert settings.resolved_key_file == tmp_path / "smis.key"


@pytest.mark.parametrize("value", ["abc", "0", "-5"])
def test_bad_numbers_in_settings_are_named(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="inactive_days"):
        load_settings({"SMIS_DATA_DIR": str(tmp_path), "SMIS_INACTIVE_DAYS": value})


def test_broken_config_file_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("inactive_days = = 3")
    with pytest.raises(ConfigError, match="格式錯誤"):
        load_settings({"SMIS_DATA_DIR": str(tmp_path)})


def test_a_misspelt_setting_is_refused_by_name(tmp_path: Path) -> None:
    """`databse_url` was ignored, and `maintenance` ran on the local SQLite file."""
    (tmp_path / "config.toml").write_text('databse_url = "postgresql://h/db"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings({"SMIS_DATA_DIR": str(tmp_path)})
    message = str(caught.value)
    assert "databse_url" in message and "database_url" in message
    assert str(tmp_path / "config.toml") in message


def test_every_documented_setting_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        'database_url = "sqlite:///x"\nkey_file = "/k"\nca_dir = "/ca"\ncrl_dir = "/crl"\n'
        'crl_grace_hours = 1\ncrl_urls = ["http://crl.example/a.crl"]\ninactive_days = 90\n'
        "inactive_warning_days = 60\nidle_timeout_seconds = 100\n"
        "remote_pin_timeout_seconds = 60\napplications_per_session_hour = 3\n"
        "applications_per_card_hour = 2\npending_lookups_per_session = 4\n"
        'server_names = ["smis.example"]\nlanguage = "en"\noperator_key = "ctrl+f11"\n'
        "access_review_days = 30\naccess_review_inactive_days = 60\n"
        'access_review_default = "recommendation"\n'
    )
    settings = load_settings({"SMIS_DATA_DIR": str(tmp_path)})
    assert settings.operator_key == "ctrl+f11" and settings.crl_urls == (
        "http://crl.example/a.crl",
    )


def test_the_access_review_settings_are_checked(tmp_path: Path) -> None:
    """docs/access-review.md: what undecided items become, and how long a review runs."""
    settings = load_settings({"SMIS_DATA_DIR": str(tmp_path)})
    assert (
        settings.access_review_days,
        settings.access_review_inactive_days,
        settings.access_review_default,
    ) == (14, 90, "keep")
    env = {"SMIS_DATA_DIR": str(tmp_path), "SMIS_ACCESS_REVIEW_DEFAULT": "remove"}
    assert load_settings(env).access_review_default == "remove"
    (tmp_path / "config.toml").write_text('access_review_default = "approve"\n')
    with pytest.raises(ConfigError, match="access_review_default"):
        load_settings({"SMIS_DATA_DIR": str(tmp_path)})
    (tmp_path / "config.toml").unlink()
    for days in ("0", "366", "x"):
        with pytest.raises(ConfigError, match="access_review_days"):
            load_settings({"SMIS_DATA_DIR": str(tmp_path), "SMIS_ACCESS_REVIEW_DAYS": days})
    with pytest.raises(ConfigError, match="access_review_inactive_days"):
        load_settings({"SMIS_DATA_DIR": str(tmp_path), "SMIS_ACCESS_REVIEW_INACTIVE_DAYS": "-1"})


def test_key_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "smis.key"
    assert create_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.read_text()
    assert not create_key_file(path)
    assert path.read_text() == before


def test_encryption_round_trip_and_blind_index(tmp_path: Path) -> None:
    path = tmp_path / "smis.key"
    create_key_file(path)
    keys = KeyRing.from_file(path)
    blob = keys.encrypt("A123456789", person_id_slot(7))
    assert b"A123456789" not in blob
    assert keys.encrypt("A123456789", person_id_slot(7)) != blob  # fresh nonce each time
    assert keys.decrypt(blob, person_id_slot(7)) == "A123456789"
    assert keys.blind_index("A123456789") == keys.blind_index("A123456789")
    assert keys.blind_index("A123456789") != keys.blind_index("A123456780")


def test_a_different_key_cannot_decrypt(tmp_path: Path) -> None:
    create_key_file(tmp_path / "a.key")
    create_key_file(tmp_path / "b.key")
    blob = KeyRing.from_file(tmp_path / "a.key").encrypt("A123456789", person_id_slot(7))
    other = KeyRing.from_file(tmp_path / "b.key")
    with pytest.raises(KeyFileError, match="金鑰與資料庫不符"):
        other.decrypt(blob, person_id_slot(7))
    assert other.check_value != KeyRing.from_file(tmp_path / "a.key").check_value


def test_bad_key_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="找不到"):
        KeyRing.from_file(tmp_path / "none.key")
    garbage = tmp_path / "garbage.key"
    garbage.write_text("hello")
    garbage.chmod(0o600)
    with pytest.raises(KeyFileError, match="格式錯誤"):
        KeyRing.from_file(garbage)
    loose = tmp_path / "loose.key"
    create_key_file(loose)
    loose.chmod(0o644)
    with pytest.raises(KeyFileError, match="0600"):
        KeyRing.from_file(loose)


def test_a_system_configuration_names_its_data_directory(tmp_path: Path) -> None:
    """/etc/smis-tui/config.toml of a server: the key and logs go to /var/lib/smis-tui."""
    config = tmp_path / "etc" / "config.toml"
    config.parent.mkdir()
    config.write_text(f'data_dir = "{tmp_path / "var"}"\n')
    settings = load_settings({"SMIS_CONFIG": str(config), "HOME": str(tmp_path / "home")})
    assert settings.data_dir == tmp_path / "var"
    assert settings.resolved_key_file == tmp_path / "var" / "smis.key"
    # The environment still wins, as for every other setting.
    chosen = load_settings({"SMIS_CONFIG": str(config), "SMIS_DATA_DIR": str(tmp_path / "x")})
    assert chosen.data_dir == tmp_path / "x"


def test_the_theme_is_one_the_kiosk_has(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('theme = "high-contrast"\n')
    assert load_settings({"SMIS_DATA_DIR": str(tmp_path)}).theme == "high-contrast"
    (tmp_path / "config.toml").write_text('theme = "neon"\n')
    with pytest.raises(ConfigError, match="theme"):
        load_settings({"SMIS_DATA_DIR": str(tmp_path)})
