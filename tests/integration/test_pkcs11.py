"""card.readers.pkcs11 against SoftHSM2, standing in for the HiCOS PKCS#11 module.

scripts/test-services.sh exports SOFTHSM2_CONF (a configuration with its own, empty
token directory) and SMIS_TEST_PKCS11_MODULE; each test module initialises its own
token there with softhsm2-util.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import traceback
import uuid
from collections.abc import Iterator

import pkcs11
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from pkcs11 import Attribute, CertificateType, KeyType, ObjectClass, TokenFlag
from pkcs11 import exceptions as p11
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

from card import errors
from card.identity import CardKind
from card.readers.pkcs11 import HICOS_TOKEN_LABEL, UNBLOCK_MOICA, Pkcs11Signer, map_pkcs11_error
from card.readers.profiles import CardProfile
from card.signing import UNBLOCK_AT
from card.sim.hicos_gen2 import VirtualHicosGen2Card
from card.sim.inprocess import InProcessBackend
from card.sim.testpki import PkiUser, TestPki, make_test_pki
from card.sim.virtual import VirtualHicosCard
from card.validation import CertificateValidator
from smis_tui.services import Services
from smis_tui.services.card_login import CardLoginService
from tests.helpers import SoftToken, delete_softhsm_token, softhsm_card_token, token_flags

USER_PIN = "246813"
SO_PIN = "97531864"
WRONG_PIN = "864209"
CHALLENGE = os.urandom(32)


def pkcs11_module() -> str:
    module = os.environ.get("SMIS_TEST_PKCS11_MODULE")
    if module and os.environ.get("SOFTHSM2_CONF"):
        return module
    if os.environ.get("CI") or os.environ.get("SMIS_REQUIRE_POSTGRES"):
        pytest.fail(
            "SoftHSM2 is not set up (SMIS_TEST_PKCS11_MODULE / SOFTHSM2_CONF unset): run the "
            "tests with `make test`"
        )
    pytest.skip("SoftHSM2 not set up (SMIS_TEST_PKCS11_MODULE unset); `make test` runs these")


def _certificate(public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey, cn: str) -> bytes:
    issuer_key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")]))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(issuer_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


class Token:
    def __init__(self, module: str, label: str) -> None:
        self.module = module
        self.label = label
        self.serial = ""
        self.rsa_public: rsa.RSAPublicKey
        self.ec_public: ec.EllipticCurvePublicKey
        self.certificate: bytes
        self.ec_certificate: bytes
        self.keyless_certificate: bytes  # a certificate whose private key is not there


def _store_certificate(session: pkcs11.Session, der: bytes, label: str) -> None:
    session.create_object(
        {
            Attribute.CLASS: ObjectClass.CERTIFICATE,
            Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
            Attribute.TOKEN: True,
            Attribute.LABEL: label,
            Attribute.ID: label.encode(),
            Attribute.SUBJECT: x509.load_der_x509_certificate(der).subject.public_bytes(),
            Attribute.VALUE: der,
        }
    )


def new_softhsm_token(pin: str) -> tuple[str, str]:
    """A new, empty SoftHSM2 token with the user PIN ``pin``: (module, label)."""
    module = pkcs11_module()
    label = f"smis-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", label]
        + ["--pin", pin, "--so-pin", SO_PIN],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return module, label


@pytest.fixture(scope="module")
def token() -> Iterator[Token]:
    module, label = new_softhsm_token(USER_PIN)
    lib = pkcs11.lib(module)
    lib.reinitialize()  # SoftHSM2 only sees tokens that existed at C_Initialize
    tok = Token(module, label)
    found = lib.get_token(token_label=label)
    tok.serial = found.serial.decode().strip()
    with found.open(rw=True, user_pin=USER_PIN) as session:
        public, _ = session.generate_keypair(
            KeyType.RSA, 2048, label="SIGN", id=b"SIGN", store=True
        )
        tok.rsa_public = rsa.RSAPublicNumbers(
            int.from_bytes(public[Attribute.PUBLIC_EXPONENT], "big"),
            int.from_bytes(public[Attribute.MODULUS], "big"),
        ).public_key()
        tok.certificate = _certificate(tok.rsa_public, "測試醫師 SIGN")
        _store_certificate(session, tok.certificate, "SIGN")
        params = session.create_domain_parameters(
            KeyType.EC,
            {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
            local=True,
        )
        ec_public, _ = params.generate_keypair(store=True, label="ECSIGN", id=b"ECSIGN")
        loaded = serialization.load_der_public_key(encode_ec_public_key(ec_public))
        assert isinstance(loaded, ec.EllipticCurvePublicKey)
        tok.ec_public = loaded
        tok.ec_certificate = _certificate(loaded, "測試醫師 ECSIGN")
        _store_certificate(session, tok.ec_certificate, "ECSIGN")
        tok.keyless_certificate = _certificate(loaded, "測試醫師 KEYX")
        _store_certificate(session, tok.keyless_certificate, "KEYX")
    yield tok


@pytest.fixture
def signer(token: Token) -> Pkcs11Signer:
    return Pkcs11Signer(token.module, token.label, unblock_at=UNBLOCK_MOICA)


def test_rsa_signature_verifies_with_the_certificate(signer: Pkcs11Signer, token: Token) -> None:
    signature = signer.sign(USER_PIN, CHALLENGE, certificate=token.certificate, reader=READER_1)
    token.rsa_public.verify(signature, CHALLENGE, padding.PKCS1v15(), hashes.SHA256())
    in_reader = Pkcs11Signer(token.module, reader_tokens={"Reader 1": token.serial})
    cert_der = in_reader.reader_certificate("Reader 1")
    assert cert_der == token.certificate
    cert_key = x509.load_der_x509_certificate(cert_der).public_key()
    assert isinstance(cert_key, rsa.RSAPublicKey)
    cert_key.verify(signature, CHALLENGE, padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(InvalidSignature):
        cert_key.verify(signature, CHALLENGE + b"x", padding.PKCS1v15(), hashes.SHA256())
    assert in_reader.reader_certificate("Reader 1", "ECSIGN") == token.ec_certificate
    with pytest.raises(errors.CertificateProblem):
        in_reader.reader_certificate("Reader 1", "NONE")


def test_ecdsa_signature_is_der_and_verifies(signer: Pkcs11Signer, token: Token) -> None:
    # The key is the certificate's (same CKA_ID), whatever key_label says.
    signature = signer.sign(
        bytearray(USER_PIN.encode()), CHALLENGE, certificate=token.ec_certificate, reader=READER_1
    )
    token.ec_public.verify(signature, CHALLENGE, ec.ECDSA(hashes.SHA256()))


def test_module_path_from_the_environment(token: Token, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMIS_PKCS11_MODULE", token.module)
    signer = Pkcs11Signer(token_label=token.label)
    assert signer.token_present()
    signature = signer.sign(USER_PIN, b"x", certificate=token.certificate, reader=READER_1)
    token.rsa_public.verify(signature, b"x", padding.PKCS1v15(), hashes.SHA256())


def _leaks(exc: BaseException, secret: str) -> bool:
    text = "".join(traceback.format_exception(exc))
    return any(
        secret in part
        for part in (str(exc), repr(exc), repr(exc.args), repr(getattr(exc, "params", {})), text)
    )


def test_wrong_pin(signer: Pkcs11Signer, token: Token, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    pin = WRONG_PIN
    with pytest.raises(errors.WrongPin) as wrong:
        signer.sign(pin, CHALLENGE, certificate=token.certificate, reader=READER_1)
    assert isinstance(wrong.value, errors.WrongPinTriesUnknown)
    assert wrong.value.tries_left == -1
    assert wrong.value.key == "card.wrong_pin_tries_unknown"
    assert "密碼錯誤" in str(wrong.value) and "-1" not in str(wrong.value)
    assert wrong.value.__cause__ is None and wrong.value.__suppress_context__
    assert not _leaks(wrong.value, pin)
    assert pin not in caplog.text
    # The failed login left nothing behind: the right PIN works at once.
    assert (
        len(signer.sign(USER_PIN, CHALLENGE, certificate=token.certificate, reader=READER_1)) == 256
    )


def test_pin_format_is_checked_before_the_token(signer: Pkcs11Signer, token: Token) -> None:
    for pin in ("12345", "123456789", "12 456", "一二三四五六"):
        with pytest.raises(errors.PinFormatError) as bad:
            signer.sign(pin, CHALLENGE, certificate=token.certificate, reader=READER_1)
        assert not _leaks(bad.value, pin)


def test_missing_token_key_and_module(token: Token, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(errors.CardTokenNotFound):
        Pkcs11Signer(token.module, "no such label").sign(
            USER_PIN, CHALLENGE, certificate=token.certificate, reader=READER_1
        )
    assert not Pkcs11Signer(token.module, "no such label").token_present()
    with pytest.raises(errors.CardError, match="找不到可用的簽章金鑰"):
        Pkcs11Signer(token.module, token.label).sign(
            USER_PIN, CHALLENGE, certificate=token.keyless_certificate, reader=READER_1
        )
    with pytest.raises(errors.Pkcs11Unavailable, match="/nonexistent/libhicos.so"):
        Pkcs11Signer("/nonexistent/libhicos.so").sign(
            USER_PIN, CHALLENGE, certificate=token.certificate, reader=READER_1
        )
    monkeypatch.delenv("SMIS_PKCS11_MODULE", raising=False)
    with pytest.raises(errors.Pkcs11Unavailable, match="SMIS_PKCS11_MODULE"):
        Pkcs11Signer()


def test_error_mapping() -> None:
    locked = map_pkcs11_error(p11.PinLocked(), UNBLOCK_MOICA)
    assert isinstance(locked, errors.PinBlocked) and "自然人憑證管理中心" in str(locked)
    last = map_pkcs11_error(p11.PinIncorrect(), UNBLOCK_MOICA, final_try=True)
    assert isinstance(last, errors.WrongPin) and last.tries_left == 1
    assert not isinstance(last, errors.WrongPinTriesUnknown)
    for raised, expected in (
        (p11.PinIncorrect(), errors.WrongPinTriesUnknown),
        (p11.PinLenRange(), errors.PinFormatError),
        (p11.DeviceRemoved(), errors.CardRemoved),
        (p11.TokenNotPresent(), errors.NoCard),
        (p11.DeviceError(), errors.Pkcs11Unavailable),
    ):
        assert isinstance(map_pkcs11_error(raised, UNBLOCK_MOICA), expected), raised


# ---------------------------------------------------------------------- two cards, two readers
# A kiosk with two readers: both cards' tokens are labelled "HiCOS PKI Smart Card" in the
# module. The PIN typed for the card in one reader must reach that card's token only: a
# failed C_Login leaves CKF_USER_PIN_COUNT_LOW in the other token's flags.

PIN_1 = "111222"
PIN_2 = "333444"
READER_1 = "Reader 1"
READER_2 = "Reader 2"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def two_tokens(pki: TestPki) -> Iterator[tuple[SoftToken, SoftToken]]:
    """The tokens of 王小明's card (PIN_1) and 周怡君's card (PIN_2), in that order."""
    module = pkcs11_module()
    made: list[SoftToken] = []
    try:
        for name, pin in (("moica", PIN_1), ("moica2", PIN_2)):
            user = pki.user(name)
            made.append(
                softhsm_card_token(
                    module,
                    user.key_path,
                    user.cert_der,
                    pin,
                    label=HICOS_TOKEN_LABEL,
                    so_pin=SO_PIN,
                )
            )
        yield made[0], made[1]
    finally:
        for made_token in made:
            delete_softhsm_token(made_token)


def _tried(token: SoftToken) -> bool:
    """True when a C_Login with a wrong PIN reached ``token``."""
    return bool(token_flags(token) & TokenFlag.USER_PIN_COUNT_LOW)


def _verify(user: PkiUser, signature: bytes, data: bytes) -> None:
    public = user.certificate.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())


def test_the_pin_reaches_only_the_token_of_the_certificate_shown(
    pki: TestPki, two_tokens: tuple[SoftToken, SoftToken]
) -> None:
    first, second = two_tokens
    readers = {READER_1: first.serial, READER_2: second.serial}
    signer = Pkcs11Signer(
        first.module, HICOS_TOKEN_LABEL, unblock_at=UNBLOCK_MOICA, reader_tokens=readers
    )
    # Each card in turn: whichever token the module lists first, the other one is never
    # tried with this card's PIN.
    for user, pin, reader, other in (
        (pki.user("moica2"), PIN_2, READER_2, first),
        (pki.user("moica"), PIN_1, READER_1, second),
    ):
        signature = signer.sign(pin, CHALLENGE, certificate=user.cert_der, reader=reader)
        _verify(user, signature, CHALLENGE)
        assert not _tried(other)
    # The first card's PIN typed for the second card: only the second card's token counts it.
    with pytest.raises(errors.WrongPinTriesUnknown):
        signer.sign(PIN_1, CHALLENGE, certificate=pki.user("moica2").cert_der, reader=READER_2)
    assert _tried(second) and not _tried(first)


def test_a_card_showing_another_readers_certificate_gets_no_pin(
    pki: TestPki, two_tokens: tuple[SoftToken, SoftToken]
) -> None:
    """Certificates are public: a rogue card in reader 1 answers with the certificate
    of the card in reader 2. A PIN typed at reader 1 must not reach reader 2's card."""
    first, second = two_tokens
    victim = pki.user("moica2")  # on the second token, the card in reader 2
    mapped = Pkcs11Signer(
        first.module,
        HICOS_TOKEN_LABEL,
        reader_tokens={READER_1: first.serial, READER_2: second.serial},
    )
    with pytest.raises(errors.CardTokenNotFound):
        mapped.sign("000000", CHALLENGE, certificate=victim.cert_der, reader=READER_1)
    # A module that ties no token to a reader, with two tokens present: no guessing.
    unmapped = Pkcs11Signer(first.module, HICOS_TOKEN_LABEL)
    with pytest.raises(errors.CardTokenNotFound):
        unmapped.sign("000000", CHALLENGE, certificate=victim.cert_der, reader=READER_1)
    assert not _tried(first) and not _tried(second)


