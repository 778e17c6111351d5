"""Login end to end through real components: pyscard → pcscd → vsmartcard-vpcd →
virtual card; PIV signs on the card, HiCOS signs through SoftHSM2 as its PKCS#11
module. On SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from pkcs11 import TokenFlag

from card.errors import (
    CardMiddlewareNeeded,
    CardRemoved,
    PinBlocked,
    ReaderTokenUnknown,
    WrongPin,
)
from card.identity import CardKind
from card.readers.pcsc import PcscBackend
from card.readers.pkcs11 import HICOS_TOKEN_LABEL, Pkcs11Signer
from card.signing import UNBLOCK_AT
from card.sim.hicos_gen2 import VirtualHicosGen2Card
from card.sim.testpki import PkiUser, TestPki, make_test_pki
from card.sim.virtual import CardWrapper, VirtualHicosCard, VirtualPivCard
from card.sim.vpcd import VpcdCard
from card.validation import CertificateValidator
from models.db import database_proxy
from models.schema import AuditEvent, Role, UnitKind
from smis_tui.core.config import Settings
from smis_tui.services import Services
from smis_tui.services.accounts import RoleChoice
from smis_tui.services.auth import LoginState
from smis_tui.services.card_login import CardLoginService
from tests.helpers import (
    SoftToken,
    delete_softhsm_token,
    form,
    make_admin,
    send_application,
    softhsm_card_token,
    token_flags,
    unit_of_kind,
)
from tests.integration.test_pcsc import (
    READER_0,
    READER_1,
    pcscd_ctl,
    plug,
    present,
    unplug,
    wait_until,
)
from tests.integration.test_pkcs11 import SO_PIN, pkcs11_module

PIN = "135790"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


def hicos_token_of(user: PkiUser) -> tuple[str, str]:
    """A SoftHSM2 token holding ``user``'s signing key and certificate, as the HiCOS
    module holds the card's: (module, label)."""
    label = f"smis-{uuid.uuid4().hex[:8]}"
    token = softhsm_card_token(
        pkcs11_module(), user.key_path, user.cert_der, PIN, label=label, so_pin=SO_PIN
    )
    return token.module, token.label


@pytest.fixture(scope="module")
def hicos_token(pki: TestPki) -> tuple[str, str]:
    return hicos_token_of(pki.user("hpc"))


def approved(services: Services, user: PkiUser) -> int:
    clinic = unit_of_kind(UnitKind.CLINIC, with_category="ppe")
    admin = make_admin(services, unit_of_kind(UnitKind.CDC))
    account_id = send_application(
        services, form(user.person_id, clinic, {"ppe": RoleChoice(Role.OFFICER)})
    )
    services.review.approve(admin.id, services.accounts.view(account_id).pending()[0].id)
    return account_id


def bind_on_first_login(
    logins: CardLoginService, reader: str, user: PkiUser, account_id: int
) -> None:
    """The user's first login at ``reader``: the card is read, one wrong PIN is
    refused, then the right PIN and the person id bind the card to ``account_id``."""
    assert logins.read(reader).identity.name == user.cn
    with pytest.raises(WrongPin) as wrong:
        logins.authenticate(reader, "000000")
    assert wrong.value.tries_left == 2
    first = logins.authenticate(reader, PIN)
    assert first.needs_person_id is not None
    assert logins.bind(first.needs_person_id, user.person_id).account_id == account_id


def service(
    services: Services, pki: TestPki, token: tuple[str, str] | None = None
) -> CardLoginService:
    pcscd_ctl()
    factory = None
    if token is not None:
        module, label = token

        def factory(kind: CardKind) -> Pkcs11Signer:
            return Pkcs11Signer(module, label, unblock_at=UNBLOCK_AT[kind])

    return CardLoginService(
        PcscBackend(),
        CertificateValidator(pki.ca_dir, pki.crl_dir),
        services.login,
        services.accounts,
        factory,
    )


def test_piv_card_logs_in_through_pcscd(services: Services, pki: TestPki) -> None:
    user = pki.user("moica")
    account_id = approved(services, user)
    logins = service(services, pki)
    vcard = VpcdCard(VirtualPivCard(user.cert_der, user.key, PIN))
    plug(vcard, READER_0)
    try:
        bind_on_first_login(logins, READER_0, user, account_id)
        again = logins.authenticate(READER_0, PIN)
        assert again.outcome is not None and again.outcome.state == LoginState.ACTIVE
        assert 0 < again.card_seconds < again.total_seconds
    finally:
        unplug(vcard, READER_0)


