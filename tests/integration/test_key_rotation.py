"""`smis-tui key rotate`, on SQLite and on PostgreSQL: every person ID and blind index
re-written with a new data key, resumable after a crash, verified before the new key
replaces the old one; the kiosk refuses to start while a rotation is unfinished."""

from __future__ import annotations

import dataclasses
import stat

import pytest

from models.db import open_database
from models.schema import Account, UnitKind
from smis_tui.cli import main
from smis_tui.core.config import Settings
from smis_tui.services import Services, build_services, key_rotation
from smis_tui.services.crypto import KeyFileError, KeyRing, create_key_file, rotation_path
from smis_tui.services.key_rotation import rotate_key
from tests.helpers import form, new_person_id, send_application, unit_of_kind


class PowerCut(Exception):
    pass


def _apply(services: Services, count: int) -> dict[int, str]:
    clinic = unit_of_kind(UnitKind.CLINIC, with_category="ppe")
    people = [new_person_id() for _ in range(count)]
    return {send_application(services, form(person, clinic)): person for person in people}


def _stored() -> dict[int, tuple[bytes, str]]:
    return {a.id: (bytes(a.person_id_cipher), a.person_id_index) for a in Account.select()}


def _all_readable_with(settings: Settings, accounts: dict[int, str]) -> None:
    """A kiosk started now finds every account by its ID and reads the ID back."""
    services = build_services(settings)
    for account_id, person in accounts.items():
        assert services.accounts.person_id_for(account_id) == person
        found = services.accounts.find_by_person_id(person)
        assert found is not None and found.id == account_id


def test_rotation_rewrites_every_value_with_a_new_key_and_keeps_the_old_one(
    services: Services, settings: Settings
) -> None:
    accounts = _apply(services, 5)
    key_file = settings.resolved_key_file
    old_key = key_file.read_bytes()
    before = _stored()

    result = rotate_key(key_file, batch_size=2)

    assert (result.rewritten, result.verified, result.resumed) == (5, 5, False)
    assert key_file.read_bytes() != old_key
    assert rotation_path(key_file, "old").read_bytes() == old_key
    assert not rotation_path(key_file, "new").exists()
    for path in (key_file, rotation_path(key_file, "old")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    after = _stored()
    assert all(after[i][0] != before[i][0] and after[i][1] != before[i][1] for i in accounts)
    _all_readable_with(settings, accounts)
    # The old key file no longer opens this database.
    with pytest.raises(KeyFileError, match="金鑰與資料庫不符"):
        build_services(dataclasses.replace(settings, key_file=rotation_path(key_file, "old")))


def test_a_rotation_cut_after_a_batch_blocks_the_kiosk_and_finishes_when_run_again(
    services: Services, settings: Settings
) -> None:
    accounts = _apply(services, 5)
    key_file = settings.resolved_key_file
    old_key = key_file.read_bytes()

    def cut(last_id: int) -> None:
        raise PowerCut(last_id)

    with pytest.raises(PowerCut):
        rotate_key(key_file, batch_size=2, after_batch=cut)
    new_file = rotation_path(key_file, "new")
    assert stat.S_IMODE(new_file.stat().st_mode) == 0o600
    assert key_file.read_bytes() == old_key
    # Two rows are under the new key, three under the old: no kiosk may start.
    with pytest.raises(KeyFileError, match="請再執行 smis-tui key rotate"):
        build_services(settings)
    new_key = new_file.read_bytes()

    result = rotate_key(key_file, batch_size=2)

    assert result.resumed and result.rewritten == 3 and result.verified == 5
    assert key_file.read_bytes() == new_key
    assert rotation_path(key_file, "old").read_bytes() == old_key
    _all_readable_with(settings, accounts)


def test_a_rotation_cut_between_the_database_switch_and_the_file_rename_finishes(
    services: Services, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    accounts = _apply(services, 2)
    key_file = settings.resolved_key_file

    def cut(new_file: object, key_file: object) -> None:
        raise PowerCut

    monkeypatch.setattr(key_rotation, "_switch_files", cut)
    with pytest.raises(PowerCut):
        rotate_key(key_file)
    monkeypatch.undo()
    with pytest.raises(KeyFileError, match="請再執行 smis-tui key rotate"):
        build_services(settings)
    assert rotate_key(key_file).resumed
    _all_readable_with(settings, accounts)


def test_a_wrong_key_file_is_refused_and_nothing_is_written(
    services: Services, settings: Settings
) -> None:
    _apply(services, 2)
    key_file = settings.resolved_key_file
    before = _stored()
    key_file.rename(key_file.with_name("right.key"))
    create_key_file(key_file)
    with pytest.raises(KeyFileError, match="金鑰與資料庫不符"):
        rotate_key(key_file)
    assert _stored() == before
    assert not rotation_path(key_file, "new").exists()
    assert not rotation_path(key_file, "old").exists()


def test_a_resumed_rotation_refuses_a_key_file_other_than_the_one_it_started_from(
    services: Services, settings: Settings
) -> None:
    _apply(services, 3)
    key_file = settings.resolved_key_file

    def cut(last_id: int) -> None:
        raise PowerCut

    with pytest.raises(PowerCut):
        rotate_key(key_file, batch_size=1, after_batch=cut)
    key_file.unlink()
    create_key_file(key_file)
    with pytest.raises(KeyFileError, match="不是輪替前的金鑰"):
        rotate_key(key_file)


def test_key_rotate_command_prints_one_line_for_a_moved_ciphertext(
    services: Services,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (first, _), (second, _) = _apply(services, 2).items()
    stolen = Account.get_by_id(first).person_id_cipher
    Account.update(person_id_cipher=stolen).where(Account.id == second).execute()
    monkeypatch.setenv("SMIS_DATA_DIR", str(settings.data_dir))
    if settings.database_url:
        monkeypatch.setenv("DATABASE_URL", settings.database_url)
    else:
        monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["key", "rotate"]) == 1
    err = capsys.readouterr().err
    assert err == f"smis-tui: 資料完整性檢查失敗：帳號 {second} 的身分證號密文不屬於此列\n"


def test_key_rotate_command_reports_what_it_did(
    services: Services,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    accounts = _apply(services, 3)
    monkeypatch.setenv("SMIS_DATA_DIR", str(settings.data_dir))
    if settings.database_url:
        monkeypatch.setenv("DATABASE_URL", settings.database_url)
    else:
        monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["key", "rotate"]) == 0
    out = capsys.readouterr().out
    assert "重寫 3 筆、驗證 3 筆" in out and "smis.key.old" in out
    open_database(settings.database_url, settings.sqlite_path)
    _all_readable_with(settings, accounts)
    assert KeyRing.from_file(settings.resolved_key_file)
