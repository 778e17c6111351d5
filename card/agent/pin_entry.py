"""Where the card agent asks the staff member for the PIN: on its own computer, never
from the server.

:class:`PinSource` is the seam: the agent calls ``ask(request, cancel, timeout)`` and
gets the typed PIN as a new ``bytearray`` (which it wipes after the card has seen it),
or ProofCancelled / ProofTimedOut. Two sources:

* :class:`TerminalPinSource`: the agent's own terminal (``/dev/tty``), echo off, one
  key at a time: Enter sends, an empty line, Esc, Ctrl-C or Ctrl-D cancels;
* :class:`PinentrySource`: a ``pinentry`` program (GnuPG's PIN dialog) spoken to in
  its Assuan protocol (SETTITLE, SETDESC, SETPROMPT, GETPIN → ``D <pin>`` and ``OK``,
  or ``ERR … cancelled``).

Either can be cancelled from another thread (the server's CancelProof, or the server
session going away) by setting ``cancel``: the terminal stops reading, the pinentry
process is killed.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
import termios
import threading
import time
from dataclasses import dataclass
from typing import IO, Protocol

from card.errors import ProofCancelled, ProofTimedOut
from card.pin import wipe

__all__ = [
    "PIN_PROMPT",
    "PinRequest",
    "PinSource",
    "PinentrySource",
    "TerminalPinSource",
    "default_pin_source",
]

#: What the terminal shows when it waits for the PIN (tests wait for it).
PIN_PROMPT = "請在此輸入卡片密碼（輸入時不顯示；Enter 送出，Esc 或 Ctrl-C 取消）："
TITLE = "smis-tui 讀卡代理程式"
# Kept short of any real PIN pad's length: more keys than this are a mistake.
MAX_TYPED = 32
POLL_S = 0.1

_ENTER = (0x0D, 0x0A)
_CANCEL = (0x1B, 0x03, 0x04)  # Esc, Ctrl-C, Ctrl-D
_ERASE = (0x7F, 0x08)
_KILL_LINE = 0x15  # Ctrl-U


@dataclass(frozen=True)
class PinRequest:
    """Who asks for a login with which card: shown to the staff member with the prompt
    (every field already free of control characters)."""

    server_name: str
    session_id: str
    session_label: str
    holder: str
    reader: str

    def describe(self) -> str:
        return (
            f"伺服器 {self.server_name} 的工作階段 {self.session_id}（{self.session_label}）"
            f"要求以 {self.holder} 的卡片登入（讀卡機「{self.reader}」）"
        )


class PinSource(Protocol):
    def ask(self, request: PinRequest, cancel: threading.Event, timeout: float) -> bytearray:
        """The PIN the person typed, as a new bytearray the caller wipes.
        ProofCancelled when the person cancels or ``cancel`` is set, ProofTimedOut
        after ``timeout`` seconds."""
        ...


class _Typed:
    """Keys typed so far (a bytearray wiped on every path out)."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.overflow = False

    def key(self, byte: int) -> bool | None:
        """True: sent (Enter); False: cancelled; None: go on."""
        if byte in _ENTER:
            return True
        if byte in _CANCEL:
            return False
        if byte in _ERASE:
            if self.buffer:
                self.buffer[-1] = 0
                del self.buffer[-1]
        elif byte == _KILL_LINE:
            wipe(self.buffer)
            self.buffer.clear()
            self.overflow = False
        elif len(self.buffer) < MAX_TYPED:
            self.buffer.append(byte)
        else:
            self.overflow = True
        return None

    def wipe(self) -> None:
        wipe(self.buffer)
        self.buffer.clear()


