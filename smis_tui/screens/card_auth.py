"""步驟十一: before a pending application is changed, the applicant's own card
proves who they are (醫事人員卡 or 自然人憑證 and its PIN)."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from card.errors import CardError
from smis_tui.services.card_runtime import CardRuntime
from smis_tui.services.errors import ServiceError
from smis_tui.text import render_error, t
from smis_tui.widgets.choice_line import ChoiceLine
from smis_tui.widgets.localised import Localised
from smis_tui.widgets.pin_input import PinInput


class CardAuthScreen(Localised, ModalScreen[bool]):
    BINDINGS = [Binding("escape", "cancel", "common.cancel")]

    @dataclass
    class Checked(Message):
        error: CardError | ServiceError | None

    def __init__(self, cards: CardRuntime, person_id: str, language: str) -> None:
        super().__init__()
        self.cards = cards
        self.person_id = person_id
        self.language = language
        self.busy = False

    def compose(self) -> ComposeResult:
        tr = self.tr
        with Vertical(id="card-auth", classes="dialog"):
            yield Static(tr("auth.title"), classes="dialog-title")
            yield Static(tr("auth.subtitle"))
            yield ChoiceLine(
                [("hpc", tr("login.kind_hpc")), ("moica", tr("login.kind_moica"))], id="auth-kind"
            )
            yield Label(tr("auth.insert"), id="auth-status", markup=False)
            yield Label(tr("login.pin_label"))
            yield PinInput(placeholder=tr("login.pin_placeholder"), id="auth-pin")
            yield Label("", id="auth-error", classes="error", markup=False)
            with Horizontal(classes="dialog-actions"):
                yield Button(tr("common.ok"), variant="primary", id="ok")
                yield Button(tr("common.cancel"), id="cancel")

    def tr(self, key: str, **params: object) -> str:
        return t(key, self.language, **params)

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def check(self) -> None:
        pin_input = self.query_one("#auth-pin", Input)
        pin, pin_input.value = pin_input.value, ""
        if self.busy:
            return
        reader = self.app.login_screen.reader  # type: ignore[attr-defined]
        if reader is None:
            self.query_one("#auth-error", Label).update(self.tr("login.status_insert"))
            return
        self.busy = True
        self.query_one("#auth-error", Label).update(self.tr("login.authenticating"))
        self.verify(reader, pin)

    @work(thread=True, exclusive=True, group="card", exit_on_error=False)
    def verify(self, reader: str, pin: str) -> None:
        try:
            self.cards.login.verify_holder(reader, pin, self.person_id)
        except (CardError, ServiceError) as error:
            self.post_message(self.Checked(error))
            return
        except Exception:
            self.post_message(self.Checked(ServiceError("error.unexpected")))
            return
        finally:
            del pin
        self.post_message(self.Checked(None))

    @on(Checked)
    def checked(self, message: Checked) -> None:
        self.busy = False
        if message.error is None:
            self.dismiss(True)
            return
        error = message.error
        text = render_error(error, self.language)
        self.query_one("#auth-error", Label).update(text)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(False)
