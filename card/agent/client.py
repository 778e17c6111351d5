"""The kiosk's side of the card agent: the readers of a remote staff member, reached
through the UNIX socket that ``ssh -R`` forwards (``SMIS_CARD_AGENT``).

:class:`AgentBackend` gives the kiosk what card.agent.proof.RemoteCards names and no
more: the readers and their card events (like a local ReaderBackend), the certificate
on a card (read by the agent), and login proofs (the PIN is typed at the agent, which
has the card sign a message it builds itself). There is no way to send a card command:
:meth:`AgentBackend.connect` raises DirectAccessRefused.

* the agent's socket must be a socket owned by this user with no group/other access,
  and the process at the other end must run as this user (or root) and say so
  (SO_PEERCRED): otherwise InsecureSocket, and nothing is sent;
* agent unreachable (no socket, nobody listening, handshake failed) → AgentUnavailable,
  a PcscUnavailable;
* the agent's errors come back as the same card.errors classes (NoCard, NoReader,
  ReaderBusy, WrongPin, PinBlocked, ProofCancelled …); the agent going away during a
  proof is CardRemoved;
* :meth:`AgentBackend.subscribe` delivers (reader, inserted) events like
  InProcessBackend and ReaderMonitor (a new listener first hears about the cards
  already present; when the agent goes away every card is reported removed, and the
  backend reconnects in the background).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import secrets
import socket
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from card.agent import protocol as wire
from card.agent.proof import NONCE_BYTES, LoginProof
from card.agent.protocol import (
    AgentProtocolError,
    AgentUnavailable,
    DirectAccessRefused,
    InsecureSocket,
)
from card.errors import (
    CardError,
    CardRemoved,
    CardUnresponsive,
    ProofCancelled,
    ProofTimedOut,
)
from card.readers.profiles import CardProfile, CardRead
from card.transport import DEFAULT_TIMEOUT_S, ClosesOnExit, Listener

if TYPE_CHECKING:
    from card.transport import CardConnection

__all__ = [
    "AGENT_ENV",
    "AgentBackend",
    "check_socket",
    "new_session_id",
    "session_label",
]

log = logging.getLogger(__name__)

AGENT_ENV = "SMIS_CARD_AGENT"
# How much longer than the card's own timeout the kiosk waits for the agent's answer
# (the round trip through SSH); the agent enforces the card timeout itself.
GRACE_S = 1.0
# Reading a certificate: a first-generation HiCOS card reads 200 bytes at a time, and a
# second-generation one goes through the agent's PKCS#11 module.
READ_TIMEOUT_S = 30.0
IO_TIMEOUT_S = 5.0
_U32_MAX = 0xFFFFFFFF


def session_label() -> str:
    """Who is asking, as the staff member sees it: ``user@host pid N, SSH_CONNECTION …``."""
    label = f"{wire.user_at_host()} pid {os.getpid()}"
    # Started through sudo by the staff member's own session (card.agent.broker).
    staff = os.environ.get("SUDO_USER", "").strip()
    if staff:
        label = f"{label} for {staff}"
    ssh = os.environ.get("SSH_CONNECTION", "").strip()
    return f"{label}, SSH_CONNECTION {ssh}" if ssh else label


def new_session_id() -> str:
    """A fresh id for this server session, shown on both screens and in every proof:
    the process id (what an administrator finds in ``ps``) and 32 random bits."""
    return f"{os.getpid()}-{secrets.token_hex(4)}"


def check_socket(path: Path) -> None:
    """Refuse a socket that is not private to this user (before connecting to it)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise AgentUnavailable(f"找不到 {path}") from None
    except OSError as exc:
        raise AgentUnavailable(f"{path}：{exc.strerror}") from None
    if not stat.S_ISSOCK(info.st_mode):
        raise InsecureSocket(f"{path} 不是 socket")
    if info.st_uid != os.getuid():
        raise InsecureSocket(f"{path} 屬於其他使用者（uid {info.st_uid}）")
    if info.st_mode & 0o077:
        mode = stat.S_IMODE(info.st_mode)
        raise InsecureSocket(f"{path} 的權限為 {mode:04o}，其他使用者可存取（應為 0600）")


class _Timeout(Exception):
    pass


class _Lost(Exception):
    pass


@dataclass
class _Pending:
    done: threading.Event = field(default_factory=threading.Event)
    reply: wire.Message | None = None


# ---------------------------------------------------------------------- one socket


