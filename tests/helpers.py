"""Builders shared by the service tests."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import itertools
import secrets
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from card.identity import CardIdentity, CardKind
from card.sim.testpki import self_signed_certificate
from models.db import database_proxy, write_transaction
from models.schema import Account, AuditEvent, Category, PermissionRequest, Unit, utcnow
from smis_tui.core.domain import AccountStatus, RequestStatus, Role, UnitKind
from smis_tui.core.identifiers import generate_national_id
from smis_tui.services import Services
from smis_tui.services.accounts import ApplicationForm, RoleChoice
from smis_tui.services.card_proof import CardProof
from smis_tui.services.units import UnitDirectory
from smis_tui.text.consent import CURRENT_STATEMENT_SHA256

_serials = itertools.count(1000)


def new_person_id() -> str:
    return generate_national_id("A", 1, next(_serials))


def categories_of(unit: Unit) -> set[str]:
    """Codes of the categories the unit handles."""
    return UnitDirectory().categories_of(unit.id)


def unit_of_kind(
    kind: UnitKind, *, with_category: str | None = None, without: str | None = None
) -> Unit:
    query = Unit.select().where((Unit.kind == kind) & Unit.active).order_by(Unit.code)
    for unit in query:
        codes = categories_of(unit)
        if with_category and with_category not in codes:
            continue
        if without and without in codes:
            continue
        return unit
    raise LookupError(f"no {kind} unit with {with_category} without {without}")


def child_of(parent: Unit, kind: UnitKind | None = None) -> Unit:
    query = Unit.select().where(Unit.parent == parent)
    if kind is not None:
        query = query.where(Unit.kind == kind)
    unit = query.order_by(Unit.code).first()
    assert unit is not None, f"{parent.name} has no child units"
    return unit


def other_bureau(than: Unit) -> Unit:
    """The first health bureau of another county than ``than``'s."""
    unit = (
        Unit.select()
        .where((Unit.kind == UnitKind.HEALTH_BUREAU) & (Unit.county != than.county))
        .order_by(Unit.code)
        .first()
    )
    assert unit is not None
    return unit


def branch() -> dict[str, Unit]:
    """CDC → regional centre → bureau → health centre → clinic, one real branch."""
    clinic = unit_of_kind(UnitKind.CLINIC, with_category="ppe")
    centre = Unit.get_by_id(clinic.parent_id)
    bureau = Unit.get_by_id(centre.parent_id)
    region = Unit.get_by_id(bureau.parent_id)
    cdc = Unit.get_by_id(region.parent_id)
    assert cdc.kind == UnitKind.CDC
    return {"cdc": cdc, "region": region, "bureau": bureau, "centre": centre, "clinic": clinic}


@functools.cache
def _any_certificate() -> x509.Certificate:
    """One real certificate for every test card: the account service reads only the
    identity's kind, name, ID hint and fingerprint, never the certificate itself."""
    return self_signed_certificate(ec.generate_private_key(ec.SECP256R1()), "測試卡")


def card_identity(
    person_id: str, name: str = "王小明", kind: CardKind = CardKind.HPC
) -> CardIdentity:
    """A card of ``person_id``'s holder as its certificate shows it, a different card
    (fingerprint) at each call: a 醫事人員卡 carries the full ID, a 自然人憑證 its last 4
    digits, a PIV card none."""
    hint = {CardKind.HPC: person_id, CardKind.MOICA: person_id[-4:]}.get(kind)
    now = dt.datetime.now(dt.UTC)
    return CardIdentity(
        kind=kind,
        name=name,
        id_hint=hint,
        cert_sha256=secrets.token_hex(32),
        not_before=now - dt.timedelta(days=1),
        not_after=now + dt.timedelta(days=365),
        certificate=_any_certificate(),
    )


def card_proof(
    services: Services, person_id: str, name: str = "王小明", kind: CardKind = CardKind.HPC
) -> CardProof:
    """A card of ``person_id``'s holder that has just signed our challenge, as card
    login would hand it to the account service. A 自然人憑證 must carry the name of the
    form it sends (``form``'s default is 王小明)."""
    return services.accounts.proofs.issue(card_identity(person_id, name, kind))


