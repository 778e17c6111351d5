"""帳號管理 for superior units, and the 軌跡紀錄 screens' entry points. No Textual here.

A 管理者 at a unit sees the accounts of the units below it (strictly below: not their
own unit, never a superior one), filtered by name or person ID, unit and status, with
the accounts that have not logged in for ``settings.inactive_warning_days`` days
(150 by default: the 180-day rule disables them 30 days later) marked and listable on
their own. They may disable one granted permission of such an account, or the whole
account. Each change needs a reason, runs in one write transaction with its audit row,
and is guarded by the version the screen showed.

Refused with a clear message and nothing written: no reason; one's own account; an
account at one's own unit or a superior unit; an account of any other unit outside
one's reach; an account that is not active; a permission that is no longer granted.

The trail: everyone reads their own; a CDC 管理者 also searches everybody's by person
ID, unit, action and date range, and checks the hash chain (``smis-tui audit verify``).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peewee import fn

from models.db import locked, retrying, write_transaction
from models.schema import Account, PermissionRequest, Unit, utcnow
from smis_tui.core.config import Settings
from smis_tui.core.domain import AccountStatus, RequestStatus, Role
from smis_tui.core.rocdate import RocDateError, from_roc
from smis_tui.services.accounts import AccountService, clean_person_id
from smis_tui.services.audit import (
    TRAIL_PAGE_SIZE,
    AuditLog,
    TrailPage,
    TrailQuery,
    VerifyResult,
    contains_text,
)
from smis_tui.services.errors import (
    ConflictError,
    NotAllowed,
    NotFound,
    ValidationFailed,
    clean_reason,
)
from smis_tui.services.paging import Paged, page_bounds, page_of
from smis_tui.services.scope import (
    OptionNames,
    UnitTree,
    active_actor,
    admin_grants,
    admin_scope,
    is_superior_admin,
    may_withdraw,
    requests_named,
    requests_of,
    units_below,
)
from smis_tui.services.trail_export import write_export
from smis_tui.text import Phrase, t

PAGE_SIZE = 20
_CODE = re.compile(r"[0-9A-Za-z]{1,10}")


class StatusFilter:
    """Values of the list's status filter."""

    ALL = ""
    ACTIVE = str(AccountStatus.ACTIVE)
    PENDING = str(AccountStatus.PENDING)
    DISABLED = str(AccountStatus.DISABLED)
    INACTIVE = "inactive"
    """Active, and not logged in for the warning period (150 days by default)."""
    REJECTED = "rejected"
    """Applied, and every request was rejected: waiting for nobody (PENDING lists only
    the accounts with a request still under review)."""

    CHOICES = (ALL, ACTIVE, INACTIVE, PENDING, REJECTED, DISABLED)


@dataclass(frozen=True)
class TrailExport:
    path: Path
    rows: int


@dataclass(frozen=True)
class GrantedPermission:
    request_id: int
    category_code: str
    category_name: str
    category_name_en: str
    role: Role
    options: tuple[str, ...]


@dataclass(frozen=True)
class ControlRow:
    account_id: int
    version: int
    name: str
    masked_id: str
    unit_code: str
    unit_name: str
    status: AccountStatus
    disabled_reason: str | None
    idle_days: int | None
    """Whole days since the later of the last login and the activation (active
    accounts only; None otherwise)."""
    inactive: bool
    """Active and idle longer than the warning period."""
    login_days: int | None
    """Whole days since the last login, whatever the status; None when the account
    never logged in (an administrator must not read a fresh account as just used)."""
    permissions: tuple[GrantedPermission, ...]
    rejected: bool = False
    """An applicant none of whose requests is still under review: every one was
    rejected (the account's status is still pending until it applies again)."""


@dataclass(frozen=True)
class ControlPage(Paged):
    rows: tuple[ControlRow, ...]
    warning_days: int


def _idle_before(cutoff: dt.datetime) -> Any:
    """Active accounts whose later of last login and activation (or, with neither,
    creation) is before ``cutoff`` — the 180-day rule's own test."""
    last = Account.last_login_at
    activated = Account.activated_at
    return (
        (Account.status == AccountStatus.ACTIVE)
        & (last.is_null() | (last < cutoff))
        & (activated.is_null() | (activated < cutoff))
        & (last.is_null(False) | activated.is_null(False) | (Account.created_at < cutoff))
    )


