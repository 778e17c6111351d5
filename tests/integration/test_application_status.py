"""An applicant's own requests at login: what each asks for, where it stands and which
unit's 管理者 decides it — shown only to the card bound to the account, on SQLite and
PostgreSQL."""

from __future__ import annotations

import dataclasses

import pytest

from card.identity import CardIdentity, CardKind
from models.db import write_transaction
from models.schema import (
    Account,
    AccountStatus,
    CategoryOption,
    PermissionRequest,
    RequestStatus,
    Role,
    Unit,
)
from smis_tui.services import Services
from smis_tui.services.accounts import RoleChoice
from smis_tui.services.application_status import ApplicationStatusRow
from smis_tui.services.card_proof import CardProof
from smis_tui.services.errors import NotAllowed
from tests.helpers import card_identity, form, make_admin, new_person_id

ROLES = {"ppe": RoleChoice(Role.OFFICER), "emerging": RoleChoice(Role.ADMIN, ("COVID-19",))}


@dataclasses.dataclass(frozen=True)
class Applicant:
    account_id: int
    card: CardIdentity  # the card the application was sent with, bound to the account


def applicant_at(services: Services, unit: Unit, roles: dict[str, RoleChoice]) -> Applicant:
    """A new applicant at ``unit`` who sent their application with their own card."""
    person_id = new_person_id()
    card = card_identity(person_id)
    proof = services.accounts.proofs.issue(card)
    account_id = services.accounts.apply(form(person_id, unit, roles), proof)
    return Applicant(account_id, card)


def login_proof(services: Services, card: CardIdentity) -> CardProof:
    """The proof the card's login makes (card login signs a fresh challenge)."""
    return services.accounts.proofs.issue(card)


def shown(rows: tuple[ApplicationStatusRow, ...]) -> list[tuple[object, ...]]:
    return [
        (r.category_name, r.role, r.options, r.unit_name, r.status, r.reason, r.deciding_unit_name)
        for r in rows
    ]


@pytest.fixture
def admins(services: Services, tree: dict[str, Unit]) -> dict[str, Account]:
    """The branch's reviewers: a CDC 管理者 of every category, a bureau 管理者 of ppe."""
    return {
        "cdc": make_admin(services, tree["cdc"]),
        "bureau": make_admin(services, tree["bureau"], ["ppe"]),
    }


# ----- attacks: nothing is shown without the card bound to the account ------------------


def test_no_proof_is_refused(services: Services, tree: dict[str, Unit]) -> None:
    applicant_at(services, tree["clinic"], ROLES)
    with pytest.raises(NotAllowed) as caught:
        services.accounts.application_status(None)
    assert caught.value.key == "error.card_proof_required"


def test_a_made_up_proof_of_the_right_card_is_refused(
    services: Services, tree: dict[str, Unit]
) -> None:
    applicant = applicant_at(services, tree["clinic"], ROLES)
    forged = CardProof(applicant.card, token="guessed-token")
    with pytest.raises(NotAllowed) as caught:
        services.accounts.application_status(forged)
    assert caught.value.key == "error.card_proof_expired"


def test_an_expired_proof_is_refused(
    services: Services, tree: dict[str, Unit], monkeypatch: pytest.MonkeyPatch
) -> None:
    applicant = applicant_at(services, tree["clinic"], ROLES)
    proofs = services.accounts.proofs
    proof = login_proof(services, applicant.card)
    later = proofs.clock() + proofs.ttl + 1
    monkeypatch.setattr(proofs, "clock", lambda: later)
    with pytest.raises(NotAllowed) as caught:
        services.accounts.application_status(proof)
    assert caught.value.key == "error.card_proof_expired"


@pytest.mark.parametrize("kind", [CardKind.HPC, CardKind.MOICA])
def test_another_card_carrying_the_same_id_is_refused(
    services: Services, tree: dict[str, Unit], kind: CardKind
) -> None:
    """A card never bound to the account stands for nothing here, even one carrying the
    applicant's ID and name: its holder would have to log in with it (and bind it)."""
    applicant = applicant_at(services, tree["clinic"], ROLES)
    person_id = services.accounts.person_id_for(applicant.account_id)
    other_card = card_identity(person_id, "王小明", kind)
    with pytest.raises(NotAllowed) as caught:
        services.accounts.application_status(login_proof(services, other_card))
    assert caught.value.key == "error.account_not_found"


def test_card_a_shows_only_a_requests_never_b(
    services: Services, tree: dict[str, Unit], admins: dict[str, Account]
) -> None:
    a = applicant_at(services, tree["clinic"], {"ppe": RoleChoice(Role.VIEWER)})
    b = applicant_at(services, tree["bureau"], ROLES)
    rows_a = services.accounts.application_status(login_proof(services, a.card))
    rows_b = services.accounts.application_status(login_proof(services, b.card))
    ids_a = {r.id for r in services.accounts.view(a.account_id).requests}
    ids_b = {r.id for r in services.accounts.view(b.account_id).requests}
    assert {r.request_id for r in rows_a} == ids_a
    assert {r.request_id for r in rows_b} == ids_b
    assert [r.unit_name for r in rows_a] == [tree["clinic"].name]


def test_a_deleted_account_shows_nothing(services: Services, tree: dict[str, Unit]) -> None:
    applicant = applicant_at(services, tree["clinic"], ROLES)
    with write_transaction():
        Account.update(status=AccountStatus.DELETED).where(
            Account.id == applicant.account_id
        ).execute()
    with pytest.raises(NotAllowed):
        services.accounts.application_status(login_proof(services, applicant.card))


