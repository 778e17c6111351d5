"""身份驗證: the person's own card proves who they are (醫事人員卡 or 自然人憑證 and
its PIN) — the seed's step 11 before a pending application is shown, and where the
seed is silent, at 送出申請 and before a change in 個人資料維護. In an SSH session the
PIN is typed on the staff member's own computer: no PIN field here, and 確定 asks their
card agent for the proof (see smis_tui.screens.login).

The dialog only makes the proof; what it is for runs right after, in the same worker,
through the account service, which decides whether the card stands for the ID or the
account. A refusal is shown here, so another card can be tried."""

from __future__ import annotations

import logging
from collections.abc import Callable

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, Static

from smis_tui.screens.base import KioskDialog, ResultT
from smis_tui.services.calls import is_database_failure
from smis_tui.services.card_login import CardPreview
from smis_tui.services.card_proof import CardProof
from smis_tui.services.card_runtime import CardRuntime
from smis_tui.text import render_error
from smis_tui.widgets.choice_line import ChoiceLine
from smis_tui.widgets.keys_in_order import Button
from smis_tui.widgets.pin_input import PinInput
from smis_tui.widgets.prose import ProseLabel

log = logging.getLogger("smis_tui.screens.card_auth")


class CardAuthScreen(KioskDialog[ResultT | None]):
    """Dismissed with what ``then`` returned for the proof of the card in ``reader``
    (None: cancelled); a card inserted while the dialog is open is the one checked.
    ``then`` runs in a worker thread."""

    BINDINGS = [
        Binding("escape", "cancel", "common.cancel"),
        # A dialog keeps the app's keys out; the demo's card keys are wanted here.
        Binding("f5", "app.insert_demo_card", "login.demo_insert", show=False),
        Binding("f4", "app.remove_demo_card", "login.demo_remove", show=False),
    ]

    def __init__(
        self,
        cards: CardRuntime,
        language: str,
        then: Callable[[CardProof], ResultT],
        *,
        title_key: str = "auth.title",
        reader: str | None = None,
    ) -> None:
        super().__init__(language)
        self.cards = cards
        self.then = then
        self.title_key = title_key
        self.reader = reader
        self.busy = False
        # Waiting for the PIN typed at the staff computer (SSH sessions only).
        self.proving = False

    def compose(self) -> ComposeResult:
        tr = self.tr
        remote = self.cards.remote_session is not None
        with Vertical(id="card-auth", classes="dialog"):
            yield Static(tr(self.title_key), classes="dialog-title")
            yield Static(tr("auth.subtitle"))
            yield ChoiceLine(
                [("hpc", tr("login.card_choice.hpc")), ("moica", tr("login.card_choice.moica"))],
                id="auth-kind",
            )
            if remote:  # the PIN is typed at the staff computer, not here
                yield ProseLabel(tr("auth.insert_remote"), id="auth-status", markup=False)
                yield ProseLabel(self._remote_text(), id="auth-remote", markup=False)
            else:
                yield ProseLabel(tr("auth.insert"), id="auth-status", markup=False)
                yield ProseLabel(tr("login.pin_label"))
                yield PinInput(placeholder=tr("login.pin_placeholder"), id="auth-pin")
            if self.cards.demo_backend is not None:
                yield ProseLabel(tr("auth.demo_hint"), classes="hint")
            yield ProseLabel("", id="auth-error", classes="error", markup=False)
            with Horizontal(classes="dialog-actions"):
                yield Button(tr("common.ok"), variant="primary", id="ok")
                yield Button(tr("common.cancel"), id="cancel")

    def on_mount(self) -> None:
        if self.cards.remote_session is not None:
            self.query_one("#ok", Button).focus()  # Enter asks the staff computer
        else:
            self.query_one("#auth-pin", PinInput).focus()  # the PIN can be typed at once
        if self.reader is not None:
            self._show_card(self.reader)

    def _show_card(self, reader: str) -> None:
        """Name the card in ``reader`` and choose its kind, as the login screen does."""
        login = self.cards.login
        self.call_service(
            lambda: login.read(reader), self._card_shown, group="read", failed=lambda _: None
        )

    def _card_shown(self, preview: CardPreview) -> None:
        kind = str(preview.identity.kind)
        if kind in ("hpc", "moica"):
            self.query_one("#auth-kind", ChoiceLine).value = kind
        self.query_one("#auth-status", Label).update(
            self.tr("auth.card_in_reader", holder=preview.identity.name)
        )

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
            self._show_card(reader)
        elif reader == self.reader:
            self.reader = None
            remote = self.cards.remote_session is not None
            self.query_one("#auth-status", Label).update(
                self.tr("auth.insert_remote" if remote else "auth.insert")
            )
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
        login, then = self.cards.login, self.then

        def verify() -> ResultT:
            try:
                proof = login.prove_holder(reader, secret[0])
            finally:
                secret.clear()  # the PIN is kept no longer than the card needs it
            return then(proof)

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
        login, then = self.cards.login, self.then
        self.call_service(
            lambda: then(login.prove_holder(reader, None)),
            self._verified,
            group="card",
            failed=self._refused,
        )

    def _verified(self, result: ResultT) -> None:
        self.busy = False
        self._set_proving(False)
        self.dismiss(result)

    def _refused(self, error: Exception) -> None:
        self.busy = False
        self._set_proving(False)
        if is_database_failure(error):
            # The change ran in this dialog's worker and wrote nothing; the driver's
            # detail (hosts, libpq's words) is for the log, not a public screen.
            log.warning("change not written: %s", error)
            text = self.tr("auth.database_error")
        else:
            text = render_error(error, self.language)
        self.query_one("#auth-error", Label).update(text)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        if self.proving:  # first the PIN prompt at the staff computer, then the dialog
            self.cards.login.cancel_proof()
            return
        self.dismiss(None)
