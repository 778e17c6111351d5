"""The card agent end to end: AgentServer on a private UNIX socket ↔ AgentBackend.

The first part serves an InProcessBackend with the virtual cards of card.sim.virtual
(fast, no services). The second part serves the real PcscBackend: pyscard → the
private pcscd of `make test` → vsmartcard-vpcd → virtual cards, with an agent in this
process and one in a child process, on a pty, that is killed mid-login. PKCS#11 at
the agent uses SoftHSM2 as the HiCOS module. The PIN is typed at the agent (a scripted
PIN source, or the child's pty); tests/integration/test_hostile_server.py is what a
hostile server can and cannot do. Every blocking wait has a timeout.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pty
import secrets
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from card.agent import protocol as wire
from card.agent.client import AgentBackend, check_socket
from card.agent.pin_entry import PIN_PROMPT, PinRequest
from card.agent.protocol import (
    AgentBusy,
    AgentUnavailable,
    DirectAccessRefused,
    InsecureSocket,
)
from card.agent.server import (
    SOCKET_NAME,
    AgentServer,
    AgentStartError,
    default_socket_path,
    pcsc_agent,
)
from card.errors import (
    CardError,
    CardRemoved,
    CardUnresponsive,
    NoCard,
    NoReader,
    PcscUnavailable,
    ProofCancelled,
    ReaderBusy,
    WrongPin,
)
from card.identity import CardKind
from card.readers.pkcs11 import Pkcs11Signer
from card.readers.profiles import CardProfile
from card.sim.inprocess import InProcessBackend
from card.sim.testpki import PkiUser, TestPki, make_test_pki
from card.sim.virtual import (
    CardWrapper,
    FaultyCard,
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
from tests.integration.test_card_login_pcsc import approved, hicos_token_of
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
WRONG_PIN = "000000"
SERVER = "smis.example.tw"
A = "讀卡機 A"
B = "讀卡機 B"


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


class Pins:
    """The staff member at the agent: types ``pins`` in turn (the last one again and
    again); with ``hold`` never types, until the prompt is cancelled."""

    def __init__(self, *pins: str, hold: bool = False) -> None:
        self.pins = list(pins) or [PIN]
        self.hold = hold
        self.asked: list[PinRequest] = []
        self.waiting = threading.Event()

    def ask(self, request: PinRequest, cancel: threading.Event, timeout: float) -> bytearray:
        self.asked.append(request)
        if self.hold:
            self.waiting.set()
            cancel.wait(timeout)
            raise ProofCancelled()
        pin = self.pins.pop(0) if len(self.pins) > 1 else self.pins[0]
        return bytearray(pin.encode())


@pytest.fixture
def readers() -> InProcessBackend:
    return InProcessBackend([A, B])


@pytest.fixture
def lines() -> Lines:
    return Lines()


@pytest.fixture
def pins() -> Pins:
    return Pins()


@pytest.fixture
def agent(
    readers: InProcessBackend, short_dir: Path, lines: Lines, pins: Pins
) -> Iterator[AgentServer]:
    server = AgentServer(
        readers,
        server_name=SERVER,
        socket_path=short_dir / SOCKET_NAME,
        pin_source=pins,
        notify=lines,
        card_timeout=1.0,
    )
    with server:
        yield server


@pytest.fixture
def client(agent: AgentServer) -> Iterator[AgentBackend]:
    with AgentBackend(
        agent.socket_path, label="kiosk@server pid 1, SSH_CONNECTION 1", session_id="1-abc"
    ) as backend:
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
        self.send(1, wire.Hello(wire.PROTOCOL_VERSION, "raw client", "9-raw"))
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

    def flood(self, reader: str, count: int) -> None:
        """``count`` ReadCards of ``reader`` (ids 100, 101, …) in one go, without
        waiting for any answer."""
        request = wire.ReadCard(reader)
        self.sock.sendall(b"".join(wire.encode_frame(100 + i, request) for i in range(count)))

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


def login_service(services: Services, pki: TestPki, backend: AgentBackend) -> CardLoginService:
    """The kiosk's login over the agent: no PIN here, proofs for SERVER only."""
    return CardLoginService(
        backend,
        CertificateValidator(pki.ca_dir, pki.crl_dir),
        services.login,
        services.accounts,
        remote=backend,
        server_names={SERVER},
    )