# ----- what the applicant sees -------------------------------------------------------------


def test_right_after_applying_every_request_is_under_review_with_its_deciding_unit(
    services: Services, tree: dict[str, Unit], admins: dict[str, Account]
) -> None:
    applicant = applicant_at(services, tree["clinic"], ROLES)
    rows = services.accounts.application_status(login_proof(services, applicant.card))
    clinic, bureau, cdc = tree["clinic"].name, tree["bureau"].name, tree["cdc"].name
    assert shown(rows) == [
        # 承辦人 of ppe: the nearest unit with a ppe 管理者, the clinic's own bureau.
        ("個人防護裝備", Role.OFFICER, (), clinic, RequestStatus.PENDING, "", bureau),
        # 管理者 of emerging: only the CDC has an emerging 管理者.
        ("新興傳染病用藥", Role.ADMIN, ("COVID-19",), clinic, RequestStatus.PENDING, "", cdc),
    ]
    assert all(r.decided_at is None for r in rows)
    assert rows[1].category_name_en == "Emerging infectious disease drugs"


def test_a_management_request_is_decided_above_its_unit_never_at_it(
    services: Services, tree: dict[str, Unit], admins: dict[str, Account]
) -> None:
    """A bureau 管理者 of ppe does not decide a 管理者 request at the bureau itself."""
    applicant = applicant_at(services, tree["bureau"], {"ppe": RoleChoice(Role.ADMIN)})
    rows = services.accounts.application_status(login_proof(services, applicant.card))
    assert [r.deciding_unit_name for r in rows] == [tree["cdc"].name]


def test_with_nobody_to_decide_the_deciding_unit_is_none(
    services: Services, tree: dict[str, Unit]
) -> None:
    applicant = applicant_at(services, tree["clinic"], {"ppe": RoleChoice(Role.OFFICER)})
    rows = services.accounts.application_status(login_proof(services, applicant.card))
    assert [(r.status, r.deciding_unit_name) for r in rows] == [(RequestStatus.PENDING, None)]


def test_a_grant_limited_to_other_sub_options_does_not_decide(
    services: Services, tree: dict[str, Unit], admins: dict[str, Account]
) -> None:
    """The bureau's 管理者(COVID-19) of emerging decides COVID-19 requests below it, not
    猴痘(M痘) ones: those go to the CDC (the same walk as 審核's, scope.deciding_units)."""
    covid = CategoryOption.get(CategoryOption.name == "COVID-19")
    with write_transaction():
        PermissionRequest.create(
            account=admins["bureau"].id,
            unit=tree["bureau"],
            category=covid.category_id,
            role=Role.ADMIN,
            option_ids=str(covid.id),
            status=RequestStatus.APPROVED,
            revision=1,
        )
    for options, decider in (("COVID-19", "bureau"), ("猴痘(M痘)", "cdc")):
        applicant = applicant_at(
            services, tree["clinic"], {"emerging": RoleChoice(Role.VIEWER, (options,))}
        )
        rows = services.accounts.application_status(login_proof(services, applicant.card))
        assert [r.deciding_unit_name for r in rows] == [tree[decider].name], options


def test_after_one_approval_and_one_rejection_with_its_reason(
    services: Services, tree: dict[str, Unit], admins: dict[str, Account]
) -> None:
    applicant = applicant_at(services, tree["clinic"], ROLES)
    ppe, emerging = services.accounts.view(applicant.account_id).pending()
    services.review.reject(admins["cdc"].id, emerging.id, "本單位不需新興傳染病用藥管理者")
    proof = login_proof(services, applicant.card)
    rows = services.accounts.application_status(proof)
    assert [(r.status, r.reason) for r in rows] == [
        (RequestStatus.PENDING, ""),
        (RequestStatus.REJECTED, "本單位不需新興傳染病用藥管理者"),
    ]
    assert rows[1].decided_at is not None

    # The CDC 管理者 decides the ppe request too (the bureau's could have): the row names
    # the unit whose 管理者 did.
    services.review.approve(admins["cdc"].id, ppe.id)
    rows = services.accounts.application_status(proof)
    clinic, cdc = tree["clinic"].name, tree["cdc"].name
    assert shown(rows) == [
        ("個人防護裝備", Role.OFFICER, (), clinic, RequestStatus.APPROVED, "", cdc),
        (
            "新興傳染病用藥",
            Role.ADMIN,
            ("COVID-19",),
            clinic,
            RequestStatus.REJECTED,
            "本單位不需新興傳染病用藥管理者",
            cdc,
        ),
    ]
    assert all(r.decided_at is not None for r in rows)


def test_an_updated_application_shows_only_its_own_requests(
    services: Services, tree: dict[str, Unit], admins: dict[str, Account]
) -> None:
    """更新申請權限 replaces what was under review: the replaced requests are gone."""
    applicant = applicant_at(services, tree["clinic"], ROLES)
    person_id = services.accounts.person_id_for(applicant.account_id)
    version = services.accounts.view(applicant.account_id).version
    services.accounts.update_pending(
        form(person_id, tree["clinic"], {"flu_antiviral": RoleChoice(Role.VIEWER)}),
        version,
        login_proof(services, applicant.card),
    )
    rows = services.accounts.application_status(login_proof(services, applicant.card))
    assert [(r.category_name, r.role, r.status) for r in rows] == [
        ("流感抗病毒藥劑", Role.VIEWER, RequestStatus.PENDING)
    ]
