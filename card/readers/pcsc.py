"""PC/SC through pyscard and pcscd: a ReaderBackend, its connections, a reader monitor.

* :class:`PcscBackend` lists readers and connects (T=0 or T=1, shared, the card reset
  on close so no verified PIN outlives the session).
* :class:`PcscConnection` sends APDUs. pyscard's transmit has no timeout, so every
  PC/SC call runs on the connection's own daemon thread and the caller waits at most
  ``timeout`` seconds; a connection that timed out is dead (later calls fail at once)
  and is disconnected as soon as the call underneath returns.
* :class:`ReaderMonitor` reports card insertions and removals per reader from a
  background thread (SCardGetStatusChange); it survives pcscd restarts and readers that
  disappear and come back.

pyscard errors become card.errors: pcscd not running or gone → PcscUnavailable, no
such reader (or it was unplugged) → NoReader, empty reader → NoCard, card pulled out →
CardRemoved, card reset by another application → CardReset (the connection acknowledges
the reset with SCardReconnect and stays usable), no answer in time or a mute card →
CardUnresponsive, another application holding the card exclusively → ReaderBusy,
anything else → CardProtocolError. APDUs are never logged (a VERIFY carries the PIN).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from smartcard import scard
from smartcard.CardConnection import CardConnection as _PyscardConnection
from smartcard.Exceptions import (
    CardServiceNotFoundException,
    CardServiceStoppedException,
    NoCardException,
    SmartcardException,
)
from smartcard.pcsc.PCSCExceptions import BaseSCardException
from smartcard.System import readers as _pyscard_readers

from card.errors import (
    CardError,
    CardProtocolError,
    CardRemoved,
    CardReset,
    CardUnresponsive,
    NoCard,
    NoReader,
    PcscUnavailable,
    ReaderBusy,
)
from card.transport import (
    DEFAULT_TIMEOUT_S,
    ClosesOnExit,
    Listener,
    OpenConnection,
    Response,
    RunsInWith,
    require_readers,
)

__all__ = [
    "CardEventCallback",
    "PcscBackend",
    "PcscConnection",
    "ReaderMonitor",
    "ServiceCallback",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


def _u32(hresult: int) -> int:
    return int(hresult) & 0xFFFFFFFF


S_SUCCESS = _u32(scard.SCARD_S_SUCCESS)
E_TIMEOUT = _u32(scard.SCARD_E_TIMEOUT)
E_CANCELLED = _u32(scard.SCARD_E_CANCELLED)
E_NO_READERS = _u32(scard.SCARD_E_NO_READERS_AVAILABLE)
E_UNKNOWN_READER = _u32(scard.SCARD_E_UNKNOWN_READER)
E_READER_UNAVAILABLE = _u32(scard.SCARD_E_READER_UNAVAILABLE)
# pcscd not running, stopped, or gone during a call (the socket closed: "RPC transport
# error"), or a context left over from a pcscd that has since restarted.
SERVICE_LOST = frozenset(
    _u32(code)
    for code in (
        scard.SCARD_E_NO_SERVICE,
        scard.SCARD_E_SERVICE_STOPPED,
        scard.SCARD_F_COMM_ERROR,
        scard.SCARD_E_INVALID_HANDLE,
    )
)
CARD_GONE = frozenset(
    _u32(code)
    for code in (scard.SCARD_W_REMOVED_CARD, scard.SCARD_E_NO_SMARTCARD, scard.SCARD_W_RESET_CARD)
)
CARD_MUTE = frozenset(
    _u32(code) for code in (scard.SCARD_W_UNRESPONSIVE_CARD, scard.SCARD_W_UNPOWERED_CARD)
)
READER_GONE = frozenset((E_UNKNOWN_READER, E_READER_UNAVAILABLE))
# Another application reset the card: each other handle is told once, and must
# acknowledge it with SCardReconnect before it can go on (PC/SC part 5).
W_RESET_CARD = _u32(scard.SCARD_W_RESET_CARD)
SHARING_VIOLATION = _u32(scard.SCARD_E_SHARING_VIOLATION)

_DISPOSITIONS = {
    "leave": scard.SCARD_LEAVE_CARD,
    "reset": scard.SCARD_RESET_CARD,
    "unpower": scard.SCARD_UNPOWER_CARD,
}
Disposition = Literal["leave", "reset", "unpower"]

# How long a failed transmit waits for pcscd to notice that the card is gone before it
# calls the failure a protocol error instead (pcscd polls vpcd and most readers within
# half a second).
_REMOVAL_GRACE_S = 1.0


def _error_name(hresult: int) -> str:
    try:
        return f"{scard.SCardGetErrorMessage(hresult).rstrip('.')} (0x{_u32(hresult):08X})"
    except Exception:  # pragma: no cover - pyscard always knows its codes
        return f"0x{_u32(hresult):08X}"


def _hresult(exc: BaseException) -> int:
    return _u32(getattr(exc, "hresult", -1))


# ---------------------------------------------------------------------- worker thread


class _TimedOut(Exception):
    pass


@dataclass
class _Call:
    fn: Callable[[], Any]
    done: threading.Event = field(default_factory=threading.Event)
    value: Any = None
    error: BaseException | None = None


class _Worker:
    """A daemon thread running one connection's blocking PC/SC calls in order.

    A daemon, so a card that never answers cannot keep the process from exiting."""

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            call = self._queue.get()
            if call is None:
                return
            try:
                call.value = call.fn()
            except BaseException as exc:
                call.error = exc
            finally:
                call.done.set()

    def submit(self, fn: Callable[[], Any]) -> _Call:
        call = _Call(fn)
        self._queue.put(call)
        return call

    def call(self, fn: Callable[[], T], timeout: float) -> T:
        call = self.submit(fn)
        if not call.done.wait(max(timeout, 0.0)):
            raise _TimedOut()
        if call.error is not None:
            raise call.error
        return call.value

    def stop(self) -> None:
        self._queue.put(None)

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()


# ---------------------------------------------------------------------- presence probe


def _card_present(reader: str, wait_for_removal: float = 0.0) -> bool | None:
    """Whether pcscd sees a card in ``reader`` (None: no such reader); PcscUnavailable
    when pcscd is not there.

    With ``wait_for_removal`` > 0, a card still shown as present is watched that long,
    so a removal that pcscd has not polled yet is still seen."""
    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if _u32(hresult) != S_SUCCESS:
        raise PcscUnavailable(_error_name(hresult))
    try:
        hresult, states = scard.SCardGetStatusChange(
            context, 0, [(reader, scard.SCARD_STATE_UNAWARE)]
        )
        deadline = time.monotonic() + wait_for_removal
        while _u32(hresult) == S_SUCCESS:
            event = states[0][1]
            if event & (scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_UNAVAILABLE):
                return None
            if not event & scard.SCARD_STATE_PRESENT:
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            hresult, states = scard.SCardGetStatusChange(
                context,
                max(1, int(remaining * 1000)),
                [(reader, event & ~scard.SCARD_STATE_CHANGED)],
            )
        if _u32(hresult) == E_TIMEOUT:
            return True
        if _u32(hresult) in SERVICE_LOST:
            raise PcscUnavailable(_error_name(hresult))
        return None
    finally:
        scard.SCardReleaseContext(context)


def _fatal(error: CardError) -> Callable[[], CardError] | None:
    """The error every later command of a connection that met ``error`` raises, or
    None when the connection can go on."""
    for fatal in (CardRemoved, PcscUnavailable, NoReader):
        if isinstance(error, fatal):
            return fatal
    return None


def _service_error(exc: BaseException) -> CardError | None:
    if isinstance(exc, CardServiceNotFoundException | CardServiceStoppedException):
        return PcscUnavailable()
    if _hresult(exc) in SERVICE_LOST:
        return PcscUnavailable(_error_name(_hresult(exc)))
    return None


# ---------------------------------------------------------------------- connection


class PcscConnection(OpenConnection):
    """One open connection to the card in one reader (card.transport.CardConnection)."""

    def __init__(self, reader: str, pyscard_connection: Any, atr: bytes, worker: _Worker) -> None:
        super().__init__(reader, atr)
        self._conn = pyscard_connection
        self._worker = worker
        self._transactions = 0  # depth of nested transaction() blocks

    def _handle(self) -> Any:
        """The PC/SC card handle (SCARDHANDLE) under pyscard's connection object.

        pyscard's object API (CardConnection) has no transaction call, and its
        reconnect() also changes the disposition used on disconnect; its low-level
        module ``smartcard.scard`` has SCardBeginTransaction, SCardEndTransaction and
        SCardReconnect, which take the handle that pyscard's PC/SC connection keeps in
        its ``hcard`` attribute (``Reader.createConnection()`` gives a decorator whose
        ``component`` is that connection). pyscard has no accessor for it."""
        inner = getattr(self._conn, "component", self._conn)
        hcard = getattr(inner, "hcard", None)
        if hcard is None:
            raise CardRemoved()
        return hcard

    @contextmanager
    def transaction(self, timeout: float = DEFAULT_TIMEOUT_S) -> Iterator[None]:
        """Hold the card for the block (card.transport.CardConnection.transaction):
        SCardBeginTransaction, which waits while another application holds the card,
        then SCardEndTransaction leaving the card as it is."""
        self._begin_transaction(timeout)
        try:
            yield
        finally:
            self._end_transaction(timeout)

    def _begin_transaction(self, timeout: float) -> None:
        if timeout <= 0:
            raise CardUnresponsive(timeout)
        with self._lock:
            self._check_open()
            if self._transactions:
                self._transactions += 1
                return
            hcard = self._handle()
            try:
                hresult = self._worker.call(lambda: scard.SCardBeginTransaction(hcard), timeout)
            except _TimedOut:
                # Another application held the card all along. Disconnecting, once our
                # begin returns, ends the transaction it may yet obtain.
                self._kill(lambda: ReaderBusy(self.reader))
                raise ReaderBusy(self.reader) from None
            self._check_result(_u32(hresult), timeout)
            self._transactions = 1

    def _end_transaction(self, timeout: float) -> None:
        with self._lock:
            if self._transactions == 0:
                return
            self._transactions -= 1
            if self._transactions or self._closed or self._dead is not None:
                return  # an outer block ends it, or disconnecting did
            hcard = self._handle()
            try:
                hresult = self._worker.call(
                    lambda: scard.SCardEndTransaction(hcard, scard.SCARD_LEAVE_CARD),
                    max(timeout, 1.0),
                )
            except _TimedOut:
                self._kill(lambda: CardUnresponsive(timeout))
                return
            if _u32(hresult) != S_SUCCESS:
                # The operation inside is complete; a card gone meanwhile shows on the
                # next command.
                log.info("SCardEndTransaction failed: %s", _error_name(hresult))
                fatal = _fatal(self._error_for(_u32(hresult), timeout))
                if fatal is not None:
                    self._kill(fatal)

    def _check_result(self, hresult: int, timeout: float) -> None:
        """Raise the card error for a failed PC/SC call (CardReset after acknowledging
        a reset); call with ``_lock`` held."""
        if hresult == S_SUCCESS:
            return
        if hresult == W_RESET_CARD:
            self._acknowledge_reset(timeout)
            raise CardReset()
        error = self._error_for(hresult, timeout)
        fatal = _fatal(error)
        if fatal is not None:
            self._kill(fatal)
        raise error

    def _acknowledge_reset(self, timeout: float) -> None:
        """SCardReconnect without another reset, so this handle can go on with the card
        as the reset left it (nothing selected, no PIN verified)."""
        hcard = self._handle()
        protocols = scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
        try:
            hresult, _active = self._worker.call(
                lambda: scard.SCardReconnect(
                    hcard, scard.SCARD_SHARE_SHARED, protocols, scard.SCARD_LEAVE_CARD
                ),
                timeout,
            )
        except _TimedOut:
            self._kill(lambda: CardUnresponsive(timeout))
            raise CardUnresponsive(timeout) from None
        if _u32(hresult) != S_SUCCESS:
            error = self._error_for(_u32(hresult), timeout)
            if isinstance(error, CardReset):
                error = CardRemoved()
            self._kill(_fatal(error) or CardRemoved)
            raise error

    def transmit(self, apdu: bytes, timeout: float = DEFAULT_TIMEOUT_S) -> Response:
        """Send one command APDU; CardRemoved / CardUnresponsive / PcscUnavailable /
        CardProtocolError when it does not come back."""
        if not apdu:
            raise ValueError("empty APDU")
        if timeout <= 0:  # the caller's time is already up; the connection stays usable
            raise CardUnresponsive(timeout)
        command = list(apdu)
        del apdu  # keep secrets (VERIFY data) out of this frame from here on
        with self._lock:
            self._check_open()
            try:
                data, sw1, sw2 = self._worker.call(lambda: self._conn.transmit(command), timeout)
            except _TimedOut:
                self._kill(lambda: CardUnresponsive(timeout))
                raise CardUnresponsive(timeout) from None
            except SmartcardException as exc:
                if _hresult(exc) == W_RESET_CARD:
                    self._acknowledge_reset(timeout)
                    raise CardReset() from None
                error = self._transmit_error(exc, timeout)
                fatal = _fatal(error)
                if fatal is not None:
                    self._kill(fatal)
                raise error from None
            finally:
                command.clear()
        return Response(bytes(data), sw1, sw2)

    def _transmit_error(self, exc: SmartcardException, timeout: float) -> CardError:
        if isinstance(exc, CardServiceNotFoundException | CardServiceStoppedException):
            return PcscUnavailable()
        return self._error_for(_hresult(exc), timeout)

    def _error_for(self, hresult: int, timeout: float) -> CardError:
        if hresult == W_RESET_CARD:
            return CardReset()
        if hresult in CARD_GONE:
            return CardRemoved()
        if hresult in CARD_MUTE:
            return CardUnresponsive(timeout)
        if hresult in READER_GONE:
            return NoReader()
        if hresult == SHARING_VIOLATION:
            return ReaderBusy(self.reader)
        if hresult in SERVICE_LOST:
            return PcscUnavailable(_error_name(hresult))
        # Anything else (pyscard's "Card returned no valid response" when vpcd's card
        # vanished mid-command, SCARD_E_NOT_TRANSACTED, ...): the card was pulled out
        # if pcscd says so within a moment; otherwise the card misbehaved.
        try:
            present = _card_present(self.reader, _REMOVAL_GRACE_S)
        except PcscUnavailable as unavailable:
            return unavailable
        if present is False:
            return CardRemoved()
        if present is None:
            return NoReader()
        detail = _error_name(hresult) if hresult not in (S_SUCCESS, 0xFFFFFFFF) else "無有效回應"
        return CardProtocolError(f"傳輸失敗：{detail}")

    def _kill(self, error: Callable[[], CardError]) -> None:
        """Mark the connection dead and disconnect once the worker is free."""
        self._dead = error
        self._worker.submit(self._release)
        self._worker.stop()

    def _release(self) -> None:
        _quiet_release(self._conn)

    def close(self, wait: float = 1.0) -> None:
        """Disconnect (the card is reset unless the backend says otherwise). Never
        blocks longer than ``wait`` even when the card hangs."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._dead is None:
                self._dead = lambda: CardRemoved()
                self._worker.submit(self._release)
                self._worker.stop()
        self._worker.join(wait)


