"""權限定期檢閱: periodic access reviews, as Microsoft Entra runs them
(docs/access-review.md). No Textual here.

**Starting.** A 管理者 at the 疾管署 (CDC) or at a 衛生局 starts a review of the
permissions granted below their unit: every approved permission of an active account
at a unit strictly below it (the accounts 帳號管理 lists) becomes an item, as it is at
that moment. Later grants are not added, as an Entra review takes a snapshot of access
when it begins. The review has a name, a last day (``access_review_days`` after the
start unless chosen otherwise, at most a year) and the settings in force at its start:
what unanswered items become (``access_review_default``) and after how many days
without login removal is recommended (``access_review_inactive_days``).

**Deciding.** Each item is decided by the 管理者 who may withdraw that permission in
帳號管理 (:meth:`AccountControl.check_category`: a 管理者 of its category at a unit
above the holder's, whose grant covers its sub-options); nobody decides their own.
A reviewer lists only the items they may decide. 保留 keeps the permission; 移除 needs
a reason and withdraws it through 帳號管理's own write (:meth:`AccountControl.withdraw`),
so its holder reads it among their decisions, and their last permission takes the
account with it. An item is decided once: whoever comes second is told who decided it
(like the review queue's conflict). An item whose permission was withdrawn meanwhile,
or whose account was disabled, is marked gone when it is next decided on: there is
nothing left to keep or remove. The recommendation is 移除 for a holder who has not
logged in (nor been activated) for more than the review's days, else 保留.

**After the deadline** nobody decides any more. `smis-tui maintenance` gives every
undecided item the review's default (keep, remove, or the recommendation as it is
then) as the system, closes the review and says how many it applied; running it again
applies nothing.

Every step is audited: the start, each decision, each default applied and the
completion (``access_review_*`` actions; 停用權限 and 停用帳號 as 帳號管理 writes them).
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import peewee
from peewee import fn

from models.db import locked, retrying, write_transaction
from models.schema import (
    AccessReview,
    AccessReviewItem,
    Account,
    AuditEvent,
    Category,
    PermissionRequest,
    Unit,
    utcnow,
)
from smis_tui.core.chars import has_hidden
from smis_tui.core.clock import taiwan_date, taiwan_day_start
from smis_tui.core.config import MAX_ACCESS_REVIEW_DAYS, Settings
from smis_tui.core.domain import (
    REVIEW_DEFAULT_CAUSE,
    AccountStatus,
    RequestStatus,
    Role,
    UnitKind,
)
from smis_tui.services.audit import AuditLog
from smis_tui.services.audit_anchor import AuditAnchor
from smis_tui.services.control import AccountControl
from smis_tui.services.errors import (
    ConflictError,
    NotAllowed,
    NotFound,
    ServiceError,
    ValidationFailed,
    clean_reason,
)
from smis_tui.services.paging import Paged, page_bounds, page_offset
from smis_tui.services.scope import (
    OptionNames,
    UnitTree,
    active_actor,
    admin_grants,
    admin_scope,
    may_withdraw,
    requests_named,
    units_below,
)
from smis_tui.text import Phrase

log = logging.getLogger(__name__)

PAGE_SIZE = 20
NAME_MAX = 60
"""A review's name: what it is for, typed by the 管理者 starting it."""
STARTING_KINDS = (UnitKind.CDC, UnitKind.HEALTH_BUREAU)
"""The units whose 管理者 start reviews: the 疾管署 for everyone below it, a 衛生局 for
its county's units."""


class ItemDecision(enum.StrEnum):
    KEEP = "keep"  # 保留
    REMOVE = "remove"  # 移除
    GONE = "gone"
    """No longer granted when it was decided on (withdrawn meanwhile, or the account
    disabled): nothing was kept or removed."""


class ItemFilter(enum.StrEnum):
    OPEN = "open"  # 待決定
    ALL = "all"


class ReviewState(enum.StrEnum):
    OPEN = "open"  # 進行中: decisions are taken
    ENDED = "ended"  # 已截止: past the deadline, the defaults not applied yet
    CLOSED = "closed"  # 已結束: the defaults applied (smis-tui maintenance)


class Outcome(enum.StrEnum):
    """What became of one item of a decision."""

    DECIDED = "decided"
    GONE = "gone"  # no longer granted: marked so, nothing kept or removed
    CONFLICT = "conflict"  # decided meanwhile by someone else: not decided twice
    CLOSED = "closed"  # the review is past its deadline
    OUT_OF_SCOPE = "out_of_scope"  # not the reviewer's to decide
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class StartChoice:
    """A unit whose units below the actor may review."""

    code: str
    name: str


@dataclass(frozen=True)
class ReviewSummary:
    review_id: int
    name: str
    """Typed by the 管理者 who started it: plain text, never markup."""
    unit_code: str
    unit_name: str
    started_by: str
    started_at: dt.datetime
    due_on: dt.date
    """The last day (Taiwan time) on which decisions are taken."""
    state: ReviewState
    default_decision: str
    inactive_days: int
    total: int
    decided: int
    """Items decided by anyone (by default too, or found gone)."""
    mine_open: int | None = None
    """Items the viewer may still decide (None: the review is no longer open)."""


