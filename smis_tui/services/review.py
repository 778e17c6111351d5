"""審核: each category's administrators decide the requests in their scope.

Scope (DESIGN §3): a 管理者 of category C at the request's unit or any superior unit
may decide 承辦人/瀏覽者 requests for C; a 管理者 request needs a 管理者 of C at a
superior unit. Nobody decides their own requests. The first approval activates the
account. A request decided meanwhile by someone else is a conflict, never decided twice.
"""

from __future__ import annotations

import datetime as dt
import math
import unicodedata
from dataclasses import dataclass, field
from functools import partial

from models.db import retrying, write_transaction
from models.schema import (
    Account,
    AccountStatus,
    Category,
    PermissionRequest,
    RequestStatus,
    Role,
    Unit,
    utcnow,
)
from smis_tui.services.audit import AuditLog
from smis_tui.services.errors import (
    ConflictError,
    NotAllowed,
    NotFound,
    ServiceError,
    ValidationFailed,
)
from smis_tui.services.scope import OptionNames, UnitTree, admin_grants, may_review
from smis_tui.text import t

REASON_MAX = 500


@dataclass(frozen=True)
class QueueItem:
    request_id: int
    account_id: int
    applicant_name: str
    masked_id: str
    unit_code: str
    unit_name: str
    county: str
    category_code: str
    category_name: str
    role: Role
    options: tuple[str, ...]
    submitted_at: dt.datetime
    # The applicant's other requests under review: (category name, role).
    other_pending: tuple[tuple[str, Role], ...] = ()


@dataclass(frozen=True)
class QueuePage:
    items: tuple[QueueItem, ...]
    page: int
    pages: int
    total: int


@dataclass
class BatchResult:
    decided: list[int] = field(default_factory=list)
    failed: dict[int, ServiceError] = field(default_factory=dict)


