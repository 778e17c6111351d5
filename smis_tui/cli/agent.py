"""`smis-tui card-agent`: the card agent on a remote staff member's own computer.

It serves the local card readers (pcscd through pyscard) on a private UNIX socket
(mode 0600, in ``$XDG_RUNTIME_DIR`` or a 0700 directory under /tmp) and prints the one
``ssh`` command that forwards it to the kiosk server:

    ssh -o SetEnv=SMIS_CARD_AGENT=/run/smis/agent/<token>.sock \
        -R /run/smis/agent/<token>.sock:$XDG_RUNTIME_DIR/smis-card-agent.sock kiosk@server

How the server finds the socket (the choice made here): the staff side picks a fresh
random ``<token>`` (128 bits) each time the agent starts, asks sshd to listen on
``/run/smis/agent/<token>.sock`` (``-R``) and tells the session where it is with
``SetEnv SMIS_CARD_AGENT=…``; `smis-tui ssh-session` (cli_ssh) passes it on and the
kiosk (smis_tui.services.card_runtime.runtime_for) uses the agent when
``SMIS_CARD_AGENT`` is set. A fixed per-user path would collide when one account has
two sessions, and sshd cannot expand %-tokens in a remote forwarding path (ssh expands
them on the client, where the server's view is unknown). The kiosk refuses the socket
unless it is a socket owned by the session's user with no group/other access and the
process behind it runs as that user (card.agent.client.check_socket), so pointing
SMIS_CARD_AGENT elsewhere gains nothing.

What the server's sshd needs (docs/sshd_config.snippet):

    AcceptEnv SMIS_CARD_AGENT
    AllowStreamLocalForwarding remote
    StreamLocalBindMask 0177        # the forwarded socket is created 0600 (the default)
    StreamLocalBindUnlink yes       # a stale socket of an earlier session is replaced

and a directory ``/run/smis/agent`` with mode 1733 owned by root (tmpfiles.d:
``d /run/smis/agent 1733 root root -``): every user can create a socket there, nobody
can list it or remove another user's. ``--remote-dir`` picks another directory.
OpenSSH 7.8 or newer on the staff side (``SetEnv``). Staff members should have their
own Unix accounts: processes of one account can always read each other's environment.

The server can ask the agent for the readers, the certificate on a card (read here
with SELECT / READ BINARY / GET DATA / GET RESPONSE only) and a login proof: the
agent shows which server session asks to log in with whose card, takes the PIN on this
computer (this terminal, or a ``pinentry`` dialog) and has the card sign a message it
builds from the server name given with ``--server``, the session id and the server's
nonce (card.agent.proof). No PIN and no signature over bytes the server chose ever
leaves this computer. For HiCOS cards (自然人憑證, 醫事人員卡) it runs the card vendor's
PKCS#11 module here (``--pkcs11-module`` or ``SMIS_PKCS11_MODULE``).

`smis-card-agent` is the same command on its own: it needs neither the kiosk's UI nor
its database driver (``pip install smis-tui`` without the ``kiosk`` extra).
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from smis_tui.cli.units import clean, one_line

__all__ = ["REMOTE_DIR", "main", "register", "remote_socket", "server_host", "ssh_command"]

# Where the forwarded socket goes on the server (sshd creates it as the session's user).
REMOTE_DIR = "/run/smis/agent"


def remote_socket(remote_dir: str = REMOTE_DIR, token: str | None = None) -> str:
    """A fresh path on the server for the forwarded socket."""
    import secrets  # here: with hashlib and hmac, a few ms of every kiosk start

    return f"{remote_dir.rstrip('/')}/{token or secrets.token_hex(16)}.sock"


def server_host(server: str) -> str:
    """The host part of ``USER@HOST`` (the whole text when there is no ``@``), without
    the brackets of an IPv6 address: the server name that goes into every proof."""
    host = server.rpartition("@")[2].strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host


def ssh_command(local_socket: Path, server: str, remote: str) -> str:
    """``ssh -o SetEnv=SMIS_CARD_AGENT=REMOTE -R REMOTE:LOCAL SERVER``."""
    return " ".join(
        [
            "ssh",
            "-o",
            shlex.quote(f"SetEnv=SMIS_CARD_AGENT={remote}"),
            "-R",
            shlex.quote(f"{remote}:{local_socket}"),
            shlex.quote(server),
        ]
    )


DESCRIPTION = (
    "讀卡代理程式：以 UNIX socket 提供本機讀卡機給 kiosk 伺服器（經由 ssh -R 轉送）。"
    "伺服器只能讀取卡片憑證，並請您在本機輸入卡片密碼登入；密碼不會送到伺服器，"
    "卡片只簽署本程式以伺服器名稱與工作階段編號組成的登入訊息。"
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `card-agent`; the handler is called as ``handler(settings, args)``."""
    agent = subparsers.add_parser(
        "card-agent",
        help="在工作人員電腦上啟動讀卡代理程式（card agent），供 ssh 遠端登入使用本機讀卡機",
        description=DESCRIPTION,
    )
    add_arguments(agent)
    agent.set_defaults(handler=handle_card_agent)