@dataclass(frozen=True)
class ReviewPage(Paged):
    reviews: tuple[ReviewSummary, ...]


@dataclass(frozen=True)
class ReviewItem:
    item_id: int
    request_id: int
    account_id: int
    holder_name: str
    masked_id: str
    unit_code: str
    unit_name: str
    category_name: str
    category_name_en: str
    role: Role
    options: tuple[str, ...]
    last_login_at: dt.datetime | None
    """None: never logged in."""
    recommendation: ItemDecision
    """KEEP or REMOVE."""
    decision: ItemDecision | None
    decided_by: str
    """Who decided (a name), "" for nobody or the system."""
    decided_at: dt.datetime | None
    by_default: bool
    reason: str
    """The reason of a removal (typed by a 管理者: plain text)."""
    granted: bool
    """The permission is still in force (granted, and its account active)."""
    permissions_left: int
    """How many permissions the holder has in force now: removing the last one
    disables the account."""


@dataclass(frozen=True)
class ItemPage(Paged):
    review: ReviewSummary
    items: tuple[ReviewItem, ...]
    mine: int
    """Every item of the review the viewer may decide, decided or not."""
    mine_open: int
    """Those of them still undecided."""


@dataclass
class DecideResult:
    """Per item: ``outcomes`` says what happened, ``failed`` holds the error of each
    item not decided; ``disabled`` the accounts whose last permission was removed."""

    decided: list[int] = field(default_factory=list)
    outcomes: dict[int, Outcome] = field(default_factory=dict)
    failed: dict[int, ServiceError] = field(default_factory=dict)
    disabled: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class DefaultsApplied:
    """What `smis-tui maintenance` did to the reviews past their deadline."""

    reviews: int = 0
    """Reviews closed."""
    kept: int = 0
    removed: int = 0
    gone: int = 0
    """Undecided items found no longer granted (nothing to apply)."""

    refused: tuple[int, ...] = ()
    """Reviews past their deadline that no longer match what their start sealed, or
    what the trail says was decided (changed in the database behind the program's
    back): nothing of them applied."""
    trail_broken: bool = False
    """The audit trail failed verification: no review's default was applied, as the
    trail is what says which items were decided already."""

    @property
    def applied(self) -> int:
        return self.kept + self.removed


_SEAL_LABEL = b"smis-tui access review\x00"

ItemTerms = tuple[int, int, int]
"""What an item is about: its permission, the holder and the category."""


@dataclass(frozen=True)
class SealedReview:
    """A review as its start sealed it: what its default may act on."""

    terms: tuple[object, ...]
    items: dict[int, ItemTerms]


class ReviewTampered(Exception):
    """A review, or one of its items, differs from what its start sealed."""


def _moment(value: dt.datetime) -> str:
    return value.replace(tzinfo=None).isoformat(timespec="microseconds")


def _review_terms(review: AccessReview) -> tuple[object, ...]:
    """Everything of a review that its default acts by: the starter is left out (a
    deleted account's reference is cleared, and it decides nothing here)."""
    return (
        review.id,
        review.name,
        review.root_unit_id,
        _moment(review.started_at),
        _moment(review.deadline),
        review.default_decision,
        review.inactive_days,
    )


def _item_terms(review_id: int) -> dict[int, ItemTerms]:
    return {
        int(item_id): (int(request), int(account), int(category))
        for item_id, request, account, category in AccessReviewItem.select(
            AccessReviewItem.id,
            AccessReviewItem.request,
            AccessReviewItem.account,
            AccessReviewItem.category,
        )
        .where(AccessReviewItem.review == review_id)
        .order_by(AccessReviewItem.id)
        .tuples()
    }


def _seal_message(terms: tuple[object, ...], items: dict[int, ItemTerms]) -> str:
    body = [list(terms), [[item_id, *about] for item_id, about in sorted(items.items())]]
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def _sealed(review: AccessReview, anchor: AuditAnchor) -> SealedReview | None:
    """``review`` and its items as its start sealed them; None when they differ."""
    terms, items = _review_terms(review), _item_terms(review.id)
    if not review.seal or not anchor.check(_SEAL_LABEL, _seal_message(terms, items), review.seal):
        return None
    return SealedReview(terms, items)


DECISION_ACTIONS = (
    "access_review_keep",
    "access_review_remove",
    "access_review_default_keep",
    "access_review_default_remove",
)
"""The trail rows of an item decided (each names the review and the item)."""
ID_BATCH = 500


