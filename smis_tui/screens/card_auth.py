"""步驟十一: before a pending application is changed, the applicant's own card
proves who they are (醫事人員卡 or 自然人憑證 and its PIN). In an SSH session the PIN
is typed on the staff member's own computer: no PIN field here, and 確定 asks their
card agent for the proof (see smis_tui.screens.login)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, Static

from smis_tui.screens.base import KioskDialog
from smis_tui.services.card_runtime import CardRuntime
from smis_tui.text import render_error
from smis_tui.widgets.choice_line import ChoiceLine
from smis_tui.widgets.pin_input import PinInput


class CardAuthScreen(KioskDialog[bool]):
    """Dismissed with True once the card in ``reader`` proved ``person_id``; a card
    inserted while the dialog is open is the one checked."""

    BINDINGS = [Binding("escape", "cancel", "common.cancel")]

    def __init__(
        self, cards: CardRuntime, person_id: str, language: str, reader: str | None = None
    ) -> None:
        super().__init__(language)
        self.cards = cards
        self.person_id = person_id
        self.reader = reader
        self.busy = False
        # Waiting for the PIN typed at the staff computer (SSH sessions only).
        self.proving = False

    def compose(self) -> ComposeResult:
        tr = self.tr
        remote = self.cards.remote_session is not None
        with Vertical(id="card-auth", classes="dialog"):
            yield Static(tr("auth.title"), classes="dialog-title")
            yield Static(tr("auth.subtitle"))
            yield ChoiceLine(
                [("hpc", tr("login.card_kind.hpc")), ("moica", tr("login.card_kind.moica"))],
                id="auth-kind",
            )
            if remote:  # the PIN is typed at the staff computer, not here
                yield Label(tr("auth.insert_remote"), id="auth-status", markup=False)
                yield Label(self._remote_text(), id="auth-remote", markup=False)
            else:
                yield Label(tr("auth.insert"), id="auth-status", markup=False)
                yield Label(tr("login.pin_label"))
                yield PinInput(placeholder=tr("login.pin_placeholder"), id="auth-pin")
            yield Label("", id="auth-error", classes="error", markup=False)
            with Horizontal(classes="dialog-actions"):
                yield Button(tr("common.ok"), variant="primary", id="ok")
                yield Button(tr("common.cancel"), id="cancel")

    def on_mount(self) -> None:
        if self.cards.remote_session is not None:
            self.query_one("#ok", Button).focus()  # Enter asks the staff computer

    def on_unmount(self) -> None:
        if self.proving:
            self.cards.login.cancel_proof()  # nobody is left to see the answer

    def _remote_text(self) -> str:
        session = self.tr("login.remote_session", session=self.cards.remote_session)
        return self.tr("login.remote_waiting") + "\n" + session if self.proving else session

    def _set_proving(self, proving: bool) -> None:
        self.proving = proving
        for label in self.query("#auth-remote").results(Label):
            label.update(self._remote_text())

    def reader_changed(self, reader: str, inserted: bool) -> None:
        if inserted:
            self.reader = reader
        elif reader == self.reader:
            self.reader = None
            if self.proving:  # the staff computer's prompt is for a card now gone
                self.cards.login.cancel_proof()

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def check(self) -> None:
        if self.cards.remote_session is not None:
            self._check_remotely()
            return
        pin_input = self.query_one("#auth-pin", Input)
        secret = [pin_input.value]
        pin_input.value = ""
        reader = self.reader
        if self.busy:
            return
        if reader is None:
            self.query_one("#auth-error", Label).update(self.tr("card.no_card"))
            return
        self.busy = True
        self.query_one("#auth-error", Label).update(self.tr("login.authenticating"))
        login, person_id = self.cards.login, self.person_id

        def verify() -> None:
            try:
                login.verify_holder(reader, secret[0], person_id)
            finally:
                secret.clear()  # the PIN is kept no longer than the card needs it

        self.call_service(verify, self._verified, group="card", failed=self._refused)

    def _check_remotely(self) -> None:
        reader = self.reader
        if self.busy:
            return
        if reader is None:
            self.query_one("#auth-error", Label).update(self.tr("card.no_card"))
            return
        self.busy = True
        self.query_one("#auth-error", Label).update("")
        self._set_proving(True)
        login, person_id = self.cards.login, self.person_id
        self.call_service(
            lambda: login.verify_holder(reader, None, person_id),
            self._verified,
            group="card",
            failed=self._refused,
        )

    def _verified(self, _: object) -> None:
        self.busy = False
        self._set_proving(False)
        self.dismiss(True)

    def _refused(self, error: Exception) -> None:
        self.busy = False
        self._set_proving(False)
        self.query_one("#auth-error", Label).update(render_error(error, self.language))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        if self.proving:  # first the PIN prompt at the staff computer, then the dialog
            self.cards.login.cancel_proof()
            return
        self.dismiss(False)
