"""The card agent: the staff member's card readers, served on a private UNIX socket
that ``ssh -R`` forwards to the kiosk server (like ssh-agent forwarding).

:class:`AgentServer` serves any ReaderBackend (PcscBackend in real use, see
:func:`pcsc_agent`; InProcessBackend in tests) with the protocol of
card.agent.protocol:

* the socket is created with mode 0600 in ``$XDG_RUNTIME_DIR`` (or a private 0700
  directory under /tmp), and only processes of the same user (or root) may connect
  (SO_PEERCRED);
* each server session gets three threads: a reader that decodes frames, a worker that
  runs its requests in order, a writer that sends answers and card events. Requests
  wait in a bounded queue: a session that sends commands faster than the card answers
  gets AgentBusy at once for the excess; a session that does not read its answers is
  dropped. A malformed frame gets a clear ProtocolError answer; an oversized or empty
  frame (after which the stream cannot be trusted) also ends that session. Other
  sessions are never affected;
* one session at a time per card reader (another gets ReaderBusy);
* commands that change or unblock a PIN or write to the card are refused
  (card.agent.protocol.FORBIDDEN_INS), with a clear error to the server and a line
  on the staff member's side;
* the staff member sees which server session connects, uses a reader, signs, and
  leaves (``notify``);
* HiCOS cards sign through the vendor's PKCS#11 module on the staff side
  (``pkcs11``); the PIN only passes through, it is never stored.

APDUs and PINs are never logged or printed.
"""

from __future__ import annotations

import collections
import contextlib
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
from card.agent.protocol import AgentBusy, AgentProtocolError, CommandRefused, ProtocolError
from card.errors import (
    CardError,
    CardProtocolError,
    CardTokenNotFound,
    CardUnresponsive,
    Pkcs11Unavailable,
    ReaderBusy,
)
from card.pin import wipe
from card.transport import DEFAULT_TIMEOUT_S, CardConnection, ReaderBackend, RunsInWith

if TYPE_CHECKING:
    from card.signing import SignerFactory

__all__ = [
    "SOCKET_NAME",
    "AgentServer",
    "AgentStartError",
    "default_socket_path",
    "pcsc_agent",
    "runtime_dir",
]

log = logging.getLogger(__name__)

SOCKET_NAME = "smis-card-agent.sock"
# The longest a card command may take, whatever the server asks for.
MAX_TIMEOUT_S = 60.0
# A frame that started must be complete within this long.
FRAME_DEADLINE_S = 10.0
# Socket timeout: a send that cannot progress this long drops the session.
IO_TIMEOUT_S = 5.0


