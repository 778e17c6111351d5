"""PC/SC end to end: pyscard → the private pcscd of `make test` → vpcd → virtual cards.

scripts/test-services.sh starts pcscd with the vsmartcard-vpcd driver (readers
"Virtual PCD 00 00" / "00 01" on 127.0.0.1:$SMIS_VPCD_PORT and +1) and exports
SMIS_TEST_PCSCD=1 and SMIS_TEST_PCSCD_CTL (start | stop | restart its pcscd). The
first part needs no pcscd: the vpcd framing against a fake vpcd, and the monitor's
state machine against a fake PC/SC API.
"""

from __future__ import annotations

import os
import queue
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import pytest
from smartcard import scard

from card.errors import (
    CardRemoved,
    CardReset,
    CardUnresponsive,
    NoCard,
    NoReader,
    PcscUnavailable,
    ReaderBusy,
)
from card.readers.pcsc import PNP_NOTIFICATION, PcscBackend, ReaderMonitor
from card.sim.vpcd import VpcdCard, default_port
from card.transport import require_readers

READER_0 = "Virtual PCD 00 00"
READER_1 = "Virtual PCD 00 01"
ECHO_ATR = bytes.fromhex("3B8080010101")  # T=0 and T=1 offered; pcscd picks T=1
PIV_AID = bytes.fromhex("A000000308000010000100")

Event = tuple[str, bool, bytes | None]
T = TypeVar("T")


# ---------------------------------------------------------------------- the stand-in card


class EchoCard:
    """SELECT by AID echoes the AID; INS CA returns a command counter; INS EE answers
    after ``delay`` seconds; INS EF waits until ``release`` is set (or 10 s)."""

    def __init__(self, atr: bytes = ECHO_ATR, delay: float = 0.0) -> None:
        self.atr = atr
        self.delay = delay
        self.counter = 0
        self.selected = b""
        self.power_offs = 0
        self.resets = 0
        self.started = threading.Event()  # an EE/EF command began
        self.finished = threading.Event()  # an EE/EF command ended
        self.release = threading.Event()

    def process(self, apdu: bytes) -> bytes:
        self.counter += 1
        ins = apdu[1]
        if ins == 0xA4 and apdu[2] == 0x04 and len(apdu) >= 5:
            self.selected = apdu[5 : 5 + apdu[4]]
            return self.selected + b"\x90\x00"
        if ins == 0xCA:
            return self.counter.to_bytes(4, "big") + b"\x90\x00"
        if ins in (0xEE, 0xEF):
            self.started.set()
            if ins == 0xEE:
                time.sleep(self.delay)
            else:
                self.release.wait(10)
            self.finished.set()
            return b"\x90\x00"
        return b"\x6d\x00"

    def power_off(self) -> None:
        self.power_offs += 1
        self.selected = b""

    def reset(self) -> None:
        self.resets += 1
        self.selected = b""


def select(aid: bytes) -> bytes:
    return bytes([0x00, 0xA4, 0x04, 0x00, len(aid)]) + aid


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.02)


class Events:
    """Monitor events in a queue, matched in order with deadlines."""

    def __init__(self) -> None:
        self.queue: queue.Queue[Event] = queue.Queue()
        self.service: queue.Queue[bool] = queue.Queue()

    def __call__(self, reader: str, inserted: bool, atr: bytes | None) -> None:
        self.queue.put((reader, inserted, atr))

    def expect(self, reader: str, inserted: bool, timeout: float = 5.0) -> Event:
        event = _first_in_time(self.queue, lambda e: e[:2] == (reader, inserted), timeout)
        if event is None:
            pytest.fail(f"no {'insert' if inserted else 'removal'} event for {reader}")
        return event

    def expect_service(self, available: bool, timeout: float = 10.0) -> None:
        if _first_in_time(self.service, lambda state: state == available, timeout) is None:
            pytest.fail(f"pcscd availability never became {available}")


