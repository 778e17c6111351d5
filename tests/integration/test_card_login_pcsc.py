"""Login end to end through real components: pyscard → pcscd → vsmartcard-vpcd →
virtual card; PIV signs on the card, HiCOS signs through SoftHSM2 as its PKCS#11
module. On SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time

import pkcs11
import pytest

from card.errors import CardRemoved, PinBlocked, WrongPin
from card.identity import CardKind
from card.readers.pcsc import PcscBackend
from card.readers.pkcs11 import Pkcs11Signer
from card.signing import UNBLOCK_AT
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
from tests.helpers import form, make_admin, unit_of_kind
from tests.integration.test_pcsc import (
    READER_0,
    READER_1,
    pcscd_ctl,
    plug,
    present,
    unplug,
    wait_until,
)
from tests.integration.test_pkcs11 import new_softhsm_token

PIN = "135790"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


def hicos_token_of(user: PkiUser) -> tuple[str, str]:
    """A SoftHSM2 token holding ``user``'s signing key, as the HiCOS module would hold
    the card's key: (module, label)."""
    module, label = new_softhsm_token(PIN)
    subprocess.run(
        ["softhsm2-util", "--import", str(user.key_path), "--token", label]
        + ["--label", "SIGN", "--id", "01", "--pin", PIN],
        check=True,
        capture_output=True,
        timeout=60,
    )
    pkcs11.lib(module).reinitialize()  # SoftHSM2 sees only tokens present at C_Initialize
    return module, label


@pytest.fixture(scope="module")
def hicos_token(pki: TestPki) -> tuple[str, str]:
    return hicos_token_of(pki.user("hpc"))


def approved(services: Services, user: PkiUser) -> int:
    clinic = unit_of_kind(UnitKind.CLINIC, with_category="ppe")
    admin = make_admin(services, unit_of_kind(UnitKind.CDC))
    account_id = services.accounts.apply(
        form(user.person_id, clinic, {"ppe": RoleChoice(Role.OFFICER)})
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