def add_arguments(agent: argparse.ArgumentParser) -> None:
    agent.add_argument(
        "--socket",
        type=Path,
        default=None,
        metavar="PATH",
        help="socket 路徑（預設 $XDG_RUNTIME_DIR/smis-card-agent.sock）",
    )
    agent.add_argument(
        "--server",
        required=True,
        metavar="USER@HOST",
        help="您以 ssh 連線的伺服器帳號與主機（例如 王小明@smis.example.tw）；"
        "主機名稱會寫入每一次登入簽章，伺服器只接受它自己的名稱",
    )
    agent.add_argument(
        "--pin-from",
        choices=("auto", "terminal", "pinentry"),
        default="auto",
        help="在哪裡輸入卡片密碼：terminal 本終端機、pinentry 密碼視窗；"
        "auto（預設）有圖形桌面且已安裝 pinentry 時用 pinentry，否則用本終端機",
    )
    agent.add_argument(
        "--remote-dir",
        default=REMOTE_DIR,
        metavar="DIR",
        help=f"伺服器上放置轉送 socket 的目錄（預設 {REMOTE_DIR}）",
    )
    agent.add_argument(
        "--pkcs11-module",
        default=None,
        metavar="PATH",
        help="HiCOS 卡片的 PKCS#11 模組（預設 $SMIS_PKCS11_MODULE）",
    )
    agent.add_argument(
        "--token-label",
        default=None,
        metavar="LABEL",
        help="PKCS#11 token 標籤（預設使用第一張卡片）",
    )


def _say(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


def handle_card_agent(settings: Any, args: argparse.Namespace) -> int:
    from card.agent.pin_entry import TerminalPinSource, default_pin_source
    from card.agent.server import AgentStartError, check_server_name, pcsc_agent
    from card.errors import CardError

    module = args.pkcs11_module or os.environ.get("SMIS_PKCS11_MODULE", "") or None
    pkcs11 = None
    if module:
        from card.readers.pkcs11 import Pkcs11Signer

        token_label = args.token_label

        def pkcs11(unblock_at: str) -> Pkcs11Signer:
            return Pkcs11Signer(module, token_label, unblock_at=unblock_at)

    try:
        server_name = check_server_name(server_host(args.server))
        pin_source = default_pin_source(args.pin_from)
        server = pcsc_agent(
            args.socket,
            server_name=server_name,
            pkcs11=pkcs11,
            pin_source=pin_source,
            notify=_say,
        )
        server.start()
    except (AgentStartError, ValueError) as exc:
        # It may quote the --socket path as typed: no escape sequences to the terminal.
        print(f"smis-tui card-agent：{one_line(str(exc))}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda signum, frame: server.request_stop())
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda signum, frame: server.request_stop())
    print(f"讀卡代理程式已啟動（card agent），socket：{clean(str(server.socket_path))}")
    print(f"伺服器名稱（寫入每一次登入簽章）：{clean(server_name)}")
    try:
        names = server.backend.readers()
        print("讀卡機：" + ("、".join(clean(n) for n in names) if names else "（目前沒有讀卡機）"))
    except CardError as exc:
        print(f"注意：{one_line(str(exc))}")
    print(
        "PKCS#11 模組："
        + (clean(module) if module else "未設定（HiCOS 卡片需要，請用 --pkcs11-module）")
    )
    where = "本終端機" if isinstance(pin_source, TerminalPinSource) else "pinentry 密碼視窗"
    print(
        "伺服器只能讀取卡片憑證；登入時，本程式會顯示哪個伺服器工作階段要求以誰的卡片登入，"
        f"並在{where}詢問卡片密碼。密碼不會送到伺服器。"
    )
    remote = remote_socket(args.remote_dir)
    print("請在本機另開一個終端機，以下列指令連線到伺服器（connect with）：")
    print()
    print("  " + clean(ssh_command(server.socket_path, args.server, remote)))
    print()
    print("按 Ctrl-C 結束讀卡代理程式。", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop()
    print("讀卡代理程式已結束。", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`smis-card-agent`: `smis-tui card-agent` alone, without the kiosk's packages."""
    parser = argparse.ArgumentParser(prog="smis-card-agent", description=DESCRIPTION)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return handle_card_agent(None, args)
    except KeyboardInterrupt:
        return 130
