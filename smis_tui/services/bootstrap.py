"""`smis-tui admin bootstrap`: the first CDC 管理者 of every category, bound to a card
certificate, so that someone can review the first applications."""

from __future__ import annotations

from pathlib import Path

from card.errors import CardProtocolError
from card.identity import CardIdentity, identity_from_certificate
from models.db import write_transaction
from models.schema import Account, CardBinding, Category, PermissionRequest, Unit, utcnow
from smis_tui.core.domain import AccountStatus, RequestStatus, Role, UnitKind
from smis_tui.services.accounts import (
    AccountService,
    PersonalData,
    checked_personal_data,
    clean_person_id,
)
from smis_tui.services.errors import NotAllowed


class CertificateFileError(ValueError):
    pass


def read_certificate(path: Path) -> CardIdentity:
    """The card identity of a certificate file (PEM or DER), as a login would see it."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CertificateFileError(f"無法讀取憑證檔 {path}：{exc.strerror}") from None
    try:
        return identity_from_certificate(raw)
    except CardProtocolError:
        raise CertificateFileError(f"憑證檔 {path} 不是 PEM 或 DER 格式的 X.509 憑證") from None


def bootstrap_admin(
    accounts: AccountService,
    cert: CardIdentity,
    person_id: str,
    data: PersonalData,
) -> int:
    person = clean_person_id(person_id)
    clean = checked_personal_data(data)
    with write_transaction():
        cdc = Unit.get_or_none(Unit.kind == UnitKind.CDC)
        if cdc is None:
            raise NotAllowed("error.unit_unknown")
        exists = (
            PermissionRequest.select()
            .where(
                (PermissionRequest.unit == cdc)
                & (PermissionRequest.role == Role.ADMIN)
                & (PermissionRequest.status == RequestStatus.APPROVED)
            )
            .exists()
        )
        if exists:
            raise NotAllowed("error.bootstrap_exists")
        if CardBinding.get_or_none(CardBinding.cert_sha256 == cert.cert_sha256) is not None:
            raise NotAllowed("error.card_bound_elsewhere")
        if Account.get_or_none(Account.person_id_index == accounts.keys.blind_index(person.value)):
            raise NotAllowed("error.account_active")
        now = utcnow()
        account = Account.create(
            person_id_cipher=None,
            person_id_index=accounts.keys.blind_index(person.value),
            person_id_masked=person.masked(),
            person_id_kind=str(person.kind),
            unit=cdc,
            status=AccountStatus.ACTIVE,
            activated_at=now,
            **vars(clean),
        )
        accounts.seal_person_id(account, person.value)
        for category in Category.select().order_by(Category.sort_order):
            PermissionRequest.create(
                account=account,
                unit=cdc,
                category=category,
                role=Role.ADMIN,
                option_ids="",
                status=RequestStatus.APPROVED,
                revision=account.version,
                submitted_at=now,
                decided_at=now,
                reason="bootstrap",
            )
        CardBinding.create(account=account, cert_sha256=cert.cert_sha256, card_kind=str(cert.kind))
        accounts.audit.record(
            "bootstrap_admin",
            actor=None,
            actor_label="cli",
            target_type="account",
            target_id=account.id,
            unit=cdc,
            details={"cert_sha256": cert.cert_sha256, "card_kind": str(cert.kind)},
        )
        return int(account.id)
