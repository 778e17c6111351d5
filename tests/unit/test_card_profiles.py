"""Card profiles (PIV, HiCOS) through the in-process backend and virtual cards."""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import cast

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from card.apdu import (
    MAX_RESPONSE_ROUNDS,
    Deadline,
    chain_get_response,
    chained_commands,
    command,
    describe_apdu,
    encode_tlv,
    exchange,
    parse_single_tlv,
    parse_template,
    parse_tlv,
    parse_tlvs,
    with_le,
)
from card.errors import (
    CardError,
    CardProtocolError,
    CardRemoved,
    CardReset,
    CardUnresponsive,
    CertificateProblem,
    NoCard,
    NoReader,
    PinBlocked,
    PinFormatError,
    PinNotVerified,
    ReaderBusy,
    UnknownCard,
    WrongPin,
)
from card.identity import CardIdentity, CardKind
from card.pin import check_pin_format, pad_piv, pin_buffer, wipe
from card.readers.hicos import HicosCard
from card.readers.piv import (
    ALG_ECC_P256,
    ALG_RSA_2048,
    GET_AUTH_CERT_APDU,
    PIV_UNBLOCK_AT,
    SELECT_PIV_APDU,
    PivCard,
    algorithm_for_public_key,
)
from card.readers.profiles import CardProfile, CardRead, read_card
from card.signing import sign_challenge
from card.sim.inprocess import InProcessBackend
from card.sim.testpki import self_signed_certificate
from card.sim.virtual import (
    AUTH_CERT_TAG,
    ISD_AID,
    PIV_ATR,
    CardWrapper,
    FaultyCard,
    GarbageCard,
    SimulatedCard,
    VirtualHicosCard,
    VirtualPivCard,
)
from card.transport import DEFAULT_TIMEOUT_S, CardConnection, Response

PIN = "482915"
READER = "Virtual Reader 0"
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


# --------------------------------------------------------------------------- fixtures


@dataclass(frozen=True)
class KeyAndCert:
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    der: bytes

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.der)

    def piv_card(self, pin: str = PIN, *, compress_certificate: bool = False) -> VirtualPivCard:
        return VirtualPivCard(self.der, self.key, pin, compress_certificate=compress_certificate)


def _self_signed(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, name: str) -> bytes:
    not_a_ca = x509.BasicConstraints(ca=False, path_length=None)
    cert = self_signed_certificate(key, name, extensions=[(not_a_ca, True)])
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="session")
def rsa_card_key() -> KeyAndCert:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return KeyAndCert(key, _self_signed(key, "王小明"))


@pytest.fixture(scope="session")
def ec_card_key() -> KeyAndCert:
    key = ec.generate_private_key(ec.SECP256R1())
    return KeyAndCert(key, _self_signed(key, "陳美玲"))


def _connect(card: SimulatedCard) -> tuple[InProcessBackend, CardConnection]:
    backend = InProcessBackend([READER])
    backend.insert(READER, card)
    return backend, backend.connect(READER)


def _selected(
    card: SimulatedCard, timeout: float = DEFAULT_TIMEOUT_S
) -> tuple[InProcessBackend, PivCard]:
    """``card`` in a reader, its PIV application selected."""
    backend, conn = _connect(card)
    piv = PivCard(conn, timeout=timeout)
    piv.select()
    return backend, piv


# Where Spy.log shows a transaction beginning and ending.
BEGIN = b"<begin transaction>"
END = b"<end transaction>"


class Spy:
    """A CardConnection that records every command it passes on (``sent``), and in
    ``log`` the commands with the transactions around them (:data:`BEGIN`, :data:`END`)."""

    def __init__(self, conn: CardConnection) -> None:
        self.conn = conn
        self.reader = conn.reader
        self.sent: list[bytes] = []
        self.log: list[bytes] = []  # the commands and the transactions around them

    def atr(self) -> bytes:
        return self.conn.atr()

    def transmit(self, apdu: bytes, timeout: float = DEFAULT_TIMEOUT_S) -> Response:
        self.sent.append(bytes(apdu))
        self.log.append(bytes(apdu))
        return self.conn.transmit(apdu, timeout)

    @contextlib.contextmanager
    def transaction(self, timeout: float = DEFAULT_TIMEOUT_S) -> Iterator[None]:
        self.log.append(BEGIN)
        with self.conn.transaction(timeout):
            yield
        self.log.append(END)

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def rsa_piv(rsa_card_key: KeyAndCert) -> Iterator[tuple[VirtualPivCard, PivCard, Spy]]:
    card = rsa_card_key.piv_card()
    backend, conn = _connect(card)
    spy = Spy(conn)
    piv = PivCard(spy)
    piv.select()
    yield card, piv, spy
    backend.remove(READER)


def _rsa_block(challenge: bytes) -> bytes:
    info = SHA256_DIGEST_INFO + hashlib.sha256(challenge).digest()
    return b"\x00\x01" + b"\xff" * (256 - 3 - len(info)) + b"\x00" + info


# --------------------------------------------------------------------------- APDU helpers


def test_command_encodings() -> None:
    assert command(0x00, 0xA4, 0x04, 0x00, b"\xa0\x00", 256) == bytes.fromhex("00A4040002A00000")
    assert command(0x00, 0x20, 0x00, 0x80) == bytes.fromhex("00200080")
    assert command(0x80, 0xB0, 0x15, 0x00, le=4) == bytes.fromhex("80B0150004")
    with pytest.raises(ValueError):
        command(0x00, 0x87, 0x07, 0x9A, bytes(256))


