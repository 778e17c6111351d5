"""示範卡片 (demo only): pick a demo card to put in the demo reader from any screen —
the login screen lists them, but a dialog that asks for the card (身份驗證) covers that
list. F5 opens it; F4 takes the card out."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Button, Static

from smis_tui.demo import DemoCard
from smis_tui.screens.base import KioskDialog
from smis_tui.widgets.safe import plain


class DemoCardPicker(KioskDialog[int | None]):
    """Dismissed with the index of the chosen card, or None."""

    BINDINGS = [Binding("escape", "cancel", "common.cancel")]

    def __init__(self, cards: tuple[DemoCard, ...], language: str) -> None:
        super().__init__(language)
        self.cards = cards

    def compose(self) -> ComposeResult:
        with Vertical(id="demo-picker", classes="dialog"):
            yield Static(self.tr("demo.pick_title"), classes="dialog-title")
            for index, card in enumerate(self.cards):
                yield Button(
                    plain(f"{card.pin}  {card.holder}  {card.label}"),
                    id=f"demo-pick-{index}",
                    classes="demo-card",
                    compact=True,
                )

    @on(Button.Pressed, ".demo-card")
    def picked(self, event: Button.Pressed) -> None:
        assert event.button.id is not None
        self.dismiss(int(event.button.id.removeprefix("demo-pick-")))

    def action_cancel(self) -> None:
        self.dismiss(None)
