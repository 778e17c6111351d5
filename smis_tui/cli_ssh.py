"""`smis-tui ssh-session`: the kiosk as the ForceCommand of an OpenSSH session.

One process per SSH session (sshd starts it), all sharing the PostgreSQL database of
the server's configuration. The card reader is on the staff member's own computer: the
card agent there (`smis-tui card-agent`) listens on a UNIX socket that the staff's
``ssh -R SERVER_PATH:AGENT_PATH`` forwards to SERVER_PATH on this server; the session
hands that path to the app as ``SMIS_CARD_AGENT`` (see docs/ssh.md).

Which path: ``SMIS_CARD_AGENT`` when the session has it (sent by the client with
``SetEnv``/``SendEnv`` and let through by the server's ``AcceptEnv SMIS_CARD_AGENT``),
otherwise :data:`DEFAULT_SOCKET` for the logged-in user. The path must be a UNIX
socket owned by this user (sshd creates forwarded sockets as the session's user, mode
0600), so a session never talks to another user's agent.

Without a forwarded socket the session still runs when the server itself has a card
reader (pcscd lists one); with neither it refuses with one line and exit code 2,
before anything is drawn. It runs the app in its ordinary (not kiosk) mode; the idle
timeout of the settings applies as everywhere.
"""

from __future__ import annotations

import argparse
import os
import pwd
import signal
import socket
import stat
import sys
import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "AGENT_ENV",
    "DEFAULT_SOCKET",
    "EXIT_NO_READER",
    "EXIT_NO_TERMINAL",
    "AgentSocket",
    "find_agent_socket",
    "prepare_terminal",
    "register",
]

AGENT_ENV = "SMIS_CARD_AGENT"
# Where the staff's `ssh -R` puts the agent's socket when the client sends no
# SMIS_CARD_AGENT: one fixed path per server user ({user} is the login name).
DEFAULT_SOCKET = "/tmp/smis-card-agent-{user}.sock"
DEFAULT_TERM = "xterm-256color"
EXIT_NO_READER = 2
EXIT_NO_TERMINAL = 3

NO_READER_MESSAGE = (
    "smis-tui：找不到讀卡機。本連線沒有轉送讀卡代理程式（card agent）的通訊端，"
    "伺服器上也沒有讀卡機。\n"
    "請在您的電腦上先執行 smis-tui card-agent，再以 docs/ssh.md 的 ssh -R 指令重新連線。"
)
NO_TERMINAL_MESSAGE = "smis-tui：本連線沒有終端機，請以 ssh -t 連線。"
# Terminals Textual cannot draw on; replaced by DEFAULT_TERM.
_UNUSABLE_TERMS = {"", "dumb", "unknown", "network"}


@dataclass(frozen=True)
class AgentSocket:
    path: Path
    source: str  # "SMIS_CARD_AGENT" or "default"


def _user_name(env: Mapping[str, str]) -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return env.get("USER") or env.get("LOGNAME") or str(os.getuid())


def _usable_socket(path: Path) -> bool:
    """A UNIX socket of this user that accepts a connection (sshd listens on it)."""
    try:
        info = path.lstat()
    except OSError:
        return False
    if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid():
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def find_agent_socket(env: Mapping[str, str]) -> AgentSocket | None:
    """The forwarded card agent's socket of this session, or None."""
    named = env.get(AGENT_ENV, "").strip()
    if named:
        candidate = AgentSocket(Path(named), AGENT_ENV)
    else:
        candidate = AgentSocket(Path(DEFAULT_SOCKET.format(user=_user_name(env))), "default")
    if not candidate.path.is_absolute():
        return None
    return candidate if _usable_socket(candidate.path) else None


def local_readers() -> list[str]:
    """The server's own readers (pcscd); none when pcscd is not there."""
    try:
        from card.errors import CardError
        from card.pcsc import PcscBackend
    except ImportError:  # pragma: no cover - pyscard is a dependency
        return []
    try:
        return PcscBackend().readers()
    except CardError:
        return []
    except Exception:
        return []


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
    prepare_terminal(env)
    agent = find_agent_socket(env)
    if agent is not None:
        env[AGENT_ENV] = str(agent.path)
    else:
        env.pop(AGENT_ENV, None)
        if not local_readers():
            print(NO_READER_MESSAGE, file=sys.stderr)
            return EXIT_NO_READER

    from smis_tui.app import SmisApp
    from smis_tui.boot import boot

    app = SmisApp(
        settings=settings,
        boot=lambda: boot(settings, demo=False),
        kiosk=False,
        started_at=started,
    )
    restore = _end_on_hangup(app)
    try:
        app.run()
    finally:
        restore()
    return app.return_code or 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `ssh-session`; its handler is called as ``handler(settings, args)``."""
    text = (
        "SSH 連線的 kiosk（sshd 的 ForceCommand）：使用由 ssh -R 轉送的讀卡代理程式，"
        "沒有代理程式也沒有本機讀卡機時拒絕啟動"
    )
    session = subparsers.add_parser("ssh-session", help=text, description=text)
    session.set_defaults(handler=cmd_ssh_session)
