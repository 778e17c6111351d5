"""Demo data for `make run`: a test PKI, demo accounts in each state, and virtual
cards for them whose PINs the demo shows. Never used outside `--demo`."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from card.identity import identity_from_certificate
from card.sim.testpki import PkiUser, make_test_pki
from card.sim.virtual import VirtualPivCard
from models.db import write_transaction
from models.purpose import require_demo_database
from models.schema import Account, Category, Meta, Role, Unit, UnitCategory, UnitKind, utcnow
from smis_tui.core.domain import AccountStatus, RequestStatus
from smis_tui.services import Services
from smis_tui.services.accounts import ApplicationForm, PersonalData, RoleChoice
from smis_tui.services.bootstrap import bootstrap_admin
from smis_tui.text.consent import CURRENT_STATEMENT_SHA256

DEMO_KEY = "demo_cards"


@dataclass(frozen=True)
class DemoCard:
    user: str  # the test PKI user whose certificate and key the card holds
    label: str  # what the card demonstrates
    holder: str
    kind: str
    pin: str


# (PKI user, what it shows, PIN)
_CARDS = (
    ("hpc", "疾管署管理者（各類別）", "111111"),
    ("moica", "已啟用的承辦人", "222222"),
    ("moica2", "申請審核中", "333333"),
    ("hpc2", "已停用（180 天未登入）", "444444"),
    ("expired", "憑證已過期", "555555"),
    ("revoked", "憑證已廢止", "666666"),
    ("untrusted", "簽發單位不受信任", "777777"),
    ("not_yet_valid", "憑證尚未生效", "888888"),
    ("expiring", "憑證即將到期（仍可登入）", "999999"),
    ("org", "醫事機構憑證（非個人卡）", "121212"),
    ("newcomer", "尚無帳號（可申請新帳號）", "131313"),
)

# The account state each card was made to show, for the cards whose label is about
# their account: when the account has moved on (an application approved or rejected,
# an account disabled or applied for), the list names the state it is in now. The
# other cards show facts about the card itself, which no review changes.
ACCOUNT_CASES: dict[str, str] = {
    "hpc": "active",
    "moica": "active",
    "moica2": "pending",
    "hpc2": "disabled",
    "newcomer": "none",
}


def _first_unit(kind: UnitKind, category: str) -> Unit:
    unit = (
        Unit.select()
        .join(UnitCategory)
        .join(Category)
        .where((Unit.kind == kind) & Unit.active & (Category.code == category))
        .order_by(Unit.code)
        .first()
    )
    assert unit is not None, f"no {kind} unit handles {category}"
    return unit


def _apply(services: Services, user: PkiUser, unit: Unit, roles: dict[str, RoleChoice]) -> int:
    """The demo card holder applies with their card, which the application binds. The
    demo set-up stands in for the card's signature: it made the card itself."""
    proof = services.accounts.proofs.issue(identity_from_certificate(user.certificate))
    return services.accounts.apply(
        ApplicationForm(
            person_id=user.person_id,
            unit_code=unit.code,
            name=user.cn,
            phone="02-23959825#1234",
            email=f"{user.name}@demo.example.tw",
            mobile="0912-345-678",
            roles=roles,
            consent_sha256=CURRENT_STATEMENT_SHA256,
        ),
        proof,
    )


