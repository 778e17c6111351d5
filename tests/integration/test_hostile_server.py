"""A hostile kiosk server against the card agent.

The server end of ``ssh -R`` may be anybody's: these tests talk raw frames to a real
AgentServer over its UNIX socket, as a server that wants a PIN, a signature over a
document of its choosing, or a blocked card would. Virtual PIV and HiCOS cards in
process, SoftHSM2 as the HiCOS PKCS#11 module, and (at the end) a PIV card through
the private pcscd of `make test`. What must hold:

* no PIN byte is ever in a frame the agent sends, nor in what it prints;
* the card commands of protocol version 2 (Connect, Transmit, Disconnect,
  Pkcs11Sign) end the connection; nothing reaches the card but certificate reads;
* the allow-list refuses every (CLA, INS) but the reads, for all 65536 of them;
* a login proof is a signature over login_message(the agent's server name, the
  session id, the nonce) and nothing else, whatever the server sends;
* the card's PIN counter never moves for anything the server sends;
* at most three proofs a minute for the whole agent, one PIN prompt at a time, CancelProof
  and a lost session abandon the prompt; a peer whose uid is unknown is refused;
* the PIN sources: a terminal (a pty here) and a pinentry program.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pty
import secrets
import shutil
import socket
import struct
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from cryptography import x509

from card.agent import protocol as wire
from card.agent import server as agent_server
from card.agent.allowlist import ALLOWED, ReadOnlyConnection
from card.agent.client import AgentBackend
from card.agent.pin_entry import (
    PIN_PROMPT,
    PinentrySource,
    PinRequest,
    TerminalPinSource,
)
from card.agent.proof import login_message
from card.agent.protocol import CommandRefused
from card.agent.server import PROOFS_PER_WINDOW, AgentServer
from card.challenge import verify_signature
from card.errors import (
    NotTheCardShown,
    PinFormatError,
    ProofCancelled,
    ProofTimedOut,
    SignatureInvalid,
    WrongPin,
)
from card.readers.pkcs11 import Pkcs11Signer
from card.sim.inprocess import InProcessBackend
from card.sim.testpki import TestPki, make_test_pki
from card.sim.virtual import CardWrapper, SimulatedCard, VirtualHicosCard, VirtualPivCard
from card.transport import Response
from tests.helpers import SoftToken, delete_softhsm_token, softhsm_card_token, token_flags
from tests.integration.test_card_agent import Lines
from tests.integration.test_pcsc import wait_until
from tests.integration.test_pkcs11 import SO_PIN, pkcs11_module

PIN = "97310468"
WRONG_PIN = "86420975"
SERVER = "smis.example.tw"
SESSION = "4242-cafebabe"
A = "讀卡機 A"
B = "讀卡機 B"
PIN_PAD = "123456"  # the SoftHSM2 token's user PIN (6 digits, as HiCOS cards have)
CKF_USER_PIN_COUNT_LOW = 0x00010000
CKF_USER_PIN_FINAL_TRY = 0x00020000
CKF_USER_PIN_LOCKED = 0x00040000


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="smis-hostile-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Pins:
    """The staff member at the agent: types ``pins`` one after the other (the last one
    again and again); ``hold`` waits, as a person who has not typed yet, until the
    prompt is cancelled."""

    def __init__(self, *pins: str, hold: bool = False) -> None:
        self.pins = list(pins) or [PIN]
        self.hold = hold
        self.asked: list[PinRequest] = []
        self.waiting = threading.Event()
        self.cancelled = threading.Event()

    def ask(self, request: PinRequest, cancel: threading.Event, timeout: float) -> bytearray:
        self.asked.append(request)
        if self.hold:
            self.waiting.set()
            if cancel.wait(timeout):
                self.cancelled.set()
                raise ProofCancelled()
            raise ProofTimedOut(timeout)
        pin = self.pins.pop(0) if len(self.pins) > 1 else self.pins[0]
        return bytearray(pin.encode())


class Recording(CardWrapper):
    """A card that remembers the (CLA, INS) of every command it was sent."""

    def __init__(self, inner: SimulatedCard) -> None:
        super().__init__(inner)
        self.commands: list[tuple[int, int]] = []

    def process(self, apdu: bytes) -> bytes:
        self.commands.append((apdu[0], apdu[1]))
        return self.inner.process(apdu)


def piv(pki: TestPki, user: str = "moica") -> VirtualPivCard:
    u = pki.user(user)
    return VirtualPivCard(u.cert_der, u.key, PIN)


def sha256(der: bytes) -> bytes:
    return hashlib.sha256(der).digest()


class Agent:
    """An AgentServer serving two in-process readers, with its lines and PIN source."""

    def __init__(self, path: Path, pins: Pins, **kwargs: object) -> None:
        self.readers = InProcessBackend([A, B])
        self.lines = Lines()
        self.pins = pins
        self.server = AgentServer(
            self.readers,
            server_name=SERVER,
            socket_path=path,
            pin_source=pins,
            notify=self.lines,
            **kwargs,  # type: ignore[arg-type]
        )


@pytest.fixture
def make_agent(short_dir: Path) -> Iterator[Callable[..., Agent]]:
    started: list[Agent] = []

    def make(pins: Pins | None = None, **kwargs: object) -> Agent:
        agent = Agent(short_dir / f"a{len(started)}.sock", pins or Pins(), **kwargs)
        agent.server.start()
        started.append(agent)
        return agent

    yield make
    for agent in started:
        agent.server.stop()


class Hostile:
    """A server session that speaks raw frames and keeps every byte the agent sent."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(str(path))
        self.decoder = wire.FrameDecoder()
        self.ready: list[bytearray] = []
        self.received = bytearray()

    def send(self, msg_id: int, message: wire.Message) -> None:
        self.sock.sendall(wire.encode_frame(msg_id, message))

    def send_payload(self, payload: bytes) -> None:
        self.sock.sendall(struct.pack(">I", len(payload)) + payload)

    def hello(self, session_id: str = SESSION) -> wire.Welcome:
        self.send(1, wire.Hello(wire.PROTOCOL_VERSION, "hostile kiosk", session_id))
        msg_id, welcome = self.receive()
        assert msg_id == 1 and isinstance(welcome, wire.Welcome), welcome
        return welcome

    def receive(self, timeout: float = 10.0) -> tuple[int, wire.Message]:
        deadline = time.monotonic() + timeout
        while not self.ready:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self.received += data
            self.ready += self.decoder.feed(data)
        return wire.decode_payload(self.ready.pop(0))

    def answer(self, msg_id: int, timeout: float = 10.0) -> wire.Message:
        """The answer to ``msg_id`` (events and other answers are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            got, message = self.receive(max(0.01, deadline - time.monotonic()))
            if got == msg_id and not isinstance(message, wire.CardEvent):
                return message

    def closed_by_agent(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return False
            except OSError:
                return True
            if not data:
                return True
            self.received += data
        return False

    def prove(self, msg_id: int, reader: str, digest: bytes, nonce: bytes) -> wire.Message:
        self.send(msg_id, wire.LoginProof(reader, digest, nonce))
        return self.answer(msg_id)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def hostile() -> Iterator[Callable[[AgentServer], Hostile]]:
    opened: list[Hostile] = []

    def connect(server: AgentServer) -> Hostile:
        raw = Hostile(server.socket_path)
        opened.append(raw)
        return raw

    yield connect
    for raw in opened:
        raw.close()


def pin_forms(pin: str) -> list[bytes]:
    """Every way a PIN could be carried: ASCII, PIV-padded, hex, UTF-16."""
    ascii_ = pin.encode()
    padded = ascii_ + b"\xff" * (8 - len(ascii_))
    return [
        ascii_,
        padded,
        ascii_.hex().encode(),
        ascii_.hex().upper().encode(),
        pin.encode("utf-16-le"),
    ]


def assert_no_pin(data: bytes | bytearray | str, *pins: str) -> None:
    blob = data.encode() if isinstance(data, str) else bytes(data)
    for pin in pins:
        for form in pin_forms(pin):
            assert form not in blob, f"a form of the PIN {pin!r} got out"


# ---------------------------------------------------------------------- the PIN never leaves


def test_no_pin_byte_in_any_frame_or_line(
    pki: TestPki,
    make_agent: Callable[..., Agent],
    hostile: Callable[[AgentServer], Hostile],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    too_long = "9731046855"
    agent = make_agent(Pins(WRONG_PIN, too_long, PIN))
    card = piv(pki)
    agent.readers.insert(A, card)
    raw = hostile(agent.server)
    raw.hello()
    raw.send(2, wire.Subscribe())
    raw.send(3, wire.ReadCard(A))
    info = raw.answer(3)
    assert isinstance(info, wire.CardInfo) and info.profile == "piv"
    wrong = raw.prove(4, A, sha256(info.certificate), secrets.token_bytes(32))
    assert isinstance(wrong, wire.Failure) and wrong.name == "WrongPin" and wrong.number == 2
    long_ = raw.prove(5, A, sha256(info.certificate), secrets.token_bytes(32))
    assert isinstance(long_, wire.Failure) and long_.name == "PinFormatError"
    assert card.tries_left == 2  # the over-long PIN never reached the card
    raw.close()
    received = bytes(raw.received)
    # A new session: the right PIN (the third proof this minute, still allowed).
    raw = hostile(agent.server)
    raw.hello("4242-second")
    signed = raw.prove(2, A, sha256(info.certificate), secrets.token_bytes(32))
    assert isinstance(signed, wire.ProofSignature)
    assert card.tries_left == 3
    raw.close()
    agent.lines.wait_for("已中斷")
    assert_no_pin(received + bytes(raw.received), PIN, WRONG_PIN, too_long)
    assert_no_pin("\n".join(agent.lines) + caplog.text, PIN, WRONG_PIN, too_long)


# ---------------------------------------------------------------------- no card commands


V2_FRAMES = {
    # Connect("讀卡機 A", 5000)
    "Connect": b"\x04\x00\x00\x00\x02"
    + struct.pack(">I", len(A.encode()))
    + A.encode()
    + b"\x00\x00\x13\x88",
    # Transmit(1, 5000, VERIFY 00 20 00 80 08 <PIN padded>)
    "Transmit": b"\x05\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x13\x88"
    + struct.pack(">I", 13)
    + bytes.fromhex("0020008008")
    + PIN.encode(),
    "Disconnect": b"\x06\x00\x00\x00\x02\x00\x00\x00\x01",
    # Pkcs11Sign(unblock_at, key label, timeout, pin, data, certificate)
    "Pkcs11Sign": b"\x07\x00\x00\x00\x02"
    + b"\x00\x00\x00\x00" * 2
    + b"\x00\x00\x13\x88"
    + struct.pack(">I", 6)
    + b"123456"
    + struct.pack(">I", 8)
    + b"document"
    + b"\x00\x00\x00\x00",
}


@pytest.mark.parametrize("name", sorted(V2_FRAMES))
def test_the_old_card_commands_end_the_connection(
    pki: TestPki,
    make_agent: Callable[..., Agent],
    hostile: Callable[[AgentServer], Hostile],
    name: str,
) -> None:
    agent = make_agent()
    card = Recording(piv(pki))
    agent.readers.insert(A, card)
    raw = hostile(agent.server)
    raw.hello()
    raw.send_payload(V2_FRAMES[name])
    _, failure = raw.receive()
    assert isinstance(failure, wire.Failure) and failure.name == "AgentProtocolError"
    assert raw.closed_by_agent()
    assert card.commands == [] and agent.pins.asked == []
    line = agent.lines.wait_for("已中斷此連線")
    assert "不允許的訊息" in line and SESSION in line


@pytest.mark.parametrize(
    "message",
    [
        wire.Hello(wire.PROTOCOL_VERSION, "again", "4242-again"),
        wire.Welcome(wire.PROTOCOL_VERSION, "not a request", SERVER),
        wire.ProofSignature(SERVER, b"\x30" * 8),
        wire.CardInfo("piv", b"", b""),
        wire.Ok(),
    ],
    ids=lambda m: type(m).__name__,
)
def test_anything_but_a_request_ends_the_connection(
    make_agent: Callable[..., Agent],
    hostile: Callable[[AgentServer], Hostile],
    message: wire.Message,
) -> None:
    agent = make_agent()
    raw = hostile(agent.server)
    raw.hello()
    raw.send(2, message)
    _, failure = raw.receive()
    assert isinstance(failure, wire.Failure) and "不是此時可送出的請求" in failure.message
    assert raw.closed_by_agent()
    agent.lines.wait_for("已中斷此連線")


def test_malformed_frames_after_the_handshake_end_the_connection(
    make_agent: Callable[..., Agent], hostile: Callable[[AgentServer], Hostile]
) -> None:
    agent = make_agent()
    raw = hostile(agent.server)
    raw.hello()
    raw.send_payload(b"\x42\x00\x00\x00\x07\x00")
    msg_id, failure = raw.receive()
    assert msg_id == 7 and isinstance(failure, wire.Failure) and "0x42" in failure.message
    assert raw.closed_by_agent()
    assert "0x42" in agent.lines.wait_for("已中斷此連線")


# ---------------------------------------------------------------------- the allow-list


class FakeConnection:
    reader = "fake"

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def atr(self) -> bytes:
        return b"\x3b\x00"

    def transmit(self, apdu: bytes, timeout: float = 5.0) -> Response:
        self.sent.append(apdu)
        return Response(b"", 0x90, 0x00)

    def transaction(self, timeout: float = 5.0) -> AbstractContextManager[None]:
        raise NotImplementedError

    def close(self) -> None:
        pass


READS = {
    (0x00, 0xA4),
    (0x00, 0xB0),
    (0x00, 0xCB),
    (0x00, 0xC0),
    (0x80, 0xA4),
    (0x80, 0xB0),
    (0x80, 0xC0),
}
DANGEROUS = [0x20, 0x21, 0x87, 0x86, 0x2A, 0x88, 0x0C, 0x0E, 0x0F, 0x04, 0x06, 0x08, 0x44]
DANGEROUS += [0xDA, 0xDB, 0xD6, 0xD7, 0xD0, 0xD1, 0xD8, 0xF0, 0xF6, 0x24, 0x2C, 0x22, 0x46]
DANGEROUS += [0xE0, 0xE4, 0xE6, 0xE8, 0xFA, 0xFB, 0xFE, 0xFF, 0xC2, 0xCA]


def test_the_allow_list_lets_through_only_the_reads_for_every_class_and_instruction() -> None:
    inner = FakeConnection()
    refused: list[tuple[int, int]] = []
    conn = ReadOnlyConnection(inner, lambda cla, ins: refused.append((cla, ins)))
    assert READS == ALLOWED
    passed = set()
    for cla in range(256):
        for ins in range(256):
            apdu = bytes((cla, ins, 0x00, 0x00, 0x02, 0x3F, 0x00))
            try:
                assert conn.transmit(apdu).ok
                passed.add((cla, ins))
            except CommandRefused as exc:
                assert (exc.cla, exc.ins) == (cla, ins)
    assert passed == READS
    assert len(inner.sent) == len(READS) and len(refused) == 256 * 256 - len(READS)
    for ins in DANGEROUS:
        assert all((cla, ins) not in passed for cla in range(256)), hex(ins)
    # Every proprietary class byte but the HiCOS reads, chained and secure-messaging too.
    assert {cla for cla, _ in passed} == {0x00, 0x80}
    for short in (b"", b"\x00", b"\x00\xa4", b"\x00\xa4\x04"):
        with pytest.raises(CommandRefused):
            conn.transmit(short)
    assert len(inner.sent) == len(READS)


@pytest.mark.parametrize("kind", ["piv", "hicos"])
def test_reading_a_card_for_the_server_sends_only_reads(
    pki: TestPki,
    make_agent: Callable[..., Agent],
    hostile: Callable[[AgentServer], Hostile],
    kind: str,
) -> None:
    agent = make_agent()
    user = pki.user("moica" if kind == "piv" else "hpc")
    inner: SimulatedCard = (
        piv(pki) if kind == "piv" else VirtualHicosCard({"signature": user.cert_der}, kind="hpc")
    )
    card = Recording(inner)
    agent.readers.insert(A, card)
    raw = hostile(agent.server)
    raw.hello()
    for msg_id in range(2, 6):
        raw.send(msg_id, wire.ReadCard(A))
        info = raw.answer(msg_id)
        assert isinstance(info, wire.CardInfo) and info.certificate == user.cert_der
    assert card.commands and set(card.commands) <= READS
    assert agent.lines.wait_for("讀取讀卡機「讀卡機 A」")


# ---------------------------------------------------------------------- what a proof signs


def check_proof(certificate: bytes, session_id: str, nonce: bytes, reply: wire.Message) -> bytes:
    """The signature in ``reply``: over login_message(SERVER, session_id, nonce), and
    over nothing the server chose."""
    assert isinstance(reply, wire.ProofSignature), reply
    assert reply.server_name == SERVER
    cert = x509.load_der_x509_certificate(certificate)
    verify_signature(cert, login_message(SERVER, session_id, nonce), reply.signature)
    for other in (
        nonce,
        login_message("evil.example", session_id, nonce),
        login_message(SERVER, session_id + "x", nonce),
    ):
        with pytest.raises(SignatureInvalid):
            verify_signature(cert, other, reply.signature)
    return reply.signature


def test_a_piv_proof_signs_the_agents_message_only(
    pki: TestPki, make_agent: Callable[..., Agent], hostile: Callable[[AgentServer], Hostile]
) -> None:
    agent = make_agent()
    card = piv(pki)
    agent.readers.insert(A, card)
    user = pki.user("moica")
    raw = hostile(agent.server)
    raw.hello()
    # A "document" the server would like signed, sent as the nonce.
    document = hashlib.sha256(b"I owe the server NT$1,000,000").digest()
    reply = raw.prove(2, A, sha256(user.cert_der), document)
    check_proof(user.cert_der, SESSION, document, reply)
    (asked,) = agent.pins.asked
    assert (asked.server_name, asked.session_id, asked.holder) == (SERVER, SESSION, user.cn)
    line = agent.lines.wait_for("要求以")
    assert (
        f"伺服器 {SERVER} 的工作階段 {SESSION}（hostile kiosk）要求以 {user.cn} 的卡片登入" in line
    )


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(lambda d: b"\x00" * 31, id="nonce-31"),
        pytest.param(lambda d: b"\x00" * 33, id="nonce-33"),
        pytest.param(lambda d: b"", id="nonce-empty"),
        pytest.param(lambda d: b"\x30\x82" + b"\x00" * 1000, id="nonce-a-document"),
    ],
)
def test_nonces_of_another_length_are_refused_before_anything(
    pki: TestPki,
    make_agent: Callable[..., Agent],
    hostile: Callable[[AgentServer], Hostile],
    payload: Callable[[bytes], bytes],
) -> None:
    agent = make_agent()
    card = Recording(piv(pki))
    agent.readers.insert(A, card)
    digest = sha256(pki.user("moica").cert_der)
    nonce = payload(digest)
    raw = hostile(agent.server)
    raw.hello()
    raw.send_payload(
        b"\x09\x00\x00\x00\x02"
        + struct.pack(">I", len(A.encode()))
        + A.encode()
        + struct.pack(">I", 32)
        + digest
        + struct.pack(">I", len(nonce))
        + nonce
    )
    _, failure = raw.receive()
    assert isinstance(failure, wire.Failure) and failure.name == "AgentProtocolError"
    assert raw.closed_by_agent()
    assert card.commands == [] and agent.pins.asked == []


@pytest.mark.parametrize(
    "session_id",
    [b"", b"x" * 65, b"a\x1b]0;pwned\x07", b"a\nb", b"a\x00b", "a\u202eb\u0085".encode()],
    ids=["empty", "65-bytes", "escape", "newline", "nul", "c1-control"],
)
def test_session_ids_a_proof_cannot_carry_are_refused_at_hello(
    make_agent: Callable[..., Agent], hostile: Callable[[AgentServer], Hostile], session_id: bytes
) -> None:
    agent = make_agent()
    raw = hostile(agent.server)
    raw.send_payload(
        b"\x01\x00\x00\x00\x01"
        + struct.pack(">H", wire.PROTOCOL_VERSION)
        + struct.pack(">I", 1)
        + b"k"
        + struct.pack(">I", len(session_id))
        + session_id
    )
    _, failure = raw.receive()
    assert isinstance(failure, wire.Failure) and failure.name == "AgentProtocolError"
    assert raw.closed_by_agent()
    assert agent.server.sessions() == []
    assert "\x1b" not in "\n".join(agent.lines)


def test_the_certificate_of_another_card_gets_no_pin_prompt(
    pki: TestPki, make_agent: Callable[..., Agent], hostile: Callable[[AgentServer], Hostile]
) -> None:
    agent = make_agent()
    card = piv(pki)
    other = piv(pki, "moica2")
    agent.readers.insert(A, card)
    agent.readers.insert(B, other)
    raw = hostile(agent.server)
    raw.hello()
    reply = raw.prove(2, A, sha256(pki.user("moica2").cert_der), secrets.token_bytes(32))
    assert isinstance(reply, wire.Failure) and reply.name == "NotTheCardShown"
    assert isinstance(wire.failure_to_error(reply), NotTheCardShown)
    assert agent.pins.asked == []
    assert card.tries_left == other.tries_left == 3 and not card.verified
    assert "未詢問密碼" in agent.lines.wait_for("不是伺服器畫面所示的卡片")


# ---------------------------------------------------------------------- the PIN counter


def test_nothing_the_server_sends_moves_the_pin_counter(
    pki: TestPki, make_agent: Callable[..., Agent], hostile: Callable[[AgentServer], Hostile]
) -> None:
    """Everything a server can send, including proofs the person does not answer:
    the card never sees a VERIFY."""
    agent = make_agent(Pins(hold=True), pin_timeout=0.5)
    card = Recording(piv(pki))
    agent.readers.insert(A, card)
    inner = card.inner
    assert isinstance(inner, VirtualPivCard)
    digest = sha256(pki.user("moica").cert_der)
    # Once: three proofs are all the agent takes in a minute, over any connections.
    for attempt in range(1):
        raw = hostile(agent.server)
        raw.hello(f"4242-{attempt}")
        raw.send(2, wire.ListReaders())
        raw.send(3, wire.Subscribe())
        raw.send(4, wire.ReadCard(A))
        assert isinstance(raw.answer(4), wire.CardInfo)
        raw.send(5, wire.LoginProof(A, digest, secrets.token_bytes(32)))
        wait_until(lambda: agent.pins.waiting.is_set(), what="the PIN prompt")
        agent.pins.waiting.clear()
        raw.send(6, wire.CancelProof(5))
        assert raw.answer(5).name == "ProofCancelled"  # type: ignore[attr-defined]
        timed_out = raw.prove(7, A, digest, secrets.token_bytes(32))
        assert isinstance(timed_out, wire.Failure) and timed_out.name == "ProofTimedOut"
        raw.send(8, wire.LoginProof(A, b"\x00" * 32, secrets.token_bytes(32)))
        raw.send_payload(V2_FRAMES["Transmit"])
        raw.closed_by_agent()
        raw.close()
        wait_until(lambda: agent.server.sessions() == [], what="the session to end")
    assert inner.tries_left == inner.max_tries and not inner.verified
    assert {ins for _, ins in card.commands} <= {0xA4, 0xB0, 0xCB, 0xC0}


# ---------------------------------------------------------------------- PKCS#11 (HiCOS)


@pytest.fixture(scope="module")
def hpc_token(pki: TestPki) -> Iterator[SoftToken]:
    user = pki.user("hpc")
    token = softhsm_card_token(
        pkcs11_module(),
        user.key_path,
        user.cert_der,
        PIN_PAD,
        label=f"hostile-{secrets.token_hex(4)}",
        so_pin=SO_PIN,
    )
    yield token
    delete_softhsm_token(token)


def test_a_hicos_proof_signs_the_agents_message_only_and_spares_the_token(
    pki: TestPki,
    make_agent: Callable[..., Agent],
    hostile: Callable[[AgentServer], Hostile],
    hpc_token: SoftToken,
) -> None:
    user = pki.user("hpc")

    def signer(unblock_at: str) -> Pkcs11Signer:
        return Pkcs11Signer(hpc_token.module, hpc_token.label, unblock_at=unblock_at)

    agent = make_agent(Pins(PIN_PAD), pkcs11=signer)
    card = Recording(VirtualHicosCard({"signature": user.cert_der}, kind="hpc"))
    agent.readers.insert(A, card)
    flags = token_flags(hpc_token)
    raw = hostile(agent.server)
    raw.hello()
    # Refused before any C_Login: another card's digest, a v2 Pkcs11Sign.
    refused = raw.prove(2, A, sha256(pki.user("moica").cert_der), secrets.token_bytes(32))
    assert isinstance(refused, wire.Failure) and refused.name == "NotTheCardShown"
    assert agent.pins.asked == []
    nonce = hashlib.sha256(b"a document").digest()
    reply = raw.prove(3, A, sha256(user.cert_der), nonce)
    check_proof(user.cert_der, SESSION, nonce, reply)
    raw.send_payload(V2_FRAMES["Pkcs11Sign"])
    raw.closed_by_agent()
    pin_bits = CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED
    assert token_flags(hpc_token) & pin_bits == flags & pin_bits == 0
    assert set(card.commands) <= READS
    assert_no_pin(raw.received, PIN_PAD)


# ---------------------------------------------------------------------- limits and cancelling


def test_at_most_three_proofs_a_minute_however_often_the_server_reconnects(
    pki: TestPki, make_agent: Callable[..., Agent], hostile: Callable[[AgentServer], Hostile]
) -> None:
    """A limit per connection would end with every reconnect: a server could then put
    up prompts as fast as it likes, hoping for a PIN typed in haste."""
    agent = make_agent(Pins(WRONG_PIN))
    card = piv(pki)
    agent.readers.insert(A, card)
    digest = sha256(pki.user("moica").cert_der)
    names = []
    for attempt in range(PROOFS_PER_WINDOW + 2):
        raw = hostile(agent.server)
        raw.hello(f"4242-try{attempt}")
        answer = raw.prove(2, A, digest, secrets.token_bytes(32))
        names.append(answer.name)  # type: ignore[attr-defined]
        raw.close()
    assert names[:PROOFS_PER_WINDOW] == ["WrongPin", "WrongPin", "PinBlocked"]
    assert names[PROOFS_PER_WINDOW:] == ["TooManyProofs", "TooManyProofs"]
    assert len(agent.pins.asked) == PROOFS_PER_WINDOW
    agent.lines.wait_for("登入要求過於頻繁")


def test_a_cancel_that_overtakes_its_proof_still_cancels_it(
    pki: TestPki, make_agent: Callable[..., Agent], hostile: Callable[[AgentServer], Hostile]
) -> None:
    """LoginProof then CancelProof at once: however the agent's threads interleave, the
    login is answered ProofCancelled and no PIN reaches the card. On a busy machine the
    agent may already be asking the staff member (who has not typed yet) when the cancel
    is read: that prompt is then withdrawn."""
    agent = make_agent(Pins(PIN, hold=True))
    card = piv(pki)
    agent.readers.insert(A, card)
    digest = sha256(pki.user("moica").cert_der)
    raw = hostile(agent.server)
    raw.hello()
    raw.send(2, wire.LoginProof(A, digest, secrets.token_bytes(32)))
    raw.send(3, wire.CancelProof(2))
    answer = raw.answer(2)
    assert isinstance(answer, wire.Failure) and answer.name == "ProofCancelled"
    assert agent.pins.asked == [] or agent.pins.cancelled.is_set()
    assert card.tries_left == 3


def test_text_from_the_server_cannot_paint_the_agents_terminal(
    pki: TestPki, make_agent: Callable[..., Agent], hostile: Callable[[AgentServer], Hostile]
) -> None:
    agent = make_agent(Pins(PIN))
    agent.readers.insert(A, piv(pki))
    raw = hostile(agent.server)
    raw.hello()
    painted = "\x1b[2J\x1b]0;PIN\x07偽造\u202e讀卡機"
    raw.send(2, wire.ReadCard(painted))
    answer = raw.answer(2)
    assert isinstance(answer, wire.Failure)
    raw.close()
    for line in agent.lines:
        assert "\x1b" not in line and "\x07" not in line and "\u202e" not in line


@pytest.mark.parametrize("session_id", ["1234\u202eabcd", "12\u200b34", "\u2066abc\u2069"])
def test_a_session_id_with_hidden_format_characters_is_refused(session_id: str) -> None:
    """Bidi overrides or zero-width characters would let a session id look like the
    one on the kiosk's screen: neither side encodes or accepts one."""
    with pytest.raises(ValueError):
        wire.encode_payload(1, wire.Hello(wire.PROTOCOL_VERSION, "x", session_id))
    raw = session_id.encode("utf-8")
    placeholder = b"q" * len(raw)
    payload = wire.encode_payload(1, wire.Hello(wire.PROTOCOL_VERSION, "x", placeholder.decode()))
    with pytest.raises(wire.ProtocolError):
        wire.decode_payload(payload.replace(placeholder, raw))