def bind_on_first_remote_login(
    logins: CardLoginService, reader: str, user: PkiUser, account_id: int
) -> None:
    """The first login at ``reader``, the staff member typing a wrong PIN, then the
    right one, at the agent; then the person id binds the card to ``account_id``."""
    assert logins.read(reader).identity.name == user.cn
    with pytest.raises(WrongPin) as wrong:
        logins.authenticate(reader)
    assert wrong.value.tries_left == 2
    first = logins.authenticate(reader)
    assert first.needs_person_id is not None
    assert logins.bind(first.needs_person_id, user.person_id).account_id == account_id


# ---------------------------------------------------------------------- the socket


def test_socket_is_private_and_in_the_runtime_dir(
    readers: InProcessBackend, short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(short_dir))
    assert default_socket_path() == short_dir / SOCKET_NAME
    with AgentServer(readers, server_name=SERVER, notify=Lines()) as server:
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
        AgentServer(readers, server_name=SERVER, socket_path=path).start()
    path.unlink()
    with AgentServer(readers, server_name=SERVER, socket_path=path, notify=Lines()):
        with pytest.raises(AgentStartError, match="已有讀卡代理程式"):
            AgentServer(readers, server_name=SERVER, socket_path=path).start()
    # A socket left over from an agent that died is replaced.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()
    with AgentServer(readers, server_name=SERVER, socket_path=path, notify=Lines()) as server:
        assert readers_at(server.socket_path) == [A, B]
    shared = short_dir / "shared"
    shared.mkdir(mode=0o777)
    os.chmod(shared, 0o777)
    with pytest.raises(AgentStartError, match="其他使用者可寫入"):
        AgentServer(readers, server_name=SERVER, socket_path=shared / "a.sock").start()


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
            AgentBackend(path).read_card(A)
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
    with AgentServer(
        readers, server_name=SERVER, socket_path=short_dir / "a.sock", notify=lines
    ) as server:
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
        AgentBackend(short_dir / "stale.sock").read_card(A)


# ---------------------------------------------------------------------- cards through the agent


def test_login_through_the_agent(
    services: Services,
    pki: TestPki,
    readers: InProcessBackend,
    agent: AgentServer,
    client: AgentBackend,
    lines: Lines,
    pins: Pins,
) -> None:
    pins.pins = [WRONG_PIN, PIN]
    user = pki.user("moica")
    account_id = approved(services, user)
    logins = login_service(services, pki, client)
    readers.insert(A, piv_card(pki))
    assert client.readers() == [A, B]
    bind_on_first_remote_login(logins, A, user, account_id)
    again = logins.authenticate(A)
    assert again.outcome is not None and again.outcome.state == LoginState.ACTIVE
    lines.wait_for(
        f"伺服器 {SERVER} 的工作階段 1-abc（kiosk@server pid 1, SSH_CONNECTION 1）已連線"
    )
    assert "讀取讀卡機「讀卡機 A」" in lines.wait_for("讀取讀卡機")
    assert f"要求以 {user.cn} 的卡片登入" in lines.wait_for("要求以")
    assert [(r.server_name, r.session_id, r.holder) for r in pins.asked] == [
        (SERVER, "1-abc", user.cn)
    ] * 3
    shown = "\n".join(lines)
    assert PIN not in shown and WRONG_PIN not in shown
    assert client.agent_label and "@" in client.agent_label and client.server_name == SERVER


def test_a_proof_for_another_server_name_is_refused_by_the_kiosk(
    services: Services,
    pki: TestPki,
    readers: InProcessBackend,
    agent: AgentServer,
    client: AgentBackend,
) -> None:
    """The staff member started the agent with --server naming another host (or a
    relay presents someone else's agent): the proof says so and the kiosk refuses it."""
    logins = CardLoginService(
        client,
        CertificateValidator(pki.ca_dir, pki.crl_dir),
        services.login,
        services.accounts,
        remote=client,
        server_names={"kiosk.other.example"},
    )
    readers.insert(A, piv_card(pki))
    with pytest.raises(CardError):
        logins.authenticate(A)


def test_errors_are_those_of_a_local_reader(
    pki: TestPki, readers: InProcessBackend, agent: AgentServer, client: AgentBackend
) -> None:
    with pytest.raises(NoCard, match="讀卡機 A"):
        client.read_card(A)
    with pytest.raises(NoReader):
        client.read_card("沒有這台")
    readers.insert(A, FaultyCard(piv_card(pki), "slow", after=1, seconds=10))
    started = time.monotonic()
    with pytest.raises(CardUnresponsive):
        client.read_card(A)
    assert time.monotonic() - started < 4
    with pytest.raises(DirectAccessRefused):
        client.connect(A)


