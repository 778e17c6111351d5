"""Where an application stands, for its applicant: each request of the latest application
with its status and the unit whose 管理者 decides it (:func:`smis_tui.services.scope.may_review`'s
rule). Who may read it is the account service's question
(:meth:`smis_tui.services.accounts.AccountService.application_status`): only the card
bound to the account."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from peewee import fn

from models.schema import Account, Category, PermissionRequest, Unit
from smis_tui.core.domain import AccountStatus, RequestStatus, Role
from smis_tui.services.scope import OptionNames, UnitTree, requests_named, reviewing_units

# What the applicant is told of: the requests still open and the decided ones. Requests
# replaced by a newer application or revoked are history, not its status.
SHOWN = (RequestStatus.PENDING, RequestStatus.APPROVED, RequestStatus.REJECTED)


@dataclass(frozen=True)
class ApplicationStatusRow:
    request_id: int
    category_name: str
    category_name_en: str
    role: Role
    options: tuple[str, ...]
    unit_name: str
    status: RequestStatus
    submitted_at: dt.datetime
    decided_at: dt.datetime | None
    reason: str
    """Why it was rejected ("" otherwise)."""
    deciding_unit_name: str | None
    """The unit whose 管理者 decided it, or decides it while it is under review: the
    nearest one in reach with an active 管理者 of the category. None while nobody
    there could decide it."""


def application_status_rows(account_id: int) -> tuple[ApplicationStatusRow, ...]:
    """The requests of ``account_id``'s latest application, in category order."""
    latest = (
        PermissionRequest.select(fn.MAX(PermissionRequest.revision))
        .where(PermissionRequest.account == account_id)
        .scalar()
    )
    if latest is None:
        return ()
    requests = list(
        requests_named()
        .where(
            (PermissionRequest.account == account_id)
            & (PermissionRequest.revision == latest)
            & PermissionRequest.status.in_(SHOWN)
        )
        .order_by(Category.sort_order, PermissionRequest.id)
    )
    tree = UnitTree()
    reaches = {r.id: reviewing_units(tree, r.unit_id, r.role) for r in requests}
    reached = {unit for reach in reaches.values() for unit in reach}
    # Every 管理者 grant in reach: (unit, category) → the accounts holding it, and which
    # of them are active (only they decide what is still under review).
    holders: dict[tuple[int, int], set[int]] = {}
    active: set[int] = set()
    grants = (
        PermissionRequest.select(
            PermissionRequest.unit, PermissionRequest.category, Account.id, Account.status
        )
        .join(Account, on=PermissionRequest.account == Account.id)
        .where(
            (PermissionRequest.status == RequestStatus.APPROVED)
            & (PermissionRequest.role == Role.ADMIN)
            & PermissionRequest.unit.in_(sorted(reached))
            & PermissionRequest.category.in_(sorted({r.category_id for r in requests}))
            & (PermissionRequest.account != account_id)
        )
    )
    for unit_id, category_id, holder_id, status in grants.tuples():
        holders.setdefault((unit_id, category_id), set()).add(holder_id)
        if status == AccountStatus.ACTIVE:
            active.add(holder_id)

    def deciding_unit(request: PermissionRequest) -> int | None:
        reach = reaches[request.id]
        decider = request.reviewer_id
        if decider is not None:
            # Decided: the unit the reviewer decided it as 管理者 of, as long as they still
            # hold that grant (otherwise who would decide it now).
            for unit in reach:
                if decider in holders.get((unit, request.category_id), ()):
                    return unit
        for unit in reach:
            if holders.get((unit, request.category_id), set()) & active:
                return unit
        return None

    deciders = {r.id: deciding_unit(r) for r in requests}
    names = dict(
        Unit.select(Unit.id, Unit.name)
        .where(Unit.id.in_(sorted({u for u in deciders.values() if u is not None})))
        .tuples()
    )
    option_names = OptionNames()
    return tuple(
        ApplicationStatusRow(
            request_id=r.id,
            category_name=r.category.name,
            category_name_en=r.category.name_en,
            role=Role(r.role),
            options=option_names.of(r.option_ids),
            unit_name=r.unit.name,
            status=RequestStatus(r.status),
            submitted_at=r.submitted_at,
            decided_at=r.decided_at,
            reason=r.reason if r.status == RequestStatus.REJECTED else "",
            deciding_unit_name=names.get(deciders[r.id]) if deciders[r.id] is not None else None,
        )
        for r in requests
    )