def test_no_token_holds_the_certificate_so_no_pin_is_sent(
    pki: TestPki, two_tokens: tuple[SoftToken, SoftToken]
) -> None:
    first, second = two_tokens
    signer = Pkcs11Signer(
        first.module,
        HICOS_TOKEN_LABEL,
        reader_tokens={READER_1: first.serial, READER_2: second.serial},
    )
    with pytest.raises(errors.CardTokenNotFound) as refused:
        signer.sign("000000", CHALLENGE, certificate=pki.user("hpc").cert_der, reader=READER_1)
    assert "密碼未送出" in str(refused.value)
    assert not any(_tried(token) for token in two_tokens)


def test_reader_certificate_comes_from_the_readers_token_or_nowhere(
    pki: TestPki, two_tokens: tuple[SoftToken, SoftToken]
) -> None:
    first, second = two_tokens
    configured = {READER_1: first.serial, READER_2: second.serial, "Reader 3": "0000"}
    signer = Pkcs11Signer(first.module, HICOS_TOKEN_LABEL, reader_tokens=configured)
    assert signer.reader_certificate(READER_2) == pki.user("moica2").cert_der
    assert signer.reader_certificate(READER_1) == pki.user("moica").cert_der
    with pytest.raises(errors.NoCard):
        signer.reader_certificate("Reader 3")  # configured, but its card is not there
    # SoftHSM2 slots are "SoftHSM slot ID 0x…": they name no reader, so nothing is guessed.
    with pytest.raises(errors.ReaderTokenUnknown) as unknown:
        Pkcs11Signer(first.module, HICOS_TOKEN_LABEL).reader_certificate(READER_2)
    assert READER_2 in str(unknown.value)


