"""Account lifecycle services, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
from typing import NamedTuple

import pytest

from models.db import database_proxy
from models.schema import (
    Account,
    AccountStatus,
    AuditEvent,
    CardBinding,
    ConsentRecord,
    PermissionRequest,
    RequestStatus,
    Role,
    Unit,
    UnitKind,
    utcnow,
)
from smis_tui.services import Services
from smis_tui.services.accounts import PersonalData, RoleChoice, StartKind
from smis_tui.services.auth import LoginState
from smis_tui.services.errors import ConflictError, NotAllowed, ValidationFailed
from tests.helpers import card_proof, form, make_admin, new_person_id, owner_proof, unit_of_kind


class Application(NamedTuple):
    person: str
    account_id: int
    version: int


@pytest.fixture
def application(services: Services, clinic: Unit) -> Application:
    """A pending application at the clinic: the person, the account and its version."""
    person = new_person_id()
    account_id = services.accounts.apply(form(person, clinic), card_proof(services, person))
    return Application(person, account_id, services.accounts.view(account_id).version)


@pytest.fixture
def clinic() -> Unit:
    return unit_of_kind(UnitKind.CLINIC, with_category="ppe", without="antivenom")


def test_apply_creates_pending_account_with_requests_consent_and_audit(
    services: Services, clinic: Unit
) -> None:
    person = new_person_id()
    account_id = services.accounts.apply(form(person, clinic), card_proof(services, person))
    view = services.accounts.view(account_id)
    assert view.status == AccountStatus.PENDING
    assert [(r.category_code, r.role, r.status) for r in view.requests] == [
        ("ppe", Role.OFFICER, RequestStatus.PENDING)
    ]
    assert ConsentRecord.select().where(ConsentRecord.account == account_id).count() == 1
    assert AuditEvent.select().where(AuditEvent.action == "apply").count() == 1
    assert services.accounts.person_id_of(Account.get_by_id(account_id)) == person


def test_person_id_is_stored_encrypted_and_masked(services: Services, clinic: Unit) -> None:
    person = new_person_id()
    account_id = services.accounts.apply(form(person, clinic), card_proof(services, person))
    account = Account.get_by_id(account_id)
    assert person.encode() not in bytes(account.person_id_cipher)
    assert person not in account.person_id_index
    assert account.person_id_masked == person[:2] + "******" + person[-2:]
    raw_rows = database_proxy.obj.execute_sql("SELECT * FROM account").fetchall()
    assert person not in repr(raw_rows)


def test_apply_rejects_bad_fields_with_messages_naming_each(
    services: Services, clinic: Unit
) -> None:
    bad = form("A123456788", clinic, phone="12345", email="not-an-email", name="", mobile="0812")
    with pytest.raises(ValidationFailed) as caught:
        services.accounts.apply(bad, card_proof(services, "A123456788"))
    errors = caught.value.errors
    assert set(errors) >= {"person_id", "phone", "email", "name", "mobile"}
    assert "使用者身分證號" in errors["person_id"]
    assert "主要連絡電話" in errors["phone"]
    assert "主要電子信箱" in errors["email"]
    assert "使用者姓名" in errors["name"]
    assert Account.select().count() == 0


def test_apply_needs_a_role_consent_and_a_category_the_unit_handles(
    services: Services, clinic: Unit
) -> None:
    person = new_person_id()
    proof = card_proof(services, person)
    with pytest.raises(ValidationFailed) as caught:
        services.accounts.apply(form(person, clinic, roles={}, consent_sha256=None), proof)
    assert caught.value.errors["roles"] == "請至少選擇一項子系統權限"
    assert "我同意個資聲明事項" in caught.value.errors["consent"]

    with pytest.raises(ValidationFailed) as caught:
        services.accounts.apply(form(person, clinic, {"antivenom": RoleChoice(Role.VIEWER)}), proof)
    assert "【單位無此業務權限】" in caught.value.errors["roles"]

    with pytest.raises(ValidationFailed) as caught:
        services.accounts.apply(form(person, clinic, consent_sha256="0" * 64), proof)
    assert "個資聲明事項已更新" in caught.value.errors["consent"]
    assert Account.select().count() == 0


def test_emerging_category_needs_a_disease_option(services: Services) -> None:
    bureau = unit_of_kind(UnitKind.HEALTH_BUREAU)
    person = new_person_id()
    proof = card_proof(services, person)
    with pytest.raises(ValidationFailed) as caught:
        services.accounts.apply(form(person, bureau, {"emerging": RoleChoice(Role.ADMIN)}), proof)
    assert "請至少勾選一項疾病" in caught.value.errors["roles"]
    account_id = services.accounts.apply(
        form(person, bureau, {"emerging": RoleChoice(Role.ADMIN, ("COVID-19",))}), proof
    )
    assert services.accounts.view(account_id).requests[0].options == ("COVID-19",)


def test_inactive_unit_cannot_be_chosen(services: Services, clinic: Unit) -> None:
    Unit.update(active=False).where(Unit.id == clinic.id).execute()
    person = new_person_id()
    with pytest.raises(ValidationFailed) as caught:
        services.accounts.apply(form(person, clinic), card_proof(services, person))
    assert "終止合約或歇業" in caught.value.errors["unit_code"]


def test_begin_application_routes_new_pending_active_and_disabled(
    services: Services, clinic: Unit
) -> None:
    def answer(person_id: str) -> tuple[str, str]:
        start = services.accounts.begin_application(person_id, clinic.code)
        return start.kind, start.unit_code

    person = new_person_id()
    assert answer(person) == (StartKind.NEW, clinic.code)
    account_id = services.accounts.apply(form(person, clinic), card_proof(services, person))
    start = services.accounts.begin_application(person.lower(), clinic.code)
    assert start.kind == StartKind.UPDATE_PENDING
    own_card = card_proof(services, person)
    assert services.accounts.pending_application(own_card, person).id == account_id
    with pytest.raises(NotAllowed) as caught:
        services.accounts.apply(form(person, clinic), card_proof(services, person))
    assert caught.value.key == "error.account_pending"

    # An active or a disabled account gets a new ID's answer: only the card at 送出申請
    # may learn the account's state.
    admin = make_admin(services, unit_of_kind(UnitKind.CDC))
    request_id = services.accounts.view(account_id).requests[0].id
    services.review.approve(admin.id, request_id)
    assert answer(person) == answer(new_person_id())
    with pytest.raises(NotAllowed) as caught:
        services.accounts.apply(form(person, clinic), card_proof(services, person))
    assert "個人資料維護" in str(caught.value)

    version = services.accounts.view(account_id).version
    services.accounts.disable_self(account_id, version, owner_proof(services, account_id))
    assert answer(person) == answer(new_person_id())
    reapplied = services.accounts.apply(form(person, clinic), card_proof(services, person))
    assert reapplied == account_id
    assert services.accounts.view(account_id).status == AccountStatus.PENDING


def test_update_pending_replaces_requests_and_keeps_history(
    services: Services, clinic: Unit, application: Application
) -> None:
    person, account_id, version = application
    bureau = unit_of_kind(UnitKind.HEALTH_BUREAU)
    services.accounts.update_pending(
        form(
            person,
            bureau,
            {"ppe": RoleChoice(Role.ADMIN), "emerging": RoleChoice(Role.OFFICER, ("COVID-19",))},
            name="王大明",
        ),
        version,
        card_proof(services, person),
    )
    view = services.accounts.view(account_id)
    assert view.unit_code == bureau.code
    assert view.data.name == "王大明"
    assert [(r.category_code, r.status) for r in view.pending()] == [
        ("ppe", RequestStatus.PENDING),
        ("emerging", RequestStatus.PENDING),
    ]
    history = [r for r in view.requests if r.status == RequestStatus.SUPERSEDED]
    assert [(r.category_code, r.unit_code) for r in history] == [("ppe", clinic.code)]
    assert view.version == version + 1


def test_stale_update_is_a_conflict_and_writes_nothing(
    services: Services, clinic: Unit, application: Application
) -> None:
    person, account_id, version = application
    services.accounts.update_pending(
        form(person, clinic, name="第一次"), version, card_proof(services, person)
    )
    with pytest.raises(ConflictError) as caught:
        services.accounts.update_pending(
            form(person, clinic, name="第二次"), version, card_proof(services, person)
        )
    assert "其他人員更新" in str(caught.value)
    view = services.accounts.view(account_id)
    assert view.data.name == "第一次"
    assert len(view.pending()) == 1


def test_two_sessions_updating_the_same_application_one_wins(
    services: Services, clinic: Unit, application: Application
) -> None:
    person, account_id, version = application
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def session(name: str) -> None:
        proof = card_proof(services, person)
        barrier.wait()
        try:
            services.accounts.update_pending(form(person, clinic, name=name), version, proof)
            outcomes[name] = "ok"
        except ConflictError as exc:
            outcomes[name] = exc
        finally:
            database_proxy.obj.close()

    threads = [threading.Thread(target=session, args=(n,)) for n in ("甲會話", "乙會話")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    winners = [n for n, o in outcomes.items() if o == "ok"]
    losers = [n for n, o in outcomes.items() if isinstance(o, ConflictError)]
    assert len(winners) == 1 and len(losers) == 1, outcomes
    view = services.accounts.view(account_id)
    assert view.data.name == winners[0]
    assert view.version == version + 1
    assert len(view.pending()) == 1
    assert AuditEvent.select().where(AuditEvent.action == "update_application").count() == 1
    assert services.audit.verify().ok


def test_personal_data_update_is_validated_and_versioned(services: Services, clinic: Unit) -> None:
    person = new_person_id()
    account_id = services.accounts.apply(form(person, clinic), card_proof(services, person))
    view = services.accounts.view(account_id)
    data = PersonalData("王小華", "07-1234567", "hua@example.tw", "", "", "0912345678")
    proof = owner_proof(services, account_id)
    services.accounts.update_personal_data(account_id, view.version, data, proof)
    fresh = services.accounts.view(account_id)
    assert fresh.data.mobile == "0912-345-678"
    with pytest.raises(ConflictError):
        services.accounts.update_personal_data(account_id, view.version, data, proof)
    with pytest.raises(ValidationFailed) as caught:
        services.accounts.update_personal_data(
            account_id, fresh.version, PersonalData("王", "x", "y", "", "", ""), proof
        )
    assert set(caught.value.errors) == {"phone", "email"}


def test_login_outcomes_follow_the_account_state(services: Services, clinic: Unit) -> None:
    person = new_person_id()
    assert services.login.outcome_for_person(person).state == LoginState.NO_ACCOUNT
    account_id = services.accounts.apply(form(person, clinic), card_proof(services, person))
    pending = services.login.outcome_for_person(person)
    assert pending.state == LoginState.PENDING
    assert pending.message_key == "login.no_account"
    assert pending.pending_since is not None

    admin = make_admin(services, unit_of_kind(UnitKind.CDC))
    services.review.approve(admin.id, services.accounts.view(account_id).requests[0].id)
    active = services.login.outcome_for_person(person)
    assert active.state == LoginState.ACTIVE
    assert Account.get_by_id(account_id).last_login_at is not None

    version = services.accounts.view(account_id).version
    services.accounts.disable_self(account_id, version, owner_proof(services, account_id))
    disabled = services.login.outcome_for_person(person)
    assert disabled.state == LoginState.DISABLED
    assert disabled.message_key == "login.disabled"


def test_reapply_after_disable_reactivates_on_approval(services: Services, clinic: Unit) -> None:
    person = new_person_id()
    admin = make_admin(services, unit_of_kind(UnitKind.CDC))
    account_id = services.accounts.apply(form(person, clinic), card_proof(services, person))
    services.review.approve(admin.id, services.accounts.view(account_id).requests[0].id)
    version = services.accounts.view(account_id).version
    services.accounts.disable_self(account_id, version, owner_proof(services, account_id))
    assert services.accounts.view(account_id).granted() == ()

    again = form(person, clinic, name="重新申請")
    assert services.accounts.apply(again, card_proof(services, person)) == account_id
    view = services.accounts.view(account_id)
    assert view.status == AccountStatus.PENDING
    assert view.disabled_reason is None
    services.review.approve(admin.id, view.pending()[0].id)
    assert services.login.outcome_for_person(person).state == LoginState.ACTIVE


def test_inactivity_rule_disables_at_login_and_in_maintenance(
    services: Services, clinic: Unit
) -> None:
    admin = make_admin(services, unit_of_kind(UnitKind.CDC))
    people = [new_person_id() for _ in range(3)]
    ids = []
    for person in people:
        account_id = services.accounts.apply(form(person, clinic), card_proof(services, person))
        services.review.approve(admin.id, services.accounts.view(account_id).requests[0].id)
        ids.append(account_id)
    long_ago = utcnow() - dt.timedelta(days=181)
    recent = utcnow() - dt.timedelta(days=179)
    Account.update(last_login_at=long_ago, activated_at=long_ago).where(
        Account.id.in_(ids[:2])
    ).execute()
    Account.update(last_login_at=recent, activated_at=long_ago).where(
        Account.id == ids[2]
    ).execute()

    outcome = services.login.outcome_for_person(people[0])
    assert outcome.state == LoginState.DISABLED
    assert Account.get_by_id(ids[0]).disabled_reason == "inactive"

    assert services.accounts.run_maintenance() == 1  # ids[1]; ids[0] already disabled
    assert services.accounts.run_maintenance() == 0  # idempotent
    assert Account.get_by_id(ids[1]).status == AccountStatus.DISABLED
    assert Account.get_by_id(ids[2]).status == AccountStatus.ACTIVE
    assert (
        PermissionRequest.select()
        .where((PermissionRequest.account == ids[1]) & (PermissionRequest.status == "approved"))
        .count()
        == 0
    )


def test_superior_unit_disables_with_reason_only_below_itself(
    services: Services, clinic: Unit
) -> None:
    bureau = (
        Unit.get_by_id(Unit.get_by_id(clinic.parent_id).parent_id) if clinic.parent_id else None
    )
    assert bureau is not None
    superior = make_admin(services, bureau)
    other_bureau = (
        Unit.select().where((Unit.kind == UnitKind.HEALTH_BUREAU) & (Unit.id != bureau.id)).first()
    )
    outsider = make_admin(services, other_bureau)
    cdc_admin = make_admin(services, unit_of_kind(UnitKind.CDC))
    person = new_person_id()
    account_id = services.accounts.apply(form(person, clinic), card_proof(services, person))
    services.review.approve(cdc_admin.id, services.accounts.view(account_id).requests[0].id)
    version = services.accounts.view(account_id).version

    with pytest.raises(ValidationFailed) as refused:
        services.accounts.disable_by_superior(superior.id, account_id, version, "  ")
    assert refused.value.messages["reason"].key == "reason.required"
    with pytest.raises(ValidationFailed) as refused:
        services.accounts.disable_by_superior(superior.id, account_id, version, "x" * 501)
    assert refused.value.message("reason") == "原因不可超過 500 字"
    with pytest.raises(NotAllowed):
        services.accounts.disable_by_superior(outsider.id, account_id, version, "離職")
    services.accounts.disable_by_superior(superior.id, account_id, version, "離職")
    view = services.accounts.view(account_id)
    assert (view.status, view.disabled_reason) == (AccountStatus.DISABLED, "superior")
    event = AuditEvent.select().where(AuditEvent.action == "disable_account").get()
    assert event.actor_id == superior.id and "離職" in event.details


def test_giving_up_the_last_permission_disables_the_account(services: Services) -> None:
    bureau = unit_of_kind(UnitKind.HEALTH_BUREAU)
    cdc_admin = make_admin(services, unit_of_kind(UnitKind.CDC))
    person = new_person_id()
    account_id = services.accounts.apply(
        form(person, bureau, {"ppe": RoleChoice(Role.VIEWER), "hiv_tb": RoleChoice(Role.VIEWER)}),
        card_proof(services, person),
    )
    for request in services.accounts.view(account_id).pending():
        services.review.approve(cdc_admin.id, request.id)
    first, second = services.accounts.view(account_id).granted()
    proof = owner_proof(services, account_id)
    services.accounts.give_up_permission(
        account_id, first.id, services.accounts.view(account_id).version, proof
    )
    assert services.accounts.view(account_id).status == AccountStatus.ACTIVE
    services.accounts.give_up_permission(
        account_id, second.id, services.accounts.view(account_id).version, proof
    )
    view = services.accounts.view(account_id)
    assert (view.status, view.disabled_reason) == (AccountStatus.DISABLED, "self")


def test_delete_erases_personal_data_but_keeps_the_trail(services: Services, clinic: Unit) -> None:
    person = new_person_id()
    account_id = services.accounts.apply(form(person, clinic), card_proof(services, person))
    services.accounts.bind_card(account_id, "ab" * 32, "moica")
    version = services.accounts.view(account_id).version
    services.accounts.delete_account(account_id, version, owner_proof(services, account_id))
    account = Account.get_by_id(account_id)
    assert account.status == AccountStatus.DELETED
    assert (account.name, account.email, account.phone) == ("", "", "")
    assert account.person_id_cipher is None and account.person_id_index is None
    assert CardBinding.select().count() == 0
    assert services.login.outcome_for_person(person).state == LoginState.NO_ACCOUNT
    assert services.login.outcome_for_certificate("ab" * 32).state == LoginState.NO_ACCOUNT
    assert AuditEvent.select().where(AuditEvent.target_id == str(account_id)).count() >= 2
    assert services.audit.verify().ok
    # The same person may apply again from scratch.
    assert services.accounts.apply(form(person, clinic), card_proof(services, person)) != account_id


def test_card_binding_is_unique_per_certificate(services: Services, clinic: Unit) -> None:
    people = (new_person_id(), new_person_id())
    first, second = (
        services.accounts.apply(form(p, clinic), card_proof(services, p)) for p in people
    )
    services.accounts.bind_card(first, "CD" * 32, "hpc")
    services.accounts.bind_card(first, "cd" * 32, "hpc")  # same card again: no-op
    with pytest.raises(NotAllowed):
        services.accounts.bind_card(second, "cd" * 32, "hpc")
    assert services.accounts.find_by_certificate("cd" * 32).id == first


def test_sql_injection_text_is_only_ever_a_parameter(services: Services, clinic: Unit) -> None:
    hostile = "x'); DROP TABLE account; --"
    person = new_person_id()
    account_id = services.accounts.apply(
        form(person, clinic, name=hostile), card_proof(services, person)
    )
    assert services.accounts.view(account_id).data.name == hostile
    assert services.units.search(hostile).total == 0
    assert Account.select().count() == 1


def test_a_reactivated_account_is_not_disabled_again_by_its_old_login(
    services: Services, clinic: Unit
) -> None:
    person = new_person_id()
    admin = make_admin(services, unit_of_kind(UnitKind.CDC))
    account_id = services.accounts.apply(form(person, clinic), card_proof(services, person))
    services.review.approve(admin.id, services.accounts.view(account_id).requests[0].id)
    long_ago = utcnow() - dt.timedelta(days=200)
    Account.update(last_login_at=long_ago, activated_at=long_ago).where(
        Account.id == account_id
    ).execute()
    assert services.accounts.run_maintenance() == 1
    services.accounts.apply(form(person, clinic), card_proof(services, person))
    services.review.approve(admin.id, services.accounts.view(account_id).pending()[0].id)
    assert services.accounts.run_maintenance() == 0
    assert services.login.outcome_for_person(person).state == LoginState.ACTIVE


def test_a_decision_makes_an_open_update_form_stale(services: Services) -> None:
    bureau = unit_of_kind(UnitKind.HEALTH_BUREAU)
    admin = make_admin(services, unit_of_kind(UnitKind.CDC))
    person = new_person_id()
    roles = {"ppe": RoleChoice(Role.VIEWER), "hiv_tb": RoleChoice(Role.VIEWER)}
    services.accounts.apply(form(person, bureau, roles), card_proof(services, person))
    proof = card_proof(services, person)
    opened = services.accounts.pending_application(proof, person)
    services.review.reject(admin.id, opened.pending()[0].id, "資格不符")
    with pytest.raises(ConflictError):
        services.accounts.update_pending(form(person, bureau, roles), opened.version, proof)