def test_command_chaining_blocks() -> None:
    data = bytes(range(256)) + bytes(44)
    first, last = chained_commands(0x00, 0x87, 0x07, 0x9A, data, 256)
    assert first[:5] == bytes.fromhex("10 87 07 9A FF") and first[5:] == data[:255]
    assert last[:5] == bytes.fromhex("00 87 07 9A 2D") and last[5:-1] == data[255:]
    assert last[-1] == 0x00
    (single,) = chained_commands(0x00, 0x87, 0x07, 0x9A, bytes(255), None)
    assert single[0] == 0x00 and single[4] == 0xFF and len(single) == 260


def test_tlv_lengths_and_nesting() -> None:
    value = bytes(300)
    encoded = encode_tlv(0x53, encode_tlv(0x70, value) + encode_tlv(0x71, b"\x00"))
    assert encoded[:4] == bytes.fromhex("53 82 01 33")  # 4 + 300 + 3 bytes
    body = parse_template(parse_single_tlv(encoded, 0x53))
    assert body == {0x70: value, 0x71: b"\x00"}
    tlv, end = parse_tlv(bytes.fromhex("5F C1 05 81 02 AA BB"))
    assert (tlv.tag, tlv.value, end) == (0x5FC105, b"\xaa\xbb", 7)


@pytest.mark.parametrize(
    "data",
    [
        b"\x53",
        b"\x53\x05\x01",
        b"\x53\x82\x01",
        b"\x53\x80\x00\x00",  # indefinite length
        b"\x53\x85\x00\x00\x00\x00\x01",
        b"\x5f",
        b"\x5f\xc1\xc1\xc1\x01\x00",  # tag too long
        b"\x53\x82\xff\xff" + bytes(10),
    ],
)
def test_tlv_garbage_is_a_protocol_error(data: bytes) -> None:
    with pytest.raises(CardProtocolError):
        parse_tlvs(data)


@given(st.binary(max_size=64))
def test_tlv_parser_never_raises_anything_else(data: bytes) -> None:
    try:
        parse_tlvs(data)
        parse_template(data)
    except CardProtocolError:
        pass


def test_describe_apdu_hides_pin_data() -> None:
    apdu = bytes.fromhex("00 20 00 80 08") + pad_piv(bytearray(PIN.encode()))
    text = describe_apdu(apdu)
    assert PIN.encode().hex().upper() not in text.replace(" ", "") and "hidden" in text
    assert describe_apdu(SELECT_PIV_APDU).startswith("00 A4 04 00 09 A0")


def test_get_response_loop_is_bounded() -> None:
    backend, conn = _connect(GarbageCard([b"\x01\x61\x00"]))
    start = time.monotonic()
    with pytest.raises(CardProtocolError, match="超過"):
        chain_get_response(conn, Response(b"", 0x61, 0x00), Deadline(2.0))
    assert time.monotonic() - start < 2.0
    assert isinstance(backend.card_in(READER), GarbageCard)
    assert backend.card_in(READER).count == MAX_RESPONSE_ROUNDS  # type: ignore[union-attr]


# --------------------------------------------------------------------------- PIN


@pytest.mark.parametrize("pin", ["123456", "12345678", "Ab3$xyz", b"654321", bytearray(b"abcdef")])
def test_pin_format_accepts(pin: str | bytes | bytearray) -> None:
    buf = check_pin_format(pin)
    assert bytes(buf) == (pin.encode() if isinstance(pin, str) else bytes(pin))


@pytest.mark.parametrize(
    "pin", ["12345", "123456789", "123 456", "12345６", "1234\n56", "", b"\x00\x01\x02\x03\x04\x05"]
)
def test_pin_format_rejects_without_echoing(pin: str | bytes) -> None:
    with pytest.raises(PinFormatError) as info:
        check_pin_format(pin)
    assert str(pin) not in str(info.value) or not pin


def test_pad_and_wipe() -> None:
    assert pad_piv(bytearray(b"123456")) == bytearray(b"123456\xff\xff")
    buf = bytearray(b"secret12")
    wipe(buf)
    assert buf == bytearray(8)
    with pin_buffer("987654") as held:
        assert held == bytearray(b"987654")
    assert held == bytearray(6)


# --------------------------------------------------------------------------- PIV


def test_piv_reads_certificate_with_exact_apdus(rsa_card_key: KeyAndCert) -> None:
    assert len(rsa_card_key.der) > 256  # so the card answers with 61xx
    _, conn = _connect(rsa_card_key.piv_card())
    spy = Spy(conn)
    read = read_card(spy)
    assert read.profile is CardProfile.PIV
    assert read.certificate == rsa_card_key.der
    assert read.atr == PIV_ATR and read.reader == READER
    assert spy.sent[0] == bytes.fromhex("80 A4 00 00 02 3F 00")  # HiCOS detect first …
    assert SELECT_PIV_APDU == bytes.fromhex("00 A4 04 00 09 A0 00 00 03 08 00 00 10 00 00")
    assert GET_AUTH_CERT_APDU == bytes.fromhex("00 CB 3F FF 05 5C 03 5F C1 05 00")
    assert SELECT_PIV_APDU in spy.sent  # … then PIV
    after = spy.sent[spy.sent.index(GET_AUTH_CERT_APDU) + 1 :]
    assert after and all(apdu[:4] == bytes.fromhex("00 C0 00 00") for apdu in after)
    assert "bytes>" in repr(read)


def test_piv_reads_compressed_certificate(ec_card_key: KeyAndCert) -> None:
    card = ec_card_key.piv_card(compress_certificate=True)
    _, conn = _connect(card)
    assert read_card(conn).certificate == ec_card_key.der