def _first_in_time(source: queue.Queue[T], wanted: Callable[[T], bool], timeout: float) -> T | None:
    """The first item from ``source`` that is ``wanted`` (the others are dropped), or
    None when none comes within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            item = source.get(timeout=remaining)
        except queue.Empty:
            continue
        if wanted(item):
            return item
    return None


# ---------------------------------------------------------------------- vpcd framing (no pcscd)


class FakeVpcd:
    """The vpcd side of the protocol on an ephemeral 127.0.0.1 port."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(5)
        self.port = self.server.getsockname()[1]
        self.conn: socket.socket | None = None

    def accept(self) -> socket.socket:
        self.conn, _ = self.server.accept()
        self.conn.settimeout(5)
        return self.conn

    def send(self, payload: bytes) -> None:
        assert self.conn is not None
        self.conn.sendall(struct.pack(">H", len(payload)) + payload)

    def receive(self) -> bytes:
        assert self.conn is not None
        header = self._exactly(2)
        return self._exactly(struct.unpack(">H", header)[0])

    def _exactly(self, size: int) -> bytes:
        assert self.conn is not None
        data = b""
        while len(data) < size:
            chunk = self.conn.recv(size - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.server.close()


@pytest.fixture
def fake_vpcd() -> Iterator[FakeVpcd]:
    vpcd = FakeVpcd()
    yield vpcd
    vpcd.close()


def test_vpcd_framing_control_bytes_and_apdus(fake_vpcd: FakeVpcd) -> None:
    card = EchoCard()
    with VpcdCard(card, fake_vpcd.port) as vcard:
        fake_vpcd.accept()
        fake_vpcd.send(b"\x04")
        assert fake_vpcd.receive() == ECHO_ATR
        assert vcard.wait_until_seen(1)
        fake_vpcd.send(b"\x01")  # power on: no answer
        fake_vpcd.send(select(PIV_AID))
        assert fake_vpcd.receive() == PIV_AID + b"\x90\x00"
        fake_vpcd.send(b"\x02")  # reset: no answer
        fake_vpcd.send(bytes.fromhex("00CA0000"))
        assert fake_vpcd.receive() == bytes.fromhex("00000002 9000")
        fake_vpcd.send(b"\x00")  # power off
        fake_vpcd.send(b"\x04")
        assert fake_vpcd.receive() == ECHO_ATR
        assert (card.resets, card.power_offs) == (1, 1)
        assert vcard.commands == 2
    # remove() closed the socket: vpcd sees the card go.
    with pytest.raises(EOFError):
        fake_vpcd.receive()


def test_vpcd_card_that_raises_answers_6f00(fake_vpcd: FakeVpcd) -> None:
    class Broken(EchoCard):
        def process(self, apdu: bytes) -> bytes:
            raise ValueError("secret 123456 must not be logged")

    with VpcdCard(Broken(), fake_vpcd.port):
        fake_vpcd.accept()
        fake_vpcd.send(bytes.fromhex("00200080083132333435363738"))
        assert fake_vpcd.receive() == b"\x6f\x00"


def test_vpcd_reconnects_while_inserted(fake_vpcd: FakeVpcd) -> None:
    with VpcdCard(EchoCard(), fake_vpcd.port) as vcard:
        first = fake_vpcd.accept()
        first.close()  # pcscd went away
        fake_vpcd.accept()  # ... and the card comes back by itself
        fake_vpcd.send(b"\x04")
        assert fake_vpcd.receive() == ECHO_ATR
        assert vcard.inserted
    assert not vcard.inserted


def test_vpcd_nothing_listening_is_pcsc_unavailable() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    with pytest.raises(PcscUnavailable, match=str(port)):
        VpcdCard(EchoCard(), port, connect_timeout=1).insert()


def test_vpcd_default_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMIS_VPCD_PORT", raising=False)
    assert default_port() == 35963
    monkeypatch.setenv("SMIS_VPCD_PORT", "36963")
    assert VpcdCard(EchoCard()).port == 36963


# ---------------------------------------------------------------------- monitor logic (fake PC/SC)

PRESENT = scard.SCARD_STATE_PRESENT | scard.SCARD_STATE_CHANGED
EMPTY = scard.SCARD_STATE_EMPTY | scard.SCARD_STATE_CHANGED
S_OK = 0
E_NO_SERVICE = scard.SCARD_E_NO_SERVICE & 0xFFFFFFFF
E_TIMEOUT = scard.SCARD_E_TIMEOUT & 0xFFFFFFFF


class FakeScard:
    """A scripted PC/SC service: readers with cards, an up/down switch."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.up = True
        self.readers: dict[str, tuple[int, bytes]] = {}  # name -> (event counter, atr or b"")
        self.generation = 0  # bumped on every change
        self.establish_calls = 0

    def change(self, fn: Callable[[], object]) -> None:
        with self.lock:
            fn()
            self.generation += 1
            self.lock.notify_all()

    def insert(self, reader: str, atr: bytes) -> None:
        def do() -> None:
            count, _ = self.readers.get(reader, (0, b""))
            self.readers[reader] = (count + 1, atr)

        self.change(do)

    def remove(self, reader: str) -> None:
        def do() -> None:
            count, _ = self.readers[reader]
            self.readers[reader] = (count + 1, b"")

        self.change(do)

    # ScardApi
    def establish(self) -> tuple[int, Any]:
        with self.lock:
            self.establish_calls += 1
            return (S_OK, object()) if self.up else (E_NO_SERVICE, None)

    def release(self, context: Any) -> None:
        pass

    def list_readers(self, context: Any) -> tuple[int, list[str]]:
        with self.lock:
            if not self.up:
                return E_NO_SERVICE, []
            return S_OK, list(self.readers)

    def _state(self, reader: str) -> int:
        count, atr = self.readers[reader]
        return (count << 16) | (PRESENT if atr else EMPTY)

    def get_status_change(
        self, context: Any, timeout_ms: int, states: Sequence[tuple[str, int]]
    ) -> tuple[int, list[tuple[str, int, Sequence[int]]]]:
        deadline = time.monotonic() + timeout_ms / 1000
        with self.lock:
            while True:
                if not self.up:
                    return E_NO_SERVICE, []
                result: list[tuple[str, int, Sequence[int]]] = []
                changed = False
                for reader, current in states:
                    if reader == PNP_NOTIFICATION:
                        count = len(self.readers) << 16
                        pnp_changed = current != scard.SCARD_STATE_UNAWARE and current != count
                        changed |= pnp_changed
                        event = count | (scard.SCARD_STATE_CHANGED if pnp_changed else 0)
                        result.append((reader, event, []))
                        continue
                    if reader not in self.readers:
                        return scard.SCARD_E_UNKNOWN_READER & 0xFFFFFFFF, []
                    event = self._state(reader)
                    if current == scard.SCARD_STATE_UNAWARE or current != (
                        event & ~scard.SCARD_STATE_CHANGED
                    ):
                        changed = True
                    result.append((reader, event, list(self.readers[reader][1])))
                if changed:
                    return S_OK, result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return E_TIMEOUT, []
                self.lock.wait(remaining)

    def cancel(self, context: Any) -> None:
        self.change(lambda: None)


@pytest.fixture
def fake_monitor() -> Iterator[tuple[FakeScard, ReaderMonitor, Events]]:
    fake = FakeScard()
    events = Events()
    monitor = ReaderMonitor(api=fake, poll_timeout=0.2, backoff_initial=0.02, backoff_max=0.1)
    monitor.subscribe(events)
    monitor.subscribe_service(events.service.put)
    monitor.start()
    yield fake, monitor, events
    monitor.stop()


def test_monitor_reports_cards_per_reader(
    fake_monitor: tuple[FakeScard, ReaderMonitor, Events],
) -> None:
    fake, monitor, events = fake_monitor
    fake.change(lambda: fake.readers.update({"A": (0, b""), "B": (0, b"")}))
    fake.insert("A", b"\x3b\x01")
    assert events.expect("A", True) == ("A", True, b"\x3b\x01")
    fake.insert("B", b"\x3b\x02")
    events.expect("B", True)
    fake.remove("A")
    assert events.expect("A", False) == ("A", False, None)
    wait_until(lambda: monitor.cards() == {"B": b"\x3b\x02"}, what="cards()")
    # Out and in again between two looks still gives both events.
    fake.change(lambda: fake.readers.update({"B": (fake.readers["B"][0] + 2, b"\x3b\x02")}))
    events.expect("B", False)
    events.expect("B", True)
    # A late subscriber first hears about the card already present.
    late = Events()
    unsubscribe = monitor.subscribe(late)
    assert late.expect("B", True, timeout=0.1) == ("B", True, b"\x3b\x02")
    unsubscribe()


def test_monitor_reader_vanishes_and_returns(
    fake_monitor: tuple[FakeScard, ReaderMonitor, Events],
) -> None:
    fake, monitor, events = fake_monitor
    fake.change(lambda: fake.readers.update({"A": (1, b"\x3b\x01")}))
    events.expect("A", True)
    fake.change(lambda: fake.readers.pop("A"))  # unplugged with its card
    events.expect("A", False)
    wait_until(lambda: monitor.readers() == [], what="reader list update")
    fake.change(lambda: fake.readers.update({"A": (0, b"\x3b\x01")}))
    events.expect("A", True)


def test_monitor_survives_service_restarts_and_bad_listeners(
    fake_monitor: tuple[FakeScard, ReaderMonitor, Events],
) -> None:
    fake, monitor, events = fake_monitor

    def broken(reader: str, inserted: bool, atr: bytes | None) -> None:
        raise RuntimeError("listener bug")

    monitor.subscribe(broken)
    events.expect_service(True)
    fake.change(lambda: fake.readers.update({"A": (1, b"\x3b\x01")}))
    events.expect("A", True)
    fake.change(lambda: setattr(fake, "up", False))
    events.expect("A", False)
    events.expect_service(False)
    assert monitor.available is False
    calls = fake.establish_calls
    wait_until(lambda: fake.establish_calls >= calls + 3, what="reconnect attempts")
    fake.change(lambda: setattr(fake, "up", True))
    events.expect_service(True)
    events.expect("A", True)
    monitor.stop()
    assert "running=False" in repr(monitor)


# ---------------------------------------------------------------------- with pcscd


def pcscd_ctl() -> str:
    if os.environ.get("SMIS_TEST_PCSCD") == "1" and os.environ.get("SMIS_TEST_PCSCD_CTL"):
        return os.environ["SMIS_TEST_PCSCD_CTL"]
    if os.environ.get("CI") or os.environ.get("SMIS_REQUIRE_POSTGRES"):
        pytest.fail(
            "pcscd with vpcd is not running (SMIS_TEST_PCSCD unset): run the tests with "
            "`make test`, which starts it (see the test-services output above)"
        )
    pytest.skip("pcscd not started (SMIS_TEST_PCSCD unset); `make test` runs these")


@pytest.fixture
def backend() -> PcscBackend:
    pcscd_ctl()
    return PcscBackend()


@pytest.fixture
def echo() -> Iterator[tuple[EchoCard, VpcdCard]]:
    pcscd_ctl()
    card = EchoCard()
    vcard = VpcdCard(card)
    yield card, vcard
    card.release.set()
    if vcard.inserted:
        unplug(vcard)


@pytest.fixture
def monitor() -> Iterator[tuple[ReaderMonitor, Events]]:
    pcscd_ctl()
    events = Events()
    mon = ReaderMonitor(poll_timeout=0.5, backoff_initial=0.05, backoff_max=0.5)
    mon.subscribe(events)
    mon.subscribe_service(events.service.put)
    mon.start()
    yield mon, events
    mon.stop()


def present(reader: str) -> bool:
    """Whether pcscd shows a card in ``reader``."""
    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        return False
    try:
        hresult, states = scard.SCardGetStatusChange(
            context, 0, [(reader, scard.SCARD_STATE_UNAWARE)]
        )
        return hresult == scard.SCARD_S_SUCCESS and bool(states[0][1] & scard.SCARD_STATE_PRESENT)
    finally:
        scard.SCardReleaseContext(context)


def plug(vcard: VpcdCard, reader: str = READER_0) -> None:
    """Insert and wait until pcscd has seen the card."""
    vcard.insert()
    wait_until(lambda: present(reader), what=f"pcscd to see the card in {reader}")


def unplug(vcard: VpcdCard, reader: str = READER_0) -> None:
    """Remove and wait until pcscd has seen the reader empty. (vpcd notices a closed
    socket only at its next poll; a card inserted before that is taken for the old one,
    never powered up, and its first command fails.)"""
    vcard.remove()
    wait_until(lambda: not present(reader), what=f"pcscd to see {reader} empty")


def test_readers(backend: PcscBackend) -> None:
    names = backend.readers()
    assert READER_0 in names and READER_1 in names
    assert require_readers(backend) == names


def test_empty_reader_and_unknown_reader(backend: PcscBackend) -> None:
    with pytest.raises(NoCard) as empty:
        backend.connect(READER_1)
    assert READER_1 in str(empty.value)
    with pytest.raises(NoReader):
        backend.connect("No Such Reader 00 00")


def test_insert_transmit_remove(
    backend: PcscBackend,
    echo: tuple[EchoCard, VpcdCard],
    monitor: tuple[ReaderMonitor, Events],
) -> None:
    card, vcard = echo
    mon, events = monitor
    events.expect_service(True)
    started = time.monotonic()
    vcard.insert()
    assert events.expect(READER_0, True, timeout=5) == (READER_0, True, ECHO_ATR)
    insert_latency = time.monotonic() - started
    assert insert_latency < 3, insert_latency
    assert mon.cards()[READER_0] == ECHO_ATR

    with backend.connect(READER_0) as conn:
        assert conn.atr() == ECHO_ATR
        response = conn.transmit(select(PIV_AID))
        assert (response.data, response.ok) == (PIV_AID, True)
        before = card.counter
        for _ in range(20):
            counter = conn.transmit(bytes.fromhex("00CA0000"))
        assert int.from_bytes(counter.data, "big") == before + 20
        assert conn.transmit(bytes.fromhex("00FF0000")).sw == 0x6D00
    with pytest.raises(RuntimeError, match="closed"):
        conn.transmit(select(PIV_AID))
    wait_until(lambda: card.resets >= 1, what="reset on close")  # no verified PIN survives

    vcard.remove()
    assert events.expect(READER_0, False) == (READER_0, False, None)
    assert READER_0 not in mon.cards()
    with pytest.raises(NoCard):
        backend.connect(READER_0)


def test_a_transaction_holds_the_card_against_other_connections(
    backend: PcscBackend, echo: tuple[EchoCard, VpcdCard]
) -> None:
    """PC/SC part 5 SCardBeginTransaction: while one connection holds the card, another
    one's transaction waits (ReaderBusy after its timeout) and gets no command in."""
    card, vcard = echo
    plug(vcard)
    holder = backend.connect(READER_0)
    other = backend.connect(READER_0)
    try:
        with holder.transaction():
            with holder.transaction():  # nested: still the one transaction
                assert holder.transmit(select(PIV_AID)).ok
            started = time.monotonic()
            with pytest.raises(ReaderBusy):
                with other.transaction(timeout=0.5):
                    pytest.fail("entered a transaction another connection holds")
            assert time.monotonic() - started < 3
            assert holder.transmit(bytes.fromhex("00CA0000")).ok  # the holder goes on
            assert card.selected == PIV_AID
        # Over: anyone may have the card, and the connection that gave up is done.
        with pytest.raises(ReaderBusy):
            other.transmit(select(b"\xa0\x00"))
        with backend.connect(READER_0) as third, third.transaction():
            assert third.transmit(select(b"\xa0\x00\x00\x00\x03")).ok
    finally:
        holder.close()
        other.close()
        unplug(vcard)


def test_a_reset_by_another_connection_is_reported_once(
    backend: PcscBackend, echo: tuple[EchoCard, VpcdCard]
) -> None:
    """Another program resets the card: the next call of each other connection says
    CardReset (SCARD_W_RESET_CARD), and the connection goes on afterwards."""
    card, vcard = echo
    plug(vcard)
    with backend.connect(READER_0) as conn:
        assert conn.transmit(select(PIV_AID)).ok
        PcscBackend(disposition="reset").connect(READER_0).close()
        wait_until(lambda: card.resets >= 1, what="the other program's reset")
        with pytest.raises(CardReset):
            conn.transmit(select(PIV_AID))
        assert conn.transmit(select(PIV_AID)).data == PIV_AID  # acknowledged: goes on
        PcscBackend(disposition="reset").connect(READER_0).close()
        wait_until(lambda: card.resets >= 2, what="the other program's second reset")
        with pytest.raises(CardReset):
            with conn.transaction():
                pytest.fail("a transaction began on a card reset meanwhile")
        with conn.transaction():
            assert conn.transmit(select(PIV_AID)).ok
    unplug(vcard)


def test_two_readers_at_once(backend: PcscBackend) -> None:
    first, second = EchoCard(), EchoCard(atr=bytes.fromhex("3B800101"))
    vfirst, vsecond = VpcdCard(first), VpcdCard(second, default_port() + 1)
    plug(vfirst, READER_0)
    plug(vsecond, READER_1)
    try:
        with backend.connect(READER_0) as conn0, backend.connect(READER_1) as conn1:
            assert conn1.atr() == bytes.fromhex("3B800101")
            assert conn0.transmit(select(b"\x01\x02")).data == b"\x01\x02"
            assert conn1.transmit(select(b"\x03")).data == b"\x03"
        wait_until(lambda: (first.resets, second.resets) == (1, 1), what="reset on close")
    finally:
        unplug(vfirst, READER_0)
        unplug(vsecond, READER_1)


def test_connect_any_finds_the_reader_with_a_card(backend: PcscBackend) -> None:
    with pytest.raises(NoCard):
        backend.connect_any()
    card = EchoCard()
    vcard = VpcdCard(card, default_port() + 1)
    plug(vcard, READER_1)
    try:
        with backend.connect_any() as conn:
            assert conn.reader == READER_1
            with pytest.raises(CardUnresponsive):
                conn.transmit(select(PIV_AID), timeout=0)
            assert conn.transmit(select(PIV_AID)).ok  # still usable
    finally:
        unplug(vcard, READER_1)


def test_remove_mid_operation_and_reinsert(
    backend: PcscBackend, echo: tuple[EchoCard, VpcdCard]
) -> None:
    card, vcard = echo
    plug(vcard)
    conn = backend.connect(READER_0)
    errors: list[BaseException] = []

    def blocked_command() -> None:
        try:
            conn.transmit(bytes.fromhex("00EF0000"), timeout=5)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=blocked_command)
    worker.start()
    assert card.started.wait(5)
    started = time.monotonic()
    vcard.remove()  # pulled out while the card is working
    worker.join(5)
    card.release.set()
    assert len(errors) == 1 and isinstance(errors[0], CardRemoved), errors
    assert time.monotonic() - started < 2
    with pytest.raises(CardRemoved):  # the connection is dead from now on
        conn.transmit(select(PIV_AID))
    conn.close()
    wait_until(lambda: not present(READER_0), what="pcscd to see the removal")

    # Removed between two commands: the next one says so.
    plug(vcard)
    conn = backend.connect(READER_0)
    assert conn.transmit(select(PIV_AID)).ok
    unplug(vcard)
    with pytest.raises(CardRemoved):
        conn.transmit(select(PIV_AID))
    conn.close()

    plug(vcard)
    with backend.connect(READER_0) as conn:
        assert conn.transmit(select(b"\xa0\x00")).data == b"\xa0\x00"


