"""審核: each category's administrators decide the requests in their scope.

Scope (docs/architecture.md, "Lifecycle"): a 管理者 of category C at the request's unit or any superior unit
may decide 承辦人/瀏覽者 requests for C; a 管理者 request needs a 管理者 of C at a
superior unit. Nobody decides their own requests. The first approval activates the
account. A request decided meanwhile by someone else is a conflict, never decided twice.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from models.db import locked, retrying, write_transaction
from models.schema import Account, AuditEvent, Category, PermissionRequest, Unit, utcnow
from models.textfold import fold
from smis_tui.core.clock import taiwan_date
from smis_tui.core.domain import AccountStatus, RequestStatus, Role, UnitKind
from smis_tui.services import prepared
from smis_tui.services.accounts import APPLICATION_ACTIONS
from smis_tui.services.audit import AuditLog
from smis_tui.services.decisions import Decision, decisions_among
from smis_tui.services.errors import (
    ConflictError,
    NotAllowed,
    NotFound,
    ServiceError,
    clean_reason,
)
from smis_tui.services.paging import Paged, page_bounds, page_offset
from smis_tui.services.prepared import slot
from smis_tui.services.scope import (
    DecidingUnit,
    OptionLimits,
    OptionNames,
    UnitTree,
    active_actor,
    admin_grants,
    admin_scope,
    deciding_units,
    decision_scope,
    grants_of,
    may_review,
    requests_named,
)

DEFAULT_PAGE_SIZE = 20


class Outcome(enum.StrEnum):
    """What became of one request of a decision."""

    DECIDED = "decided"
    CONFLICT = "conflict"  # decided (or withdrawn) meanwhile: not decided twice
    OUT_OF_SCOPE = "out_of_scope"  # not the reviewer's to decide (scope, own request)
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class HeldRole:
    """A role the applicant holds now in a request's category: what approving the
    request replaces (one grant per category, wherever its unit)."""

    role: Role
    options: tuple[str, ...]
    unit_code: str
    unit_name: str


@dataclass(frozen=True, kw_only=True)
class RequestSummary:
    """What a reviewer reads of one request under review."""

    request_id: int
    unit_code: str
    unit_name: str
    category_code: str
    category_name: str
    category_name_en: str
    role: Role
    options: tuple[str, ...]
    submitted_at: dt.datetime
    # The applicant's roles in the category now: "current → requested" (none: 無).
    current: tuple[HeldRole, ...] = ()

    @property
    def submitted_on(self) -> dt.date:
        """The day it was submitted, in Taiwan time (stored times are UTC)."""
        return taiwan_date(self.submitted_at)

    def waited_days(self, today: dt.date) -> int:
        """How many calendar days it has waited by ``today`` (a Taiwan date): 0 on the
        day it was sent, 1 the day after, whatever the hours."""
        return max(0, (today - self.submitted_on).days)


def _summary(
    row: PermissionRequest, option_names: OptionNames, held: Sequence[PermissionRequest] = ()
) -> dict[str, Any]:
    """The :class:`RequestSummary` fields of a request read with its unit and category;
    ``held``: the applicant's granted requests of its category."""
    return {
        "request_id": row.id,
        "unit_code": row.unit.code,
        "unit_name": row.unit.name,
        "category_code": row.category.code,
        "category_name": row.category.name,
        "category_name_en": row.category.name_en,
        "role": Role(row.role),
        "options": option_names.of(row.option_ids),
        "submitted_at": row.submitted_at,
        "current": tuple(
            HeldRole(Role(g.role), option_names.of(g.option_ids), g.unit.code, g.unit.name)
            for g in held
        ),
    }


class DeciderPlace(enum.StrEnum):
    """Where the 管理者 who decide a request sit, seen from the request."""

    CDC = "cdc"  # 疾管署
    SUPERIOR = "superior"  # a unit above the request's unit
    UNIT = "unit"  # the request's own unit (承辦人 / 瀏覽者 requests)
    NOBODY = "nobody"  # no active 管理者 in reach covers it yet