def test_pin_tries_wrong_pin_block_and_reset(
    rsa_piv: tuple[VirtualPivCard, PivCard, Spy],
) -> None:
    card, piv, spy = rsa_piv
    assert piv.pin_tries_left() == 3
    assert spy.sent[-1] == bytes.fromhex("00 20 00 80")
    with pytest.raises(WrongPin) as first:
        piv.verify_pin("000000")
    assert first.value.tries_left == 2
    with pytest.raises(WrongPin) as second:
        piv.verify_pin("000000")
    assert second.value.tries_left == 1
    piv.verify_pin(PIN)  # the right PIN resets the counter
    assert spy.sent[-1] == bytes.fromhex("00 20 00 80 08") + PIN.encode() + b"\xff\xff"
    assert piv.pin_tries_left() is None  # verified
    piv.select()  # SP 800-73-4 part 2, 3.1.1: re-selecting PIV keeps the security status
    assert piv.pin_tries_left() is None
    assert spy.transmit(command(0x00, 0xA4, 0x04, 0x00, ISD_AID, 256)).ok  # another app
    piv.select()  # … and coming back to PIV finds the PIN no longer verified
    assert piv.pin_tries_left() == 3
    for left in (2, 1):
        with pytest.raises(WrongPin) as wrong:
            piv.verify_pin("111111")
        assert wrong.value.tries_left == left
    with pytest.raises(PinBlocked) as blocked:
        piv.verify_pin("111111")
    assert blocked.value.unblock_at == PIV_UNBLOCK_AT == "發卡單位"
    with pytest.raises(PinBlocked):
        piv.verify_pin(PIN)  # blocked for good
    assert piv.pin_tries_left() == 0
    assert card.blocked


def test_bad_pin_format_never_reaches_the_card(
    rsa_piv: tuple[VirtualPivCard, PivCard, Spy],
) -> None:
    _, piv, spy = rsa_piv
    before = len(spy.sent)
    with pytest.raises(PinFormatError):
        piv.verify_pin("12345")
    assert len(spy.sent) == before


def test_sign_rsa_with_command_chaining(rsa_piv: tuple[VirtualPivCard, PivCard, Spy]) -> None:
    card, piv, spy = rsa_piv
    challenge = b"kiosk challenge " * 2
    with pytest.raises(PinNotVerified, match="尚未驗證密碼"):
        piv.sign(_rsa_block(challenge), ALG_RSA_2048)
    piv.verify_pin(PIN)
    sent_before = len(spy.sent)
    signature = piv.sign(_rsa_block(challenge), ALG_RSA_2048)
    public_key = x509.load_der_x509_certificate(card_der(card)).public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    public_key.verify(signature, challenge, padding.PKCS1v15(), hashes.SHA256())
    sent = spy.sent[sent_before:]
    assert sent[0][:5] == bytes.fromhex("10 87 07 9A FF")
    assert sent[0][5:15] == bytes.fromhex("7C 82 01 06 82 00 81 82 01 00")
    assert sent[1][:4] == bytes.fromhex("00 87 07 9A") and sent[1][-1] == 0x00
    assert sent[2][:4] == bytes.fromhex("00 C0 00 00")  # 264-byte answer: 61xx
    assert card.signatures == 1


def card_der(card: VirtualPivCard) -> bytes:
    body = parse_template(parse_single_tlv(card._objects[AUTH_CERT_TAG], 0x53))
    return body[0x70]


def test_sign_ec(ec_card_key: KeyAndCert) -> None:
    _, conn = _connect(ec_card_key.piv_card())
    piv = PivCard(conn)
    piv.select()
    algorithm = algorithm_for_public_key(ec_card_key.cert.public_key())
    assert algorithm == ALG_ECC_P256
    challenge = bytes(range(32))
    digest = hashlib.sha256(challenge).digest()
    with pytest.raises(PinNotVerified):
        piv.sign(digest, algorithm)
    piv.verify_pin(PIN)
    signature = piv.sign(digest, algorithm)
    assert signature[0] == 0x30  # DER ECDSA-Sig-Value
    public_key = ec_card_key.cert.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(signature, challenge, ec.ECDSA(hashes.SHA256()))


def test_verified_state_ends_with_reset_and_removal(rsa_card_key: KeyAndCert) -> None:
    card = rsa_card_key.piv_card()
    backend, conn = _connect(card)
    piv = PivCard(conn)
    piv.select()
    piv.verify_pin(PIN)
    backend.remove(READER)
    with pytest.raises(CardRemoved):
        piv.sign(_rsa_block(b"x"), ALG_RSA_2048)
    backend.insert(READER, card)
    piv = PivCard(backend.connect(READER))
    piv.select()
    with pytest.raises(PinNotVerified):
        piv.sign(_rsa_block(b"x"), ALG_RSA_2048)


def test_sign_input_lengths_are_checked(rsa_piv: tuple[VirtualPivCard, PivCard, Spy]) -> None:
    _, piv, _ = rsa_piv
    with pytest.raises(ValueError):
        piv.sign(bytes(32), ALG_RSA_2048)
    with pytest.raises(ValueError):
        piv.sign(bytes(32), 0x14)


def test_algorithm_for_unsupported_key() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(CertificateProblem):
        algorithm_for_public_key(key.public_key())


# --------------------------------------------------------------------------- PIV: Le, 6Cxx, SELECT


def _process(card: SimulatedCard, apdu_hex: str) -> Response:
    answer = card.process(bytes.fromhex(apdu_hex))
    return Response(answer[:-2], answer[-2], answer[-1])


SELECT_PIV_NO_LE = "00 A4 04 00 09 A0 00 00 03 08 00 00 10 00"
GET_CERT_NO_LE = "00 CB 3F FF 05 5C 03 5F C1 05"
YUBICO_OTP_AID = bytes.fromhex("A0 00 00 05 27 20 01")


