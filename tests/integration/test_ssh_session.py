"""The kiosk over SSH, end to end with real parts only.

scripts/test-services.sh starts a private sshd on 127.0.0.1 whose ForceCommand is
`smis-tui ssh-session` of this checkout (SMIS_TEST_SSH_CONFIG: a client config for
host ``smis-test``), PostgreSQL and a private pcscd with vpcd readers. Here:

* the "staff computer" is this process: a virtual card in a vpcd reader of that pcscd,
  and the card agent (`smis-tui card-agent --socket PATH`) reading it through pcscd;
* the real `ssh` client runs in a tmux pane with ``-R SERVER_SOCKET:AGENT_SOCKET`` and
  ``SetEnv SMIS_CARD_AGENT=SERVER_SOCKET`` (plus, test-only, the session's database
  and data directory, which the test sshd accepts);
* the screen is read with `tmux capture-pane`, keys typed with `tmux send-keys`.

The server has no reader of its own (its sessions look for pcscd at a socket that does
not exist), so every card operation of the kiosk goes through ssh to the agent.
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
    """`smis-tui card-agent --socket PATH` on the staff side, reading pcscd."""

    def __init__(self, socket_path: Path, log_path: Path) -> None:
        self.socket_path = socket_path
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> CardAgent:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            smis_tui_command("card-agent", "--socket", str(self.socket_path)),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"card agent exited with {self.process.returncode}:\n{self.log_text()}")
            if self.socket_path.exists() and _connectable(self.socket_path):
                return self
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"card agent not listening on {self.socket_path}:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """Gone at once, as when the staff computer's agent crashes."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
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

    def open(self, name: str, command: Sequence[str], env: dict[str, str]) -> Pane:
        width, height = SIZE
        environment = [f"-e{key}={value}" for key, value in env.items()]
        self.run(
            "new-session", "-d", "-s", name, "-x", str(width), "-y", str(height),
            *environment, shlex.join(command),
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


def log_in(pane: Pane, server: KioskServer, user: str) -> str:
    demo = server.cards[user]
    pane.wait_for(demo.holder, timeout=40)  # type: ignore[attr-defined]
    pane.type_pin(demo.pin)  # type: ignore[attr-defined]
    return pane.wait_for(HOME_MARK, demo.holder, timeout=30)  # type: ignore[attr-defined]


# ---------------------------------------------------------------------- tests


def test_login_over_ssh_through_the_forwarded_card_agent(
    server: KioskServer, staff: Path, tmux: Tmux
) -> None:
    vcard = plugged(server, "moica", READER_0)
    tag = uuid.uuid4().hex[:8]
    try:
        with CardAgent(staff / "agent.sock", staff / "agent.log") as agent:
            pane = staff_terminal(
                tmux, "staff", server, agent, tag=tag, remote_socket=staff / "server.sock"
            )
            screen = log_in(pane, server, "moica")
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
        agent = CardAgent(staff / "agent.sock", staff / "agent.log").start()
        try:
            pane = staff_terminal(
                tmux, "staff", server, agent, tag=tag, remote_socket=staff / "server.sock"
            )
            demo = server.cards["moica"]
            pane.wait_for(demo.holder, timeout=40)  # type: ignore[attr-defined]
            pane.type_pin(demo.pin)  # type: ignore[attr-defined]
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
    agents = [CardAgent(staff / f"agent{i}.sock", staff / f"agent{i}.log") for i in range(2)]
    try:
        agents[0].start()
        pane_a = staff_terminal(
            tmux, "staff-a", server, agents[0], tag=tags[0], remote_socket=staff / "server0.sock"
        )
        log_in(pane_a, server, "moica")
        second = plugged(server, "hpc", READER_1)
        agents[1].start()
        pane_b = staff_terminal(
            tmux, "staff-b", server, agents[1], tag=tags[1], remote_socket=staff / "server1.sock"
        )
        screen_b = log_in(pane_b, server, "hpc")
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
        with CardAgent(staff / "agent.sock", staff / "agent.log") as agent:
            pane = staff_terminal(
                tmux,
                "staff",
                server,
                agent,
                tag=tag,
                remote_socket=staff / "server.sock",
                extra_env={"SMIS_IDLE_TIMEOUT_SECONDS": "6"},
            )
            log_in(pane, server, "moica")
            # Not kiosk mode: the staff member walked away from home, the idle
            # timeout ends the session (and ssh with it).
            screen = pane.wait_for("閒置逾時，連線已結束", timeout=30)
            assert HOME_MARK not in screen.split("閒置逾時")[-1]
            wait_gone(tag)
    finally:
        vcard.remove()  # type: ignore[attr-defined]