class PulledOutWhileSigning(CardWrapper):
    """A PIV card that is pulled out of the reader while it works on GENERAL
    AUTHENTICATE: the socket to vpcd closes before it answers."""

    def __init__(self, inner: VirtualPivCard) -> None:
        super().__init__(inner)
        self.vcard: VpcdCard | None = None
        self.pulled = threading.Event()

    def process(self, apdu: bytes) -> bytes:
        if apdu[1] == 0x87 and self.vcard is not None and not self.pulled.is_set():
            self.pulled.set()
            threading.Thread(target=self.vcard.remove).start()
            time.sleep(1.0)
        return self.inner.process(apdu)


def test_card_pulled_out_while_signing_through_pcscd(services: Services, pki: TestPki) -> None:
    user = pki.user("moica")
    logins = service(services, pki)
    card = PulledOutWhileSigning(VirtualPivCard(user.cert_der, user.key, PIN))
    vcard = VpcdCard(card)
    card.vcard = vcard
    plug(vcard, READER_0)
    with pytest.raises(CardRemoved):
        logins.authenticate(READER_0, PIN)
    assert card.pulled.is_set()
    wait_until(lambda: not present(READER_0), what="pcscd to see the reader empty")


def test_hicos_card_signs_through_pkcs11(
    services: Services, pki: TestPki, hicos_token: tuple[str, str]
) -> None:
    user = pki.user("hpc")
    approved(services, user)
    logins = service(services, pki, hicos_token)
    card = VirtualHicosCard({"signature": user.cert_der}, kind="hpc")
    vcard = VpcdCard(card, port=int(os.environ.get("SMIS_VPCD_PORT", "35963")) + 1)
    plug(vcard, READER_1)
    try:
        preview = logins.read(READER_1)
        assert (preview.identity.kind, preview.identity.name) == (CardKind.HPC, user.cn)
        with pytest.raises(WrongPin) as wrong:
            logins.authenticate(READER_1, "864209")
        assert "864209" not in str(wrong.value)
        first = logins.authenticate(READER_1, PIN)
        assert first.needs_person_id is not None
        outcome = logins.bind(first.needs_person_id, user.person_id)
        assert outcome.state == LoginState.ACTIVE
    finally:
        unplug(vcard, READER_1)


def test_card_blocks_after_the_last_try_through_pcscd(services: Services, pki: TestPki) -> None:
    user = pki.user("moica")
    logins = service(services, pki)
    vcard = VpcdCard(VirtualPivCard(user.cert_der, user.key, PIN))
    plug(vcard, READER_0)
    try:
        tries = []
        for _ in range(2):
            with pytest.raises(WrongPin) as wrong:
                logins.authenticate(READER_0, "000000")
            tries.append(wrong.value.tries_left)
        assert tries == [2, 1]
        with pytest.raises(PinBlocked) as blocked:
            logins.authenticate(READER_0, "000000")
        assert "自然人憑證管理中心" in str(blocked.value) and "無法解鎖" in str(blocked.value)
        with pytest.raises(PinBlocked):
            logins.authenticate(READER_0, PIN)
    finally:
        unplug(vcard, READER_0)