def test_virtual_piv_card_answers_at_most_le_bytes(rsa_card_key: KeyAndCert) -> None:
    card = rsa_card_key.piv_card()
    whole = card._objects[AUTH_CERT_TAG]
    assert len(whole) > 512
    assert _process(card, SELECT_PIV_NO_LE).ok
    first = _process(card, GET_CERT_NO_LE + " 08")  # OpenSC asks for 8 bytes first
    assert (first.data, first.sw) == (whole[:8], 0x6100)  # 256 or more still to come
    # With no Le the card answers what a short APDU can carry, 256 bytes.
    first = _process(card, GET_CERT_NO_LE)
    assert (first.data, first.sw) == (whole[:256], 0x6100)
    # GET RESPONSE hands out Le bytes at a time; the last 61xx counts what is left.
    small = _process(card, "00 C0 00 00 10")
    assert (small.data, small.sw1) == (whole[256:272], 0x61)
    rest = bytearray(small.data)
    answer = small
    while answer.sw1 == 0x61:
        answer = _process(card, f"00 C0 00 00 {answer.sw2:02X}")
        rest += answer.data
    assert answer.ok and bytes(rest) == whole[256:]
    assert _process(card, "00 C0 00 00 00").sw == 0x6985  # nothing left to fetch


def test_virtual_piv_select_refuses_a_short_le_with_6cxx(rsa_card_key: KeyAndCert) -> None:
    card = rsa_card_key.piv_card()
    refused = _process(card, SELECT_PIV_NO_LE + " 04")
    assert refused.sw1 == 0x6C and not refused.data and not card.selected
    again = _process(card, f"{SELECT_PIV_NO_LE} {refused.sw2:02X}")
    assert again.ok and len(again.data) == refused.sw2 and card.selected
    assert _process(card, SELECT_PIV_NO_LE[:-2].replace("04 00 09", "04 0C 09") + " 00").ok


def test_reader_resends_a_command_answered_6cxx_with_the_exact_le() -> None:
    apt = bytes.fromhex("61 11 4F 06 00 00 10 00 01 00 79 07 4F 05 A0 00 00 03 08")

    def card(apdu: bytes) -> bytes:
        if apdu[:4] != SELECT_PIV_APDU[:4]:
            return b"\x6d\x00"
        return apt + b"\x90\x00" if apdu[-1] == len(apt) else bytes((0x6C, len(apt)))

    _, conn = _connect(GarbageCard(card))
    spy = Spy(conn)
    PivCard(spy).select()
    assert spy.sent == [SELECT_PIV_APDU, SELECT_PIV_APDU[:-1] + bytes((len(apt),))]


def test_get_response_answered_6cxx_is_asked_again() -> None:
    def card(apdu: bytes) -> bytes:
        if apdu == bytes.fromhex("00 C0 00 00 04"):
            return b"\x6c\x02"
        if apdu == bytes.fromhex("00 C0 00 00 02"):
            return b"\xcc\xdd\x90\x00"
        return b"\x6d\x00"

    _, conn = _connect(GarbageCard(card))
    joined = chain_get_response(conn, Response(b"\xaa\xbb", 0x61, 0x04), Deadline(2.0))
    assert (joined.data, joined.sw) == (b"\xaa\xbb\xcc\xdd", 0x9000)


def test_a_card_saying_6cxx_twice_is_a_protocol_error() -> None:
    _, conn = _connect(GarbageCard([b"\x6c\x05"]))
    with pytest.raises(CardProtocolError, match="6C05"):
        exchange(conn, SELECT_PIV_APDU, Deadline(2.0))


def test_with_le_for_every_command_case() -> None:
    assert with_le(bytes.fromhex("00 C0 00 00"), 4) == bytes.fromhex("00 C0 00 00 04")
    assert with_le(bytes.fromhex("00 C0 00 00 00"), 256) == bytes.fromhex("00 C0 00 00 00")
    assert with_le(bytes.fromhex("00 A4 04 00 01 A0"), 2) == bytes.fromhex("00 A4 04 00 01 A0 02")
    assert with_le(bytes.fromhex("00 A4 04 00 01 A0 00"), 9) == bytes.fromhex("00A4040001A009")
    with pytest.raises(ValueError):
        with_le(bytes.fromhex("00 A4 04 00 05 A0"), 9)


def test_failed_select_keeps_piv_selected_and_its_pin_verified(
    rsa_piv: tuple[VirtualPivCard, PivCard, Spy],
) -> None:
    card, piv, spy = rsa_piv
    piv.verify_pin(PIN)
    # yubico-piv-tool looks for the YubiKey OTP application on any card (ISO 7816-4:
    # an unsuccessful SELECT leaves the current selection as it was).
    assert spy.transmit(command(0x00, 0xA4, 0x04, 0x00, YUBICO_OTP_AID)).sw == 0x6A82
    assert spy.transmit(command(0x00, 0xA4, 0x00, 0x00, b"\x3f\x00")).sw == 0x6A86
    assert card.selected and piv.pin_tries_left() is None
    assert piv.sign(_rsa_block(b"still PIV"), ALG_RSA_2048)


