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

REFUSED_LOGIN = "login_refused"
# Of a card that stands for nobody, the trail keeps this much of its certificate's
# SHA-256: enough to tell cards apart, nothing of the holder.
CARD_PREFIX = 16


class RefusedWhy(enum.StrEnum):
    """Why a login was refused, as 軌跡紀錄 records it."""

    WRONG_PIN = "wrong_pin"
    PIN_BLOCKED = "pin_blocked"
    DISABLED = "disabled"
    PENDING = "pending"
    REJECTED = "rejected"
    UNKNOWN_CARD = "unknown_card"


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

    def record_refusal(
        self,
        why: RefusedWhy,
        *,
        account_id: int | None,
        card_kind: str,
        cert_sha256: str,
        tries_left: int | None = None,
    ) -> None:
        """A refused login, for the trail. Never the PIN nor any part of a person ID:
        the account the card is bound to (whose holder the screen told as much), or,
        for a card bound to nobody, the start of its certificate's fingerprint — never
        the account of an ID typed with it, so the trail says no more about an ID
        than the screen did."""
        details: dict[str, object] = {"why": str(why), "card_kind": card_kind}
        if account_id is None:
            details["card"] = cert_sha256[:CARD_PREFIX]
        if tries_left is not None and tries_left >= 0:
            details["tries_left"] = tries_left

        def run() -> None:
            with write_transaction():
                unit = (
                    Account.select(Account.unit).where(Account.id == account_id).scalar()
                    if account_id is not None
                    else None
                )
                self.accounts.audit.record(
                    REFUSED_LOGIN,
                    actor=None,
                    actor_label=self.accounts.session_label,
                    target_type="account" if account_id is not None else "card",
                    target_id=account_id if account_id is not None else cert_sha256[:CARD_PREFIX],
                    unit=unit,
                    details=details,
                )

        retrying(run)

    def record_outcome(self, outcome: LoginOutcome, card_kind: str, cert_sha256: str) -> None:
        """The trail's row of a login that ended on a refusal (nothing for ACTIVE: the
        login wrote its own row)."""
        if outcome.state == LoginState.ACTIVE:
            return
        if outcome.state == LoginState.DISABLED:
            why = RefusedWhy.DISABLED
        elif outcome.state == LoginState.PENDING:
            why = RefusedWhy.PENDING
        elif outcome.account_id is not None:
            why = RefusedWhy.REJECTED
        else:
            why = RefusedWhy.UNKNOWN_CARD
        account_id = outcome.account_id if why != RefusedWhy.UNKNOWN_CARD else None
        self.record_refusal(
            why, account_id=account_id, card_kind=card_kind, cert_sha256=cert_sha256
        )

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
        # One moment for every run: a run again after a COMMIT whose answer was lost
        # finds it as the account's last login, and records nothing twice.
        moment = now or utcnow()
        runs: list[bool] = []

        def enter() -> LoginOutcome:
            runs.append(True)
            return self._enter(account.id, moment, again=len(runs) > 1)

        return retrying(enter)

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

    def _enter(self, account_id: int, now: dt.datetime, *, again: bool = False) -> LoginOutcome:
        """The login of an active account at ``now``; ``again`` when an earlier run of
        the same login may have committed without the answer coming back."""
        with write_transaction():
            account = prepared.get(
                "account_by_id",
                locked(Account.select().where(Account.id == slot(0)).limit(1)),
                (account_id,),
            )
            if account.status != AccountStatus.ACTIVE:
                return self._outcome(account, now)
            if again and account.last_login_at == Account.last_login_at.python_value(
                Account.last_login_at.db_value(now)
            ):
                return LoginOutcome(LoginState.ACTIVE, account.id)
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
                (Account.last_login_at.db_value(now), account.id),
            )
            self.accounts.audit.record(
                "login",
                actor=account,
                target_type="account",
                target_id=account.id,
                unit=account.unit_id,
            )
            return LoginOutcome(LoginState.ACTIVE, account.id)
