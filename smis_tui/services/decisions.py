"""What was decided about an account's permissions, for its holder: each approval,
rejection (未通過, with the reason) and withdrawal (已停用, with the reason), and the
unit whose 管理者 decided it. Read only as part of the account's own view
(:meth:`smis_tui.services.accounts.AccountService.view`), which the screens ask for
with the logged-in account alone.

Which unit decided is not stored: a decision stores its 管理者 (``reviewer``), and the
unit is the nearest one in the decision's reach (:func:`reviewing_units` for a review,
the units above the account for a withdrawal) where that 管理者 holds, or held, a
管理者 grant of the category — the grant the decision was made under, as
:mod:`smis_tui.services.application_status` names it. A grant since withdrawn still
names its unit, so a decision keeps its unit when its 管理者 moves on. Failing that,
the 管理者's own unit when it is in reach (a 疾管署 管理者 disabling a whole
account), or no unit at all.

A withdrawal made before this was read kept, for a whole account disabled from above,
the permission's approver as its ``reviewer``: such a row names the approver's unit
when the approver held a grant above the account, and none otherwise.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from models.schema import Account, PermissionRequest, Unit
from smis_tui.core.domain import (
    REVIEW_DEFAULT_CAUSE,
    DecisionBy,
    DisabledReason,
    RequestStatus,
    Role,
)
from smis_tui.services.scope import OptionNames, UnitTree, requests_named, reviewing_units

# A decision the holder is told of. A request superseded (replaced by a newer one, or
# taken back by its holder) was decided by nobody.
DECIDED = (RequestStatus.APPROVED, RequestStatus.REJECTED, RequestStatus.REVOKED)


@dataclass(frozen=True)
class Decision:
    request_id: int
    category_name: str
    category_name_en: str
    category_order: int
    role: Role
    options: tuple[str, ...]
    unit_name: str
    """The unit the permission was asked for at."""
    status: RequestStatus
    """APPROVED (still in force), REJECTED (未通過) or REVOKED (已停用)."""
    decided_at: dt.datetime
    by: DecisionBy
    reason: str
    """The 管理者's reason for a rejection or a withdrawal ("" otherwise): text a
    person typed, never markup."""
    deciding_unit_name: str | None
    """The unit whose 管理者 decided (None: not by a 管理者, or not known)."""


def _decided_by(request: PermissionRequest) -> DecisionBy:
    if request.status != RequestStatus.REVOKED:
        return DecisionBy.ADMIN
    # Withdrawn without a 管理者, the reason holds the cause's code (a 管理者's reason
    # is required, and is a sentence).
    if request.reason == DisabledReason.INACTIVE:
        return DecisionBy.INACTIVE
    if request.reason in (DisabledReason.SELF, "deleted"):
        return DecisionBy.SELF
    if request.reason == REVIEW_DEFAULT_CAUSE and request.reviewer_id is None:
        return DecisionBy.REVIEW
    return DecisionBy.ADMIN


def decisions_of(account_id: int) -> tuple[Decision, ...]:
    """Every decision about ``account_id``'s permissions, newest first."""
    requests = list(
        requests_named().where(
            (PermissionRequest.account == account_id)
            & PermissionRequest.status.in_(DECIDED)
            & PermissionRequest.decided_at.is_null(False)
        )
    )
    return decisions_among(requests, UnitTree()).get(account_id, ())