def test_slow_card_is_unresponsive(backend: PcscBackend, echo: tuple[EchoCard, VpcdCard]) -> None:
    card, vcard = echo
    card.delay = 1.5
    plug(vcard)
    conn = backend.connect(READER_0)
    started = time.monotonic()
    with pytest.raises(CardUnresponsive) as slow:
        conn.transmit(bytes.fromhex("00EE0000"), timeout=0.3)
    assert 0.25 < time.monotonic() - started < 1.0
    assert slow.value.params["seconds"] == 0.3
    with pytest.raises(CardUnresponsive):  # dead: fails at once, no second wait
        conn.transmit(select(PIV_AID))
    started = time.monotonic()
    conn.close(wait=0.1)
    assert time.monotonic() - started < 0.5
    # Once the card has answered, the dead connection is disconnected (card reset) and a
    # new one works.
    assert card.finished.wait(5)
    wait_until(lambda: card.resets >= 1, what="the dead connection's reset")
    with backend.connect(READER_0) as conn:
        assert conn.transmit(select(PIV_AID)).ok


def test_card_object_with_a_bad_answer_gives_6f00(backend: PcscBackend) -> None:
    class OneByte(EchoCard):
        def process(self, apdu: bytes) -> bytes:
            return b"\x90"  # an answer needs SW1 SW2: VpcdCard sends 6F00 instead

    vcard = VpcdCard(OneByte())
    plug(vcard)
    try:
        with backend.connect(READER_0) as conn:
            assert conn.transmit(select(PIV_AID)).sw == 0x6F00
    finally:
        unplug(vcard)