def test_one_session_at_a_time_per_card(
    pki: TestPki,
    readers: InProcessBackend,
    agent: AgentServer,
    client: AgentBackend,
    lines: Lines,
    pins: Pins,
) -> None:
    pins.hold = True
    readers.insert(A, piv_card(pki))
    digest = hashlib.sha256(client.read_card(A).certificate).hexdigest()
    outcome: list[BaseException] = []

    def prove() -> None:
        try:
            client.prove(A, digest, secrets.token_bytes(32), timeout=10)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=prove)
    thread.start()
    wait_until(pins.waiting.is_set, what="the PIN prompt")
    with AgentBackend(agent.socket_path, label="other session", session_id="2-def") as other:
        with pytest.raises(ReaderBusy, match="讀卡機 A"):
            other.read_card(A)
        lines.wait_for("工作階段 2-def（other session）要求使用讀卡機「讀卡機 A」")
        assert agent.owner(A) == "工作階段 1-abc（kiosk@server pid 1, SSH_CONNECTION 1）"
        client.cancel()
        thread.join(5)
        assert len(outcome) == 1 and isinstance(outcome[0], ProofCancelled)
        wait_until(lambda: agent.owner(A) is None, what="the reader to be let go")
        assert other.read_card(A).profile == CardProfile.PIV


def test_agent_gone_mid_proof_is_card_removed(
    pki: TestPki, readers: InProcessBackend, agent: AgentServer, client: AgentBackend, pins: Pins
) -> None:
    pins.hold = True
    readers.insert(A, piv_card(pki))
    digest = hashlib.sha256(client.read_card(A).certificate).hexdigest()
    outcome: list[BaseException] = []

    def work() -> None:
        try:
            client.prove(A, digest, secrets.token_bytes(32), timeout=8)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    wait_until(pins.waiting.is_set, what="the PIN prompt")
    started = time.monotonic()
    agent.stop()
    thread.join(5)
    assert not thread.is_alive()
    assert time.monotonic() - started < 3
    assert len(outcome) == 1 and isinstance(outcome[0], CardRemoved)
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
    with AgentServer(readers, server_name=SERVER, socket_path=agent.socket_path, notify=Lines()):
        wait_until(lambda: seen[-1] == (B, True), timeout=10, what="the card after reconnecting")
    unsubscribe()


def test_two_sessions_read_two_cards_at_once(
    pki: TestPki, readers: InProcessBackend, agent: AgentServer
) -> None:
    readers.insert(A, FaultyCard(piv_card(pki, "moica"), "slow", seconds=0.02))
    readers.insert(B, FaultyCard(piv_card(pki, "moica2"), "slow", seconds=0.02))
    results: dict[str, bytes] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(2, timeout=5)

    def session(reader: str) -> None:
        try:
            with AgentBackend(agent.socket_path, label=f"session {reader}") as backend:
                backend.readers()
                barrier.wait()
                results[reader] = backend.read_card(reader).certificate
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(reader,)) for reader in (A, B)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not errors, errors
    assert results == {A: pki.user("moica").cert_der, B: pki.user("moica2").cert_der}


def test_a_flooding_session_gets_busy_answers_and_others_are_served(
    pki: TestPki, readers: InProcessBackend, agent: AgentServer, lines: Lines
) -> None:
    readers.insert(A, FaultyCard(piv_card(pki), "slow", seconds=0.01))
    readers.insert(B, piv_card(pki, "moica2"))
    raw = Raw(agent.socket_path)
    try:
        raw.hello()
        count = 60
        raw.flood(A, count)
        # Meanwhile another session is served at its own pace.
        started = time.monotonic()
        with AgentBackend(agent.socket_path, label="calm") as calm:
            assert calm.read_card(B).certificate == pki.user("moica2").cert_der
        assert time.monotonic() - started < 5
        answers = raw.answers(count, timeout=60)
        assert sorted(answers) == list(range(100, 100 + count))
        ok = [m for m in answers.values() if isinstance(m, wire.CardInfo)]
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


def test_malformed_and_oversized_frames_end_the_session(agent: AgentServer, lines: Lines) -> None:
    # Oversized: a clear error, then the agent hangs up (the stream cannot be trusted).
    raw = Raw(agent.socket_path)
    raw.sock.sendall(b"\x7f\xff\xff\xff" + b"x" * 100)
    _, failure = raw.receive()
    assert isinstance(failure, wire.Failure) and "訊框過大" in failure.message
    assert raw.closed_by_agent()
    raw.close()
    # Malformed payload after the handshake: a clear error, and the end of the session.
    raw = Raw(agent.socket_path)
    raw.hello()
    raw.sock.sendall(b"\x00\x00\x00\x06\x42\x00\x00\x00\x07\x00")
    msg_id, failure = raw.receive()
    assert msg_id == 7 and isinstance(failure, wire.Failure)
    assert failure.name == "AgentProtocolError" and "0x42" in failure.message
    assert raw.closed_by_agent()
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
    lines.wait_for("已中斷此連線")
    assert readers_at(agent.socket_path) == [A, B]


