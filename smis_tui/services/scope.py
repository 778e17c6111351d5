"""Who may act on which unit: the unit hierarchy and the roles that reach down it,
and the reading of requests that the services deciding on them share."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from peewee import ModelSelect, fn

from models.db import database_proxy, locked
from models.schema import Account, Category, CategoryOption, PermissionRequest, Unit
from smis_tui.core.domain import AccountStatus, RequestStatus, Role
from smis_tui.services import prepared
from smis_tui.services.errors import NotAllowed
from smis_tui.services.prepared import slot

_TREE_LOCK = threading.Lock()
_TREE_CACHE: dict[str, tuple[object, dict[int, int | None]]] = {}


class UnitTree:
    """Parent look-ups for one operation; the hierarchy is at most a few levels deep.

    ``UnitTree()`` looks parents up one query at a time (a decision needs a handful);
    :meth:`UnitTree.loaded` reads the whole hierarchy in one query, for a queue that
    checks many units at once.
    """

    def __init__(self, parents: dict[int, int | None] | None = None) -> None:
        self._parent: dict[int, int | None] = dict(parents or {})
        self._complete = parents is not None

    @classmethod
    def loaded(cls) -> UnitTree:
        """Every unit's parent, read in one query, or the same tree again while the
        unit table has not changed. Reading 5165 rows into Python costs tens of ms per
        review-queue page; the check below is one aggregate query (~1 ms). The
        fingerprint changes with any unit added or removed or any parent changed (the
        weighted sums would have to cancel exactly for a change to go unseen)."""
        unit = Unit.id.cast("BIGINT")
        parent = fn.COALESCE(Unit.parent, 0).cast("BIGINT")
        fingerprint = prepared.first(
            "unit_fingerprint",
            Unit.select(
                fn.COUNT(Unit.id),
                fn.MAX(Unit.id),
                fn.SUM(unit * parent),
                fn.SUM(parent * parent + unit),
            )
            .tuples()
            .limit(1),
        )
        key = (id(database_proxy.obj), fingerprint)
        with _TREE_LOCK:
            cached = _TREE_CACHE.get("tree")
            if cached is not None and cached[0] == key:
                return cls(cached[1])
        parents = dict(Unit.select(Unit.id, Unit.parent).tuples())
        with _TREE_LOCK:
            _TREE_CACHE["tree"] = (key, parents)
        return cls(parents)

    @classmethod
    def _branch(cls, unit_id: int, parents: dict[int, int | None]) -> UnitTree:
        """The tree of the branch read by :func:`decision_scope`."""
        # A unit that does not exist has no parent, as parent_of would answer.
        parents.setdefault(unit_id, None)
        tree = cls(parents)
        # Units off the branch are still looked up one by one, as with UnitTree().
        tree._complete = False
        return tree

    def parent_of(self, unit_id: int) -> int | None:
        if unit_id not in self._parent:
            if self._complete:
                return None
            row = Unit.select(Unit.parent).where(Unit.id == unit_id).tuples().first()
            self._parent[unit_id] = row[0] if row else None
        return self._parent[unit_id]

    def ancestors(self, unit_id: int) -> list[int]:
        """Strict ancestors, nearest first."""
        found: list[int] = []
        current = self.parent_of(unit_id)
        # A unit is never its own ancestor, even if bad data made a cycle.
        while current is not None and current != unit_id and current not in found:
            found.append(current)
            current = self.parent_of(current)
        return found

    def descendants(self, unit_ids: set[int]) -> set[int]:
        """Strict descendants of any of ``unit_ids`` (needs a :meth:`loaded` tree)."""
        children: dict[int, list[int]] = {}
        for child, parent in self._parent.items():
            if parent is not None:
                children.setdefault(parent, []).append(child)
        found: set[int] = set()
        stack = [c for unit in unit_ids for c in children.get(unit, [])]
        while stack:
            unit = stack.pop()
            if unit not in found:
                found.add(unit)
                stack.extend(children.get(unit, []))
        return found


def active_actor(account_id: int) -> Account:
    """The account acting, which must be active; NotAllowed otherwise. Read inside the
    deciding transaction, so the answer holds for the write."""
    actor = prepared.first(
        "account_by_id",
        locked(Account.select().where(Account.id == slot(0)).limit(1), share=True),
        (account_id,),
    )
    if actor is None or actor.status != AccountStatus.ACTIVE:
        raise NotAllowed("error.not_permitted")
    return actor


def admin_requests(account_id: int) -> ModelSelect:
    """The account's approved 管理者 requests (unit and category); none for an account
    that is not active (a disabled 管理者 keeps the approved rows, but must not see
    the review queue or its filters: tests/integration/test_security.py)."""
    return _admin_requests(account_id)


def _admin_requests(account: object) -> ModelSelect:
    return (
        PermissionRequest.select(
            PermissionRequest.unit, PermissionRequest.category, PermissionRequest.option_ids
        )
        .join(Account, on=PermissionRequest.account == Account.id)
        .where(
            (PermissionRequest.account == account)
            & (PermissionRequest.status == RequestStatus.APPROVED)
            & (PermissionRequest.role == Role.ADMIN)
            & (Account.status == AccountStatus.ACTIVE)
        )
    )


# (unit id, category id) → the sub-options (ids) a 管理者 grant is limited to, for a
# grant that names some (新興傳染病用藥: 管理者(COVID-19)); a grant naming none covers
# every sub-option and has no entry.
OptionLimits = dict[tuple[int, int], frozenset[int]]


def option_set(option_ids: str) -> frozenset[int]:
    """A request's sub-options, stored as comma-separated option ids."""
    return frozenset(int(i) for i in (option_ids or "").split(",") if i)


