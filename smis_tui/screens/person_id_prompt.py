"""First login with a new card: ask the 身分證號 once (DESIGN §4)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from smis_tui.services.accounts import clean_person_id
from smis_tui.services.errors import ValidationFailed
from smis_tui.text import t
from smis_tui.widgets.localised import Localised
from smis_tui.widgets.safe_input import SafeInput


class PersonIdPrompt(Localised, ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "common.cancel")]

    def __init__(self, language: str) -> None:
        super().__init__()
        self.language = language

    def compose(self) -> ComposeResult:
        with Vertical(id="person-id-dialog", classes="dialog"):
            yield Static(t("login.ask_id_title", self.language), classes="dialog-title")
            yield Static(t("login.ask_id_body", self.language))
            yield SafeInput(id="person-id", max_length=20)
            yield Label(t("apply.id_hint", self.language), classes="hint")
            yield Label("", id="person-id-error", classes="error", markup=False)
            with Horizontal(classes="dialog-actions"):
                yield Button(t("common.ok", self.language), variant="primary", id="ok")
                yield Button(t("common.cancel", self.language), id="cancel")

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