# ---------------------------------------------------------------------- logins at that kiosk


def _kiosk(
    services: Services, pki: TestPki, reader_tokens: dict[str, str] | None
) -> tuple[InProcessBackend, CardLoginService]:
    readers = InProcessBackend([READER_1, READER_2])
    module = pkcs11_module()

    def signer(kind: CardKind) -> Pkcs11Signer:
        return Pkcs11Signer(
            module, HICOS_TOKEN_LABEL, unblock_at=UNBLOCK_AT[kind], reader_tokens=reader_tokens
        )

    logins = CardLoginService(
        readers,
        CertificateValidator(pki.ca_dir, pki.crl_dir),
        services.login,
        services.accounts,
        signer,
    )
    return readers, logins


def test_login_in_reader_2_sends_the_pin_to_its_own_token(
    services: Services, pki: TestPki, two_tokens: tuple[SoftToken, SoftToken]
) -> None:
    first, second = two_tokens
    readers, logins = _kiosk(services, pki, {READER_1: first.serial, READER_2: second.serial})
    readers.insert(READER_1, VirtualHicosCard({"signature": pki.user("moica").cert_der}))
    readers.insert(READER_2, VirtualHicosCard({"signature": pki.user("moica2").cert_der}))
    shown = logins.read(READER_2)
    assert shown.identity.name == pki.user("moica2").cn
    with pytest.raises(errors.WrongPinTriesUnknown):
        logins.authenticate(READER_2, PIN_1, shown.identity.cert_sha256)
    assert _tried(second) and not _tried(first)
    result = logins.authenticate(READER_2, PIN_2, shown.identity.cert_sha256)
    assert result.needs_person_id is not None
    assert result.needs_person_id.identity.cert_sha256 == shown.identity.cert_sha256
    assert not _tried(first)


