"""審核: each category's administrators decide the requests in their scope.

Scope (DESIGN §3): a 管理者 of category C at the request's unit or any superior unit
may decide 承辦人/瀏覽者 requests for C; a 管理者 request needs a 管理者 of C at a
superior unit. Nobody decides their own requests. The first approval activates the
account. A request decided meanwhile by someone else is a conflict, never decided twice.
"""

from __future__ import annotations

import datetime as dt
import enum
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
from models.textfold import fold
from smis_tui.services.audit import AuditLog
from smis_tui.services.errors import (
    ConflictError,
    NotAllowed,
    NotFound,
    ServiceError,
    ValidationFailed,
)
from smis_tui.services.scope import OptionNames, UnitTree, admin_grants, may_review
from smis_tui.text import Phrase

REASON_MAX = 500
DEFAULT_PAGE_SIZE = 20
TAIWAN = dt.timedelta(hours=8)
"""Taiwan has no daylight saving time: UTC+8 all year."""


class Outcome(enum.StrEnum):
    """What became of one request of a decision."""

    DECIDED = "decided"
    CONFLICT = "conflict"  # decided (or withdrawn) meanwhile: not decided twice
    OUT_OF_SCOPE = "out_of_scope"  # not the reviewer's to decide (scope, own request)
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class OtherRequest:
    """Another request of the same applicant, still under review."""

    request_id: int
    unit_code: str
    unit_name: str
    category_code: str
    category_name: str
    category_name_en: str
    role: Role
    options: tuple[str, ...]
    submitted_at: dt.datetime

    @property
    def submitted_on(self) -> dt.date:
        """The day it was submitted, in Taiwan time (stored times are UTC)."""
        return (self.submitted_at + TAIWAN).date()


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
    category_name_en: str = ""
    # The applicant's other requests under review, in category order.
    other_pending: tuple[OtherRequest, ...] = ()

    @property
    def submitted_on(self) -> dt.date:
        """The day it was submitted, in Taiwan time (stored times are UTC)."""
        return (self.submitted_at + TAIWAN).date()


@dataclass(frozen=True)
class QueuePage:
    items: tuple[QueueItem, ...]
    page: int
    pages: int
    total: int
    page_size: int = DEFAULT_PAGE_SIZE


@dataclass(frozen=True)
class CategoryChoice:
    code: str
    name: str
    name_en: str


@dataclass(frozen=True)
class QueueFilters:
    """What the reviewer may filter by: the categories they administer and the
    counties of the units they reach."""

    categories: tuple[CategoryChoice, ...]
    counties: tuple[str, ...]

    @property
    def has_scope(self) -> bool:
        return bool(self.categories)


@dataclass
class BatchResult:
    """Per request: ``outcomes`` says what happened, ``failed`` holds the error (with
    its text key and parameters) of each request not decided."""

    decided: list[int] = field(default_factory=list)
    failed: dict[int, ServiceError] = field(default_factory=dict)
    outcomes: dict[int, Outcome] = field(default_factory=dict)

    def with_outcome(self, outcome: Outcome) -> list[int]:
        return [rid for rid, found in self.outcomes.items() if found == outcome]


def outcome_of(error: ServiceError) -> Outcome:
    if isinstance(error, ConflictError):
        return Outcome.CONFLICT
    if isinstance(error, NotFound):
        return Outcome.NOT_FOUND
    return Outcome.OUT_OF_SCOPE


