"""Asks why: rejecting requests (審核) or disabling a permission or an account
(帳號管理). A reason the one rule refuses (:func:`smis_tui.core.reasons.reason_problem`:
required, nothing hidden, at most REASON_MAX characters) is refused in place: the
dialog stays open and says why. The services refuse by the same rule
(docs/architecture.md, "Lifecycle").

The field shows how much of the limit is used (「12/500」), and a paste that would not
fit is refused whole and said so beside the field, where the person is looking: a
toast behind a dialog is easily missed, and a reason cut at 500 characters would be
stored saying less than was meant."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Static

from smis_tui.core.reasons import REASON_MAX, reason_problem
from smis_tui.screens import STYLES
from smis_tui.screens.base import KioskDialog
from smis_tui.widgets.keys_in_order import Button
from smis_tui.widgets.prose import Prose
from smis_tui.widgets.safe_input import SafeInput


class ReasonDialog(KioskDialog[str | None]):
    """Dismissed with the reason (stripped) on ``submit``, or None on 取消 / Esc.
    ``prompt`` says what the reason is for (it may carry names from the database)."""

    CSS_PATH = STYLES / "reason_dialog.tcss"
    BINDINGS = [Binding("escape", "cancel", show=False)]

    def __init__(
        self, language: str, *, title: str, prompt: str, placeholder: str, submit: str
    ) -> None:
        super().__init__(language)
        self.title_text = title
        self.prompt = prompt
        self.placeholder = placeholder
        self.submit_label = submit

    def compose(self) -> ComposeResult:
        with Vertical(id="reason-dialog") as dialog:
            dialog.border_title = self.title_text
            yield Prose(self.prompt, id="reason-prompt")
            yield SafeInput(placeholder=self.placeholder, max_length=REASON_MAX, id="reason-input")
            yield Static(self._count(0), id="reason-count", markup=False)
            yield Prose("", id="reason-error", classes="error-text", markup=False)
            with Horizontal(id="reason-buttons"):
                yield Button(self.submit_label, variant="error", id="reason-submit")
                yield Button(self.tr("common.cancel"), id="reason-cancel")

    def on_mount(self) -> None:
        self.query_one("#reason-error").display = False
        self.query_one("#reason-input", Input).focus()

    def _count(self, length: int) -> str:
        return self.tr("reason.count", count=length, limit=REASON_MAX)

    def _show_error(self, text: str) -> None:
        error = self.query_one("#reason-error", Static)
        error.update(text)
        error.display = True

    @on(Input.Changed, "#reason-input")
    def _changed(self, event: Input.Changed) -> None:
        event.stop()
        self.query_one("#reason-count", Static).update(self._count(len(event.value)))
        self.query_one("#reason-error").display = False

    def on_safe_input_refused(self, message: SafeInput.Refused) -> None:
        message.stop()
        key = "input.too_long" if message.limit else "input.refused"
        self._show_error(self.tr(key, limit=message.limit))

    @on(Input.Submitted, "#reason-input")
    @on(Button.Pressed, "#reason-submit")
    def _submit(self, event: Input.Submitted | Button.Pressed) -> None:
        event.stop()
        field = self.query_one("#reason-input", Input)
        problem = reason_problem(field.value)
        if problem is None:
            self.dismiss(field.value.strip())
            return
        self._show_error(self.tr(problem.value, limit=REASON_MAX))
        field.focus()

    @on(Button.Pressed, "#reason-cancel")
    def _cancel_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
