"""How APDUs reach a card: pyscard through pcscd, the remote card agent, or an
in-process virtual card (docs/architecture.md, "Cards").

Profiles (card.readers.piv, card.readers.hicos) only see a :class:`CardConnection`;
they never know which transport is underneath. :class:`OpenConnection` is the
plumbing the PC/SC and agent connections share.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

from card.errors import CardError, NoReader

# Every card operation gives up after this long: a silent card never hangs the kiosk.
DEFAULT_TIMEOUT_S = 5.0

Listener = Callable[[str, bool], None]
"""``listener(reader, inserted)``: a card went into or came out of ``reader``."""


@dataclass(frozen=True)
class Response:
    data: bytes
    sw1: int
    sw2: int

    @property
    def sw(self) -> int:
        return (self.sw1 << 8) | self.sw2

    @property
    def ok(self) -> bool:
        return self.sw == 0x9000


class CardConnection(Protocol):
    """One open connection to the card in one reader."""

    reader: str

    def atr(self) -> bytes: ...

    def transmit(self, apdu: bytes, timeout: float = DEFAULT_TIMEOUT_S) -> Response:
        """Send one command APDU; raises card.errors.CardRemoved / CardUnresponsive, or
        CardReset when another program reset the card since this connection last used
        it (the connection has then taken note of the reset and can go on)."""
        ...

    def transaction(self, timeout: float = DEFAULT_TIMEOUT_S) -> AbstractContextManager[None]:
        """``with conn.transaction():`` no other program's command reaches the card
        inside the block (PC/SC part 5 SCardBeginTransaction / SCardEndTransaction), so
        a multi-APDU operation (SELECT … VERIFY … GENERAL AUTHENTICATE) sees the card
        as it left it. Entering raises card.errors.CardReset when another program reset
        the card since this connection last used it (the PIN it verified and the
        application it selected are gone; the connection has taken note, so a new
        attempt may follow), ReaderBusy when another program keeps the card longer
        than ``timeout``."""
        ...

    def close(self) -> None: ...


class ReaderBackend(Protocol):
    def readers(self) -> list[str]:
        """Reader names; raises card.errors.PcscUnavailable when the service is down."""
        ...

    def connect(self, reader: str) -> CardConnection:
        """Raises card.errors.NoCard when the reader is empty."""
        ...

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(reader, inserted)`` on every card insert and removal, from a
        background thread (keep it short); returns a function that unsubscribes it.

        PC/SC and the agent first tell a new listener about the cards already present;
        the in-process backend tells only of what happens from then on."""
        ...


def require_readers(backend: ReaderBackend) -> list[str]:
    """The backend's reader names; NoReader when there are none."""
    names = backend.readers()
    if not names:
        raise NoReader()
    return names


class ClosesOnExit:
    """``with thing:`` closes it at the end of the block."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class RunsInWith(ClosesOnExit):
    """``with thing:`` starts it, and stops it at the end of the block."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self, timeout: float = 5.0) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def close(self) -> None:
        self.stop()


class OpenConnection(ClosesOnExit):
    """What a connection to a card held elsewhere (pcscd, the card agent) keeps.

    ``_lock`` orders the commands; ``_dead`` is set once the card cannot be trusted
    any more (it timed out, was pulled out, the service went away) and makes the error
    every later command raises, before anything is sent.
    """

    def __init__(self, reader: str, atr: bytes) -> None:
        self.reader = reader
        self._atr = atr
        self._lock = threading.Lock()
        self._closed = False
        self._dead: Callable[[], CardError] | None = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("dead" if self._dead else "open")
        return f"{type(self).__name__}(reader={self.reader!r}, {state})"

    def atr(self) -> bytes:
        if self._closed:
            raise RuntimeError("connection is closed")
        return self._atr

    def _check_open(self) -> None:
        """Call with ``_lock`` held, before a command: RuntimeError once closed, the
        connection's own error once dead."""
        if self._closed:
            raise RuntimeError("connection is closed")
        if self._dead is not None:
            raise self._dead()