def test_pcscd_restart(
    backend: PcscBackend,
    echo: tuple[EchoCard, VpcdCard],
    monitor: tuple[ReaderMonitor, Events],
) -> None:
    ctl = pcscd_ctl()
    card, vcard = echo
    mon, events = monitor
    events.expect_service(True)
    vcard.insert()
    events.expect(READER_0, True)
    conn = backend.connect(READER_0)
    assert conn.transmit(select(PIV_AID)).ok
    try:
        subprocess.run([ctl, "stop"], check=True, timeout=30)
        events.expect(READER_0, False)
        events.expect_service(False)
        assert mon.available is False and mon.cards() == {}
        with pytest.raises(PcscUnavailable):
            backend.readers()
        with pytest.raises(PcscUnavailable):
            backend.connect(READER_0)
        with pytest.raises((PcscUnavailable, CardRemoved)):
            conn.transmit(select(PIV_AID))
        conn.close()
    finally:
        subprocess.run([ctl, "start"], check=True, timeout=30)
    # The monitor reconnects by itself; the card, still "in the reader", is seen again.
    events.expect_service(True, timeout=10)
    assert events.expect(READER_0, True, timeout=10) == (READER_0, True, ECHO_ATR)
    with backend.connect(READER_0) as conn:
        assert conn.transmit(select(PIV_AID)).data == PIV_AID


