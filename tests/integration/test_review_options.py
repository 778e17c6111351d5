"""A 管理者 of 新興傳染病用藥 limited to some diseases decides only requests for those
diseases (issue: 周怡君, 管理者(COVID-19), approved a 承辦人(猴痘(M痘)) request)."""

from __future__ import annotations

import pytest

from models.db import write_transaction
from models.schema import Category, CategoryOption, PermissionRequest, Role, Unit, UnitKind
from smis_tui.core.domain import RoleChoice
from smis_tui.services import Services
from smis_tui.services.errors import NotAllowed
from tests.helpers import card_proof, form, make_admin, new_person_id, unit_of_kind

MPOX, COVID = "猴痘(M痘)", "COVID-19"


def bureau_above(unit: Unit) -> Unit:
    while unit.kind != UnitKind.HEALTH_BUREAU:
        unit = Unit.get_by_id(unit.parent_id)
    return unit


def limit_to(admin_id: int, *diseases: str) -> None:
    """The admin's 新興傳染病用藥 管理者 grant covers only ``diseases``."""
    emerging = Category.get(Category.code == "emerging")
    ids = [
        str(o.id)
        for o in CategoryOption.select().where(
            (CategoryOption.category == emerging) & CategoryOption.name.in_(diseases)
        )
    ]
    assert len(ids) == len(diseases)
    with write_transaction():
        PermissionRequest.update(option_ids=",".join(ids)).where(
            (PermissionRequest.account == admin_id) & (PermissionRequest.category == emerging)
        ).execute()


def request_for(services: Services, unit: Unit, *diseases: str) -> int:
    person_id = new_person_id()
    account_id = services.accounts.apply(
        form(person_id, unit, {"emerging": RoleChoice(Role.OFFICER, diseases)}),
        card_proof(services, person_id),
    )
    return services.accounts.view(account_id).pending()[0].id


@pytest.fixture
def hospital(services: Services) -> Unit:
    return unit_of_kind(UnitKind.HOSPITAL, with_category="emerging")


def test_a_covid_only_admin_neither_sees_nor_decides_a_monkeypox_request(
    services: Services, hospital: Unit
) -> None:
    admin = make_admin(services, bureau_above(hospital), ["emerging"])
    limit_to(admin.id, COVID)
    mpox = request_for(services, hospital, MPOX)
    both = request_for(services, hospital, MPOX, COVID)
    covid = request_for(services, hospital, COVID)
    visible = [item.request_id for item in services.review.queue(admin.id).items]
    assert visible == [covid]
    for request_id in (mpox, both):
        with pytest.raises(NotAllowed):
            services.review.approve(admin.id, request_id)
        with pytest.raises(NotAllowed):
            services.review.reject(admin.id, request_id, "不在您的疾病範圍")
    services.review.approve(admin.id, covid)


def test_an_admin_of_every_disease_decides_them_all(services: Services, hospital: Unit) -> None:
    admin = make_admin(services, bureau_above(hospital), ["emerging"])
    limit_to(admin.id, MPOX, COVID)
    requests = [request_for(services, hospital, MPOX), request_for(services, hospital, MPOX, COVID)]
    assert [item.request_id for item in services.review.queue(admin.id).items] == requests
    for request_id in requests:
        services.review.approve(admin.id, request_id)


def test_a_covid_only_admin_cannot_disable_a_monkeypox_permission(
    services: Services, hospital: Unit
) -> None:
    bureau = bureau_above(hospital)
    everything = make_admin(services, bureau, ["emerging"])
    covid_only = make_admin(services, bureau, ["emerging"])
    limit_to(covid_only.id, COVID)
    mpox = request_for(services, hospital, MPOX)
    services.review.approve(everything.id, mpox)
    holder = PermissionRequest.get_by_id(mpox).account_id
    view = services.accounts.view(holder)
    with pytest.raises(NotAllowed) as refused:
        services.control.disable_permission(covid_only.id, holder, mpox, view.version, "越權")
    assert MPOX in str(refused.value)
    assert [g.id for g in services.accounts.view(holder).granted()] == [mpox]
    with pytest.raises(NotAllowed):
        services.control.disable_account(covid_only.id, holder, view.version, "越權停用")
    services.control.disable_permission(everything.id, holder, mpox, view.version, "不再負責")


def test_a_reviewer_whose_own_authority_was_reduced_is_told_so(
    services: Services, hospital: Unit
) -> None:
    """The request was in the queue; meanwhile the reviewer's own 管理者 grant was cut
    down to COVID-19. 「不在您的審核範圍內」 alone left them guessing why."""
    admin = make_admin(services, bureau_above(hospital), ["emerging"])
    mpox = request_for(services, hospital, MPOX)
    assert [item.request_id for item in services.review.queue(admin.id).items] == [mpox]
    emerging = Category.get(Category.code == "emerging")
    with write_transaction():
        old = PermissionRequest.get(
            (PermissionRequest.account == admin.id) & (PermissionRequest.category == emerging)
        )
        old.status = "superseded"
        old.save()
        reduced = PermissionRequest.create(
            account=admin.id,
            unit=old.unit_id,
            category=emerging,
            role=Role.ADMIN,
            status="approved",
            revision=2,
            submitted_at=old.submitted_at,
            decided_at=old.decided_at,
        )
    limit_to_request(reduced, COVID)
    with pytest.raises(NotAllowed) as refused:
        services.review.approve(admin.id, mpox)
    assert refused.value.key == "error.review_scope_own_changed"
    assert "您的管理者權限已變更" in str(refused.value)
    # Someone who never had the authority hears only that it is not theirs.
    stranger = make_admin(services, bureau_above(hospital), ["ppe"])
    with pytest.raises(NotAllowed) as plain:
        services.review.approve(stranger.id, mpox)
    assert plain.value.key == "error.review_scope"


def limit_to_request(request: PermissionRequest, *diseases: str) -> None:
    ids = [
        str(o.id)
        for o in CategoryOption.select().where(
            (CategoryOption.category == request.category_id) & CategoryOption.name.in_(diseases)
        )
    ]
    with write_transaction():
        PermissionRequest.update(option_ids=",".join(ids)).where(
            PermissionRequest.id == request.id
        ).execute()
