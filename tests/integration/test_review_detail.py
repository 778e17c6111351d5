"""What 審核 tells a reviewer about the request they are deciding (issue 20, item 8):
the applicant's role in the category now and the one asked for, their contact details,
what was decided about them before (refusals and withdrawals with the reasons), how
long the request has waited, and who decides the applicant's other requests that the
reviewer may not; and F3's question, every request of one applicant in the queue
whatever its page (item 9). On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

import pytest

from models.db import write_transaction
from models.schema import Account, Category, CategoryOption, PermissionRequest, Unit, utcnow
from smis_tui.core.domain import DecisionBy, RequestStatus, Role
from smis_tui.services import Services
from smis_tui.services.accounts import RoleChoice
from smis_tui.services.review import (
    Contact,
    Decider,
    DeciderPlace,
    HeldRole,
    QueueItem,
)
from tests.helpers import (
    apply_for,
    form,
    make_admin,
    new_person_id,
    other_bureau,
    own_request,
    owner_proof,
    send_application,
)

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


@pytest.fixture
def reviewers(services: Services, tree: dict[str, Unit]) -> Reviewers:
    return reviewers_at(services, tree)


def _request(services: Services, account_id: int, category: str) -> int:
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
    services.review.approve(people.cdc.id, _request(services, account_id, "ppe"))
    services.review.reject(
        people.region.id, _request(services, account_id, "flu_antiviral"), REJECTED_REASON
    )
    drugs = _request(services, account_id, "epidemic_drugs")
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


def item_of(services: Services, reviewer: Account, account_id: int) -> QueueItem:
    (item,) = [i for i in services.review.queue(reviewer.id).items if i.account_id == account_id]
    return item


# ----------------------------------------------------------------------- item 8


def test_current_and_requested_role_contact_and_earlier_decisions(
    services: Services, tree: dict[str, Unit], reviewers: Reviewers
) -> None:
    account_id = with_history(services, tree, reviewers)
    item = item_of(services, reviewers.bureau, account_id)
    clinic = tree["clinic"]
    # 瀏覽者 → 承辦人 of ppe, at the clinic.
    assert (item.category_code, item.role) == ("ppe", Role.OFFICER)
    assert item.current == (HeldRole(Role.VIEWER, (), clinic.code, clinic.name),)
    # As the account stores them.
    assert item.contact == Contact(
        phone="02-23959825#1234",
        phone_backup="02-23959826",
        mobile="0912-345-678",
        email="wang@example.tw",
        email_backup="lin@example.org",
    )
    # The account's own view tells the holder the same decisions, in the same order.
    assert item.decisions == services.accounts.view(account_id).decisions
    shown = [
        (d.category_name, d.role, d.status, d.by, d.reason, d.deciding_unit_name)
        for d in item.decisions
    ]
    assert shown == [
        (
            "防疫藥品器材",
            Role.VIEWER,
            RequestStatus.REVOKED,
            DecisionBy.ADMIN,
            WITHDRAWN_REASON,
            tree["cdc"].name,
        ),
        (
            "流感抗病毒藥劑",
            Role.OFFICER,
            RequestStatus.REJECTED,
            DecisionBy.ADMIN,
            REJECTED_REASON,  # as typed; the screen shows it literally
            tree["region"].name,
        ),
        (
            "個人防護裝備",
            Role.VIEWER,
            RequestStatus.APPROVED,
            DecisionBy.ADMIN,
            "",
            tree["cdc"].name,
        ),
    ]


def test_the_other_requests_say_who_decides_them(
    services: Services, tree: dict[str, Unit], reviewers: Reviewers
) -> None:
    account_id = with_history(services, tree, reviewers)
    # A second applicant: 承辦人 of ppe and 管理者(COVID-19) of emerging are the bureau
    # reviewer's; 管理者 of epidemic_drugs at the clinic only the CDC's.
    second = send_application(
        services,
        form(
            new_person_id(),
            tree["clinic"],
            {
                "ppe": RoleChoice(Role.OFFICER),
                "emerging": RoleChoice(Role.ADMIN, (COVID,)),
                "epidemic_drugs": RoleChoice(Role.ADMIN),
            },
        ),
    )
    first_item = item_of(services, reviewers.bureau, account_id)
    others = {o.category_code: (o.role, o.decider) for o in first_item.other_pending}
    assert others == {
        # The nearest unit with an active 管理者 of the category: above the clinic.
        "flu_antiviral": (Role.VIEWER, Decider(DeciderPlace.SUPERIOR, tree["region"].name)),
        # 承辦人 at the clinic: the clinic's own 管理者.
        "epidemic_drugs": (Role.OFFICER, Decider(DeciderPlace.UNIT, tree["clinic"].name)),
        # The bureau's 管理者(COVID-19) does not cover 猴痘(M痘); nobody else is there.
        "emerging": (Role.VIEWER, Decider(DeciderPlace.NOBODY)),
    }
    assert [o.current for o in first_item.other_pending] == [(), (), ()]

    queue = services.review.queue(reviewers.bureau.id)
    second_items = [i for i in queue.items if i.account_id == second]
    assert [i.category_code for i in second_items] == ["ppe", "emerging"]
    ppe_item = second_items[0]
    others = {o.category_code: o.decider for o in ppe_item.other_pending}
    assert others == {
        "emerging": None,  # the reviewer's own to decide (it is in their queue)
        "epidemic_drugs": Decider(DeciderPlace.CDC, tree["cdc"].name),
    }
    assert ppe_item.current == () and ppe_item.decisions == ()


def test_a_disabled_admin_decides_nothing_for_anyone(
    services: Services, tree: dict[str, Unit], reviewers: Reviewers
) -> None:
    """The region's 管理者 disabled: flu_antiviral goes to nobody, not to them."""
    account_id = with_history(services, tree, reviewers)
    with write_transaction():
        Account.update(status="disabled").where(Account.id == reviewers.region.id).execute()
    item = item_of(services, reviewers.bureau, account_id)
    flu = next(o for o in item.other_pending if o.category_code == "flu_antiviral")
    assert flu.decider == Decider(DeciderPlace.NOBODY)