def create_demo(services: Services, directory: Path) -> list[DemoCard]:
    """Create the demo once (idempotent); returns the demo cards. Only in a database
    made for the demo (models.purpose): raises NotADemoDatabase otherwise."""
    require_demo_database()
    existing = load_demo_cards()
    if existing:
        return existing
    pki = make_test_pki(directory)
    admin_user = pki.user("hpc")
    admin_id = bootstrap_admin(
        services.accounts,
        identity_from_certificate(admin_user.certificate),
        admin_user.person_id,
        PersonalData(admin_user.cn, "02-23959825", "admin@demo.example.tw", "", "", ""),
    )
    clinic = _first_unit(UnitKind.CLINIC, "ppe")
    bureau = _first_unit(UnitKind.HEALTH_BUREAU, "emerging")
    hospital = _first_unit(UnitKind.HOSPITAL, "ppe")

    officer = _apply(
        services,
        pki.user("moica"),
        clinic,
        {"ppe": RoleChoice(Role.OFFICER), "flu_antiviral": RoleChoice(Role.VIEWER)},
    )
    _apply(
        services,
        pki.user("moica2"),
        bureau,
        {"ppe": RoleChoice(Role.ADMIN), "emerging": RoleChoice(Role.ADMIN, ("COVID-19",))},
    )
    disabled = _apply(services, pki.user("hpc2"), hospital, {"ppe": RoleChoice(Role.OFFICER)})
    expired = _apply(services, pki.user("expired"), clinic, {"ppe": RoleChoice(Role.VIEWER)})
    expiring = _apply(services, pki.user("expiring"), hospital, {"ppe": RoleChoice(Role.VIEWER)})
    for account_id in (officer, disabled, expired, expiring):
        for request in services.accounts.view(account_id).pending():
            services.review.approve(admin_id, request.id)
    long_ago = utcnow() - dt.timedelta(days=services.settings.inactive_days + 20)
    with write_transaction():
        Account.update(last_login_at=long_ago, activated_at=long_ago).where(
            Account.id == disabled
        ).execute()
    services.accounts.run_maintenance()

    cards = [
        DemoCard(name, label, pki.user(name).cn, str(pki.user(name).kind or "org"), pin)
        for name, label, pin in _CARDS
    ]
    with write_transaction():
        Meta.insert(
            key=DEMO_KEY,
            value=json.dumps(
                {"pki": str(directory), "cards": [asdict(c) for c in cards]}, ensure_ascii=False
            ),
        ).execute()
    return cards


def load_demo_cards() -> list[DemoCard]:
    row = Meta.get_or_none(Meta.key == DEMO_KEY)
    if row is None:
        return []
    return [DemoCard(**card) for card in json.loads(row.value)["cards"]]


def demo_pki_dir() -> Path | None:
    row = Meta.get_or_none(Meta.key == DEMO_KEY)
    return Path(json.loads(row.value)["pki"]) if row is not None else None


class DemoVirtualCard(VirtualPivCard):
    """A virtual card that knows which demo card it is, so that the demo's list can
    mark the one in the reader."""

    def __init__(
        self,
        user: str,
        certificate_der: bytes,
        private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
        pin: str,
    ) -> None:
        super().__init__(certificate_der, private_key, pin)
        self.demo_user = user


def virtual_card(pki_dir: Path, card: DemoCard) -> DemoVirtualCard:
    """The demo card, loaded from the demo PKI written by :func:`create_demo`."""
    users = pki_dir / "users"
    cert = x509.load_pem_x509_certificate((users / f"{card.user}.pem").read_bytes())
    key = serialization.load_pem_private_key(
        (users / f"{card.user}.key.pem").read_bytes(), password=None
    )
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError(f"demo card {card.user}: unsupported key type")
    return DemoVirtualCard(card.user, cert.public_bytes(serialization.Encoding.DER), key, card.pin)


def demo_user_in(card: object) -> str | None:
    """The PKI user of the demo card ``card`` (what a reader holds), or None when it
    is no demo card."""
    return card.demo_user if isinstance(card, DemoVirtualCard) else None


def account_case(services: Services, pki_dir: Path, user: str) -> str:
    """The state of the account bound to the demo card of ``user``, as the demo's list
    names it: none, pending, rejected, active or disabled. Reads only."""
    pem = (pki_dir / "users" / f"{user}.pem").read_bytes()
    account = services.accounts.find_by_certificate(identity_from_certificate(pem).cert_sha256)
    if account is None or account.status == AccountStatus.DELETED:
        return "none"
    if account.status != AccountStatus.PENDING:
        return str(account.status)
    requests = services.accounts.view(account.id).requests
    if any(request.status == RequestStatus.PENDING for request in requests):
        return "pending"
    if any(request.status == RequestStatus.REJECTED for request in requests):
        return "rejected"
    return "none"


def changed_cases(
    services: Services, pki_dir: Path, cards: Sequence[DemoCard]
) -> tuple[str | None, ...]:
    """Per card, the state its account is in now where that is no longer the state the
    card's own label describes; None where the label still holds."""
    changed: list[str | None] = []
    for card in cards:
        made_for = ACCOUNT_CASES.get(card.user)
        now = account_case(services, pki_dir, card.user) if made_for else None
        changed.append(now if now != made_for else None)
    return tuple(changed)
