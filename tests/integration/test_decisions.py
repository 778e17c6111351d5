"""What an account holder is told was decided about their permissions (the account's
own view): approvals, rejections with the reason, permissions withdrawn with the reason,
and the unit whose 管理者 decided — never anyone else's, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from models.db import write_transaction
from models.schema import Account, PermissionRequest, RequestStatus, Role, Unit
from smis_tui.core.domain import DecisionBy
from smis_tui.services import Services
from smis_tui.services.accounts import RoleChoice
from smis_tui.services.decisions import Decision
from tests.helpers import card_proof, categories_of, form, make_admin, new_person_id, owner_proof

HOSTILE_REASON = "[red]x[/] \\[b]請補附在職證明[/b]"


def applied(services: Services, unit: Unit) -> int:
    """An applicant at ``unit`` asking for 承辦人 of 個人防護裝備 and 瀏覽者 of another
    category the unit handles."""
    person_id = new_person_id()
    other = min(categories_of(unit) - {"ppe", "emerging"})
    roles = {"ppe": RoleChoice(Role.OFFICER), other: RoleChoice(Role.VIEWER)}
    return services.accounts.apply(form(person_id, unit, roles), card_proof(services, person_id))


def requests_by_category(services: Services, account_id: int) -> dict[str, int]:
    """ "ppe" and "flu" (the other category) → the account's request."""
    return {
        "ppe" if r.category_code == "ppe" else "flu": r.id
        for r in services.accounts.view(account_id).requests
    }


def shown(decisions: tuple[Decision, ...]) -> list[tuple[object, ...]]:
    return [
        (d.category_name, d.role, d.status, d.by, d.reason, d.deciding_unit_name) for d in decisions
    ]


@pytest.fixture
def admins(services: Services, tree: dict[str, Unit]) -> dict[str, Account]:
    return {
        "cdc": make_admin(services, tree["cdc"]),
        "bureau": make_admin(services, tree["bureau"], ["ppe"]),
    }


# ----- the attack first: another account's decisions never appear -----------------------


def test_only_the_accounts_own_decisions_and_reasons_are_literal(
    services: Services, tree: dict[str, Unit], admins: dict[str, Account]
) -> None:
    mine = applied(services, tree["clinic"])
    theirs = applied(services, tree["clinic"])
    for account_id, reason in ((mine, HOSTILE_REASON), (theirs, "只屬於另一個人的原因")):
        asked = requests_by_category(services, account_id)
        services.review.approve(admins["cdc"].id, asked["flu"])
        services.review.reject(admins["bureau"].id, asked["ppe"], reason)

    decisions = services.accounts.view(mine).decisions
    mine_asked = set(requests_by_category(services, mine).values())
    assert {d.request_id for d in decisions} == mine_asked
    assert all("另一個人" not in d.reason for d in decisions)
    rejected = next(d for d in decisions if d.status == RequestStatus.REJECTED)
    assert rejected.reason == HOSTILE_REASON
    assert rejected.category_name == "個人防護裝備"
    assert rejected.deciding_unit_name == tree["bureau"].name
    approved = next(d for d in decisions if d.status == RequestStatus.APPROVED)
    assert (approved.reason, approved.deciding_unit_name) == ("", tree["cdc"].name)


# ----- what each kind of decision says -----------------------------------------------------


def test_a_permission_withdrawn_from_above_names_the_reason_and_the_unit(
    services: Services, tree: dict[str, Unit], admins: dict[str, Account]
) -> None:
    account_id = applied(services, tree["clinic"])
    asked = requests_by_category(services, account_id)
    for request_id in asked.values():
        services.review.approve(admins["cdc"].id, request_id)
    version = Account.get_by_id(account_id).version
    services.control.disable_permission(
        admins["bureau"].id, account_id, asked["ppe"], version, "已調離防疫業務"
    )

    decisions = services.accounts.view(account_id).decisions
    assert shown(decisions)[0] == (
        "個人防護裝備",
        Role.OFFICER,
        RequestStatus.REVOKED,
        DecisionBy.ADMIN,
        "已調離防疫業務",
        tree["bureau"].name,
    )
    # The approval still in force is listed too, by the unit that approved it.
    assert (RequestStatus.APPROVED, tree["cdc"].name) in {
        (d.status, d.deciding_unit_name) for d in decisions
    }


