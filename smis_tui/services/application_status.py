"""Where an application stands, for its applicant: each request of the latest application
with its status and the unit whose 管理者 decides it (the one walk,
:func:`smis_tui.services.scope.deciding_units`, that 審核 shares). Who may read it is
the account service's question
(:meth:`smis_tui.services.accounts.AccountService.application_status`): only the card
bound to the account."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from peewee import fn

from models.schema import Category, PermissionRequest
from smis_tui.core.domain import RequestStatus, Role
from smis_tui.services.scope import OptionNames, UnitTree, deciding_units, requests_named

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
    nearest one in reach with an active 管理者 of the category whose grant covers it.
    None while nobody there could decide it."""


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
    deciders = deciding_units(requests, UnitTree())
    names = {request: unit.name for request, unit in deciders.items() if unit is not None}
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
            deciding_unit_name=names.get(r.id),
        )
        for r in requests
    )