def owner_proof(services: Services, account_id: int) -> CardProof:
    """The proof of a 醫事人員卡 of an existing account's holder (it carries the full ID,
    so the account's stored name does not matter)."""
    return card_proof(services, services.accounts.person_id_for(account_id))


def form(
    person_id: str,
    unit: Unit,
    roles: dict[str, RoleChoice] | None = None,
    **overrides: object,
) -> ApplicationForm:
    values: dict[str, object] = {
        "person_id": person_id,
        "unit_code": unit.code,
        "name": "王小明",
        "phone": "02-23959825#1234",
        "email": "wang@example.tw",
        "roles": roles if roles is not None else {"ppe": RoleChoice(Role.OFFICER)},
        "consent_sha256": CURRENT_STATEMENT_SHA256,
    }
    values.update(overrides)
    return ApplicationForm(**values)  # type: ignore[arg-type]


def send_application(services: Services, application: ApplicationForm) -> int:
    """``application`` sent with a fresh 醫事人員卡 of its applicant: the account id."""
    proof = card_proof(services, application.person_id, application.name)
    return services.accounts.apply(application, proof)


def apply_for(
    services: Services,
    unit: Unit,
    role: Role = Role.OFFICER,
    category: str = "ppe",
    **overrides: object,
) -> tuple[int, int]:
    """A new applicant asking for ``role`` in ``category``: (account id, request id)."""
    person_id = new_person_id()
    account_id = services.accounts.apply(
        form(person_id, unit, {category: RoleChoice(role)}, **overrides),
        card_proof(services, person_id),
    )
    return account_id, services.accounts.view(account_id).pending()[0].id


def approved_applicant(
    services: Services,
    unit: Unit,
    approver_id: int,
    roles: dict[str, RoleChoice] | None = None,
    *,
    person_id: str | None = None,
    **overrides: object,
) -> int:
    """A new applicant whose every request ``approver_id`` approved: an active account."""
    person_id = person_id or new_person_id()
    account_id = services.accounts.apply(
        form(person_id, unit, roles, **overrides), card_proof(services, person_id)
    )
    for request in services.accounts.view(account_id).pending():
        services.review.approve(approver_id, request.id)
    assert Account.get_by_id(account_id).status == AccountStatus.ACTIVE
    return account_id


def grant(
    account_id: int,
    unit: Unit,
    category: str,
    role: Role,
    status: RequestStatus = RequestStatus.APPROVED,
    *,
    revision: int = 1,
) -> PermissionRequest:
    """A request written straight to the database (inside the caller's transaction),
    decided now unless ``status`` is pending."""
    now = utcnow()
    return PermissionRequest.create(
        account=account_id,
        unit=unit,
        category=Category.get(Category.code == category),
        role=role,
        status=status,
        revision=revision,
        submitted_at=now,
        decided_at=None if status == RequestStatus.PENDING else now,
    )


def own_request(account: Account, unit: Unit, role: Role, category: str = "ppe") -> int:
    """A pending request an account already holding a role has made besides: the id."""
    with write_transaction():
        return int(grant(account.id, unit, category, role, RequestStatus.PENDING, revision=2).id)


def bare_account(
    services: Services, unit: Unit, status: AccountStatus, category: str = "ppe"
) -> int:
    """An account at ``unit`` with no requests, in ``status`` (it applied for a
    ``category`` the unit handles, and the request was taken away)."""
    account_id = apply_for(services, unit, Role.VIEWER, category)[0]
    with write_transaction():
        PermissionRequest.delete().where(PermissionRequest.account == account_id).execute()
        Account.update(status=status).where(Account.id == account_id).execute()
    return account_id


def make_admin(services: Services, unit: Unit, categories: list[str] | None = None) -> Account:
    """An active 管理者 of the given categories at the unit (all categories by default)."""
    account_id = bare_account(services, unit, AccountStatus.PENDING)
    with write_transaction():
        for code in categories or [c.code for c in Category.select()]:
            grant(account_id, unit, code, Role.ADMIN)
        Account.update(status=AccountStatus.ACTIVE, activated_at=utcnow()).where(
            Account.id == account_id
        ).execute()
    return Account.get_by_id(account_id)


