"""What 審核 tells a reviewer about the request they are deciding (issue 20, item 8):
the applicant's role in the category now and the one asked for, their contact details,
what was decided about them before (refusals and withdrawals with the reasons), how
long the request has waited, and who decides the applicant's other requests that the
reviewer may not; and F3's question, every request of one applicant in the queue
whatever its page (item 9). On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest

from models.db import write_transaction
from models.schema import Account, PermissionRequest, Unit, utcnow
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
from tests.review_history import (
    COVID,
    REJECTED_REASON,
    WITHDRAWN_REASON,
    Reviewers,
    pending_request,
    reviewers_at,
    with_history,
)


@pytest.fixture
def reviewers(services: Services, tree: dict[str, Unit]) -> Reviewers:
    return reviewers_at(services, tree)


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
    approved = pending_request(services, first, "ppe")
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
