"""HiCOS generations (docs/architecture.md, "Cards"): first-generation cards by their
version string, second-generation 自然人憑證 by the GPPKI applet, and which PKCS#11
token gets the PIN. No services: SoftHSM2 runs in tests/integration/test_pkcs11.py."""

from __future__ import annotations

import shutil
import tempfile
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from card.agent import protocol as wire
from card.agent.client import AgentBackend
from card.agent.server import AgentServer
from card.errors import (
    CardMiddlewareNeeded,
    CardTokenNotFound,
    Pkcs11Unavailable,
    UnknownCard,
    UnsupportedHicosVersion,
)
from card.identity import CardKind, identity_from_certificate
from card.readers.hicos import GPPKI_AID, HICOS_VERSIONS, HicosCard, gppki_present
from card.readers.pkcs11 import READER_TOKENS_ENV, reader_tokens_from_env, slot_names_reader
from card.readers.profiles import CardProfile, CardRead, read_card
from card.signing import sign_challenge
from card.sim.hicos_gen2 import VirtualHicosGen2Card
from card.sim.inprocess import InProcessBackend
from card.sim.testpki import make_test_pki, self_signed_certificate
from card.sim.virtual import SimulatedCard, VirtualHicosCard
from card.transport import DEFAULT_TIMEOUT_S, CardConnection, Response
from smis_tui.text.identifiers import EN

READER = "Reader 2"


@pytest.fixture(scope="module")
def cert_der() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return self_signed_certificate(key, "周怡君").public_bytes(serialization.Encoding.DER)


class Spy:
    """A connection that records every command it passes on."""

    def __init__(self, conn: CardConnection) -> None:
        self.conn = conn
        self.reader = conn.reader
        self.sent: list[bytes] = []

    def atr(self) -> bytes:
        return self.conn.atr()

    def transaction(self, timeout: float = DEFAULT_TIMEOUT_S) -> AbstractContextManager[None]:
        return self.conn.transaction(timeout)

    def transmit(self, apdu: bytes, timeout: float = DEFAULT_TIMEOUT_S) -> Response:
        self.sent.append(bytes(apdu))
        return self.conn.transmit(apdu, timeout)

    def close(self) -> None:
        self.conn.close()


def _connect(card: SimulatedCard, reader: str = READER) -> CardConnection:
    backend = InProcessBackend([reader])
    backend.insert(reader, card)
    return backend.connect(reader)


# ---------------------------------------------------------------------- first generation


@pytest.mark.parametrize("version", [b"CHT V21N", b"CHT V22N", b"CHT V31N", b"CHT V32N"])
def test_every_known_first_generation_version_is_read(version: bytes, cert_der: bytes) -> None:
    read = read_card(_connect(VirtualHicosCard({"signature": cert_der}, version=version)))
    assert (read.profile, read.hicos_generation, read.certificate) == (
        CardProfile.HICOS,
        1,
        cert_der,
    )
    assert version in HICOS_VERSIONS


@pytest.mark.parametrize("version", [b"CHT V99X", b"CHT V40N", b"CHT \x1b[2J"])
def test_an_unknown_hicos_version_is_named_not_unknown(version: bytes, cert_der: bytes) -> None:
    conn = _connect(VirtualHicosCard({"signature": cert_der}, version=version))
    with pytest.raises(UnsupportedHicosVersion) as refused:
        read_card(conn)
    assert refused.value.key == "card.hicos_version"
    assert "不支援此版本的 HiCOS 卡片" in str(refused.value)
    assert "\x1b" not in str(refused.value)
    if version == b"CHT V99X":
        assert "CHT V99X" in str(refused.value)
    assert "{version}" in EN["card.hicos_version"]


def test_a_version_string_that_is_not_hicos_leaves_the_card_unknown(cert_der: bytes) -> None:
    conn = _connect(VirtualHicosCard({"signature": cert_der}, version=b"XYZ V32N"))
    assert HicosCard(conn).detect_version() is None
    with pytest.raises(UnknownCard):
        read_card(conn)


# ---------------------------------------------------------------------- second generation


def test_second_generation_card_answers_only_the_gppki_select() -> None:
    card = VirtualHicosGen2Card()
    select = bytes.fromhex("00A4040010") + GPPKI_AID
    assert card.process(select) == b"\x90\x00"
    other_aid = bytes.fromhex("00A4040009A00000030800001000")
    assert card.process(other_aid) == b"\x6a\x82"
    # Plain commands: security status not satisfied; with secure messaging: bad MAC.
    assert card.process(bytes.fromhex("80A40000023F00")) == b"\x69\x82"
    assert card.process(bytes.fromhex("00B0000014")) == b"\x69\x82"
    assert card.process(bytes.fromhex("0020008108") + b"12345678") == b"\x69\x82"
    assert card.process(bytes.fromhex("0CB0000014")) == b"\x69\x88"
    assert card.process(bytes.fromhex("FFCA000000")) == b"\x6e\x00"


def test_second_generation_without_a_module_asks_for_the_reader_software() -> None:
    spy = Spy(_connect(VirtualHicosGen2Card()))
    with pytest.raises(CardMiddlewareNeeded) as needed:
        read_card(spy)
    assert needed.value.key == "card.middleware_needed"
    assert "讀卡機元件" in str(needed.value) and "HiCOS 卡片管理工具" in str(needed.value)
    assert "card reader software" in EN["card.middleware_needed"]
    # Nothing but selections was sent: no PIN, no guess at a secure-messaging command.
    assert {apdu[1] for apdu in spy.sent} <= {0xA4, 0xB0}
    assert gppki_present(_connect(VirtualHicosGen2Card()))