def _decided_in_trail(review_id: int, items: dict[int, ItemTerms]) -> set[int]:
    """The items of ``review_id`` that the trail says were decided."""
    requests = sorted({str(request) for request, _account, _category in items.values()})
    decided: set[int] = set()
    for start in range(0, len(requests), ID_BATCH):
        for (details,) in (
            AuditEvent.select(AuditEvent.details)
            .where(
                AuditEvent.action.in_(DECISION_ACTIONS)
                & (AuditEvent.target_type == "permission")
                & AuditEvent.target_id.in_(requests[start : start + ID_BATCH])
            )
            .tuples()
        ):
            said = json.loads(details or "{}")
            if said.get("review") == review_id and isinstance(said.get("item"), int):
                decided.add(said["item"])
    return decided


def _completed_in_trail(review_id: int) -> bool:
    return bool(
        AuditEvent.select(AuditEvent.id)
        .where(
            (AuditEvent.action == "access_review_complete")
            & (AuditEvent.target_type == "access_review")
            & (AuditEvent.target_id == str(review_id))
        )
        .exists()
    )


def _same_permission(request: PermissionRequest, item: AccessReviewItem) -> bool:
    """The permission is still the holder's, in the category, that the item is about
    (a request row pointed at someone else would be withdrawn in their name)."""
    return bool(request.account_id == item.account_id and request.category_id == item.category_id)


def reseal_reviews(old: AuditAnchor, new: AuditAnchor) -> int:
    """A key rotation's switch, in its transaction: every review not closed that
    checks under the old key is sealed again under the new one (one that does not is
    left as it is: a rotation never seals a tampered review). How many."""
    resealed = 0
    for review in AccessReview.select().where(AccessReview.closed_at.is_null()):
        message = _seal_message(_review_terms(review), _item_terms(review.id))
        if review.seal and old.check(_SEAL_LABEL, message, review.seal):
            AccessReview.update(seal=new.seal(_SEAL_LABEL, message)).where(
                AccessReview.id == review.id
            ).execute()
            resealed += 1
    return resealed


def clean_name(text: str) -> str:
    """A review's name, stripped; ValidationFailed on its ``name`` field otherwise."""
    name = text.strip()
    if not name:
        problem = "access_review.error_name_required"
    elif has_hidden(name):
        problem = "access_review.error_name_hidden"
    elif len(name) > NAME_MAX:
        problem = "access_review.error_name_long"
    else:
        return name
    raise ValidationFailed({"name": Phrase(problem, limit=NAME_MAX)})


def clean_days(days: int) -> int:
    if not 1 <= days <= MAX_ACCESS_REVIEW_DAYS:
        raise ValidationFailed(
            {"days": Phrase("access_review.error_days", most=MAX_ACCESS_REVIEW_DAYS)}
        )
    return days


def deadline_after(start: dt.datetime, days: int) -> dt.datetime:
    """The first moment after the last day of a review started at ``start`` and open
    for ``days`` days: the start of the Taiwan day after it, as naive UTC."""
    return taiwan_day_start(taiwan_date(start) + dt.timedelta(days=days + 1))


def due_on(deadline: dt.datetime) -> dt.date:
    """The last day of a review with ``deadline`` (Taiwan time)."""
    return taiwan_date(deadline) - dt.timedelta(days=1)


def last_seen(account: Account) -> dt.datetime:
    """The later of the account's last login and its activation (its creation when it
    has neither): what the 180-day rule counts from, and the recommendation too (a
    fresh account is not recommended for removal before it could log in)."""
    seen = [d for d in (account.last_login_at, account.activated_at) if d is not None]
    return max(seen) if seen else account.created_at


def recommendation(account: Account, inactive_days: int, now: dt.datetime) -> ItemDecision:
    """REMOVE when ``account`` has not been seen for more than ``inactive_days``."""
    idle = now - last_seen(account)
    return ItemDecision.REMOVE if idle > dt.timedelta(days=inactive_days) else ItemDecision.KEEP


def outcome_of(error: ServiceError) -> Outcome:
    if isinstance(error, ConflictError):
        return Outcome.CONFLICT
    if isinstance(error, NotFound):
        return Outcome.NOT_FOUND
    if error.key == "access_review.error_closed":
        return Outcome.CLOSED
    return Outcome.OUT_OF_SCOPE


def _state(review: AccessReview, now: dt.datetime) -> ReviewState:
    if review.closed_at is not None:
        return ReviewState.CLOSED
    return ReviewState.OPEN if now < review.deadline else ReviewState.ENDED


def _guarded_item_write(item_id: int, **changes: Any) -> bool:
    """Write ``changes`` to an undecided item: False when it was decided meanwhile."""
    return bool(
        AccessReviewItem.update(**changes)
        .where((AccessReviewItem.id == item_id) & AccessReviewItem.decision.is_null())
        .execute()
    )