def test_virtual_piv_card_through_pcscd(backend: PcscBackend) -> None:
    """The other side's VirtualPivCard and PIV profile over the real PC/SC stack."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    from card.errors import WrongPin
    from card.readers.piv import ALG_ECC_P256, PivCard
    from card.sim.testpki import self_signed_certificate
    from card.sim.virtual import VirtualPivCard

    key = ec.generate_private_key(ec.SECP256R1())
    cert = self_signed_certificate(key, "測試 PIV", days=1)
    cert_der = cert.public_bytes(serialization.Encoding.DER)
    pin = "135790"
    vcard = VpcdCard(VirtualPivCard(cert_der, key, pin))
    plug(vcard)
    try:
        with backend.connect(READER_0) as conn:
            piv = PivCard(conn)
            piv.select()
            assert piv.read_auth_certificate() == cert_der
            with pytest.raises(WrongPin) as wrong:
                piv.verify_pin("864209")
            assert wrong.value.tries_left == 2
            piv.verify_pin(pin)
            digest = os.urandom(32)
            signature = piv.sign(digest, ALG_ECC_P256)
            key.public_key().verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        # Closing reset the card: the PIN has to be verified again.
        with backend.connect(READER_0) as conn:
            piv = PivCard(conn)
            piv.select()
            assert piv.pin_tries_left() == 3
    finally:
        unplug(vcard)
