"""Fixtures and Pilot steps of the screen tests: the demo accounts and cards on a temp
database, logging in with a demo card, opening a screen as a given account, and the
kiosk of an SSH session whose PIN is typed at a scripted staff computer."""

from __future__ import annotations

import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import Input

from card.agent.proof import LoginProof, login_message
from card.errors import CardRemoved, ProofCancelled, ProofTimedOut
from card.identity import identity_from_certificate
from card.pin import check_pin_format, wipe
from card.readers.profiles import CardRead, read_card
from card.signing import sign_challenge
from card.sim.inprocess import InProcessBackend
from models.db import open_database
from models.purpose import mark_demo_database
from smis_tui.app import SmisApp
from smis_tui.core.config import Settings
from smis_tui.demo import DemoCard, create_demo, virtual_card
from smis_tui.services import Services, build_services
from smis_tui.services.card_login import CardLoginService
from smis_tui.services.card_proof import CardProof
from smis_tui.services.card_runtime import DEMO_READER, CardRuntime, demo_runtime

Demo = tuple[Services, CardRuntime, list[DemoCard]]
SIZE = (100, 30)
ScreenT = TypeVar("ScreenT", bound=Screen[Any])


@pytest.fixture
def demo(sqlite_settings: Settings, tmp_path: Path) -> Iterator[Demo]:
    open_database(sqlite_settings.database_url, sqlite_settings.sqlite_path)
    services = build_services(sqlite_settings)
    mark_demo_database()
    cards = create_demo(services, tmp_path / "demo-pki")
    yield services, demo_runtime(services, tmp_path / "demo-pki"), cards


async def settle(pilot) -> None:  # type: ignore[no-untyped-def]
    """Let the screen, then its workers, then the messages they posted finish."""
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def press(pilot, *keys: str) -> None:  # type: ignore[no-untyped-def]
    """Press ``keys`` and wait for what they started to finish."""
    await pilot.press(*keys)
    await settle(pilot)


def kiosk_app(demo: Demo, **options: Any) -> SmisApp:
    """The app over the demo services and cards (``options`` as SmisApp takes them)."""
    services, runtime, cards = demo
    return SmisApp(services, runtime, demo_cards=cards, **options)


@asynccontextmanager
async def kiosk(demo: Demo, size: tuple[int, int] = SIZE) -> AsyncIterator[Pilot[None]]:
    """The demo app running under Pilot; ``pilot.app`` is the SmisApp."""
    async with kiosk_app(demo).run_test(size=size) as pilot:
        yield pilot


def card(cards: list[DemoCard] | tuple[DemoCard, ...], user: str) -> DemoCard:
    """The demo card of PKI user ``user``."""
    return next(c for c in cards if c.user == user)


def account_of(services: Services, tmp_path: Path, user: str) -> int:
    """The demo account bound to the demo card of PKI user ``user``."""
    pem = (tmp_path / "demo-pki" / "users" / f"{user}.pem").read_bytes()
    account = services.accounts.find_by_certificate(identity_from_certificate(pem).cert_sha256)
    assert account is not None
    return int(account.id)


@pytest.fixture
def demo_accounts(demo: Demo, tmp_path: Path) -> dict[str, int]:
    """The demo accounts' ids by their card's PKI user (the demo is described in
    test_control_screens.py)."""
    users = ("hpc", "moica", "moica2", "hpc2", "expired")
    return {user: account_of(demo[0], tmp_path, user) for user in users}


def insert(runtime: CardRuntime, demo_card: DemoCard) -> None:
    assert runtime.demo_backend is not None and runtime.demo_pki is not None
    runtime.demo_backend.insert(DEMO_READER, virtual_card(runtime.demo_pki, demo_card))


def remove(runtime: CardRuntime) -> None:
    assert runtime.demo_backend is not None
    runtime.demo_backend.remove(DEMO_READER)


async def insert_and_type(pilot, runtime: CardRuntime, demo_card: DemoCard, pin: str) -> None:  # type: ignore[no-untyped-def]
    insert(runtime, demo_card)
    await settle(pilot)
    pin_input = pilot.app.screen.query_one("#pin", Input)
    assert pin_input.has_focus  # the card moved the focus to the PIN
    await pilot.press(*pin)
    await press(pilot, "enter")


async def prove_with_card(pilot, runtime: CardRuntime, demo_card: DemoCard) -> None:  # type: ignore[no-untyped-def]
    """In the 身份驗證 dialog on top: put ``demo_card`` in the demo reader, give its PIN
    and press 確定."""
    insert(runtime, demo_card)
    await settle(pilot)
    pilot.app.screen.query_one("#auth-pin", Input).value = demo_card.pin
    pilot.app.screen.query_one("#ok").press()
    await settle(pilot)


async def log_in(pilot, user: str, pin: str | None = None) -> DemoCard:  # type: ignore[no-untyped-def]
    """Insert the demo card of ``user`` and type its PIN (or ``pin``): the card."""
    app = pilot.app
    demo_card = card(app.demo_cards, user)
    await insert_and_type(pilot, app.cards, demo_card, demo_card.pin if pin is None else pin)
    return demo_card