class AgentStartError(Exception):
    """The agent cannot start (socket path unsafe or in use); the message says why."""


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
        self.greeted = False
        self.subscribed = False
        self.handles: dict[int, tuple[str, CardConnection]] = {}
        self._handle_ids = itertools.count(1)
        self._cond = threading.Condition()
        self._requests: collections.deque[tuple[int, wire.Message]] = collections.deque()
        self._outbox: collections.deque[bytes | None] = collections.deque()
        self._closing = False  # no more requests; the writer ends after the outbox
        self._dead = False  # the socket is shut
        self._flooding = False
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

    def finish(self) -> None:
        """Send what is queued, then close (no more requests are taken)."""
        with self._cond:
            if not self._closing:
                self._closing = True
                self._outbox.append(None)
                self._requests.clear()
                self._cond.notify_all()

    def abort(self) -> None:
        """Close at once: queued answers are dropped."""
        with self._cond:
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
                        self._protocol_error(ProtocolError("訊框不完整（逾時）"), 0, fatal=True)
                        return
                    continue
                except OSError:
                    return
                if not data:
                    return
                try:
                    payloads = decoder.feed(data)
                except ProtocolError as exc:
                    self._protocol_error(exc, 0, fatal=True)
                    return
                for payload in payloads:
                    try:
                        self._dispatch(payload)
                    finally:
                        wipe(payload)  # a VERIFY or a PKCS#11 request carries the PIN
                started = (started or time.monotonic()) if decoder.pending else None
        finally:
            decoder.wipe()
            self.finish()

    def _protocol_error(self, exc: ProtocolError, msg_id: int, *, fatal: bool) -> None:
        self.server.say(
            f"{self.label}送來格式錯誤的訊息（{exc.detail}），已回覆錯誤"
            + ("並中斷此連線" if fatal else "")
        )
        self.send(msg_id, wire.error_to_failure(AgentProtocolError(exc.detail)))
        if fatal:
            self.finish()

    def _dispatch(self, payload: bytearray) -> None:
        try:
            msg_id, message = wire.decode_payload(payload)
        except ProtocolError as exc:
            self._protocol_error(exc, wire.peek_id(payload), fatal=not self.greeted)
            return
        if not self.greeted:
            self._hello(msg_id, message)
            return
        if isinstance(message, wire.Hello) or not isinstance(message, wire.REQUESTS):
            detail = f"{type(message).__name__} 不是此時可送出的請求"
            self._protocol_error(ProtocolError(detail), msg_id, fatal=False)
            return
        with self._cond:
            if self._closing:
                return
            # A Disconnect is let through a full queue (up to a harder bound), so a
            # flooding session can still let go of its card.
            limit = self.server.queue_size * (4 if isinstance(message, wire.Disconnect) else 1)
            if len(self._requests) < limit:
                self._requests.append((msg_id, message))
                self._cond.notify_all()
                return
            first = not self._flooding
            self._flooding = True
        if first:
            self.server.say(
                f"{self.label}送出卡片指令的速度超過卡片回應的速度，多餘的指令已回覆忙碌"
            )
        self.send(
            msg_id, wire.error_to_failure(AgentBusy(f"{self.server.queue_size} 個指令等候中"))
        )

    def _hello(self, msg_id: int, message: wire.Message) -> None:
        if not isinstance(message, wire.Hello):
            self._protocol_error(ProtocolError("連線後須先送出 Hello（交握）"), msg_id, fatal=True)
            return
        label = wire.clean_text(message.label) or "（未提供名稱）"
        if message.version != wire.PROTOCOL_VERSION:
            detail = f"協定版本不符：伺服器 {message.version}，本代理程式 {wire.PROTOCOL_VERSION}"
            self.server.say(f"{label}：{detail}，已拒絕")
            self.send(msg_id, wire.error_to_failure(AgentProtocolError(detail)))
            self.finish()
            return
        self.label = f"「{label}」"
        self.greeted = True
        self.send(
            msg_id,
            wire.Welcome(wire.PROTOCOL_VERSION, self.server.label, self.server.pkcs11 is not None),
        )
        self.server.say(f"伺服器工作階段已連線：{self.label}")

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
                try:
                    reply = self._handle(message)
                except CardError as exc:
                    reply = wire.error_to_failure(exc)
                except Exception as exc:
                    log.exception("card agent: %s failed", type(message).__name__)
                    reply = wire.error_to_failure(exc)
                finally:
                    del message
                self.send(msg_id, reply)
        finally:
            self._cleanup()

    def _handle(self, message: wire.Message) -> wire.Message:
        if isinstance(message, wire.Transmit):
            return self._transmit(message)
        if isinstance(message, wire.ListReaders):
            return wire.Readers(tuple(self.server.backend.readers()))
        if isinstance(message, wire.Connect):
            return self._connect(message)
        if isinstance(message, wire.Disconnect):
            self._disconnect(message.handle)
            return wire.Ok()
        if isinstance(message, wire.Subscribe):
            self.server.add_subscriber(self)
            return wire.Ok()
        if isinstance(message, wire.Pkcs11Sign):
            return self._pkcs11_sign(message)
        raise AgentProtocolError(f"無法處理 {type(message).__name__}")

    def _connect(self, message: wire.Connect) -> wire.Connected:
        reader = message.reader
        self.server.claim(self, reader)
        try:
            conn = _connect(self.server.backend, reader, _seconds(message.timeout_ms))
        except BaseException:
            if not self._holds(reader):
                self.server.release(self, reader)
            raise
        try:
            atr = conn.atr()
        except BaseException:
            conn.close()
            if not self._holds(reader):
                self.server.release(self, reader)
            raise
        first = not self._holds(reader)
        handle = next(self._handle_ids)
        self.handles[handle] = (reader, conn)
        if first:
            self.server.say(f"{self.label}正在使用讀卡機「{reader}」中的卡片")
        return wire.Connected(handle, atr)

    def _holds(self, reader: str) -> bool:
        return any(name == reader for name, _ in self.handles.values())

    def _disconnect(self, handle: int) -> None:
        entry = self.handles.pop(handle, None)
        if entry is None:
            return
        reader, conn = entry
        try:
            conn.close()
        except Exception:
            log.exception("card agent: closing a connection failed")
        if not self._holds(reader):
            self.server.release(self, reader)
            self.server.say(f"{self.label}已結束使用讀卡機「{reader}」")

    def _transmit(self, message: wire.Transmit) -> wire.Answer:
        entry = self.handles.get(message.handle)
        if entry is None:
            raise AgentProtocolError(f"沒有編號 {message.handle} 的卡片連線")
        reader, conn = entry
        apdu = message.apdu
        if len(apdu) < 4:
            raise AgentProtocolError(f"卡片指令只有 {len(apdu)} 位元組（至少 4）")
        ins = apdu[1]
        name = wire.forbidden_command(ins)
        if name is not None:
            self.server.say(
                f"已拒絕{self.label}送往「{reader}」的卡片指令：{name}（INS {ins:02X}）；"
                "本代理程式不變更、不解鎖密碼，也不寫入卡片"
            )
            raise CommandRefused(ins)
        response = conn.transmit(apdu, _seconds(message.timeout_ms))
        return wire.Answer(response.data + bytes((response.sw1, response.sw2)))

    def _pkcs11_sign(self, message: wire.Pkcs11Sign) -> wire.Signature:
        factory = self.server.pkcs11
        if factory is None:
            raise Pkcs11Unavailable("讀卡代理程式未設定 PKCS#11 模組（--pkcs11-module）")
        self.server.say(f"{self.label}請卡片透過 PKCS#11 模組簽署登入挑戰")
        timeout = _seconds(message.timeout_ms)
        pin = bytearray(message.pin)
        unblock_at = wire.clean_text(message.unblock_at)
        key_label = wire.clean_text(message.key_label) or "SIGN"
        data = message.data
        certificate = message.certificate
        if not certificate:
            # Without the certificate no token can be told to be the kiosk's card.
            wipe(pin)
            raise CardTokenNotFound()
        result: list[bytes] = []
        errors: list[BaseException] = []
        done = threading.Event()

        def work() -> None:
            try:
                signer = factory(unblock_at)
                result.append(signer.sign(pin, data, certificate=certificate, key_label=key_label))
            except BaseException as exc:
                errors.append(exc)
            finally:
                wipe(pin)
                done.set()

        threading.Thread(target=work, name="agent-pkcs11", daemon=True).start()
        if not done.wait(timeout):
            raise CardUnresponsive(timeout)
        if errors:
            raise errors[0]
        return wire.Signature(result[0])

    def _cleanup(self) -> None:
        self.server.remove_subscriber(self)
        for handle in list(self.handles):
            self._disconnect(handle)
        self.server.forget(self)
        if self.greeted:
            self.server.say(f"伺服器工作階段已中斷：{self.label}")