def decisions_among(
    requests: Iterable[PermissionRequest],
    tree: UnitTree,
    option_names: OptionNames | None = None,
) -> dict[int, tuple[Decision, ...]]:
    """The decisions among ``requests`` (read with their category and unit, of any
    accounts, in any status), by account, newest first: what :func:`decisions_of`
    tells a holder, for many accounts at once (審核 shows a page of applicants'). The
    units are looked up in ``tree``, sub-options named by ``option_names`` (the
    caller's, when it has read them already); the grants and the units' names take at
    most three statements, whatever the number of accounts."""
    requests = sorted(
        (r for r in requests if r.status in DECIDED and r.decided_at is not None),
        key=lambda r: (r.decided_at, r.id),
        reverse=True,
    )
    by = {r.id: _decided_by(r) for r in requests}
    deciders = {
        r.id: r.reviewer_id
        for r in requests
        if by[r.id] == DecisionBy.ADMIN and r.reviewer_id not in (None, r.account_id)
    }
    reaches = {
        r.id: (
            tree.ancestors(r.unit_id)
            if r.status == RequestStatus.REVOKED
            else reviewing_units(tree, r.unit_id, r.role)
        )
        for r in requests
        if r.id in deciders
    }
    held = _admin_grants_held(
        set(deciders.values()),
        {unit for reach in reaches.values() for unit in reach},
        {r.category_id for r in requests},
    )

    def held_unit(request: PermissionRequest) -> int | None:
        decider = deciders[request.id]
        for unit in reaches[request.id]:
            if (decider, unit, request.category_id) in held:
                return unit
        return None

    units = {r.id: held_unit(r) if r.id in deciders else None for r in requests}
    # A 疾管署 (CDC) 管理者 disables a whole account without a grant of each category:
    # their own unit, when it is in reach (read only for such decisions). Otherwise no
    # unit is named rather than a wrong one.
    unplaced = {deciders[r] for r, unit in units.items() if unit is None and r in deciders}
    if unplaced:
        own_units = dict(
            Account.select(Account.id, Account.unit)
            .where(Account.id.in_(sorted(unplaced)))
            .tuples()
        )
        for request_id, unit in units.items():
            if unit is None and request_id in deciders:
                own = own_units.get(deciders[request_id])
                units[request_id] = own if own in reaches[request_id] else None
    named = sorted({u for u in units.values() if u is not None})
    names = (
        dict(Unit.select(Unit.id, Unit.name).where(Unit.id.in_(named)).tuples()) if named else {}
    )
    option_names = option_names or OptionNames()
    found: dict[int, list[Decision]] = {}
    for r in requests:
        found.setdefault(r.account_id, []).append(
            Decision(
                request_id=r.id,
                category_name=r.category.name,
                category_name_en=r.category.name_en,
                category_order=r.category.sort_order,
                role=Role(r.role),
                options=option_names.of(r.option_ids),
                unit_name=r.unit.name,
                status=RequestStatus(r.status),
                decided_at=r.decided_at,
                by=by[r.id],
                # An approval's reason field holds no reason (the installation's own
                # grants say "bootstrap" there).
                reason=r.reason
                if by[r.id] == DecisionBy.ADMIN and r.status != RequestStatus.APPROVED
                else "",
                deciding_unit_name=names.get(units[r.id]) if units[r.id] is not None else None,
            )
        )
    return {account: tuple(decisions) for account, decisions in found.items()}


def _admin_grants_held(
    accounts: set[int], units: set[int], categories: set[int]
) -> set[tuple[int, int, int]]:
    """(account, unit, category) of every 管理者 grant ``accounts`` hold or held there:
    approved, since withdrawn, or since replaced (a superseded request that a 管理者
    had approved; one superseded while under review was never held)."""
    if not accounts or not units:
        return set()
    held = (
        (PermissionRequest.status == RequestStatus.APPROVED)
        | (PermissionRequest.status == RequestStatus.REVOKED)
        | (
            (PermissionRequest.status == RequestStatus.SUPERSEDED)
            & PermissionRequest.reviewer.is_null(False)
        )
    )
    rows = PermissionRequest.select(
        PermissionRequest.account, PermissionRequest.unit, PermissionRequest.category
    ).where(
        PermissionRequest.account.in_(sorted(accounts))
        & PermissionRequest.unit.in_(sorted(units))
        & PermissionRequest.category.in_(sorted(categories))
        & (PermissionRequest.role == Role.ADMIN)
        & held
    )
    return set(rows.tuples())
