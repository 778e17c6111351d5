"""The audit hash chain notices edited, deleted and inserted rows; the trail names
people by name and account number, never by any part of their ID."""

from __future__ import annotations

import re

import pytest

from models.db import write_transaction
from models.schema import Account, AuditEvent, Unit
from smis_tui.core.domain import AccountStatus
from smis_tui.services import Services
from smis_tui.services.audit import TrailRow
from tests.helpers import approved_applicant, audited_applications, execute_sql, make_admin


@pytest.fixture
def trail(services: Services) -> list[int]:
    return audited_applications(services, "甲乙丙丁")


def test_intact_chain_verifies(services: Services, trail: list[int]) -> None:
    result = services.audit.verify()
    assert (result.ok, result.checked, result.first_bad_id) == (True, len(trail), None)


def test_edited_row_is_named(services: Services, trail: list[int]) -> None:
    execute_sql("UPDATE audit_event SET details = ? WHERE id = ?", ('{"roles": []}', trail[1]))
    result = services.audit.verify()
    assert not result.ok and result.first_bad_id == trail[1] and "修改" in result.reason


def test_deleted_row_breaks_the_next_link(services: Services, trail: list[int]) -> None:
    execute_sql("DELETE FROM audit_event WHERE id = ?", (trail[2],))
    result = services.audit.verify()
    assert not result.ok and result.first_bad_id == trail[3]


def test_deleted_last_row_is_noticed(services: Services, trail: list[int]) -> None:
    execute_sql("DELETE FROM audit_event WHERE id = ?", (trail[-1],))
    result = services.audit.verify()
    assert not result.ok and "末端" in result.reason


def test_inserted_row_is_noticed(services: Services, trail: list[int]) -> None:
    forged = AuditEvent.get_by_id(trail[1])
    execute_sql(
        "INSERT INTO audit_event (at, actor_label, action, target_type, target_id, details, "
        "prev_hash, row_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (forged.at, "forger", "apply", "account", "1", "{}", forged.row_hash, "f" * 64),
    )
    assert not services.audit.verify().ok


def test_rows_are_only_written_inside_a_state_change(services: Services) -> None:
    with pytest.raises(RuntimeError):
        services.audit.record("login", actor=None)


# ----------------------------------------------------------------------- who is named


def _label(name: str, account_id: int) -> str:
    return f"{name} #{account_id}"


def _id_runs(person_id: str) -> set[str]:
    """Every run of two or more characters of ``person_id`` after its letter, and its
    masks of this and earlier versions."""
    tail = person_id[1:]
    runs = {tail[i:j] for i in range(len(tail)) for j in range(i + 2, len(tail) + 1)}
    return runs | {f"{person_id[:3]}****{person_id[-3:]}", f"{person_id[:2]}******{person_id[-2:]}"}


def _assert_no_id_in(rows: tuple[TrailRow, ...], person_ids: list[str]) -> None:
    """No label shows any part of anyone's ID beyond the letter, once the ``#<account
    id>`` numbers the labels are made of are taken out."""
    assert rows
    for row in rows:
        for label in (row.actor_label, row.target_label):
            words = re.sub(r"#\d+", "#", label)
            assert "*" not in words, label
            for person_id in person_ids:
                assert not any(run in words for run in _id_runs(person_id)), label


@pytest.fixture
def people(services: Services, tree: dict[str, Unit]) -> dict[str, int]:
    """A CDC 管理者 (陳審核) who approved an officer (林小美) at a clinic."""
    cdc = make_admin(services, tree["cdc"])
    with write_transaction():
        Account.update(name="陳審核").where(Account.id == cdc.id).execute()
    officer = approved_applicant(services, tree["clinic"], cdc.id, name="林小美")
    return {"cdc": cdc.id, "officer": officer}


def _person_ids(services: Services, people: dict[str, int]) -> list[str]:
    return [services.accounts.person_id_for(account_id) for account_id in people.values()]


def test_a_persons_own_trail_names_people_by_name_and_account_never_by_id(
    services: Services, people: dict[str, int]
) -> None:
    cdc, officer = people["cdc"], people["officer"]
    person_ids = _person_ids(services, people)
    rows = services.control.own_trail(officer).rows
    approvals = [row for row in rows if row.action == "approve_request"]
    assert approvals and {row.actor_label for row in approvals} == {_label("陳審核", cdc)}
    applied = [row for row in rows if row.action == "apply"]
    assert applied and applied[0].actor_label == _label("林小美", officer)
    _assert_no_id_in(rows, person_ids)
    # What is stored for new rows is the account number alone: the chain is immutable,
    # a name is erased when its account is deleted.
    stored = {e.actor_label for e in AuditEvent.select() if e.actor_id in (cdc, officer)}
    assert stored == {f"#{cdc}", f"#{officer}"}


def test_the_cdc_admins_trail_names_people_by_name_and_account_never_by_id(
    services: Services, people: dict[str, int]
) -> None:
    cdc, officer = people["cdc"], people["officer"]
    person_ids = _person_ids(services, people)
    rows = services.control.search_trail(cdc).rows
    assert {row.actor_label for row in rows} >= {_label("陳審核", cdc), _label("林小美", officer)}
    assert _label("林小美", officer) in {row.target_label for row in rows}
    _assert_no_id_in(rows, person_ids)


def test_rows_of_earlier_versions_are_named_by_their_actors_account_not_the_stored_mask(
    services: Services, people: dict[str, int]
) -> None:
    cdc, officer = people["cdc"], people["officer"]
    person_ids = _person_ids(services, people)
    old_mask = f"{person_ids[0][:3]}****{person_ids[0][-3:]}"
    with write_transaction():  # how an earlier version labelled its rows
        services.audit.record(
            "approve_request",
            actor=Account.get_by_id(cdc),
            actor_label=old_mask,
            target_type="account",
            target_id=officer,
        )
    assert services.audit.verify().ok
    for rows in (services.control.own_trail(officer).rows, services.control.search_trail(cdc).rows):
        assert rows[0].actor_label == _label("陳審核", cdc)
        assert rows[0].target_label == _label("林小美", officer)
        _assert_no_id_in(rows, person_ids)


def test_a_deleted_account_is_named_by_its_account_number_alone(
    services: Services, people: dict[str, int]
) -> None:
    cdc, officer = people["cdc"], people["officer"]
    person_ids = _person_ids(services, people)
    with write_transaction():  # as 申請刪除帳號 leaves it: name and encrypted ID erased
        Account.update(
            status=AccountStatus.DELETED, name="", person_id_cipher=None, person_id_index=None
        ).where(Account.id == officer).execute()
    rows = services.control.search_trail(cdc).rows
    assert f"#{officer}" in {row.actor_label for row in rows}
    assert f"#{officer}" in {row.target_label for row in rows}
    assert not any("林小美" in row.actor_label + row.target_label for row in rows)
    _assert_no_id_in(rows, person_ids)


def test_rows_without_a_person_keep_their_label(services: Services, people: dict[str, int]) -> None:
    with write_transaction():
        services.audit.record("import_units", actor=None, actor_label="cli")
        services.audit.record("expire", actor=None)
    rows = services.control.search_trail(people["cdc"]).rows
    assert [row.actor_label for row in rows[:2]] == ["system", "cli"]
