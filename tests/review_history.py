"""An applicant with a past, and the reviewers around them: shared by the review
detail tests of the services (tests/integration/test_review_detail.py), of the
screen (tests/tui/test_review_detail.py) and the every-screen pictures."""

from __future__ import annotations

from typing import NamedTuple

from models.db import write_transaction
from models.schema import Account, Category, CategoryOption, PermissionRequest, Unit, utcnow
from smis_tui.core.domain import RequestStatus, Role
from smis_tui.services import Services
from smis_tui.services.accounts import RoleChoice
from tests.helpers import form, make_admin, new_person_id, owner_proof, send_application

REJECTED_REASON = "[red]x[/] \\[b]請補附在職證明[/b]"
WITHDRAWN_REASON = "已調離防疫藥品業務"
COVID = "COVID-19"
MPOX = "猴痘(M痘)"


def limited_admin(services: Services, unit: Unit, category: str, options: str) -> Account:
    """An active 管理者 of ``category`` at ``unit`` whose grant names the sub-options
    ``options`` (ids, comma-separated), as 管理者(COVID-19)."""
    admin = make_admin(services, unit, ["ppe"])
    with write_transaction():
        PermissionRequest.create(
            account=admin.id,
            unit=unit,
            category=Category.get(Category.code == category),
            role=Role.ADMIN,
            option_ids=options,
            status=RequestStatus.APPROVED,
            revision=1,
            submitted_at=utcnow(),
            decided_at=utcnow(),
        )
    return admin


class Reviewers(NamedTuple):
    bureau: Account  # reviews: ppe, and emerging limited to COVID-19
    cdc: Account  # ppe and epidemic_drugs
    region: Account  # flu_antiviral
    clinic: Account  # epidemic_drugs at the clinic itself


def reviewers_at(services: Services, tree: dict[str, Unit]) -> Reviewers:
    covid = CategoryOption.get(CategoryOption.name == COVID)
    return Reviewers(
        bureau=limited_admin(services, tree["bureau"], "emerging", str(covid.id)),
        cdc=make_admin(services, tree["cdc"], ["ppe", "epidemic_drugs"]),
        region=make_admin(services, tree["region"], ["flu_antiviral"]),
        clinic=make_admin(services, tree["clinic"], ["epidemic_drugs"]),
    )


def pending_request(services: Services, account_id: int, category: str) -> int:
    return next(
        r.id
        for r in services.accounts.view(account_id).requests
        if r.category_code == category and r.status == RequestStatus.PENDING
    )


def with_history(services: Services, tree: dict[str, Unit], people: Reviewers) -> int:
    """An applicant at the clinic with a past: 瀏覽者 of ppe granted, 承辦人 of
    flu_antiviral refused, 瀏覽者 of epidemic_drugs granted and withdrawn from above;
    now asking for 承辦人 of ppe, 瀏覽者 of flu_antiviral, 承辦人 of epidemic_drugs and
    瀏覽者(猴痘(M痘)) of emerging. The account id."""
    person_id = new_person_id()
    roles = {
        "ppe": RoleChoice(Role.VIEWER),
        "flu_antiviral": RoleChoice(Role.OFFICER),
        "epidemic_drugs": RoleChoice(Role.VIEWER),
    }
    account_id = send_application(
        services,
        form(
            person_id,
            tree["clinic"],
            roles,
            name="張雅婷",
            phone_backup="02-23959826",
            mobile="0912-345-678",
            email_backup="lin@example.org",
        ),
    )
    services.review.approve(people.cdc.id, pending_request(services, account_id, "ppe"))
    services.review.reject(
        people.region.id, pending_request(services, account_id, "flu_antiviral"), REJECTED_REASON
    )
    drugs = pending_request(services, account_id, "epidemic_drugs")
    services.review.approve(people.clinic.id, drugs)
    services.control.disable_permission(
        people.cdc.id,
        account_id,
        drugs,
        services.accounts.view(account_id).version,
        WITHDRAWN_REASON,
    )
    services.accounts.request_changes(
        account_id,
        {
            "ppe": RoleChoice(Role.OFFICER),
            "flu_antiviral": RoleChoice(Role.VIEWER),
            "epidemic_drugs": RoleChoice(Role.OFFICER),
            "emerging": RoleChoice(Role.VIEWER, (MPOX,)),
        },
        services.accounts.view(account_id).version,
        owner_proof(services, account_id),
    )
    return account_id