# ---------------------------------------------------------------------- backend


class PcscBackend(ClosesOnExit):
    """card.transport.ReaderBackend over pyscard and pcscd; card events come from its
    :class:`ReaderMonitor`, started by the first :meth:`subscribe`."""

    def __init__(
        self,
        *,
        disposition: Disposition = "reset",
        connect_timeout: float = DEFAULT_TIMEOUT_S,
        monitor: ReaderMonitor | None = None,
    ) -> None:
        self.disposition = disposition
        self.connect_timeout = connect_timeout
        self.monitor = monitor if monitor is not None else ReaderMonitor()

    def __repr__(self) -> str:
        return f"PcscBackend(disposition={self.disposition!r})"

    def _reader_objects(self) -> list[Any]:
        try:
            return list(_pyscard_readers())
        except (SmartcardException, BaseSCardException) as exc:
            service = _service_error(exc)
            raise (service or PcscUnavailable(_error_name(_hresult(exc)))) from None

    def readers(self) -> list[str]:
        """Reader names (empty when there are none); PcscUnavailable when pcscd is down."""
        return [str(reader) for reader in self._reader_objects()]

    def connect(self, reader: str, timeout: float | None = None) -> PcscConnection:
        """Connect to the card in ``reader``: NoReader when there is no such reader,
        NoCard when it is empty, CardUnresponsive when the card does not answer."""
        timeout = self.connect_timeout if timeout is None else timeout
        matches = [r for r in self._reader_objects() if str(r) == reader]
        if not matches:
            raise NoReader()
        try:
            connection = matches[0].createConnection()
        except (SmartcardException, BaseSCardException) as exc:
            raise (_service_error(exc) or PcscUnavailable(_error_name(_hresult(exc)))) from None

        worker = _Worker(f"pcsc-{reader}")
        disposition = _DISPOSITIONS[self.disposition]

        def open_card() -> bytes:
            connection.connect(
                protocol=_PyscardConnection.T0_protocol | _PyscardConnection.T1_protocol,
                mode=scard.SCARD_SHARE_SHARED,
                disposition=disposition,
            )
            return bytes(connection.getATR())

        def give_up() -> None:
            worker.submit(lambda: _quiet_release(connection))
            worker.stop()

        try:
            atr = worker.call(open_card, timeout)
        except _TimedOut:
            give_up()
            raise CardUnresponsive(timeout) from None
        except NoCardException:
            give_up()
            raise NoCard(reader) from None
        except SmartcardException as exc:
            give_up()
            raise self._connect_error(reader, exc, timeout) from None
        return PcscConnection(reader, connection, atr, worker)

    def connect_any(self, timeout: float | None = None) -> PcscConnection:
        """Connect to the first reader that holds a card: NoReader / NoCard otherwise."""
        for name in require_readers(self):
            if _card_present(name):
                try:
                    return self.connect(name, timeout)
                except NoCard:
                    continue
        raise NoCard()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """``listener(reader, inserted)`` for every card insert and removal, first for
        the cards already present (from the monitor's thread); returns unsubscribe."""
        unsubscribe = self.monitor.subscribe(
            lambda reader, inserted, atr: listener(reader, inserted)
        )
        self.monitor.start()
        return unsubscribe

    def close(self) -> None:
        """Stop the reader monitor; open connections are not affected."""
        self.monitor.stop()

    @staticmethod
    def _connect_error(reader: str, exc: SmartcardException, timeout: float) -> CardError:
        hresult = _hresult(exc)
        if hresult in CARD_GONE:
            return NoCard(reader)
        if hresult in CARD_MUTE:
            return CardUnresponsive(timeout)
        if hresult in READER_GONE:
            return NoReader()
        if hresult == SHARING_VIOLATION:
            return ReaderBusy(reader)
        service = _service_error(exc)
        if service is not None:
            return service
        return CardProtocolError(f"無法連線：{_error_name(hresult)}")


