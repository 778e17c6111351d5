"""The first screen until the login screen exists: the system's name, and the demo
cards with their PINs when the kiosk runs with --demo."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from smis_tui.demo import DemoCard
from smis_tui.text import t


class PlaceholderScreen(Screen[None]):
    def __init__(self, language: str, demo_cards: Sequence[DemoCard] = ()) -> None:
        super().__init__()
        self.language = language
        self.demo_cards = tuple(demo_cards)

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="placeholder"):
            yield Static(t("app.placeholder_title", self.language), id="placeholder-title")
            yield Static(t("app.placeholder_body", self.language), id="placeholder-body")
            if self.demo_cards:
                yield Static(t("demo.title", self.language), id="demo-title")
                yield DataTable(id="demo-cards", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        if not self.demo_cards:
            return
        table = self.query_one("#demo-cards", DataTable)
        table.add_columns(
            *(t(key, self.language) for key in ("demo.pin", "demo.holder", "demo.case"))
        )
        for card in self.demo_cards:
            # Holder names are data: shown as plain text, never as markup.
            table.add_row(Text(card.pin), Text(card.holder), Text(card.label))
