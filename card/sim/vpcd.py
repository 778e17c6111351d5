"""Put a virtual card into pcscd's vsmartcard-vpcd reader, like inserting it.

vpcd (Debian package ``vsmartcard-vpcd``) is a pcscd driver whose readers
("Virtual PCD 00 00", "Virtual PCD 00 01", ...) listen on TCP ports 35963, 35964, ...
A connected client *is* the card in that reader; closing the socket pulls it out.

Framing, both ways: 2-byte big-endian length + payload. From vpcd, a 1-byte payload is
a control byte (0 power off, 1 power on, 2 reset, 4 "send your ATR", answered with the
ATR); anything longer is a command APDU, answered with the card's response APDU.

The card object needs ``atr``, ``process(apdu) -> response``, ``power_off()`` and
``reset()`` (card.sim.virtual.SimulatedCard). APDU contents are never logged.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
from typing import Self

from card.errors import PcscUnavailable
from card.sim.virtual import SimulatedCard
from card.transport import ClosesOnExit

__all__ = ["DEFAULT_PORT", "VPCD_HOST", "VpcdCard", "default_port"]

log = logging.getLogger(__name__)

VPCD_HOST = "127.0.0.1"
DEFAULT_PORT = 35963  # reader "Virtual PCD 00 00"; "00 01" is DEFAULT_PORT + 1
PORT_ENV = "SMIS_VPCD_PORT"  # test-services.sh exports the port of its private pcscd

CTRL_OFF = 0
CTRL_ON = 1
CTRL_RESET = 2
CTRL_ATR = 4

# The answer to a command the card object failed on: 6F00 "no precise diagnosis".
_SW_INTERNAL_ERROR = b"\x6f\x00"


def default_port() -> int:
    """The first vpcd port: ``$SMIS_VPCD_PORT`` or 35963."""
    value = os.environ.get(PORT_ENV, "").strip()
    return int(value) if value else DEFAULT_PORT


class VpcdCard(ClosesOnExit):
    """One virtual card, inserted into (``insert``) and pulled out of (``remove``) a
    vpcd reader. Served from a daemon thread; thread-safe.

    While inserted, a dropped connection (pcscd restarted) is re-established, as a card
    stays in its reader when the PC/SC service restarts.
    """

    def __init__(
        self,
        card: SimulatedCard,
        port: int | None = None,
        *,
        host: str = VPCD_HOST,
        connect_timeout: float = 5.0,
    ) -> None:
        self.card = card
        self.port = default_port() if port is None else port
        self.host = host
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._seen = threading.Event()
        self.commands = 0  # command APDUs answered (for tests and benchmarks)

    def __repr__(self) -> str:
        state = "inserted" if self.inserted else "removed"
        return f"<VpcdCard {self.host}:{self.port} {state}>"

    @property
    def inserted(self) -> bool:
        return self._thread is not None and not self._stop.is_set()

    # ------------------------------------------------------------------ insert / remove

    def insert(self) -> None:
        """Connect to vpcd and serve the card until :meth:`remove`.

        Raises card.errors.PcscUnavailable when nothing listens on the port (pcscd not
        running or without vpcd)."""
        with self._lock:
            if self.inserted:
                return
            sock = self._connect(self.connect_timeout)
            self._stop = threading.Event()
            self._seen = threading.Event()
            self._sock = sock
            self._thread = threading.Thread(
                target=self._serve, args=(self._stop, sock), name=f"vpcd-{self.port}", daemon=True
            )
            self._thread.start()

    def remove(self) -> None:
        """Pull the card out: close the connection; pcscd sees the removal. Does not
        wait for a command the card object is still working on (it goes nowhere)."""
        with self._lock:
            self._thread = None
            self._stop.set()
            self._close_socket()

    def wait_until_seen(self, timeout: float = 5.0) -> bool:
        """Wait until vpcd has asked for the ATR (pcscd polls the reader)."""
        return self._seen.wait(timeout)

    def __enter__(self) -> Self:
        self.insert()
        return self

    def close(self) -> None:
        """Pull the card out (:meth:`remove`), as leaving a ``with`` block does."""
        self.remove()

    # ------------------------------------------------------------------ internals

    def _connect(self, timeout: float) -> socket.socket:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except OSError as exc:
            raise PcscUnavailable(
                f"虛擬讀卡機 {self.host}:{self.port} 無法連線（{exc.strerror or type(exc).__name__}）"
            ) from None
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _close_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def _serve(self, stop: threading.Event, sock: socket.socket) -> None:
        backoff = 0.05
        while not stop.is_set():
            try:
                self._serve_connection(stop, sock)
            except OSError:
                pass
            if stop.is_set():
                return
            # The connection dropped while the card is still inserted: pcscd went away.
            # Its reader's power went with it, so the card starts cold when the next
            # pcscd powers it up, as a real card does: no verified PIN, no selected
            # application and no half-received command chain survives (a chain cut
            # off by a killed pcscd would otherwise answer the next login's SELECT
            # with 6883). Then reconnect (with backoff) until pcscd is back or the card
            # is removed.
            self._power_off()
            log.info("vpcd %s:%s connection lost; reconnecting", self.host, self.port)
            while not stop.is_set():
                stop.wait(backoff)
                backoff = min(backoff * 2, 1.0)
                with self._lock:
                    if stop.is_set():
                        return
                    try:
                        sock = self._connect(1.0)
                    except PcscUnavailable:
                        continue
                    self._sock = sock
                backoff = 0.05
                break

    def _serve_connection(self, stop: threading.Event, sock: socket.socket) -> None:
        while not stop.is_set():
            header = _recv_exactly(sock, 2)
            if header is None:
                return
            (length,) = struct.unpack(">H", header)
            payload = _recv_exactly(sock, length) if length else b""
            if payload is None:
                return
            answer = self._handle(payload)
            if answer is not None:
                sock.sendall(struct.pack(">H", len(answer)) + answer)

    def _power_off(self) -> None:
        try:
            self.card.power_off()
        except Exception as exc:  # a broken card object must not stop the reader
            log.warning("virtual card failed to power off: %s", type(exc).__name__)

    def _handle(self, payload: bytes) -> bytes | None:
        if len(payload) == 1:
            control = payload[0]
            if control == CTRL_ATR:
                self._seen.set()
                return bytes(self.card.atr)
            try:
                if control == CTRL_OFF:
                    self.card.power_off()
                elif control == CTRL_RESET:
                    self.card.reset()
                # CTRL_ON: nothing to do; vpcd asks for the ATR next.
            except Exception as exc:  # a broken card object must not stop the reader
                log.warning(
                    "virtual card failed on vpcd control %d: %s", control, type(exc).__name__
                )
            return None
        self.commands += 1
        try:
            answer = bytes(self.card.process(payload))
        except Exception as exc:
            log.warning("virtual card failed on a command: %s", type(exc).__name__)
            return _SW_INTERNAL_ERROR
        if len(answer) < 2 or len(answer) > 0xFFFF:
            log.warning("virtual card gave a %d-byte answer; sending 6F00", len(answer))
            return _SW_INTERNAL_ERROR
        return answer


# vpcd writes the length and the payload with Nagle on; with Linux's delayed ACKs each
# exchange then waited ~40 ms. Quick ACKs (re-armed before every read, as the kernel
# drops the flag) bring an APDU round trip through pcscd down to a fraction of 1 ms.
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    """``size`` bytes, or None when the peer closed the connection."""
    chunks = []
    remaining = size
    while remaining:
        if _QUICKACK is not None:
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        chunk = sock.recv(remaining)
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