async def open_screen(pilot: Pilot[None], screen: ScreenT) -> ScreenT:
    """Push ``screen`` over what is showing and wait until it has loaded."""
    await pilot.pause()
    await pilot.app.push_screen(screen)
    await settle(pilot)
    return screen


def demo_proof(demo: Demo, user: str) -> CardProof:
    """The proof of the demo card of PKI user ``user``, as logging in with it makes one
    (issued on the same trust as the demo set-up's: the demo made the card itself)."""
    services, runtime, _ = demo
    assert runtime.demo_pki is not None
    pem = (runtime.demo_pki / "users" / f"{user}.pem").read_bytes()
    return services.accounts.proofs.issue(identity_from_certificate(pem))


async def open_as(
    pilot: Pilot[None],
    services: Services,
    screen_class: Callable[..., ScreenT],
    account_id: int,
    language: str = "zh_TW",
    **options: Any,
) -> ScreenT:
    """Open a screen taking (services, the account's view, language) as that account;
    ``options`` are the screen's keyword arguments (ProfileScreen's ``cards``, ``proof``)."""
    screen = screen_class(services, services.accounts.view(account_id), language, **options)
    return await open_screen(pilot, screen)


@asynccontextmanager
async def opened_as(
    demo: Demo,
    screen_class: Callable[..., ScreenT],
    account_id: int,
    language: str = "zh_TW",
    size: tuple[int, int] = SIZE,
    **options: Any,
) -> AsyncIterator[tuple[Pilot[None], ScreenT]]:
    """The demo app running under Pilot with ``screen_class`` open as ``account_id``
    (``options`` as :func:`open_as` takes them)."""
    async with kiosk(demo, size) as pilot:
        yield pilot, await open_as(pilot, demo[0], screen_class, account_id, language, **options)


# ----------------------------------------------------------------------- SSH sessions


class ScriptedStaffComputer:
    """A staff member's card agent, in-process (card.agent.proof.RemoteCards): it reads
    the demo card in the demo reader; a login proof waits until the test types the PIN
    at "the staff computer" (:meth:`type_pin`), the kiosk cancels, or the time is up;
    then the card itself checks the PIN and signs the login message."""

    SERVER_NAME = "kiosk.test"
    _CANCEL = object()

    def __init__(self, backend: InProcessBackend, session_id: str = "4711-c0ffee00") -> None:
        self.backend = backend
        self.session_id = session_id
        self.asking = threading.Event()
        self.proofs = 0
        self._answers: queue.Queue[object] = queue.Queue()

    def read_card(self, reader: str) -> CardRead:
        conn = self.backend.connect(reader)
        try:
            return read_card(conn)
        finally:
            conn.close()

    def prove(self, reader: str, cert_sha256: str, nonce: bytes, timeout: float) -> LoginProof:
        while not self._answers.empty():  # a cancel that came after the last proof
            self._answers.get_nowait()
        self.asking.set()
        try:
            answer = self._answers.get(timeout=timeout)
        except queue.Empty:
            raise ProofTimedOut(timeout) from None
        finally:
            self.asking.clear()
        if answer is self._CANCEL:
            raise ProofCancelled()
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, str)
        pin = check_pin_format(answer)
        conn = self.backend.connect(reader)
        try:
            read = read_card(conn)
            identity = identity_from_certificate(read.certificate)
            if identity.cert_sha256 != cert_sha256:
                raise CardRemoved()
            message = login_message(self.SERVER_NAME, self.session_id, nonce)
            signature = sign_challenge(conn, read, identity, pin, message, pkcs11=None)
        finally:
            conn.close()
            wipe(pin)
        self.proofs += 1
        return LoginProof(self.SERVER_NAME, signature)

    def cancel(self) -> None:
        self._answers.put(self._CANCEL)

    def type_pin(self, pin: str) -> None:
        self._answers.put(pin)

    def fail(self, error: Exception) -> None:
        """The agent answers the proof under way with ``error``."""
        self._answers.put(error)


def remote_demo(demo: Demo, pin_timeout: float = 30.0) -> tuple[Demo, ScriptedStaffComputer]:
    """The demo as an SSH session's kiosk sees it: the demo cards are in the staff
    computer's reader, and their PIN is typed there."""
    services, local, cards = demo
    assert local.demo_backend is not None
    staff = ScriptedStaffComputer(local.demo_backend)
    login = CardLoginService(
        local.demo_backend,
        local.login.validator,
        services.login,
        services.accounts,
        remote=staff,
        server_names=(ScriptedStaffComputer.SERVER_NAME,),
        remote_pin_timeout=pin_timeout,
    )
    runtime = CardRuntime(
        local.demo_backend, login, demo_backend=local.demo_backend, demo_pki=local.demo_pki
    )
    return (services, runtime, cards), staff


async def wait_until(pilot, condition: Callable[[], bool], timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Let the app run until ``condition()`` (a worker may be blocked meanwhile, so
    :func:`settle` would wait for ever)."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "the condition never came true"
        await pilot.pause(0.02)
    await pilot.pause()
