"""The documented multi-user SSH server, with real Unix accounts (docs/ssh.md).

A private sshd on 127.0.0.1 runs docs/sshd_config.snippet and sudo runs
docs/sudoers.snippet, both as published except for their paths and names: two staff
members with Unix accounts of their own in a staff group, and a service account that
alone may read the configuration (with the database password), the data key and the
data directory. The kiosk is this checkout's wheel, installed as an operator installs
it. Each staff member runs their own card agent as themselves and logs in with their
own card through their own ssh; then each is shown to be unable to read the key, the
configuration, the database (as the kiosk's role or as the superuser, over TCP, through
PgBouncer or over the UNIX socket) and the other's agent socket, and the kiosk's
database role to be unable to change the schema.

Needs root (to make the accounts) and the services of scripts/test-services.sh.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.test_ssh_session import (
    HOME_MARK,
    PIN_PROMPT,
    READER_0,
    READER_1,
    REFUSAL_MARK,
    REMOTE_PIN_MARK,
    KioskServer,
    Pane,
    Tmux,
    drop_kiosk_server,
    make_kiosk_server,
    plugged,
    require_services,
)
from tests.wheel_install import Installed

REPO = Path(__file__).resolve().parents[2]
STAFF_GROUP = "smistest-staff"
SERVICE_USER = "smistest-svc"
STAFF = ("smistest-a", "smistest-b")
APP_ROLE = "smistest_app"
SERVER_NAME = "smis-mu"  # the staff's host alias for the server: in every login proof
SUDOERS = Path("/etc/sudoers.d/smistest_multiuser")  # no dot: sudo skips such names


def sh(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{shlex.join(args)}: {done.stdout}{done.stderr}")
    return done


def as_user(user: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``args`` run as the Unix account ``user``, with a bare environment."""
    environment = [f"{key}={value}" for key, value in env.items()]
    return sh("runuser", "-u", user, "--", "env", "-i", "PATH=/usr/bin:/bin", *environment,
              *args, check=False)  # fmt: skip


def remove_accounts() -> None:
    for user in (*STAFF, SERVICE_USER):
        sh("pkill", "-KILL", "-u", user, check=False)  # whatever a failed run left
        sh("userdel", "--force", user, check=False)
    sh("groupdel", STAFF_GROUP, check=False)
    SUDOERS.unlink(missing_ok=True)


def in_terminal_as(user: str, *args: str) -> list[str]:
    """``args`` as ``user`` in the terminal it is started in: setpriv, not runuser or
    su, which start commands in a session of their own (so closing the terminal
    would not end them, and the hang-up an SSH session sees would not be tested)."""
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--",
            "env", "-i", "PATH=/usr/bin:/bin", *args]  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def render(text: str, site: Site) -> str:
    """A published snippet with this site's paths and names in place of the server's."""
    return (
        text.replace("/opt/smis-tui/bin/smis-tui", site.program)
        .replace("/etc/smis-tui/config.toml", str(site.config))
        .replace("--run-as smis ", f"--run-as {SERVICE_USER} ")
        .replace("(smis)", f"({SERVICE_USER})")
        .replace("smis-staff", STAFF_GROUP)
    )


@dataclass
class Site:
    root: Path
    installed: Installed
    server: KioskServer
    admin_url: str
    app_url: str
    config: Path
    data_dir: Path
    forward_dir: Path
    port: int = 0
    sshd: subprocess.Popen[bytes] | None = None
    homes: dict[str, Path] = field(default_factory=dict)

    @property
    def program(self) -> str:
        return self.installed.bin("smis-tui")

    @property
    def key_file(self) -> Path:
        return self.data_dir / "smis.key"

    def ssh_config(self, user: str) -> Path:
        return self.homes[user] / ".ssh" / "config"