def test_second_generation_card_logs_in_through_its_readers_token(
    services: Services, pki: TestPki, two_tokens: tuple[SoftToken, SoftToken]
) -> None:
    first, second = two_tokens
    readers, logins = _kiosk(services, pki, {READER_1: first.serial, READER_2: second.serial})
    readers.insert(READER_1, VirtualHicosCard({"signature": pki.user("moica").cert_der}))
    readers.insert(READER_2, VirtualHicosGen2Card())
    shown = logins.read(READER_2)
    assert (shown.profile, shown.identity.name) == (CardProfile.HICOS, pki.user("moica2").cn)
    assert shown.identity.kind == CardKind.MOICA and shown.problem is None
    result = logins.authenticate(READER_2, PIN_2, shown.identity.cert_sha256)
    assert result.needs_person_id is not None
    assert not _tried(first) and not _tried(second)


def test_second_generation_card_without_a_reader_match_or_a_module(
    services: Services, pki: TestPki, two_tokens: tuple[SoftToken, SoftToken]
) -> None:
    readers, logins = _kiosk(services, pki, None)
    readers.insert(READER_2, VirtualHicosGen2Card())
    with pytest.raises(errors.ReaderTokenUnknown):
        logins.read(READER_2)
    with pytest.raises(errors.ReaderTokenUnknown):
        logins.authenticate(READER_2, PIN_2)
    assert not any(_tried(token) for token in two_tokens)
    without_module = CardLoginService(
        readers,
        CertificateValidator(pki.ca_dir, pki.crl_dir),
        services.login,
        services.accounts,
    )
    with pytest.raises(errors.CardMiddlewareNeeded, match="讀卡機元件"):
        without_module.read(READER_2)