def grants_of(rows: Iterable[tuple[int, int, str]]) -> tuple[set[tuple[int, int]], OptionLimits]:
    grants: set[tuple[int, int]] = set()
    limits: OptionLimits = {}
    unlimited: set[tuple[int, int]] = set()
    for unit_id, category_id, option_ids in rows:
        key = (unit_id, category_id)
        grants.add(key)
        options = option_set(option_ids)
        if not options:
            unlimited.add(key)
            limits.pop(key, None)
        elif key not in unlimited:
            limits[key] = limits.get(key, frozenset()) | options
    return grants, limits


def admin_scope(account_id: int) -> tuple[set[tuple[int, int]], OptionLimits]:
    """:func:`admin_grants` and the sub-options each is limited to."""
    return grants_of(prepared.run("admin_grants", _admin_requests(slot(0)).tuples(), (account_id,)))


def admin_grants(account_id: int) -> set[tuple[int, int]]:
    """(unit id, category id) pairs where the account is an approved 管理者."""
    return admin_scope(account_id)[0]


def covers(limits: OptionLimits, grant: tuple[int, int], option_ids: str) -> bool:
    """Does ``grant`` cover a request for the sub-options ``option_ids``? A limited
    grant covers only requests whose every sub-option it names."""
    return limit_covers(limits.get(grant), option_ids)


def limit_covers(limit: frozenset[int] | None, option_ids: str) -> bool:
    """Does a grant limited to ``limit`` (None: not limited) cover a request for the
    sub-options ``option_ids``?"""
    if limit is None:
        return True
    wanted = option_set(option_ids)
    return bool(wanted) and wanted <= limit


# The unit and its superior units: a recursive query up the parent links (UNION stops
# at a cycle bad data might make).
_BRANCH = (
    'WITH RECURSIVE up ("id", "parent_id") AS ('
    'SELECT "id", "parent_id" FROM "unit" WHERE "id" = {param} '
    'UNION SELECT "u"."id", "u"."parent_id" FROM "unit" AS "u" '
    'JOIN up ON "u"."id" = up."parent_id") '
    'SELECT 0, "id", "parent_id", \'\' FROM up '
)