def make_site(root: Path, installed: Installed, admin_url: str) -> Site:
    from tests.conftest import TEMPLATE_DB, _admin_execute, _pg_url

    sh("groupadd", STAFF_GROUP)
    sh("useradd", "--system", "--no-create-home", "--home-dir", str(root / "var"),
       "--shell", "/usr/sbin/nologin", SERVICE_USER)  # fmt: skip
    kiosk = root / "kiosk"
    kiosk.mkdir(mode=0o755)
    server = make_kiosk_server(admin_url, kiosk, TEMPLATE_DB)
    # The trusted CAs and their CRLs: readable by the service account, as in /etc.
    for name in ("ca", "crl"):
        sh("chmod", "-R", "a+rX", str(server.pki_dir / name))
    server.pki_dir.chmod(0o711)
    # The data directory and its key: the service account's alone.
    data_dir = root / "var"
    data_dir.mkdir(mode=0o700)
    shutil.move(server.data_dir / "smis.key", data_dir / "smis.key")
    (data_dir / "smis.key").chmod(0o600)
    sh("chown", "-R", f"{SERVICE_USER}:{SERVICE_USER}", str(data_dir))
    # The kiosk's database role: rows only, no schema, with a password of its own.
    password = secrets.token_hex(16)
    database = server.database_url.rsplit("/", 1)[1]
    _admin_execute(admin_url, f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{password}'")
    import psycopg2

    with psycopg2.connect(_pg_url(admin_url, database)) as conn, conn.cursor() as cursor:
        for grant in (
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
            f"GRANT CONNECT ON DATABASE {database} TO {APP_ROLE}",
            f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {APP_ROLE}",
            f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}",
        ):
            cursor.execute(grant)
    conn.close()
    port = admin_url.rsplit(":", 1)[1].split("/", 1)[0]
    app_url = f"postgresql://{APP_ROLE}:{password}@127.0.0.1:{port}/{database}"
    etc = root / "etc"
    etc.mkdir(mode=0o755)
    config = etc / "config.toml"
    config.write_text(
        f'data_dir = "{data_dir}"\n'
        f'database_url = "{app_url}"\n'
        f'ca_dir = "{server.pki_dir / "ca"}"\n'
        f'server_names = ["{SERVER_NAME}"]\n',
        encoding="utf-8",
    )
    config.chmod(0o600)
    sh("chown", f"{SERVICE_USER}:{SERVICE_USER}", str(config))
    forward_dir = root / "agent"
    forward_dir.mkdir()
    forward_dir.chmod(0o1733)  # docs/ssh.md's /run/smis/agent
    return Site(root, installed, server, admin_url, app_url, config, data_dir, forward_dir)


def add_staff(site: Site, user: str) -> None:
    home = site.root / "home" / user
    home.parent.mkdir(mode=0o755, exist_ok=True)
    sh("useradd", "--create-home", "--home-dir", str(home), "--shell", "/bin/sh",
       "--groups", STAFF_GROUP, user)  # fmt: skip
    sh("usermod", "-p", "*", user)  # no password, but not locked: keys only
    site.homes[user] = home
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ssh_dir / "id_ed25519"))
    shutil.copy(ssh_dir / "id_ed25519.pub", ssh_dir / "authorized_keys")
    (ssh_dir / "config").write_text(
        f"Host {SERVER_NAME}\n"
        f"    HostName 127.0.0.1\n    Port {site.port}\n    User {user}\n"
        f"    IdentityFile {ssh_dir / 'id_ed25519'}\n    IdentitiesOnly yes\n"
        "    StrictHostKeyChecking no\n    UserKnownHostsFile /dev/null\n    LogLevel ERROR\n"
    )
    (home / "run").mkdir(mode=0o700)
    sh("chown", "-R", f"{user}:{user}", str(home))