def test_piv_objects_the_card_holds_and_those_it_does_not(
    rsa_piv: tuple[VirtualPivCard, PivCard, Spy],
) -> None:
    card, _, spy = rsa_piv

    def get_data(tag: str) -> Response:
        wanted = encode_tlv(0x5C, bytes.fromhex(tag))
        return exchange(spy, command(0x00, 0xCB, 0x3F, 0xFF, wanted, 256), Deadline(2.0))

    discovery = parse_template(parse_single_tlv(get_data("7E").data, 0x7E))
    assert discovery[0x4F].startswith(bytes.fromhex("A0 00 00 03 08 00 00 10 00"))
    assert discovery[0x5F2F] == bytes.fromhex("40 00")  # PIV PIN only
    chuid = parse_template(parse_single_tlv(get_data("5F C1 02").data, 0x53))
    assert len(chuid[0x30]) == 25 and len(chuid[0x34]) == 16 and 0x3E in chuid
    for absent in ("5F C1 07", "5F C1 0C", "5F C1 0A", "5F C1 03", "7F 61"):
        assert get_data(absent).sw == 0x6A82, absent  # CCC, key history, 9C, …
    assert spy.transmit(bytes.fromhex("00 FD 00 00 00")).sw == 0x6D00  # YubiKey GET VERSION
    assert spy.transmit(bytes.fromhex("00 DB 3F FF 03 5C 01 7E")).sw == 0x6982  # PUT DATA
    # Another application (the security domain) knows no PIV command.
    assert spy.transmit(command(0x00, 0xA4, 0x04, 0x00, ISD_AID, 256)).ok
    assert get_data("5F C1 05").sw == 0x6A88
    assert spy.transmit(bytes.fromhex("00 20 00 80")).sw == 0x6D00
    assert not card.selected


def test_the_card_answers_with_a_generic_atr(rsa_card_key: KeyAndCert) -> None:
    atr = rsa_card_key.piv_card().atr
    assert b"Yubi" not in atr and b"yubi" not in atr.lower()
    check = 0
    for byte in atr[1:]:
        check ^= byte
    assert atr[0] == 0x3B and check == 0  # ISO 7816-3 TCK


# --------------------------------------------------------------------------- transactions


@dataclass(frozen=True)
class _Identity:
    """What sign_challenge needs of a card.identity.CardIdentity."""

    kind: CardKind
    certificate: x509.Certificate


def _inside_one_transaction(log: list[bytes]) -> list[bytes]:
    """The commands of ``log``, checking they all ran inside one transaction."""
    assert log[0] == BEGIN and log[-1] == END
    assert log.count(BEGIN) == log.count(END) == 1
    return log[1:-1]


class Recorder(CardWrapper):
    """The card's side: every command in the order the card received it."""

    def __init__(self, inner: SimulatedCard) -> None:
        super().__init__(inner)
        self.received: list[bytes] = []

    def process(self, apdu: bytes) -> bytes:
        self.received.append(bytes(apdu))
        return self.inner.process(apdu)


SELECT_ISD_APDU = bytes.fromhex("00 A4 04 00 08") + ISD_AID


def test_read_and_login_proof_each_run_in_one_transaction(rsa_card_key: KeyAndCert) -> None:
    _, conn = _connect(rsa_card_key.piv_card())
    spy = Spy(conn)
    read_card(spy)
    commands = _inside_one_transaction(spy.log)
    assert SELECT_PIV_APDU in commands and GET_AUTH_CERT_APDU in commands
    spy.log.clear()
    identity = cast(CardIdentity, _Identity(CardKind.PIV, rsa_card_key.cert))
    read = CardRead(CardProfile.PIV, rsa_card_key.der, READER, PIV_ATR)
    sign_challenge(spy, read, identity, bytearray(PIN.encode()), b"c" * 32, pkcs11=None)
    instructions = [apdu[1] for apdu in _inside_one_transaction(spy.log)]
    assert instructions[:2] == [0xA4, 0x20] and 0x87 in instructions  # SELECT VERIFY GA


def test_another_program_waits_for_the_login_proof(rsa_card_key: KeyAndCert) -> None:
    """Between VERIFY and GENERAL AUTHENTICATE another program selects another
    application: without a transaction the login fails, with one it waits."""
    card = Recorder(rsa_card_key.piv_card())
    backend, conn = _connect(card)
    other = backend.connect(READER)
    # The attack, without a transaction: the PIN is verified, then it is gone.
    piv = PivCard(conn)
    piv.select()
    piv.verify_pin(PIN)
    assert other.transmit(SELECT_ISD_APDU).ok
    with pytest.raises(CardProtocolError, match="6884"):  # chained GA outside PIV
        piv.sign(_rsa_block(b"x"), ALG_RSA_2048)
    # The same with the transaction the login uses: the other program's SELECT waits.
    answers: list[Response] = []
    done = threading.Event()

    def other_program() -> None:
        answers.append(other.transmit(SELECT_ISD_APDU, timeout=5.0))
        done.set()

    with conn.transaction():
        piv.select()
        piv.verify_pin(PIN)
        threading.Thread(target=other_program, daemon=True).start()
        assert not done.wait(0.3)  # held back while the transaction lasts
        signature = piv.sign(_rsa_block(b"x"), ALG_RSA_2048)
    assert done.wait(5.0) and answers[0].ok
    assert len(signature) == 256
    received = card.received
    assert received.index(SELECT_ISD_APDU, received.index(SELECT_ISD_APDU) + 1) > max(
        i for i, apdu in enumerate(received) if apdu[1] == 0x87
    )


def test_a_transaction_waits_at_most_its_timeout(rsa_card_key: KeyAndCert) -> None:
    backend, conn = _connect(rsa_card_key.piv_card())
    other = backend.connect(READER)
    with other.transaction():
        started = time.monotonic()
        with pytest.raises(ReaderBusy):
            with conn.transaction(timeout=0.3):
                pass
        assert time.monotonic() - started < 2.0
    with conn.transaction(timeout=0.3):  # free again
        assert conn.transmit(SELECT_PIV_APDU).ok


