"""Every encrypted person ID is bound to its table, column and row (AES-GCM
associated data), on SQLite and on PostgreSQL: a ciphertext copied into another
account's row is refused, never read as that account's ID; a version-1 database is
brought to row-bound values by `smis-tui db upgrade`, in batches, resumably."""

from __future__ import annotations

import base64
import secrets

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from card.identity import CardIdentity
from card.sim.testpki import self_signed_certificate
from models.db import open_database
from models.migrate import SCHEMA_VERSION, current_version, upgrade
from models.schema import Account, Meta, UnitKind
from smis_tui.cli import main
from smis_tui.core.config import Settings
from smis_tui.core.domain import CardKind
from smis_tui.services import Services, build_services
from smis_tui.services.accounts import PersonalData
from smis_tui.services.bootstrap import bootstrap_admin
from smis_tui.services.crypto import DataIntegrityError, person_id_slot
from tests.helpers import form, new_person_id, send_application, unit_of_kind


def _apply(services: Services, count: int) -> dict[int, str]:
    """``count`` applications at a clinic: account id → person ID."""
    clinic = unit_of_kind(UnitKind.CLINIC, with_category="ppe")
    people = [new_person_id() for _ in range(count)]
    return {send_application(services, form(person, clinic)): person for person in people}


def _move_cipher(from_id: int, to_id: int) -> None:
    stolen = Account.get_by_id(from_id).person_id_cipher
    Account.update(person_id_cipher=stolen).where(Account.id == to_id).execute()


def _run_cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setenv("SMIS_DATA_DIR", str(settings.data_dir))
    if settings.database_url:
        monkeypatch.setenv("DATABASE_URL", settings.database_url)
    else:
        monkeypatch.delenv("DATABASE_URL", raising=False)
    code = main(list(args))
    open_database(settings.database_url, settings.sqlite_path)
    return code


def test_a_person_id_cipher_moved_to_another_account_is_refused(services: Services) -> None:
    (victim_id, _), (attacker_id, _) = _apply(services, 2).items()
    _move_cipher(victim_id, attacker_id)
    with pytest.raises(DataIntegrityError) as refused:
        services.accounts.person_id_for(attacker_id)
    assert str(refused.value) == f"資料完整性檢查失敗：帳號 {attacker_id} 的身分證號密文不屬於此列"
    assert refused.value.render("en").startswith("Data integrity check failed")


def test_the_bootstrap_administrator_id_is_bound_to_its_row(services: Services) -> None:
    person = new_person_id()
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = self_signed_certificate(key, "陳管理")
    card = CardIdentity(
        kind=CardKind.PIV,
        name="陳管理",
        id_hint=None,
        cert_sha256=secrets.token_hex(32),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        certificate=certificate,
    )
    data = PersonalData(
        name="陳管理",
        phone="02-23959825",
        email="admin@cdc.example.tw",
        phone_backup="",
        email_backup="",
        mobile="",
    )
    admin_id = bootstrap_admin(services.accounts, card, person, data)
    assert services.accounts.person_id_for(admin_id) == person
    (other_id, _), *_ = _apply(services, 1).items()
    _move_cipher(admin_id, other_id)
    with pytest.raises(DataIntegrityError):
        services.accounts.person_id_for(other_id)


def _legacy_blob(settings: Settings, person_id: str) -> bytes:
    """A person ID as schema version 1 stored it: the same associated data in every row."""
    master = base64.b64decode(settings.resolved_key_file.read_text().split()[1])
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"person-id encryption")
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(key.derive(master)).encrypt(nonce, person_id.encode(), b"smis-tui person-id v1")
    return nonce + sealed


def _make_version_1(settings: Settings, accounts: dict[int, str]) -> None:
    for account_id, person in accounts.items():
        Account.update(person_id_cipher=_legacy_blob(settings, person)).where(
            Account.id == account_id
        ).execute()
    Meta.update(value="1").where(Meta.key == "schema_version").execute()


def test_db_upgrade_binds_version_1_values_to_their_rows_and_runs_again_harmlessly(
    services: Services,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    accounts = _apply(services, 4)
    _make_version_1(settings, accounts)
    # Unbound, a version-1 value reads as whichever account it is copied into.
    with pytest.raises(DataIntegrityError):
        services.accounts.person_id_for(next(iter(accounts)))

    assert _run_cli(settings, monkeypatch, "db", "upgrade") == 0
    assert f"由版本 1 升級至 {SCHEMA_VERSION}" in capsys.readouterr().out
    assert current_version() == SCHEMA_VERSION
    for account_id, person in accounts.items():
        assert services.accounts.person_id_for(account_id) == person
    blobs = {a.id: bytes(a.person_id_cipher) for a in Account.select()}

    assert _run_cli(settings, monkeypatch, "db", "upgrade") == 0
    assert {a.id: bytes(a.person_id_cipher) for a in Account.select()} == blobs
    first, second, *_ = accounts
    _move_cipher(first, second)
    with pytest.raises(DataIntegrityError):
        services.accounts.person_id_for(second)


def test_an_interrupted_upgrade_keeps_its_finished_batches_and_completes_when_run_again(
    services: Services, settings: Settings
) -> None:
    accounts = _apply(services, 3)
    _make_version_1(settings, accounts)
    calls: list[int] = []

    def crash_on_the_third(account_id: int, blob: bytes) -> bytes | None:
        calls.append(account_id)
        if len(calls) == 3:
            raise RuntimeError("power cut")
        return services.keys.bind_legacy(blob, person_id_slot(account_id))

    with pytest.raises(RuntimeError, match="power cut"):
        upgrade(crash_on_the_third, batch_size=1)
    assert current_version() == 1
    first, second, third = accounts
    assert services.accounts.person_id_for(first) == accounts[first]
    assert services.accounts.person_id_for(second) == accounts[second]

    assert upgrade(lambda i, b: services.keys.bind_legacy(b, person_id_slot(i)), batch_size=1) == (
        1,
        SCHEMA_VERSION,
    )
    assert services.accounts.person_id_for(third) == accounts[third]


def test_upgrade_refuses_a_version_1_database_without_its_key(
    services: Services,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    accounts = _apply(services, 1)
    _make_version_1(settings, accounts)
    settings.resolved_key_file.rename(settings.resolved_key_file.with_name("elsewhere"))
    assert _run_cli(settings, monkeypatch, "db", "upgrade") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "找不到資料加密金鑰檔" in err and "Traceback" not in err
    assert current_version() == 1


def test_a_fresh_build_reads_what_it_wrote(settings: Settings) -> None:
    open_database(settings.database_url, settings.sqlite_path)
    services = build_services(settings)
    accounts = _apply(services, 2)
    for account_id, person in accounts.items():
        assert services.accounts.person_id_for(account_id) == person
        assert services.accounts.find_by_person_id(person).id == account_id