def decision_scope(
    reviewer_id: int, unit_id: int
) -> tuple[set[tuple[int, int]], OptionLimits, UnitTree]:
    """What one decision at ``unit_id`` needs: the reviewer's :func:`admin_scope` and
    the unit's branch of the hierarchy (its superior units), in one statement instead
    of one per level and one for the grants."""
    db = database_proxy.obj
    grants_sql, template = prepared.sql_of("admin_grants", _admin_requests(slot(0)).tuples())
    cursor = db.execute_sql(
        _BRANCH.format(param=db.param)  # noqa: S608 - constants and peewee's own SQL
        + 'UNION ALL SELECT 1, "g"."unit_id", "g"."category_id", "g"."option_ids" FROM ('
        + grants_sql
        + ') AS "g"',
        [unit_id, *prepared.bind(template, (reviewer_id,))],
    )
    grant_rows: list[tuple[int, int, str]] = []
    parents: dict[int, int | None] = {}
    for kind, first, second, option_ids in cursor.fetchall():
        if kind:
            grant_rows.append((first, second, option_ids))
        else:
            parents[int(first)] = second
    grants, limits = grants_of(grant_rows)
    return grants, limits, UnitTree._branch(unit_id, parents)


def reviewing_units(tree: UnitTree, unit_id: int, role: str) -> list[int]:
    """The units whose 管理者 of the category decide a ``role`` request at ``unit_id``,
    nearest first: the unit or above for 承辦人/瀏覽者; only above it for a 管理者
    request (docs/architecture.md, "Lifecycle")."""
    ancestors = tree.ancestors(unit_id)
    return ancestors if role == Role.ADMIN else [unit_id, *ancestors]


def may_review(
    grants: set[tuple[int, int]],
    tree: UnitTree,
    unit_id: int,
    category_id: int,
    role: str,
    option_ids: str = "",
    limits: OptionLimits | None = None,
) -> bool:
    """May a 管理者 with ``grants`` (limited to sub-options by ``limits``) decide a
    ``role`` request at ``unit_id`` for ``category_id`` and ``option_ids``?"""
    return any(
        (unit, category_id) in grants and covers(limits or {}, (unit, category_id), option_ids)
        for unit in reviewing_units(tree, unit_id, role)
    )


@dataclass(frozen=True)
class DecidingUnit:
    """The unit whose 管理者 decide (or decided) a request."""

    id: int
    name: str
    kind: str
    """As :class:`UnitKind` names it (疾管署: ``UnitKind.CDC``)."""


def deciding_units(
    requests: Sequence[PermissionRequest], tree: UnitTree
) -> dict[int, DecidingUnit | None]:
    """Which unit's 管理者 decides each of ``requests`` (of any accounts), by request id.

    A decided request: the unit in its reach (:func:`reviewing_units`) where its
    reviewer holds a 管理者 grant of the category covering it, as long as they do.
    Otherwise, and for a request still under review: the nearest unit in its reach
    where an active account other than its applicant holds such a grant. None while
    nobody does. The grants in reach of all the requests are read in one statement."""
    reaches = {r.id: reviewing_units(tree, r.unit_id, r.role) for r in requests}
    reached = sorted({unit for reach in reaches.values() for unit in reach})
    categories = sorted({r.category_id for r in requests})
    # (unit, category) → holder → the sub-options their grants there are limited to
    # (None: not limited); which holders are active; the units by id.
    holders: dict[tuple[int, int], dict[int, frozenset[int] | None]] = {}
    active: set[int] = set()
    units: dict[int, DecidingUnit] = {}
    if reached and categories:
        grants = (
            PermissionRequest.select(
                PermissionRequest.unit,
                PermissionRequest.category,
                PermissionRequest.option_ids,
                Account.id,
                Account.status,
                Unit.name,
                Unit.kind,
            )
            .join(Account, on=PermissionRequest.account == Account.id)
            .switch(PermissionRequest)
            .join(Unit, on=PermissionRequest.unit == Unit.id)
            .where(
                (PermissionRequest.status == RequestStatus.APPROVED)
                & (PermissionRequest.role == Role.ADMIN)
                & PermissionRequest.unit.in_(reached)
                & PermissionRequest.category.in_(categories)
            )
            .tuples()
        )
        for unit_id, category_id, option_ids, holder, status, name, kind in grants:
            held = holders.setdefault((unit_id, category_id), {})
            options = option_set(option_ids)
            before = held.get(holder, frozenset())
            # A grant naming no sub-option covers them all, whatever else is held.
            held[holder] = None if before is None or not options else before | options
            if status == AccountStatus.ACTIVE:
                active.add(holder)
            units[unit_id] = DecidingUnit(unit_id, name, kind)

    def covering(request: PermissionRequest, unit: int) -> set[int]:
        """The holders of a grant at ``unit`` that covers ``request``, never its applicant."""
        held = holders.get((unit, request.category_id), {})
        return {
            holder
            for holder, limit in held.items()
            if holder != request.account_id and limit_covers(limit, request.option_ids)
        }

    def deciding(request: PermissionRequest) -> DecidingUnit | None:
        reach = reaches[request.id]
        if request.reviewer_id is not None:
            for unit in reach:
                if request.reviewer_id in covering(request, unit):
                    return units[unit]
        for unit in reach:
            if covering(request, unit) & active:
                return units[unit]
        return None

    return {r.id: deciding(r) for r in requests}