def test_a_card_reset_by_another_program_is_read_again(rsa_card_key: KeyAndCert) -> None:
    backend, conn = _connect(rsa_card_key.piv_card())
    spy = Spy(conn)
    backend.reset_card(READER)  # another program, between connecting and reading
    assert read_card(spy).certificate == rsa_card_key.der
    assert spy.log.count(BEGIN) == 2 and spy.log.count(END) == 1  # once more, from the start


class ResetsBeforeEveryTransaction(Spy):
    def __init__(self, conn: CardConnection, backend: InProcessBackend) -> None:
        super().__init__(conn)
        self.backend = backend

    @contextlib.contextmanager
    def transaction(self, timeout: float = DEFAULT_TIMEOUT_S) -> Iterator[None]:
        self.backend.reset_card(READER)
        with super().transaction(timeout):
            yield


def test_a_card_reset_again_and_again_is_read_twice_at_most(rsa_card_key: KeyAndCert) -> None:
    backend, conn = _connect(rsa_card_key.piv_card())
    conn.transmit(SELECT_PIV_APDU)
    spy = ResetsBeforeEveryTransaction(conn, backend)
    with pytest.raises(CardReset):
        read_card(spy)
    assert spy.log.count(BEGIN) == 2 and not spy.sent


def test_a_card_reset_before_the_pin_asks_for_the_pin_again(rsa_card_key: KeyAndCert) -> None:
    card = rsa_card_key.piv_card()
    backend, conn = _connect(card)
    spy = Spy(conn)
    read = read_card(spy)
    backend.reset_card(READER)  # another program, while the person types the PIN
    identity = cast(CardIdentity, _Identity(CardKind.PIV, rsa_card_key.cert))
    sent_before = len(spy.sent)
    with pytest.raises(CardReset) as reset:
        sign_challenge(spy, read, identity, bytearray(PIN.encode()), b"c" * 32, pkcs11=None)
    assert reset.value.key == "card.reset" and "請重新輸入卡片密碼" in str(reset.value)
    assert len(spy.sent) == sent_before  # the PIN was not sent: no try spent, none retried
    assert card.tries_left == 3 and card.signatures == 0
    # Typed again, it goes through.
    sign_challenge(spy, read, identity, bytearray(PIN.encode()), b"c" * 32, pkcs11=None)
    assert card.signatures == 1


# --------------------------------------------------------------------------- HiCOS


@pytest.fixture
def hicos_card(rsa_card_key: KeyAndCert, ec_card_key: KeyAndCert) -> VirtualHicosCard:
    return VirtualHicosCard(
        {"root_ca": ec_card_key.der, 0x0700: ec_card_key.der, "signature": rsa_card_key.der},
        kind="hpc",
    )


def test_hicos_detect_and_read_signature_certificate(
    hicos_card: VirtualHicosCard, rsa_card_key: KeyAndCert
) -> None:
    _, conn = _connect(hicos_card)
    spy = Spy(conn)
    read = read_card(spy)
    assert read.profile is CardProfile.HICOS
    assert read.certificate == rsa_card_key.der
    detect = [
        "80 A4 00 00 02 3F 00",
        "80 A4 00 00 02 09 00",
        "80 A4 00 00 02 09 05",
        "80 B0 00 00 14",
        "80 A4 00 00 02 3F 00",
        "80 A4 00 00 02 50 30",
        "80 A4 00 00 02 08 F2",
        "80 B0 15 00 04",
    ]
    assert spy.sent[: len(detect)] == [bytes.fromhex(h) for h in detect]
    chunks = spy.sent[len(detect) :]
    assert all(apdu[:2] == b"\x80\xb0" and 0 < apdu[4] <= 200 for apdu in chunks)
    assert chunks[0][2:4] == b"\x15\x04"  # right after the 4-byte header
    assert sum(apdu[4] for apdu in chunks) == len(rsa_card_key.der) - 4


def test_hicos_reads_all_certificates(
    hicos_card: VirtualHicosCard, rsa_card_key: KeyAndCert, ec_card_key: KeyAndCert
) -> None:
    _, conn = _connect(hicos_card)
    hicos = HicosCard(conn)
    assert hicos.detect()
    assert hicos.read_certificates() == {
        "root_ca": ec_card_key.der,
        "issuing_ca": ec_card_key.der,
        "signature": rsa_card_key.der,
    }


def test_profiles_do_not_mistake_each_other(
    hicos_card: VirtualHicosCard, rsa_card_key: KeyAndCert
) -> None:
    _, conn = _connect(rsa_card_key.piv_card())
    assert HicosCard(conn).detect() is False
    _, conn = _connect(hicos_card)
    with pytest.raises(UnknownCard):
        PivCard(conn).select()


def test_hicos_without_signature_certificate(ec_card_key: KeyAndCert) -> None:
    _, conn = _connect(VirtualHicosCard({"root_ca": ec_card_key.der}))
    with pytest.raises(CertificateProblem) as info:
        read_card(conn)
    assert info.value.reason == "missing"


def test_unknown_card() -> None:
    _, conn = _connect(GarbageCard([b"\x6a\x82"]))
    with pytest.raises(UnknownCard, match="無法辨識"):
        read_card(conn)


# --------------------------------------------------------------------------- bad answers

_VERSION_OK = b"CHT V32N" + bytes(12) + b"\x90\x00"
_HICOS_DETECT = [b"\x90\x00"] * 3 + [_VERSION_OK] + [b"\x90\x00"] * 3
# HiCOS detect stops at its first refused SELECT; then PIV SELECT succeeds.
_PIV_SELECTED = [b"\x6e\x00", b"\x90\x00"]


