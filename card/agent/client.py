"""The kiosk's side of the card agent: a ReaderBackend whose readers are on the staff
member's computer, reached through the UNIX socket that ``ssh -R`` forwards
(``SMIS_CARD_AGENT``).

:class:`AgentBackend` behaves like a local reader (card.readers.pcsc.PcscBackend), with the
same errors and timeouts:

* the agent's socket must be a socket owned by this user with no group/other access,
  and the process at the other end must run as this user (or root): otherwise
  InsecureSocket, and nothing is sent;
* agent unreachable (no socket, nobody listening, handshake failed) → AgentUnavailable,
  a PcscUnavailable;
* a transmit waits the card's ``timeout`` plus a small grace for the round trip, then
  CardUnresponsive (the connection is dead from then on, like a PcscConnection that
  timed out); the agent or its socket going away mid-command → CardRemoved;
* the agent's errors come back as the same card.errors classes (NoCard, NoReader,
  ReaderBusy, WrongPin, PinBlocked …), plus CommandRefused for commands the agent
  refuses and AgentBusy when the server sends faster than the card answers;
* :meth:`AgentBackend.subscribe` delivers (reader, inserted) events like
  InProcessBackend and ReaderMonitor (a new listener first hears about the cards
  already present; when the agent goes away every card is reported removed, and the
  backend reconnects in the background);
* :meth:`AgentBackend.sign_pkcs11` asks the agent's PKCS#11 module to log in and sign
  (HiCOS cards): the PIN travels only inside the SSH channel, is wiped here after
  sending, and is never stored on either side.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from card.agent import protocol as wire
from card.agent.protocol import AgentProtocolError, AgentUnavailable, InsecureSocket
from card.errors import (
    CardError,
    CardProtocolError,
    CardRemoved,
    CardUnresponsive,
    NoReader,
    PcscUnavailable,
    Pkcs11Unavailable,
)
from card.pin import check_pin_format, wipe
from card.transport import DEFAULT_TIMEOUT_S, ClosesOnExit, Listener, OpenConnection, Response

__all__ = [
    "AGENT_ENV",
    "AgentBackend",
    "AgentConnection",
    "AgentPkcs11Signer",
    "check_socket",
    "session_label",
]

log = logging.getLogger(__name__)

AGENT_ENV = "SMIS_CARD_AGENT"
# How much longer than the card's own timeout the kiosk waits for the agent's answer
# (the round trip through SSH); the agent enforces the card timeout itself.
GRACE_S = 1.0
# PKCS#11 login and signing on the staff side (the vendor module talks to the card).
PKCS11_TIMEOUT_S = 30.0
IO_TIMEOUT_S = 5.0
_U32_MAX = 0xFFFFFFFF


def session_label() -> str:
    """Who is asking, as the staff member sees it: ``user@host pid N, SSH_CONNECTION …``."""
    label = f"{wire.user_at_host()} pid {os.getpid()}"
    ssh = os.environ.get("SSH_CONNECTION", "").strip()
    return f"{label}, SSH_CONNECTION {ssh}" if ssh else label


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


def _ms(seconds: float) -> int:
    return max(1, min(int(seconds * 1000), _U32_MAX))


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
    ) -> None:
        self.path = path
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
        self.pkcs11 = False
        self.subscribed = False

    @property
    def alive(self) -> bool:
        return self._sock is not None and not self._lost.is_set()

    def wait_lost(self, timeout: float) -> bool:
        return self._lost.wait(timeout)

    def open(self, label: str, timeout: float) -> None:
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
        if uid is not None and uid not in (os.getuid(), 0):
            sock.close()
            raise InsecureSocket(f"{self.path} 另一端的程式屬於其他使用者（uid {uid}）")
        sock.settimeout(IO_TIMEOUT_S)
        self._sock = sock
        threading.Thread(target=self._read_loop, name="agent-client-read", daemon=True).start()
        try:
            reply = self.request(
                wire.Hello(wire.PROTOCOL_VERSION, wire.clean_text(label, 500)), timeout
            )
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
        self.pkcs11 = reply.pkcs11

    def request(self, message: wire.Message, timeout: float) -> wire.Message:
        """Send ``message`` and wait for its answer; a Failure is raised as its card
        error. _Timeout when no answer in time, _Lost when the link went away."""
        pending = _Pending()
        with self._lock:
            msg_id = next(self._ids) & _U32_MAX
            self._pending[msg_id] = pending
        try:
            self._send(msg_id, message)
            if not pending.done.wait(max(timeout, 0.0)):
                raise _Timeout()
        finally:
            with self._lock:
                self._pending.pop(msg_id, None)
        reply = pending.reply
        if reply is None:
            raise _Lost()
        if isinstance(reply, wire.Failure):
            raise wire.failure_to_error(reply)
        return reply

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
    """card.transport.ReaderBackend over the card agent at ``socket_path``."""

    def __init__(
        self,
        socket_path: Path | str,
        *,
        label: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        grace: float = GRACE_S,
        reconnect_max: float = 2.0,
    ) -> None:
        self.socket_path = Path(socket_path)
        self.label = label or session_label()
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
            link = _Link(self.socket_path, self._on_event, self._on_lost)
            link.open(self.label, self.timeout)
            self._link = link
            return link

    @property
    def agent_label(self) -> str:
        """``user@host`` of the staff member's computer ('' before connecting)."""
        link = self._link
        return link.agent_label if link is not None else ""

    def _request(self, message: wire.Message, timeout: float) -> wire.Message:
        """A request that is not about an open card connection: a lost or silent
        agent is 'unavailable'."""
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

    def connect(self, reader: str, timeout: float | None = None) -> AgentConnection:
        timeout = self.timeout if timeout is None else timeout
        link = self._get_link()
        try:
            reply = link.request(wire.Connect(reader, _ms(timeout)), timeout + self.grace)
        except _Timeout:
            raise CardUnresponsive(timeout) from None
        except _Lost:
            raise AgentUnavailable(link.reason or "連線中斷") from None
        if not isinstance(reply, wire.Connected):
            raise AgentProtocolError(f"應回覆卡片連線，收到 {type(reply).__name__}")
        return AgentConnection(self, link, reply.handle, reader, reply.atr)

    # ------------------------------------------------------------------ PKCS#11

    def sign_pkcs11(
        self,
        pin: str | bytes | bytearray,
        data: bytes,
        *,
        key_label: str = "SIGN",
        unblock_at: str = "",
        timeout: float = PKCS11_TIMEOUT_S,
        certificate: bytes = b"",
    ) -> bytes:
        """The agent's PKCS#11 module logs in with ``pin`` to the token holding
        ``certificate`` and signs ``data``: the same errors as
        card.readers.pkcs11.Pkcs11Signer.sign (CardTokenNotFound, WrongPin, PinBlocked,
        NoCard …), CardRemoved when the agent goes away meanwhile."""
        buffer = check_pin_format(pin)  # PinFormatError here, before anything is sent
        del pin
        try:
            link = self._get_link()
            request = wire.Pkcs11Sign(
                unblock_at, key_label, _ms(timeout), bytes(buffer), data, certificate
            )
        finally:
            wipe(buffer)
        try:
            reply = link.request(request, timeout + self.grace)
        except _Timeout:
            raise CardUnresponsive(timeout) from None
        except _Lost:
            raise CardRemoved() from None
        finally:
            del request
        if not isinstance(reply, wire.Signature):
            raise AgentProtocolError(f"應回覆簽章，收到 {type(reply).__name__}")
        return reply.signature

    def pkcs11_signer(self, unblock_at: str) -> AgentPkcs11Signer:
        """A card.signing.Pkcs11Signing that signs through this agent."""
        return AgentPkcs11Signer(self, unblock_at)

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