def test_a_whole_account_disabled_from_above_names_the_disabling_unit(
    services: Services, tree: dict[str, Unit], admins: dict[str, Account]
) -> None:
    account_id = applied(services, tree["clinic"])
    for request_id in requests_by_category(services, account_id).values():
        services.review.approve(admins["cdc"].id, request_id)
    region_admin = make_admin(services, tree["region"])
    version = Account.get_by_id(account_id).version
    services.control.disable_account(region_admin.id, account_id, version, "離職")

    decisions = services.accounts.view(account_id).decisions
    assert {(d.status, d.by, d.reason, d.deciding_unit_name) for d in decisions} == {
        (RequestStatus.REVOKED, DecisionBy.ADMIN, "離職", tree["region"].name)
    }


def test_giving_a_permission_up_is_the_holders_own_and_names_no_unit(
    services: Services, tree: dict[str, Unit], admins: dict[str, Account]
) -> None:
    account_id = applied(services, tree["clinic"])
    asked = requests_by_category(services, account_id)
    for request_id in asked.values():
        services.review.approve(admins["cdc"].id, request_id)
    version = Account.get_by_id(account_id).version
    services.accounts.give_up_permission(
        account_id, asked["flu"], version, owner_proof(services, account_id)
    )

    given_up = next(
        d for d in services.accounts.view(account_id).decisions if d.request_id == asked["flu"]
    )
    assert (given_up.status, given_up.by, given_up.reason, given_up.deciding_unit_name) == (
        RequestStatus.REVOKED,
        DecisionBy.SELF,
        "",
        None,
    )


def test_the_deciding_unit_stays_when_its_administrator_moves_on(
    services: Services, tree: dict[str, Unit], admins: dict[str, Account]
) -> None:
    account_id = applied(services, tree["clinic"])
    asked = requests_by_category(services, account_id)
    services.review.approve(admins["cdc"].id, asked["flu"])
    services.review.reject(admins["bureau"].id, asked["ppe"], "資料不全")
    with write_transaction():
        PermissionRequest.update(status=RequestStatus.REVOKED).where(
            PermissionRequest.account == admins["bureau"].id
        ).execute()

    rejected = next(
        d for d in services.accounts.view(account_id).decisions if d.request_id == asked["ppe"]
    )
    assert rejected.deciding_unit_name == tree["bureau"].name


def test_decisions_are_newest_first_and_pending_requests_are_not_decisions(
    services: Services, tree: dict[str, Unit], admins: dict[str, Account]
) -> None:
    account_id = applied(services, tree["clinic"])
    assert services.accounts.view(account_id).decisions == ()
    asked = requests_by_category(services, account_id)
    services.review.approve(admins["cdc"].id, asked["flu"])
    services.review.reject(admins["cdc"].id, asked["ppe"], "請改申請瀏覽者")
    assert [d.request_id for d in services.accounts.view(account_id).decisions] == [
        asked["ppe"],
        asked["flu"],
    ]


def test_an_approval_tells_no_reason_and_the_installations_grant_names_no_unit(
    services: Services, admins: dict[str, Account]
) -> None:
    # The first 管理者's grants are made by the installation: no reviewer, and the
    # reason field says "bootstrap", which is no reason to show anyone.
    with write_transaction():
        PermissionRequest.update(reason="bootstrap").where(
            PermissionRequest.account == admins["cdc"].id
        ).execute()
    decisions = services.accounts.view(admins["cdc"].id).decisions
    assert decisions
    assert {(d.status, d.reason, d.deciding_unit_name) for d in decisions} == {
        (RequestStatus.APPROVED, "", None)
    }
