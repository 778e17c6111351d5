"""新帳號申請 (steps 2–4, and 8–11 for a pending application): the ID, the unit
chosen in 單位查詢 (never typed), 確定 → the application form, or — when the ID has
an application under review — 您有申請中的權限，是否確定更新申請？ → the card → the
pre-filled 更新申請權限. Whatever else the ID's account is, the answer is the same
empty form: only the card at 送出申請 may learn more."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, Static

from smis_tui.screens.application_form import ApplicationFormScreen
from smis_tui.screens.base import KioskScreen, SessionEnded
from smis_tui.screens.card_auth import CardAuthScreen
from smis_tui.screens.unit_search import UnitSearchScreen
from smis_tui.services import Services
from smis_tui.services.accounts import (
    AccountView,
    ApplicationStart,
    PersonalData,
    StartKind,
    clean_person_id,
)
from smis_tui.services.card_proof import CardProof
from smis_tui.services.card_runtime import CardRuntime
from smis_tui.services.errors import NotAllowed, ValidationFailed
from smis_tui.services.units import UnitRow
from smis_tui.widgets.dialogs import MessageDialog
from smis_tui.widgets.keys_in_order import Button
from smis_tui.widgets.prose import Prose, ProseLabel
from smis_tui.widgets.safe import plain
from smis_tui.widgets.safe_input import SafeInput


class NewAccountScreen(KioskScreen[None]):
    BINDINGS = [
        Binding("escape", "back", "common.back"),
        Binding("f3", "choose_unit", "common.select"),
    ]

    def __init__(
        self,
        services: Services,
        cards: CardRuntime,
        language: str,
        person_id: str | None = None,
        *,
        reader: str | None = None,
        proof: CardProof | None = None,
    ) -> None:
        """``reader`` is where the kiosk last saw a card: the card check of an update
        reads it (a card inserted later is reported by reader_changed). ``proof``: the
        card of the login that found the account disabled, sent with the form."""
        super().__init__(language)
        self.services = services
        self.cards = cards
        self.reader = reader
        self.proof = proof
        self.initial_person_id = person_id or ""
        self.unit: UnitRow | None = None

    def compose_body(self) -> ComposeResult:
        with Vertical(id="new-account"):
            yield Static(self.tr("login.apply_link"), classes="screen-title")
            yield Prose(self.tr("apply.notice"), id="apply-notice")
            yield Label(self.tr("apply.person_id_label"))
            yield SafeInput(self.initial_person_id, id="person-id", max_length=20)
            yield ProseLabel(self.tr("apply.id_hint"), classes="hint")
            yield ProseLabel("", id="person-id-error", classes="error", markup=False)
            yield Label(self.tr("apply.unit_label"))
            with Horizontal(id="unit-row"):
                yield SafeInput(id="unit-code", disabled=True)
                yield Button(self.tr("common.select"), id="choose-unit")
            yield Label("", id="unit-name", markup=False)
            yield ProseLabel("", id="unit-error", classes="error", markup=False)
            yield Button(self.tr("common.ok"), variant="primary", id="confirm")

    @on(Input.Blurred, "#person-id")
    def check_person_id(self) -> bool:
        label = self.query_one("#person-id-error", Label)
        try:
            clean_person_id(self.query_one("#person-id", Input).value)
        except ValidationFailed as exc:
            label.update(exc.message("person_id", self.language) or exc.render(self.language))
            return False
        label.update("")
        return True

    @on(Button.Pressed, "#choose-unit")
    def action_choose_unit(self) -> None:
        def chosen(unit: UnitRow | None) -> None:
            if unit is None:
                return
            self.unit = unit
            self.query_one("#unit-code", Input).value = unit.code
            self.query_one("#unit-name", Label).update(plain(unit.name))
            self.query_one("#unit-error", Label).update("")

        self.app.push_screen(UnitSearchScreen(self.services.units, self.language), chosen)

    @on(Button.Pressed, "#confirm")
    def confirm(self) -> None:
        ok = self.check_person_id()
        if self.unit is None:
            self.query_one("#unit-error", Label).update(self.tr("apply.unit_missing"))
            return
        if ok:
            self.begin(self.query_one("#person-id", Input).value, self.unit.code)

    def begin(self, person_id: str, unit_code: str) -> None:
        accounts = self.services.accounts

        self.call_service(
            lambda: accounts.begin_application(person_id, unit_code),
            self.started,
            group="begin",
            failed=self._not_started,
        )

    def _not_started(self, error: Exception) -> None:
        if not isinstance(error, ValidationFailed):
            self.show_error(error)
            return
        self.query_one("#person-id-error", Label).update(
            error.message("person_id", self.language) or ""
        )
        self.query_one("#unit-error", Label).update(error.message("unit_code", self.language) or "")

    def started(self, start: ApplicationStart) -> None:
        assert self.unit is not None
        unit = self.unit
        accounts = self.services.accounts
        if start.kind != StartKind.UPDATE_PENDING:
            proof = self.proof

            def previous() -> PersonalData | None:
                if proof is None:
                    return None
                try:
                    return accounts.previous_data(proof, start.person_id)
                except NotAllowed:  # the card's proof ran out: an empty form
                    return None

            self.call_service(
                previous,
                lambda data: self._open_form(
                    start, unit, proof, previous=data, rejected=start.rejected
                ),
                group="begin",
                failed=self.show_error,
            )
            return

        def pending_of(proof: CardProof) -> tuple[CardProof, AccountView]:
            return proof, accounts.pending_application(proof, start.person_id)

        def confirmed(ok: bool | None) -> None:
            if ok:
                self.app.push_screen(
                    CardAuthScreen(self.cards, self.language, pending_of, reader=self.reader),
                    authenticated,
                )

        def authenticated(proven: tuple[CardProof, AccountView] | None) -> None:
            if proven is None:
                return
            proof, view = proven
            self._open_form(
                start, unit, proof, mode="update", account=view, expected_version=view.version
            )

        self.app.push_screen(
            MessageDialog(self.tr("apply.update_confirm"), language=self.language, cancel=True),
            confirmed,
        )

    def _open_form(
        self, start: ApplicationStart, unit: UnitRow, proof: CardProof | None, **options: Any
    ) -> None:
        """The application form for ``start``'s ID and ``unit``, sent with ``proof``."""
        self.app.push_screen(
            ApplicationFormScreen(
                self.services,
                self.cards,
                start.person_id,
                unit,
                self.language,
                proof=proof,
                reader=self.reader,
                **options,
            ),
            self.done,
        )

    def reader_changed(self, reader: str, inserted: bool) -> None:
        if inserted:
            self.reader = reader
        elif reader == self.reader:
            self.reader = None

    def done(self, submitted: bool | None) -> None:
        if submitted:
            self.post_message(SessionEnded())  # sent: the kiosk starts afresh

    def is_modified(self) -> bool:
        """Has the applicant typed an ID or chosen a unit since the screen opened?"""
        typed = self.query_one("#person-id", Input).value.strip()
        return self.unit is not None or typed != self.initial_person_id.strip()

    def action_back(self) -> None:
        if not self.is_modified():
            self.app.pop_screen()
            return

        self.ask_before_discarding(self.app.pop_screen)
