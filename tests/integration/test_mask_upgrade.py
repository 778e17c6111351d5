"""Schema version 3 narrows every stored masked person ID to a mask that leaves at
least 100 000 candidate IDs, on SQLite and on PostgreSQL: `smis-tui db upgrade` does
it from the stored masks alone (no key, deleted accounts included), in batches,
resumably, and a version-2 database is refused until it has run."""

from __future__ import annotations

import pytest

from models import migrate
from models.db import open_database, write_transaction
from models.migrate import SCHEMA_VERSION, SchemaMismatch, check_schema, current_version, upgrade
from models.schema import Account, Meta, UnitKind
from smis_tui.cli import main
from smis_tui.core.config import Settings
from smis_tui.core.domain import AccountStatus, Role
from smis_tui.services import Services
from tests.helpers import apply_for, unit_of_kind


def _old_mask(person_id: str) -> str:
    """How schema version 2 masked a 10-character ID."""
    return f"{person_id[:3]}****{person_id[-3:]}"


def _make_version_2(services: Services, count: int) -> dict[int, str]:
    """``count`` accounts whose masks are stored as version 2 wrote them, the last one
    deleted (its encrypted ID and name erased); account id → person ID."""
    clinic = unit_of_kind(UnitKind.CLINIC, with_category="ppe")
    accounts: dict[int, str] = {}
    for _ in range(count):
        account_id, _request = apply_for(services, clinic, Role.OFFICER)
        accounts[account_id] = services.accounts.person_id_for(account_id)
    deleted = list(accounts)[-1]
    with write_transaction():
        for account_id, person_id in accounts.items():
            Account.update(person_id_masked=_old_mask(person_id)).where(
                Account.id == account_id
            ).execute()
        Account.update(
            status=AccountStatus.DELETED, person_id_cipher=None, person_id_index=None, name=""
        ).where(Account.id == deleted).execute()
        Meta.update(value="2").where(Meta.key == "schema_version").execute()
    return accounts


def _stored_masks() -> dict[int, str]:
    return {a.id: a.person_id_masked for a in Account.select(Account.id, Account.person_id_masked)}


def _run_cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setenv("SMIS_DATA_DIR", str(settings.data_dir))
    if settings.database_url:
        monkeypatch.setenv("DATABASE_URL", settings.database_url)
    else:
        monkeypatch.delenv("DATABASE_URL", raising=False)
    code = main(list(args))
    open_database(settings.database_url, settings.sqlite_path)
    return code


def test_a_version_2_database_is_refused_until_it_is_upgraded(services: Services) -> None:
    _make_version_2(services, 1)
    with pytest.raises(SchemaMismatch, match="版本 2 較舊.*請先執行 smis-tui db upgrade"):
        check_schema()
    assert upgrade() == (2, SCHEMA_VERSION)
    check_schema()


def test_db_upgrade_narrows_every_stored_mask_without_the_key_and_runs_again_harmlessly(
    services: Services,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    accounts = _make_version_2(services, 3)
    first = next(iter(accounts))
    with write_transaction():  # a passport number of 8 and one of 6 characters
        Account.update(person_id_masked="AB****G1").where(Account.id == first).execute()
    # The masks come from the stored masks alone: the data key is not needed.
    settings.resolved_key_file.rename(settings.resolved_key_file.with_name("elsewhere"))

    assert _run_cli(settings, monkeypatch, "db", "upgrade") == 0
    assert f"由版本 2 升級至 {SCHEMA_VERSION}" in capsys.readouterr().out
    assert current_version() == SCHEMA_VERSION
    masks = _stored_masks()
    assert masks[first] == "A******1"
    for account_id, person_id in list(accounts.items())[1:]:
        assert masks[account_id] == f"{person_id[:2]}******{person_id[-2:]}"
    assert Account.get_by_id(list(accounts)[-1]).person_id_cipher is None

    assert _run_cli(settings, monkeypatch, "db", "upgrade") == 0
    assert "已是最新版本" in capsys.readouterr().out
    assert _stored_masks() == masks


def test_an_interrupted_narrowing_keeps_its_finished_batches_and_completes_when_run_again(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    accounts = _make_version_2(services, 3)
    narrower = migrate.narrower_mask
    calls: list[str] = []

    def crash_on_the_third(stored: str) -> str:
        calls.append(stored)
        if len(calls) == 3:
            raise RuntimeError("power cut")
        return narrower(stored)

    monkeypatch.setattr(migrate, "narrower_mask", crash_on_the_third)
    with pytest.raises(RuntimeError, match="power cut"):
        upgrade(batch_size=1)
    assert current_version() == 2
    first, second, third = accounts
    masks = _stored_masks()
    assert masks[first] == f"{accounts[first][:2]}******{accounts[first][-2:]}"
    assert masks[second] == f"{accounts[second][:2]}******{accounts[second][-2:]}"
    assert masks[third] == _old_mask(accounts[third])

    monkeypatch.setattr(migrate, "narrower_mask", narrower)
    assert upgrade(batch_size=1) == (2, SCHEMA_VERSION)
    assert _stored_masks()[third] == f"{accounts[third][:2]}******{accounts[third][-2:]}"
