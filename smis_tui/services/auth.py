"""Login outcomes once the card has been verified: which account, and what the kiosk
tells the person. The 180-day rule is checked at every login (docs/architecture.md,
"Lifecycle")."""

from __future__ import annotations

import datetime as dt
import enum
import json
from dataclasses import dataclass, replace

from models.db import locked, retrying, write_transaction
from models.schema import (
    Account,
    AccountStatus,
    AuditEvent,
    DisabledReason,
    PermissionRequest,
    RequestStatus,
    Unit,
    utcnow,
)
from smis_tui.services import prepared
from smis_tui.services.accounts import AccountService
from smis_tui.services.prepared import slot


class LoginState(enum.StrEnum):
    NO_ACCOUNT = "no_account"  # 登入失敗，員工檔無資料或帳號未啟用
    PENDING = "pending"  # the same message, plus the pending hint
    DISABLED = "disabled"  # 您的帳號已停用，請點選「確定」重新申請帳號。
    ACTIVE = "active"


@dataclass(frozen=True)
class LoginOutcome:
    state: LoginState
    account_id: int | None = None
    pending_since: dt.datetime | None = None
    disabled_reason: str | None = None
    # Why, said in one line under the manual's sentence: the days without a login, or
    # the superior unit that disabled the account and the reason it gave.
    inactive_days: int = 0
    disabled_by_unit: str = ""
    disabled_note: str = ""
    rejected_reason: str = ""

    @property
    def message_key(self) -> str | None:
        return {
            LoginState.NO_ACCOUNT: "login.no_account",
            LoginState.PENDING: "login.no_account",
            LoginState.DISABLED: "login.disabled",
            LoginState.ACTIVE: None,
        }[self.state]


class LoginService:
    def __init__(self, accounts: AccountService) -> None:
        self.accounts = accounts

    def outcome_for_person(self, person_id: str, now: dt.datetime | None = None) -> LoginOutcome:
        return self._outcome(self.accounts.find_by_person_id(person_id), now)

    def outcome_for_certificate(
        self, cert_sha256: str, now: dt.datetime | None = None
    ) -> LoginOutcome:
        return self._outcome(self.accounts.find_by_certificate(cert_sha256), now)

    def _outcome(self, account: Account | None, now: dt.datetime | None) -> LoginOutcome:
        if account is None or account.status == AccountStatus.DELETED:
            return LoginOutcome(LoginState.NO_ACCOUNT)
        if account.status == AccountStatus.DISABLED:
            return self._disabled(account.id, account.disabled_reason)
        if account.status == AccountStatus.PENDING:
            pending = prepared.first(
                "login_pending_since",
                PermissionRequest.select(PermissionRequest.submitted_at)
                .where(
                    (PermissionRequest.account == slot(0))
                    & (PermissionRequest.status == RequestStatus.PENDING)
                )
                .order_by(PermissionRequest.submitted_at)
                .limit(1),
                (account.id,),
            )
            if pending is not None:
                return LoginOutcome(
                    LoginState.PENDING, account.id, pending_since=pending.submitted_at
                )
            rejected = prepared.first(
                "login_rejected_reason",
                PermissionRequest.select(PermissionRequest.reason)
                .where(
                    (PermissionRequest.account == slot(0))
                    & (PermissionRequest.status == RequestStatus.REJECTED)
                )
                .order_by(PermissionRequest.decided_at.desc())
                .limit(1),
                (account.id,),
            )
            return LoginOutcome(
                LoginState.NO_ACCOUNT,
                account.id,
                rejected_reason=rejected.reason if rejected else "",
            )
        return retrying(lambda: self._enter(account.id, now))

    def _disabled(self, account_id: int, reason: str | None) -> LoginOutcome:
        outcome = LoginOutcome(
            LoginState.DISABLED,
            account_id,
            disabled_reason=reason,
            inactive_days=self.accounts.settings.inactive_days,
        )
        if reason != DisabledReason.SUPERIOR:
            return outcome
        # The superior unit's act is in the audit trail: its 管理者 (and so the unit)
        # and the reason given.
        event = (
            AuditEvent.select(AuditEvent.actor, AuditEvent.details)
            .where(
                (AuditEvent.action == "disable_account")
                & (AuditEvent.target_type == "account")
                & (AuditEvent.target_id == str(account_id))
            )
            .order_by(AuditEvent.id.desc())
            .first()
        )
        if event is None:
            return outcome
        unit = (
            Unit.select(Unit.name)
            .join(Account, on=Account.unit == Unit.id)
            .where(Account.id == event.actor_id)
            .scalar()
        )
        note = json.loads(event.details or "{}").get("note", "")
        return replace(outcome, disabled_by_unit=unit or "", disabled_note=str(note or ""))

    def _enter(self, account_id: int, now: dt.datetime | None) -> LoginOutcome:
        with write_transaction():
            account = prepared.get(
                "account_by_id",
                locked(Account.select().where(Account.id == slot(0)).limit(1)),
                (account_id,),
            )
            if account.status != AccountStatus.ACTIVE:
                return self._outcome(account, now)
            if self.accounts.is_inactive(account, now):
                self.accounts._disable(
                    account,
                    account.version,
                    DisabledReason.INACTIVE,
                    None,
                    f"{self.accounts.settings.inactive_days} 天未登入",
                )
                return self._disabled(account.id, DisabledReason.INACTIVE)
            # A login is not an edit: it leaves the version alone so it never makes
            # someone's open form stale.
            prepared.rows_changed(
                "login_time",
                Account.update(last_login_at=slot(0)).where(Account.id == slot(1)),
                (Account.last_login_at.db_value(now or utcnow()), account.id),
            )
            self.accounts.audit.record(
                "login",
                actor=account,
                target_type="account",
                target_id=account.id,
                unit=account.unit_id,
            )
            return LoginOutcome(LoginState.ACTIVE, account.id)