def test_second_generation_shows_the_certificate_of_its_readers_token(cert_der: bytes) -> None:
    asked: list[str] = []

    def module_certificate(reader: str) -> bytes:
        asked.append(reader)
        return cert_der

    read = read_card(_connect(VirtualHicosGen2Card()), module_certificate=module_certificate)
    assert (read.profile, read.hicos_generation, read.certificate) == (
        CardProfile.HICOS,
        2,
        cert_der,
    )
    assert asked == [READER]


def test_other_cards_never_ask_the_module(cert_der: bytes) -> None:
    def module_certificate(reader: str) -> bytes:
        raise AssertionError("the module was asked about a card that is not second-generation")

    conn = _connect(VirtualHicosCard({"signature": cert_der}))
    assert read_card(conn, module_certificate=module_certificate).hicos_generation == 1
    with pytest.raises(UnknownCard):
        read_card(_connect(VirtualHicosCard({}, version=b"\x00" * 8)), module_certificate=None)


# ---------------------------------------------------------------------- which token


def test_slot_description_names_the_reader() -> None:
    assert slot_names_reader("Virtual PCD 00 01" + " " * 47, "Virtual PCD 00 01")
    assert not slot_names_reader("Virtual PCD 00 01", "Virtual PCD 00 00")
    assert not slot_names_reader("Virtual PCD 00", "Virtual PCD 00 01")
    assert not slot_names_reader("SoftHSM slot ID 0x2", "Virtual PCD 00 00")
    assert not slot_names_reader("   ", "")
    long_name = "Generic Smart Card Reader Interface [Smart Card Reader Interface] (20070818) 00 00"
    cut = long_name.encode()[:64].decode()
    assert slot_names_reader(cut, long_name)
    assert not slot_names_reader(cut[:40], long_name)


def test_reader_tokens_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(READER_TOKENS_ENV, raising=False)
    assert reader_tokens_from_env() == {}
    monkeypatch.setenv(READER_TOKENS_ENV, '{"Virtual PCD 00 01": " 067e421f7ab717a3 "}')
    assert reader_tokens_from_env() == {"Virtual PCD 00 01": "067e421f7ab717a3"}
    for bad in ("[1]", '{"r": 1}', "not json"):
        monkeypatch.setenv(READER_TOKENS_ENV, bad)
        with pytest.raises(Pkcs11Unavailable, match=READER_TOKENS_ENV):
            reader_tokens_from_env()


class RecordingSigner:
    def __init__(self) -> None:
        self.certificates: list[bytes] = []
        self.readers: list[str] = []

    def sign(
        self,
        pin: str | bytes | bytearray,
        data: bytes,
        *,
        certificate: bytes,
        reader: str,
        key_label: str = "SIGN",
    ) -> bytes:
        self.certificates.append(certificate)
        self.readers.append(reader)
        raise CardTokenNotFound()

    def reader_certificate(self, reader: str, key_label: str = "SIGN") -> bytes:
        raise AssertionError("not asked when signing")


def test_the_signer_is_told_which_certificate_was_shown(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    user = make_test_pki(tmp_path_factory.mktemp("pki")).user("moica2")
    signer = RecordingSigner()
    kinds: list[CardKind] = []

    def signer_for(kind: CardKind) -> RecordingSigner:
        kinds.append(kind)
        return signer

    conn = _connect(VirtualHicosGen2Card())
    read = CardRead(CardProfile.HICOS, user.cert_der, READER, b"", 2)
    identity = identity_from_certificate(user.cert_der)
    with pytest.raises(CardTokenNotFound) as refused:
        sign_challenge(conn, read, identity, bytearray(b"135790"), b"nonce", pkcs11=signer_for)
    assert signer.certificates == [user.cert_der] and kinds == [CardKind.MOICA]
    assert signer.readers == [READER]  # the token must also be the card in that reader
    assert "密碼未送出" in str(refused.value)


class ModuleCertificates:
    """The agent's PKCS#11 module: shows the certificate of the card in a reader."""

    def __init__(self, der: bytes) -> None:
        self.der = der
        self.readers: list[str] = []

    def sign(
        self,
        pin: str | bytes | bytearray,
        data: bytes,
        *,
        certificate: bytes,
        reader: str,
        key_label: str = "SIGN",
    ) -> bytes:
        raise AssertionError("reading a card asks for no PIN")

    def reader_certificate(self, reader: str, key_label: str = "SIGN") -> bytes:
        self.readers.append(reader)
        return self.der


def test_the_card_agent_reads_a_second_generation_card_with_its_own_module(
    cert_der: bytes,
) -> None:
    module = ModuleCertificates(cert_der)
    readers = InProcessBackend([READER])
    readers.insert(READER, VirtualHicosGen2Card())
    directory = Path(tempfile.mkdtemp(prefix="smis-hicos-", dir="/tmp"))
    try:
        with AgentServer(
            readers,
            server_name="smis.example.tw",
            socket_path=directory / "with.sock",
            pkcs11=lambda unblock_at: module,
            notify=lambda line: None,
        ) as server:
            with AgentBackend(server.socket_path) as client:
                read = client.read_card(READER)
        assert (read.profile, read.hicos_generation) == (CardProfile.HICOS, 2)
        assert read.certificate == cert_der and module.readers == [READER]
        with AgentServer(
            readers,
            server_name="smis.example.tw",
            socket_path=directory / "without.sock",
            notify=lambda line: None,
        ) as server:
            with AgentBackend(server.socket_path) as client:
                with pytest.raises(CardMiddlewareNeeded):
                    client.read_card(READER)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    failure = wire.error_to_failure(CardTokenNotFound())
    assert isinstance(wire.failure_to_error(failure), CardTokenNotFound)