@pytest.mark.parametrize(
    "answers",
    [
        _PIV_SELECTED + [b"\x53\x82\x01\x00\x70\x90\x00"],  # truncated TLV
        _PIV_SELECTED + [b"\x54\x00\x90\x00"],  # wrong tag
        _PIV_SELECTED + [b"\x53\x03\x70\x01\x05\x90\x00"],  # not a SEQUENCE
        _PIV_SELECTED + [bytes.fromhex("53 07 70 02 1F 8B 71 01 01 90 00")],  # bad gzip
        _PIV_SELECTED + [b"\x53\x06\x70\x01\x30\x70\x01\x30\x90\x00"],  # repeated tag
        _PIV_SELECTED + [b"\x01\x61\x00"],  # 61xx forever
        _PIV_SELECTED + [b"\x6f\x00"],
        [b"\x90"],  # one byte: no status word
        _HICOS_DETECT + [b"\x30\x82\xff\xff\x90\x00"],  # too long
        _HICOS_DETECT + [b"\x31\x82\x01\x00\x90\x00"],  # not 30 82
        _HICOS_DETECT + [b"\x30\x82\x01\x00\x90\x00", bytes(10) + b"\x90\x00"],  # short chunk
        _HICOS_DETECT + [b"\x30\x82\x00\x02\x90\x00", b"\x01\x02\x6a\x82"],
        _HICOS_DETECT + [b"\x30\x82\x00\x02\x90\x00", b"\x01\x02\x03\x90\x00"],  # too much
    ],
)
def test_garbage_answers_are_protocol_errors(answers: list[bytes]) -> None:
    _, conn = _connect(GarbageCard(answers))
    with pytest.raises(CardProtocolError, match="卡片回應格式錯誤"):
        read_card(conn, timeout=2.0)


@pytest.mark.parametrize("fault", ["truncate", "garbage"])
def test_spoiled_certificate_answers(rsa_card_key: KeyAndCert, fault: str) -> None:
    # Commands 0: HiCOS detect (6E00); 1: SELECT; 2: GET DATA; 3+: GET RESPONSE.
    card = FaultyCard(rsa_card_key.piv_card(), fault, after=2)  # type: ignore[arg-type]
    _, conn = _connect(card)
    with pytest.raises(CardProtocolError):
        read_card(conn)


def test_spoiled_signature_answer(rsa_card_key: KeyAndCert) -> None:
    _, piv = _selected(FaultyCard(rsa_card_key.piv_card(), "truncate", after=3, times=1))
    piv.verify_pin(PIN)
    # 2: first chained block (fine), 3: last block (261 bytes → 256 + 61 08 → truncated).
    with pytest.raises(CardProtocolError):
        piv.sign(_rsa_block(b"c"), ALG_RSA_2048)


def test_wrong_status_word(rsa_card_key: KeyAndCert) -> None:
    _, piv = _selected(FaultyCard(rsa_card_key.piv_card(), "sw", after=1, sw=0x6F00))
    with pytest.raises(CardProtocolError, match="6F00"):
        piv.pin_tries_left()


_SWS = [0x9000, 0x6100, 0x6104, 0x61FF, 0x6A82, 0x6982, 0x6983, 0x63C2, 0x63C0, 0x6E00, 0x6C10]
_PREFIXES = [b"", b"\x53", b"\x53\x82", b"\x7c", b"\x7c\x82\x01\x04\x82", b"\x30\x82", b"CHT V32N"]
answer_strategy = st.one_of(
    st.binary(max_size=3),
    st.builds(
        lambda prefix, body, sw: prefix + body + sw.to_bytes(2, "big"),
        st.sampled_from(_PREFIXES),
        st.binary(max_size=300),
        st.sampled_from(_SWS) | st.integers(0, 0xFFFF),
    ),
)
CARD_OPERATIONS: dict[str, Callable[[CardConnection], object]] = {
    "read_card": lambda conn: read_card(conn, timeout=2.0),
    "tries": lambda conn: PivCard(conn, timeout=2.0).pin_tries_left(),
    "verify": lambda conn: PivCard(conn, timeout=2.0).verify_pin(PIN),
    "sign_rsa": lambda conn: PivCard(conn, timeout=2.0).sign(bytes(256), ALG_RSA_2048),
    "sign_ec": lambda conn: PivCard(conn, timeout=2.0).sign(bytes(32), ALG_ECC_P256),
    "hicos": lambda conn: HicosCard(conn, timeout=2.0).read_certificates(),
    "piv_cert": lambda conn: PivCard(conn, timeout=2.0).read_auth_certificate(),
}


@settings(max_examples=300, deadline=None)
@given(
    operation=st.sampled_from(sorted(CARD_OPERATIONS)),
    answers=st.lists(answer_strategy, min_size=1, max_size=12),
)
def test_random_answers_only_raise_card_errors(operation: str, answers: list[bytes]) -> None:
    _, conn = _connect(GarbageCard(answers))
    start = time.monotonic()
    try:
        CARD_OPERATIONS[operation](conn)
    except CardError as exc:
        assert PIN not in str(exc) and PIN not in repr(exc)
    assert time.monotonic() - start < 2.5


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_random_bytes_card(seed: int) -> None:
    _, conn = _connect(GarbageCard(seed=seed))
    for operation in CARD_OPERATIONS.values():
        try:
            operation(conn)
        except CardError:
            pass


# --------------------------------------------------------------------------- timeouts and removal


def test_slow_card_is_unresponsive_within_the_timeout(rsa_card_key: KeyAndCert) -> None:
    slow = FaultyCard(rsa_card_key.piv_card(), "slow", after=1, seconds=30)
    backend, piv = _selected(slow, timeout=0.3)
    start = time.monotonic()
    with pytest.raises(CardUnresponsive, match="0.3 秒"):
        piv.read_auth_certificate()
    assert time.monotonic() - start < 1.0
    backend.remove(READER)  # wakes the sleeping card