def _quiet_release(connection: Any) -> None:
    """Disconnect and release the context, whatever state pcscd is in.

    pyscard's release() raises when pcscd has gone (or restarted) and then leaves its
    context handle set, so the connection's __del__ raises again later, from the
    garbage collector; clear the handle so that cannot happen."""
    try:
        connection.release()
    except Exception:  # pcscd or the card may already be gone
        pass
    inner = getattr(connection, "component", connection)
    if getattr(inner, "hcontext", None) is not None:
        try:
            scard.SCardReleaseContext(inner.hcontext)
        except Exception:
            pass
        inner.hcontext = None
    if getattr(inner, "hcard", None) is not None:
        inner.hcard = None


# ---------------------------------------------------------------------- monitor

CardEventCallback = Callable[[str, bool, bytes | None], None]
"""``callback(reader, inserted, atr)``: atr is None on removal (and for a mute card)."""
ServiceCallback = Callable[[bool], None]
"""``callback(available)``: pcscd became reachable / unreachable."""

PNP_NOTIFICATION = "\\\\?PnP?\\Notification"


class ScardApi(Protocol):
    """The handful of PC/SC calls the monitor makes (replaceable in tests)."""

    def establish(self) -> tuple[int, Any]: ...

    def release(self, context: Any) -> None: ...

    def list_readers(self, context: Any) -> tuple[int, list[str]]: ...

    def get_status_change(
        self, context: Any, timeout_ms: int, states: Sequence[tuple[str, int]]
    ) -> tuple[int, list[tuple[str, int, Sequence[int]]]]: ...

    def cancel(self, context: Any) -> None: ...