class ReviewService:
    def __init__(self, audit: AuditLog) -> None:
        self.audit = audit

    def filters(self, reviewer_id: int) -> QueueFilters:
        """The categories the reviewer administers and the counties their units reach."""
        grants = admin_grants(reviewer_id)
        if not grants:
            return QueueFilters((), ())
        categories = tuple(
            CategoryChoice(c.code, c.name, c.name_en)
            for c in Category.select()
            .where(Category.id.in_({category for _, category in grants}))
            .order_by(Category.sort_order)
        )
        tree = UnitTree.loaded()
        roots = {unit for unit, _ in grants}
        reach = roots | tree.descendants(roots)
        counties: dict[str, int] = {}
        for unit_id, county, rank in Unit.select(Unit.id, Unit.county, Unit.county_rank).tuples():
            if unit_id in reach:
                counties[county] = min(rank, counties.get(county, rank))
        return QueueFilters(
            categories, tuple(sorted(counties, key=lambda name: (counties[name], name)))
        )

    def queue(
        self,
        reviewer_id: int,
        *,
        category: str | None = None,
        unit: str | None = None,
        unit_code: str | None = None,
        county: str | None = None,
        page: int = 1,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> QueuePage:
        """Pending requests the reviewer may decide, oldest first, one page of them.

        Filters: ``category`` (code), ``unit`` (the beginning of a 醫事機構代碼 or part
        of a unit's name, folded like the unit search), ``unit_code`` (exactly one unit),
        ``county``. ``page`` is clamped to the pages there are.
        """
        page_size = max(1, page_size)
        grants = admin_grants(reviewer_id)
        if not grants:
            return QueuePage((), 1, 1, 0, page_size)
        categories = {category_id for _, category_id in grants}
        # First only what the scope check needs, for every candidate; the page's rows
        # are read in full afterwards.
        query = (
            PermissionRequest.select(
                PermissionRequest.id,
                PermissionRequest.unit,
                PermissionRequest.category,
                PermissionRequest.role,
            )
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
        wanted_unit = fold(unit or "")
        if wanted_unit:
            query = query.where(
                Unit.code.startswith(wanted_unit.upper()) | Unit.search_key.contains(wanted_unit)
            )
        if county:
            query = query.where(Unit.county == county)
        tree = UnitTree.loaded()
        visible = [
            request_id
            for request_id, unit_id, category_id, role in query.tuples()
            if may_review(grants, tree, unit_id, category_id, role)
        ]
        pages = max(1, math.ceil(len(visible) / page_size))
        page = min(max(page, 1), pages)
        window = visible[(page - 1) * page_size : page * page_size]
        rows = (
            {
                r.id: r
                for r in PermissionRequest.select(PermissionRequest, Account, Unit, Category)
                .join(Account, on=PermissionRequest.account == Account.id)
                .switch(PermissionRequest)
                .join(Unit, on=PermissionRequest.unit == Unit.id)
                .switch(PermissionRequest)
                .join(Category)
                .where(PermissionRequest.id.in_(window))
            }
            if window
            else {}
        )
        option_names = OptionNames()
        others = self._other_pending({r.account_id for r in rows.values()}, option_names)
        items = []
        for request_id in window:
            r = rows.get(request_id)
            if r is None:
                continue  # deleted between the two reads
            items.append(
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
                    category_name_en=r.category.name_en,
                    role=Role(r.role),
                    options=option_names.of(r.option_ids),
                    submitted_at=r.submitted_at,
                    other_pending=tuple(
                        o for o in others.get(r.account_id, []) if o.request_id != r.id
                    ),
                )
            )
        return QueuePage(tuple(items), page, pages, len(visible), page_size)

    @staticmethod
    def _other_pending(
        account_ids: set[int], option_names: OptionNames
    ) -> dict[int, list[OtherRequest]]:
        found: dict[int, list[OtherRequest]] = {}
        if not account_ids:
            return found
        rows = (
            PermissionRequest.select(PermissionRequest, Category, Unit)
            .join(Category)
            .switch(PermissionRequest)
            .join(Unit, on=PermissionRequest.unit == Unit.id)
            .where(
                (PermissionRequest.account.in_(account_ids))
                & (PermissionRequest.status == RequestStatus.PENDING)
            )
            .order_by(Category.sort_order, PermissionRequest.id)
        )
        for r in rows:
            found.setdefault(r.account_id, []).append(
                OtherRequest(
                    request_id=r.id,
                    unit_code=r.unit.code,
                    unit_name=r.unit.name,
                    category_code=r.category.code,
                    category_name=r.category.name,
                    category_name_en=r.category.name_en,
                    role=Role(r.role),
                    options=option_names.of(r.option_ids),
                    submitted_at=r.submitted_at,
                )
            )
        return found

    def approve(self, reviewer_id: int, request_id: int) -> None:
        retrying(lambda: self._decide(reviewer_id, request_id, True, ""))

    def reject(self, reviewer_id: int, request_id: int, reason: str) -> None:
        clean = self._clean_reason(reason)
        retrying(lambda: self._decide(reviewer_id, request_id, False, clean))

    def decide_many(
        self, reviewer_id: int, request_ids: list[int], approve: bool, reason: str = ""
    ) -> BatchResult:
        """Decide a selection; each request in its own transaction, so one conflict does
        not undo the others. Every request gets an :class:`Outcome`; each one not
        decided keeps its error too. A rejection without a valid reason decides none
        (:class:`ValidationFailed`)."""
        clean = "" if approve else self._clean_reason(reason)
        result = BatchResult()
        for request_id in dict.fromkeys(request_ids):
            try:
                retrying(partial(self._decide, reviewer_id, request_id, approve, clean))
            except ServiceError as exc:
                result.failed[request_id] = exc
                result.outcomes[request_id] = outcome_of(exc)
            else:
                result.decided.append(request_id)
                result.outcomes[request_id] = Outcome.DECIDED
        return result

    @staticmethod
    def _clean_reason(reason: str) -> str:
        clean = reason.strip()
        if (
            not clean
            or len(clean) > REASON_MAX
            or any(unicodedata.category(ch) in ("Cc", "Cf") for ch in clean)
        ):
            raise ValidationFailed({"reason": Phrase("error.reject_reason")})
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