class _Link:
    """One connection to the agent: requests matched to answers by id, events passed on."""

    def __init__(
        self,
        path: Path,
        on_event: Callable[[_Link, str, bool], None],
        on_lost: Callable[[_Link], None],
        connector: Callable[[], socket.socket] | None = None,
    ) -> None:
        self.path = path
        self._connector = connector
        self._on_event = on_event
        self._on_lost = on_lost
        self._sock: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._lost = threading.Event()
        self.reason = ""
        self.agent_label = ""
        self.server_name = ""
        self.subscribed = False

    @property
    def alive(self) -> bool:
        return self._sock is not None and not self._lost.is_set()

    def wait_lost(self, timeout: float) -> bool:
        return self._lost.wait(timeout)

    def _connect(self, timeout: float) -> socket.socket:
        if self._connector is not None:
            # The broker (card.agent.broker) made and checked this connection as the
            # staff member, who alone may open the forwarded socket.
            return self._connector()
        check_socket(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(self.path))
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            raise AgentUnavailable(f"沒有讀卡代理程式在 {self.path} 上服務") from None
        except OSError as exc:
            sock.close()
            raise AgentUnavailable(f"{self.path}：{exc.strerror or exc}") from None
        uid = wire.peer_uid(sock)
        if uid is None or uid not in (os.getuid(), 0):
            sock.close()
            who = "無法確認的使用者" if uid is None else f"其他使用者（uid {uid}）"
            raise InsecureSocket(f"{self.path} 另一端的程式屬於{who}")
        return sock

    def open(self, label: str, session_id: str, timeout: float) -> None:
        sock = self._connect(timeout)
        sock.settimeout(IO_TIMEOUT_S)
        self._sock = sock
        threading.Thread(target=self._read_loop, name="agent-client-read", daemon=True).start()
        try:
            hello = wire.Hello(wire.PROTOCOL_VERSION, wire.clean_text(label, 500), session_id)
            reply = self.request(hello, timeout)
        except _Timeout:
            self.close()
            raise AgentUnavailable("讀卡代理程式沒有回應交握") from None
        except _Lost:
            self.close()
            raise AgentUnavailable(self.reason or "連線中斷") from None
        except CardError as exc:
            self.close()
            raise AgentUnavailable(str(exc)) from None
        if not isinstance(reply, wire.Welcome):
            self.close()
            raise AgentUnavailable(f"交握回應不正確（{type(reply).__name__}）")
        self.agent_label = wire.clean_text(reply.label)
        self.server_name = reply.server_name

    def start(self, message: wire.Message) -> tuple[int, _Pending]:
        """Send ``message``; its id and where its answer will be (see :meth:`wait`)."""
        pending = _Pending()
        with self._lock:
            msg_id = next(self._ids) & _U32_MAX
            self._pending[msg_id] = pending
        try:
            self._send(msg_id, message)
        except BaseException:
            self.forget(msg_id)
            raise
        return msg_id, pending

    def forget(self, msg_id: int) -> None:
        with self._lock:
            self._pending.pop(msg_id, None)

    @staticmethod
    def answer(pending: _Pending) -> wire.Message:
        """The answer that came (a Failure raised as its card error); _Lost when the
        link went away."""
        reply = pending.reply
        if reply is None:
            raise _Lost()
        if isinstance(reply, wire.Failure):
            raise wire.failure_to_error(reply)
        return reply

    def request(self, message: wire.Message, timeout: float) -> wire.Message:
        """Send ``message`` and wait for its answer; a Failure is raised as its card
        error. _Timeout when no answer in time, _Lost when the link went away."""
        msg_id, pending = self.start(message)
        try:
            if not pending.done.wait(max(timeout, 0.0)):
                raise _Timeout()
        finally:
            self.forget(msg_id)
        return self.answer(pending)

    def post(self, message: wire.Message) -> None:
        """Send without waiting for the answer (which is then ignored)."""
        with self._lock:
            msg_id = next(self._ids) & _U32_MAX
        with contextlib.suppress(_Lost):
            self._send(msg_id, message)

    def _send(self, msg_id: int, message: wire.Message) -> None:
        frame = wire.encode_frame(msg_id, message)
        sock = self._sock
        if sock is None or self._lost.is_set():
            raise _Lost()
        try:
            with self._send_lock:
                sock.sendall(frame)
        except OSError as exc:
            self._lose(f"傳送失敗：{exc.strerror or exc}")
            raise _Lost() from None

    def _read_loop(self) -> None:
        decoder = wire.FrameDecoder()
        sock = self._sock
        assert sock is not None
        reason = "讀卡代理程式已中斷連線"
        try:
            while not self._lost.is_set():
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError as exc:
                    reason = f"連線錯誤：{exc.strerror or exc}"
                    return
                if not data:
                    return
                for payload in decoder.feed(data):
                    msg_id, message = wire.decode_payload(payload)
                    if isinstance(message, wire.CardEvent):
                        self._on_event(self, message.reader, message.inserted)
                        continue
                    with self._lock:
                        pending = self._pending.get(msg_id)
                    if pending is not None:
                        pending.reply = message
                        pending.done.set()
                    elif isinstance(message, wire.Failure):
                        reason = wire.clean_text(message.message)
        except wire.ProtocolError as exc:
            reason = exc.detail
            log.warning("card agent sent a malformed frame: %s", exc.detail)
        finally:
            decoder.wipe()
            self._lose(reason)

    def _lose(self, reason: str) -> None:
        with self._lock:
            if self._lost.is_set():
                return
            self.reason = reason
            self._lost.set()
            pending = list(self._pending.values())
        for item in pending:
            item.done.set()  # reply None: lost
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        self._on_lost(self)

    def close(self) -> None:
        self._lose("已關閉")
        if self._sock is not None:
            self._sock.close()


