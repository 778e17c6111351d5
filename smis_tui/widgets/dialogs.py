"""MessageDialog: one message, 確定 (and optionally 取消); dismissed with True / False.

The message is shown as plain text (never Rich markup, control characters stripped),
so it may carry text from users or the database. Styles live in
``smis_tui/styles/form.tcss``.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from smis_tui.text import DEFAULT_LANGUAGE, t
from smis_tui.widgets.keys_in_order import Button
from smis_tui.widgets.localised import Localised
from smis_tui.widgets.prose import Prose
from smis_tui.widgets.safe import plain


class MessageDialog(Localised, ModalScreen[bool]):
    """A modal message. 確定 dismisses with True, 取消 (when shown) with False.

    Esc means 取消 when there is one, otherwise 確定 (the only answer). Enter presses
    the focused button; 確定 has the focus when the dialog opens, except in a dialog
    that asks before something irreversible (``destructive``): there 取消 has it, so
    one stray Enter does nothing.
    """

    BINDINGS = [Binding("escape", "escape", show=False)]

    def __init__(
        self,
        message: str,
        *,
        language: str = DEFAULT_LANGUAGE,
        cancel: bool = False,
        title: str | None = None,
        ok_label: str | None = None,
        cancel_label: str | None = None,
        destructive: bool = False,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.destructive = destructive and cancel
        self.message = message
        self.title_text = title
        self.language = language
        self.has_cancel = cancel
        self.ok_label = ok_label or t("common.ok", language)
        self.cancel_label = cancel_label or t("common.cancel", language)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            if self.title_text:
                yield Static(plain(self.title_text), id="dialog-title")
            yield Prose(self.message, id="dialog-message")
            with Horizontal(id="dialog-buttons"):
                yield Button(self.ok_label, variant="primary", id="dialog-ok")
                if self.has_cancel:
                    yield Button(self.cancel_label, id="dialog-cancel")

    def on_mount(self) -> None:
        # query, not query_one: the dialog may already be on its way out (its card left
        # and the app went back to the login screen) when its mount is processed.
        first = "#dialog-cancel" if self.destructive else "#dialog-ok"
        for button in self.query(first).results(Button):
            button.focus()

    @on(Button.Pressed, "#dialog-ok")
    def _ok(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(True)

    @on(Button.Pressed, "#dialog-cancel")
    def _cancel(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(False)

    def action_escape(self) -> None:
        self.dismiss(not self.has_cancel)