@dataclass(frozen=True)
class Decider:
    """Who decides a request the reviewer may not (scope.deciding_units)."""

    place: DeciderPlace
    unit_name: str = ""


def _decider(request: PermissionRequest, unit: DecidingUnit | None) -> Decider:
    if unit is None:
        return Decider(DeciderPlace.NOBODY)
    if unit.kind == UnitKind.CDC:
        return Decider(DeciderPlace.CDC, unit.name)
    if unit.id == request.unit_id:
        return Decider(DeciderPlace.UNIT, unit.name)
    return Decider(DeciderPlace.SUPERIOR, unit.name)


@dataclass(frozen=True, kw_only=True)
class OtherRequest(RequestSummary):
    """Another request of the same applicant, still under review."""

    # None: the reviewer decides it too; otherwise who does.
    decider: Decider | None = None


@dataclass(frozen=True)
class Contact:
    """The applicant's contact details as the account stores them ("" when not given)."""

    phone: str
    phone_backup: str
    mobile: str
    email: str
    email_backup: str


@dataclass(frozen=True)
class ApplicationCard:
    """The card that proved the applicant's identity when the application was sent,
    and how it matched (smis_tui.services.card_proof.CardMatch): approving confirms
    the identity it stands for."""

    kind: str
    cert_sha256: str
    match: str


@dataclass(frozen=True, kw_only=True)
class QueueItem(RequestSummary):
    account_id: int
    applicant_name: str
    masked_id: str
    county: str
    # The applicant's other requests under review, in category order.
    other_pending: tuple[OtherRequest, ...] = ()
    # None: sent before applications went with a card.
    card: ApplicationCard | None = None
    contact: Contact | None = None
    # What was decided about the applicant's permissions before, newest first:
    # approvals in force, refusals and withdrawals with their reasons.
    decisions: tuple[Decision, ...] = ()


def application_cards(account_ids: set[int]) -> dict[int, ApplicationCard | None]:
    """Per account, the card of its latest application (apply, reapply, update)."""
    found: dict[int, ApplicationCard | None] = {}
    if not account_ids:
        return found
    accounts = sorted(account_ids)
    events = prepared.run(
        f"application_cards:{len(accounts)}",
        # An application's audit row has the applicant as its actor (an indexed column).
        AuditEvent.select(AuditEvent.actor, AuditEvent.details)
        .where(
            AuditEvent.actor.in_([slot(i) for i in range(len(accounts))])
            & AuditEvent.action.in_(APPLICATION_ACTIONS)
        )
        .order_by(AuditEvent.id.desc()),
        accounts,
    )
    for event in events:
        account_id = int(event.actor_id)
        if account_id in found:
            continue
        card = json.loads(event.details or "{}").get("card")
        found[account_id] = (
            ApplicationCard(str(card["kind"]), str(card["cert_sha256"]), str(card["match"]))
            if isinstance(card, dict)
            else None
        )
    return found


@dataclass(frozen=True)
class QueuePage(Paged):
    items: tuple[QueueItem, ...]


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


def _stored_time(moment: dt.datetime) -> object:
    """A time as the request's time columns store it (the field's own conversion)."""
    return PermissionRequest.decided_at.db_value(moment)


def _request_by_id() -> Any:
    return PermissionRequest.select().where(PermissionRequest.id == slot(0)).limit(1)


def _had_authority(reviewer_id: int, branch: UnitTree, request: PermissionRequest) -> bool:
    """Would the reviewer's 管理者 grants that were withdrawn or replaced have covered
    ``request``? Then it is their own authority that changed, and they are told so."""
    rows = (
        PermissionRequest.select(
            PermissionRequest.unit, PermissionRequest.category, PermissionRequest.option_ids
        )
        .where(
            (PermissionRequest.account == reviewer_id)
            & (PermissionRequest.role == Role.ADMIN)
            & (PermissionRequest.category == request.category_id)
            & PermissionRequest.status.in_([RequestStatus.REVOKED, RequestStatus.SUPERSEDED])
        )
        .tuples()
    )
    grants, limits = grants_of(rows)
    return _may_decide(grants, limits, branch, request)