class TerminalPinSource:
    """The PIN from the agent's terminal (``path``, by default its controlling terminal
    ``/dev/tty``)."""

    def __init__(self, path: str = "/dev/tty") -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"TerminalPinSource({self.path!r})"

    def ask(self, request: PinRequest, cancel: threading.Event, timeout: float) -> bytearray:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_NOCTTY)
        except OSError:
            raise ProofCancelled() from None
        try:
            return self._ask(fd, request, cancel, timeout)
        finally:
            os.close(fd)

    def _ask(
        self, fd: int, request: PinRequest, cancel: threading.Event, timeout: float
    ) -> bytearray:
        try:
            saved = termios.tcgetattr(fd)
        except termios.error:
            raise ProofCancelled() from None
        quiet = termios.tcgetattr(fd)
        # No echo, one key at a time, and Ctrl-C a key like any other: it cancels this
        # prompt instead of stopping the agent.
        quiet[3] &= ~(termios.ECHO | termios.ICANON | termios.ISIG | termios.IEXTEN)
        quiet[6][termios.VMIN] = 1
        quiet[6][termios.VTIME] = 0
        typed = _Typed()
        # TCSAFLUSH drops keys typed before the prompt was shown.
        termios.tcsetattr(fd, termios.TCSAFLUSH, quiet)
        try:
            _write(fd, f"\r\n{request.describe()}\r\n{PIN_PROMPT}")
            deadline = time.monotonic() + timeout
            while True:
                if cancel.is_set():
                    raise ProofCancelled()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ProofTimedOut(timeout)
                ready, _, _ = select.select([fd], [], [], min(left, POLL_S))
                if not ready:
                    continue
                # Read into a buffer this code owns, so the keys can be wiped after.
                chunk = bytearray(64)
                count = os.readv(fd, [chunk])
                if not count:
                    wipe(chunk)
                    raise ProofCancelled()
                del chunk[count:]
                try:
                    for byte in chunk:
                        done = typed.key(byte)
                        if done is False:
                            raise ProofCancelled()
                        if done is True:
                            if not typed.buffer:
                                raise ProofCancelled()
                            # Sized once (no growth, so no stray copy of the PIN);
                            # a trailing 0 makes an overlong PIN fail the format check.
                            pin = bytearray(len(typed.buffer) + int(typed.overflow))
                            pin[: len(typed.buffer)] = typed.buffer
                            return pin
                finally:
                    wipe(chunk)
        finally:
            typed.wipe()
            termios.tcsetattr(fd, termios.TCSAFLUSH, saved)
            with contextlib.suppress(OSError):
                _write(fd, "\r\n")


def _write(fd: int, text: str) -> None:
    data = text.encode("utf-8")
    while data:
        data = data[os.write(fd, data) :]


# ---------------------------------------------------------------------- pinentry


