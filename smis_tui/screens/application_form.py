"""The application form (新帳號申請, step 5 of the source manual) and its update flow
(更新申請權限, step 12).

The applicant's ID and unit come from the previous screen; here they fill in their
personal data (:class:`PersonFields`), choose a role per category in the
:class:`RoleGrid`, read the 個資聲明事項 and tick 我同意個資聲明事項, then 送出申請 (or
更新申請). Each field is checked as the cursor leaves it, by the service's own rule;
the service checks everything again on submit and its messages are shown beside their
fields. Styles live in ``smis_tui/styles/form.tcss``.

The applicant's card proves who sends the form: the proof they came with (step 11, or
the login that found their account disabled) while it lasts, otherwise the 身份驗證
dialog at 送出申請 — asked only once the form itself is in order.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Literal

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Label, Static

from smis_tui.core.rocdate import to_roc
from smis_tui.screens import STYLES
from smis_tui.screens.base import KioskScreen
from smis_tui.screens.card_auth import CardAuthScreen
from smis_tui.screens.unit_search import UnitSearchScreen
from smis_tui.services import Services
from smis_tui.services.accounts import (
    AccountView,
    ApplicationForm,
    CategoryView,
    PersonalData,
    RequestView,
    check_personal_field,
)
from smis_tui.services.calls import is_database_failure
from smis_tui.services.card_proof import PROOF_GONE, CardProof
from smis_tui.services.card_runtime import CardRuntime
from smis_tui.services.errors import NotAllowed, ValidationFailed
from smis_tui.services.units import UnitRow
from smis_tui.text import render_error, t
from smis_tui.text.consent import statement_for, statement_sha256_for
from smis_tui.text.labels import category_label, role_label
from smis_tui.widgets.dialogs import MessageDialog
from smis_tui.widgets.keys_in_order import Button, Checkbox
from smis_tui.widgets.person_fields import FIELDS, PersonFields
from smis_tui.widgets.prose import Prose
from smis_tui.widgets.role_grid import RoleGrid
from smis_tui.widgets.safe import plain
from smis_tui.widgets.table import DataTable, FittedTable

log = logging.getLogger("smis_tui.screens.application_form")

FormMode = Literal["new", "update"]

# Messages of the service that belong beside the read-only rows, the grid, the consent.
OTHER_ERROR_FIELDS: tuple[str, ...] = ("person_id", "unit_code", "roles", "consent")


def pending_status(request: RequestView, language: str) -> str:
    """``管理者(審核中)`` or ``管理者(COVID-19)(審核中)`` for one pending request."""
    role = role_label(request.role, language, request.options)
    return t("form.pending_status", language, role=role)


def pending_rows(
    account: AccountView, categories: Sequence[CategoryView], language: str
) -> list[tuple[str, str]]:
    """(category name, status) per category, in grid order; ``無此權限`` where nothing
    is pending."""
    pending = account.pending()
    rows = []
    for category in categories:
        statuses = [
            pending_status(r, language) for r in pending if r.category_code == category.code
        ]
        name = category_label(category.name, category.name_en, language)
        rows.append((name, " ".join(statuses) or t("form.no_permission", language)))
    return rows


class ApplicationFormScreen(KioskScreen[bool]):
    """新帳號申請 / 更新申請權限. Dismissed with True after a successful submission
    (once the applicant pressed 確定 on 已送出申請，請等待審核通過。), False on Esc."""

    CSS_PATH = [STYLES / "form.tcss", STYLES / "person_fields.tcss"]
    BINDINGS = [
        Binding("escape", "back", "common.back"),
        Binding("f10", "submit", "form.submit"),
    ]

    AUTO_FOCUS = "#input-name"

    def __init__(
        self,
        services: Services,
        cards: CardRuntime | None,
        person_id: str,
        unit: UnitRow,
        language: str = "zh_TW",
        *,
        proof: CardProof | None = None,
        reader: str | None = None,
        previous: PersonalData | None = None,
        rejected: bool = False,
        mode: FormMode = "new",
        account: AccountView | None = None,
        expected_version: int | None = None,
        today: dt.date | None = None,
        name: str | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(language, name=name, id=id)
        if mode not in ("new", "update"):
            raise ValueError(f"unknown mode {mode!r}")
        if mode == "update" and expected_version is None and account is not None:
            expected_version = account.version
        if mode == "update" and expected_version is None:
            raise ValueError("the update flow needs the account's version")
        self.services = services
        self.cards = cards
        self.proof = proof
        self.reader = reader
        # What the applicant sent last time (a reapplication their card proved).
        self.previous = previous
        # The ID's last application was rejected in full: one line says so.
        self.rejected = rejected
        self.person_id = person_id
        self.unit = unit
        self.mode: FormMode = mode
        self.account = account
        self.expected_version = expected_version
        self.today = today or dt.date.today()
        self.submitted_account_id: int | None = None
        self._busy = False
        self._done = False
        self._consent = False

    # ----- helpers -------------------------------------------------------------

    def key_description(self, binding: Binding) -> str:
        if binding.action == "submit":
            return self._submit_label
        return super().key_description(binding)

    @property
    def _submit_label(self) -> str:
        return self.tr("form.submit_update" if self.mode == "update" else "form.submit")

    @property
    def person_fields(self) -> PersonFields:
        return self.query_one(PersonFields)

    @property
    def grid(self) -> RoleGrid | None:
        grids = self.query(RoleGrid)
        return grids.first() if grids else None

    @property
    def consent(self) -> bool:
        """Is 我同意個資聲明事項 ticked?"""
        return self._consent

    @property
    def can_submit(self) -> bool:
        return self._consent and not self._busy and not self._done

    @property
    def can_press_submit(self) -> bool:
        """送出申請 answers whenever nothing is under way: without 我同意 it says so."""
        return not self._busy and not self._done

    def build_form(self) -> ApplicationForm:
        grid = self.grid
        typed = self.person_fields.values()
        return ApplicationForm(
            person_id=self.person_id,
            unit_code=self.unit.code,
            name=typed["name"],
            phone=typed["phone"],
            email=typed["email"],
            phone_backup=typed["phone_backup"],
            email_backup=typed["email_backup"],
            mobile=typed["mobile"],
            roles=grid.value if grid is not None else {},
            # The hash of the statement this screen shows (its language's version).
            consent_sha256=statement_sha256_for(self.language) if self.consent else None,
            language=self.language,
        )

    def is_modified(self) -> bool:
        """Has the applicant typed or chosen anything since the form opened?"""
        if self._done:
            return False
        grid = self.grid
        return (
            self.person_fields.is_modified
            or self.consent
            or (grid is not None and grid.is_modified)
        )

    # ----- compose -------------------------------------------------------------

    def compose_body(self) -> ComposeResult:
        # The body scrolls to whatever has the focus; it is no tab stop itself.
        with VerticalScroll(id="form-body", can_focus=False):
            title = "form.title_update" if self.mode == "update" else "form.title_new"
            yield Static(self.tr(title), id="form-title")
            notice = "form.notice_update" if self.mode == "update" else "form.notice"
            yield Prose(self.tr(notice), id="form-notice")
            if self.rejected and self.mode == "new":
                yield Prose(self.tr("form.rejected_hint"), id="form-rejected-hint")
            yield Static(self.tr("form.personal_title"), classes="form-section")
            with Horizontal(classes="form-row form-row-readonly"):
                yield Label(self.tr("form.person_id"), classes="form-label")
                yield Static(plain(self.person_id), id="form-person-id", classes="form-value")
                yield Label(self.tr("common.apply_date"), classes="form-label form-label-date")
                yield Static(to_roc(self.today), id="form-apply-date", classes="form-value")
                yield self._note("person_id")
            with Horizontal(classes="form-row form-row-readonly"):
                yield Label(self.tr("form.unit_name"), classes="form-label")
                yield Static(plain(self.unit.name), id="form-unit-name", classes="form-unit")
                yield Static(plain(self.unit.code), id="form-unit-code", classes="form-unit-code")
                yield self._note("unit_code")
            filled = self.account.data if self.account is not None else self.previous
            yield PersonFields(
                asdict(filled) if filled is not None else {},
                check_personal_field,
                self.language,
                id="person-fields",
            )
            if self.mode == "update":
                yield Static(self.tr("form.pending_title"), classes="form-section")
                # Both columns narrow to the form's width (an English category and
                # role with its sub-options ran past it at 80 columns).
                yield FittedTable(
                    give_way=(0, 1),
                    id="form-pending",
                    show_cursor=False,
                    cursor_type="none",
                    zebra_stripes=True,
                )
            yield Static(self.tr("form.roles_title"), classes="form-section")
            if self.mode == "update":  # step 12: another unit, chosen as in steps 3–5
                with Horizontal(classes="form-row", id="form-wanted-unit-row"):
                    yield Label(self.tr("form.wanted_unit"), classes="form-label")
                    yield Static(plain(self.unit.name), id="form-wanted-unit", classes="form-unit")
                    yield Button(self.tr("form.choose_unit"), id="form-choose-unit")
            with Vertical(id="form-grid-holder"):
                yield Static(self.tr("form.roles_loading"), id="form-grid-loading", markup=False)
            yield self._note("roles", classes="form-error form-error-block")
            consent_title, consent_statement = statement_for(self.language)
            yield Static(plain(consent_title), id="consent-title", classes="form-section")
            with VerticalScroll(id="consent-text"):
                yield Prose(consent_statement, id="consent-statement")
            consent = (
                "apply.consent_label_update" if self.mode == "update" else "apply.consent_label"
            )
            yield Checkbox(self.tr(consent), id="consent-agree")
            yield self._note("consent", classes="form-error form-error-block")
            with Horizontal(id="form-buttons"):
                yield Button(self._submit_label, variant="primary", id="form-submit")
                yield Button(self.tr("common.back"), id="form-back")
            yield Prose("", id="form-status", markup=False)

    def _note(self, field: str, classes: str = "form-error") -> Static:
        return Prose("", id=f"error-{field}", classes=classes, markup=False)

    def on_mount(self) -> None:
        if self.mode == "update" and self.account is not None:
            self.query_one("#form-pending", DataTable).can_focus = False
        self._load_grid()

    def _pending_headers(self) -> tuple[str, str]:
        assert self.account is not None
        pending = self.account.pending()
        unit_name = pending[0].unit_name if pending else self.account.unit_name
        return self.tr("form.pending_header"), unit_name

    def _load_grid(self) -> None:
        accounts, units, unit_id = self.services.accounts, self.services.units, self.unit.id
        self.call_service(
            lambda: (accounts.categories(), units.categories_of(unit_id)),
            self._show_categories,
            group="categories",
            failed=self._categories_failed,
        )

    @on(Button.Pressed, "#form-choose-unit")
    def _choose_unit(self, event: Button.Pressed) -> None:
        event.stop()

        async def chosen(unit: UnitRow | None) -> None:
            if unit is None or unit.code == self.unit.code:
                return
            self.unit = unit
            self.query_one("#form-unit-name", Static).update(plain(unit.name))
            self.query_one("#form-unit-code", Static).update(plain(unit.code))
            self.query_one("#form-wanted-unit", Static).update(plain(unit.name))
            self._show_note("unit_code", None)
            self._show_note("roles", None)
            # The old grid is gone before the new unit's grid (same id) can arrive.
            await self.query(RoleGrid).remove()
            await self.query_one("#form-grid-holder", Vertical).mount(
                Static(self.tr("form.roles_loading"), id="form-grid-loading", markup=False)
            )
            self._load_grid()

        self.app.push_screen(UnitSearchScreen(self.services.units, self.language), chosen)

    # ----- the categories: the pending table and the grid ------------------------------

    def _show_categories(self, loaded: tuple[tuple[CategoryView, ...], set[str]]) -> None:
        categories, handled = loaded
        if self.mode == "update" and self.account is not None:
            rows = [
                (None, (plain(name), plain(status)))
                for name, status in pending_rows(self.account, categories, self.language)
            ]
            headers = [plain(header).plain for header in self._pending_headers()]
            # Each column as wide as its widest cell, given as the rows arrive: left to
            # size itself when next idle, the table now and then kept its header at the
            # widths from before the rows, out of line with them.
            self.query_one("#form-pending", FittedTable).show(headers, rows)
        grid = RoleGrid(
            self.unit.name,
            categories,
            handled,
            self.language,
            self.account.pending_choices() if self.account is not None else None,
            id="role-grid",
        )
        self.query_one("#form-grid-loading", Static).remove()
        self.query_one("#form-grid-holder", Vertical).mount(grid)

    def _categories_failed(self, error: Exception) -> None:
        reason = render_error(error, self.language)
        self.query_one("#form-grid-loading", Static).update(
            self.tr("form.roles_load_failed", reason=reason)
        )

    # ----- messages beside the read-only rows, the grid, the consent ------------------

    def _show_note(self, field: str, message: str | None) -> None:
        note = self.query_one(f"#error-{field}", Static)
        note.update(message or "")
        note.set_class(bool(message), "-shown")

    def _show_validation(self, messages: dict[str, str]) -> None:
        self.person_fields.show_errors(messages)
        for field in OTHER_ERROR_FIELDS:
            self._show_note(field, messages.get(field))
        if not any(field in messages for field in FIELDS):
            target = next((f for f in OTHER_ERROR_FIELDS if f in messages), None)
            if target is not None:
                self.query_one(f"#error-{target}", Static).scroll_visible()

    # ----- consent and submit ----------------------------------------------------

    @on(Checkbox.Changed, "#consent-agree")
    def _consent_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        self._consent = event.value
        if event.value:
            self._show_note("consent", None)
        self._update_submit()

    def _update_submit(self) -> None:
        self.query_one("#form-submit", Button).disabled = not self.can_press_submit
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "submit":
            return True if self.can_press_submit else None
        return True

    @on(Button.Pressed, "#form-submit")
    def _submit_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_submit()

    @on(Button.Pressed, "#form-back")
    def _back_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_back()

    def action_submit(self) -> None:
        if not self.can_press_submit:
            return
        if not self._consent:
            self._show_note("consent", self.tr("error.consent_required"))
            self.query_one("#form-status", Static).update(self.tr("error.consent_required"))
            consent = self.query_one("#consent-agree", Checkbox)
            consent.scroll_visible()
            consent.focus()
            return
        form = self.build_form()
        self._busy = True
        self._update_submit()
        self.query_one("#form-status", Static).update(self.tr("form.submitting"))
        accounts = self.services.accounts
        version = self.expected_version if self.mode == "update" else None
        proof = self.proof

        def send(proof: CardProof) -> int:
            if version is None:
                return accounts.apply(form, proof)
            return accounts.update_pending(form, version, proof)

        def check_then_send() -> int | None:
            accounts.validate(form)  # the form's own faults before any card
            return send(proof) if proof is not None else None

        def sent(account_id: int | None) -> None:
            if account_id is not None:
                self._submitted(account_id)
            else:
                self._ask_card(send)

        def not_sent(error: Exception) -> None:
            if isinstance(error, NotAllowed) and error.key in PROOF_GONE:
                self.proof = None
                self._ask_card(send)
            else:
                self._not_submitted(error)

        self.call_service(check_then_send, sent, group="submit", failed=not_sent)

    def _ask_card(self, send: Callable[[CardProof], int]) -> None:
        """身份驗證 at 送出申請: the form goes with the card's proof, or not at all."""
        if self.cards is None:
            self._not_submitted(NotAllowed("card.no_reader"))
            return
        title = "auth.title" if self.mode == "update" else "auth.title_apply"

        def answered(account_id: int | None) -> None:
            if account_id is None:  # cancelled: the form stays as it was
                self._busy = False
                self._update_submit()
                self.query_one("#form-status", Static).update("")
                return
            self._submitted(account_id)

        self.app.push_screen(
            CardAuthScreen(self.cards, self.language, send, title_key=title, reader=self.reader),
            answered,
        )

    def reader_changed(self, reader: str, inserted: bool) -> None:
        if inserted:
            self.reader = reader
        elif reader == self.reader:
            self.reader = None

    def _submitted(self, account_id: int) -> None:
        self._busy = False
        self._done = True
        self.submitted_account_id = account_id
        self._update_submit()
        self.query_one("#form-status", Static).update("")
        self._show_validation({})
        self.app.push_screen(
            MessageDialog(self.tr("apply.submitted"), language=self.language),
            self._close_submitted,
        )

    def _not_submitted(self, error: Exception) -> None:
        self._busy = False
        self._update_submit()
        status = self.query_one("#form-status", Static)
        if isinstance(error, ValidationFailed):
            messages = error.rendered(self.language)
            self._show_validation(messages)
            placed = {*FIELDS, *OTHER_ERROR_FIELDS}
            unplaced = [message for key, message in messages.items() if key not in placed]
            status.update(" ".join([self.tr("form.fix_errors"), *unplaced]))
            return
        status.update("")
        if is_database_failure(error):
            # The database is down, restarting or read-only: nothing was written (each
            # submit is one transaction) and the form keeps every value, so the user
            # only has to submit again. The driver's detail is for the log, not a
            # public screen.
            log.warning("application not submitted: %s", error)
            text = self.tr("form.database_error")
        else:
            text = render_error(error, self.language)
        self.app.push_screen(MessageDialog(text, language=self.language))

    def _close_submitted(self, _: bool | None) -> None:
        self.dismiss(True)

    # ----- leaving ----------------------------------------------------------------

    def action_back(self) -> None:
        if self._busy:
            return
        if not self.is_modified():
            self.dismiss(False)
            return

        self.ask_before_discarding(lambda: self.dismiss(False))
