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
private is refused outright.

Without a forwarded socket the session still runs when the server itself has a card
reader (pcscd lists one); with neither it refuses with one line and exit code 2,
before anything is drawn. It runs the app in its ordinary (not kiosk) mode; the idle
timeout of the settings applies as everywhere.
"""

from __future__ import annotations

import argparse
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
    "smis-tui：找不到讀卡機。本連線沒有轉送讀卡代理程式（card agent）的通訊端，"
    "伺服器上也沒有讀卡機。\n"
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


def local_readers() -> list[str]:
    """The server's own readers (pcscd); none when pcscd is not there."""
    try:
        from card.errors import CardError
        from card.readers.pcsc import PcscBackend
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
    try:
        agent = find_agent_socket(env)
    except UnsafeSocket as exc:
        print(f"smis-tui：{one_line(str(exc))}", file=sys.stderr)
        return EXIT_NO_READER
    if agent is not None:
        env[AGENT_ENV] = str(agent)
    else:
        env.pop(AGENT_ENV, None)
        if not local_readers():
            print(NO_READER_MESSAGE, file=sys.stderr)
            return EXIT_NO_READER

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