def _under_review() -> Any:
    """The requests of the outer query's account still under review."""
    return PermissionRequest.select(PermissionRequest.id).where(
        (PermissionRequest.account == Account.id)
        & (PermissionRequest.status == RequestStatus.PENDING)
    )


class AccountControl:
    """Superior-unit account control and the trail screens' service."""

    def __init__(self, settings: Settings, accounts: AccountService, audit: AuditLog) -> None:
        self.settings = settings
        self.accounts = accounts
        self.audit = audit

    @property
    def warning_days(self) -> int:
        return self.settings.inactive_warning_days

    # ----- who may ----------------------------------------------------------------

    def admin_units(self, actor_id: int) -> set[int]:
        """Units where the actor is an approved 管理者 (of any category); empty for an
        account that is not active."""
        return {unit for unit, _ in admin_grants(actor_id)}

    def can_control(self, actor_id: int) -> bool:
        return bool(self.admin_units(actor_id))

    def is_cdc_admin(self, account_id: int) -> bool:
        return self.audit.is_cdc_admin(account_id)

    # ----- the list -----------------------------------------------------------------

    def accounts_below(
        self,
        actor_id: int,
        *,
        name: str = "",
        unit: str = "",
        status: str = StatusFilter.ALL,
        page: int = 1,
        page_size: int = PAGE_SIZE,
        now: dt.datetime | None = None,
    ) -> ControlPage:
        """Accounts of the units below the actor's, 20 a page.

        ``name`` is part of a name, or a whole person ID; ``unit`` a unit code (or its
        beginning) or part of a unit name; ``status`` one of :class:`StatusFilter`.
        Deleted accounts are never listed.
        """
        admin_units = self.admin_units(actor_id)
        if not admin_units:
            raise NotAllowed("control.error_not_admin")
        if status not in StatusFilter.CHOICES:
            raise ValidationFailed({"status": Phrase("control.error_status")})
        now = now or utcnow()
        cutoff = now - dt.timedelta(days=self.warning_days)
        below = units_below(admin_units)
        query = (
            Account.select(Account, Unit)
            .join(below, on=(Account.unit == below.c.id))
            .switch(Account)
            .join(Unit, on=(Account.unit == Unit.id))
            .where((Account.status != AccountStatus.DELETED) & (Account.id != actor_id))
            .with_cte(below)
        )
        name = name.strip()
        if name:
            query = query.where(self._name_condition(name))
        unit = unit.strip()
        if unit:
            by_name = contains_text(Unit.name, unit)
            query = query.where(
                Unit.code.startswith(unit.upper()) | by_name if _CODE.fullmatch(unit) else by_name
            )
        if status == StatusFilter.INACTIVE:
            query = query.where(_idle_before(cutoff))
        elif status == StatusFilter.PENDING:
            query = query.where((Account.status == status) & fn.EXISTS(_under_review()))
        elif status == StatusFilter.REJECTED:
            query = query.where(
                (Account.status == AccountStatus.PENDING) & ~fn.EXISTS(_under_review())
            )
        elif status:
            query = query.where(Account.status == status)
        total = query.count()
        page, pages = page_bounds(page, total, page_size)
        order = (
            (Account.last_login_at, Account.activated_at, Account.id)
            if status == StatusFilter.INACTIVE
            else (Unit.code, Account.name, Account.id)
        )
        accounts = list(page_of(query.order_by(*order), page, page_size))
        granted = self._granted({a.id for a in accounts})
        applicants = [a.id for a in accounts if a.status == AccountStatus.PENDING]
        waiting = (
            {
                row[0]
                for row in PermissionRequest.select(PermissionRequest.account)
                .where(
                    PermissionRequest.account.in_(applicants)
                    & (PermissionRequest.status == RequestStatus.PENDING)
                )
                .tuples()
            }
            if applicants
            else set()
        )
        rows = tuple(
            self._row(
                account,
                granted.get(account.id, ()),
                now,
                cutoff,
                rejected=account.id in applicants and account.id not in waiting,
            )
            for account in accounts
        )
        return ControlPage(
            rows,
            self.warning_days,
            page=page,
            pages=pages,
            total=total,
            page_size=page_size,
        )

    def _name_condition(self, text: str) -> Any:
        by_name = contains_text(Account.name, text)
        try:
            person = clean_person_id(text)
        except ValidationFailed:
            return by_name
        return by_name | (Account.person_id_index == self.accounts.keys.blind_index(person.value))

    @staticmethod
    def _granted(account_ids: set[int]) -> dict[int, tuple[GrantedPermission, ...]]:
        if not account_ids:
            return {}
        option_names = OptionNames()
        found: dict[int, list[GrantedPermission]] = {}
        for r in requests_of(account_ids, RequestStatus.APPROVED):
            found.setdefault(r.account_id, []).append(
                GrantedPermission(
                    request_id=r.id,
                    category_code=r.category.code,
                    category_name=r.category.name,
                    category_name_en=r.category.name_en,
                    role=Role(r.role),
                    options=option_names.of(r.option_ids),
                )
            )
        return {k: tuple(v) for k, v in found.items()}

    @staticmethod
    def _row(
        account: Account,
        permissions: tuple[GrantedPermission, ...],
        now: dt.datetime,
        cutoff: dt.datetime,
        *,
        rejected: bool = False,
    ) -> ControlRow:
        status = AccountStatus(account.status)
        idle: int | None = None
        inactive = False
        if status == AccountStatus.ACTIVE:
            seen = [d for d in (account.last_login_at, account.activated_at) if d is not None]
            last = max(seen) if seen else account.created_at
            idle = max(0, (now - last).days)
            inactive = last < cutoff
        login = account.last_login_at
        return ControlRow(
            account_id=account.id,
            version=account.version,
            name=account.name,
            masked_id=account.person_id_masked,
            unit_code=account.unit.code,
            unit_name=account.unit.name,
            status=status,
            disabled_reason=account.disabled_reason,
            idle_days=idle,
            inactive=inactive,
            login_days=None if login is None else max(0, (now - login).days),
            permissions=permissions,
            rejected=rejected,
        )

    # ----- disabling ----------------------------------------------------------------

    def _check_target(self, actor_id: int, account_id: int) -> tuple[Account, Account]:
        """The actor and the account, if the actor may disable it; inside the write
        transaction, so the answer holds for the write."""
        actor = active_actor(actor_id)
        if account_id == actor_id:
            raise NotAllowed("control.error_self")
        account = locked(Account.select().where(Account.id == account_id)).first()
        if account is None:
            raise NotFound("error.account_not_found")
        grants = admin_grants(actor.id)
        if not grants:
            raise NotAllowed("control.error_not_admin")
        tree = UnitTree()
        if not is_superior_admin(grants, tree, account.unit_id):
            own = {unit for unit, _ in grants} | {actor.unit_id}
            if any(account.unit_id in tree.ancestors(unit) for unit in own):
                raise NotAllowed("control.error_superior")
            raise NotAllowed("control.error_out_of_scope")
        if account.status == AccountStatus.DELETED:
            raise NotAllowed("error.account_deleted")
        if account.status == AccountStatus.DISABLED:
            raise NotAllowed("control.error_already_disabled")
        if account.status != AccountStatus.ACTIVE:
            raise NotAllowed("control.error_not_active")
        return actor, account

    @staticmethod
    def _check_category(actor: Account, account: Account, permissions: list[Any]) -> None:
        """Each category's own administrators decide its permissions: the actor must be
        a 管理者 of the category of every one of ``permissions`` (requests, with their
        category) at a unit above the account's, and of its sub-options when their
        grant names some (管理者(COVID-19) decides no 猴痘(M痘) permission). Refused
        naming what it is not (nothing written)."""
        grants, limits = admin_scope(actor.id)
        tree = UnitTree()
        option_names = OptionNames()
        missing: list[str] = []
        for permission in permissions:
            if may_withdraw(
                grants,
                limits,
                tree,
                account.unit_id,
                permission.category_id,
                permission.option_ids,
            ):
                continue
            options = option_names.of(permission.option_ids)
            name = permission.category.name
            shown = f"{name}（{'、'.join(options)}）" if options else name
            if shown not in missing:
                missing.append(shown)
        if missing and len(permissions) == 1:
            raise NotAllowed("control.error_not_category_admin", category=missing[0])
        if missing:
            raise NotAllowed("control.error_not_every_category", categories="、".join(missing))

    def _check_whole_account(self, actor: Account, account: Account) -> None:
        """Disabling a whole account withdraws every permission it holds: the actor
        needs each one's category, or is a 疾管署 (CDC) 管理者."""
        if self.audit.is_cdc_admin(actor.id):
            return
        self._check_category(
            actor, account, list(requests_of([account.id], RequestStatus.APPROVED))
        )

    def disable_account(
        self, actor_id: int, account_id: int, expected_version: int, reason: str
    ) -> None:
        """停用帳號 by a superior unit: every permission withdrawn, the account disabled
        (its holder may apply again)."""
        note = clean_reason(reason)

        def run() -> None:
            with write_transaction():
                actor, account = self._check_target(actor_id, account_id)
                self._check_whole_account(actor, account)
                self.accounts.disable_by_superior(actor_id, account_id, expected_version, note)

        retrying(run)

    def disable_permission(
        self, actor_id: int, account_id: int, request_id: int, expected_version: int, reason: str
    ) -> bool:
        """停用權限: withdraw one granted permission. Withdrawing the last one disables
        the account, as the seed's 由上級單位停用所有系統權限. Returns True when the
        account was disabled."""
        note = clean_reason(reason)

        def run() -> bool:
            with write_transaction():
                actor, account = self._check_target(actor_id, account_id)
                if account.version != expected_version:
                    raise ConflictError(
                        "error.conflict_account", expected=expected_version, found=account.version
                    )
                request = self.granted_request(account.id, request_id)
                if request is None:
                    raise NotFound("error.permission_not_found")
                self.check_category(actor, account, request)
                return self.withdraw(actor, account, request, expected_version, note)

        return retrying(run)

    @staticmethod
    def granted_request(account_id: int, request_id: int) -> PermissionRequest | None:
        """The account's permission ``request_id`` with its category and unit, if it is
        granted now (inside the caller's transaction); None otherwise."""
        request = (
            requests_named()
            .where((PermissionRequest.id == request_id) & (PermissionRequest.account == account_id))
            .first()
        )
        return request if request is not None and request.status == RequestStatus.APPROVED else None

    def check_category(self, actor: Account, account: Account, request: PermissionRequest) -> None:
        """May ``actor`` withdraw ``request``, a permission of ``account``? The one rule of
        停用權限, which 權限定期檢閱 asks too (NotAllowed naming the category if not)."""
        self._check_category(actor, account, [request])

    def withdraw(
        self,
        actor: Account | None,
        account: Account,
        request: PermissionRequest,
        expected_version: int,
        note: str,
        *,
        cause: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> bool:
        """The write of 停用權限, inside the caller's write transaction and after its
        checks: the permission withdrawn with ``note`` and audited, and the account
        disabled with it when it was the last one (True then), as the seed's
        由上級單位停用所有系統權限. ``actor`` None is the system (an access review's
        default after its deadline): the permission then keeps ``cause``, a code its
        holder is told in words (smis_tui.services.decisions), instead of a person's
        reason. ``details`` go into the audit row besides."""
        now = utcnow()
        PermissionRequest.update(
            status=RequestStatus.REVOKED,
            decided_at=now,
            reviewer=actor.id if actor is not None else None,
            reason=note if actor is not None or cause is None else cause,
        ).where(PermissionRequest.id == request.id).execute()
        remaining = requests_of([account.id], RequestStatus.APPROVED).count()
        self.audit.record(
            "disable_permission",
            actor=actor,
            actor_label=None if actor is not None else "system",
            target_type="account",
            target_id=account.id,
            unit=account.unit_id,
            details={
                "request": request.id,
                "category": request.category.code,
                "role": request.role,
                "note": note,
                "remaining": remaining,
                **(details or {}),
            },
        )
        if remaining == 0:
            if actor is None:
                self.accounts.disable_withdrawn(account.id, expected_version, note)
            else:
                self.accounts.disable_by_superior(actor.id, account.id, expected_version, note)
            return True
        written = (
            Account.update(version=Account.version + 1, updated_at=now)
            .where((Account.id == account.id) & (Account.version == expected_version))
            .execute()
        )
        if written != 1:
            raise ConflictError(
                "error.conflict_account",
                expected=expected_version,
                found=Account.get_by_id(account.id).version,
            )
        return False

    # ----- the trail ----------------------------------------------------------------

    def own_trail(self, viewer_id: int, page: int = 1) -> TrailPage:
        return self.audit.trail_of(viewer_id, page, TRAIL_PAGE_SIZE)

    def search_trail(
        self,
        viewer_id: int,
        *,
        person_id: str = "",
        unit: str = "",
        action: str = "",
        since: str = "",
        until: str = "",
        page: int = 1,
    ) -> TrailPage:
        """軌跡紀錄查詢 (CDC 管理者 only). Dates are 民國 dates such as 113/07/26."""
        self.audit.require_cdc_admin(viewer_id)
        query = self._trail_query(person_id, unit, action, since, until)
        return self.audit.search(viewer_id, query, page, TRAIL_PAGE_SIZE)

    def export_trail(
        self,
        viewer_id: int,
        language: str,
        *,
        person_id: str = "",
        unit: str = "",
        action: str = "",
        since: str = "",
        until: str = "",
        now: dt.datetime | None = None,
    ) -> TrailExport:
        """Every row of a 軌跡紀錄查詢 as a CSV file in ``language`` (CDC 管理者 only),
        under the data directory (smis_tui.services.trail_export says why there). The
        export is itself audited: who took which search out, never the ID searched."""
        self.audit.require_cdc_admin(viewer_id)
        query = self._trail_query(person_id, unit, action, since, until)
        path, count = write_export(
            self.settings.data_dir,
            self.audit.export_rows(viewer_id, query),
            language,
            viewer_id,
            now or utcnow(),
        )

        def run() -> None:
            with write_transaction():
                actor = active_actor(viewer_id)
                self.audit.record(
                    "export_trail",
                    actor=actor,
                    target_type="file",
                    target_id=path.name,
                    unit=actor.unit_id,
                    details={
                        "rows": count,
                        "by_person": query.account_id is not None,
                        "unit": query.unit,
                        "action": query.action,
                        "since": query.since.isoformat() if query.since else "",
                        "until": query.until.isoformat() if query.until else "",
                    },
                )

        try:
            retrying(run)
        except BaseException:
            path.unlink(missing_ok=True)  # an export nobody can account for is not kept
            raise
        return TrailExport(path, count)

    def _trail_query(
        self, person_id: str, unit: str, action: str, since: str, until: str
    ) -> TrailQuery:
        errors: dict[str, Phrase | str] = {}
        account_id: int | None = None
        if person_id.strip():
            try:
                person = clean_person_id(person_id)
            except ValidationFailed as exc:
                errors.update(exc.messages)
            else:
                found = Account.get_or_none(
                    Account.person_id_index == self.accounts.keys.blind_index(person.value)
                )
                account_id = found.id if found is not None else 0  # 0: nobody, no rows
        first = self._date(errors, "since", since, t("trail.since"))
        last = self._date(errors, "until", until, t("trail.until"))
        if first is not None and last is not None and first > last:
            errors["until"] = Phrase("trail.error_date_order")
        if errors:
            raise ValidationFailed(errors)
        return TrailQuery(
            account_id=account_id, unit=unit.strip(), action=action, since=first, until=last
        )

    @staticmethod
    def _date(errors: dict[str, Phrase | str], key: str, text: str, label: str) -> dt.date | None:
        if not text.strip():
            return None
        try:
            return from_roc(text, field=label)
        except RocDateError as exc:
            errors[key] = str(exc)
            return None

    def verify_trail(self, viewer_id: int) -> VerifyResult:
        """`smis-tui audit verify`, for a CDC 管理者."""
        self.audit.require_cdc_admin(viewer_id)
        return self.audit.verify()
