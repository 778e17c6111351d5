"""The kiosk over SSH, end to end with real parts only.

scripts/test-services.sh starts a private sshd on 127.0.0.1 whose ForceCommand is
`smis-tui ssh-session` of this checkout (SMIS_TEST_SSH_CONFIG: a client config for
host ``smis-test``), PostgreSQL and a private pcscd with vpcd readers. Here:

* the "staff computer" is this process: a virtual card in a vpcd reader of that pcscd,
  and the card agent (`smis-tui card-agent --socket PATH --server smis-test`) in a
  tmux pane of its own, reading the card through pcscd and asking its PIN there;
* the real `ssh` client runs in another tmux pane with ``-R SERVER_SOCKET:AGENT_SOCKET``
  and ``SetEnv SMIS_CARD_AGENT=SERVER_SOCKET`` (plus, test-only, the session's database
  and data directory, which the test sshd accepts);
* the screens are read with `tmux capture-pane`, keys typed with `tmux send-keys`.

The server has no reader of its own (its sessions look for pcscd at a socket that does
not exist), so every card operation of the kiosk goes through ssh to the agent. A login
is the staff member's: Enter in the kiosk, the PIN typed at the agent's prompt; the
kiosk gets the card's login proof for server ``smis-test`` (the sshd's SetEnv
SMIS_SERVER_NAMES) and never the PIN.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

READER_0 = "Virtual PCD 00 00"
READER_1 = "Virtual PCD 00 01"
SIZE = (100, 30)
HOME_MARK = "已核准的權限"  # home's "granted permissions" section
INSERT_MARK = "請插入卡片"  # the login screen without a card
REFUSAL_MARK = "找不到讀卡機"  # ssh-session without agent and reader
PIN_PROMPT = "請在此輸入卡片密碼"  # the card agent's own PIN prompt
REMOTE_PIN_MARK = "請在您的電腦上輸入卡片密碼"  # the kiosk, waiting for it
# The host alias of SMIS_TEST_SSH_CONFIG: the name the agent puts in its login proofs.
SERVER_ALIAS = "smis-test"
REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------- services


def require_services() -> None:
    """Fail (under `make test` / CI) or skip (a bare `pytest`) without the services."""
    missing = [
        name
        for name in ("SMIS_TEST_SSH_CONFIG", "SMIS_TEST_PCSCD", "SMIS_TEST_POSTGRES_URL")
        if not os.environ.get(name)
    ]
    if not missing:
        for tool in ("ssh", "tmux"):
            if subprocess.run(["which", tool], capture_output=True).returncode != 0:
                missing.append(tool)
    if not missing:
        return
    text = f"SSH end-to-end services missing ({', '.join(missing)}): run `make test`"
    if os.environ.get("CI") or os.environ.get("SMIS_REQUIRE_POSTGRES"):
        pytest.fail(text)
    pytest.skip(text)


def smis_tui_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "smis_tui.cli", *args]


@dataclass
class KioskServer:
    """What the server's sessions use: a PostgreSQL database with the demo accounts
    and cards (`smis-tui demo init`), a data directory with the key, the demo PKI."""

    database_url: str
    data_dir: Path
    pki_dir: Path
    cards: dict[str, object] = field(default_factory=dict)  # holder key -> DemoCard

    def session_env(self) -> dict[str, str]:
        return {
            "DATABASE_URL": self.database_url,
            "SMIS_DATA_DIR": str(self.data_dir),
            "SMIS_CA_DIR": str(self.pki_dir / "ca"),
        }


def make_kiosk_server(admin_url: str, workdir: Path, template: str | None = None) -> KioskServer:
    """A fresh database on the PostgreSQL server of `admin_url` (copied from
    ``template`` when given, else built: schema, 5165 units), then the demo."""
    from models.db import close_database, open_database
    from models.migrate import upgrade
    from models.purpose import mark_demo_database
    from models.unit_data import load_generated_units
    from smis_tui.core.config import Settings
    from smis_tui.demo import create_demo
    from smis_tui.services import build_services
    from smis_tui.services.crypto import create_key_file
    from tests.conftest import _admin_execute, _pg_url

    name = f"smis_ssh_{uuid.uuid4().hex[:12]}"
    _admin_execute(
        admin_url, f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else "")
    )
    url = _pg_url(admin_url, name)
    settings = Settings(data_dir=workdir / "data", database_url=url)
    create_key_file(settings.resolved_key_file)
    open_database(url, settings.sqlite_path)
    try:
        if template is None:
            upgrade()
            load_generated_units()
        mark_demo_database()
        cards = create_demo(build_services(settings), workdir / "demo-pki")
    finally:
        close_database()
    return KioskServer(url, settings.data_dir, workdir / "demo-pki", {c.user: c for c in cards})


def drop_kiosk_server(admin_url: str, server: KioskServer) -> None:
    from tests.conftest import _admin_execute

    name = server.database_url.rsplit("/", 1)[1]
    _admin_execute(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# ---------------------------------------------------------------------- staff side


def vpcd_port(reader: str) -> int:
    base = int(os.environ.get("SMIS_VPCD_PORT", "35963"))
    return base + (1 if reader == READER_1 else 0)


class CardAgent:
    """`smis-tui card-agent --socket PATH --server smis-test` on the staff side, reading
    pcscd, in a tmux pane of its own: the staff member's terminal, where it asks the
    PIN."""

    def __init__(self, tmux: Tmux, name: str, socket_path: Path) -> None:
        self.tmux = tmux
        self.name = name
        self.socket_path = socket_path
        self.pane: Pane | None = None
        self.pid: int | None = None

    def start(self, timeout: float = 20.0) -> CardAgent:
        command = smis_tui_command(
            "card-agent",
            "--socket", str(self.socket_path),
            "--server", f"kiosk@{SERVER_ALIAS}",
            "--pin-from", "terminal",
        )  # fmt: skip
        self.pane = self.tmux.open(self.name, ["exec", *command], dict(os.environ), cwd=REPO)
        self.pid = int(self.tmux.run("display-message", "-p", "-t", self.name, "#{pane_pid}"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pane.dead()[0]:
                pytest.fail(f"card agent exited:\n{self.log_text()}")
            if self.socket_path.exists() and _connectable(self.socket_path):
                return self
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"card agent not listening on {self.socket_path}:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.pane.text() if self.pane is not None else ""

    def prompts(self) -> int:
        return self.log_text().count(PIN_PROMPT)

    def answer(self, pin: str, asked_before: int = 0, timeout: float = 30.0) -> str:
        """Wait for the agent's PIN prompt number ``asked_before + 1``, type ``pin``
        there; the request's line (which server and session ask) is returned."""
        deadline = time.monotonic() + timeout
        while self.prompts() <= asked_before:
            if time.monotonic() > deadline:
                pytest.fail(f"the agent never asked for the PIN:\n{self.log_text()}")
            time.sleep(0.1)
        assert self.pane is not None
        request = [line for line in self.log_text().splitlines() if "要求以" in line][-1]
        self.pane.type_pin(pin)
        return request

    def kill(self) -> None:
        """Gone at once, as when the staff computer's agent crashes."""
        self._signal(signal.SIGKILL)

    def _signal(self, number: int, timeout: float = 10.0) -> None:
        if self.pid is None or self.pane is None:
            return
        try:
            os.kill(self.pid, number)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while not self.pane.dead()[0] and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        if self.pane is not None and not self.pane.dead()[0]:
            self._signal(signal.SIGTERM)
            if not self.pane.dead()[0]:
                self.kill()

    def __enter__(self) -> CardAgent:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _connectable(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


# ---------------------------------------------------------------------- terminal


class Tmux:
    """A private tmux server (its own socket): panes are the staff's terminals."""

    def __init__(self, directory: Path) -> None:
        self.socket = directory / "tmux.sock"
        self.config = directory / "tmux.conf"
        self.config.write_text(
            "set -g remain-on-exit on\n"
            "set -g default-terminal tmux-256color\n"
            "set -g history-limit 200\n"
            "set -g status off\n"
        )

    def run(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            ["tmux", "-S", str(self.socket), "-f", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def open(
        self, name: str, command: Sequence[str], env: dict[str, str], cwd: Path | None = None
    ) -> Pane:
        width, height = SIZE
        environment = [f"-e{key}={value}" for key, value in env.items()]
        directory = ["-c", str(cwd)] if cwd is not None else []
        self.run(
            "new-session", "-d", "-s", name, "-x", str(width), "-y", str(height),
            *directory, *environment, shlex.join(command),
        )  # fmt: skip
        return Pane(self, name)

    def close(self) -> None:
        self.run("kill-server", check=False)


class Pane:
    def __init__(self, tmux: Tmux, name: str) -> None:
        self.tmux = tmux
        self.name = name

    def text(self) -> str:
        return self.tmux.run("capture-pane", "-p", "-J", "-S", "-", "-t", self.name, check=False)

    def dead(self) -> tuple[bool, int | None]:
        """Whether the pane's command ended, and its exit status once tmux knows it."""
        out = self.tmux.run(
            "display-message", "-p", "-t", self.name, "#{pane_dead} #{pane_dead_status}",
            check=False,
        ).split()  # fmt: skip
        if not out:
            return True, None
        if len(out) > 1 and out[1].isdigit():
            return out[0] == "1", int(out[1])
        # remain-on-exit's own line: "Pane is dead (status 2, <date>)"
        found = re.search(r"Pane is dead \(status (\d+)", self.text())
        return out[0] == "1", int(found.group(1)) if found else None

    def wait_for(self, *marks: str, timeout: float = 30.0, absent: Sequence[str] = ()) -> str:
        """The screen once it shows every mark (and none of ``absent``)."""
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.text()
            if all(m in screen for m in marks) and not any(a in screen for a in absent):
                return screen
            if self.dead()[0]:
                screen = self.text()
                if all(m in screen for m in marks):
                    return screen
                break
            time.sleep(0.1)
        pytest.fail(f"pane {self.name}: {marks} not shown within {timeout} s; screen:\n{screen}")

    def keys(self, *keys: str, literal: bool = False) -> None:
        self.tmux.run("send-keys", "-t", self.name, *(["-l"] if literal else []), *keys)

    def type_pin(self, pin: str) -> None:
        self.keys(pin, literal=True)
        self.keys("Enter")


def ssh_command(
    server: KioskServer,
    *,
    tag: str,
    remote_socket: Path | None = None,
    agent_socket: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> list[str]:
    """The staff's ssh line (docs/ssh.md), plus, test-only, the session's database."""
    env = server.session_env() | {"SMIS_TEST_SESSION": tag} | (extra_env or {})
    command = ["ssh", "-F", os.environ["SMIS_TEST_SSH_CONFIG"], "-t"]
    if remote_socket is not None and agent_socket is not None:
        command += ["-R", f"{remote_socket}:{agent_socket}"]
        env["SMIS_CARD_AGENT"] = str(remote_socket)
    command += ["-o", "SetEnv=" + " ".join(f"{k}={v}" for k, v in env.items())]
    return [*command, "smis-test"]


def staff_terminal(
    tmux: Tmux,
    name: str,
    server: KioskServer,
    agent: CardAgent,
    *,
    tag: str,
    remote_socket: Path,
    extra_env: dict[str, str] | None = None,
) -> Pane:
    """A staff member's terminal running the ssh line, with ``agent`` forwarded to
    ``remote_socket`` on the kiosk server."""
    command = ssh_command(
        server,
        tag=tag,
        remote_socket=remote_socket,
        agent_socket=agent.socket_path,
        extra_env=extra_env,
    )
    return tmux.open(name, command, dict(os.environ))


def session_pids(tag: str) -> list[int]:
    """The `smis-tui ssh-session` processes sshd started for sessions tagged ``tag``."""
    pids = []
    needle = f"SMIS_TEST_SESSION={tag}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if b"ssh-session" not in cmdline or b"python" not in cmdline:
                continue
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return sorted(pids)


def wait_gone(tag: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while session_pids(tag):
        if time.monotonic() > deadline:
            pytest.fail(f"session processes {session_pids(tag)} still running after {timeout} s")
        time.sleep(0.1)


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, postgres_template: str
) -> Iterator[KioskServer]:
    require_services()
    from tests.conftest import TEMPLATE_DB

    made = make_kiosk_server(postgres_template, tmp_path_factory.mktemp("kiosk"), TEMPLATE_DB)
    yield made
    drop_kiosk_server(postgres_template, made)


@pytest.fixture
def staff(tmp_path: Path) -> Iterator[Path]:
    """A short directory for the sockets (sun_path is at most 107 bytes)."""
    directory = Path(f"/tmp/smis-ssh-{uuid.uuid4().hex[:8]}")
    directory.mkdir(mode=0o700)
    yield directory
    subprocess.run(["rm", "-rf", str(directory)], check=False)


@pytest.fixture
def tmux(staff: Path) -> Iterator[Tmux]:
    terminal = Tmux(staff)
    yield terminal
    terminal.close()


def plugged(server: KioskServer, user: str, reader: str, card: object | None = None) -> object:
    from card.sim.vpcd import VpcdCard
    from smis_tui.demo import virtual_card

    demo = server.cards[user]
    vcard = VpcdCard(card or virtual_card(server.pki_dir, demo), vpcd_port(reader))  # type: ignore[arg-type]
    vcard.insert()
    assert vcard.wait_until_seen(10), f"pcscd did not take the card in {reader}"
    return vcard


def log_in(pane: Pane, agent: CardAgent, server: KioskServer, user: str) -> str:
    """Enter in the kiosk once it shows the card, the PIN at the agent's prompt: the
    kiosk's home screen."""
    demo = server.cards[user]
    pane.wait_for(demo.holder, timeout=40)  # type: ignore[attr-defined]
    asked = agent.prompts()
    pane.keys("Enter")
    pane.wait_for(REMOTE_PIN_MARK, timeout=30)
    agent.answer(demo.pin, asked)  # type: ignore[attr-defined]
    return pane.wait_for(HOME_MARK, demo.holder, timeout=30)  # type: ignore[attr-defined]


# ---------------------------------------------------------------------- tests


def test_login_over_ssh_through_the_forwarded_card_agent(
    server: KioskServer, staff: Path, tmux: Tmux
) -> None:
    vcard = plugged(server, "moica", READER_0)
    tag = uuid.uuid4().hex[:8]
    try:
        with CardAgent(tmux, "agent", staff / "agent.sock") as agent:
            pane = staff_terminal(
                tmux, "staff", server, agent, tag=tag, remote_socket=staff / "server.sock"
            )
            screen = log_in(pane, agent, server, "moica")
            assert "智慧防疫物資管理資訊系統" in screen
            assert len(session_pids(tag)) == 1
            # The staff member closes the terminal: sshd hangs up, the session ends.
            tmux.run("kill-session", "-t", "staff")
            wait_gone(tag)
    finally:
        vcard.remove()  # type: ignore[attr-defined]


def test_no_forwarded_agent_and_no_reader_is_refused(server: KioskServer) -> None:
    tag = uuid.uuid4().hex[:8]
    command = ssh_command(server, tag=tag)
    command.insert(command.index("-t"), "-t")  # -tt: a pty although stdin is a pipe
    done = subprocess.run(
        command, stdin=subprocess.PIPE, capture_output=True, timeout=60, check=False
    )
    output = (done.stdout + done.stderr).decode("utf-8", "replace")
    assert done.returncode == 2, output
    assert REFUSAL_MARK in output and "smis-tui card-agent" in output
    assert INSERT_MARK not in output and "\x1b[?1049h" not in output  # nothing drawn
    wait_gone(tag)


class StallsWhileSigning:
    """A PIV card that, asked to sign, holds the answer until released: the agent is
    killed meanwhile, in the middle of a login."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.signing = threading.Event()
        self.release = threading.Event()

    @property
    def atr(self) -> bytes:
        return self.inner.atr  # type: ignore[attr-defined,no-any-return]

    def power_off(self) -> None:
        self.inner.power_off()  # type: ignore[attr-defined]

    def reset(self) -> None:
        self.inner.reset()  # type: ignore[attr-defined]

    def process(self, apdu: bytes) -> bytes:
        if apdu[1] == 0x87 and not self.signing.is_set():
            self.signing.set()
            self.release.wait(15)
        return self.inner.process(apdu)  # type: ignore[attr-defined,no-any-return]


def test_agent_killed_mid_login_returns_to_the_login_screen(
    server: KioskServer, staff: Path, tmux: Tmux
) -> None:
    from smis_tui.demo import virtual_card

    card = StallsWhileSigning(virtual_card(server.pki_dir, server.cards["moica"]))  # type: ignore[arg-type]
    vcard = plugged(server, "moica", READER_0, card)
    tag = uuid.uuid4().hex[:8]
    try:
        agent = CardAgent(tmux, "agent", staff / "agent.sock").start()
        try:
            pane = staff_terminal(
                tmux, "staff", server, agent, tag=tag, remote_socket=staff / "server.sock"
            )
            demo = server.cards["moica"]
            pane.wait_for(demo.holder, timeout=40)  # type: ignore[attr-defined]
            pane.keys("Enter")
            agent.answer(demo.pin)  # type: ignore[attr-defined]
            assert card.signing.wait(30), "the login never reached the card's signature"
            agent.kill()
        finally:
            card.release.set()
            agent.stop()
        # The card is gone for the kiosk: the login is void and the login screen is
        # back, empty (a dialog may say why); never the home screen.
        screen = pane.wait_for(INSERT_MARK, timeout=30)
        assert HOME_MARK not in screen
        time.sleep(1.0)
        screen = pane.text()
        assert HOME_MARK not in screen and not pane.dead()[0], screen
        assert session_pids(tag), "the session ended instead of returning to the login screen"
        tmux.run("kill-session", "-t", "staff")
        wait_gone(tag)
    finally:
        vcard.remove()  # type: ignore[attr-defined]


def test_two_sessions_at_once_with_two_cards(server: KioskServer, staff: Path, tmux: Tmux) -> None:
    # One pcscd stands in for both staff computers: each agent sees both readers, so
    # card A goes in first and session A logs in before card B arrives; session B then
    # reads the newest card (B) and both sessions are up at the same time.
    first = plugged(server, "moica", READER_0)
    second: object | None = None
    tags = [uuid.uuid4().hex[:8], uuid.uuid4().hex[:8]]
    agents = [CardAgent(tmux, f"agent{i}", staff / f"agent{i}.sock") for i in range(2)]
    try:
        agents[0].start()
        pane_a = staff_terminal(
            tmux, "staff-a", server, agents[0], tag=tags[0], remote_socket=staff / "server0.sock"
        )
        log_in(pane_a, agents[0], server, "moica")
        second = plugged(server, "hpc", READER_1)
        agents[1].start()
        pane_b = staff_terminal(
            tmux, "staff-b", server, agents[1], tag=tags[1], remote_socket=staff / "server1.sock"
        )
        screen_b = log_in(pane_b, agents[1], server, "hpc")
        screen_a = pane_a.wait_for(HOME_MARK, server.cards["moica"].holder)  # type: ignore[attr-defined]
        assert server.cards["moica"].holder not in screen_b  # type: ignore[attr-defined]
        assert server.cards["hpc"].holder not in screen_a  # type: ignore[attr-defined]
        assert len(session_pids(tags[0])) == 1 and len(session_pids(tags[1])) == 1
        tmux.run("kill-session", "-t", "staff-a")
        tmux.run("kill-session", "-t", "staff-b")
        for tag in tags:
            wait_gone(tag)
    finally:
        for agent in agents:
            agent.stop()
        first.remove()  # type: ignore[attr-defined]
        if second is not None:
            second.remove()  # type: ignore[attr-defined]


def test_idle_timeout_ends_the_ssh_session(server: KioskServer, staff: Path, tmux: Tmux) -> None:
    vcard = plugged(server, "moica", READER_0)
    tag = uuid.uuid4().hex[:8]
    try:
        with CardAgent(tmux, "agent", staff / "agent.sock") as agent:
            pane = staff_terminal(
                tmux,
                "staff",
                server,
                agent,
                tag=tag,
                remote_socket=staff / "server.sock",
                extra_env={"SMIS_IDLE_TIMEOUT_SECONDS": "6"},
            )
            log_in(pane, agent, server, "moica")
            # Not kiosk mode: the staff member walked away from home, the idle
            # timeout ends the session (and ssh with it).
            screen = pane.wait_for("閒置逾時，連線已結束", timeout=30)
            assert HOME_MARK not in screen.split("閒置逾時")[-1]
            wait_gone(tag)
    finally:
        vcard.remove()  # type: ignore[attr-defined]


def database_text(url: str) -> str:
    """Every row of every table of the database at ``url``, as text."""
    import psycopg2

    connection = psycopg2.connect(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT quote_ident(table_name) FROM information_schema.tables"
                " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
            )
            tables = [row[0] for row in cursor.fetchall()]
            rows: list[str] = []
            for table in tables:
                cursor.execute(f"SELECT t::text FROM {table} t")  # noqa: S608 (names from the catalog)
                rows.extend(row[0] for row in cursor.fetchall())
        return "\n".join(rows)
    finally:
        connection.close()


def files_text(directory: Path) -> str:
    return "\n".join(
        path.read_bytes().decode("utf-8", "replace")
        for path in directory.rglob("*")
        if path.is_file()
    )


def test_the_pin_is_typed_at_the_staff_computer_and_never_reaches_the_server(
    server: KioskServer, staff: Path, tmux: Tmux
) -> None:
    """The PIN goes into the agent's own prompt on the staff computer. The kiosk shows
    where to type it and the session's id – the one the agent names – and hears only
    the card's login proof: no PIN, right or wrong, is ever drawn by the kiosk, written
    to its terminal, the server's logs, its data directory or its database."""
    import secrets

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from card.sim.virtual import VirtualPivCard

    before = database_text(server.database_url) + files_text(server.data_dir)
    pins = ["".join(secrets.choice("0123456789") for _ in range(8)) for _ in range(2)]
    while any(pin in before for pin in pins) or pins[0] == pins[1]:
        pins = ["".join(secrets.choice("0123456789") for _ in range(8)) for _ in range(2)]
    right, wrong = pins
    users = server.pki_dir / "users"
    certificate = x509.load_pem_x509_certificate((users / "moica.pem").read_bytes())
    key = serialization.load_pem_private_key((users / "moica.key.pem").read_bytes(), None)
    card = VirtualPivCard(certificate.public_bytes(serialization.Encoding.DER), key, right)  # type: ignore[arg-type]
    vcard = plugged(server, "moica", READER_0, card)
    tag = uuid.uuid4().hex[:8]
    kiosk_bytes = staff / "kiosk.out"
    try:
        with CardAgent(tmux, "agent", staff / "agent.sock") as agent:
            pane = staff_terminal(
                tmux, "staff", server, agent, tag=tag, remote_socket=staff / "server.sock"
            )
            # Everything the session writes to the staff member's terminal, byte for byte.
            tmux.run("pipe-pane", "-o", "-t", "staff", f"cat >> {shlex.quote(str(kiosk_bytes))}")
            holder = server.cards["moica"].holder  # type: ignore[attr-defined]
            screen = pane.wait_for(holder, timeout=40)
            assert "卡片密碼 (Password)" not in screen  # no PIN field in the kiosk
            pane.keys("Enter")
            waiting = pane.wait_for(REMOTE_PIN_MARK, timeout=30)
            request = agent.answer(wrong)
            assert f"伺服器 {SERVER_ALIAS} 的工作階段 " in request
            session = request.split("的工作階段 ", 1)[1].split("（", 1)[0]
            assert f"工作階段 {session}" in waiting  # the same session on both screens
            pane.wait_for("卡片密碼錯誤，尚可嘗試 2 次", timeout=30)
            pane.keys("Enter")
            pane.wait_for(REMOTE_PIN_MARK, timeout=30)
            agent.answer(right, asked_before=1)
            pane.wait_for(HOME_MARK, holder, timeout=30)
            assert card.tries_left == 3
            agent_screen = agent.log_text()
            tmux.run("kill-session", "-t", "staff")
            wait_gone(tag)
        kiosk_output = kiosk_bytes.read_bytes().decode("utf-8", "replace")
        assert holder in kiosk_output  # the pipe did record the kiosk
        server_side = {
            "the kiosk's terminal": kiosk_output,
            "the agent's terminal": agent_screen,  # not echoed there either
            "sshd's log": Path(os.environ["SMIS_TEST_SSHD_LOG"]).read_text(errors="replace"),
            "the data directory": files_text(server.data_dir),
            "the database": database_text(server.database_url),
        }
        for where, text in server_side.items():
            for pin in pins:
                assert pin not in text, f"a PIN in {where}"
    finally:
        vcard.remove()  # type: ignore[attr-defined]
