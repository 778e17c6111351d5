"""審核 rules (docs/architecture.md, "Lifecycle"), on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import pytest

from models.db import database_proxy, write_transaction
from models.schema import Account, AuditEvent, Unit
from smis_tui.core.domain import AccountStatus, RequestStatus, Role, UnitKind
from smis_tui.services import Services
from smis_tui.services.accounts import RoleChoice
from smis_tui.services.errors import ConflictError, NotAllowed, ValidationFailed
from smis_tui.services.scope import UnitTree
from tests.helpers import apply_for, form, make_admin, new_person_id, own_request, send_application


def test_first_approval_activates_and_is_audited(services: Services, tree: dict[str, Unit]) -> None:
    admin = make_admin(services, tree["bureau"])
    account_id, request_id = apply_for(services, tree["clinic"], Role.OFFICER)
    queue = services.review.queue(admin.id)
    assert [item.request_id for item in queue.items] == [request_id]
    item = queue.items[0]
    assert item.masked_id.count("*") == 6 and item.unit_code == tree["clinic"].code
    services.review.approve(admin.id, request_id)
    account = Account.get_by_id(account_id)
    assert account.status == AccountStatus.ACTIVE and account.activated_at is not None
    event = AuditEvent.select().where(AuditEvent.action == "approve_request").get()
    assert event.actor_id == admin.id and event.target_id == str(request_id)
    assert services.review.queue(admin.id).total == 0


def test_reject_needs_a_reason(services: Services, tree: dict[str, Unit]) -> None:
    admin = make_admin(services, tree["bureau"])
    account_id, request_id = apply_for(services, tree["clinic"], Role.VIEWER)
    with pytest.raises(ValidationFailed) as caught:
        services.review.reject(admin.id, request_id, "   ")
    assert "原因" in str(caught.value)
    services.review.reject(admin.id, request_id, "非本單位人員")
    view = services.accounts.view(account_id)
    assert (
        view.status == AccountStatus.PENDING and view.requests[0].status == RequestStatus.REJECTED
    )
    outcome = services.login.outcome_for_person(
        services.accounts.person_id_of(Account.get_by_id(account_id))
    )
    assert outcome.rejected_reason == "非本單位人員"


@pytest.mark.parametrize(
    ("reviewer_at", "applicant_at", "role", "allowed"),
    [
        ("clinic", "clinic", Role.OFFICER, True),  # same unit, officer request
        ("clinic", "clinic", Role.ADMIN, False),  # admin request needs a superior unit
        ("centre", "clinic", Role.ADMIN, True),
        ("bureau", "clinic", Role.VIEWER, True),
        ("cdc", "bureau", Role.ADMIN, True),
        ("clinic", "centre", Role.VIEWER, False),  # a unit below cannot decide above
        ("bureau", "region", Role.OFFICER, False),
    ],
)
def test_scope_rules(
    services: Services,
    tree: dict[str, Unit],
    reviewer_at: str,
    applicant_at: str,
    role: Role,
    allowed: bool,
) -> None:
    admin = make_admin(services, tree[reviewer_at], ["ppe"])
    _, request_id = apply_for(services, tree[applicant_at], role)
    visible = [i.request_id for i in services.review.queue(admin.id).items]
    assert (request_id in visible) is allowed
    if allowed:
        services.review.approve(admin.id, request_id)
    else:
        with pytest.raises(NotAllowed):
            services.review.approve(admin.id, request_id)


def test_admin_of_another_category_or_branch_sees_nothing(
    services: Services, tree: dict[str, Unit]
) -> None:
    other_category = make_admin(services, tree["bureau"], ["hiv_tb"])
    other_bureau = (
        Unit.select()
        .where((Unit.kind == UnitKind.HEALTH_BUREAU) & (Unit.id != tree["bureau"].id))
        .first()
    )
    other_branch = make_admin(services, other_bureau)
    _, request_id = apply_for(services, tree["clinic"], Role.VIEWER)
    assert services.review.queue(other_category.id).total == 0
    assert services.review.queue(other_branch.id).total == 0
    with pytest.raises(NotAllowed):
        services.review.approve(other_branch.id, request_id)


def test_nobody_reviews_their_own_request(services: Services, tree: dict[str, Unit]) -> None:
    admin = make_admin(services, tree["cdc"])
    # The admin has asked for a role at another unit; it must not reach their own queue.
    own = own_request(admin, tree["region"], Role.OFFICER)
    assert own not in [i.request_id for i in services.review.queue(admin.id).items]
    with pytest.raises(NotAllowed) as caught:
        services.review.approve(admin.id, own)
    assert "自己" in str(caught.value)


def test_queue_is_oldest_first_filterable_and_shows_other_pending(
    services: Services, tree: dict[str, Unit]
) -> None:
    admin = make_admin(services, tree["cdc"])
    first = send_application(
        services,
        form(
            new_person_id(),
            tree["bureau"],
            {"ppe": RoleChoice(Role.OFFICER), "emerging": RoleChoice(Role.VIEWER, ("COVID-19",))},
        ),
    )
    second = send_application(services, form(new_person_id(), tree["clinic"]))
    queue = services.review.queue(admin.id)
    assert [i.account_id for i in queue.items] == [first, first, second]
    ppe_item = queue.items[0]
    assert [(o.category_name, o.role, o.options) for o in ppe_item.other_pending] == [
        ("新興傳染病用藥", Role.VIEWER, ("COVID-19",))
    ]
    assert queue.items[1].options == ("COVID-19",)
    assert [i.account_id for i in services.review.queue(admin.id, category="emerging").items] == [
        first
    ]
    assert [
        i.account_id for i in services.review.queue(admin.id, unit_code=tree["clinic"].code).items
    ] == [second]
    assert services.review.queue(admin.id, county=tree["clinic"].county).total >= 1
    paged = services.review.queue(admin.id, page_size=2, page=2)
    assert (paged.page, paged.pages, paged.total, len(paged.items)) == (2, 2, 3, 1)


def test_batch_decision_reports_each_failure(services: Services, tree: dict[str, Unit]) -> None:
    admin = make_admin(services, tree["bureau"])
    _, ok_id = apply_for(services, tree["clinic"], Role.VIEWER)
    _, decided_id = apply_for(services, tree["clinic"], Role.OFFICER)
    services.review.reject(admin.id, decided_id, "重複申請")
    result = services.review.decide_many(admin.id, [ok_id, decided_id, 999_999], approve=True)
    assert result.decided == [ok_id]
    assert isinstance(result.failed[decided_id], ConflictError)
    assert "#999999" in str(result.failed[999_999])


def test_concurrent_reviewers_never_decide_twice(services: Services, tree: dict[str, Unit]) -> None:
    first = make_admin(services, tree["bureau"])
    second = make_admin(services, tree["cdc"])
    _, request_id = apply_for(services, tree["clinic"], Role.OFFICER)
    barrier = threading.Barrier(2)
    outcomes: dict[int, object] = {}

    def decide(reviewer: int, approve: bool) -> None:
        barrier.wait()
        try:
            if approve:
                services.review.approve(reviewer, request_id)
            else:
                services.review.reject(reviewer, request_id, "不符資格")
            outcomes[reviewer] = "ok"
        except ConflictError as exc:
            outcomes[reviewer] = exc
        finally:
            database_proxy.obj.close()

    threads = [
        threading.Thread(target=decide, args=(first.id, True)),
        threading.Thread(target=decide, args=(second.id, False)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(type(o).__name__ for o in outcomes.values()) == ["ConflictError", "str"], outcomes
    decisions = AuditEvent.select().where(
        AuditEvent.action.in_(["approve_request", "reject_request"])
    )
    assert decisions.count() == 1
    assert services.audit.verify().ok


def test_the_cached_unit_tree_follows_every_change_of_the_hierarchy(services: Services) -> None:
    """UnitTree.loaded() reuses the hierarchy between review pages; a unit added,
    moved under another parent or removed shows at the next call."""
    first = UnitTree.loaded()
    assert UnitTree.loaded()._parent == first._parent
    bureau, other = list(Unit.select().where(Unit.kind == "health_bureau").limit(2))
    with write_transaction():
        clinic = Unit.create(
            code="9999999999",
            name="測試診所",
            county=bureau.county,
            kind="clinic",
            parent=bureau,
            county_rank=bureau.county_rank,
            search_key="測試診所",
        )
    assert UnitTree.loaded().ancestors(clinic.id)[0] == bureau.id
    with write_transaction():
        Unit.update(parent=other).where(Unit.id == clinic.id).execute()
    assert UnitTree.loaded().ancestors(clinic.id)[0] == other.id
    with write_transaction():
        Unit.delete().where(Unit.id == clinic.id).execute()
    assert clinic.id not in UnitTree.loaded()._parent
