"""Builders shared by the service tests."""

from __future__ import annotations

import itertools

from models.db import write_transaction
from models.schema import (
    Account,
    AccountStatus,
    Category,
    PermissionRequest,
    RequestStatus,
    Role,
    Unit,
    UnitCategory,
    UnitKind,
    utcnow,
)
from smis_tui.core.identifiers import generate_national_id
from smis_tui.services import Services
from smis_tui.services.accounts import ApplicationForm, RoleChoice
from smis_tui.text.consent import CURRENT_STATEMENT_SHA256

_serials = itertools.count(1000)


def new_person_id() -> str:
    return generate_national_id("A", 1, next(_serials))


def unit_of_kind(
    kind: UnitKind, *, with_category: str | None = None, without: str | None = None
) -> Unit:
    query = Unit.select().where((Unit.kind == kind) & Unit.active).order_by(Unit.code)
    for unit in query:
        codes = {
            c.code for c in Category.select().join(UnitCategory).where(UnitCategory.unit == unit)
        }
        if with_category and with_category not in codes:
            continue
        if without and without in codes:
            continue
        return unit
    raise LookupError(f"no {kind} unit with {with_category} without {without}")


def child_of(parent: Unit, kind: UnitKind | None = None) -> Unit:
    query = Unit.select().where(Unit.parent == parent)
    if kind is not None:
        query = query.where(Unit.kind == kind)
    unit = query.order_by(Unit.code).first()
    assert unit is not None, f"{parent.name} has no child units"
    return unit


def form(
    person_id: str,
    unit: Unit,
    roles: dict[str, RoleChoice] | None = None,
    **overrides: object,
) -> ApplicationForm:
    values: dict[str, object] = {
        "person_id": person_id,
        "unit_code": unit.code,
        "name": "王小明",
        "phone": "02-23959825#1234",
        "email": "wang@example.tw",
        "roles": roles if roles is not None else {"ppe": RoleChoice(Role.OFFICER)},
        "consent_sha256": CURRENT_STATEMENT_SHA256,
    }
    values.update(overrides)
    return ApplicationForm(**values)  # type: ignore[arg-type]


def make_admin(services: Services, unit: Unit, categories: list[str] | None = None) -> Account:
    """An active 管理者 of the given categories at the unit (all categories by default)."""
    person = new_person_id()
    account_id = services.accounts.apply(
        form(person, unit, {c: RoleChoice(Role.VIEWER) for c in ["ppe"]})
    )
    with write_transaction():
        PermissionRequest.delete().where(PermissionRequest.account == account_id).execute()
        now = utcnow()
        wanted = categories or [c.code for c in Category.select()]
        for code in wanted:
            PermissionRequest.create(
                account=account_id,
                unit=unit,
                category=Category.get(Category.code == code),
                role=Role.ADMIN,
                status=RequestStatus.APPROVED,
                revision=1,
                submitted_at=now,
                decided_at=now,
            )
        Account.update(status=AccountStatus.ACTIVE, activated_at=now).where(
            Account.id == account_id
        ).execute()
    return Account.get_by_id(account_id)
