"""Our virtual PIV cards and our login against independent PC/SC clients, through the
private pcscd of `make test` (scripts/test-services.sh) and its vpcd readers.

* OpenSC (its PIV driver, through its PKCS#11 module and pkcs11-tool) lists the
  certificate of a virtual PIV card and signs with RSA-2048 and P-256;
* yubico-piv-tool shows the card's status and verifies its PIN;
* another program (opensc-tool) selecting another application between our VERIFY and
  GENERAL AUTHENTICATE breaks a login without a PC/SC transaction, and cannot break
  ours, which holds one;
* a card reset by another program is read again, but never gets the PIN again unasked.

The tools reach the private pcscd through PCSCLITE_CSOCK_NAME, which test-services.sh
exports and libpcsclite (used by OpenSC and yubico-piv-tool alike) honours.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from card.errors import CardProtocolError, CardReset
from card.identity import identity_from_certificate
from card.readers.pcsc import PcscBackend, PcscConnection
from card.readers.piv import SELECT_PIV_APDU
from card.readers.profiles import read_card
from card.signing import sign_challenge
from card.sim.testpki import PkiUser, TestPki, make_test_pki
from card.sim.virtual import ISD_AID, CardWrapper, SimulatedCard, VirtualPivCard
from card.sim.vpcd import VpcdCard
from card.transport import DEFAULT_TIMEOUT_S, Response
from tests.integration.test_pcsc import READER_0, pcscd_ctl, plug, unplug

PIN = "135790"
# What another program sends: SELECT of GlobalPlatform's security domain, which every
# GlobalPlatform card (and the virtual PIV card) holds. Selecting it deselects PIV.
SELECT_ISD = (bytes.fromhex("00 A4 04 00 08") + ISD_AID).hex(":").upper()
# How long opensc-tool takes at most with the card free (it takes well under a second):
# still running after this, it is waiting for our transaction.
FREE_CARD_S = 3.0


# ---------------------------------------------------------------------- the tools


def required_tool(name: str) -> str:
    """The path of ``name``; missing, the test fails where the services are required
    (make test) and is skipped elsewhere."""
    pcscd_ctl()
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"{name} not installed (the Makefile's TEST_DEBS install it)"
    if os.environ.get("CI") or os.environ.get("SMIS_REQUIRE_POSTGRES"):
        pytest.fail(message)
    pytest.skip(message)


def opensc_module() -> str:
    """OpenSC's PKCS#11 module, wherever the distribution put it."""
    candidates: list[str] = []
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        listed = subprocess.run(
            ["dpkg", "-L", "opensc-pkcs11"], capture_output=True, text=True, timeout=30
        ).stdout.split()
        candidates += [path for path in listed if path.endswith("/opensc-pkcs11.so")]
    for pattern in ("/usr/lib/*/opensc-pkcs11.so", "/usr/lib*/opensc-pkcs11.so"):
        candidates += sorted(glob.glob(pattern))
    for path in candidates:
        if os.path.exists(path):
            return path
    message = "OpenSC's PKCS#11 module (opensc-pkcs11.so) not installed"
    if os.environ.get("CI") or os.environ.get("SMIS_REQUIRE_POSTGRES"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def opensc_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment for OpenSC: the private pcscd (inherited PCSCLITE_CSOCK_NAME) and
    a configuration of its own, without the file cache a host configuration may turn on
    (a certificate cached from another test's card would be shown for this one)."""
    conf = tmp_path_factory.mktemp("opensc") / "opensc.conf"
    conf.write_text("app default {\n  framework pkcs15 {\n    use_file_caching = no;\n  }\n}\n")
    return {**os.environ, "OPENSC_CONF": str(conf)}


def run(
    command: list[str], env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)


# ---------------------------------------------------------------------- the cards


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


class Recorder(CardWrapper):
    """The card's side: every command in the order the card received it."""

    def __init__(self, inner: SimulatedCard) -> None:
        super().__init__(inner)
        self.received: list[bytes] = []

    def process(self, apdu: bytes) -> bytes:
        self.received.append(bytes(apdu))
        return self.inner.process(apdu)


@contextlib.contextmanager
def inserted(user: PkiUser) -> Iterator[tuple[VirtualPivCard, Recorder]]:
    """``user``'s virtual PIV card in reader 0 of the private pcscd."""
    pcscd_ctl()
    card = VirtualPivCard(user.cert_der, user.key, PIN)
    recorder = Recorder(card)
    vcard = VpcdCard(recorder)
    plug(vcard)
    try:
        yield card, recorder
    finally:
        unplug(vcard)


# ---------------------------------------------------------------------- OpenSC


@pytest.mark.parametrize(
    ("user_name", "mechanism"), [("moica", "SHA256-RSA-PKCS"), ("piv", "ECDSA-SHA256")]
)
def test_opensc_reads_the_certificate_and_signs(
    pki: TestPki, opensc_env: dict[str, str], tmp_path: Path, user_name: str, mechanism: str
) -> None:
    tool = required_tool("pkcs11-tool")
    module = opensc_module()
    user = pki.user(user_name)
    data = tmp_path / "data"
    data.write_bytes(b"signed by OpenSC through pcscd")
    with inserted(user) as (card, _):
        listed = run([tool, "--module", module, "--list-objects", "--type", "cert"], opensc_env)
        assert listed.returncode == 0, listed.stderr
        assert "Certificate for PIV Authentication" in listed.stdout
        read = tmp_path / "cert.der"
        got = run(
            [tool, "--module", module, "--read-object", "--type", "cert", "--id", "01"]
            + ["--output-file", str(read)],
            opensc_env,
        )
        assert got.returncode == 0, got.stderr
        assert read.read_bytes() == user.cert_der
        signature_file = tmp_path / "signature"
        signed = run(
            [tool, "--module", module, "--login", "--pin", PIN, "--sign", "--id", "01"]
            + ["--mechanism", mechanism, "--signature-format", "openssl"]
            + ["--input-file", str(data), "--output-file", str(signature_file)],
            opensc_env,
        )
        assert signed.returncode == 0, signed.stderr
        assert card.signatures == 1 and card.tries_left == 3
    signature = signature_file.read_bytes()
    public_key = x509.load_der_x509_certificate(user.cert_der).public_key()
    if isinstance(public_key, rsa.RSAPublicKey):
        public_key.verify(signature, data.read_bytes(), padding.PKCS1v15(), hashes.SHA256())
    else:
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        public_key.verify(signature, data.read_bytes(), ec.ECDSA(hashes.SHA256()))
    # openssl, independently of cryptography, agrees.
    public_pem = tmp_path / "public.pem"
    public_pem.write_bytes(
        x509.load_der_x509_certificate(user.cert_der)
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    checked = run(
        ["openssl", "dgst", "-sha256", "-verify", str(public_pem)]
        + ["-signature", str(signature_file), str(data)]
    )
    assert checked.returncode == 0 and "Verified OK" in checked.stdout, checked.stderr


# ---------------------------------------------------------------------- yubico-piv-tool


def test_yubico_piv_tool_status_and_pin(pki: TestPki) -> None:
    tool = required_tool("yubico-piv-tool")
    user = pki.user("piv")
    with inserted(user) as (card, _):
        status = run([tool, "--reader", READER_0, "--action", "status"])
        assert status.returncode == 0, status.stderr
        assert "Slot 9a:" in status.stdout and "ECCP256" in status.stdout
        fingerprint = hashlib.sha256(user.cert_der).hexdigest()
        assert f"Fingerprint:\t{fingerprint}" in status.stdout
        assert "PIN tries left:\t3" in status.stdout
        wrong = run([tool, "--reader", READER_0, "--action", "verify-pin", "--pin", "000000"])
        assert wrong.returncode != 0
        assert "2 tries left" in wrong.stdout + wrong.stderr
        assert card.tries_left == 2
        right = run([tool, "--reader", READER_0, "--action", "verify-pin", "--pin", PIN])
        assert right.returncode == 0, right.stdout + right.stderr
        assert "Successfully verified PIN" in right.stdout + right.stderr
        assert card.tries_left == 3


# ---------------------------------------------------------------------- transactions


class BetweenVerifyAndSign:
    """Our connection, with a hook run right after the card accepted the PIN (the
    moment another program's command does the most harm); ``transactions`` False
    drops our PC/SC transaction, to show what it prevents."""

    def __init__(
        self, conn: PcscConnection, hook: Callable[[], None], *, transactions: bool = True
    ) -> None:
        self.conn = conn
        self.reader = conn.reader
        self.hook = hook
        self.transactions = transactions

    def atr(self) -> bytes:
        return self.conn.atr()

    def transmit(self, apdu: bytes, timeout: float = DEFAULT_TIMEOUT_S) -> Response:
        answer = self.conn.transmit(apdu, timeout)
        if apdu[1] == 0x20 and len(apdu) > 5 and answer.ok:
            self.hook()
        return answer

    def transaction(
        self, timeout: float = DEFAULT_TIMEOUT_S
    ) -> contextlib.AbstractContextManager[None]:
        return self.conn.transaction(timeout) if self.transactions else contextlib.nullcontext()

    def close(self) -> None:
        self.conn.close()


def other_program(opensc_env: dict[str, str]) -> list[str]:
    return [required_tool("opensc-tool"), "--reader", READER_0, "--send-apdu", SELECT_ISD]


def login_proof(conn: BetweenVerifyAndSign) -> bytes:
    """Read the card, then VERIFY and GENERAL AUTHENTICATE over a challenge, as a login
    does (card.signing.sign_challenge); returns the signature, checked."""
    read = read_card(conn)
    identity = identity_from_certificate(read.certificate)
    challenge = os.urandom(32)
    signature = sign_challenge(
        conn, read, identity, bytearray(PIN.encode()), challenge, pkcs11=None
    )
    public_key = identity.certificate.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    public_key.verify(signature, challenge, padding.PKCS1v15(), hashes.SHA256())
    return signature


def test_another_program_cannot_break_the_login_proof(
    pki: TestPki, opensc_env: dict[str, str]
) -> None:
    command = other_program(opensc_env)
    user = pki.user("moica")  # RSA-2048: GENERAL AUTHENTICATE is chained (CLA 10)
    backend = PcscBackend()
    with inserted(user) as (card, recorder):
        # The attack: without a transaction, the other program's SELECT gets in between.
        def run_other_program() -> None:
            done = run(command, opensc_env, timeout=FREE_CARD_S * 6)
            assert done.returncode == 0, done.stderr

        conn = BetweenVerifyAndSign(
            backend.connect(READER_0), run_other_program, transactions=False
        )
        try:
            with pytest.raises(CardProtocolError, match="6884"):
                login_proof(conn)
        finally:
            conn.close()
        assert card.signatures == 0

        # Our login holds a transaction: the other program waits until it is over.
        waiting: list[subprocess.Popen[str]] = []

        def start_other_program() -> None:
            process = subprocess.Popen(
                command,
                env=opensc_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            waiting.append(process)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(FREE_CARD_S)
            assert process.poll() is None, "the other program got the card mid-login"

        recorder.received.clear()
        conn = BetweenVerifyAndSign(backend.connect(READER_0), start_other_program)
        try:
            assert len(login_proof(conn)) == 256
        finally:
            conn.close()
        (process,) = waiting
        out, err = process.communicate(timeout=FREE_CARD_S * 6)
        assert process.returncode == 0, err
        assert card.signatures == 1
        # On the card's side: its SELECT came only after our GENERAL AUTHENTICATE.
        received = recorder.received
        last_sign = max(i for i, apdu in enumerate(received) if apdu[1] == 0x87)
        foreign = [i for i, apdu in enumerate(received) if apdu.hex(":").upper() == SELECT_ISD]
        assert foreign and min(foreign) > last_sign


def test_a_card_reset_by_another_program(pki: TestPki) -> None:
    """Another program resets the card: a read starts again by itself; the PIN is not
    sent again unasked (CardReset asks the person to type it again)."""
    user = pki.user("moica")
    with inserted(user) as (card, recorder):
        backend = PcscBackend()
        resetter = PcscBackend(disposition="reset")
        conn = backend.connect(READER_0)
        try:
            assert conn.transmit(SELECT_PIV_APDU).ok
            resetter.connect(READER_0).close()  # another program, disconnecting with a reset
            read = read_card(conn)
            assert read.certificate == user.cert_der
            identity = identity_from_certificate(read.certificate)
            resetter.connect(READER_0).close()  # again, while the person types the PIN
            received = len(recorder.received)
            with pytest.raises(CardReset, match="請重新輸入卡片密碼"):
                sign_challenge(
                    conn, read, identity, bytearray(PIN.encode()), bytes(32), pkcs11=None
                )
            assert len(recorder.received) == received  # no VERIFY reached the card
            assert card.tries_left == 3
            # The person types the PIN again: the same connection goes on.
            started = time.monotonic()
            sign_challenge(conn, read, identity, bytearray(PIN.encode()), bytes(32), pkcs11=None)
            assert card.signatures == 1 and time.monotonic() - started < DEFAULT_TIMEOUT_S
        finally:
            conn.close()
