"""Connections to a staff member's card agent for a session that runs as another user.

On a server with one Unix account per staff member, sshd creates the forwarded agent
socket as the staff member, mode 0600 (``StreamLocalBindMask 0177``). The kiosk
itself runs as the service account ``smis`` (the only account that may read the data
key and the database password), so it cannot open that socket, and it must not be
able to: every session runs as ``smis``, and a socket ``smis`` could open would be open
to every other staff member's session too.

So `smis-tui ssh-session --run-as smis`, started by sshd as the staff member, keeps
running as the *broker*: it starts the kiosk through sudo with one end of a socket
pair as file descriptor 3, and for each request on it connects to its own agent socket
(checked as before: a socket of this user alone, the peer this user or root) and hands
the connected descriptor over (SCM_RIGHTS). The kiosk never learns a path and can reach
no agent but its own session's; the broker reads nothing but one request byte at a
time and sends nothing but descriptors and refusal texts.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

from card.agent.protocol import AgentUnavailable, InsecureSocket, peer_uid

__all__ = ["BrokeredConnector", "serve_broker"]

CONNECT = b"c"
_GRANTED = b"\x00"
_REFUSED = b"\x01"
_MAX_REASON = 500


def connect_own_agent(path: Path, timeout: float = 5.0) -> socket.socket:
    """A connection to the agent at ``path``: a socket of this user alone, with a
    process of this user (sshd's session process) or root at the other end."""
    from card.agent.client import check_socket

    check_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except OSError as exc:
        sock.close()
        raise AgentUnavailable(
            f"沒有讀卡代理程式在 {path} 上服務（{exc.strerror or exc}）"
        ) from None
    uid = peer_uid(sock)
    if uid is None or uid not in (os.getuid(), 0):
        sock.close()
        who = "無法確認的使用者" if uid is None else f"其他使用者（uid {uid}）"
        raise InsecureSocket(f"{path} 另一端的程式屬於{who}")
    sock.settimeout(None)
    return sock


def serve_broker(channel: socket.socket, agent_path: Path) -> None:
    """Answer connection requests on ``channel`` until the kiosk closes it (or sends
    anything but a request); then close it."""
    try:
        _serve(channel, agent_path)
    finally:
        channel.close()


def _serve(channel: socket.socket, agent_path: Path) -> None:
    while True:
        try:
            request = channel.recv(1)
        except OSError:
            return
        if request != CONNECT:  # end of file, or anything but a request: done
            return
        try:
            agent = connect_own_agent(agent_path)
        except AgentUnavailable as exc:
            reason = str(exc).encode("utf-8", "replace")[:_MAX_REASON]
            try:
                channel.sendall(_REFUSED + reason)
            except OSError:
                return
            continue
        try:
            socket.send_fds(channel, [_GRANTED], [agent.fileno()])
        except OSError:
            return
        finally:
            agent.close()


class BrokeredConnector:
    """The kiosk's side: each call asks the broker on descriptor ``fd`` for a new
    connection to this session's agent."""

    def __init__(self, fd: int) -> None:
        try:
            self._channel = socket.socket(fileno=fd)
        except OSError:
            raise AgentUnavailable(f"檔案描述子 {fd} 不是讀卡代理程式的通道") from None
        if self._channel.family != socket.AF_UNIX:
            self._channel.close()
            raise AgentUnavailable(f"檔案描述子 {fd} 不是讀卡代理程式的通道")
        self._lock = threading.Lock()

    def __call__(self) -> socket.socket:
        with self._lock:
            try:
                self._channel.sendall(CONNECT)
                message, fds, _flags, _addr = socket.recv_fds(self._channel, 1 + _MAX_REASON, 1)
            except OSError as exc:
                raise AgentUnavailable(
                    f"讀卡代理程式的通道已中斷（{exc.strerror or exc}）"
                ) from None
        if not message:
            for fd in fds:
                os.close(fd)
            raise AgentUnavailable("讀卡代理程式的通道已中斷")
        if message[:1] == _GRANTED and len(fds) == 1:
            try:
                sock = socket.socket(fileno=fds[0])
            except OSError:
                os.close(fds[0])
                raise AgentUnavailable("讀卡代理程式的通道傳來的不是 socket") from None
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                sock.close()
                raise AgentUnavailable("讀卡代理程式的通道傳來的不是 UNIX socket")
            return sock
        for fd in fds:
            os.close(fd)
        reason = message[1:].decode("utf-8", "replace") or "拒絕連線"
        raise AgentUnavailable(reason)

    def close(self) -> None:
        self._channel.close()
