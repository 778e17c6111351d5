"""An in-process reader backend: virtual cards in named slots, no pcscd needed.

Used by the fast unit tests and by the demo on machines without pcscd. Each command
runs the card in a worker thread, so the caller's timeout holds even when a card
hangs (CardUnresponsive), and a card pulled out meanwhile is reported at once
(CardRemoved). Connections keep to PC/SC's rules for sharing a card: inside one
connection's ``transaction()`` the other connections' commands wait, and a card reset
through one connection (:meth:`InProcessBackend.reset_card`, as another program would)
is reported once to every other connection as CardReset.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from card.errors import (
    CardProtocolError,
    CardRemoved,
    CardReset,
    CardUnresponsive,
    NoCard,
    NoReader,
    ReaderBusy,
)
from card.sim.virtual import SimulatedCard
from card.transport import DEFAULT_TIMEOUT_S, CardConnection, Listener, ReaderBackend, Response

__all__ = ["InProcessBackend", "InProcessConnection"]

log = logging.getLogger(__name__)

# Short APDUs answer at most 256 data bytes; allow extended-length answers, no more.
_MAX_ANSWER = 65536 + 2


@dataclass
class _Slot:
    name: str
    card: SimulatedCard | None = None
    generation: int = 0  # bumped on every insert and remove
    lock: threading.Lock = field(default_factory=threading.Lock)  # one command at a time
    holder: object | None = None  # the connection inside a transaction, if any
    resets: int = 0  # bumped on every reset by a connection


@dataclass
class _Call:
    done: bool = False
    answer: bytes | None = None
    removed: bool = False
    error: BaseException | None = None


class InProcessBackend:
    """Named reader slots holding virtual cards; implements ``ReaderBackend``."""

    def __init__(self, readers: Iterable[str] = ()) -> None:
        self._slots: dict[str, _Slot] = {}
        self._cond = threading.Condition()
        self._listeners: list[Listener] = []
        for name in readers:
            self.add_reader(name)

    def __repr__(self) -> str:
        return f"InProcessBackend(readers={self.readers()!r})"

    # ------------------------------------------------------------------ readers and cards

    def add_reader(self, reader: str) -> None:
        with self._cond:
            self._slots.setdefault(reader, _Slot(reader))

    def readers(self) -> list[str]:
        with self._cond:
            return list(self._slots)

    def card_in(self, reader: str) -> SimulatedCard | None:
        with self._cond:
            slot = self._slots.get(reader)
            return slot.card if slot else None

    def insert(self, reader: str, card: SimulatedCard) -> None:
        """Put ``card`` into ``reader`` (created if new), powering it up.

        A card already there is removed first (both events are announced).
        """
        if self.card_in(reader) is not None:
            self.remove(reader)
        card.reset()
        with self._cond:
            slot = self._slots.setdefault(reader, _Slot(reader))
            slot.card = card
            slot.generation += 1
            slot.holder = None
            self._cond.notify_all()
        self._announce(reader, True)

    def remove(self, reader: str) -> None:
        """Pull the card out of ``reader``; commands in flight end with CardRemoved."""
        with self._cond:
            slot = self._slots.get(reader)
            if slot is None or slot.card is None:
                return
            card, slot.card = slot.card, None
            slot.generation += 1
            slot.holder = None
            self._cond.notify_all()
        card.power_off()
        self._announce(reader, False)

    # ------------------------------------------------------------------ events

    def subscribe(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback(reader, inserted)`` on every insert/remove; returns unsubscribe."""
        with self._cond:
            self._listeners.append(callback)

        def unsubscribe() -> None:
            with self._cond:
                if callback in self._listeners:
                    self._listeners.remove(callback)

        return unsubscribe

    def _announce(self, reader: str, inserted: bool) -> None:
        with self._cond:
            listeners = list(self._listeners)
        for callback in listeners:
            try:
                callback(reader, inserted)
            except Exception:
                log.exception("card event listener failed (%s, inserted=%s)", reader, inserted)

    # ------------------------------------------------------------------ connections

    def connect(self, reader: str) -> InProcessConnection:
        with self._cond:
            slot = self._slots.get(reader)
            if slot is None:
                raise NoReader()
            if slot.card is None:
                raise NoCard(reader)
            return InProcessConnection(self, slot, slot.card, slot.generation)

    def reset_card(self, reader: str, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        """Reset the card in ``reader`` as another program would (SCardReconnect or
        SCardDisconnect with SCARD_RESET_CARD): it waits for a transaction in progress
        (ReaderBusy after ``timeout``); every open connection then gets CardReset once."""
        with self._cond:
            slot = self._slots.get(reader)
            if slot is None or slot.card is None:
                raise NoCard(reader)
            if not self._cond.wait_for(lambda: slot.holder is None, timeout):
                raise ReaderBusy(reader)
            card = slot.card
            slot.resets += 1
        with slot.lock:
            card.reset()

    def _run(self, slot: _Slot, card: SimulatedCard, generation: int, apdu: bytes) -> _Call:
        """Start ``card.process(apdu)`` in a worker thread; the caller waits on the call."""
        call = _Call()

        def work() -> None:
            with slot.lock:
                with self._cond:
                    stale = slot.generation != generation
                if stale:
                    call.removed = True
                else:
                    try:
                        call.answer = card.process(apdu)
                    except CardRemoved:
                        call.removed = True
                    except BaseException as exc:  # a bug in a virtual card: re-raised
                        call.error = exc
            with self._cond:
                call.done = True
                # Pulled out before the answer came back: the answer is void.
                call.removed = call.removed or slot.generation != generation
                self._cond.notify_all()

        threading.Thread(target=work, name=f"card:{slot.name}", daemon=True).start()
        return call

    def _vanished(self, slot: _Slot, generation: int) -> None:
        """The card raised CardRemoved mid-command: empty the slot, as a reader would."""
        with self._cond:
            if slot.generation != generation:
                return
        self.remove(slot.name)


class InProcessConnection:
    """A ``CardConnection`` to the card that was in the slot when it was opened."""

    def __init__(
        self, backend: InProcessBackend, slot: _Slot, card: SimulatedCard, generation: int
    ) -> None:
        self.reader = slot.name
        self._backend = backend
        self._slot = slot
        self._card = card
        self._generation = generation
        self._closed = False
        self._resets_seen = slot.resets
        self._transactions = 0  # depth of nested transaction() blocks

    def __repr__(self) -> str:
        return f"InProcessConnection(reader={self.reader!r}, closed={self._closed})"

    def _check(self) -> None:
        if self._closed:
            raise RuntimeError("connection is closed")
        if self._slot.generation != self._generation:
            raise CardRemoved()

    def atr(self) -> bytes:
        self._check()
        return self._card.atr

    def _wait_for_the_card(self, timeout: float) -> None:
        """Wait while another connection holds a transaction; then CardReset once if the
        card was reset since this connection last used it. Call with the lock held."""
        slot = self._slot
        free = self._backend._cond.wait_for(
            lambda: slot.holder in (None, self) or slot.generation != self._generation, timeout
        )
        self._check()
        if not free:
            raise ReaderBusy(self.reader)
        if slot.resets != self._resets_seen:
            self._resets_seen = slot.resets
            raise CardReset()

    @contextmanager
    def transaction(self, timeout: float = DEFAULT_TIMEOUT_S) -> Iterator[None]:
        """The card to this connection alone for the block (as PC/SC's transaction)."""
        with self._backend._cond:
            self._check()
            if self._transactions == 0:
                self._wait_for_the_card(timeout)
                self._slot.holder = self
            self._transactions += 1
        try:
            yield
        finally:
            with self._backend._cond:
                self._transactions -= 1
                if self._transactions == 0 and self._slot.holder is self:
                    self._slot.holder = None
                    self._backend._cond.notify_all()

    def transmit(self, apdu: bytes, timeout: float = DEFAULT_TIMEOUT_S) -> Response:
        self._check()
        if timeout <= 0:
            raise CardUnresponsive(timeout)
        with self._backend._cond:
            self._wait_for_the_card(timeout)
        call = self._backend._run(self._slot, self._card, self._generation, apdu)
        del apdu  # keep secrets (VERIFY data) out of this frame from here on
        cond = self._backend._cond
        with cond:
            finished = cond.wait_for(
                lambda: call.done or self._slot.generation != self._generation, timeout
            )
            removed = self._slot.generation != self._generation
        if call.removed:
            self._backend._vanished(self._slot, self._generation)
            raise CardRemoved()
        if removed and not call.done:
            raise CardRemoved()
        if not finished:
            raise CardUnresponsive(timeout)
        if call.error is not None:
            raise call.error
        answer = call.answer if call.answer is not None else b""
        if len(answer) < 2:
            raise CardProtocolError(f"回應只有 {len(answer)} 位元組，缺少狀態碼")
        if len(answer) > _MAX_ANSWER:
            raise CardProtocolError(f"回應過長（{len(answer)} 位元組）")
        return Response(bytes(answer[:-2]), answer[-2], answer[-1])

    def close(self) -> None:
        self._closed = True
        with self._backend._cond:
            if self._slot.holder is self:  # closing ends the transaction, as in PC/SC
                self._slot.holder = None
                self._backend._cond.notify_all()


if TYPE_CHECKING:  # mypy checks that these keep to card.transport's protocols
    _backend: type[ReaderBackend] = InProcessBackend
    _connection: type[CardConnection] = InProcessConnection
