"""The card agent: the staff member's card readers, served on a private UNIX socket
that ``ssh -R`` forwards to the kiosk server (like ssh-agent forwarding).

The server may ask the agent for the readers, for the certificate on a card (read
here, with SELECT / READ BINARY / GET DATA / GET RESPONSE only:
card.agent.allowlist) and for a login proof: the agent builds
card.agent.proof.login_message from the server name the staff member connected to,
the server session's id and the server's nonce, shows who asks, takes the PIN here
(card.agent.pin_entry), has the card sign that message and returns the signature.
No request carries an APDU, a PIN or data to sign.

:class:`AgentServer` serves any ReaderBackend (PcscBackend in real use, see
:func:`pcsc_agent`; InProcessBackend in tests):

* the socket is created with mode 0600 in ``$XDG_RUNTIME_DIR`` (or a private 0700
  directory under /tmp), and only processes of this same user may connect
  (SO_PEERCRED; a peer whose uid cannot be learnt is refused);
* each server session gets three threads: a reader that decodes frames, a worker that
  runs its requests in order, a writer that sends answers and card events. Requests
  wait in a bounded queue: the excess gets AgentBusy at once; a session that does not
  read its answers is dropped. A malformed, unknown or out-of-place request ends that
  session, with a line saying why. Other sessions are never affected;
* one session at a time per card reader (another gets ReaderBusy), one PIN prompt at
  a time, at most :data:`PROOFS_PER_WINDOW` login proofs in :data:`PROOF_WINDOW_S`
  seconds for the whole agent (a limit per connection would end with a reconnect);
* the staff member sees which server session connects, reads which reader, asks for
  a login with whose card, and leaves (``notify``).

APDUs and PINs are never logged or printed; a PIN lives in a bytearray wiped as soon
as the card has seen it.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import inspect
import itertools
import logging
import os
import socket
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from card.agent import protocol as wire
from card.agent.allowlist import ReadOnlyConnection
from card.agent.pin_entry import PinRequest, PinSource, TerminalPinSource
from card.agent.proof import MAX_SERVER_NAME, login_message
from card.agent.protocol import AgentBusy, AgentProtocolError, ProtocolError, TooManyProofs
from card.errors import (
    CardError,
    CardProtocolError,
    NoReader,
    NotTheCardShown,
    ProofCancelled,
    ProofTimedOut,
    ReaderBusy,
)
from card.pin import check_pin_format, wipe
from card.transport import DEFAULT_TIMEOUT_S, CardConnection, ReaderBackend, RunsInWith

if TYPE_CHECKING:
    from card.readers.profiles import CardRead
    from card.signing import SignerFactory

__all__ = [
    "PROOFS_PER_WINDOW",
    "PROOF_WINDOW_S",
    "SOCKET_NAME",
    "AgentServer",
    "AgentStartError",
    "check_server_name",
    "default_socket_path",
    "pcsc_agent",
    "runtime_dir",
]

log = logging.getLogger(__name__)

SOCKET_NAME = "smis-card-agent.sock"
# The longest a card operation may take.
CARD_TIMEOUT_S = DEFAULT_TIMEOUT_S
# How long the person has to type the PIN.
PIN_TIMEOUT_S = 120.0
# A frame that started must be complete within this long.
FRAME_DEADLINE_S = 10.0
# Socket timeout: a send that cannot progress this long drops the session.
IO_TIMEOUT_S = 5.0
PROOFS_PER_WINDOW = 3
PROOF_WINDOW_S = 60


class AgentStartError(Exception):
    """The agent cannot start (socket path unsafe or in use); the message says why."""


def check_server_name(name: str) -> str:
    """``name`` if it can go into a login proof (1–255 bytes, no control character),
    else AgentStartError."""
    data = name.encode("utf-8")
    bad = (
        not data
        or len(data) > MAX_SERVER_NAME
        or any(ch < 0x20 or ch == 0x7F for ch in data)
        or wire.clean_text(name, MAX_SERVER_NAME) != name
    )
    if bad:
        raise AgentStartError(
            "伺服器名稱應為 1 至 255 位元組、不含控制字元（例如 smis.example.tw）"
        )
    return name


# ---------------------------------------------------------------------- the socket


def _private_dir(path: Path, *, create: bool) -> Path:
    """``path`` as a directory only this user can use (0700, owned by us)."""
    if create:
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise AgentStartError(f"無法使用目錄 {path}：{exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise AgentStartError(f"{path} 不是目錄（可能是符號連結），為安全起見不使用")
    if info.st_uid != os.getuid():
        raise AgentStartError(f"目錄 {path} 屬於其他使用者（uid {info.st_uid}），為安全起見不使用")
    if info.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def runtime_dir() -> Path:
    """``$XDG_RUNTIME_DIR`` when it is ours and private, else /tmp/smis-card-agent-UID."""
    xdg = os.environ.get("XDG_RUNTIME_DIR", "").strip()
    if xdg:
        try:
            info = os.stat(xdg)
            if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid():
                if not info.st_mode & 0o077:
                    return Path(xdg)
        except OSError:
            pass
    return _private_dir(Path(tempfile.gettempdir()) / f"smis-card-agent-{os.getuid()}", create=True)


def default_socket_path() -> Path:
    return runtime_dir() / SOCKET_NAME


_UMASK_LOCK = threading.Lock()


def _check_parent(path: Path) -> None:
    parent = path.parent
    try:
        info = os.stat(parent)
    except OSError as exc:
        raise AgentStartError(f"無法使用目錄 {parent}：{exc.strerror}") from None
    if info.st_uid not in (os.getuid(), 0):
        raise AgentStartError(f"目錄 {parent} 屬於其他使用者（uid {info.st_uid}），不在此建立通道")
    if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
        raise AgentStartError(f"目錄 {parent} 其他使用者可寫入，不在此建立通道")


def _clear_stale(path: Path) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise AgentStartError(f"{path} 已存在且不是 socket，請改用其他路徑（--socket）")
    if info.st_uid != os.getuid():
        raise AgentStartError(f"{path} 屬於其他使用者（uid {info.st_uid}），請改用其他路徑")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except OSError:  # nobody listens: left over from an agent that ended
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    finally:
        probe.close()
    raise AgentStartError(f"已有讀卡代理程式在 {path} 執行中")


def _listen(path: Path) -> tuple[socket.socket, int]:
    """A listening UNIX socket at ``path``, mode 0600; returns it and its inode."""
    _check_parent(path)
    _clear_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with _UMASK_LOCK:
            old = os.umask(0o177)  # the socket is never, not even briefly, open to others
            try:
                sock.bind(str(path))
            finally:
                os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(16)
    except OSError as exc:
        sock.close()
        raise AgentStartError(f"無法在 {path} 建立通道：{exc.strerror or exc}") from None
    return sock, os.lstat(path).st_ino


def _notify_stderr(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- one session


class _Session:
    """One connected server session: reader, worker and writer threads."""

    _ids = itertools.count(1)

    def __init__(self, server: AgentServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.number = next(self._ids)
        self.label = f"未交握的連線 #{self.number}"
        self.session_label = ""
        self.session_id = ""
        self.greeted = False
        self.subscribed = False
        self._cond = threading.Condition()
        self._requests: collections.deque[tuple[int, wire.Message]] = collections.deque()
        self._outbox: collections.deque[bytes | None] = collections.deque()
        self._closing = False  # no more requests; the writer ends after the outbox
        self._dead = False  # the socket is shut
        self._flooding = False
        # The LoginProof being worked on: its request id and what cancels its prompt.
        self._proof: tuple[int, threading.Event] | None = None
        self._threads = [
            threading.Thread(target=self._read_loop, name=f"agent-read-{self.number}", daemon=True),
            threading.Thread(target=self._work_loop, name=f"agent-work-{self.number}", daemon=True),
            threading.Thread(
                target=self._write_loop, name=f"agent-write-{self.number}", daemon=True
            ),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    @property
    def alive(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    # ------------------------------------------------------------------ output

    def send(self, msg_id: int, message: wire.Message) -> None:
        try:
            frame = wire.encode_frame(msg_id, message)
        except ValueError as exc:
            frame = wire.encode_frame(
                msg_id, wire.error_to_failure(CardProtocolError(f"回應無法傳送：{exc}"))
            )
        with self._cond:
            if self._dead or self._closing:
                return
            if len(self._outbox) >= self.server.outbox_size:
                overflow = True
            else:
                overflow = False
                self._outbox.append(frame)
                self._cond.notify_all()
        if overflow:
            self.server.say(f"{self.label}未讀取回應，已中斷此連線")
            self.abort()

    def _stop_prompt(self) -> None:
        """Call with ``_cond`` held: a PIN prompt for this session is abandoned."""
        if self._proof is not None:
            self._proof[1].set()

    def finish(self) -> None:
        """Send what is queued, then close (no more requests are taken)."""
        with self._cond:
            self._stop_prompt()
            if not self._closing:
                self._closing = True
                self._outbox.append(None)
                self._requests.clear()
                self._cond.notify_all()

    def abort(self) -> None:
        """Close at once: queued answers are dropped."""
        with self._cond:
            self._stop_prompt()
            self._closing = True
            self._dead = True
            self._requests.clear()
            self._outbox.clear()
            self._cond.notify_all()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def _write_loop(self) -> None:
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._dead or bool(self._outbox))
                    if self._dead:
                        return
                    frame = self._outbox.popleft()
                if frame is None:
                    return
                self.sock.sendall(frame)
        except OSError:
            pass
        finally:
            self.abort()
            self.sock.close()

    # ------------------------------------------------------------------ input

    def _read_loop(self) -> None:
        decoder = wire.FrameDecoder()
        started: float | None = None
        try:
            while True:
                with self._cond:
                    if self._closing:
                        return
                try:
                    data = self.sock.recv(65536)
                except TimeoutError:
                    if started is not None and time.monotonic() - started > FRAME_DEADLINE_S:
                        self._refuse(0, "訊框不完整（逾時）")
                        return
                    continue
                except OSError:
                    return
                if not data:
                    return
                try:
                    payloads = decoder.feed(data)
                except ProtocolError as exc:
                    self._refuse(0, exc.detail)
                    return
                for payload in payloads:
                    if not self._dispatch(payload):
                        return
                started = (started or time.monotonic()) if decoder.pending else None
        finally:
            decoder.wipe()
            self.finish()

    def _refuse(self, msg_id: int, detail: str) -> None:
        """A request this protocol does not allow: say so on both sides and hang up."""
        self.server.say(f"{self.label}送來不允許的訊息（{wire.clean_text(detail)}），已中斷此連線")
        self.send(msg_id, wire.error_to_failure(AgentProtocolError(detail)))
        self.finish()

    def _dispatch(self, payload: bytearray) -> bool:
        """Take one payload; False when the session is to end."""
        try:
            msg_id, message = wire.decode_payload(payload)
        except ProtocolError as exc:
            self._refuse(wire.peek_id(payload), exc.detail)
            return False
        if not self.greeted:
            return self._hello(msg_id, message)
        if not isinstance(message, wire.REQUESTS):
            self._refuse(msg_id, f"{type(message).__name__} 不是此時可送出的請求")
            return False
        if isinstance(message, wire.CancelProof):
            self._cancel(msg_id, message.request)
            return True
        with self._cond:
            if self._closing:
                return False
            if len(self._requests) < self.server.queue_size:
                self._requests.append((msg_id, message))
                self._cond.notify_all()
                return True
            first = not self._flooding
            self._flooding = True
        if first:
            self.server.say(f"{self.label}送出請求的速度超過卡片回應的速度，多餘的請求已回覆忙碌")
        self.send(
            msg_id, wire.error_to_failure(AgentBusy(f"{self.server.queue_size} 個請求等候中"))
        )
        return True

    def _cancel(self, msg_id: int, request: int) -> None:
        """CancelProof: the proof still queued is answered ProofCancelled at once; the
        one being asked has its PIN prompt abandoned (and answers ProofCancelled)."""
        queued = False
        with self._cond:
            for item in list(self._requests):
                if item[0] == request and isinstance(item[1], wire.LoginProof):
                    self._requests.remove(item)
                    queued = True
            if self._proof is not None and self._proof[0] == request:
                self._proof[1].set()
        if queued:
            self.send(request, wire.error_to_failure(ProofCancelled()))
        self.send(msg_id, wire.Ok())

    def _hello(self, msg_id: int, message: wire.Message) -> bool:
        if not isinstance(message, wire.Hello):
            self._refuse(msg_id, "連線後須先送出 Hello（交握）")
            return False
        label = wire.clean_text(message.label) or "（未提供名稱）"
        if message.version != wire.PROTOCOL_VERSION:
            detail = f"協定版本不符：伺服器 {message.version}，本代理程式 {wire.PROTOCOL_VERSION}"
            self.server.say(f"「{label}」：{detail}，已拒絕")
            self.send(msg_id, wire.error_to_failure(AgentProtocolError(detail)))
            self.finish()
            return False
        self.session_label = label
        self.session_id = message.session_id  # printable: the decoder checked it
        self.label = f"工作階段 {self.session_id}（{label}）"
        self.greeted = True
        self.send(
            msg_id, wire.Welcome(wire.PROTOCOL_VERSION, self.server.label, self.server.server_name)
        )
        self.server.say(f"伺服器 {self.server.server_name} 的{self.label}已連線")
        return True

    # ------------------------------------------------------------------ requests

    def _work_loop(self) -> None:
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._closing or bool(self._requests))
                    if self._closing:
                        return
                    msg_id, message = self._requests.popleft()
                    if not self._requests:
                        self._flooding = False
                    if isinstance(message, wire.LoginProof):
                        # Known as under way from this moment, so a CancelProof that
                        # arrives before its prompt is shown still cancels it.
                        self._proof = (msg_id, threading.Event())
                try:
                    reply = self._handle(msg_id, message)
                except CardError as exc:
                    reply = wire.error_to_failure(exc)
                except Exception as exc:
                    log.exception("card agent: %s failed", type(message).__name__)
                    reply = wire.error_to_failure(exc)
                finally:
                    del message
                    with self._cond:
                        self._proof = None
                self.send(msg_id, reply)
        finally:
            self._cleanup()

    def _handle(self, msg_id: int, message: wire.Message) -> wire.Message:
        if isinstance(message, wire.ListReaders):
            return wire.Readers(tuple(self.server.backend.readers()))
        if isinstance(message, wire.Subscribe):
            self.server.add_subscriber(self)
            return wire.Ok()
        if isinstance(message, wire.ReadCard):
            return self._read_card(message.reader)
        if isinstance(message, wire.LoginProof):
            return self._login_proof(msg_id, message)
        raise AgentProtocolError(f"無法處理 {type(message).__name__}")

    @contextlib.contextmanager
    def _reader(self, reader: str) -> Any:
        """A connection to the card in ``reader``, held by this session meanwhile."""
        self.server.claim(self, reader)
        try:
            conn = _connect(self.server.backend, reader, self.server.card_timeout)
            try:
                yield conn
            finally:
                conn.close()
        finally:
            self.server.release(self, reader)

    def _read(self, conn: CardConnection) -> CardRead:
        from card.identity import CardKind
        from card.readers.profiles import read_card
        from card.signing import UNBLOCK_AT

        def refused(cla: int, ins: int) -> None:
            self.server.say(
                f"已拒絕送往「{conn.reader}」的卡片指令：{wire.command_name(ins)}"
                f"（CLA {cla:02X} INS {ins:02X}）"
            )

        factory = self.server.pkcs11
        module_certificate = None
        if factory is not None:

            def module_certificate(reader: str) -> bytes:
                return factory(UNBLOCK_AT[CardKind.MOICA]).reader_certificate(reader)

        return read_card(
            ReadOnlyConnection(conn, refused),
            timeout=self.server.card_timeout,
            module_certificate=module_certificate,
        )

    def _read_card(self, reader: str) -> wire.CardInfo:
        self.server.say(f"{self.label}讀取讀卡機「{wire.clean_text(reader)}」中卡片的憑證")
        with self._reader(reader) as conn:
            read = self._read(conn)
        return wire.CardInfo(
            read.profile.value, read.certificate, read.atr, read.hicos_generation or 0
        )

    def _login_proof(self, msg_id: int, message: wire.LoginProof) -> wire.ProofSignature:
        from card.identity import identity_from_certificate
        from card.signing import sign_challenge, signer_for_kind

        server = self.server
        server.count_proof(self)
        # Built before the card or the person is asked: a field out of range ends here.
        signed = login_message(server.server_name, self.session_id, message.nonce)
        reader = message.reader
        with self._cond:
            under_way = self._proof
        cancel = under_way[1] if under_way and under_way[0] == msg_id else threading.Event()
        if not server.prompt_lock.acquire(blocking=False):
            server.say(f"{self.label}要求登入，但另一個登入要求正在等候輸入密碼，已拒絕")
            raise AgentBusy("另一個登入要求正在等候輸入密碼")
        try:
            with self._cond:
                if self._closing or cancel.is_set():
                    raise ProofCancelled()
            with self._reader(reader) as conn:
                read = self._read(conn)
                if hashlib.sha256(read.certificate).digest() != message.cert_sha256:
                    server.say(
                        f"{self.label}要求以讀卡機「{wire.clean_text(reader)}」中的卡片登入，"
                        "但該卡片不是伺服器畫面所示的卡片，已拒絕（未詢問密碼）"
                    )
                    raise NotTheCardShown()
                identity = identity_from_certificate(read.certificate)
                request = PinRequest(
                    server.server_name,
                    self.session_id,
                    self.session_label,
                    wire.clean_text(identity.name) or "（無姓名）",
                    wire.clean_text(reader),
                )
                server.say(request.describe())
                typed = server.pin_source.ask(request, cancel, server.pin_timeout)
                try:
                    pin = check_pin_format(typed)  # PinFormatError before the card sees it
                finally:
                    wipe(typed)
                try:
                    if cancel.is_set():
                        raise ProofCancelled()
                    factory = server.pkcs11
                    signature = sign_challenge(
                        conn,
                        read,
                        identity,
                        pin,
                        signed,
                        pkcs11=signer_for_kind(factory) if factory is not None else None,
                        timeout=server.card_timeout,
                    )
                finally:
                    wipe(pin)
        except ProofCancelled:
            server.say(f"{self.label}的登入要求已取消，未輸入密碼")
            raise
        except ProofTimedOut:
            server.say(f"{self.label}的登入要求逾時，未輸入密碼")
            raise
        except CardError as exc:
            server.say(f"{self.label}的登入未完成：{wire.clean_text(str(exc))}")
            raise
        finally:
            server.prompt_lock.release()
        server.say(f"已為{self.label}完成登入簽章")
        return wire.ProofSignature(server.server_name, signature)

    def _cleanup(self) -> None:
        self.server.remove_subscriber(self)
        self.server.forget(self)
        if self.greeted:
            self.server.say(f"{self.label}已中斷")


def _connect(backend: ReaderBackend, reader: str, timeout: float) -> CardConnection:
    connect: Any = backend.connect
    try:
        takes_timeout = "timeout" in inspect.signature(connect).parameters
    except (TypeError, ValueError):
        takes_timeout = False
    if takes_timeout:
        return connect(reader, timeout=timeout)
    return backend.connect(reader)


# ---------------------------------------------------------------------- the server


class AgentServer(RunsInWith):
    """Serve ``backend``'s readers on a private UNIX socket (see the module docstring).

    ``server_name``: the host the staff member connects to, put in every login proof;
    the backend's ``subscribe`` delivers its (reader, inserted) events;
    ``pkcs11(unblock_at)`` makes a PKCS#11 signer (HiCOS cards); ``pin_source`` asks
    the person for the PIN (default: this terminal); ``notify(line)`` shows a line to
    the staff member (default: stderr).
    """

    def __init__(
        self,
        backend: ReaderBackend,
        *,
        server_name: str,
        socket_path: Path | str | None = None,
        pkcs11: SignerFactory | None = None,
        pin_source: PinSource | None = None,
        pin_timeout: float = PIN_TIMEOUT_S,
        card_timeout: float = CARD_TIMEOUT_S,
        notify: Callable[[str], None] | None = None,
        label: str | None = None,
        max_sessions: int = 16,
        queue_size: int = 16,
        outbox_size: int = 256,
        io_timeout: float = IO_TIMEOUT_S,
        on_stop: list[Callable[[], None]] | None = None,
    ) -> None:
        self.backend = backend
        self.server_name = check_server_name(server_name)
        self._path = Path(socket_path) if socket_path is not None else None
        self.pkcs11 = pkcs11
        self.pin_source: PinSource = pin_source if pin_source is not None else TerminalPinSource()
        self.pin_timeout = pin_timeout
        self.card_timeout = card_timeout
        # One PIN prompt at a time: the person answers one question, knowing which.
        self.prompt_lock = threading.Lock()
        self._proof_times: collections.deque[float] = collections.deque()
        self._notify = notify if notify is not None else _notify_stderr
        self.label = label or wire.user_at_host()
        self.max_sessions = max_sessions
        self.queue_size = queue_size
        self.outbox_size = outbox_size
        self.io_timeout = io_timeout
        self._on_stop = list(on_stop or [])
        self._lock = threading.RLock()
        self._say_lock = threading.Lock()
        self._sessions: list[_Session] = []
        self._subscribers: list[_Session] = []
        self._owners: dict[str, _Session] = {}
        self._present: set[str] = set()
        self._listener: socket.socket | None = None
        self._inode: int | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._unsubscribe: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return f"AgentServer(socket_path={str(self._path)!r}, sessions={len(self._sessions)})"

    @property
    def socket_path(self) -> Path:
        if self._path is None:
            self._path = default_socket_path()
        return self._path

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> AgentServer:
        if self._thread is not None:
            return self
        listener, inode = _listen(self.socket_path)
        listener.settimeout(0.2)
        self._listener, self._inode = listener, inode
        self._unsubscribe = self.backend.subscribe(self._on_event)
        card_in = getattr(self.backend, "card_in", None)
        if callable(card_in):  # InProcessBackend does not replay what is present
            with self._lock:
                for reader in self.backend.readers():
                    if card_in(reader) is not None:
                        self._present.add(reader)
        self._stopping.clear()
        self._thread = threading.Thread(target=self._accept_loop, name="agent-accept", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving: the socket goes, every session ends (for the server: the card
        was removed)."""
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            with contextlib.suppress(OSError):
                if os.lstat(self.socket_path).st_ino == self._inode:
                    self.socket_path.unlink()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        with self._lock:
            sessions = list(self._sessions)
        for session in sessions:
            session.abort()
        # A session whose card is still working on a command ends when the command
        # does (daemon threads); its socket is already shut.
        deadline = time.monotonic() + min(timeout, 1.0)
        for session in sessions:
            session.join(max(0.0, deadline - time.monotonic()))
        for stop in self._on_stop:
            try:
                stop()
            except Exception:
                log.exception("card agent: stop hook failed")

    def request_stop(self) -> None:
        """Ask :meth:`serve_forever` to stop (safe from a signal handler)."""
        self._stopping.set()

    def serve_forever(self) -> None:
        """Start (if needed) and serve until :meth:`stop` or KeyboardInterrupt."""
        self.start()
        try:
            while not self._stopping.wait(0.5):
                pass
        finally:
            self.stop()

    def sessions(self) -> list[str]:
        """Labels of the connected server sessions."""
        with self._lock:
            return [s.label for s in self._sessions if s.greeted]

    def owner(self, reader: str) -> str | None:
        """The label of the session using ``reader``, if any."""
        with self._lock:
            session = self._owners.get(reader)
            return session.label if session else None

    # ------------------------------------------------------------------ staff-side lines

    def say(self, line: str) -> None:
        with self._say_lock:
            try:
                self._notify(line)
            except Exception:
                log.exception("card agent: notify failed")

    # ------------------------------------------------------------------ accepting

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                time.sleep(0.05)
                continue
            try:
                self._admit(sock)
            except Exception:
                log.exception("card agent: a connection could not be set up")
                sock.close()

    def _admit(self, sock: socket.socket) -> None:
        sock.settimeout(self.io_timeout)
        uid = wire.peer_uid(sock)
        if uid is None:
            self.say("無法確認連線程式的使用者（系統未提供 SO_PEERCRED），已拒絕連線")
            sock.close()
            return
        if uid != os.getuid():
            self.say(f"已拒絕其他使用者（uid {uid}）連線到讀卡代理程式")
            sock.close()
            return
        with self._lock:
            full = len(self._sessions) >= self.max_sessions
            if not full:
                session = _Session(self, sock)
                self._sessions.append(session)
        if full:
            self.say(f"同時連線的工作階段已達上限 {self.max_sessions}，已拒絕新的連線")
            busy = wire.error_to_failure(AgentBusy(f"同時連線已達上限 {self.max_sessions}"))
            with contextlib.suppress(OSError):
                sock.sendall(wire.encode_frame(0, busy))
            sock.close()
            return
        session.start()

    def forget(self, session: _Session) -> None:
        with self._lock:
            if session in self._sessions:
                self._sessions.remove(session)
            for reader, owner in list(self._owners.items()):
                if owner is session:
                    del self._owners[reader]

    # ------------------------------------------------------------------ readers in use

    def count_proof(self, session: _Session) -> None:
        """One more login proof, or TooManyProofs: a person logs in a few times a
        minute at most; a server that asks more often is fishing for a PIN typed in
        haste, whichever connection it asks through."""
        with self._lock:
            now = time.monotonic()
            while self._proof_times and now - self._proof_times[0] >= PROOF_WINDOW_S:
                self._proof_times.popleft()
            refused = len(self._proof_times) >= PROOFS_PER_WINDOW
            if not refused:
                self._proof_times.append(now)
        if refused:
            self.say(f"{session.label}登入要求過於頻繁，已拒絕")
            raise TooManyProofs(PROOFS_PER_WINDOW, PROOF_WINDOW_S)

    def claim(self, session: _Session, reader: str) -> None:
        if reader not in self.backend.readers():
            # As a local reader would answer, and before the name (the server's text)
            # is used or shown anywhere.
            raise NoReader()
        with self._lock:
            owner = self._owners.get(reader)
            if owner is None:
                self._owners[reader] = session
                return
            if owner is session:
                return
        self.say(
            f"{session.label}要求使用讀卡機「{wire.clean_text(reader)}」，"
            f"但{owner.label}正在使用，已拒絕"
        )
        raise ReaderBusy(reader)

    def release(self, session: _Session, reader: str) -> None:
        with self._lock:
            if self._owners.get(reader) is session:
                del self._owners[reader]

    # ------------------------------------------------------------------ card events

    def add_subscriber(self, session: _Session) -> None:
        with self._lock:
            if session not in self._subscribers:
                self._subscribers.append(session)
            for reader in sorted(self._present):
                session.send(0, wire.CardEvent(reader, True))

    def remove_subscriber(self, session: _Session) -> None:
        with self._lock:
            if session in self._subscribers:
                self._subscribers.remove(session)

    def _on_event(self, reader: str, inserted: bool) -> None:
        with self._lock:
            if inserted:
                self._present.add(reader)
            else:
                self._present.discard(reader)
            for session in list(self._subscribers):
                session.send(0, wire.CardEvent(reader, inserted))


# ---------------------------------------------------------------------- real readers


def pcsc_agent(
    socket_path: Path | str | None = None,
    *,
    server_name: str,
    pkcs11: SignerFactory | None = None,
    pin_source: PinSource | None = None,
    notify: Callable[[str], None] | None = None,
    connect_timeout: float = DEFAULT_TIMEOUT_S,
) -> AgentServer:
    """An AgentServer over pcscd (pyscard), whose ReaderMonitor gives the card events."""
    from card.readers.pcsc import PcscBackend

    backend = PcscBackend(connect_timeout=connect_timeout)
    server = AgentServer(
        backend,
        server_name=server_name,
        socket_path=socket_path,
        pkcs11=pkcs11,
        pin_source=pin_source,
        notify=notify,
        on_stop=[backend.close],
    )
    backend.monitor.start()
    return server