def test_a_wrong_protocol_version_is_refused_clearly(agent: AgentServer) -> None:
    raw = Raw(agent.socket_path)
    raw.send(1, wire.Hello(wire.PROTOCOL_VERSION + 1, "future kiosk", "1-x"))
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


# ---------------------------------------------------------------------- PKCS#11 at the agent


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
    pins = Pins("864209", PIN)

    def signer(unblock_at: str) -> Pkcs11Signer:
        return Pkcs11Signer(module, label, unblock_at=unblock_at)

    readers.insert(A, VirtualHicosCard({"signature": user.cert_der}, kind="hpc"))
    caplog.set_level("DEBUG")
    with AgentServer(
        readers,
        server_name=SERVER,
        socket_path=short_dir / "a.sock",
        pkcs11=signer,
        pin_source=pins,
        notify=lines,
    ) as srv:
        with AgentBackend(srv.socket_path) as backend:
            logins = login_service(services, pki, backend)
            assert logins.read(A).identity.kind == CardKind.HPC
            with pytest.raises(WrongPin):
                logins.authenticate(A)
            first = logins.authenticate(A)
            assert first.needs_person_id is not None
            assert logins.bind(first.needs_person_id, user.person_id).state == LoginState.ACTIVE
    lines.wait_for("完成登入簽章")
    shown = "\n".join(lines) + caplog.text
    assert PIN not in shown and "864209" not in shown


def test_a_hicos_card_without_a_module_at_the_agent(
    pki: TestPki, readers: InProcessBackend, agent: AgentServer, client: AgentBackend
) -> None:
    user = pki.user("hpc")
    readers.insert(A, VirtualHicosCard({"signature": user.cert_der}, kind="hpc"))
    digest = hashlib.sha256(client.read_card(A).certificate).hexdigest()
    with pytest.raises(CardError, match="PKCS#11"):
        client.prove(A, digest, secrets.token_bytes(32), timeout=5)


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
    from smis_tui.cli.agent import handle_card_agent, remote_socket, server_host, ssh_command

    args = build_parser().parse_args(
        ["card-agent", "--socket", "/tmp/x.sock", "--server", "kiosk@smis.example.tw"]
    )
    assert args.handler is handle_card_agent and args.socket == Path("/tmp/x.sock")
    assert args.pin_from == "auto"
    with pytest.raises(SystemExit):  # --server is required: it goes into every proof
        build_parser().parse_args(["card-agent", "--socket", "/tmp/x.sock"])
    assert server_host("王小明@smis.example.tw") == "smis.example.tw"
    assert server_host("kiosk@[2001:db8::1]") == "2001:db8::1"
    assert server_host("smis.example.tw") == "smis.example.tw"
    remote = remote_socket(token="ab" * 16)
    assert remote == "/run/smis/agent/" + "ab" * 16 + ".sock"
    line = ssh_command(Path("/run/user/1000/smis-card-agent.sock"), "kiosk@server", remote)
    assert line == (
        f"ssh -o SetEnv=SMIS_CARD_AGENT={remote} "
        f"-R {remote}:/run/user/1000/smis-card-agent.sock kiosk@server"
    )
    assert remote_socket() != remote_socket()