def test_cancel_proof_abandons_the_prompt_and_the_session_leaving_too(
    pki: TestPki, make_agent: Callable[..., Agent], hostile: Callable[[AgentServer], Hostile]
) -> None:
    agent = make_agent(Pins(hold=True))
    card = piv(pki)
    agent.readers.insert(A, card)
    digest = sha256(pki.user("moica").cert_der)
    raw = hostile(agent.server)
    raw.hello()
    raw.send(2, wire.LoginProof(A, digest, secrets.token_bytes(32)))
    wait_until(agent.pins.waiting.is_set, what="the PIN prompt")
    raw.send(3, wire.CancelProof(2))
    answers = dict([raw.receive(), raw.receive()])
    assert answers[3] == wire.Ok()
    assert isinstance(answers[2], wire.Failure) and answers[2].name == "ProofCancelled"
    agent.lines.wait_for("已取消")
    assert agent.pins.cancelled.is_set()
    # The session goes away while the person is being asked: the prompt goes too.
    agent.pins.waiting.clear()
    agent.pins.cancelled.clear()
    raw.send(4, wire.LoginProof(A, digest, secrets.token_bytes(32)))
    wait_until(agent.pins.waiting.is_set, what="the second PIN prompt")
    raw.close()
    wait_until(agent.pins.cancelled.is_set, what="the prompt to be abandoned")
    assert card.tries_left == 3 and not card.verified


