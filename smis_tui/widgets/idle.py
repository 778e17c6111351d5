"""IdleWarning: the last seconds before an idle kiosk (or SSH session) is cleared.

Shown by the app over whatever screen is open; any key or click dismisses it (the app
counts that as activity). The app owns the clock and calls :meth:`show_seconds`.
"""

from __future__ import annotations

from textual import events, on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from smis_tui.text import t
from smis_tui.widgets.keys_in_order import Button
from smis_tui.widgets.localised import Localised
from smis_tui.widgets.prose import Prose


class IdleWarning(Localised, ModalScreen[None]):
    def __init__(self, seconds: int, language: str, *, ends_session: bool) -> None:
        super().__init__(id="idle-warning")
        self.language = language
        self.seconds = seconds
        self._countdown_key = (
            "kiosk.idle_countdown_session" if ends_session else "kiosk.idle_countdown"
        )

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(t("kiosk.idle_title", self.language), id="dialog-title")
            yield Prose(self._text(), id="idle-countdown", markup=False)
            with Horizontal(id="dialog-buttons"):
                yield Button(
                    t("kiosk.idle_continue", self.language), variant="primary", id="idle-continue"
                )

    def on_mount(self) -> None:
        for button in self.query("#idle-continue").results(Button):
            button.focus()

    def _text(self) -> str:
        return t(self._countdown_key, self.language, seconds=self.seconds)

    def show_seconds(self, seconds: int) -> None:
        self.seconds = seconds
        if self.is_mounted:
            self.query_one("#idle-countdown", Static).update(self._text())

    def on_key(self, event: events.Key) -> None:
        # Any key means someone is there: the key only wakes the kiosk, nothing else.
        event.stop()
        event.prevent_default()
        self.dismiss(None)

    @on(Button.Pressed, "#idle-continue")
    def _continue(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)
