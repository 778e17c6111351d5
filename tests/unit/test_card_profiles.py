"""Card profiles (PIV, HiCOS) through the in-process backend and virtual cards."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

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
    parse_single_tlv,
    parse_template,
    parse_tlv,
    parse_tlvs,
)
from card.errors import (
    CardError,
    CardProtocolError,
    CardRemoved,
    CardUnresponsive,
    CertificateProblem,
    NoCard,
    NoReader,
    PinBlocked,
    PinFormatError,
    PinNotVerified,
    UnknownCard,
    WrongPin,
)
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
from card.readers.profiles import CardProfile, read_card
from card.sim.inprocess import InProcessBackend
from card.sim.testpki import self_signed_certificate
from card.sim.virtual import (
    YUBIKEY_ATR,
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


class Spy:
    """A CardConnection that records every command it passes on."""

    def __init__(self, conn: CardConnection) -> None:
        self.conn = conn
        self.reader = conn.reader
        self.sent: list[bytes] = []

    def atr(self) -> bytes:
        return self.conn.atr()

    def transmit(self, apdu: bytes, timeout: float = DEFAULT_TIMEOUT_S) -> Response:
        self.sent.append(bytes(apdu))
        return self.conn.transmit(apdu, timeout)

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
    assert read.atr == YUBIKEY_ATR and read.reader == READER
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
    piv.select()  # re-select drops the verified state
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
    body = parse_template(parse_single_tlv(card._cert_object, 0x53))
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
    assert conn.atr() == YUBIKEY_ATR
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
