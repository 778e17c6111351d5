"""`smis-tui ssh-session`: the kiosk as the ForceCommand of an OpenSSH session.

One process per SSH session (sshd starts it), all sharing the PostgreSQL database of
the server's configuration. The card reader is on the staff member's own computer: the
card agent there (`smis-tui card-agent`) listens on a UNIX socket that the staff's
``ssh -R SERVER_PATH:AGENT_PATH`` forwards to SERVER_PATH on this server; the session
hands that path to the app as ``SMIS_CARD_AGENT`` (see docs/ssh.md).

Which path (the card agent's convention, smis_tui.cli.agent): the staff's ssh line
asks sshd to listen on a fresh ``/run/smis/agent/<token>.sock`` (``-R``) and tells the
session where with ``SetEnv SMIS_CARD_AGENT=…`` (the server lets it through with
``AcceptEnv SMIS_CARD_AGENT``). The path must be a UNIX socket owned by this user with
no group/other access (sshd creates forwarded sockets as the session's user with
``StreamLocalBindMask 0177``) that accepts a connection; one that exists but is not
private is refused outright. A session never uses the server's own readers: without
a forwarded agent it refuses with one line and exit code 2, before anything is drawn.

With one Unix account per staff member (docs/ssh.md), sshd runs
``ssh-session --run-as smis``: this process stays as the staff member, the *broker* of
card.agent.broker, and starts ``ssh-session --agent-fd 3`` as the service account
through a sudo rule that allows exactly that command line. Only the service account
reads the configuration, the data key and the database password; the kiosk reaches
the agent only through connections the broker opens and hands over.

The app runs in its ordinary (not kiosk) mode; the idle timeout of the settings
applies as everywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

from smis_tui.cli.units import one_line

__all__ = [
    "AGENT_ENV",
    "EXIT_NO_READER",
    "EXIT_NO_TERMINAL",
    "UnsafeSocket",
    "find_agent_socket",
    "prepare_terminal",
    "register",
]

AGENT_ENV = "SMIS_CARD_AGENT"
DEFAULT_TERM = "xterm-256color"
EXIT_NO_READER = 2
EXIT_NO_TERMINAL = 3

NO_READER_MESSAGE = (
    "smis-tui：找不到讀卡機。本連線沒有轉送讀卡代理程式（card agent）的通訊端；"
    "SSH 連線不使用伺服器上的讀卡機。\n"
    "請在您的電腦上先執行 smis-tui card-agent，再以 docs/ssh.md 的 ssh -R 指令重新連線。"
)
NO_TERMINAL_MESSAGE = "smis-tui：本連線沒有終端機，請以 ssh -t 連線。"
# Terminals Textual cannot draw on; replaced by DEFAULT_TERM.
_UNUSABLE_TERMS = {"", "dumb", "unknown", "network"}


class UnsafeSocket(Exception):
    """SMIS_CARD_AGENT names a socket that is not private to this user."""


def find_agent_socket(env: Mapping[str, str]) -> Path | None:
    """The forwarded card agent's socket of this session: None when none was forwarded
    (SMIS_CARD_AGENT unset, or nothing listening there); UnsafeSocket when the path is
    not a socket of this user alone."""
    from card.agent.client import check_socket
    from card.agent.protocol import AgentUnavailable, InsecureSocket

    named = env.get(AGENT_ENV, "").strip()
    if not named:
        return None
    path = Path(named)
    if not path.is_absolute():
        raise UnsafeSocket(f"{AGENT_ENV} 應為絕對路徑：{named}")
    try:
        check_socket(path)
    except InsecureSocket as exc:
        raise UnsafeSocket(str(exc)) from None
    except AgentUnavailable:
        return None
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(str(path))
    except OSError:
        return None
    finally:
        probe.close()
    return path


def prepare_terminal(env: MutableMapping[str, str]) -> None:
    """What Textual needs from an SSH session's environment: a terminal type it can draw
    on (sshd passes the client's TERM with the pty; a missing or dumb one becomes
    xterm-256color) and UTF-8 output whatever the server's locale."""
    if env.get("TERM", "").strip() in _UNUSABLE_TERMS:
        env["TERM"] = DEFAULT_TERM
    # The client's COLORTERM arrives only with AcceptEnv COLORTERM; without it, a
    # 256-colour TERM gives 256 colours. NO_COLOR from the client is honoured as is.
    if "UTF-8" not in (env.get("LC_ALL") or env.get("LC_CTYPE") or env.get("LANG") or "").upper():
        env["LC_ALL"] = "C.UTF-8"
    for stream in (sys.stdout, sys.__stdout__):
        if stream is not None and (stream.encoding or "").lower().replace("-", "") != "utf8":
            reconfigure = getattr(stream, "reconfigure", None)
            if reconfigure is not None:
                reconfigure(encoding="utf-8", errors="replace")