def start_sshd(site: Site) -> None:
    directory = site.root / "sshd"
    directory.mkdir(mode=0o700)
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / "host_ed25519"))
    snippet = render((REPO / "docs" / "sshd_config.snippet").read_text(encoding="utf-8"), site)
    snippet = snippet.replace("/run/smis/agent", str(site.forward_dir))
    config = directory / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1:{site.port}\n"
        f"HostKey {directory / 'host_ed25519'}\n"
        f"PidFile {directory / 'sshd.pid'}\n"
        "AuthorizedKeysFile .ssh/authorized_keys\n"
        f"AllowGroups {STAFF_GROUP}\n"
        "UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin no\nPrintMotd no\nPrintLastLog no\nUseDNS no\nLogLevel VERBOSE\n"
        # The server has readers of its own (the test pcscd, with cards in it): a
        # session must never use them.
        f"SetEnv PCSCLITE_CSOCK_NAME={os.environ.get('PCSCLITE_CSOCK_NAME', '')}\n" + snippet
    )
    sh("/usr/sbin/sshd", "-t", "-f", str(config))
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    site.sshd = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-f", str(config), "-E", str(directory / "sshd.log")],
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", site.port)) == 0:
                return
        time.sleep(0.05)
    pytest.fail(f"sshd did not listen:\n{(directory / 'sshd.log').read_text()}")


def install_sudo_rule(site: Site) -> None:
    rule = render((REPO / "docs" / "sudoers.snippet").read_text(encoding="utf-8"), site)
    staged = site.root / "sudoers"
    staged.write_text(rule)
    staged.chmod(0o440)
    sh("visudo", "-cf", str(staged))
    shutil.copy(staged, SUDOERS)
    SUDOERS.chmod(0o440)


@pytest.fixture(scope="module")
def site(installed_wheel: Installed, postgres_template: str) -> Iterator[Site]:
    require_services()
    if os.geteuid() != 0 or shutil.which("sudo") is None:
        text = "the multi-user SSH test needs root and sudo (make test installs sudo)"
        if os.environ.get("CI") or os.environ.get("SMIS_REQUIRE_POSTGRES"):
            pytest.fail(text)
        pytest.skip(text)
    remove_accounts()  # what an interrupted run left
    root = Path(tempfile.mkdtemp(prefix="smis-mu-", dir="/tmp"))
    root.chmod(0o755)
    made: Site | None = None
    try:
        made = make_site(root, installed_wheel, postgres_template)
        made.port = free_port()
        for user in STAFF:
            add_staff(made, user)
        install_sudo_rule(made)
        start_sshd(made)
        yield made
    finally:
        if made is not None:
            if made.sshd is not None:
                os.killpg(made.sshd.pid, 15)
                made.sshd.wait(10)
            drop_kiosk_server(postgres_template, made.server)
        from tests.conftest import _admin_execute

        _admin_execute(postgres_template, f"DROP ROLE IF EXISTS {APP_ROLE}")
        remove_accounts()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def tmux(site: Site) -> Iterator[Tmux]:
    directory = Path(tempfile.mkdtemp(prefix="smis-mu-tmux-"))
    terminal = Tmux(directory)
    yield terminal
    terminal.close()
    shutil.rmtree(directory, ignore_errors=True)