@pytest.mark.parametrize("server", ["kiosk@", "kiosk@a\x1b[2Jb", "kiosk@" + "a" * 256])
def test_the_agent_will_not_start_with_a_server_name_a_proof_cannot_carry(
    server: str, short_dir: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "smis_tui.cli", "card-agent", "--socket", str(short_dir / "x")]
        + ["--server", server, "--pin-from", "terminal"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "伺服器名稱" in done.stderr and "\x1b" not in done.stderr
    assert not (short_dir / "x").exists()


# ---------------------------------------------------------------------- through real pcscd


@pytest.fixture
def pcsc_agent_server(short_dir: Path, lines: Lines, pins: Pins) -> Iterator[AgentServer]:
    pcscd_ctl()
    server = pcsc_agent(short_dir / "pcsc.sock", server_name=SERVER, pin_source=pins, notify=lines)
    with server:
        yield server


def test_login_through_the_agent_over_pcscd(
    services: Services,
    pki: TestPki,
    pcsc_agent_server: AgentServer,
    lines: Lines,
    pins: Pins,
) -> None:
    pins.pins = [WRONG_PIN, PIN]
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
            bind_on_first_remote_login(
                login_service(services, pki, backend), READER_0, user, account_id
            )
        finally:
            unplug(vcard, READER_0)
        wait_until(lambda: seen[-1] == (READER_0, False), what="the removal event over pcscd")
    lines.wait_for("完成登入簽章")


class StuckWhileSigning(CardWrapper):
    """A PIV card that does not answer GENERAL AUTHENTICATE until released."""

    def __init__(self, inner: VirtualPivCard) -> None:
        super().__init__(inner)
        self.signing = threading.Event()
        self.release = threading.Event()
        self.answered = threading.Event()

    def process(self, apdu: bytes) -> bytes:
        if apdu[1] == 0x87:
            self.signing.set()
            self.release.wait(10)
            self.answered.set()
        return self.inner.process(apdu)

    def let_go(self) -> None:
        """Answer the command pcscd still waits for, before the card is pulled out:
        vpcd pulled out from under a pending command can leave its reader unusable."""
        self.release.set()
        if self.signing.is_set():
            self.answered.wait(5)
            time.sleep(0.5)


def _controlling_terminal() -> None:
    """In the child: make its stdin (a pty) its controlling terminal, as a terminal
    window is for an agent started in it."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_agent_on_a_terminal_killed_mid_login_is_card_removed(
    services: Services, pki: TestPki, short_dir: Path
) -> None:
    """`smis-tui card-agent` as a staff member runs it: in a terminal (a pty), where the
    PIN is typed; killed while the card signs."""
    pcscd_ctl()
    path = short_dir / "child.sock"
    master, slave = pty.openpty()
    agent = subprocess.Popen(
        [sys.executable, "-m", "smis_tui.cli", "card-agent", "--socket", str(path)]
        + ["--server", f"kiosk@{SERVER}", "--pin-from", "terminal"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=_controlling_terminal,
    )
    os.close(slave)
    shown = bytearray()

    def read_terminal(until: bytes, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while until not in shown:
            assert time.monotonic() < deadline, shown.decode(errors="replace")
            if select.select([master], [], [], 0.1)[0]:
                try:
                    shown.extend(os.read(master, 4096))
                except OSError:
                    return

    card = StuckWhileSigning(piv_card(pki))
    vcard = VpcdCard(card)
    try:
        read_terminal("按 Ctrl-C 結束".encode())
        backend = AgentBackend(path, session_id="5-kill")
        logins = login_service(services, pki, backend)
        plug(vcard, READER_0)
        outcome: list[BaseException] = []

        def login() -> None:
            try:
                logins.authenticate(READER_0)
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=login)
        thread.start()
        read_terminal(PIN_PROMPT.encode())
        os.write(master, PIN.encode() + b"\r")
        assert card.signing.wait(15), "the card never got GENERAL AUTHENTICATE"
        os.kill(agent.pid, signal.SIGKILL)
        thread.join(5)
        assert not thread.is_alive()
        assert len(outcome) == 1 and isinstance(outcome[0], CardRemoved), outcome
        with pytest.raises(AgentUnavailable):
            backend.readers()
        backend.close()
    finally:
        if agent.poll() is None:
            agent.kill()
        agent.wait(10)
        card.let_go()
        with contextlib.suppress(OSError):
            while select.select([master], [], [], 0.1)[0]:
                chunk = os.read(master, 4096)
                if not chunk:
                    break
                shown.extend(chunk)
        os.close(master)
        unplug(vcard, READER_0)
    output = shown.decode(errors="replace")
    assert "SetEnv=SMIS_CARD_AGENT=/run/smis/agent/" in output
    assert f":{path} kiosk@{SERVER}" in output
    assert f"伺服器 {SERVER} 的工作階段 5-kill" in output
    assert f"要求以 {pki.user('moica').cn} 的卡片登入" in output
    assert PIN not in output  # typed without echo


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
        raw.flood(READER_1, count)
        with AgentBackend(pcsc_agent_server.socket_path) as backend:
            read = backend.read_card(READER_0)
            assert read.certificate == pki.user("moica").cert_der
            digest = hashlib.sha256(read.certificate).hexdigest()
            proof = backend.prove(READER_0, digest, secrets.token_bytes(32), timeout=20)
            assert proof.server_name == SERVER
        answers = raw.answers(count, timeout=60)
        assert len(answers) == count
        assert any(isinstance(m, wire.Failure) and m.name == "AgentBusy" for m in answers.values())
    finally:
        raw.close()
        unplug(first, READER_0)
        unplug(second, READER_1)