def may_withdraw(
    grants: set[tuple[int, int]],
    limits: OptionLimits,
    tree: UnitTree,
    account_unit_id: int,
    category_id: int,
    option_ids: str,
) -> bool:
    """May a 管理者 with ``grants`` withdraw a permission of ``category_id`` (and the
    sub-options ``option_ids``) from an account at ``account_unit_id``? A 管理者 of the
    category at a unit above the account's, whose grant covers the sub-options: the
    rule of 帳號管理's 停用權限 and of an access review's decisions."""
    return any(
        (unit, category_id) in grants and covers(limits, (unit, category_id), option_ids)
        for unit in tree.ancestors(account_unit_id)
    )


def is_superior_admin(grants: set[tuple[int, int]], tree: UnitTree, unit_id: int) -> bool:
    """A 管理者 of any category at a strict ancestor of the unit."""
    admin_units = {unit for unit, _ in grants}
    return any(unit in admin_units for unit in tree.ancestors(unit_id))


class OptionNames:
    """Names of a request's sub-options (stored as comma-separated option ids)."""

    def __init__(self) -> None:
        # Read at the first request that has options: none for an empty page, or for
        # requests of categories without sub-options.
        self._loaded: dict[int, str] | None = None

    def of(self, option_ids: str) -> tuple[str, ...]:
        if not option_ids:
            return ()
        if self._loaded is None:
            self._loaded = dict(
                prepared.run(
                    "option_names",
                    CategoryOption.select(CategoryOption.id, CategoryOption.name).tuples(),
                )
            )
        names = self._loaded
        return tuple(names[int(i)] for i in option_ids.split(",") if i)


def units_below(admin_units: set[int]) -> Any:
    """A recursive CTE of every unit strictly below ``admin_units`` (UNION, not UNION
    ALL, so a cycle in bad data ends instead of looping): the units whose accounts
    帳號管理 lists and an access review covers."""
    child = Unit.alias("child")
    base = Unit.select(Unit.id).where(Unit.parent.in_(sorted(admin_units)))
    below = base.cte("below", recursive=True, columns=("id",))
    step = child.select(child.id).join(below, on=(child.parent == below.c.id))
    return below.union(step)


def requests_named() -> ModelSelect:
    """Requests with their category and unit joined, for a caller's where and order."""
    return (
        PermissionRequest.select(PermissionRequest, Category, Unit)
        .join(Category)
        .switch(PermissionRequest)
        .join(Unit, on=PermissionRequest.unit == Unit.id)
    )


def requests_of(account_ids: Iterable[int], status: RequestStatus) -> ModelSelect:
    """The requests of ``account_ids`` in ``status``, named, in category order."""
    return (
        requests_named()
        .where(
            PermissionRequest.account.in_(sorted(account_ids))
            & (PermissionRequest.status == status)
        )
        .order_by(Category.sort_order, PermissionRequest.id)
    )