def test_days_waited_count_taiwan_calendar_days(
    services: Services, tree: dict[str, Unit], reviewers: Reviewers
) -> None:
    _, request_id = apply_for(services, tree["clinic"], Role.VIEWER)
    # 16:30 UTC on 25 July is 00:30 on 26 July in Taiwan.
    with write_transaction():
        PermissionRequest.update(submitted_at=dt.datetime(2024, 7, 25, 16, 30)).where(
            PermissionRequest.id == request_id
        ).execute()
    (item,) = services.review.queue(reviewers.bureau.id).items
    assert item.submitted_on == dt.date(2024, 7, 26)
    assert item.waited_days(dt.date(2024, 7, 26)) == 0
    assert item.waited_days(dt.date(2024, 7, 27)) == 1
    assert item.waited_days(dt.date(2024, 8, 26)) == 31
    assert item.waited_days(dt.date(2024, 7, 1)) == 0  # a clock set back counts no days


# ----------------------------------------------------------------------- item 9: F3


def test_every_request_of_one_applicant_whatever_the_page(
    services: Services, tree: dict[str, Unit]
) -> None:
    reviewer = make_admin(services, tree["cdc"])
    clinic = tree["clinic"]
    first = send_application(
        services,
        form(new_person_id(), clinic, {"ppe": RoleChoice(Role.VIEWER)}),
    )
    for _ in range(20):
        apply_for(services, clinic, Role.VIEWER)
    # Later, the first applicant's change adds a request on page 2.
    approved = _request(services, first, "ppe")
    services.review.approve(reviewer.id, approved)
    [later] = services.accounts.request_changes(
        first,
        {"flu_antiviral": RoleChoice(Role.OFFICER)},
        services.accounts.view(first).version,
        owner_proof(services, first),
    )
    # And asks for ppe 承辦人 first of all (page 1).
    [early] = services.accounts.request_changes(
        first,
        {"ppe": RoleChoice(Role.OFFICER)},
        services.accounts.view(first).version,
        owner_proof(services, first),
    )
    with write_transaction():
        PermissionRequest.update(submitted_at=utcnow() - dt.timedelta(days=9)).where(
            PermissionRequest.id == early
        ).execute()
    page_one = services.review.queue(reviewer.id)
    assert page_one.pages == 2
    assert early in [i.request_id for i in page_one.items]
    assert later not in [i.request_id for i in page_one.items]

    chosen = services.review.applicant_requests(reviewer.id, first)
    assert [i.request_id for i in chosen] == [early, later]  # oldest first
    assert {i.account_id for i in chosen} == {first}
    # What the batch confirmation lists comes with them.
    assert [(i.category_code, i.role) for i in chosen] == [
        ("ppe", Role.OFFICER),
        ("flu_antiviral", Role.OFFICER),
    ]
    # The queue's filters hold: what the list does not show is not chosen.
    assert [
        i.request_id
        for i in services.review.applicant_requests(reviewer.id, first, category="flu_antiviral")
    ] == [later]
    assert services.review.applicant_requests(reviewer.id, first, county="連江縣") == ()


def test_an_applicant_outside_the_scope_gives_nothing(
    services: Services, tree: dict[str, Unit]
) -> None:
    """The attack first: F3 asked for an applicant the reviewer may not review, for the
    reviewer's own requests, or by an account that administers nothing, chooses
    nothing."""
    reviewer = make_admin(services, tree["bureau"], ["ppe"])
    elsewhere, _ = apply_for(services, other_bureau(tree["bureau"]), Role.OFFICER)
    other_category, _ = apply_for(services, tree["clinic"], Role.OFFICER, "flu_antiviral")
    own_request(reviewer, tree["clinic"], Role.VIEWER)
    in_scope, request_id = apply_for(services, tree["clinic"], Role.OFFICER)
    review = services.review
    assert review.applicant_requests(reviewer.id, elsewhere) == ()
    assert review.applicant_requests(reviewer.id, other_category) == ()
    assert review.applicant_requests(reviewer.id, reviewer.id) == ()
    assert review.applicant_requests(elsewhere, in_scope) == ()  # an applicant
    assert [i.request_id for i in review.applicant_requests(reviewer.id, in_scope)] == [request_id]
    # A reviewer disabled meanwhile chooses nothing either.
    with write_transaction():
        Account.update(status="disabled").where(Account.id == reviewer.id).execute()
    assert review.applicant_requests(reviewer.id, in_scope) == ()