def test_timeout_covers_the_whole_operation(rsa_card_key: KeyAndCert) -> None:
    """Each answer comes in time, but together they overrun the operation's budget."""

    class Sluggish(CardWrapper):
        def process(self, apdu: bytes) -> bytes:
            time.sleep(0.15)
            return self.inner.process(apdu)

    _, conn = _connect(Sluggish(rsa_card_key.piv_card()))
    start = time.monotonic()
    with pytest.raises(CardUnresponsive):
        read_card(conn, timeout=0.4)
    assert time.monotonic() - start < 1.5


def test_vanishing_card(rsa_card_key: KeyAndCert) -> None:
    backend, piv = _selected(FaultyCard(rsa_card_key.piv_card(), "vanish", after=1))
    events: list[tuple[str, bool]] = []
    backend.subscribe(lambda reader, inserted: events.append((reader, inserted)))
    with pytest.raises(CardRemoved, match="卡片已被移除"):
        piv.read_auth_certificate()
    assert events == [(READER, False)]
    assert backend.card_in(READER) is None
    with pytest.raises(CardRemoved):
        piv.pin_tries_left()
    with pytest.raises(NoCard):
        backend.connect(READER)


def test_card_pulled_out_during_a_slow_command(rsa_card_key: KeyAndCert) -> None:
    backend, conn = _connect(FaultyCard(rsa_card_key.piv_card(), "slow", seconds=30))
    threading.Timer(0.1, backend.remove, args=(READER,)).start()
    start = time.monotonic()
    with pytest.raises(CardRemoved):
        conn.transmit(SELECT_PIV_APDU, timeout=5.0)
    assert time.monotonic() - start < 1.0


# --------------------------------------------------------------------------- backend


def test_backend_slots_and_events(rsa_card_key: KeyAndCert, hicos_card: VirtualHicosCard) -> None:
    backend = InProcessBackend(["A", "B"])
    events: list[tuple[str, bool]] = []
    unsubscribe = backend.subscribe(lambda reader, inserted: events.append((reader, inserted)))
    assert backend.readers() == ["A", "B"]
    with pytest.raises(NoCard):
        backend.connect("A")
    with pytest.raises(NoReader):
        backend.connect("nowhere")
    piv_card = rsa_card_key.piv_card()
    backend.insert("A", piv_card)
    conn = backend.connect("A")
    assert conn.atr() == PIV_ATR
    backend.insert("A", hicos_card)  # swapping cards: the old connection is stale
    with pytest.raises(CardRemoved):
        conn.transmit(SELECT_PIV_APDU)
    assert read_card(backend.connect("A")).profile is CardProfile.HICOS
    backend.remove("A")
    backend.remove("A")  # already empty: no event
    unsubscribe()
    backend.insert("B", piv_card)
    assert events == [("A", True), ("A", False), ("A", True), ("A", False)]
    conn = backend.connect("B")
    conn.close()
    with pytest.raises(RuntimeError):
        conn.transmit(SELECT_PIV_APDU)


def test_listener_errors_do_not_break_the_backend(rsa_card_key: KeyAndCert) -> None:
    backend = InProcessBackend()

    def broken(reader: str, inserted: bool) -> None:
        raise RuntimeError("listener bug")

    backend.subscribe(broken)
    backend.insert("X", rsa_card_key.piv_card())
    assert backend.readers() == ["X"]


# --------------------------------------------------------------------------- the PIN stays secret


def _error_texts(exc: BaseException) -> str:
    texts = []
    while exc is not None:
        texts += [str(exc), repr(exc), repr(exc.args), repr(getattr(exc, "params", None))]
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return "\n".join(texts)


def test_pin_never_in_errors(rsa_card_key: KeyAndCert) -> None:
    secret = "73915824"
    padded_hex = secret.encode().hex()
    card = rsa_card_key.piv_card(secret)
    raised: list[BaseException] = []

    def attempt(action: Callable[[], object]) -> None:
        try:
            action()
        except CardError as exc:
            raised.append(exc)

    backend, conn = _connect(card)
    piv = PivCard(conn)
    piv.select()

    def verify(pin: str) -> Callable[[], None]:
        return lambda: piv.verify_pin(pin)

    for wrong in ["7391582", "739158245", "7391 582", "7391582４", "73915825", "73915826"]:
        attempt(verify(wrong))
    for pin in ["73915827", secret]:  # blocked: even the right PIN is refused
        attempt(verify(pin))
    attempt(lambda: piv.sign(bytes(256), ALG_RSA_2048))

    slow = FaultyCard(rsa_card_key.piv_card(secret), "slow", after=1)
    backend.insert(READER, slow)
    piv = PivCard(backend.connect(READER), timeout=0.2)
    piv.select()
    attempt(lambda: piv.verify_pin(secret))
    backend.insert(READER, FaultyCard(card, "vanish", after=1))
    piv = PivCard(backend.connect(READER))
    piv.select()
    attempt(lambda: piv.verify_pin(secret))
    backend.remove(READER)

    kinds = {type(exc) for exc in raised}
    assert {PinFormatError, WrongPin, PinBlocked, CardUnresponsive, CardRemoved} <= kinds
    for exc in raised:
        text = _error_texts(exc)
        assert secret not in text and padded_hex not in text.lower()
    assert secret not in repr(card) and secret not in repr(slow)
    assert all(secret.encode().hex().upper() not in line.replace(" ", "") for line in slow.seen)