def _assuan_escape(text: str) -> str:
    """Assuan line data: %, CR and LF percent-escaped."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _assuan_unescape(data: bytes | bytearray | memoryview) -> bytearray:
    # Sized once and cut at the end: a growing bytearray would leave copies of the PIN
    # behind in memory nobody wipes.
    out = bytearray(len(data))
    size = 0
    index = 0
    while index < len(data):
        byte = data[index]
        if byte == 0x25 and index + 2 < len(data) and _hex(data[index + 1 : index + 3]):
            out[size] = int(bytes(data[index + 1 : index + 3]), 16)
            index += 3
        else:
            out[size] = byte
            index += 1
        size += 1
    out[size:] = bytes(len(out) - size)
    del out[size:]
    return out


def _hex(pair: bytes | bytearray | memoryview) -> bool:
    return len(pair) == 2 and all(chr(b) in "0123456789abcdefABCDEF" for b in pair)


class PinentrySource:
    """The PIN from a ``pinentry`` program's dialog (GnuPG's PIN entry)."""

    def __init__(self, program: str) -> None:
        self.program = program

    def __repr__(self) -> str:
        return f"PinentrySource({self.program!r})"

    def ask(self, request: PinRequest, cancel: threading.Event, timeout: float) -> bytearray:
        try:
            process = subprocess.Popen(
                [self.program],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except OSError:
            raise ProofCancelled() from None
        assert process.stdin is not None and process.stdout is not None
        deadline = time.monotonic() + timeout
        session = _Assuan(process, cancel, deadline, timeout)
        try:
            session.expect_ok()  # the greeting
            for command in _pinentry_options():
                session.command(command, required=False)
            session.command(f"SETTITLE {_assuan_escape(TITLE)}")
            session.command(f"SETDESC {_assuan_escape(request.describe())}")
            session.command(f"SETPROMPT {_assuan_escape('卡片密碼：')}")
            return session.get_pin()
        finally:
            session.close()


def _pinentry_options() -> list[str]:
    options = []
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
        try:
            options.append(f"OPTION ttyname={os.ttyname(fd)}")
        finally:
            os.close(fd)
    except OSError:
        pass
    term = os.environ.get("TERM", "")
    if term:
        options.append(f"OPTION ttytype={_assuan_escape(term)}")
    return options


class _Assuan:
    """The client side of one pinentry conversation, within a deadline; killed when
    ``cancel`` is set."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        cancel: threading.Event,
        deadline: float,
        timeout: float,
    ) -> None:
        self.process = process
        self.cancel = cancel
        self.deadline = deadline
        self.timeout = timeout
        self.pending = bytearray()

    def _send(self, line: str) -> None:
        stdin: IO[bytes] | None = self.process.stdin
        assert stdin is not None
        try:
            stdin.write(line.encode("utf-8") + b"\n")
            stdin.flush()
        except OSError:
            raise ProofCancelled() from None

    def _line(self) -> bytearray:
        stdout: IO[bytes] | None = self.process.stdout
        assert stdout is not None
        fd = stdout.fileno()
        while b"\n" not in self.pending:
            if self.cancel.is_set():
                raise ProofCancelled()
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise ProofTimedOut(self.timeout)
            ready, _, _ = select.select([fd], [], [], min(left, POLL_S))
            if not ready:
                continue
            chunk = bytearray(4096)
            count = os.readv(fd, [chunk])
            if not count:
                raise ProofCancelled()
            self.pending += memoryview(chunk)[:count]
            wipe(chunk)
        end = self.pending.index(b"\n")
        line = self.pending[:end]
        self.pending[: end + 1] = bytes(end + 1)
        del self.pending[: end + 1]
        return line

    def expect_ok(self, *, required: bool = True) -> None:
        while True:
            line = self._line()
            if line.startswith(b"OK"):
                return
            if line.startswith(b"ERR"):
                if required:
                    raise ProofCancelled()
                return
            # Status and comment lines ("S …", "# …") are not answers.

    def command(self, line: str, *, required: bool = True) -> None:
        self._send(line)
        self.expect_ok(required=required)

    def get_pin(self) -> bytearray:
        self._send("GETPIN")
        pin = bytearray()
        try:
            while True:
                line = self._line()
                try:
                    if line.startswith(b"D "):
                        wipe(pin)
                        pin = _assuan_unescape(memoryview(line)[2:])
                    elif line.startswith(b"OK"):
                        if not pin:
                            raise ProofCancelled()
                        out, pin = pin, bytearray()
                        return out
                    elif line.startswith(b"ERR"):
                        raise ProofCancelled()
                finally:
                    wipe(line)
        finally:
            wipe(pin)

    def close(self) -> None:
        wipe(self.pending)
        if self.process.poll() is None:
            with contextlib.suppress(OSError, ProofCancelled):
                self._send("BYE")
            try:
                self.process.wait(0.5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


# ---------------------------------------------------------------------- the default


def default_pin_source(choice: str = "auto") -> PinSource:
    """``terminal``: the agent's terminal; ``pinentry``: the pinentry program on PATH;
    ``auto``: pinentry when one is installed and a graphical display is there to show
    its dialog, else the terminal. ValueError for a pinentry that is not installed."""
    program = shutil.which("pinentry")
    if choice == "pinentry":
        if program is None:
            raise ValueError("找不到 pinentry 程式（例如 apt install pinentry-curses）")
        return PinentrySource(program)
    if choice == "auto" and program is not None:
        if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
            return PinentrySource(program)
    return TerminalPinSource()