def test_the_pin_is_nowhere_after_a_login(
    services: Services, pki: TestPki, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    user = pki.user("moica")
    approved(services, user)
    logins = service(services, pki)
    pin = "97310468"
    vcard = VpcdCard(VirtualPivCard(user.cert_der, user.key, pin))
    plug(vcard, READER_0)
    caplog.set_level(logging.DEBUG)
    try:
        proof = logins.authenticate(READER_0, pin).needs_person_id
        assert proof is not None
        assert logins.bind(proof, user.person_id).state == LoginState.ACTIVE
    finally:
        unplug(vcard, READER_0)
    assert pin not in caplog.text
    rows = [
        (e.action, e.details, e.actor_label, e.target_id)
        for e in AuditEvent.select().order_by(AuditEvent.id)
    ]
    assert "login" in [r[0] for r in rows] and pin not in repr(rows)
    if settings.database_url is None:
        database_proxy.obj.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        for path in settings.data_dir.iterdir():
            assert pin.encode() not in path.read_bytes(), path


# ---------------------------------------------------------------------- two HiCOS cards
# Two cards in the two vpcd readers, each with its token in the module, both tokens
# labelled "HiCOS PKI Smart Card" as the vendor's module labels them.

PIN_0 = "111222"  # the card in READER_0
PIN_1 = "333444"  # the card in READER_1


@pytest.fixture
def reader_tokens(pki: TestPki) -> Iterator[tuple[SoftToken, SoftToken]]:
    """The tokens of the cards for READER_0 (王小明, PIN_0) and READER_1 (周怡君, PIN_1)."""
    made: list[SoftToken] = []
    try:
        for name, pin in (("moica", PIN_0), ("moica2", PIN_1)):
            user = pki.user(name)
            made.append(
                softhsm_card_token(
                    pkcs11_module(),
                    user.key_path,
                    user.cert_der,
                    pin,
                    label=HICOS_TOKEN_LABEL,
                    so_pin=SO_PIN,
                )
            )
        yield made[0], made[1]
    finally:
        for token in made:
            delete_softhsm_token(token)


def kiosk_with_module(
    services: Services, pki: TestPki, reader_serials: dict[str, str] | None = None
) -> CardLoginService:
    pcscd_ctl()
    module = pkcs11_module()

    def factory(kind: CardKind) -> Pkcs11Signer:
        return Pkcs11Signer(
            module, HICOS_TOKEN_LABEL, unblock_at=UNBLOCK_AT[kind], reader_tokens=reader_serials
        )

    return CardLoginService(
        PcscBackend(),
        CertificateValidator(pki.ca_dir, pki.crl_dir),
        services.login,
        services.accounts,
        factory,
    )


def pin_tried(token: SoftToken) -> bool:
    """A C_Login with a wrong PIN reached ``token`` (SoftHSM2: CKF_USER_PIN_COUNT_LOW)."""
    return bool(token_flags(token) & TokenFlag.USER_PIN_COUNT_LOW)


def second_port() -> int:
    return int(os.environ.get("SMIS_VPCD_PORT", "35963")) + 1


def test_hicos_login_in_reader_1_never_logs_in_to_the_other_card(
    services: Services, pki: TestPki, reader_tokens: tuple[SoftToken, SoftToken]
) -> None:
    token_0, token_1 = reader_tokens
    # SoftHSM2's slots name no reader, as the vendor module's do: the map stands in.
    logins = kiosk_with_module(services, pki, {READER_0: token_0.serial, READER_1: token_1.serial})
    card_0 = VpcdCard(VirtualHicosCard({"signature": pki.user("moica").cert_der}))
    card_1 = VpcdCard(
        VirtualHicosCard({"signature": pki.user("moica2").cert_der}, version=b"CHT V22N"),
        port=second_port(),
    )
    plug(card_0, READER_0)
    plug(card_1, READER_1)
    try:
        shown = logins.read(READER_1)
        assert shown.identity.name == pki.user("moica2").cn
        with pytest.raises(WrongPin):
            logins.authenticate(READER_1, PIN_0, shown.identity.cert_sha256)
        assert pin_tried(token_1) and not pin_tried(token_0)
        first = logins.authenticate(READER_1, PIN_1, shown.identity.cert_sha256)
        assert first.needs_person_id is not None
        assert first.needs_person_id.identity.name == pki.user("moica2").cn
        assert not pin_tried(token_0)
    finally:
        unplug(card_0, READER_0)
        unplug(card_1, READER_1)


def test_second_generation_card_through_pcscd(
    services: Services, pki: TestPki, reader_tokens: tuple[SoftToken, SoftToken]
) -> None:
    token_0, token_1 = reader_tokens
    card = VpcdCard(VirtualHicosGen2Card(), port=second_port())
    plug(card, READER_1)
    try:
        with pytest.raises(CardMiddlewareNeeded):
            service(services, pki).read(READER_1)
        with pytest.raises(ReaderTokenUnknown):
            kiosk_with_module(services, pki).read(READER_1)
        logins = kiosk_with_module(
            services, pki, {READER_0: token_0.serial, READER_1: token_1.serial}
        )
        shown = logins.read(READER_1)
        assert (shown.identity.kind, shown.identity.name) == (CardKind.MOICA, pki.user("moica2").cn)
        first = logins.authenticate(READER_1, PIN_1, shown.identity.cert_sha256)
        assert first.needs_person_id is not None
        assert not pin_tried(token_0) and not pin_tried(token_1)
    finally:
        unplug(card, READER_1)