def _end_on_hangup(app: Any) -> Callable[[], None]:
    """The SSH connection went away (sshd sends SIGHUP; SIGTERM when stopped): end the
    app, as if the user had left; a second signal ends the process at once."""
    received: list[int] = []

    def handler(signum: int, frame: object) -> None:
        received.append(signum)
        if len(received) > 1:
            os._exit(128 + signum)
        try:
            app.exit(return_code=128 + signum)
        except Exception:
            os._exit(128 + signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGHUP, signal.SIGTERM)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def cmd_ssh_session(settings: Any, args: argparse.Namespace) -> int:
    started = time.perf_counter()
    env = os.environ
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print(NO_TERMINAL_MESSAGE, file=sys.stderr)
        return EXIT_NO_TERMINAL
    if env.get("TERM", "").strip() == "linux":
        from smis_tui.cli import CONSOLE_MESSAGE

        print(CONSOLE_MESSAGE, file=sys.stderr)
        return 1
    prepare_terminal(env)
    from smis_tui.services.card_runtime import AGENT_FD_ENV

    if args.agent_fd is not None:
        # Started by the broker through sudo, as the service account.
        env.pop(AGENT_ENV, None)
        env[AGENT_FD_ENV] = str(args.agent_fd)
    else:
        env.pop(AGENT_FD_ENV, None)
        try:
            agent = find_agent_socket(env)
        except UnsafeSocket as exc:
            print(f"smis-tui：{one_line(str(exc))}", file=sys.stderr)
            return EXIT_NO_READER
        if agent is None:
            env.pop(AGENT_ENV, None)
            print(NO_READER_MESSAGE, file=sys.stderr)
            return EXIT_NO_READER
        if args.run_as:
            return run_as_service_account(args.run_as, agent, args.config)
        env[AGENT_ENV] = str(agent)

    from smis_tui.boot import boot, hold_collector, prepare_textual

    hold_collector()  # until the app has booted: see smis_tui.boot
    prepare_textual()
    from smis_tui.app import SmisApp

    app = SmisApp(
        settings=settings,
        boot=lambda: boot(settings, demo=False),
        kiosk=False,
        started_at=started,
    )
    from smis_tui.crash import run_logging_crashes

    restore = _end_on_hangup(app)
    try:
        return run_logging_crashes(app, settings.language)
    finally:
        restore()


# What the kiosk started through sudo gets from the staff member's session: the terminal
# and the locale, nothing that could point it at other files (sudo's env_reset and the
# sudoers rule's env_keep, deploy/sudoers, narrow it again).
_PASSED_TO_SERVICE = (
    "TERM",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "COLORTERM",
    "NO_COLOR",
    "SSH_CONNECTION",
)
BROKER_FD = 3
SUDO = "/usr/bin/sudo"
NO_SUDO_RULE_MESSAGE = (
    "smis-tui：無法以服務帳號 {user} 啟動 kiosk：sudo 規則不允許（請系統管理者依 "
    "docs/ssh.md 設定 /etc/sudoers.d/smis-tui）。"
)


def service_command(program: str, config: str | None) -> list[str]:
    """The command line the sudoers rule allows, word for word."""
    command = [program, "ssh-session"]
    if config:
        command += ["--config", config]
    return [*command, "--agent-fd", str(BROKER_FD)]


def run_as_service_account(user: str, agent: Path, config: str | None) -> int:
    """Start the kiosk as ``user`` and broker its connections to ``agent`` until it ends."""
    import subprocess
    import threading

    from card.agent.broker import serve_broker

    program = sys.argv[0]
    if not os.path.isabs(program):
        print(
            "smis-tui：ssh-session --run-as 須以絕對路徑啟動（sshd 的 ForceCommand）",
            file=sys.stderr,
        )
        return 1
    command = service_command(program, config)
    sudo = [SUDO, "-n", "-u", user]
    env = {key: os.environ[key] for key in _PASSED_TO_SERVICE if key in os.environ}
    env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
    allowed = subprocess.run([*sudo, "-l", *command], env=env, capture_output=True, check=False)
    if allowed.returncode != 0:
        print(NO_SUDO_RULE_MESSAGE.format(user=user), file=sys.stderr)
        return 1
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)

    def channel_as_fd_3() -> None:
        # In the child before exec: the channel becomes descriptor 3, the one
        # descriptor besides the terminal that survives exec (every other is
        # close-on-exec) and sudo's -C 4.
        if theirs.fileno() == BROKER_FD:
            os.set_inheritable(BROKER_FD, True)
        else:
            os.dup2(theirs.fileno(), BROKER_FD)

    try:
        child = subprocess.Popen(
            [*sudo, "-C", str(BROKER_FD + 1), "--", *command],
            env=env,
            close_fds=False,
            preexec_fn=channel_as_fd_3,
        )
    finally:
        theirs.close()
    broker = threading.Thread(target=serve_broker, args=(ours, agent), daemon=True)
    broker.start()

    def forward(signum: int, frame: object) -> None:
        # The connection went away (SIGHUP) or the session is stopped: sudo passes it on
        # (and, running as root, may refuse ours: it hears the terminal's hang-up too).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            child.send_signal(signum)

    for sig in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, forward)
    # Not ignored (that would be inherited): the kiosk reads Ctrl-C as a key.
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    try:
        code = child.wait()
    finally:
        ours.close()
    return code if code >= 0 else 128 - code


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `ssh-session`; its handler is called as ``handler(settings, args)``."""
    text = (
        "SSH 連線的 kiosk（sshd 的 ForceCommand）：使用由 ssh -R 轉送的讀卡代理程式，"
        "沒有轉送代理程式時拒絕啟動（不使用伺服器上的讀卡機）"
    )
    session = subparsers.add_parser("ssh-session", help=text, description=text)
    session.set_defaults(handler=cmd_ssh_session)
    session.add_argument(
        "--run-as",
        metavar="USER",
        help="以服務帳號 USER 執行 kiosk（經 sudo；多位員工各有 Unix 帳號時，見 docs/ssh.md）",
    )
    session.add_argument(
        "--config",
        metavar="PATH",
        help="設定檔（--run-as 時交給以服務帳號執行的 kiosk）",
    )
    session.add_argument("--agent-fd", type=int, metavar="N", help=argparse.SUPPRESS)
