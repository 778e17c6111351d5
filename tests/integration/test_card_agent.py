"""The card agent end to end: AgentServer on a private UNIX socket ↔ AgentBackend.

The first part serves an InProcessBackend with the virtual cards of card.sim.virtual
(fast, no services). The second part serves the real PcscBackend: pyscard → the
private pcscd of `make test` → vsmartcard-vpcd → virtual cards, with an agent in this
process and one in a child process that is killed mid-login. PKCS#11 over the agent
uses SoftHSM2 as the HiCOS module. Every blocking wait has a timeout.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from card.agent import protocol as wire
from card.agent.client import AgentBackend, check_socket
from card.agent.protocol import AgentBusy, AgentUnavailable, CommandRefused, InsecureSocket
from card.agent.server import (
    SOCKET_NAME,
    AgentServer,
    AgentStartError,
    default_socket_path,
    pcsc_agent,
)
from card.errors import (
    CardRemoved,
    CardUnresponsive,
    NoCard,
    NoReader,
    PcscUnavailable,
    Pkcs11Unavailable,
    ReaderBusy,
    WrongPin,
)
from card.identity import CardKind
from card.readers.piv import PivCard, algorithm_for_public_key
from card.readers.pkcs11 import Pkcs11Signer
from card.readers.profiles import CardProfile, read_card
from card.signing import signer_for_kind
from card.sim.inprocess import InProcessBackend
from card.sim.testpki import TestPki, make_test_pki
from card.sim.virtual import (
    CardWrapper,
    FaultyCard,
    SimulatedCard,
    VirtualHicosCard,
    VirtualPivCard,
)
from card.sim.vpcd import VpcdCard
from card.validation import CertificateValidator
from smis_tui.core.config import ConfigError, Settings
from smis_tui.services import Services
from smis_tui.services.auth import LoginState
from smis_tui.services.card_login import CardLoginService
from smis_tui.services.card_runtime import agent_runtime, runtime_for
from tests.integration.test_card_login_pcsc import approved, bind_on_first_login, hicos_token_of
from tests.integration.test_pcsc import (
    READER_0,
    READER_1,
    EchoCard,
    pcscd_ctl,
    plug,
    unplug,
    wait_until,
)

PIN = "135790"
A = "讀卡機 A"
B = "讀卡機 B"
CHANGE_PIN = bytes.fromhex("002400801031323334353637383132333435363738")
UNBLOCK_PIN = bytes.fromhex("002C00801031323334353637383132333435363738")
UPDATE_BINARY = bytes.fromhex("00D6000004DEADBEEF")
SELECT_PIV = bytes.fromhex("00A4040009A0000003080000100000")


# ---------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A private directory with a short path (UNIX socket paths are at most 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="smis-agent-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Lines(list[str]):
    """What the staff member sees."""

    def __call__(self, line: str) -> None:
        self.append(line)

    def wait_for(self, text: str, timeout: float = 5.0) -> str:
        wait_until(lambda: any(text in line for line in self), timeout, f"a line with {text!r}")
        return next(line for line in self if text in line)


class Recording(CardWrapper):
    """A card that remembers the instruction bytes it was sent."""

    def __init__(self, inner: SimulatedCard) -> None:
        super().__init__(inner)
        self.ins: list[int] = []

    def process(self, apdu: bytes) -> bytes:
        self.ins.append(apdu[1])
        return self.inner.process(apdu)


@pytest.fixture
def readers() -> InProcessBackend:
    return InProcessBackend([A, B])


@pytest.fixture
def lines() -> Lines:
    return Lines()


@pytest.fixture
def agent(readers: InProcessBackend, short_dir: Path, lines: Lines) -> Iterator[AgentServer]:
    server = AgentServer(readers, socket_path=short_dir / SOCKET_NAME, notify=lines)
    with server:
        yield server


@pytest.fixture
def client(agent: AgentServer) -> Iterator[AgentBackend]:
    with AgentBackend(agent.socket_path, label="kiosk@server pid 1, SSH_CONNECTION 1") as backend:
        yield backend


def readers_at(path: Path) -> list[str]:
    with AgentBackend(path) as backend:
        return backend.readers()


def piv_card(pki: TestPki, user: str = "moica") -> VirtualPivCard:
    u = pki.user(user)
    return VirtualPivCard(u.cert_der, u.key, PIN)


class Raw:
    """A hand-driven client on the agent socket."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(str(path))
        self.decoder = wire.FrameDecoder()
        self.ready: list[bytearray] = []

    def send(self, msg_id: int, message: wire.Message) -> None:
        self.sock.sendall(wire.encode_frame(msg_id, message))

    def hello(self) -> wire.Welcome:
        self.send(1, wire.Hello(wire.PROTOCOL_VERSION, "raw client"))
        msg_id, welcome = self.receive()
        assert msg_id == 1 and isinstance(welcome, wire.Welcome)
        return welcome

    def receive(self, timeout: float = 5.0) -> tuple[int, wire.Message]:
        deadline = time.monotonic() + timeout
        while not self.ready:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self.ready += self.decoder.feed(data)
        return wire.decode_payload(self.ready.pop(0))

    def flood(self, reader: str, apdu: bytes, count: int) -> None:
        """Connect to the card in ``reader``, then send ``count`` Transmits of ``apdu``
        (ids 100, 101, …) in one go, without waiting for any answer."""
        self.send(2, wire.Connect(reader, 5000))
        _, connected = self.receive()
        assert isinstance(connected, wire.Connected)
        transmit = wire.Transmit(connected.handle, 5000, apdu)
        self.sock.sendall(b"".join(wire.encode_frame(100 + i, transmit) for i in range(count)))

    def answers(self, count: int, timeout: float = 30.0) -> dict[int, wire.Message]:
        """Up to ``count`` messages by request id, each id answered once."""
        answers: dict[int, wire.Message] = {}
        deadline = time.monotonic() + timeout
        while len(answers) < count and time.monotonic() < deadline:
            msg_id, message = self.receive(timeout=deadline - time.monotonic())
            assert msg_id not in answers
            answers[msg_id] = message
        return answers

    def closed_by_agent(self, timeout: float = 5.0) -> bool:
        """Read until the agent closes the connection (False: still open at the end)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                if not self.sock.recv(65536):
                    return True
            except TimeoutError:
                return False
            except OSError:
                return True
        return False

    def close(self) -> None:
        self.sock.close()


def login_service(
    services: Services, pki: TestPki, backend: AgentBackend, *, hicos: bool = False
) -> CardLoginService:
    return CardLoginService(
        backend,
        CertificateValidator(pki.ca_dir, pki.crl_dir),
        services.login,
        services.accounts,
        signer_for_kind(backend.pkcs11_signer) if hicos else None,
    )


def piv_sign(backend: AgentBackend, reader: str, pki: TestPki, user: str) -> bytes:
    conn = backend.connect(reader)
    try:
        read = read_card(conn)
        assert read.profile == CardProfile.PIV
        piv = PivCard(conn)
        piv.select()
        piv.verify_pin(PIN)
        algorithm = algorithm_for_public_key(pki.user(user).key.public_key())
        size = 256 if algorithm == 0x07 else 32
        return piv.sign(b"\x01" * size, algorithm)
    finally:
        conn.close()


# ---------------------------------------------------------------------- the socket


def test_socket_is_private_and_in_the_runtime_dir(
    readers: InProcessBackend, short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(short_dir))
    assert default_socket_path() == short_dir / SOCKET_NAME
    with AgentServer(readers, notify=Lines()) as server:
        info = os.lstat(server.socket_path)
        assert server.socket_path == short_dir / SOCKET_NAME
        assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
        assert info.st_uid == os.getuid()
    assert not server.socket_path.exists()
    # No usable runtime directory: a private one under /tmp.
    os.chmod(short_dir, 0o755)
    fallback = default_socket_path()
    assert fallback.parent == Path(tempfile.gettempdir()) / f"smis-card-agent-{os.getuid()}"
    assert stat.S_IMODE(os.lstat(fallback.parent).st_mode) == 0o700
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert default_socket_path() == fallback


def test_agent_refuses_unsafe_or_busy_socket_paths(
    readers: InProcessBackend, short_dir: Path
) -> None:
    path = short_dir / "agent.sock"
    path.write_text("not a socket")
    with pytest.raises(AgentStartError, match="不是 socket"):
        AgentServer(readers, socket_path=path).start()
    path.unlink()
    with AgentServer(readers, socket_path=path, notify=Lines()):
        with pytest.raises(AgentStartError, match="已有讀卡代理程式"):
            AgentServer(readers, socket_path=path).start()
    # A socket left over from an agent that died is replaced.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()
    with AgentServer(readers, socket_path=path, notify=Lines()) as server:
        assert readers_at(server.socket_path) == [A, B]
    shared = short_dir / "shared"
    shared.mkdir(mode=0o777)
    os.chmod(shared, 0o777)
    with pytest.raises(AgentStartError, match="其他使用者可寫入"):
        AgentServer(readers, socket_path=shared / "a.sock").start()


def test_client_refuses_a_socket_of_another_user_or_open_to_others(short_dir: Path) -> None:
    path = short_dir / "planted.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    listener.settimeout(0.2)
    try:
        os.chmod(path, 0o600)
        os.chown(path, 65534, 65534)
        with pytest.raises(InsecureSocket, match="uid 65534") as other:
            AgentBackend(path).readers()
        assert isinstance(other.value, PcscUnavailable)
        os.chown(path, os.getuid(), os.getgid())
        os.chmod(path, 0o666)
        with pytest.raises(InsecureSocket, match="0666"):
            AgentBackend(path).connect(A)
        with pytest.raises(TimeoutError):
            listener.accept()  # nothing was ever sent to it
    finally:
        listener.close()
    regular = short_dir / "file.sock"
    regular.write_text("")
    os.chmod(regular, 0o600)
    with pytest.raises(InsecureSocket, match="不是 socket"):
        check_socket(regular)


def test_agent_refuses_a_peer_of_another_user(readers: InProcessBackend, short_dir: Path) -> None:
    os.chmod(short_dir, 0o755)
    lines = Lines()
    with AgentServer(readers, socket_path=short_dir / "a.sock", notify=lines) as server:
        os.chmod(server.socket_path, 0o666)  # as if someone opened it up
        script = (
            "import socket,struct,sys\n"
            "s=socket.socket(socket.AF_UNIX);s.settimeout(5);s.connect(sys.argv[1])\n"
            "p=bytes([1,0,0,0,1,0,1,0,0,0,1])+b'x'\n"
            "try:\n s.sendall(struct.pack('>I',len(p))+p)\nexcept OSError: pass\n"
            "try:\n print(len(s.recv(100)))\nexcept OSError: print(0)\n"
        )
        python = shutil.which("python3", path="/usr/bin:/bin") or "/usr/bin/python3"
        done = subprocess.run(
            [python, "-c", script, str(server.socket_path)],
            user=65534,
            cwd="/",
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert done.stdout.strip() == "0", done.stderr
        lines.wait_for("uid 65534")
        assert server.sessions() == []


def test_unreachable_agent_is_pcsc_unavailable(short_dir: Path) -> None:
    with pytest.raises(AgentUnavailable, match="找不到") as missing:
        AgentBackend(short_dir / "none.sock").readers()
    assert isinstance(missing.value, PcscUnavailable)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(short_dir / "stale.sock"))
    stale.close()
    os.chmod(short_dir / "stale.sock", 0o600)
    with pytest.raises(AgentUnavailable, match="沒有讀卡代理程式"):
        AgentBackend(short_dir / "stale.sock").connect(A)


# ---------------------------------------------------------------------- cards through the agent


def test_login_through_the_agent(
    services: Services,
    pki: TestPki,
    readers: InProcessBackend,
    agent: AgentServer,
    client: AgentBackend,
    lines: Lines,
) -> None:
    user = pki.user("moica")
    account_id = approved(services, user)
    logins = login_service(services, pki, client)
    readers.insert(A, piv_card(pki))
    assert client.readers() == [A, B]
    bind_on_first_login(logins, A, user, account_id)
    again = logins.authenticate(A, PIN)
    assert again.outcome is not None and again.outcome.state == LoginState.ACTIVE
    lines.wait_for("伺服器工作階段已連線：「kiosk@server pid 1, SSH_CONNECTION 1」")
    assert "正在使用讀卡機「讀卡機 A」" in lines.wait_for("正在使用")
    assert PIN not in "\n".join(lines)
    assert client.agent_label and "@" in client.agent_label


def test_errors_are_those_of_a_local_reader(
    pki: TestPki, readers: InProcessBackend, agent: AgentServer, client: AgentBackend
) -> None:
    with pytest.raises(NoCard, match="讀卡機 A"):
        client.connect(A)
    with pytest.raises(NoReader):
        client.connect("沒有這台")
    slow = FaultyCard(piv_card(pki), "slow", after=1, seconds=10)
    readers.insert(A, slow)
    conn = client.connect(A)
    assert conn.transmit(SELECT_PIV).ok
    started = time.monotonic()
    with pytest.raises(CardUnresponsive):
        conn.transmit(SELECT_PIV, timeout=0.5)
    assert time.monotonic() - started < 3
    with pytest.raises(CardUnresponsive):  # dead from then on, at once
        conn.transmit(SELECT_PIV)
    conn.close()
    with pytest.raises(CardUnresponsive):
        conn.transmit(SELECT_PIV, timeout=0)


def test_one_session_at_a_time_per_card(
    pki: TestPki, readers: InProcessBackend, agent: AgentServer, client: AgentBackend, lines: Lines
) -> None:
    readers.insert(A, piv_card(pki))
    conn = client.connect(A)
    with AgentBackend(agent.socket_path, label="other session") as other:
        with pytest.raises(ReaderBusy, match="讀卡機 A"):
            other.connect(A)
        lines.wait_for("「other session」要求使用讀卡機「讀卡機 A」")
        assert agent.owner(A) == "「kiosk@server pid 1, SSH_CONNECTION 1」"
        conn.close()
        wait_until(lambda: agent.owner(A) is None, what="the reader to be let go")
        theirs = other.connect(A)
        assert theirs.transmit(SELECT_PIV).ok
        theirs.close()


@pytest.mark.parametrize(
    ("apdu", "name"),
    [
        (CHANGE_PIN, "CHANGE REFERENCE DATA"),
        (UNBLOCK_PIN, "RESET RETRY COUNTER"),
        (UPDATE_BINARY, "UPDATE BINARY"),
        (bytes.fromhex("80D6000001FF"), "UPDATE BINARY"),  # proprietary class too
        (bytes.fromhex("10DB3FFF0100"), "PUT DATA"),  # chained
        (bytes.fromhex("00FB0000"), "RESET"),
    ],
)
def test_pin_changes_and_writes_are_refused(
    pki: TestPki,
    readers: InProcessBackend,
    agent: AgentServer,
    client: AgentBackend,
    lines: Lines,
    apdu: bytes,
    name: str,
) -> None:
    card = Recording(piv_card(pki))
    readers.insert(A, card)
    with client.connect(A) as conn:
        with pytest.raises(CommandRefused, match=name) as refused:
            conn.transmit(apdu)
        assert refused.value.ins == apdu[1]
        assert conn.transmit(SELECT_PIV).ok  # the connection stays usable
    assert apdu[1] not in card.ins
    line = lines.wait_for("已拒絕")
    assert name in line and "kiosk@server" in line


def test_agent_gone_mid_command_is_card_removed(
    pki: TestPki, readers: InProcessBackend, agent: AgentServer, client: AgentBackend
) -> None:
    readers.insert(A, FaultyCard(piv_card(pki), "slow", after=1, seconds=10))
    conn = client.connect(A)
    assert conn.transmit(SELECT_PIV).ok
    outcome: list[BaseException] = []

    def work() -> None:
        try:
            conn.transmit(SELECT_PIV, timeout=8)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    agent.stop()
    thread.join(5)
    assert not thread.is_alive()
    assert time.monotonic() - started < 3
    assert len(outcome) == 1 and isinstance(outcome[0], CardRemoved)
    with pytest.raises(CardRemoved):
        conn.transmit(SELECT_PIV)
    with pytest.raises(AgentUnavailable):
        client.readers()


def test_events_like_a_local_reader(
    pki: TestPki,
    readers: InProcessBackend,
    agent: AgentServer,
    client: AgentBackend,
    short_dir: Path,
) -> None:
    seen: list[tuple[str, bool]] = []
    unsubscribe = client.subscribe(lambda reader, inserted: seen.append((reader, inserted)))
    wait_until(lambda: bool(agent.sessions()), what="the client to connect")
    time.sleep(0.3)
    readers.insert(A, piv_card(pki))
    wait_until(lambda: (A, True) in seen, what="the insert event")
    late: list[tuple[str, bool]] = []
    client.subscribe(lambda reader, inserted: late.append((reader, inserted)))
    wait_until(lambda: late == [(A, True)], what="a new listener to hear of the card present")
    readers.remove(A)
    wait_until(lambda: seen[-1] == (A, False), what="the removal event")
    readers.insert(B, piv_card(pki))
    wait_until(lambda: seen[-1] == (B, True), what="the insert in B")
    # The agent goes away: its card is removed; it comes back: the card is there again.
    agent.stop()
    wait_until(lambda: seen[-1] == (B, False), what="removal when the agent goes")
    with AgentServer(readers, socket_path=agent.socket_path, notify=Lines()):
        wait_until(lambda: seen[-1] == (B, True), timeout=10, what="the card after reconnecting")
    unsubscribe()


def test_two_sessions_with_two_cards_at_once(
    pki: TestPki, readers: InProcessBackend, agent: AgentServer
) -> None:
    readers.insert(A, FaultyCard(piv_card(pki, "moica"), "slow", seconds=0.02))
    readers.insert(B, FaultyCard(piv_card(pki, "moica2"), "slow", seconds=0.02))
    results: dict[str, bytes] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(2, timeout=5)

    def session(reader: str, user: str) -> None:
        try:
            with AgentBackend(agent.socket_path, label=f"session {reader}") as backend:
                backend.readers()
                barrier.wait()
                results[reader] = piv_sign(backend, reader, pki, user)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=session, args=(A, "moica")),
        threading.Thread(target=session, args=(B, "moica2")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not errors, errors
    assert set(results) == {A, B}


def test_a_flooding_session_gets_busy_answers_and_others_are_served(
    pki: TestPki, readers: InProcessBackend, agent: AgentServer, lines: Lines
) -> None:
    readers.insert(A, FaultyCard(piv_card(pki), "slow", seconds=0.05))
    readers.insert(B, piv_card(pki, "moica2"))
    raw = Raw(agent.socket_path)
    try:
        raw.hello()
        count = 120
        raw.flood(A, SELECT_PIV, count)
        # Meanwhile another session is served at its own pace.
        started = time.monotonic()
        with AgentBackend(agent.socket_path, label="calm") as calm:
            assert piv_sign(calm, B, pki, "moica2")
        assert time.monotonic() - started < 5
        answers = raw.answers(count)
        assert sorted(answers) == list(range(100, 100 + count))
        ok = [m for m in answers.values() if isinstance(m, wire.Answer)]
        busy = [
            m for m in answers.values() if isinstance(m, wire.Failure) and m.name == "AgentBusy"
        ]
        assert len(ok) + len(busy) == count
        assert ok and len(busy) >= count // 2
        assert "忙碌" in str(AgentBusy())
        lines.wait_for("速度超過卡片回應的速度")
    finally:
        raw.close()


def test_a_session_that_never_reads_is_dropped(
    readers: InProcessBackend, agent: AgentServer, lines: Lines
) -> None:
    raw = Raw(agent.socket_path)
    try:
        raw.hello()
        frame = wire.encode_frame(5, wire.ListReaders())
        raw.sock.settimeout(5)
        with pytest.raises(OSError):  # the agent hangs up on us at some point
            for _ in range(200_000):
                raw.sock.sendall(frame)
        lines.wait_for("未讀取回應")
    finally:
        raw.close()
    assert readers_at(agent.socket_path) == [A, B]


# ---------------------------------------------------------------------- bad input on the socket


def test_malformed_and_oversized_frames(agent: AgentServer, lines: Lines) -> None:
    # Oversized: a clear error, then the agent hangs up (the stream cannot be trusted).
    raw = Raw(agent.socket_path)
    raw.sock.sendall(b"\x7f\xff\xff\xff" + b"x" * 100)
    _, failure = raw.receive()
    assert isinstance(failure, wire.Failure) and "訊框過大" in failure.message
    assert raw.closed_by_agent()
    raw.close()
    # Malformed payload after the handshake: a clear error, the session goes on.
    raw = Raw(agent.socket_path)
    raw.hello()
    raw.sock.sendall(b"\x00\x00\x00\x06\x42\x00\x00\x00\x07\x00")
    msg_id, failure = raw.receive()
    assert msg_id == 7 and isinstance(failure, wire.Failure)
    assert failure.name == "AgentProtocolError" and "0x42" in failure.message
    raw.send(8, wire.ListReaders())
    assert raw.receive() == (8, wire.Readers((A, B)))
    raw.send(9, wire.Welcome(1, "not a request", False))
    _, failure = raw.receive()
    assert isinstance(failure, wire.Failure) and "不是此時可送出的請求" in failure.message
    raw.close()
    # Anything but Hello first: refused and closed.
    raw = Raw(agent.socket_path)
    raw.send(1, wire.ListReaders())
    _, failure = raw.receive()
    assert isinstance(failure, wire.Failure) and "Hello" in failure.message
    assert raw.closed_by_agent()
    raw.close()
    # Half a frame, then the client goes: nothing hangs.
    raw = Raw(agent.socket_path)
    raw.sock.sendall(b"\x00\x00\x01\x00abc")
    raw.close()
    lines.wait_for("格式錯誤")
    assert readers_at(agent.socket_path) == [A, B]


def test_a_wrong_protocol_version_is_refused_clearly(agent: AgentServer) -> None:
    raw = Raw(agent.socket_path)
    raw.send(1, wire.Hello(wire.PROTOCOL_VERSION + 1, "future kiosk"))
    _, failure = raw.receive()
    assert isinstance(failure, wire.Failure) and "協定版本不符" in failure.message
    assert raw.closed_by_agent()
    raw.close()


def test_random_bytes_never_stop_the_agent(agent: AgentServer) -> None:
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.binary(min_size=1, max_size=200), st.booleans())
    def garbage(data: bytes, greet: bool) -> None:
        raw = Raw(agent.socket_path)
        try:
            if greet:
                raw.hello()
            raw.sock.sendall(data)
            raw.closed_by_agent(timeout=0.2)
        except OSError:
            pass
        finally:
            raw.close()

    garbage()
    assert readers_at(agent.socket_path) == [A, B]
    wait_until(lambda: agent.sessions() == [], timeout=10, what="every garbage session to end")


# ---------------------------------------------------------------------- PKCS#11 over the agent


@pytest.fixture(scope="module")
def hicos_token(pki: TestPki) -> tuple[str, str]:
    return hicos_token_of(pki.user("hpc"))


def test_hicos_login_signs_with_the_agents_pkcs11_module(
    services: Services,
    pki: TestPki,
    readers: InProcessBackend,
    short_dir: Path,
    hicos_token: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    module, label = hicos_token
    user = pki.user("hpc")
    approved(services, user)
    lines = Lines()

    def signer(unblock_at: str) -> Pkcs11Signer:
        return Pkcs11Signer(module, label, unblock_at=unblock_at)

    readers.insert(A, VirtualHicosCard({"signature": user.cert_der}, kind="hpc"))
    caplog.set_level("DEBUG")
    with AgentServer(readers, socket_path=short_dir / "a.sock", pkcs11=signer, notify=lines) as srv:
        with AgentBackend(srv.socket_path) as backend:
            logins = login_service(services, pki, backend, hicos=True)
            assert logins.read(A).identity.kind == CardKind.HPC
            with pytest.raises(WrongPin) as wrong:
                logins.authenticate(A, "864209")
            assert "864209" not in str(wrong.value)
            first = logins.authenticate(A, PIN)
            assert first.needs_person_id is not None
            assert logins.bind(first.needs_person_id, user.person_id).state == LoginState.ACTIVE
    lines.wait_for("PKCS#11")
    shown = "\n".join(lines) + caplog.text
    assert PIN not in shown and "864209" not in shown


def test_pkcs11_without_a_module_at_the_agent(
    pki: TestPki, agent: AgentServer, client: AgentBackend
) -> None:
    with pytest.raises(Pkcs11Unavailable, match="PKCS#11"):
        client.sign_pkcs11(PIN, b"challenge")


# ---------------------------------------------------------------------- the kiosk's runtime


def test_runtime_for_uses_the_agent_when_smis_card_agent_is_set(
    services: Services,
    pki: TestPki,
    readers: InProcessBackend,
    agent: AgentServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings_ = Settings(data_dir=Path("/nonexistent"), ca_dir=pki.ca_dir)
    monkeypatch.setenv("SMIS_CARD_AGENT", str(agent.socket_path))
    runtime = runtime_for(services, settings_)
    try:
        assert isinstance(runtime.backend, AgentBackend)
        seen: list[tuple[str, bool]] = []
        runtime.subscribe(lambda reader, inserted: seen.append((reader, inserted)))
        wait_until(lambda: bool(agent.sessions()), what="the runtime to connect")
        time.sleep(0.3)
        readers.insert(A, piv_card(pki))
        wait_until(lambda: (A, True) in seen, what="the insert event through the runtime")
        assert runtime.login.read(A).profile == CardProfile.PIV
    finally:
        runtime.close()
    with pytest.raises(ConfigError, match="絕對路徑"):
        agent_runtime(services, settings_, Path("relative.sock"))


def test_cli_registers_card_agent_and_prints_one_ssh_line() -> None:
    from smis_tui.cli import build_parser
    from smis_tui.cli.agent import handle_card_agent, remote_socket, ssh_command

    args = build_parser().parse_args(["card-agent", "--socket", "/tmp/x.sock"])
    assert args.handler is handle_card_agent and args.socket == Path("/tmp/x.sock")
    remote = remote_socket(token="ab" * 16)
    assert remote == "/run/smis/agent/" + "ab" * 16 + ".sock"
    line = ssh_command(Path("/run/user/1000/smis-card-agent.sock"), "kiosk@server", remote)
    assert line == (
        f"ssh -o SetEnv=SMIS_CARD_AGENT={remote} "
        f"-R {remote}:/run/user/1000/smis-card-agent.sock kiosk@server"
    )
    assert remote_socket() != remote_socket()


# ---------------------------------------------------------------------- through real pcscd


@pytest.fixture
def pcsc_agent_server(short_dir: Path, lines: Lines) -> Iterator[AgentServer]:
    pcscd_ctl()
    server = pcsc_agent(short_dir / "pcsc.sock", notify=lines)
    with server:
        yield server


def test_login_through_the_agent_over_pcscd(
    services: Services, pki: TestPki, pcsc_agent_server: AgentServer, lines: Lines
) -> None:
    user = pki.user("moica")
    account_id = approved(services, user)
    vcard = VpcdCard(piv_card(pki))
    with AgentBackend(pcsc_agent_server.socket_path) as backend:
        seen: list[tuple[str, bool]] = []
        backend.subscribe(lambda reader, inserted: seen.append((reader, inserted)))
        plug(vcard, READER_0)
        try:
            wait_until(lambda: (READER_0, True) in seen, what="the insert event over pcscd")
            assert READER_0 in backend.readers()
            bind_on_first_login(login_service(services, pki, backend), READER_0, user, account_id)
            with backend.connect(READER_0) as conn:
                with pytest.raises(CommandRefused):
                    conn.transmit(CHANGE_PIN)
        finally:
            unplug(vcard, READER_0)
        wait_until(lambda: seen[-1] == (READER_0, False), what="the removal event over pcscd")
    lines.wait_for("CHANGE REFERENCE DATA")


class StuckWhileSigning(CardWrapper):
    """A PIV card that does not answer GENERAL AUTHENTICATE until released."""

    def __init__(self, inner: VirtualPivCard) -> None:
        super().__init__(inner)
        self.signing = threading.Event()
        self.release = threading.Event()

    def process(self, apdu: bytes) -> bytes:
        if apdu[1] == 0x87:
            self.signing.set()
            self.release.wait(10)
        return self.inner.process(apdu)


def test_agent_killed_mid_login_is_card_removed(
    services: Services, pki: TestPki, short_dir: Path
) -> None:
    pcscd_ctl()
    path = short_dir / "child.sock"
    agent = subprocess.Popen(
        [sys.executable, "-m", "smis_tui.cli", "card-agent", "--socket", str(path)]
        + ["--server", "kiosk@server"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    card = StuckWhileSigning(piv_card(pki))
    vcard = VpcdCard(card)
    try:
        wait_until(lambda: path.exists(), timeout=30, what="the agent's socket")
        backend = AgentBackend(path)
        logins = login_service(services, pki, backend)
        plug(vcard, READER_0)
        outcome: list[BaseException] = []

        def login() -> None:
            try:
                logins.authenticate(READER_0, PIN)
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=login)
        thread.start()
        assert card.signing.wait(15), "the card never got GENERAL AUTHENTICATE"
        os.kill(agent.pid, signal.SIGKILL)
        thread.join(5)
        assert not thread.is_alive()
        assert len(outcome) == 1 and isinstance(outcome[0], CardRemoved), outcome
        with pytest.raises(AgentUnavailable):
            backend.readers()
        backend.close()
    finally:
        card.release.set()
        if agent.poll() is None:
            agent.kill()
        output, _ = agent.communicate(timeout=10)
        unplug(vcard, READER_0)
    assert "SetEnv=SMIS_CARD_AGENT=/run/smis/agent/" in output
    assert f":{path} kiosk@server" in output
    assert "正在使用讀卡機「Virtual PCD 00 00」" in output


def test_two_cards_and_a_flood_through_pcscd(pki: TestPki, pcsc_agent_server: AgentServer) -> None:
    port = int(os.environ.get("SMIS_VPCD_PORT", "35963"))
    echo = EchoCard(delay=0.05)
    first = VpcdCard(piv_card(pki, "moica"))
    second = VpcdCard(echo, port=port + 1)
    plug(first, READER_0)
    plug(second, READER_1)
    raw = Raw(pcsc_agent_server.socket_path)
    try:
        raw.hello()
        count = 60
        raw.flood(READER_1, bytes.fromhex("00EE0000"), count)
        with AgentBackend(pcsc_agent_server.socket_path) as backend:
            assert piv_sign(backend, READER_0, pki, "moica")
        answers = raw.answers(count)
        assert len(answers) == count
        assert any(isinstance(m, wire.Answer) for m in answers.values())
        assert any(isinstance(m, wire.Failure) and m.name == "AgentBusy" for m in answers.values())
    finally:
        raw.close()
        unplug(first, READER_0)
        unplug(second, READER_1)