def test_one_pin_prompt_at_a_time(
    pki: TestPki, make_agent: Callable[..., Agent], hostile: Callable[[AgentServer], Hostile]
) -> None:
    agent = make_agent(Pins(hold=True))
    agent.readers.insert(A, piv(pki))
    agent.readers.insert(B, piv(pki, "moica2"))
    first = hostile(agent.server)
    first.hello("4242-first")
    first.send(2, wire.LoginProof(A, sha256(pki.user("moica").cert_der), secrets.token_bytes(32)))
    wait_until(agent.pins.waiting.is_set, what="the first PIN prompt")
    second = hostile(agent.server)
    second.hello("4242-second")
    busy = second.prove(2, B, sha256(pki.user("moica2").cert_der), secrets.token_bytes(32))
    assert isinstance(busy, wire.Failure) and busy.name == "AgentBusy"
    assert len(agent.pins.asked) == 1
    first.send(3, wire.CancelProof(2))


def test_the_kiosk_client_cancels_and_times_out(
    pki: TestPki, make_agent: Callable[..., Agent]
) -> None:
    agent = make_agent(Pins(hold=True))
    agent.readers.insert(A, piv(pki))
    user = pki.user("moica")
    with AgentBackend(agent.server.socket_path, session_id="77-abc") as client:
        digest = hashlib.sha256(client.read_card(A).certificate).hexdigest()
        assert client.server_name == SERVER and client.session_id == "77-abc"
        outcome: list[BaseException] = []

        def prove() -> None:
            try:
                client.prove(A, digest, secrets.token_bytes(32), timeout=30)
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=prove)
        thread.start()
        wait_until(agent.pins.waiting.is_set, what="the PIN prompt")
        started = time.monotonic()
        client.cancel()
        thread.join(5)
        assert time.monotonic() - started < 2
        assert len(outcome) == 1 and isinstance(outcome[0], ProofCancelled)
        wait_until(agent.pins.cancelled.is_set, what="the agent to drop its prompt")
        agent.pins.cancelled.clear()
        with pytest.raises(ProofTimedOut):
            client.prove(A, digest, secrets.token_bytes(32), timeout=0.5)
        wait_until(agent.pins.cancelled.is_set, what="the agent to drop the timed-out prompt")
        with pytest.raises(ValueError):
            client.prove(A, "zz" * 32, secrets.token_bytes(32), timeout=1)
    assert agent.pins.asked[0].holder == user.cn