def _may_decide(
    grants: set[tuple[int, int]], limits: OptionLimits, branch: UnitTree, request: PermissionRequest
) -> bool:
    """:func:`may_review` for a request row as read."""
    return may_review(
        grants,
        branch,
        request.unit_id,
        request.category_id,
        request.role,
        request.option_ids,
        limits,
    )


class _Scope:
    """One reviewer's 管理者 grants and the unit tree, for one listing of the queue."""

    def __init__(self, grants: set[tuple[int, int]], limits: OptionLimits, tree: UnitTree) -> None:
        self.grants = grants
        self.limits = limits
        self.tree = tree

    @classmethod
    def of(cls, reviewer_id: int) -> _Scope | None:
        """The reviewer's scope; None when they administer nothing (or are not active)."""
        grants, limits = admin_scope(reviewer_id)
        if not grants:
            return None
        return cls(grants, limits, UnitTree.loaded())

    def decides(self, row: PermissionRequest) -> bool:
        return _may_decide(self.grants, self.limits, self.tree, row)

    def visible(
        self,
        reviewer_id: int,
        *,
        category: str | None,
        unit: str | None,
        unit_code: str | None,
        county: str | None,
        account_id: int | None = None,
    ) -> list[tuple[int, int]]:
        """(request id, account id) of every pending request in scope, oldest first."""
        categories = sorted({category_id for _, category_id in self.grants})
        # First only what the scope check needs, for every candidate; the page's rows
        # are read in full afterwards. The reviewer and the categories are slots: the
        # SQL is built once per number of categories (prepared), unless filtered.
        query = (
            requests_named()
            .select(
                PermissionRequest.id,
                PermissionRequest.unit,
                PermissionRequest.category,
                PermissionRequest.role,
                PermissionRequest.account,
                PermissionRequest.option_ids,
            )
            .where(
                (PermissionRequest.status == RequestStatus.PENDING)
                & (PermissionRequest.category.in_([slot(i) for i in range(len(categories))]))
                & (PermissionRequest.account != slot(len(categories)))
            )
            .order_by(PermissionRequest.submitted_at, PermissionRequest.id)
            .tuples()
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
        if account_id is not None:
            query = query.where(PermissionRequest.account == account_id)
        filtered = bool(category or unit_code or wanted_unit or county or account_id is not None)
        candidates = prepared.run(
            None if filtered else f"queue_candidates:{len(categories)}",
            query,
            (*categories, reviewer_id),
        )
        return [
            (request_id, owner)
            for request_id, unit_id, category_id, role, owner, option_ids in candidates
            if may_review(
                self.grants, self.tree, unit_id, category_id, role, option_ids, self.limits
            )
        ]

    def items(self, window: list[tuple[int, int]]) -> tuple[QueueItem, ...]:
        """The :class:`QueueItem` of each request in ``window`` (request id, account id),
        in its order. One read for the requests and everything their applicants asked
        for, hold and were refused (no superseded history), then one statement each for
        the application cards, the deciders of the requests the reviewer may not decide
        and the units of the earlier decisions: never one per applicant."""
        if not window:
            return ()
        ids = [request_id for request_id, _ in window]
        owners = sorted({account_id for _, account_id in window})
        named = list(
            prepared.run(
                f"queue_page:{len(ids)}:{len(owners)}",
                requests_named()
                .select_extend(Account)
                .switch(PermissionRequest)
                .join(Account, on=PermissionRequest.account == Account.id)
                .where(
                    PermissionRequest.id.in_([slot(i) for i in range(len(ids))])
                    | (
                        PermissionRequest.account.in_(
                            [slot(len(ids) + i) for i in range(len(owners))]
                        )
                        & (PermissionRequest.status != RequestStatus.SUPERSEDED)
                    )
                )
                .order_by(Category.sort_order, PermissionRequest.id),
                (*ids, *owners),
            )
        )
        wanted = set(ids)
        # The page's rows, whatever their status now (None: deleted between the reads).
        rows = {r.id: r for r in named if r.id in wanted}
        shown = {r.account_id for r in rows.values()}
        history = [r for r in named if r.account_id in shown]
        held: dict[tuple[int, int], list[PermissionRequest]] = {}
        pending: dict[int, list[PermissionRequest]] = {}
        for r in history:
            if r.status == RequestStatus.APPROVED:
                held.setdefault((r.account_id, r.category_id), []).append(r)
            elif r.status == RequestStatus.PENDING:
                pending.setdefault(r.account_id, []).append(r)
        option_names = OptionNames()
        undecided = [r for rs in pending.values() for r in rs if not self.decides(r)]
        deciders = deciding_units(undecided, self.tree)
        decisions = decisions_among(history, self.tree, option_names)
        cards = application_cards(shown)

        def summary(r: PermissionRequest) -> dict[str, Any]:
            return _summary(r, option_names, held.get((r.account_id, r.category_id), ()))

        others = {
            account_id: [
                OtherRequest(
                    **summary(r),
                    decider=_decider(r, deciders[r.id]) if r.id in deciders else None,
                )
                for r in requests
            ]
            for account_id, requests in pending.items()
        }
        return tuple(
            QueueItem(
                **summary(r),
                account_id=r.account_id,
                applicant_name=r.account.name,
                masked_id=r.account.person_id_masked,
                county=r.unit.county,
                other_pending=tuple(
                    o for o in others.get(r.account_id, []) if o.request_id != r.id
                ),
                card=cards.get(r.account_id),
                contact=Contact(
                    phone=r.account.phone,
                    phone_backup=r.account.phone_backup,
                    mobile=r.account.mobile,
                    email=r.account.email,
                    email_backup=r.account.email_backup,
                ),
                decisions=decisions.get(r.account_id, ()),
            )
            for r in (rows.get(request_id) for request_id in ids)
            if r is not None
        )


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
        ``county``. ``page`` is clamped to the pages there are. Each item carries what
        the reviewer needs to decide it (:class:`QueueItem`), read for the whole page in
        a fixed number of statements, however many applicants it shows.
        """
        page_size = max(1, page_size)
        scope = _Scope.of(reviewer_id)
        if scope is None:
            return QueuePage((), page=1, pages=1, total=0, page_size=page_size)
        visible = scope.visible(
            reviewer_id, category=category, unit=unit, unit_code=unit_code, county=county
        )
        page, pages = page_bounds(page, len(visible), page_size)
        start = page_offset(page, page_size)
        items = scope.items(visible[start : start + page_size])
        return QueuePage(items, page=page, pages=pages, total=len(visible), page_size=page_size)

    def applicant_requests(
        self,
        reviewer_id: int,
        account_id: int,
        *,
        category: str | None = None,
        unit: str | None = None,
        unit_code: str | None = None,
        county: str | None = None,
    ) -> tuple[QueueItem, ...]:
        """Every request of the applicant ``account_id`` in the reviewer's queue (with
        :meth:`queue`'s filters), on whichever page, oldest first: what 選取此申請人
        selects."""
        scope = _Scope.of(reviewer_id)
        if scope is None:
            return ()
        return scope.items(
            scope.visible(
                reviewer_id,
                category=category,
                unit=unit,
                unit_code=unit_code,
                county=county,
                account_id=account_id,
            )
        )

    def approve(self, reviewer_id: int, request_id: int) -> None:
        retrying(lambda: self._decide(reviewer_id, request_id, True, ""))

    def reject(self, reviewer_id: int, request_id: int, reason: str) -> None:
        clean = clean_reason(reason)
        retrying(lambda: self._decide(reviewer_id, request_id, False, clean))

    def decide_many(
        self, reviewer_id: int, request_ids: list[int], approve: bool, reason: str = ""
    ) -> BatchResult:
        """Decide a selection; each request in its own transaction, so one conflict does
        not undo the others. Every request gets an :class:`Outcome`; each one not
        decided keeps its error too. A rejection without a valid reason decides none
        (:class:`ValidationFailed`)."""
        clean = "" if approve else clean_reason(reason)
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

    def _decide(self, reviewer_id: int, request_id: int, approve: bool, reason: str) -> None:
        with write_transaction():
            request = prepared.first("request_by_id", _request_by_id(), (request_id,))
            if request is None:
                raise NotFound("error.request_not_found", request=request_id)
            reviewer = active_actor(reviewer_id)
            # The applicant's account first, as every change of it does, then the
            # request as it is now.
            applicant = prepared.get(
                "account_by_id",
                locked(Account.select().where(Account.id == slot(0)).limit(1)),
                (request.account_id,),
            )
            request = prepared.get("request_by_id", _request_by_id(), (request_id,))
            if request.account_id == reviewer_id:
                raise NotAllowed("error.review_own", request=request_id)
            grants, limits, branch = decision_scope(reviewer_id, request.unit_id)
            if not _may_decide(grants, limits, branch, request):
                if _had_authority(reviewer_id, branch, request):
                    raise NotAllowed("error.review_scope_own_changed", request=request_id)
                raise NotAllowed("error.review_scope", request=request_id)
            now = utcnow()
            new_status = RequestStatus.APPROVED if approve else RequestStatus.REJECTED
            # Plain values in slots (a status, a time, ids, text): SQL built once.
            changed = prepared.rows_changed(
                "decide_request",
                PermissionRequest.update(
                    status=slot(0), decided_at=slot(1), reviewer=slot(2), reason=slot(3)
                ).where(
                    (PermissionRequest.id == slot(4))
                    & (PermissionRequest.status == RequestStatus.PENDING)
                ),
                (str(new_status), _stored_time(now), reviewer_id, reason, request_id),
            )
            if changed != 1:
                current = PermissionRequest.get_by_id(request_id).status
                raise ConflictError("error.conflict_request", request=request_id, status=current)
            # The row locked above: nothing else may change it until the commit.
            account = (
                applicant
                if applicant.id == request.account_id
                else Account.get_by_id(request.account_id)
            )
            if approve:
                # The new grant replaces an earlier one in the same category.
                prepared.rows_changed(
                    "supersede_grant",
                    PermissionRequest.update(
                        status=RequestStatus.SUPERSEDED, decided_at=slot(0)
                    ).where(
                        (PermissionRequest.account == slot(1))
                        & (PermissionRequest.category == slot(2))
                        & (PermissionRequest.status == RequestStatus.APPROVED)
                        & (PermissionRequest.id != slot(3))
                    ),
                    (_stored_time(now), account.id, request.category_id, request_id),
                )
            # Every decision changes the application: a form opened before it is stale.
            # Slot 0 is the time, slot 1 the account: two shapes, each built once.
            changes: dict[object, object] = {
                Account.version: Account.version + 1,
                Account.updated_at: slot(0),
            }
            activates = approve and account.status == AccountStatus.PENDING
            if activates:
                changes.update(
                    {
                        Account.status: AccountStatus.ACTIVE,
                        Account.activated_at: slot(0),
                        Account.disabled_reason: None,
                    }
                )
            prepared.rows_changed(
                "decide_account_activate" if activates else "decide_account",
                Account.update(changes).where(Account.id == slot(1)),
                (Account.updated_at.db_value(now), account.id),
            )
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