# ---------------------------------------------------------------------- the backend


class AgentBackend(ClosesOnExit):
    """The readers of the card agent at ``socket_path``: card.transport.ReaderBackend's
    ``readers`` and ``subscribe``, and card.agent.proof.RemoteCards."""

    def __init__(
        self,
        socket_path: Path | str,
        *,
        connector: Callable[[], socket.socket] | None = None,
        label: str | None = None,
        session_id: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        grace: float = GRACE_S,
        reconnect_max: float = 2.0,
    ) -> None:
        self.socket_path = Path(socket_path)
        self._connector = connector
        self.label = label or session_label()
        self.session_id = session_id or new_session_id()
        self.timeout = timeout
        self.grace = grace
        self.reconnect_max = reconnect_max
        self._lock = threading.RLock()
        self._link: _Link | None = None
        self._closed = False
        self._listeners: list[Listener] = []
        self._present: set[str] = set()
        self._events: queue.SimpleQueue[tuple[Listener | None, str, bool] | None] = (
            queue.SimpleQueue()
        )
        self._dispatcher: threading.Thread | None = None
        self._watcher: threading.Thread | None = None
        self._wake = threading.Event()
        # The prove() under way: its link, request id and answer, and whether cancel()
        # was called for it.
        self._proof: tuple[_Link, int, _Pending] | None = None
        self._proof_cancelled = False

    def __repr__(self) -> str:
        return f"AgentBackend(socket_path={str(self.socket_path)!r})"

    # ------------------------------------------------------------------ the link

    def _get_link(self) -> _Link:
        with self._lock:
            if self._closed:
                raise AgentUnavailable("已關閉")
            link = self._link
            if link is not None and link.alive:
                return link
            link = _Link(self.socket_path, self._on_event, self._on_lost, self._connector)
            link.open(self.label, self.session_id, self.timeout)
            self._link = link
            return link

    def hello(self) -> str:
        """Connect (if not yet) and return the agent's server name."""
        return self._get_link().server_name

    @property
    def agent_label(self) -> str:
        """``user@host`` of the staff member's computer ('' before connecting)."""
        link = self._link
        return link.agent_label if link is not None else ""

    @property
    def server_name(self) -> str:
        """The server name the agent puts in every proof ('' before connecting)."""
        link = self._link
        return link.server_name if link is not None else ""

    def _request(self, message: wire.Message, timeout: float) -> wire.Message:
        """A request whose loss or silence means the agent is 'unavailable'."""
        link = self._get_link()
        try:
            return link.request(message, timeout)
        except _Timeout:
            raise AgentUnavailable("讀卡代理程式沒有回應") from None
        except _Lost:
            raise AgentUnavailable(link.reason or "連線中斷") from None

    # ------------------------------------------------------------------ ReaderBackend

    def readers(self) -> list[str]:
        reply = self._request(wire.ListReaders(), self.timeout + self.grace)
        if not isinstance(reply, wire.Readers):
            raise AgentProtocolError(f"應回覆讀卡機清單，收到 {type(reply).__name__}")
        return list(reply.names)

    def connect(self, reader: str) -> CardConnection:
        """There is no card connection over the agent: DirectAccessRefused."""
        raise DirectAccessRefused()

    # ------------------------------------------------------------------ RemoteCards

    def read_card(self, reader: str) -> CardRead:
        """The card in ``reader`` and its login certificate, read by the agent."""
        link = self._get_link()
        try:
            reply = link.request(wire.ReadCard(reader), READ_TIMEOUT_S + self.grace)
        except _Timeout:
            raise CardUnresponsive(READ_TIMEOUT_S) from None
        except _Lost:
            raise CardRemoved() from None
        if not isinstance(reply, wire.CardInfo):
            raise AgentProtocolError(f"應回覆卡片憑證，收到 {type(reply).__name__}")
        try:
            profile = CardProfile(reply.profile)
        except ValueError:
            raise AgentProtocolError(f"未知的卡片類型 {wire.clean_text(reply.profile)}") from None
        return CardRead(
            profile, reply.certificate, reader, reply.atr, reply.hicos_generation or None
        )

    def prove(self, reader: str, cert_sha256: str, nonce: bytes, timeout: float) -> LoginProof:
        """card.agent.proof.RemoteCards.prove: ``cert_sha256`` in hex (as
        card.identity.CardIdentity has it)."""
        try:
            digest = bytes.fromhex(cert_sha256)
        except ValueError:
            digest = b""
        if len(digest) != wire.DIGEST_BYTES or len(nonce) != NONCE_BYTES:
            raise ValueError("cert_sha256: 64 hex digits; nonce: 32 bytes")
        link = self._get_link()
        with self._lock:
            if self._proof is not None:
                raise wire.AgentBusy("另一個登入要求尚未完成")
            try:
                msg_id, pending = link.start(wire.LoginProof(reader, digest, nonce))
            except _Lost:
                raise CardRemoved() from None
            self._proof = (link, msg_id, pending)
            self._proof_cancelled = False
        try:
            answered = pending.done.wait(max(timeout, 0.0))
            with self._lock:
                cancelled = self._proof_cancelled
            if cancelled:
                raise ProofCancelled()
            if not answered:
                link.post(wire.CancelProof(msg_id))
                raise ProofTimedOut(timeout)
            try:
                reply = link.answer(pending)
            except _Lost:
                raise CardRemoved() from None
        finally:
            link.forget(msg_id)
            with self._lock:
                self._proof = None
        if not isinstance(reply, wire.ProofSignature):
            raise AgentProtocolError(f"應回覆登入簽章，收到 {type(reply).__name__}")
        return LoginProof(reply.server_name, reply.signature)

    def cancel(self) -> None:
        """Abandon the :meth:`prove` under way (it raises ProofCancelled at once; the
        agent drops its PIN prompt). Thread-safe; nothing when none is under way."""
        with self._lock:
            proof = self._proof
            if proof is None or self._proof_cancelled:
                return
            self._proof_cancelled = True
        link, msg_id, pending = proof
        link.post(wire.CancelProof(msg_id))
        pending.done.set()

    # ------------------------------------------------------------------ events

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(reader, inserted)`` on every card insert/remove at the agent
        (from a background thread; keep it short). Returns unsubscribe."""
        with self._lock:
            self._listeners.append(listener)
            for reader in sorted(self._present):
                self._events.put((listener, reader, True))
            if self._dispatcher is None:
                self._dispatcher = threading.Thread(
                    target=self._dispatch_loop, name="agent-events", daemon=True
                )
                self._dispatcher.start()
            if self._watcher is None:
                self._watcher = threading.Thread(
                    target=self._watch_loop, name="agent-watch", daemon=True
                )
                self._watcher.start()
            self._wake.set()

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def _watch_loop(self) -> None:
        """Keep a subscribed link while anyone listens; reconnect with backoff."""
        backoff = 0.1
        while True:
            with self._lock:
                if self._closed:
                    return
                wanted = bool(self._listeners)
            if not wanted:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            try:
                link = self._get_link()
                if not link.subscribed:
                    link.request(wire.Subscribe(), self.timeout + self.grace)
                    link.subscribed = True
                backoff = 0.1
                link.wait_lost(1.0)
            except (CardError, _Timeout, _Lost):
                self._wake.wait(backoff)
                self._wake.clear()
                backoff = min(backoff * 2, self.reconnect_max)

    def _dispatch_loop(self) -> None:
        while True:
            item = self._events.get()
            if item is None:
                return
            target, reader, inserted = item
            with self._lock:
                listeners = [target] if target is not None else list(self._listeners)
            for listener in listeners:
                try:
                    listener(reader, inserted)
                except Exception:
                    log.exception("card event listener failed (%s, inserted=%s)", reader, inserted)

    def _on_event(self, link: _Link, reader: str, inserted: bool) -> None:
        with self._lock:
            if link is not self._link:
                return
            if inserted == (reader in self._present):
                if not inserted:
                    return
                self._events.put((None, reader, False))  # another card: out, then in
            if inserted:
                self._present.add(reader)
            else:
                self._present.discard(reader)
            self._events.put((None, reader, inserted))

    def _on_lost(self, link: _Link) -> None:
        """The agent went away: every card it had is removed."""
        with self._lock:
            if link is not self._link:
                return
            for reader in sorted(self._present):
                self._events.put((None, reader, False))
            self._present.clear()
        self._wake.set()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            link, self._link = self._link, None
            for reader in sorted(self._present):
                self._events.put((None, reader, False))
            self._present.clear()
            self._events.put(None)
            self._wake.set()
        if link is not None:
            link.close()


if TYPE_CHECKING:  # mypy checks that it keeps to the protocols it stands in for
    from card.agent.proof import RemoteCards
    from card.transport import ReaderBackend

    _backend: type[ReaderBackend] = AgentBackend
    _remote: type[RemoteCards] = AgentBackend