def test_a_peer_whose_uid_is_unknown_is_refused(
    make_agent: Callable[..., Agent], monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = make_agent()
    monkeypatch.setattr(agent_server.wire, "peer_uid", lambda sock: None)
    raw = Hostile(agent.server.socket_path)
    try:
        with contextlib.suppress(OSError):  # the agent may have hung up already
            raw.send(1, wire.Hello(wire.PROTOCOL_VERSION, "who knows", SESSION))
        assert raw.closed_by_agent()
        assert raw.received == b""
    finally:
        raw.close()
    agent.lines.wait_for("SO_PEERCRED")
    assert agent.server.sessions() == []


def test_a_peer_of_another_uid_is_refused(
    make_agent: Callable[..., Agent], monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = make_agent()
    monkeypatch.setattr(agent_server.wire, "peer_uid", lambda sock: os.getuid() + 1)
    raw = Hostile(agent.server.socket_path)
    try:
        with contextlib.suppress(OSError):  # the agent may have hung up already
            raw.send(1, wire.Hello(wire.PROTOCOL_VERSION, "someone", SESSION))
        assert raw.closed_by_agent() and raw.received == b""
    finally:
        raw.close()
    agent.lines.wait_for(f"uid {os.getuid() + 1}")


# ---------------------------------------------------------------------- PIN sources


REQUEST = PinRequest(SERVER, SESSION, "kiosk@server pid 1", "王小明", A)


class Terminal:
    """A pty standing in for the agent's terminal: the test types on the master."""

    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()
        self.path = os.ttyname(self.slave)
        self.shown = bytearray()

    def read_until(self, text: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while text.encode() not in self.shown:
            if time.monotonic() > deadline:
                pytest.fail(
                    f"the terminal never showed {text!r}: {self.shown.decode(errors='replace')}"
                )
            import select

            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                self.shown += os.read(self.master, 4096)

    def drain(self) -> None:
        import select

        while select.select([self.master], [], [], 0.2)[0]:
            try:
                self.shown += os.read(self.master, 4096)
            except OSError:
                return

    def close(self) -> None:
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    term = Terminal()
    yield term
    term.close()


def ask_in_thread(
    source: TerminalPinSource | PinentrySource, cancel: threading.Event, timeout: float = 10
) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []

    def run() -> None:
        try:
            out.append(source.ask(REQUEST, cancel, timeout))
        except BaseException as exc:
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (PIN.encode() + b"\r", PIN.encode()),
        (b"12x\x7f3456789\x15" + PIN.encode() + b"\n", PIN.encode()),  # erase, Ctrl-U
        (b"1234\x1b", ProofCancelled),  # Esc
        (b"1234\x03", ProofCancelled),  # Ctrl-C
        (b"\r", ProofCancelled),  # an empty line
    ],
    ids=["enter", "editing", "esc", "ctrl-c", "empty"],
)
def test_the_terminal_asks_without_echo(
    terminal: Terminal, keys: bytes, expected: bytes | type[BaseException]
) -> None:
    thread, out = ask_in_thread(TerminalPinSource(terminal.path), threading.Event())
    terminal.read_until(PIN_PROMPT)
    assert REQUEST.describe().encode() in terminal.shown
    os.write(terminal.master, keys)
    thread.join(5)
    assert not thread.is_alive()
    if isinstance(expected, bytes):
        assert out == [bytearray(expected)]
    else:
        assert len(out) == 1 and isinstance(out[0], expected)
    terminal.drain()
    assert_no_pin(bytes(terminal.shown), PIN)
    # The terminal is left as it was: echo back on.
    assert termios.tcgetattr(terminal.slave)[3] & termios.ECHO


def test_the_terminal_prompt_is_cancelled_from_another_thread_and_times_out(
    terminal: Terminal,
) -> None:
    cancel = threading.Event()
    thread, out = ask_in_thread(TerminalPinSource(terminal.path), cancel)
    terminal.read_until(PIN_PROMPT)
    os.write(terminal.master, b"123")
    cancel.set()
    thread.join(5)
    assert len(out) == 1 and isinstance(out[0], ProofCancelled)
    thread, out = ask_in_thread(TerminalPinSource(terminal.path), threading.Event(), timeout=0.3)
    thread.join(5)
    assert len(out) == 1 and isinstance(out[0], ProofTimedOut)
    with pytest.raises(ProofCancelled):  # no terminal at all
        TerminalPinSource("/nonexistent/tty").ask(REQUEST, threading.Event(), 1)


def test_a_wrong_length_pin_typed_at_the_terminal_never_reaches_the_card(
    pki: TestPki, terminal: Terminal, short_dir: Path, hostile: Callable[[AgentServer], Hostile]
) -> None:
    readers = InProcessBackend([A])
    card = piv(pki)
    readers.insert(A, card)
    lines = Lines()
    with AgentServer(
        readers,
        server_name=SERVER,
        socket_path=short_dir / "t.sock",
        pin_source=TerminalPinSource(terminal.path),
        notify=lines,
    ) as server:
        raw = hostile(server)
        raw.hello()
        digest = sha256(pki.user("moica").cert_der)
        raw.send(2, wire.LoginProof(A, digest, secrets.token_bytes(32)))
        terminal.read_until(PIN_PROMPT)
        os.write(terminal.master, b"12345\r")
        reply = raw.answer(2)
        assert isinstance(reply, wire.Failure) and reply.name == "PinFormatError"
        assert isinstance(wire.failure_to_error(reply), PinFormatError)
        assert card.tries_left == 3
        nonce = secrets.token_bytes(32)
        raw.send(3, wire.LoginProof(A, digest, nonce))
        terminal.shown.clear()
        terminal.read_until(PIN_PROMPT)
        os.write(terminal.master, PIN.encode() + b"\r")
        check_proof(pki.user("moica").cert_der, SESSION, nonce, raw.answer(3))
    terminal.drain()
    assert_no_pin(bytes(terminal.shown) + bytes(raw.received), PIN)


FAKE_PINENTRY = """\
import sys
out = sys.stdout
out.write("OK Pleased to meet you\\n"); out.flush()
desc = ""
for line in sys.stdin:
    line = line.rstrip("\\n")
    if line.startswith("SETDESC "):
        desc = line[8:]
    if line == "GETPIN":
        with open(sys.argv[1], "a", encoding="utf-8") as log:
            log.write(desc + "\\n")
        if "{answer}" == "cancel":
            out.write("ERR 83886179 Operation cancelled <Pinentry>\\n")
        elif "{answer}" == "hang":
            import time; time.sleep(60)
        else:
            out.write("D {answer}\\nOK\\n")
        out.flush()
        continue
    if line == "BYE":
        out.write("OK closing connection\\n"); out.flush(); break
    out.write("OK\\n"); out.flush()
"""


def fake_pinentry(directory: Path, answer: str) -> tuple[PinentrySource, Path]:
    log = directory / "pinentry.log"
    script = directory / f"pinentry-{answer.replace('%', 'p')}"
    script.write_text(
        f"#!{sys.executable}\nimport sys; sys.argv.append({str(log)!r})\n"
        + FAKE_PINENTRY.replace("{answer}", answer)
    )
    script.chmod(0o700)
    return PinentrySource(str(script)), log


def test_a_pinentry_program_gets_the_request_and_gives_the_pin(short_dir: Path) -> None:
    source, log = fake_pinentry(short_dir, "9731%2568")  # percent-escaped '%'
    assert source.ask(REQUEST, threading.Event(), 10) == bytearray(b"9731%68")
    shown = log.read_text()
    assert SERVER in shown and SESSION in shown and "王小明" in shown
    cancelled, _ = fake_pinentry(short_dir, "cancel")
    with pytest.raises(ProofCancelled):
        cancelled.ask(REQUEST, threading.Event(), 10)
    hanging, _ = fake_pinentry(short_dir, "hang")
    cancel = threading.Event()
    thread, out = ask_in_thread(hanging, cancel)
    time.sleep(0.5)
    cancel.set()
    thread.join(5)
    assert not thread.is_alive() and isinstance(out[0], ProofCancelled)
    with pytest.raises(ProofTimedOut):
        hanging.ask(REQUEST, threading.Event(), 0.5)


@pytest.mark.skipif(shutil.which("pinentry") is None, reason="no pinentry program installed")
def test_the_installed_pinentry_can_be_cancelled() -> None:
    cancel = threading.Event()
    thread, out = ask_in_thread(PinentrySource(shutil.which("pinentry") or ""), cancel)
    time.sleep(1)
    cancel.set()
    thread.join(10)
    assert not thread.is_alive() and isinstance(out[0], ProofCancelled | ProofTimedOut)


# ---------------------------------------------------------------------- through pcscd


def test_through_pcscd_the_server_gets_reads_and_proofs_only(
    pki: TestPki, short_dir: Path, hostile: Callable[[AgentServer], Hostile]
) -> None:
    from card.agent.server import pcsc_agent
    from card.sim.vpcd import VpcdCard
    from tests.integration.test_pcsc import READER_0, pcscd_ctl, plug, unplug

    pcscd_ctl()
    card = Recording(piv(pki))
    vcard = VpcdCard(card)
    lines = Lines()
    pins = Pins(WRONG_PIN, PIN)
    server = pcsc_agent(short_dir / "p.sock", server_name=SERVER, pin_source=pins, notify=lines)
    plug(vcard, READER_0)
    try:
        with server:
            raw = hostile(server)
            raw.hello()
            raw.send(2, wire.ReadCard(READER_0))
            info = raw.answer(2)
            assert (
                isinstance(info, wire.CardInfo) and info.certificate == pki.user("moica").cert_der
            )
            wrong = raw.prove(3, READER_0, sha256(info.certificate), secrets.token_bytes(32))
            assert isinstance(wrong, wire.Failure)
            assert isinstance(wire.failure_to_error(wrong), WrongPin)
            nonce = secrets.token_bytes(32)
            check_proof(
                info.certificate,
                SESSION,
                nonce,
                raw.prove(4, READER_0, sha256(info.certificate), nonce),
            )
            raw.send_payload(V2_FRAMES["Transmit"])
            assert raw.closed_by_agent()
            inner = card.inner
            assert isinstance(inner, VirtualPivCard) and inner.tries_left == 3
            # Two VERIFY (one for each PIN typed) and the GENERAL AUTHENTICATE after the
            # right one (chained: CLA 10 then 00), all the agent's own; else reads only.
            others = [c for c in card.commands if c not in READS]
            assert others[:2] == [(0x00, 0x20), (0x00, 0x20)]
            assert set(others[2:]) <= {(0x10, 0x87), (0x00, 0x87)} and others[-1] == (0x00, 0x87)
            assert_no_pin(raw.received, PIN, WRONG_PIN)
    finally:
        unplug(vcard, READER_0)