def set_idle(account_id: int, days: int) -> None:
    """The account last logged in, and was activated, ``days`` days ago."""
    long_ago = utcnow() - dt.timedelta(days=days)
    with write_transaction():
        Account.update(last_login_at=long_ago, activated_at=long_ago).where(
            Account.id == account_id
        ).execute()


def audited_applications(services: Services, names: str) -> list[int]:
    """One application at a clinic per character of ``names`` (the applicant's name):
    the ids of the audit rows they wrote, in a chain that verifies — two each, the
    binding of the applicant's card and the application."""
    clinic = unit_of_kind(UnitKind.CLINIC, with_category="ppe")
    for name in names:
        person_id = new_person_id()
        services.accounts.apply(form(person_id, clinic, name=name), card_proof(services, person_id))
    ids = [e.id for e in AuditEvent.select().order_by(AuditEvent.id)]
    assert len(ids) == 2 * len(names) and services.audit.verify().ok
    return ids


def execute_sql(statement: str, params: tuple[object, ...] = ()) -> None:
    """Raw SQL with ``?`` placeholders, on SQLite or PostgreSQL: what a person with
    access to the database could do behind the services' back."""
    db = database_proxy.obj
    placeholder = "%s" if "Postgres" in type(db).__name__ else "?"
    db.execute_sql(statement.replace("?", placeholder), params)


# ----- SoftHSM2 tokens standing in for the cards' PKCS#11 module ------------------------


@dataclass(frozen=True)
class SoftToken:
    """A SoftHSM2 token holding one card's key and certificate (CKA_ID 01, label SIGN)."""

    module: str
    label: str
    serial: str


def _softhsm_serials(module: str) -> set[str]:
    import pkcs11

    lib = pkcs11.lib(module)
    lib.reinitialize()  # SoftHSM2 only sees tokens that existed at C_Initialize
    return {token.serial.decode().strip() for token in lib.get_tokens()}


def softhsm_card_token(
    module: str, key_path: Path, cert_der: bytes, pin: str, *, label: str, so_pin: str
) -> SoftToken:
    """A new SoftHSM2 token labelled ``label`` with user PIN ``pin``, holding the key at
    ``key_path`` and its certificate as a public object, as a card's token in the vendor's
    module holds them."""
    import pkcs11
    from cryptography import x509
    from pkcs11 import Attribute, CertificateType, ObjectClass

    before = _softhsm_serials(module)
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", label]
        + ["--pin", pin, "--so-pin", so_pin],
        check=True,
        capture_output=True,
        timeout=60,
    )
    (serial,) = _softhsm_serials(module) - before
    subprocess.run(
        ["softhsm2-util", "--import", str(key_path), "--serial", serial]
        + ["--label", "SIGN", "--id", "01", "--pin", pin],
        check=True,
        capture_output=True,
        timeout=60,
    )
    lib = pkcs11.lib(module)
    lib.reinitialize()
    (token,) = [t for t in lib.get_tokens() if t.serial.decode().strip() == serial]
    with token.open(rw=True, user_pin=pin) as session:
        session.create_object(
            {
                Attribute.CLASS: ObjectClass.CERTIFICATE,
                Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
                Attribute.TOKEN: True,
                Attribute.LABEL: "SIGN",
                Attribute.ID: b"\x01",
                Attribute.SUBJECT: x509.load_der_x509_certificate(cert_der).subject.public_bytes(),
                Attribute.VALUE: cert_der,
            }
        )
    return SoftToken(module, label, serial)


def delete_softhsm_token(token: SoftToken) -> None:
    subprocess.run(
        ["softhsm2-util", "--delete-token", "--serial", token.serial],
        check=True,
        capture_output=True,
        timeout=60,
    )


def token_flags(token: SoftToken) -> int:
    """The token's flags as the module reports them now (CKF_USER_PIN_COUNT_LOW is set
    after a failed C_Login)."""
    import pkcs11

    lib = pkcs11.lib(token.module)
    lib.reinitialize()
    for found in lib.get_tokens():
        if found.serial.decode().strip() == token.serial:
            return int(found.flags)
    raise LookupError(f"no token {token.serial}")


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Fail the test (instead of hanging the suite) if it runs longer than ``seconds``."""

    def expired(signum: int, frame: object) -> None:
        pytest.fail(f"test still running after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
