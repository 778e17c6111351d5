"""SmisApp: the Textual application. Services and the card runtime are built before
it and handed in; it owns the screens' navigation and turns reader events (from a
background thread) into messages."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from textual import work
from textual.app import App
from textual.message import Message

from card.errors import CardError
from smis_tui.demo import DemoCard
from smis_tui.screens.home import HomeScreen
from smis_tui.screens.login import LoginScreen
from smis_tui.screens.person_id_prompt import PersonIdPrompt
from smis_tui.services import Services
from smis_tui.services.auth import LoginOutcome, LoginState
from smis_tui.services.card_login import CardProof
from smis_tui.services.card_runtime import CardRuntime
from smis_tui.services.errors import ServiceError
from smis_tui.text import t
from smis_tui.widgets.dialogs import MessageDialog

STYLES = Path(__file__).resolve().parent.parent / "styles"
log = logging.getLogger("smis_tui.app")


class SmisApp(App[None]):
    CSS_PATH = [
        STYLES / "app.tcss",
        STYLES / "login.tcss",
        STYLES / "unit_search.tcss",
        STYLES / "form.tcss",
    ]
    TITLE = "智慧防疫物資管理資訊系統"
    # A public counter has no use for the command palette (and it bypasses the screens).
    ENABLE_COMMAND_PALETTE = False

    @dataclass
    class CardEvent(Message):
        reader: str
        inserted: bool

    @dataclass
    class Bound(Message):
        outcome: LoginOutcome | None
        error: CardError | ServiceError | None

    def __init__(
        self,
        services: Services,
        cards: CardRuntime,
        *,
        kiosk: bool = False,
        started_at: float | None = None,
        demo_cards: Sequence[DemoCard] = (),
    ):
        super().__init__()
        self.services = services
        self.cards = cards
        self.kiosk = kiosk
        self.demo_cards = tuple(demo_cards)
        self.language = services.settings.language
        self._started_at = started_at if started_at is not None else time.perf_counter()
        self._unsubscribe: Callable[[], None] | None = None
        self.sub_title = t("app.subtitle", self.language)
        self.login_screen = LoginScreen(services, cards, self.language, self.demo_cards)

    def on_mount(self) -> None:
        self.push_screen(self.login_screen)

        def card_event(reader: str, inserted: bool) -> None:
            # post_message is thread-safe: reader events arrive on the monitor's thread.
            self.post_message(self.CardEvent(reader, inserted))

        self._unsubscribe = self.cards.subscribe(card_event)
        log.info("startup took %.3f s", time.perf_counter() - self._started_at)

    def on_unmount(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        self.cards.close()

    def on_smis_app_card_event(self, event: CardEvent) -> None:
        if not event.inserted and self.screen is not self.login_screen:
            # The card left: whoever was using the kiosk is logged out, nothing kept.
            self.logout()
        self.login_screen.card_changed(event.reader, event.inserted)

    # ----- outcomes -------------------------------------------------------------------

    def notify_dialog(self, text: str, then: Callable[[bool | None], None] | None = None) -> None:
        self.push_screen(MessageDialog(text, language=self.language), then)

    def show_outcome(self, outcome: LoginOutcome) -> None:
        if outcome.state == LoginState.ACTIVE and outcome.account_id is not None:
            self.push_screen(
                HomeScreen(self.services.accounts.view(outcome.account_id), self.language)
            )
            return
        text = self.login_screen.outcome_text(outcome)
        if outcome.state == LoginState.DISABLED and outcome.account_id is not None:
            account_id = outcome.account_id

            def reapply(_: bool | None) -> None:
                self.start_application(self.services.accounts.person_id_for(account_id))

            self.notify_dialog(text, reapply)
            return
        self.notify_dialog(text)

    def ask_person_id(self, proof: CardProof) -> None:
        def bind(person_id: str | None) -> None:
            if person_id:
                self.bind_card(proof, person_id)

        self.push_screen(PersonIdPrompt(self.language), bind)

    @work(thread=True, exclusive=True, group="card")
    def bind_card(self, proof: CardProof, person_id: str) -> None:
        try:
            outcome = self.cards.login.bind(proof, person_id)
        except (CardError, ServiceError) as error:
            self.post_message(self.Bound(None, error))
            return
        self.post_message(self.Bound(outcome, None))

    def on_smis_app_bound(self, message: Bound) -> None:
        if message.error is not None:
            error = message.error
            self.notify_dialog(
                error.render(self.language) if isinstance(error, ServiceError) else str(error)
            )
        elif message.outcome is not None:
            self.show_outcome(message.outcome)

    # ----- navigation -----------------------------------------------------------------

    def start_application(self, person_id: str | None = None) -> None:
        from smis_tui.screens.new_account import NewAccountScreen

        self.push_screen(NewAccountScreen(self.services, self.cards, self.language, person_id))

    def logout(self) -> None:
        while self.screen is not self.login_screen and len(self.screen_stack) > 1:
            self.pop_screen()
        self.login_screen.reset()