class AgentConnection(OpenConnection):
    """A card connection at the agent (card.transport.CardConnection)."""

    def __init__(
        self, backend: AgentBackend, link: _Link, handle: int, reader: str, atr: bytes
    ) -> None:
        super().__init__(reader, atr)
        self._backend = backend
        self._link = link
        self._handle = handle

    def transmit(self, apdu: bytes, timeout: float = DEFAULT_TIMEOUT_S) -> Response:
        """Send one command APDU through the agent: CardRemoved when the agent goes
        away, CardUnresponsive when no answer comes within ``timeout`` (plus the
        round-trip grace), and the agent's card errors as themselves."""
        if not apdu:
            raise ValueError("empty APDU")
        if timeout <= 0:
            raise CardUnresponsive(timeout)
        with self._lock:
            self._check_open()
            if not self._link.alive:
                self._dead = CardRemoved
                raise CardRemoved()
            request = wire.Transmit(self._handle, _ms(timeout), apdu)
            del apdu  # keep secrets (VERIFY data) out of this frame from here on
            try:
                reply = self._link.request(request, timeout + self._backend.grace)
            except _Timeout:
                self._dead = lambda: CardUnresponsive(timeout)
                self._link.post(wire.Disconnect(self._handle))
                raise CardUnresponsive(timeout) from None
            except _Lost:
                self._dead = CardRemoved
                raise CardRemoved() from None
            except CardUnresponsive:
                self._dead = lambda: CardUnresponsive(timeout)
                raise
            except CardRemoved:
                self._dead = CardRemoved
                raise
            except NoReader:
                self._dead = NoReader
                raise
            except PcscUnavailable as exc:
                detail = exc.params.get("detail")
                self._dead = lambda: PcscUnavailable(detail if isinstance(detail, str) else "")
                raise
            finally:
                del request
        if not isinstance(reply, wire.Answer):
            raise AgentProtocolError(f"應回覆卡片回應，收到 {type(reply).__name__}")
        rapdu = reply.rapdu
        if len(rapdu) < 2:
            raise CardProtocolError(f"回應只有 {len(rapdu)} 位元組，缺少狀態碼")
        return Response(rapdu[:-2], rapdu[-2], rapdu[-1])

    @contextlib.contextmanager
    def transaction(self, timeout: float = DEFAULT_TIMEOUT_S) -> Iterator[None]:
        """No transaction yet: the agent's protocol has no message for one, so another
        program on the person's computer can still come between two commands (its PC/SC
        transaction would have to be held at the agent, across requests)."""
        yield

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._dead is None:
                self._dead = CardRemoved
            if self._link.alive:
                self._link.post(wire.Disconnect(self._handle))