class ReviewService:
    def __init__(self, audit: AuditLog) -> None:
        self.audit = audit

    def queue(
        self,
        reviewer_id: int,
        *,
        category: str | None = None,
        unit_code: str | None = None,
        county: str | None = None,
        page: int = 1,
        page_size: int = 20,
    ) -> QueuePage:
        """Pending requests the reviewer may decide, oldest first."""
        grants = admin_grants(reviewer_id)
        if not grants:
            return QueuePage((), 1, 1, 0)
        categories = {category_id for _, category_id in grants}
        query = (
            PermissionRequest.select(PermissionRequest, Account, Unit, Category)
            .join(Account, on=PermissionRequest.account == Account.id)
            .switch(PermissionRequest)
            .join(Unit, on=PermissionRequest.unit == Unit.id)
            .switch(PermissionRequest)
            .join(Category)
            .where(
                (PermissionRequest.status == RequestStatus.PENDING)
                & (PermissionRequest.category.in_(categories))
                & (PermissionRequest.account != reviewer_id)
            )
            .order_by(PermissionRequest.submitted_at, PermissionRequest.id)
        )
        if category:
            query = query.where(Category.code == category)
        if unit_code:
            query = query.where(Unit.code == unit_code)
        if county:
            query = query.where(Unit.county == county)
        tree = UnitTree()
        visible = [r for r in query if may_review(grants, tree, r.unit_id, r.category_id, r.role)]
        pages = max(1, math.ceil(len(visible) / page_size))
        page = min(max(page, 1), pages)
        window = visible[(page - 1) * page_size : page * page_size]
        option_names = OptionNames()
        others = self._other_pending({r.account_id for r in window})
        return QueuePage(
            tuple(
                QueueItem(
                    request_id=r.id,
                    account_id=r.account_id,
                    applicant_name=r.account.name,
                    masked_id=r.account.person_id_masked,
                    unit_code=r.unit.code,
                    unit_name=r.unit.name,
                    county=r.unit.county,
                    category_code=r.category.code,
                    category_name=r.category.name,
                    role=Role(r.role),
                    options=option_names.of(r.option_ids),
                    submitted_at=r.submitted_at,
                    other_pending=tuple(
                        o for rid, o in others.get(r.account_id, []) if rid != r.id
                    ),
                )
                for r in window
            ),
            page,
            pages,
            len(visible),
        )

    @staticmethod
    def _other_pending(account_ids: set[int]) -> dict[int, list[tuple[int, tuple[str, Role]]]]:
        found: dict[int, list[tuple[int, tuple[str, Role]]]] = {}
        if not account_ids:
            return found
        rows = (
            PermissionRequest.select(PermissionRequest, Category)
            .join(Category)
            .where(
                (PermissionRequest.account.in_(account_ids))
                & (PermissionRequest.status == RequestStatus.PENDING)
            )
            .order_by(Category.sort_order)
        )
        for r in rows:
            found.setdefault(r.account_id, []).append((r.id, (r.category.name, Role(r.role))))
        return found

    def approve(self, reviewer_id: int, request_id: int) -> None:
        retrying(lambda: self._decide(reviewer_id, request_id, True, ""))

    def reject(self, reviewer_id: int, request_id: int, reason: str) -> None:
        clean = self._clean_reason(reason)
        retrying(lambda: self._decide(reviewer_id, request_id, False, clean))

    def decide_many(
        self, reviewer_id: int, request_ids: list[int], approve: bool, reason: str = ""
    ) -> BatchResult:
        """Decide a selection; each request on its own, so one conflict does not undo
        the others. Every failure is reported with its request id."""
        clean = "" if approve else self._clean_reason(reason)
        result = BatchResult()
        for request_id in request_ids:
            try:
                retrying(partial(self._decide, reviewer_id, request_id, approve, clean))
            except ServiceError as exc:
                result.failed[request_id] = exc
            else:
                result.decided.append(request_id)
        return result

    @staticmethod
    def _clean_reason(reason: str) -> str:
        clean = reason.strip()
        if (
            not clean
            or len(clean) > REASON_MAX
            or any(unicodedata.category(ch) in ("Cc", "Cf") for ch in clean)
        ):
            raise ValidationFailed({"reason": t("error.reject_reason")})
        return clean

    def _decide(self, reviewer_id: int, request_id: int, approve: bool, reason: str) -> None:
        with write_transaction():
            request = PermissionRequest.get_or_none(PermissionRequest.id == request_id)
            if request is None:
                raise NotFound("error.request_not_found", request=request_id)
            reviewer = Account.get_or_none(Account.id == reviewer_id)
            if reviewer is None or reviewer.status != AccountStatus.ACTIVE:
                raise NotAllowed("error.not_permitted")
            if request.account_id == reviewer_id:
                raise NotAllowed("error.review_own", request=request_id)
            if not may_review(
                admin_grants(reviewer_id),
                UnitTree(),
                request.unit_id,
                request.category_id,
                request.role,
            ):
                raise NotAllowed("error.review_scope", request=request_id)
            now = utcnow()
            new_status = RequestStatus.APPROVED if approve else RequestStatus.REJECTED
            changed = (
                PermissionRequest.update(
                    status=new_status, decided_at=now, reviewer=reviewer_id, reason=reason
                )
                .where(
                    (PermissionRequest.id == request_id)
                    & (PermissionRequest.status == RequestStatus.PENDING)
                )
                .execute()
            )
            if changed != 1:
                current = PermissionRequest.get_by_id(request_id).status
                raise ConflictError("error.conflict_request", request=request_id, status=current)
            account = Account.get_by_id(request.account_id)
            if approve:
                # The new grant replaces an earlier one in the same category.
                PermissionRequest.update(status=RequestStatus.SUPERSEDED, decided_at=now).where(
                    (PermissionRequest.account == account.id)
                    & (PermissionRequest.category == request.category_id)
                    & (PermissionRequest.status == RequestStatus.APPROVED)
                    & (PermissionRequest.id != request_id)
                ).execute()
            # Every decision changes the application: a form opened before it is stale.
            changes: dict[object, object] = {
                Account.version: Account.version + 1,
                Account.updated_at: now,
            }
            if approve and account.status == AccountStatus.PENDING:
                changes.update(
                    {
                        Account.status: AccountStatus.ACTIVE,
                        Account.activated_at: now,
                        Account.disabled_reason: None,
                    }
                )
            Account.update(changes).where(Account.id == account.id).execute()
            self.audit.record(
                "approve_request" if approve else "reject_request",
                actor=reviewer,
                target_type="permission",
                target_id=request_id,
                unit=request.unit_id,
                details={
                    "account": account.id,
                    "category": request.category_id,
                    "role": request.role,
                    "reason": reason,
                },
            )
