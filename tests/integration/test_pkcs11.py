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
from pkcs11 import Attribute, CertificateType, KeyType, ObjectClass
from pkcs11 import exceptions as p11
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

from card import errors
from card.readers.pkcs11 import UNBLOCK_MOICA, Pkcs11Signer, map_pkcs11_error

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
        self.rsa_public: rsa.RSAPublicKey
        self.ec_public: ec.EllipticCurvePublicKey
        self.certificate: bytes


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
    with lib.get_token(token_label=label).open(rw=True, user_pin=USER_PIN) as session:
        public, _ = session.generate_keypair(
            KeyType.RSA, 2048, label="SIGN", id=b"SIGN", store=True
        )
        tok.rsa_public = rsa.RSAPublicNumbers(
            int.from_bytes(public[Attribute.PUBLIC_EXPONENT], "big"),
            int.from_bytes(public[Attribute.MODULUS], "big"),
        ).public_key()
        tok.certificate = _certificate(tok.rsa_public, "測試醫師 SIGN")
        subject = x509.load_der_x509_certificate(tok.certificate).subject.public_bytes()
        session.create_object(
            {
                Attribute.CLASS: ObjectClass.CERTIFICATE,
                Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
                Attribute.TOKEN: True,
                Attribute.LABEL: "SIGN",
                Attribute.ID: b"SIGN",
                Attribute.SUBJECT: subject,
                Attribute.VALUE: tok.certificate,
            }
        )
        params = session.create_domain_parameters(
            KeyType.EC,
            {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
            local=True,
        )
        ec_public, _ = params.generate_keypair(store=True, label="ECSIGN", id=b"ECSIGN")
        loaded = serialization.load_der_public_key(encode_ec_public_key(ec_public))
        assert isinstance(loaded, ec.EllipticCurvePublicKey)
        tok.ec_public = loaded
    yield tok


@pytest.fixture
def signer(token: Token) -> Pkcs11Signer:
    return Pkcs11Signer(token.module, token.label, unblock_at=UNBLOCK_MOICA)


def test_rsa_signature_verifies_with_the_certificate(signer: Pkcs11Signer, token: Token) -> None:
    signature = signer.sign(USER_PIN, CHALLENGE)
    token.rsa_public.verify(signature, CHALLENGE, padding.PKCS1v15(), hashes.SHA256())
    cert_der = signer.certificate("SIGN")
    assert cert_der == token.certificate
    cert_key = x509.load_der_x509_certificate(cert_der).public_key()
    assert isinstance(cert_key, rsa.RSAPublicKey)
    cert_key.verify(signature, CHALLENGE, padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(InvalidSignature):
        cert_key.verify(signature, CHALLENGE + b"x", padding.PKCS1v15(), hashes.SHA256())
    assert signer.certificate("KEYX") is None


def test_ecdsa_signature_is_der_and_verifies(signer: Pkcs11Signer, token: Token) -> None:
    signature = signer.sign(bytearray(USER_PIN.encode()), CHALLENGE, key_label="ECSIGN")
    token.ec_public.verify(signature, CHALLENGE, ec.ECDSA(hashes.SHA256()))


def test_module_path_from_the_environment(token: Token, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMIS_PKCS11_MODULE", token.module)
    signer = Pkcs11Signer(token_label=token.label)
    assert signer.token_present()
    token.rsa_public.verify(signer.sign(USER_PIN, b"x"), b"x", padding.PKCS1v15(), hashes.SHA256())


def _leaks(exc: BaseException, secret: str) -> bool:
    text = "".join(traceback.format_exception(exc))
    return any(
        secret in part
        for part in (str(exc), repr(exc), repr(exc.args), repr(getattr(exc, "params", {})), text)
    )


def test_wrong_pin(signer: Pkcs11Signer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    pin = WRONG_PIN
    with pytest.raises(errors.WrongPin) as wrong:
        signer.sign(pin, CHALLENGE)
    assert isinstance(wrong.value, errors.WrongPinTriesUnknown)
    assert wrong.value.tries_left == -1
    assert wrong.value.key == "card.wrong_pin_tries_unknown"
    assert "密碼錯誤" in str(wrong.value) and "-1" not in str(wrong.value)
    assert wrong.value.__cause__ is None and wrong.value.__suppress_context__
    assert not _leaks(wrong.value, pin)
    assert pin not in caplog.text
    # The failed login left nothing behind: the right PIN works at once.
    assert len(signer.sign(USER_PIN, CHALLENGE)) == 256


def test_pin_format_is_checked_before_the_token(signer: Pkcs11Signer) -> None:
    for pin in ("12345", "123456789", "12 456", "一二三四五六"):
        with pytest.raises(errors.PinFormatError) as bad:
            signer.sign(pin, CHALLENGE)
        assert not _leaks(bad.value, pin)


def test_missing_token_key_and_module(token: Token, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(errors.NoCard):
        Pkcs11Signer(token.module, "HiCOS PKI Smart Card").sign(USER_PIN, CHALLENGE)
    assert not Pkcs11Signer(token.module, "HiCOS PKI Smart Card").token_present()
    with pytest.raises(errors.CardError, match="找不到可用的簽章金鑰"):
        Pkcs11Signer(token.module, token.label).sign(USER_PIN, CHALLENGE, key_label="KEYX")
    with pytest.raises(errors.Pkcs11Unavailable, match="/nonexistent/libhicos.so"):
        Pkcs11Signer("/nonexistent/libhicos.so").sign(USER_PIN, CHALLENGE)
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
