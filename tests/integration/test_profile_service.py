"""個人資料維護 services: permission changes (權限異動申請) and withdrawing a request,
on SQLite and on a real PostgreSQL. The older profile operations (personal data,
give up, disable, delete) are in test_accounts.py; the flows through them that the
profile screen relies on are checked here too."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from models.schema import (
    Account,
    AccountStatus,
    AuditEvent,
    PermissionRequest,
    RequestStatus,
    Role,
    Unit,
    UnitKind,
)
from smis_tui.services import Services
from smis_tui.services.accounts import PersonalData, RoleChoice
from smis_tui.services.auth import LoginState
from smis_tui.services.errors import ConflictError, NotAllowed, NotFound, ValidationFailed
from tests.helpers import card_proof, form, make_admin, new_person_id, owner_proof, unit_of_kind


@pytest.fixture
def bureau() -> Unit:
    return unit_of_kind(UnitKind.HEALTH_BUREAU, with_category="emerging")


@pytest.fixture
def cdc_admin(services: Services) -> Account:
    return make_admin(services, unit_of_kind(UnitKind.CDC))


def active_account(
    services: Services, unit: Unit, admin: Account, roles: dict[str, RoleChoice] | None = None
) -> tuple[int, str]:
    person = new_person_id()
    account_id = services.accounts.apply(
        form(person, unit, roles or {"ppe": RoleChoice(Role.OFFICER)}),
        card_proof(services, person),
    )
    for request in services.accounts.view(account_id).pending():
        services.review.approve(admin.id, request.id)
    assert services.accounts.view(account_id).status == AccountStatus.ACTIVE
    return account_id, person


class Officer(NamedTuple):
    id: int
    person: str
    version: int


@pytest.fixture
def officer(services: Services, bureau: Unit, cdc_admin: Account) -> Officer:
    """An active ppe 承辦人 at the bureau: the account, the person and the version."""
    account_id, person = active_account(services, bureau, cdc_admin)
    return Officer(account_id, person, services.accounts.view(account_id).version)


def states(services: Services, account_id: int) -> set[tuple[str, Role, tuple[str, ...], str]]:
    return {
        (r.category_code, r.role, r.options, str(r.status))
        for r in services.accounts.view(account_id).requests
        if r.status in (RequestStatus.APPROVED, RequestStatus.PENDING)
    }


def test_changes_go_to_review_and_approval_replaces_the_granted_role(
    services: Services, bureau: Unit, cdc_admin: Account
) -> None:
    account_id, person = active_account(services, bureau, cdc_admin)
    before = services.accounts.view(account_id)
    created = services.accounts.request_changes(
        account_id,
        {
            "ppe": RoleChoice(Role.ADMIN),
            "emerging": RoleChoice(Role.VIEWER, ("COVID-19",)),
        },
        before.version,
        owner_proof(services, account_id),
    )
    assert len(created) == 2
    view = services.accounts.view(account_id)
    assert view.version == before.version + 1
    assert view.status == AccountStatus.ACTIVE
    assert states(services, account_id) == {
        ("ppe", Role.OFFICER, (), "approved"),
        ("ppe", Role.ADMIN, (), "pending"),
        ("emerging", Role.VIEWER, ("COVID-19",), "pending"),
    }
    # The user still logs in with the old role while the change is under review.
    assert services.login.outcome_for_person(person).state == LoginState.ACTIVE
    event = AuditEvent.select().where(AuditEvent.action == "request_changes").get()
    assert event.actor_id == account_id

    # The review queue decides them like an application's requests.
    queued = {item.request_id for item in services.review.queue(cdc_admin.id).items}
    assert set(created) <= queued
    for request_id in created:
        services.review.approve(cdc_admin.id, request_id)
    view = services.accounts.view(account_id)
    assert {(r.category_code, r.role, r.options) for r in view.granted()} == {
        ("ppe", Role.ADMIN, ()),
        ("emerging", Role.VIEWER, ("COVID-19",)),
    }
    assert view.pending() == ()
    superseded = [r for r in view.requests if r.status == RequestStatus.SUPERSEDED]
    assert [(r.category_code, r.role) for r in superseded] == [("ppe", Role.OFFICER)]
    assert services.audit.verify().ok


def test_a_rejected_change_keeps_the_granted_role(
    services: Services, bureau: Unit, cdc_admin: Account
) -> None:
    account_id, _ = active_account(services, bureau, cdc_admin)
    (created,) = services.accounts.request_changes(
        account_id,
        {"ppe": RoleChoice(Role.VIEWER)},
        services.accounts.view(account_id).version,
        owner_proof(services, account_id),
    )
    services.review.reject(cdc_admin.id, created, "不需要")
    assert states(services, account_id) == {("ppe", Role.OFFICER, (), "approved")}


def test_unchanged_wishes_are_ignored_and_nothing_to_change_is_an_error(
    services: Services, officer: Officer
) -> None:
    account_id, _, version = officer
    proof = owner_proof(services, account_id)
    requests_before = PermissionRequest.select().count()
    for roles in ({}, {"ppe": RoleChoice(Role.OFFICER)}):
        with pytest.raises(ValidationFailed) as caught:
            services.accounts.request_changes(account_id, roles, version, proof)
        assert set(caught.value.errors) == {"roles"}
        assert "沒有任何權限異動" in caught.value.errors["roles"]
    # The granted role beside a new one: only the new one is requested.
    created = services.accounts.request_changes(
        account_id,
        {"ppe": RoleChoice(Role.OFFICER), "hiv_tb": RoleChoice(Role.VIEWER)},
        version,
        proof,
    )
    assert len(created) == 1
    assert PermissionRequest.select().count() == requests_before + 1
    # Asking again for what is under review changes nothing either.
    with pytest.raises(ValidationFailed):
        services.accounts.request_changes(
            account_id, {"hiv_tb": RoleChoice(Role.VIEWER)}, version + 1, proof
        )


def test_invalid_wishes_are_refused_with_a_message_and_nothing_written(
    services: Services, cdc_admin: Account
) -> None:
    clinic = unit_of_kind(UnitKind.CLINIC, with_category="ppe", without="antivenom")
    account_id, _ = active_account(services, clinic, cdc_admin)
    version = services.accounts.view(account_id).version
    proof = owner_proof(services, account_id)
    count = PermissionRequest.select().count()
    for roles in (
        {"antivenom": RoleChoice(Role.VIEWER)},  # 【單位無此業務權限】
        {"no_such_category": RoleChoice(Role.VIEWER)},
        {"emerging": RoleChoice(Role.VIEWER)},  # needs a disease
        {"ppe": RoleChoice(Role.VIEWER, ("COVID-19",))},  # has none
    ):
        with pytest.raises(ValidationFailed) as caught:
            services.accounts.request_changes(account_id, roles, version, proof)
        assert set(caught.value.errors) == {"roles"}
    assert PermissionRequest.select().count() == count
    assert services.accounts.view(account_id).version == version


def test_a_stale_version_is_a_conflict_and_writes_nothing(
    services: Services, bureau: Unit, cdc_admin: Account
) -> None:
    account_id, _ = active_account(services, bureau, cdc_admin)
    opened = services.accounts.view(account_id)
    proof = owner_proof(services, account_id)
    data = PersonalData("王小華", "07-1234567", "hua@example.tw", "", "", "")
    services.accounts.update_personal_data(account_id, opened.version, data, proof)
    count = PermissionRequest.select().count()
    with pytest.raises(ConflictError):
        services.accounts.request_changes(
            account_id, {"ppe": RoleChoice(Role.ADMIN)}, opened.version, proof
        )
    assert PermissionRequest.select().count() == count
    assert AuditEvent.select().where(AuditEvent.action == "request_changes").count() == 0


def test_a_new_wish_replaces_the_pending_one_and_the_granted_role_withdraws_it(
    services: Services, officer: Officer
) -> None:
    account_id, _, version = officer
    proof = owner_proof(services, account_id)
    accounts = services.accounts
    accounts.request_changes(account_id, {"ppe": RoleChoice(Role.ADMIN)}, version, proof)
    accounts.request_changes(account_id, {"ppe": RoleChoice(Role.VIEWER)}, version + 1, proof)
    assert states(services, account_id) == {
        ("ppe", Role.OFFICER, (), "approved"),
        ("ppe", Role.VIEWER, (), "pending"),
    }
    # Wishing the granted role back: the pending change is withdrawn, nothing new.
    assert (
        services.accounts.request_changes(
            account_id, {"ppe": RoleChoice(Role.OFFICER)}, version + 2, proof
        )
        == ()
    )
    assert states(services, account_id) == {("ppe", Role.OFFICER, (), "approved")}


def test_only_an_active_account_requests_changes(
    services: Services, bureau: Unit, cdc_admin: Account
) -> None:
    person = new_person_id()
    pending_id = services.accounts.apply(form(person, bureau), card_proof(services, person))
    with pytest.raises(NotAllowed) as caught:
        services.accounts.request_changes(
            pending_id,
            {"hiv_tb": RoleChoice(Role.VIEWER)},
            services.accounts.view(pending_id).version,
            owner_proof(services, pending_id),
        )
    assert caught.value.key == "profile.error_not_active"
    account_id, _ = active_account(services, bureau, cdc_admin)
    proof = owner_proof(services, account_id)
    services.accounts.disable_self(account_id, services.accounts.view(account_id).version, proof)
    with pytest.raises(NotAllowed) as caught:
        services.accounts.request_changes(
            account_id,
            {"hiv_tb": RoleChoice(Role.VIEWER)},
            services.accounts.view(account_id).version,
            proof,
        )
    assert caught.value.key == "profile.error_not_active"


def test_withdrawing_a_pending_change(services: Services, officer: Officer) -> None:
    account_id, _, version = officer
    proof = owner_proof(services, account_id)
    (created,) = services.accounts.request_changes(
        account_id, {"hiv_tb": RoleChoice(Role.VIEWER)}, version, proof
    )
    with pytest.raises(ConflictError):
        services.accounts.withdraw_request(account_id, created, version, proof)
    services.accounts.withdraw_request(account_id, created, version + 1, proof)
    assert states(services, account_id) == {("ppe", Role.OFFICER, (), "approved")}
    with pytest.raises(NotFound):
        services.accounts.withdraw_request(account_id, created, version + 2, proof)
    assert services.accounts.view(account_id).version == version + 2
    # A granted request is not "withdrawn": that is giving it up.
    granted = services.accounts.view(account_id).granted()[0]
    with pytest.raises(NotFound):
        services.accounts.withdraw_request(account_id, granted.id, version + 2, proof)
    assert AuditEvent.select().where(AuditEvent.action == "withdraw_request").count() == 1


def test_giving_up_the_last_permission_with_a_change_pending_disables(
    services: Services, officer: Officer
) -> None:
    account_id, person, version = officer
    granted = services.accounts.view(account_id).granted()[0]
    proof = owner_proof(services, account_id)
    services.accounts.request_changes(
        account_id, {"hiv_tb": RoleChoice(Role.VIEWER)}, version, proof
    )
    services.accounts.give_up_permission(account_id, granted.id, version + 1, proof)
    view = services.accounts.view(account_id)
    assert (view.status, view.disabled_reason) == (AccountStatus.DISABLED, "self")
    assert view.pending() == () and view.granted() == ()
    assert services.login.outcome_for_person(person).state == LoginState.DISABLED
