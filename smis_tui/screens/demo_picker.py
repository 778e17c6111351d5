"""示範卡片 (demo only): pick a demo card to put in the demo reader from any screen —
the login screen lists them, but a dialog that asks for the card (身份驗證) covers that
list. F5 opens it; F4 takes the card out. It lists the cards as the login screen
does: what each shows as its account is now, the one in the reader marked."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Static

from smis_tui.demo import DemoCard
from smis_tui.screens.base import KioskDialog
from smis_tui.screens.login import LoginScreen, demo_card_line
from smis_tui.widgets.keys_in_order import Button


class DemoCardPicker(KioskDialog[int | None]):
    """Dismissed with the index of the chosen card, or None."""

    BINDINGS = [Binding("escape", "cancel", "common.cancel")]

    def __init__(self, cards: tuple[DemoCard, ...], language: str) -> None:
        super().__init__(language)
        self.cards = cards

    def compose(self) -> ComposeResult:
        with Vertical(id="demo-picker", classes="dialog"):
            yield Static(self.tr("demo.pick_title"), classes="dialog-title")
            login = self._login_screen()
            in_reader = login.demo_card_in_reader() if login is not None else None
            for index, card in enumerate(self.cards):
                marked = index == in_reader
                label = card.label if login is None else login.demo_label(index, self.language)
                button = Button(
                    demo_card_line(
                        card.pin,
                        card.holder,
                        label,
                        note=self.tr("demo.in_reader") if marked else "",
                        marked=marked,
                        lines=1,
                    ),
                    id=f"demo-pick-{index}",
                    classes="demo-card",
                    compact=True,
                )
                button.set_class(marked, "-in-reader")
                yield button

    def _login_screen(self) -> LoginScreen | None:
        """The login screen below, which knows what the cards' accounts are now."""
        login = getattr(self.app, "login_screen", None)
        if isinstance(login, LoginScreen) and login.demo_cards == self.cards:
            return login
        return None

    @on(Button.Pressed, ".demo-card")
    def picked(self, event: Button.Pressed) -> None:
        assert event.button.id is not None
        self.dismiss(int(event.button.id.removeprefix("demo-pick-")))

    def action_cancel(self) -> None:
        self.dismiss(None)