class AccessReviewService:
    def __init__(self, settings: Settings, audit: AuditLog, control: AccountControl) -> None:
        self.settings = settings
        self.audit = audit
        self.control = control

    # ----- who may ----------------------------------------------------------------

    @staticmethod
    def _start_units(actor_id: int) -> list[Unit]:
        units = {unit for unit, _ in admin_grants(actor_id)}
        if not units:
            return []
        return list(
            Unit.select()
            .where(Unit.id.in_(sorted(units)) & Unit.kind.in_([str(k) for k in STARTING_KINDS]))
            .order_by(Unit.county_rank, Unit.code)
        )

    def start_choices(self, actor_id: int) -> tuple[StartChoice, ...]:
        """The units below which the actor may start a review: where they are a
        管理者 of the 疾管署 or of a 衛生局 (none for anyone else)."""
        return tuple(StartChoice(u.code, u.name) for u in self._start_units(actor_id))

    # ----- starting -----------------------------------------------------------------

    def start(
        self,
        actor_id: int,
        name: str,
        *,
        days: int | None = None,
        unit_code: str | None = None,
        now: dt.datetime | None = None,
    ) -> int:
        """Start a review of the permissions granted below ``unit_code`` (one of
        :meth:`start_choices`; may be left out when there is only one), open for
        ``days`` days (``access_review_days`` by default): the review's id."""
        clean = clean_name(name)
        length = clean_days(self.settings.access_review_days if days is None else days)

        def run() -> int:
            moment = now or utcnow()
            with write_transaction():
                actor = active_actor(actor_id)
                units = self._start_units(actor.id)
                if not units:
                    raise NotAllowed("access_review.error_not_starter")
                if unit_code is None and len(units) > 1:
                    raise ValidationFailed({"unit": Phrase("access_review.error_unit")})
                chosen = units[0] if unit_code is None else None
                for unit in units:
                    if unit.code == unit_code:
                        chosen = unit
                if chosen is None:
                    raise NotAllowed("access_review.error_scope")
                # The root unit locked: two starts over the same units take turns, so
                # the second sees the first's review running.
                root: Unit = locked(Unit.select().where(Unit.id == chosen.id)).get()
                running = (
                    AccessReview.select(AccessReview.name)
                    .where(
                        (AccessReview.root_unit == root.id)
                        & AccessReview.closed_at.is_null()
                        & (AccessReview.deadline > moment)
                    )
                    .first()
                )
                if running is not None:
                    raise NotAllowed("access_review.error_running", name=running.name)
                deadline = deadline_after(moment, length)
                review = AccessReview.create(
                    name=clean,
                    root_unit=root.id,
                    started_by=actor.id,
                    started_at=moment,
                    deadline=deadline,
                    default_decision=self.settings.access_review_default,
                    inactive_days=self.settings.access_review_inactive_days,
                )
                items = self._snapshot(review.id, root.id, actor.id)
                if not items:
                    raise NotAllowed("access_review.error_nothing", unit=root.name)
                # Sealed as stored (read back), so the check compares like with like.
                stored = AccessReview.get_by_id(review.id)
                message = _seal_message(_review_terms(stored), _item_terms(review.id))
                AccessReview.update(seal=self.audit.anchor.seal(_SEAL_LABEL, message)).where(
                    AccessReview.id == review.id
                ).execute()
                self.audit.record(
                    "access_review_start",
                    actor=actor,
                    target_type="access_review",
                    target_id=review.id,
                    unit=root.id,
                    details={
                        "review": review.id,
                        "note": clean,
                        "items": items,
                        "due": due_on(deadline).isoformat(),
                        "default": review.default_decision,
                        "inactive_days": review.inactive_days,
                    },
                )
                return int(review.id)

        return retrying(run)

    @staticmethod
    def _snapshot(review_id: int, root_id: int, actor_id: int) -> int:
        """One item per permission in force below ``root_id`` (one statement); how
        many."""
        below = units_below({root_id})
        source = (
            PermissionRequest.select(
                peewee.Value(review_id),
                PermissionRequest.id,
                PermissionRequest.account,
                PermissionRequest.category,
                peewee.Value(False),
                peewee.Value(""),
            )
            .join(Account, on=PermissionRequest.account == Account.id)
            .join(below, on=(Account.unit == below.c.id))
            .where(
                (PermissionRequest.status == RequestStatus.APPROVED)
                & (Account.status == AccountStatus.ACTIVE)
                & (Account.id != actor_id)
            )
            .with_cte(below)
        )
        AccessReviewItem.insert_from(
            source,
            [
                AccessReviewItem.review,
                AccessReviewItem.request,
                AccessReviewItem.account,
                AccessReviewItem.category,
                AccessReviewItem.by_default,
                AccessReviewItem.reason,
            ],
        ).execute()
        return int(AccessReviewItem.select().where(AccessReviewItem.review == review_id).count())

    # ----- reading ------------------------------------------------------------------

    def reviews(
        self,
        viewer_id: int,
        *,
        page: int = 1,
        page_size: int = PAGE_SIZE,
        now: dt.datetime | None = None,
    ) -> ReviewPage:
        """The reviews that concern the viewer, newest first: those they started, and
        those whose units overlap the units they administer (a review above theirs, or
        one of theirs below)."""
        moment = now or utcnow()
        grants, limits = admin_scope(viewer_id)
        if not grants:
            raise NotAllowed("control.error_not_admin")
        admin_units = {unit for unit, _ in grants}
        tree = UnitTree.loaded()

        def concerns(review: AccessReview) -> bool:
            if review.started_by_id == viewer_id or review.root_unit_id in admin_units:
                return True
            above_root = set(tree.ancestors(review.root_unit_id))
            return bool(above_root & admin_units) or any(
                review.root_unit_id in tree.ancestors(unit) for unit in admin_units
            )

        found = [
            r
            for r in AccessReview.select().order_by(
                AccessReview.started_at.desc(), AccessReview.id.desc()
            )
            if concerns(r)
        ]
        page, pages = page_bounds(page, len(found), page_size)
        start = page_offset(page, page_size)
        shown = found[start : start + page_size]
        summaries = self._summaries(shown, viewer_id, grants, limits, tree, moment)
        return ReviewPage(
            tuple(summaries[r.id] for r in shown),
            page=page,
            pages=pages,
            total=len(found),
            page_size=page_size,
        )

    def _summaries(
        self,
        reviews: Iterable[AccessReview],
        viewer_id: int,
        grants: set[tuple[int, int]],
        limits: Any,
        tree: UnitTree,
        now: dt.datetime,
        known_open: dict[int, int] | None = None,
    ) -> dict[int, ReviewSummary]:
        """The reviews with their progress; ``known_open``: the viewer's undecided items
        of a review, when already counted."""
        reviews = list(reviews)
        if not reviews:
            return {}
        ids = [r.id for r in reviews]
        counts: dict[int, tuple[int, int]] = {
            row[0]: (int(row[1]), int(row[2] or 0))
            for row in AccessReviewItem.select(
                AccessReviewItem.review,
                fn.COUNT(AccessReviewItem.id),
                fn.SUM(peewee.Case(None, [(AccessReviewItem.decision.is_null(False), 1)], 0)),
            )
            .where(AccessReviewItem.review.in_(ids))
            .group_by(AccessReviewItem.review)
            .tuples()
        }
        units = {
            u.id: u
            for u in Unit.select(Unit.id, Unit.code, Unit.name).where(
                Unit.id.in_(sorted({r.root_unit_id for r in reviews}))
            )
        }
        starters = dict(
            Account.select(Account.id, Account.name)
            .where(Account.id.in_(sorted({r.started_by_id for r in reviews if r.started_by_id})))
            .tuples()
        )
        found: dict[int, ReviewSummary] = {}
        for review in reviews:
            state = _state(review, now)
            mine_open = None
            if state == ReviewState.OPEN:
                mine_open = (
                    known_open[review.id]
                    if known_open is not None and review.id in known_open
                    else len(self._mine(review.id, viewer_id, grants, limits, tree, open_only=True))
                )
            total, decided = counts.get(review.id, (0, 0))
            unit = units.get(review.root_unit_id)
            found[review.id] = ReviewSummary(
                review_id=review.id,
                name=review.name,
                unit_code=unit.code if unit is not None else "",
                unit_name=unit.name if unit is not None else "",
                started_by=starters.get(review.started_by_id, ""),
                started_at=review.started_at,
                due_on=due_on(review.deadline),
                state=state,
                default_decision=review.default_decision,
                inactive_days=review.inactive_days,
                total=total,
                decided=decided,
                mine_open=mine_open,
            )
        return found

    @staticmethod
    def _mine(
        review_id: int,
        viewer_id: int,
        grants: set[tuple[int, int]],
        limits: Any,
        tree: UnitTree,
        *,
        open_only: bool,
    ) -> list[tuple[int, bool]]:
        """The items of the review the viewer may decide, in list order (the holder's
        unit, name, the category): (item id, undecided)."""
        categories = sorted({category for _, category in grants})
        query = (
            AccessReviewItem.select(
                AccessReviewItem.id,
                Account.unit,
                AccessReviewItem.category,
                PermissionRequest.option_ids,
                AccessReviewItem.decision,
            )
            .join(Account, on=AccessReviewItem.account == Account.id)
            .join(Unit, on=Account.unit == Unit.id)
            .switch(AccessReviewItem)
            .join(PermissionRequest, on=AccessReviewItem.request == PermissionRequest.id)
            .switch(AccessReviewItem)
            .join(Category, on=AccessReviewItem.category == Category.id)
            .where(
                (AccessReviewItem.review == review_id)
                & AccessReviewItem.category.in_(categories)
                & (AccessReviewItem.account != viewer_id)
            )
            .order_by(
                Unit.county_rank, Unit.code, Account.name, Category.sort_order, AccessReviewItem.id
            )
            .tuples()
        )
        if open_only:
            query = query.where(AccessReviewItem.decision.is_null())
        return [
            (item_id, decision is None)
            for item_id, unit_id, category_id, option_ids, decision in query
            if may_withdraw(grants, limits, tree, unit_id, category_id, option_ids)
        ]

    def items(
        self,
        viewer_id: int,
        review_id: int,
        *,
        show: ItemFilter = ItemFilter.OPEN,
        page: int = 1,
        page_size: int = PAGE_SIZE,
        now: dt.datetime | None = None,
    ) -> ItemPage:
        """The items of ``review_id`` the viewer may decide (undecided ones only, or
        all), one page of them, with the review's progress."""
        moment = now or utcnow()
        review = AccessReview.get_or_none(AccessReview.id == review_id)
        if review is None:
            raise NotFound("access_review.error_not_found")
        grants, limits = admin_scope(viewer_id)
        if not grants:
            raise NotAllowed("control.error_not_admin")
        tree = UnitTree.loaded()
        mine = self._mine(review.id, viewer_id, grants, limits, tree, open_only=False)
        listed = [item for item, undecided in mine if undecided or show == ItemFilter.ALL]
        page, pages = page_bounds(page, len(listed), page_size)
        start = page_offset(page, page_size)
        window = listed[start : start + page_size]
        mine_open = sum(1 for _, undecided in mine if undecided)
        summary = self._summaries(
            [review], viewer_id, grants, limits, tree, moment, {review.id: mine_open}
        )[review.id]
        return ItemPage(
            review=summary,
            items=self._read_items(window, review, moment),
            mine=len(mine),
            mine_open=mine_open,
            page=page,
            pages=pages,
            total=len(listed),
            page_size=page_size,
        )

    @staticmethod
    def _read_items(
        item_ids: list[int], review: AccessReview, now: dt.datetime
    ) -> tuple[ReviewItem, ...]:
        if not item_ids:
            return ()
        rows = {
            item.id: item
            for item in AccessReviewItem.select().where(AccessReviewItem.id.in_(item_ids))
        }
        account_ids = sorted({item.account_id for item in rows.values()})
        accounts = {a.id: a for a in Account.select().where(Account.id.in_(account_ids))}
        requests = {
            r.id: r
            for r in requests_named().where(
                PermissionRequest.id.in_(sorted({item.request_id for item in rows.values()}))
            )
        }
        deciders = dict(
            Account.select(Account.id, Account.name)
            .where(
                Account.id.in_(sorted({i.decided_by_id for i in rows.values() if i.decided_by_id}))
            )
            .tuples()
        )
        left = dict(
            PermissionRequest.select(PermissionRequest.account, fn.COUNT(PermissionRequest.id))
            .where(
                PermissionRequest.account.in_(account_ids)
                & (PermissionRequest.status == RequestStatus.APPROVED)
            )
            .group_by(PermissionRequest.account)
            .tuples()
        )
        option_names = OptionNames()
        found: list[ReviewItem] = []
        for item_id in item_ids:
            item = rows.get(item_id)
            if item is None:  # gone between the two reads (its account deleted)
                continue
            account = accounts[item.account_id]
            request = requests[item.request_id]
            granted = (
                request.status == RequestStatus.APPROVED and account.status == AccountStatus.ACTIVE
            )
            found.append(
                ReviewItem(
                    item_id=item.id,
                    request_id=request.id,
                    account_id=account.id,
                    holder_name=account.name,
                    masked_id=account.person_id_masked,
                    unit_code=request.unit.code,
                    unit_name=request.unit.name,
                    category_name=request.category.name,
                    category_name_en=request.category.name_en,
                    role=Role(request.role),
                    options=option_names.of(request.option_ids),
                    last_login_at=account.last_login_at,
                    recommendation=recommendation(account, review.inactive_days, now),
                    decision=ItemDecision(item.decision) if item.decision else None,
                    decided_by=deciders.get(item.decided_by_id, ""),
                    decided_at=item.decided_at,
                    by_default=bool(item.by_default),
                    reason=item.reason,
                    granted=granted,
                    permissions_left=int(left.get(account.id, 0)) if granted else 0,
                )
            )
        return tuple(found)

    # ----- deciding -----------------------------------------------------------------

    def decide(
        self,
        reviewer_id: int,
        item_ids: list[int],
        decision: ItemDecision,
        reason: str = "",
        *,
        now: dt.datetime | None = None,
    ) -> DecideResult:
        """保留 or 移除 each of ``item_ids``, each in its own transaction (one conflict
        undoes none of the others); every item gets an :class:`Outcome`. A removal
        without a valid reason decides none (ValidationFailed)."""
        if decision not in (ItemDecision.KEEP, ItemDecision.REMOVE):
            raise ValueError(decision)
        note = clean_reason(reason) if decision == ItemDecision.REMOVE else reason.strip()
        if note and decision == ItemDecision.KEEP:
            note = clean_reason(note)
        result = DecideResult()
        # Each review's seal is checked once per batch (it reads all its items).
        sealed: dict[int, SealedReview | None] = {}
        for item_id in dict.fromkeys(item_ids):
            try:
                outcome, disabled = retrying(
                    partial(self._decide_one, reviewer_id, item_id, decision, note, now, sealed)
                )
            except ServiceError as exc:
                result.failed[item_id] = exc
                result.outcomes[item_id] = outcome_of(exc)
                continue
            result.outcomes[item_id] = outcome
            if outcome == Outcome.DECIDED:
                result.decided.append(item_id)
            if disabled is not None:
                result.disabled.append(disabled)
        return result

    def _decide_one(
        self,
        reviewer_id: int,
        item_id: int,
        decision: ItemDecision,
        note: str,
        now: dt.datetime | None,
        sealed: dict[int, SealedReview | None],
    ) -> tuple[Outcome, int | None]:
        with write_transaction():
            moment = now or utcnow()
            reviewer = active_actor(reviewer_id)
            first = AccessReviewItem.get_or_none(AccessReviewItem.id == item_id)
            if first is None:
                raise NotFound("access_review.error_item_not_found")
            # The holder's account first, as every change of it does; then the item as
            # it is now.
            account = locked(Account.select().where(Account.id == first.account_id)).get()
            item = locked(AccessReviewItem.select().where(AccessReviewItem.id == item_id)).get()
            review = AccessReview.get_by_id(item.review_id)
            # Closed first: a rotation reseals only open reviews.
            if _state(review, moment) != ReviewState.OPEN:
                raise NotAllowed("access_review.error_closed", name=review.name)
            if review.id not in sealed:
                sealed[review.id] = _sealed(review, self.audit.anchor)
            request = requests_named().where(PermissionRequest.id == item.request_id).get()
            # A review that is not what its start sealed asks nobody for decisions:
            # its items may name permissions the starter never put in it.
            started = sealed[review.id]
            if (
                started is None
                or _review_terms(review) != started.terms
                or started.items.get(item.id)
                != (item.request_id, item.account_id, item.category_id)
                or not _same_permission(request, item)
            ):
                raise NotAllowed("access_review.error_tampered", name=review.name)
            if item.account_id == reviewer.id:
                raise NotAllowed("access_review.error_own")
            self.control.check_category(reviewer, account, request)
            if item.decision is not None:
                raise self._decided_already(item, account)
            if request.status != RequestStatus.APPROVED or account.status != AccountStatus.ACTIVE:
                if not _guarded_item_write(
                    item.id, decision=ItemDecision.GONE, decided_at=moment, decided_by=None
                ):
                    raise self._decided_already(item, account)
                return Outcome.GONE, None
            if not _guarded_item_write(
                item.id,
                decision=decision,
                decided_by=reviewer.id,
                decided_at=moment,
                reason=note,
            ):
                raise self._decided_already(item, account)
            advice = recommendation(account, review.inactive_days, moment)
            details = {
                "review": review.id,
                "item": item.id,
                "account": account.id,
                "category": request.category_id,
                "role": request.role,
                "note": note,
                "recommendation": str(advice),
            }
            self.audit.record(
                "access_review_remove" if decision == ItemDecision.REMOVE else "access_review_keep",
                actor=reviewer,
                target_type="permission",
                target_id=request.id,
                unit=request.unit_id,
                details=details,
            )
            if decision == ItemDecision.KEEP:
                return Outcome.DECIDED, None
            disabled = self.control.withdraw(
                reviewer, account, request, account.version, note, details={"review": review.id}
            )
            return Outcome.DECIDED, account.id if disabled else None

    @staticmethod
    def _decided_already(item: AccessReviewItem, account: Account) -> ConflictError:
        """Who decided the item first, as the one who came second is told."""
        fresh = AccessReviewItem.get_by_id(item.id)
        who = ""
        if fresh.decided_by_id is not None:
            decider = Account.get_or_none(Account.id == fresh.decided_by_id)
            who = decider.name if decider is not None else ""
        kind = "default" if fresh.by_default else str(fresh.decision or "gone")
        return ConflictError(
            f"access_review.error_decided_{kind}", name=account.name, by=who or "#?"
        )

    # ----- after the deadline (smis-tui maintenance) --------------------------------

    def apply_defaults(self, now: dt.datetime | None = None) -> DefaultsApplied:
        """Every review past its deadline and not closed: each undecided item gets the
        review's default, as the system, and the review is closed. Idempotent: an item
        decided (or a review closed) is never touched again."""
        moment = now or utcnow()
        due = [
            review_id
            for (review_id,) in AccessReview.select(AccessReview.id)
            .where(AccessReview.closed_at.is_null() & (AccessReview.deadline <= moment))
            .order_by(AccessReview.id)
            .tuples()
        ]
        kept = removed = gone = closed = 0
        refused: list[int] = []
        if due and not self.audit.verify().ok:
            # Which items were decided is the trail's word: a broken trail may have
            # lost it, so nothing is applied until someone has looked into it.
            log.error("audit trail fails verification: no access review default applied")
            return DefaultsApplied(refused=tuple(due), trail_broken=True)
        for review_id in due:
            review = AccessReview.get_by_id(review_id)
            sealed = _sealed(review, self.audit.anchor)
            try:
                if sealed is None or _completed_in_trail(review_id):
                    raise ReviewTampered(review_id)
                decided = _decided_in_trail(review_id, sealed.items)
                undecided = [
                    item_id
                    for (item_id,) in AccessReviewItem.select(AccessReviewItem.id)
                    .where(
                        (AccessReviewItem.review == review_id) & AccessReviewItem.decision.is_null()
                    )
                    .order_by(AccessReviewItem.id)
                    .tuples()
                ]
                if decided.intersection(undecided):
                    raise ReviewTampered(review_id)  # a decision cleared in the database
                for item_id in undecided:
                    applied = retrying(partial(self._default_one, item_id, moment, sealed))
                    kept += applied == ItemDecision.KEEP
                    removed += applied == ItemDecision.REMOVE
                    gone += applied == ItemDecision.GONE
            except ReviewTampered:
                log.error("access review #%s differs from its sealed start: not applied", review_id)
                refused.append(review_id)
                continue
            closed += retrying(partial(self._close, review_id, moment))
        return DefaultsApplied(
            reviews=closed, kept=kept, removed=removed, gone=gone, refused=tuple(refused)
        )

    def _default_one(
        self, item_id: int, moment: dt.datetime, sealed: SealedReview
    ) -> ItemDecision | None:
        """The review's default for one undecided item; None when it was decided
        meanwhile. The item and its review are compared, locked, with what the start
        sealed (``sealed``): a change made since the seal was checked is refused too."""
        with write_transaction():
            first = AccessReviewItem.get_or_none(AccessReviewItem.id == item_id)
            if first is None:
                return None
            account = locked(Account.select().where(Account.id == first.account_id)).get()
            item = locked(AccessReviewItem.select().where(AccessReviewItem.id == item_id)).get()
            if item.decision is not None:
                return None
            review = AccessReview.get_by_id(item.review_id)
            if _review_terms(review) != sealed.terms or sealed.items.get(item.id) != (
                item.request_id,
                item.account_id,
                item.category_id,
            ):
                raise ReviewTampered(review.id)
            request = requests_named().where(PermissionRequest.id == item.request_id).get()
            if not _same_permission(request, item):
                raise ReviewTampered(review.id)
            if request.status != RequestStatus.APPROVED or account.status != AccountStatus.ACTIVE:
                _guarded_item_write(item.id, decision=ItemDecision.GONE, decided_at=moment)
                return ItemDecision.GONE
            advice = recommendation(account, review.inactive_days, moment)
            decision = (
                advice
                if review.default_decision == "recommendation"
                else ItemDecision(review.default_decision)
            )
            if not _guarded_item_write(
                item.id, decision=decision, decided_at=moment, by_default=True
            ):
                return None
            self.audit.record(
                "access_review_default_remove"
                if decision == ItemDecision.REMOVE
                else "access_review_default_keep",
                actor=None,
                actor_label="system",
                target_type="permission",
                target_id=request.id,
                unit=request.unit_id,
                details={
                    "review": review.id,
                    "item": item.id,
                    "account": account.id,
                    "category": request.category_id,
                    "role": request.role,
                    "default": review.default_decision,
                    "recommendation": str(advice),
                },
            )
            if decision == ItemDecision.REMOVE:
                self.control.withdraw(
                    None,
                    account,
                    request,
                    account.version,
                    review.name,
                    cause=REVIEW_DEFAULT_CAUSE,
                    details={"review": review.id},
                )
            return decision

    def _close(self, review_id: int, moment: dt.datetime) -> bool:
        """The review closed and its outcome audited; False when it already was."""
        with write_transaction():
            review = locked(AccessReview.select().where(AccessReview.id == review_id)).get()
            if review.closed_at is not None:
                return False
            tally: dict[str, int] = {}
            for decision, by_default, count in (
                AccessReviewItem.select(
                    AccessReviewItem.decision,
                    AccessReviewItem.by_default,
                    fn.COUNT(AccessReviewItem.id),
                )
                .where(AccessReviewItem.review == review_id)
                .group_by(AccessReviewItem.decision, AccessReviewItem.by_default)
                .tuples()
            ):
                key = f"{decision or 'undecided'}{'_by_default' if by_default else ''}"
                tally[key] = tally.get(key, 0) + int(count)
            AccessReview.update(closed_at=moment).where(
                (AccessReview.id == review_id) & AccessReview.closed_at.is_null()
            ).execute()
            self.audit.record(
                "access_review_complete",
                actor=None,
                actor_label="system",
                target_type="access_review",
                target_id=review.id,
                unit=review.root_unit_id,
                details={"review": review.id, "note": review.name, **tally},
            )
            return True
