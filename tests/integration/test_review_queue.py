"""The 審核 queue's service side: filters, paging, what each item shows, and the
per-request outcome of a batch decision. On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from models.db import write_transaction
from models.schema import Account, AuditEvent, Category, PermissionRequest, Unit, utcnow
from smis_tui.core.domain import AccountStatus, RequestStatus, Role
from smis_tui.services import Services
from smis_tui.services.accounts import RoleChoice
from smis_tui.services.errors import ConflictError, NotAllowed, NotFound, ValidationFailed
from smis_tui.services.review import DEFAULT_PAGE_SIZE, Outcome
from tests.helpers import (
    apply_for,
    form,
    make_admin,
    new_person_id,
    other_bureau,
    own_request,
    send_application,
)


def _decisions() -> int:
    return (
        AuditEvent.select()
        .where(AuditEvent.action.in_(["approve_request", "reject_request"]))
        .count()
    )


def _status(request_id: int) -> str:
    return str(PermissionRequest.get_by_id(request_id).status)


# ----------------------------------------------------------------------- filters


def test_filters_are_the_reviewers_categories_and_reachable_counties(
    services: Services, tree: dict[str, Unit]
) -> None:
    bureau_admin = make_admin(services, tree["bureau"], ["emerging", "ppe"])
    filters = services.review.filters(bureau_admin.id)
    assert filters.has_scope
    # In the categories' own order, with both names.
    assert [(c.code, c.name) for c in filters.categories] == [
        ("ppe", "個人防護裝備"),
        ("emerging", "新興傳染病用藥"),
    ]
    assert filters.categories[0].name_en
    assert filters.counties == (tree["bureau"].county,)

    cdc_admin = make_admin(services, tree["cdc"])
    everything = services.review.filters(cdc_admin.id)
    assert len(everything.categories) == Category.select().count()
    assert len(everything.counties) == 22
    assert everything.counties[0] == "臺北市"  # the official county order

    applicant, _ = apply_for(services, tree["clinic"])
    nothing = services.review.filters(applicant)
    assert not nothing.has_scope and nothing.counties == ()


def test_unit_filter_takes_a_code_prefix_or_part_of_the_name(
    services: Services, tree: dict[str, Unit]
) -> None:
    admin = make_admin(services, tree["cdc"])
    at_clinic, _ = apply_for(services, tree["clinic"])
    at_bureau, _ = apply_for(services, tree["bureau"])

    def accounts(**filters: object) -> list[int]:
        return [i.account_id for i in services.review.queue(admin.id, **filters).items]  # type: ignore[arg-type]

    assert accounts() == [at_clinic, at_bureau]
    assert accounts(unit=tree["clinic"].code) == [at_clinic]
    assert accounts(unit=tree["clinic"].code[:7].lower()) == [
        i
        for i, u in ((at_clinic, tree["clinic"]), (at_bureau, tree["bureau"]))
        if u.code.startswith(tree["clinic"].code[:7])
    ]
    # Part of the name, folded like the unit search: 台 finds 臺, full-width finds half.
    name = tree["bureau"].name
    assert accounts(unit=name) == [at_bureau]
    assert accounts(unit=name.replace("臺", "台")) == accounts(unit=name)
    assert accounts(unit="衛生局") == [at_bureau]
    # LIKE wildcards are literal characters, not patterns.
    assert accounts(unit="%") == []
    assert accounts(unit="_") == []
    assert accounts(unit="  ") == [at_clinic, at_bureau]  # blank = no filter
    assert accounts(unit="不存在的單位") == []


def test_category_and_county_filters_combine(services: Services, tree: dict[str, Unit]) -> None:
    admin = make_admin(services, tree["cdc"])
    other = other_bureau(tree["bureau"])
    ppe_here, _ = apply_for(services, tree["bureau"], Role.OFFICER, "ppe")
    emerging_here = send_application(
        services,
        form(
            new_person_id(),
            tree["bureau"],
            {"emerging": RoleChoice(Role.VIEWER, ("COVID-19",))},
        ),
    )
    ppe_there, _ = apply_for(services, other, Role.OFFICER, "ppe")

    def accounts(**filters: object) -> list[int]:
        return [i.account_id for i in services.review.queue(admin.id, **filters).items]  # type: ignore[arg-type]

    assert accounts(category="ppe") == [ppe_here, ppe_there]
    assert accounts(county=tree["bureau"].county) == [ppe_here, emerging_here]
    assert accounts(category="ppe", county=other.county) == [ppe_there]
    assert accounts(category="emerging", county=other.county) == []
    # A category the reviewer does not administer shows nothing, not everything.
    ppe_only = make_admin(services, tree["cdc"], ["ppe"])
    assert services.review.queue(ppe_only.id, category="emerging").total == 0


# ----------------------------------------------------------------------- paging and items


def test_pages_of_twenty_oldest_first_with_the_total(
    services: Services, tree: dict[str, Unit]
) -> None:
    admin = make_admin(services, tree["bureau"], ["ppe"])
    request_ids = [apply_for(services, tree["clinic"], Role.VIEWER)[1] for _ in range(23)]
    # The last applicant applied first: submission time orders, not ids.
    with write_transaction():
        PermissionRequest.update(submitted_at=utcnow() - dt.timedelta(days=3)).where(
            PermissionRequest.id == request_ids[-1]
        ).execute()
    expected = [request_ids[-1], *request_ids[:-1]]

    first = services.review.queue(admin.id)
    assert (first.page, first.pages, first.total, first.page_size) == (1, 2, 23, 20)
    assert DEFAULT_PAGE_SIZE == 20
    assert [i.request_id for i in first.items] == expected[:20]
    second = services.review.queue(admin.id, page=2)
    assert [i.request_id for i in second.items] == expected[20:]
    # Out-of-range pages are clamped (e.g. the last page emptied by a decision).
    assert services.review.queue(admin.id, page=9).page == 2
    assert services.review.queue(admin.id, page=0).page == 1
    services.review.decide_many(admin.id, expected[20:], approve=True)
    after = services.review.queue(admin.id, page=2)
    assert (after.page, after.pages, after.total) == (1, 1, 20)


def test_an_item_shows_the_applicant_and_the_other_pending_requests(
    services: Services, tree: dict[str, Unit]
) -> None:
    admin = make_admin(services, tree["cdc"], ["ppe"])
    account_id = send_application(
        services,
        form(
            new_person_id(),
            tree["bureau"],
            {
                "ppe": RoleChoice(Role.ADMIN),
                "flu_antiviral": RoleChoice(Role.OFFICER),
                "emerging": RoleChoice(Role.VIEWER, ("猴痘(M痘)", "COVID-19")),
            },
            name="林[b]怡君[/b]",
        ),
    )
    with write_transaction():
        PermissionRequest.update(submitted_at=dt.datetime(2024, 7, 25, 20, 30)).where(
            PermissionRequest.account == account_id
        ).execute()
    queue = services.review.queue(admin.id)
    # Only the ppe request is the reviewer's; the others are shown beside it.
    assert queue.total == 1
    item = queue.items[0]
    assert item.applicant_name == "林[b]怡君[/b]"  # as stored; the screen escapes it
    assert item.masked_id == Account.get_by_id(account_id).person_id_masked
    assert item.masked_id.count("*") == 6
    assert (item.unit_code, item.unit_name, item.county) == (
        tree["bureau"].code,
        tree["bureau"].name,
        tree["bureau"].county,
    )
    assert (item.category_code, item.category_name, item.role) == (
        "ppe",
        "個人防護裝備",
        Role.ADMIN,
    )
    assert item.category_name_en
    # 20:30 UTC is already the next day in Taiwan.
    assert item.submitted_on == dt.date(2024, 7, 26)
    others = [(o.category_code, o.role, o.options, o.unit_code) for o in item.other_pending]
    assert others == [
        ("flu_antiviral", Role.OFFICER, (), tree["bureau"].code),
        ("emerging", Role.VIEWER, ("猴痘(M痘)", "COVID-19"), tree["bureau"].code),
    ]
    assert item.request_id not in [o.request_id for o in item.other_pending]


def test_admin_requests_only_from_units_below_and_never_own(
    services: Services, tree: dict[str, Unit]
) -> None:
    admin = make_admin(services, tree["bureau"], ["ppe"])
    _, admin_here = apply_for(services, tree["bureau"], Role.ADMIN)
    _, officer_here = apply_for(services, tree["bureau"], Role.OFFICER)
    _, admin_below = apply_for(services, tree["clinic"], Role.ADMIN)
    _, above = apply_for(services, tree["region"], Role.VIEWER)
    own = own_request(admin, tree["clinic"], Role.VIEWER)
    visible = [i.request_id for i in services.review.queue(admin.id).items]
    assert visible == [officer_here, admin_below]
    assert admin_here not in visible and above not in visible and own not in visible


# ----------------------------------------------------------------------- decisions


def test_batch_reports_an_outcome_for_every_request(
    services: Services, tree: dict[str, Unit]
) -> None:
    admin = make_admin(services, tree["bureau"], ["ppe"])
    other_reviewer = make_admin(services, tree["cdc"], ["ppe"])
    first_account, first = apply_for(services, tree["clinic"], Role.VIEWER)
    _, second = apply_for(services, tree["centre"], Role.OFFICER)
    _, taken = apply_for(services, tree["clinic"], Role.OFFICER)
    _, elsewhere = apply_for(services, other_bureau(tree["bureau"]), Role.OFFICER)
    own = own_request(admin, tree["clinic"], Role.VIEWER)
    services.review.reject(other_reviewer.id, taken, "重複申請")
    before = _decisions()

    result = services.review.decide_many(
        admin.id, [first, taken, elsewhere, own, 999_999, second, first], approve=True
    )

    assert result.outcomes == {
        first: Outcome.DECIDED,
        taken: Outcome.CONFLICT,
        elsewhere: Outcome.OUT_OF_SCOPE,
        own: Outcome.OUT_OF_SCOPE,
        999_999: Outcome.NOT_FOUND,
        second: Outcome.DECIDED,
    }
    assert result.decided == [first, second]  # the repeated id is decided once
    assert result.with_outcome(Outcome.CONFLICT) == [taken]
    assert isinstance(result.failed[taken], ConflictError)
    assert result.failed[taken].params["status"] == RequestStatus.REJECTED
    assert isinstance(result.failed[elsewhere], NotAllowed)
    assert isinstance(result.failed[999_999], NotFound)
    assert "自己" in str(result.failed[own])
    assert "already decided" in result.failed[taken].render("en")
    # Only the decided ones changed, each audited once; the conflict kept its decision.
    assert _decisions() == before + 2
    assert (_status(first), _status(second)) == (RequestStatus.APPROVED, RequestStatus.APPROVED)
    assert _status(taken) == RequestStatus.REJECTED
    assert PermissionRequest.get_by_id(taken).reviewer_id == other_reviewer.id
    assert (_status(elsewhere), _status(own)) == (RequestStatus.PENDING,) * 2
    assert Account.get_by_id(first_account).status == AccountStatus.ACTIVE
    assert services.audit.verify().ok


def test_batch_rejection_needs_a_reason_and_records_it(
    services: Services, tree: dict[str, Unit]
) -> None:
    admin = make_admin(services, tree["bureau"], ["ppe"])
    ids = [apply_for(services, tree["clinic"], Role.VIEWER)[1] for _ in range(3)]
    before = _decisions()
    for reason in ("", "   ", "原因\x1b[31m", "x" * 501):
        with pytest.raises(ValidationFailed):
            services.review.decide_many(admin.id, ids, approve=False, reason=reason)
    assert _decisions() == before
    assert {_status(i) for i in ids} == {RequestStatus.PENDING}

    result = services.review.decide_many(admin.id, ids, approve=False, reason="  非本單位人員 ")
    assert result.decided == ids and set(result.outcomes.values()) == {Outcome.DECIDED}
    for request_id in ids:
        request = PermissionRequest.get_by_id(request_id)
        assert request.status == RequestStatus.REJECTED
        assert request.reason == "非本單位人員"
        assert request.reviewer_id == admin.id
    events = list(
        AuditEvent.select().where(AuditEvent.action == "reject_request").order_by(AuditEvent.id)
    )
    assert [e.target_id for e in events] == [str(i) for i in ids]
    assert {json.loads(e.details)["reason"] for e in events} == {"非本單位人員"}
    assert all(e.actor_id == admin.id for e in events)
    assert services.review.queue(admin.id).total == 0


def test_a_disabled_reviewer_decides_nothing(services: Services, tree: dict[str, Unit]) -> None:
    admin = make_admin(services, tree["bureau"], ["ppe"])
    _, request_id = apply_for(services, tree["clinic"], Role.VIEWER)
    with write_transaction():
        Account.update(status=AccountStatus.DISABLED).where(Account.id == admin.id).execute()
    result = services.review.decide_many(admin.id, [request_id], approve=True)
    assert result.outcomes == {request_id: Outcome.OUT_OF_SCOPE}
    assert _status(request_id) == RequestStatus.PENDING
