"""First login with a new card: ask the 身分證號 once (docs/architecture.md, "Cards")."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, Static

from smis_tui.screens.base import KioskDialog
from smis_tui.services.accounts import clean_person_id
from smis_tui.services.errors import ValidationFailed
from smis_tui.widgets.keys_in_order import Button
from smis_tui.widgets.prose import Prose, ProseLabel
from smis_tui.widgets.safe_input import SafeInput


class PersonIdPrompt(KioskDialog[str | None]):
    BINDINGS = [Binding("escape", "cancel", "common.cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="person-id-dialog", classes="dialog"):
            yield Static(self.tr("login.ask_id_title"), classes="dialog-title")
            yield Prose(self.tr("login.ask_id_body"))
            yield SafeInput(id="person-id", max_length=20)
            yield ProseLabel(self.tr("apply.id_hint"), classes="hint")
            yield ProseLabel("", id="person-id-error", classes="error", markup=False)
            with Horizontal(classes="dialog-actions"):
                yield Button(self.tr("common.ok"), variant="primary", id="ok")
                yield Button(self.tr("common.cancel"), id="cancel")

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def confirm(self) -> None:
        value = self.query_one("#person-id", Input).value
        try:
            person = clean_person_id(value)
        except ValidationFailed as exc:
            self.query_one("#person-id-error", Label).update(
                exc.message("person_id", self.language) or exc.render(self.language)
            )
            return
        self.dismiss(person.value)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