class AgentPkcs11Signer:
    """card.signing.Pkcs11Signing over the agent: ``sign(pin, data)``."""

    def __init__(self, backend: AgentBackend, unblock_at: str) -> None:
        self.backend = backend
        self.unblock_at = unblock_at

    def __repr__(self) -> str:
        return f"AgentPkcs11Signer(unblock_at={self.unblock_at!r})"

    def sign(
        self,
        pin: str | bytes | bytearray,
        data: bytes,
        *,
        certificate: bytes,
        key_label: str = "SIGN",
    ) -> bytes:
        return self.backend.sign_pkcs11(
            pin, data, key_label=key_label, unblock_at=self.unblock_at, certificate=certificate
        )

    def reader_certificate(self, reader: str, key_label: str = "SIGN") -> bytes:
        """Not over the agent: its protocol reads certificates only with APDUs, which a
        second-generation 自然人憑證 does not answer."""
        raise Pkcs11Unavailable("讀卡代理程式尚不支援新式自然人憑證")


if TYPE_CHECKING:  # mypy checks that these keep to the protocols they stand in for
    from card.signing import Pkcs11Signing
    from card.transport import CardConnection, ReaderBackend

    _backend: type[ReaderBackend] = AgentBackend
    _connection: type[CardConnection] = AgentConnection
    _signer: type[Pkcs11Signing] = AgentPkcs11Signer