class StaffAgent:
    """A staff member's `smis-card-agent`, run as their own Unix account from the
    installed wheel, in a tmux pane (their terminal, where it asks the PIN)."""

    def __init__(self, site: Site, tmux: Tmux, user: str) -> None:
        self.site = site
        self.tmux = tmux
        self.user = user
        self.socket_path = site.homes[user] / "run" / "agent.sock"
        self.pane: Pane | None = None

    def start(self) -> StaffAgent:
        env = {
            "PCSCLITE_CSOCK_NAME": os.environ.get("PCSCLITE_CSOCK_NAME", ""),
            "HOME": str(self.site.homes[self.user]),
            "LANG": "C.UTF-8",
        }
        command = in_terminal_as(
            self.user,
            "TERM=xterm",
            *(f"{key}={value}" for key, value in env.items() if value),
            self.site.installed.bin("smis-card-agent"),
            "--socket", str(self.socket_path),
            "--server", f"{self.user}@{SERVER_NAME}",
            "--pin-from", "terminal",
        )  # fmt: skip
        self.pane = self.tmux.open(f"agent-{self.user}", ["exec", *command], {})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.socket_path.exists():
                return self
            if self.pane.dead()[0]:
                break
            time.sleep(0.05)
        pytest.fail(f"agent of {self.user} did not listen:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.pane.text() if self.pane is not None else ""

    def prompts(self) -> int:
        return self.log_text().count(PIN_PROMPT)

    def answer(self, pin: str, asked_before: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.prompts() <= asked_before:
            if time.monotonic() > deadline:
                pytest.fail(f"the agent never asked for the PIN:\n{self.log_text()}")
            time.sleep(0.1)
        assert self.pane is not None
        self.pane.type_pin(pin)


def open_session(site: Site, tmux: Tmux, agent: StaffAgent, forwarded: Path) -> Pane:
    """The staff member's ssh line of docs/ssh.md, run as their Unix account."""
    ssh = [
        "ssh", "-F", str(site.ssh_config(agent.user)), "-t",
        "-o", f"SetEnv=SMIS_CARD_AGENT={forwarded}",
        "-R", f"{forwarded}:{agent.socket_path}",
        SERVER_NAME,
    ]  # fmt: skip
    command = in_terminal_as(agent.user, "TERM=xterm-256color", "LANG=C.UTF-8",
                             f"HOME={site.homes[agent.user]}", *ssh)  # fmt: skip
    return tmux.open(f"ssh-{agent.user}", command, {})


def log_in(site: Site, pane: Pane, agent: StaffAgent, card: str) -> str:
    demo = site.server.cards[card]
    pane.wait_for(demo.holder, timeout=60)  # type: ignore[attr-defined]
    asked = agent.prompts()
    pane.keys("Enter")
    pane.wait_for(REMOTE_PIN_MARK, timeout=30)
    agent.answer(demo.pin, asked)  # type: ignore[attr-defined]
    return pane.wait_for(HOME_MARK, demo.holder, timeout=30)  # type: ignore[attr-defined]


def processes(needle: str) -> dict[int, int]:
    """pid → uid of the smis-tui processes whose command line holds ``needle``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            words = (entry / "cmdline").read_bytes().split(b"\0")
            if Path(words[0].decode()).name == "sudo":  # sudo's own processes, as root
                continue
            if b"ssh-session" in words and needle.encode() in words:
                found[int(entry.name)] = (entry / "status").stat().st_uid
        except OSError:
            continue
    return found


def uid(user: str) -> int:
    return pwd.getpwnam(user).pw_uid


def connect_probe(path: Path) -> str:
    return (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n"
        f"    s.connect({str(path)!r})\n"
        "    print('CONNECTED')\n"
        "except OSError as exc:\n"
        "    print(type(exc).__name__)\n"
    )


def database_probe(url: str) -> str:
    return (
        "import psycopg2\n"
        "try:\n"
        f"    psycopg2.connect({url!r}, connect_timeout=5).close()\n"
        "    print('CONNECTED')\n"
        "except psycopg2.OperationalError as exc:\n"
        "    print('REFUSED', str(exc).strip().splitlines()[0])\n"
    )


def test_two_staff_members_log_in_as_themselves_and_reach_nothing_of_the_other(
    site: Site, tmux: Tmux
) -> None:
    python = site.installed.bin("python")
    forwarded = {user: site.forward_dir / f"{uuid.uuid4().hex}.sock" for user in STAFF}
    agents = {user: StaffAgent(site, tmux, user) for user in STAFF}
    cards = {STAFF[0]: "moica", STAFF[1]: "hpc"}
    first = plugged(site.server, cards[STAFF[0]], READER_0)
    second: object | None = None
    try:
        # One pcscd stands in for both staff computers: A logs in before B's card is in.
        agents[STAFF[0]].start()
        pane_a = open_session(site, tmux, agents[STAFF[0]], forwarded[STAFF[0]])
        log_in(site, pane_a, agents[STAFF[0]], cards[STAFF[0]])
        second = plugged(site.server, cards[STAFF[1]], READER_1)
        agents[STAFF[1]].start()
        pane_b = open_session(site, tmux, agents[STAFF[1]], forwarded[STAFF[1]])
        screen_b = log_in(site, pane_b, agents[STAFF[1]], cards[STAFF[1]])
        screen_a = pane_a.wait_for(HOME_MARK)
        assert site.server.cards[cards[STAFF[0]]].holder not in screen_b  # type: ignore[attr-defined]
        assert site.server.cards[cards[STAFF[1]]].holder not in screen_a  # type: ignore[attr-defined]

        # Each session: the staff member's broker, and the kiosk as the service account.
        brokers = processes("--run-as")
        kiosks = processes("--agent-fd")
        assert sorted(brokers.values()) == sorted(uid(user) for user in STAFF)
        assert list(kiosks.values()) == [uid(SERVICE_USER)] * 2

        for user in STAFF:
            other = STAFF[1] if user == STAFF[0] else STAFF[0]
            # The key, the configuration (database password) and the data: not theirs.
            for path in (site.key_file, site.config, site.data_dir / "smis.key"):
                read = as_user(user, "cat", str(path))
                assert read.returncode != 0 and "Permission denied" in read.stderr, path
            # The database: neither the kiosk's role nor the superuser, by any way in.
            admin_password = site.admin_url.split(":")[2].split("@")[0]
            passwordless = [
                site.app_url.replace(site.app_url.split("@")[0], f"postgresql://{APP_ROLE}"),
                site.admin_url.replace(f":{admin_password}@", "@"),
                os.environ["SMIS_TEST_PGBOUNCER_URL"].replace(f":{admin_password}@", "@"),
            ]
            for url in passwordless:
                probe = as_user(user, python, "-c", database_probe(url))
                assert probe.stdout.startswith("REFUSED"), (url, probe.stdout, probe.stderr)
            # The other's forwarded socket and the other's agent socket.
            for path in (forwarded[other], agents[other].socket_path):
                probe = as_user(user, python, "-c", connect_probe(path))
                assert probe.stdout.strip() in {"PermissionError", "FileNotFoundError"}, probe
        # Nor can the service account (every session's kiosk) open a staff socket: a
        # kiosk reaches its own agent only through its broker.
        for user in STAFF:
            probe = as_user(SERVICE_USER, python, "-c", connect_probe(forwarded[user]))
            assert probe.stdout.strip() == "PermissionError", probe

        tmux.run("kill-session", "-t", f"ssh-{STAFF[0]}")
        tmux.run("kill-session", "-t", f"ssh-{STAFF[1]}")
        deadline = time.monotonic() + 20
        while processes("--agent-fd") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes("--agent-fd") == {}, "a kiosk outlived its SSH connection"
    finally:
        for agent in agents.values():
            if agent.pane is not None:
                tmux.run("kill-session", "-t", agent.pane.name, check=False)
        first.remove()  # type: ignore[attr-defined]
        if second is not None:
            second.remove()  # type: ignore[attr-defined]


def test_the_kiosk_role_reads_and_writes_rows_but_cannot_change_the_schema(site: Site) -> None:
    import psycopg2

    with psycopg2.connect(site.app_url, connect_timeout=5) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM account")
        assert cursor.fetchone()[0] > 0  # type: ignore[index]
    for statement in ("DROP TABLE audit_event", "CREATE TABLE stolen (x int)", "TRUNCATE account"):
        conn = psycopg2.connect(site.app_url, connect_timeout=5)
        try:
            with pytest.raises(psycopg2.errors.InsufficientPrivilege), conn.cursor() as cursor:
                cursor.execute(statement)
        finally:
            conn.rollback()
            conn.close()


def test_a_session_without_a_forwarded_agent_never_uses_the_servers_readers(
    site: Site, tmux: Tmux
) -> None:
    # The server's own pcscd has a card in a reader; the session must not offer it.
    card = plugged(site.server, "moica", READER_0)
    try:
        user = STAFF[0]
        command = in_terminal_as(user, "TERM=xterm-256color", f"HOME={site.homes[user]}",
                                 "ssh", "-F", str(site.ssh_config(user)), "-t", SERVER_NAME)  # fmt: skip
        pane = tmux.open("ssh-no-agent", command, {})
        screen = pane.wait_for(REFUSAL_MARK, timeout=30)
        assert "SSH 連線不使用伺服器上的讀卡機" in screen
        assert processes("--agent-fd") == {}
    finally:
        card.remove()  # type: ignore[attr-defined]