def _seconds(timeout_ms: int) -> float:
    return min(timeout_ms / 1000, MAX_TIMEOUT_S)


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

    The backend's ``subscribe`` delivers its (reader, inserted) events;
    ``pkcs11(unblock_at)`` makes a PKCS#11
    signer; ``notify(line)`` shows a line to the staff member (default: stderr).
    """

    def __init__(
        self,
        backend: ReaderBackend,
        *,
        socket_path: Path | str | None = None,
        pkcs11: SignerFactory | None = None,
        notify: Callable[[str], None] | None = None,
        label: str | None = None,
        max_sessions: int = 16,
        queue_size: int = 16,
        outbox_size: int = 256,
        io_timeout: float = IO_TIMEOUT_S,
        on_stop: list[Callable[[], None]] | None = None,
    ) -> None:
        self.backend = backend
        self._path = Path(socket_path) if socket_path is not None else None
        self.pkcs11 = pkcs11
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
        if uid is not None and uid not in (os.getuid(), 0):
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

    def claim(self, session: _Session, reader: str) -> None:
        with self._lock:
            owner = self._owners.get(reader)
            if owner is None:
                self._owners[reader] = session
                return
            if owner is session:
                return
        self.say(f"{session.label}要求使用讀卡機「{reader}」，但{owner.label}正在使用，已拒絕")
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
    pkcs11: SignerFactory | None = None,
    notify: Callable[[str], None] | None = None,
    connect_timeout: float = DEFAULT_TIMEOUT_S,
) -> AgentServer:
    """An AgentServer over pcscd (pyscard), whose ReaderMonitor gives the card events."""
    from card.readers.pcsc import PcscBackend

    backend = PcscBackend(connect_timeout=connect_timeout)
    server = AgentServer(
        backend,
        socket_path=socket_path,
        pkcs11=pkcs11,
        notify=notify,
        on_stop=[backend.close],
    )
    backend.monitor.start()
    return server