class _PyscardApi:
    def establish(self) -> tuple[int, Any]:
        hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        return _u32(hresult), context

    def release(self, context: Any) -> None:
        scard.SCardReleaseContext(context)

    def list_readers(self, context: Any) -> tuple[int, list[str]]:
        hresult, names = scard.SCardListReaders(context, [])
        return _u32(hresult), list(names or [])

    def get_status_change(
        self, context: Any, timeout_ms: int, states: Sequence[tuple[str, int]]
    ) -> tuple[int, list[tuple[str, int, Sequence[int]]]]:
        hresult, result = scard.SCardGetStatusChange(context, timeout_ms, list(states))
        return _u32(hresult), list(result or [])

    def cancel(self, context: Any) -> None:
        scard.SCardCancel(context)


class _ServiceLost(Exception):
    pass


class ReaderMonitor(RunsInWith):
    """Card insert/remove events per reader, from a background thread.

    ``subscribe(callback)`` calls ``callback(reader, inserted, atr)`` on the monitor
    thread (keep it short, e.g. Textual's thread-safe ``post_message``); a new
    subscriber first hears about the cards already present. When pcscd goes away every
    present card is reported removed, and the monitor re-establishes its context with
    backoff until pcscd is back; readers that vanish and return are picked up again.
    """

    def __init__(
        self,
        *,
        poll_timeout: float = 1.0,
        backoff_initial: float = 0.1,
        backoff_max: float = 2.0,
        api: ScardApi | None = None,
    ) -> None:
        self._api: ScardApi = api or _PyscardApi()
        self._poll_ms = max(1, int(poll_timeout * 1000))
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._lock = threading.RLock()  # subscribers, state, and event delivery order
        self._callbacks: list[CardEventCallback] = []
        self._service_callbacks: list[ServiceCallback] = []
        self._present: dict[str, bytes | None] = {}
        self._readers: list[str] = []
        self._available: bool | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._context: Any = None
        self._context_lock = threading.Lock()

    def __repr__(self) -> str:
        running = self._thread is not None and self._thread.is_alive()
        return f"ReaderMonitor(running={running}, available={self._available})"

    # ------------------------------------------------------------------ public API

    def subscribe(self, callback: CardEventCallback) -> Callable[[], None]:
        """Add a listener; it first hears ``(reader, True, atr)`` for each card already
        present. Returns a function that unsubscribes it."""
        with self._lock:
            self._callbacks.append(callback)
            for reader, atr in list(self._present.items()):
                self._call(callback, reader, True, atr)

        def unsubscribe() -> None:
            self.unsubscribe(callback)

        return unsubscribe

    def unsubscribe(self, callback: CardEventCallback) -> None:
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

    def subscribe_service(self, callback: ServiceCallback) -> Callable[[], None]:
        """``callback(available)`` whenever pcscd becomes reachable or unreachable
        (called at once with the current state when it is known)."""
        with self._lock:
            self._service_callbacks.append(callback)
            if self._available is not None:
                self._call_service(callback, self._available)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._service_callbacks:
                    self._service_callbacks.remove(callback)

        return unsubscribe

    @property
    def available(self) -> bool | None:
        """Whether pcscd is reachable (None before the first attempt)."""
        return self._available

    def cards(self) -> dict[str, bytes | None]:
        """Readers that hold a card, with its ATR."""
        with self._lock:
            return dict(self._present)

    def readers(self) -> list[str]:
        with self._lock:
            return list(self._readers)

    def start(self) -> ReaderMonitor:
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="pcsc-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._context_lock:
            if self._context is not None:
                try:
                    self._api.cancel(self._context)
                except Exception:
                    pass
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # ------------------------------------------------------------------ delivery

    def _call(
        self, callback: CardEventCallback, reader: str, inserted: bool, atr: bytes | None
    ) -> None:
        try:
            callback(reader, inserted, atr)
        except Exception:
            log.exception("card event listener failed (%s, inserted=%s)", reader, inserted)

    def _call_service(self, callback: ServiceCallback, available: bool) -> None:
        try:
            callback(available)
        except Exception:
            log.exception("pcscd service listener failed (available=%s)", available)

    def _set_card(self, reader: str, present: bool, atr: bytes | None) -> None:
        with self._lock:
            was_present = reader in self._present
            if present == was_present and (not present or self._present[reader] == atr):
                return
            if present and was_present:  # another card (or a new ATR): out, then in
                self._set_card(reader, False, None)
            if present:
                self._present[reader] = atr
            else:
                del self._present[reader]
            for callback in list(self._callbacks):
                self._call(callback, reader, present, atr if present else None)

    def _set_available(self, available: bool) -> None:
        with self._lock:
            if self._available == available:
                return
            self._available = available
            if not available:
                self._readers = []
                for reader in list(self._present):
                    self._set_card(reader, False, None)
            for callback in list(self._service_callbacks):
                self._call_service(callback, available)

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        backoff = self._backoff_initial
        while not self._stop.is_set():
            try:
                hresult, context = self._api.establish()
            except Exception:
                log.exception("SCardEstablishContext failed")
                hresult, context = -1, None
            if hresult != S_SUCCESS:
                self._set_available(False)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._backoff_max)
                continue
            with self._context_lock:
                self._context = context
            try:
                if self._stop.is_set():
                    return
                self._set_available(True)
                backoff = self._backoff_initial
                self._watch(context)
            except _ServiceLost as lost:
                log.info("pcscd went away (%s); reconnecting", lost)
                self._set_available(False)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._backoff_max)
            except Exception:
                log.exception("reader monitor error; restarting it")
                self._set_available(False)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._backoff_max)
            finally:
                with self._context_lock:
                    self._context = None
                try:
                    self._api.release(context)
                except Exception:
                    pass

    def _list(self, context: Any) -> list[str]:
        hresult, names = self._api.list_readers(context)
        if hresult == E_NO_READERS:
            return []
        if hresult != S_SUCCESS:
            raise _ServiceLost(_error_name(hresult))
        return names

    def _watch(self, context: Any) -> None:
        states: dict[str, int] = {}
        counters: dict[str, int] = {}
        pnp_state = scard.SCARD_STATE_UNAWARE
        relist = True
        while not self._stop.is_set():
            if relist:
                names = self._list(context)
                for reader in list(states):
                    if reader not in names:  # the reader went away, and its card with it
                        del states[reader]
                        counters.pop(reader, None)
                        self._set_card(reader, False, None)
                for reader in names:
                    states.setdefault(reader, scard.SCARD_STATE_UNAWARE)
                with self._lock:
                    self._readers = list(names)
                relist = False
            query = [*states.items(), (PNP_NOTIFICATION, pnp_state)]
            hresult, result = self._api.get_status_change(context, self._poll_ms, query)
            if hresult in (E_TIMEOUT, E_CANCELLED):
                relist = True  # cheap, and catches a reader change PnP missed
                continue
            if hresult in READER_GONE:  # a reader vanished between listing and waiting
                relist = True
                self._stop.wait(0.05)
                continue
            if hresult != S_SUCCESS:
                raise _ServiceLost(_error_name(hresult))
            for reader, event, atr in result:
                if reader == PNP_NOTIFICATION:
                    if event & scard.SCARD_STATE_CHANGED:
                        relist = True
                    pnp_state = event & ~scard.SCARD_STATE_CHANGED
                    continue
                if reader not in states:
                    continue
                states[reader] = event & ~scard.SCARD_STATE_CHANGED
                if event & (scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_UNAVAILABLE):
                    relist = True
                    self._set_card(reader, False, None)
                    continue
                present = bool(event & scard.SCARD_STATE_PRESENT)
                counter = event >> 16
                if present and counters.get(reader, counter) != counter:
                    # Out and in again between two looks: report both.
                    self._set_card(reader, False, None)
                counters[reader] = counter
                mute = bool(event & scard.SCARD_STATE_MUTE)
                self._set_card(reader, present, bytes(atr) if present and not mute else None)


if TYPE_CHECKING:  # mypy checks that these keep to card.transport's protocols
    from card.transport import CardConnection, ReaderBackend

    _backend: type[ReaderBackend] = PcscBackend
    _connection: type[CardConnection] = PcscConnection
