"""The application form (新帳號申請, step 5 of the source manual) and its update flow
(更新申請權限, step 12).

The applicant's ID and unit come from the previous screen; here they fill in their
personal data, choose a role per category in the :class:`RoleGrid`, read the
個資聲明事項 and tick 我同意個資聲明事項, then 送出申請 (or 更新申請). Each field is
checked as the cursor leaves it; the service checks everything again on submit and
its messages are shown beside their fields. Service calls run in thread workers and
report back by message. Styles live in ``styles/form.tcss``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Checkbox, DataTable, Input, Label, Static

from models.db import database_failure
from models.reference import CATEGORIES
from smis_tui.core.chars import has_hidden
from smis_tui.core.identifiers import IdentifierError, parse_email, parse_landline, parse_mobile
from smis_tui.core.rocdate import to_roc
from smis_tui.screens import STYLES
from smis_tui.services import Services
from smis_tui.services.accounts import (
    FIELD_PHRASES,
    NAME_MAX,
    AccountView,
    ApplicationForm,
    RequestView,
    RoleChoice,
)
from smis_tui.services.errors import ServiceError, ValidationFailed
from smis_tui.services.units import UnitRow
from smis_tui.text import Phrase, render_error, t
from smis_tui.text.consent import statement_for, statement_sha256_for
from smis_tui.widgets.bars import KeyBar, TitleBar
from smis_tui.widgets.dialogs import MessageDialog
from smis_tui.widgets.localised import Localised
from smis_tui.widgets.role_grid import GridCategory, RoleGrid, role_label
from smis_tui.widgets.safe import plain
from smis_tui.widgets.safe_input import SafeInput

log = logging.getLogger("smis_tui.screens.application_form")

FormMode = Literal["new", "update"]

# Personal-data fields in form (and Tab) order; phones have a second input for #分機.
TEXT_FIELDS: tuple[str, ...] = (
    "name",
    "phone",
    "phone_backup",
    "email",
    "email_backup",
    "mobile",
)
PHONE_FIELDS = frozenset({"phone", "phone_backup"})
REQUIRED_FIELDS = frozenset({"name", "phone", "email"})
# Messages of the service that belong beside the read-only rows, the grid, the consent.
OTHER_ERROR_FIELDS: tuple[str, ...] = ("person_id", "unit_code", "roles", "consent")
MAX_LENGTHS = {
    "name": NAME_MAX,
    "phone": 32,
    "phone_backup": 32,
    "email": 254,
    "email_backup": 254,
    "mobile": 20,
}
EXTENSION_MAX = 8


# ----- pure helpers (no Textual state) ---------------------------------------------


def join_phone(number: str, extension: str) -> str:
    """``"02-12345678"`` + ``"123"`` → ``"02-12345678#123"``; no extension, no ``#``."""
    number, extension = number.strip(), extension.strip()
    return f"{number}#{extension}" if extension else number


def split_phone(phone: str) -> tuple[str, str]:
    """The reverse of :func:`join_phone`: ``"02-12345678#123"`` → ``("02-12345678", "123")``."""
    number, _, extension = phone.partition("#")
    return number, extension


def check_field(field: str, value: str, language: str = "zh_TW") -> str | None:
    """The message for one personal-data field (phones already joined), or None,
    in ``language``.

    The same rules and the same words as the service's check on submit.
    """
    phrase = check_field_phrase(field, value)
    return phrase.render(language) if phrase is not None else None


def check_field_phrase(field: str, value: str) -> Phrase | None:
    """:func:`check_field` as a Phrase (a text key and its parameters)."""
    label = FIELD_PHRASES[field]
    if not value.strip():
        if field in REQUIRED_FIELDS:
            return Phrase("error.field_required", field=label)
        return None
    if field == "name":
        if has_hidden(value.strip()):
            return Phrase("error.field_control_chars", field=label)
        if len(value.strip()) > NAME_MAX:
            return Phrase("error.field_too_long", field=label, limit=NAME_MAX)
        return None
    parser: Callable[..., object] = (
        parse_landline
        if field in PHONE_FIELDS
        else parse_mobile
        if field == "mobile"
        else parse_email
    )
    try:
        parser(value, field=label)
    except IdentifierError as exc:
        return exc.phrase()
    return None


def pending_status(request: RequestView, language: str) -> str:
    """``管理者(審核中)`` or ``管理者(COVID-19)(審核中)`` for one pending request."""
    role = role_label(request.role, language)
    if request.options:
        options = t("form.option_separator", language).join(request.options)
        return t("form.pending_status_options", language, role=role, options=options)
    return t("form.pending_status", language, role=role)


def pending_rows(
    account: AccountView, categories: Sequence[GridCategory], language: str
) -> list[tuple[str, str]]:
    """(category name, status) per category, in grid order; ``無此權限`` where nothing
    is pending."""
    pending = account.pending()
    rows = []
    for category in categories:
        statuses = [
            pending_status(r, language) for r in pending if r.category_code == category.code
        ]
        rows.append((category.name, " ".join(statuses) or t("form.no_permission", language)))
    return rows


def grid_categories(language: str) -> list[GridCategory]:
    """The categories in the seed's column order, named in the UI language."""
    return [
        GridCategory(c.code, c.name_en if language == "en" else c.name, c.options)
        for c in CATEGORIES
    ]


def choices_of(account: AccountView) -> dict[str, RoleChoice]:
    """The pending requests of ``account`` as grid choices."""
    return {r.category_code: RoleChoice(r.role, r.options) for r in account.pending()}


@dataclass(frozen=True)
class _Outcome:
    account_id: int | None = None
    error: BaseException | None = None


# ----- the screen ------------------------------------------------------------------


class ApplicationFormScreen(Localised, Screen[bool]):
    """新帳號申請 / 更新申請權限. Dismissed with True after a successful submission
    (once the applicant pressed 確定 on 已送出申請，請等待審核通過。), False on Esc."""

    CSS_PATH = STYLES / "form.tcss"
    BINDINGS = [
        Binding("escape", "back", "form.back"),
        Binding("f10", "submit", "form.submit"),
    ]

    AUTO_FOCUS = "#input-name"

    class _CategoriesLoaded(Message):
        def __init__(self, codes: set[str] | None, error: str = "") -> None:
            super().__init__()
            self.codes = codes
            self.error = error

    class _Submitted(Message):
        def __init__(self, outcome: _Outcome) -> None:
            super().__init__()
            self.outcome = outcome

    def __init__(
        self,
        services: Services,
        person_id: str,
        unit: UnitRow,
        language: str = "zh_TW",
        *,
        mode: FormMode = "new",
        account: AccountView | None = None,
        expected_version: int | None = None,
        today: dt.date | None = None,
        name: str | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id)
        if mode not in ("new", "update"):
            raise ValueError(f"unknown mode {mode!r}")
        if mode == "update" and expected_version is None and account is not None:
            expected_version = account.version
        if mode == "update" and expected_version is None:
            raise ValueError("the update flow needs the account's version")
        self.services = services
        self.person_id = person_id
        self.unit = unit
        self.language = language
        self.mode: FormMode = mode
        self.account = account
        self.expected_version = expected_version
        self.today = today or dt.date.today()
        self.categories = grid_categories(language)
        self.submitted_account_id: int | None = None
        self._busy = False
        self._done = False
        self._consent = False
        self._initial = self._prefill()

    # ----- helpers -------------------------------------------------------------

    def _t(self, key: str, **params: object) -> str:
        return t(key, self.language, **params)

    def key_description(self, binding: Binding) -> str:
        if binding.action == "submit":
            return self._submit_label
        return super().key_description(binding)

    @property
    def _submit_label(self) -> str:
        return self._t("form.submit_update" if self.mode == "update" else "form.submit")

    def _prefill(self) -> dict[str, str]:
        """Input id → initial value (the account's data in the update flow)."""
        values = {f"input-{field}": "" for field in TEXT_FIELDS}
        values.update({f"input-{field}-ext": "" for field in PHONE_FIELDS})
        if self.account is not None:
            data = self.account.data
            for field in TEXT_FIELDS:
                value = getattr(data, field) or ""
                if field in PHONE_FIELDS:
                    number, extension = split_phone(value)
                    values[f"input-{field}"] = number
                    values[f"input-{field}-ext"] = extension
                else:
                    values[f"input-{field}"] = value
        return values

    def _input(self, input_id: str) -> Input:
        return self.query_one(f"#{input_id}", Input)

    def field_value(self, field: str) -> str:
        """The typed value of a personal-data field, phones joined with their #分機."""
        value = self._input(f"input-{field}").value
        if field in PHONE_FIELDS:
            return join_phone(value, self._input(f"input-{field}-ext").value)
        return value.strip()

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

    def build_form(self) -> ApplicationForm:
        grid = self.grid
        return ApplicationForm(
            person_id=self.person_id,
            unit_code=self.unit.code,
            name=self.field_value("name"),
            phone=self.field_value("phone"),
            email=self.field_value("email"),
            phone_backup=self.field_value("phone_backup"),
            email_backup=self.field_value("email_backup"),
            mobile=self.field_value("mobile"),
            roles=grid.value if grid is not None else {},
            # The hash of the statement this screen shows (its language's version).
            consent_sha256=statement_sha256_for(self.language) if self.consent else None,
            language=self.language,
        )

    def is_modified(self) -> bool:
        """Has the applicant typed or chosen anything since the form opened?"""
        if self._done:
            return False
        if any(self._input(key).value != value for key, value in self._initial.items()):
            return True
        grid = self.grid
        return self.consent or (grid is not None and grid.is_modified)

    # ----- compose -------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield TitleBar()
        # The body scrolls to whatever has the focus; it is no tab stop itself.
        with VerticalScroll(id="form-body", can_focus=False):
            title = "form.title_update" if self.mode == "update" else "form.title_new"
            yield Static(self._t(title), id="form-title")
            yield Static(self._t("form.notice"), id="form-notice")
            yield Static(self._t("form.personal_title"), classes="form-section")
            with Horizontal(classes="form-row form-row-readonly"):
                yield Label(self._t("form.person_id"), classes="form-label")
                yield Static(plain(self.person_id), id="form-person-id", classes="form-value")
                yield Label(self._t("form.apply_date"), classes="form-label form-label-date")
                yield Static(to_roc(self.today), id="form-apply-date", classes="form-value")
                yield self._error("person_id")
            with Horizontal(classes="form-row form-row-readonly"):
                yield Label(self._t("form.unit_name"), classes="form-label")
                yield Static(plain(self.unit.name), id="form-unit-name", classes="form-unit")
                yield Static(plain(self.unit.code), id="form-unit-code", classes="form-unit-code")
                yield self._error("unit_code")
            for field in TEXT_FIELDS:
                yield self._field_row(field)
            if self.mode == "update":
                yield Static(self._t("form.pending_title"), classes="form-section")
                yield DataTable(
                    id="form-pending",
                    show_cursor=False,
                    cursor_type="none",
                    zebra_stripes=True,
                )
            yield Static(self._t("form.roles_title"), classes="form-section")
            with Vertical(id="form-grid-holder"):
                yield Static(self._t("form.roles_loading"), id="form-grid-loading", markup=False)
            yield self._error("roles", classes="form-error form-error-block")
            consent_title, consent_statement = statement_for(self.language)
            yield Static(plain(consent_title), id="consent-title", classes="form-section")
            with VerticalScroll(id="consent-text"):
                yield Static(plain(consent_statement), id="consent-statement")
            yield Checkbox(self._t("apply.consent_label"), id="consent-agree")
            yield self._error("consent", classes="form-error form-error-block")
            with Horizontal(id="form-buttons"):
                yield Button(self._submit_label, variant="primary", id="form-submit", disabled=True)
                yield Button(self._t("form.back"), id="form-back")
            yield Static("", id="form-status", markup=False)
        yield KeyBar()

    def _error(self, field: str, classes: str = "form-error") -> Static:
        return Static("", id=f"error-{field}", classes=classes, markup=False)

    def _field_row(self, field: str) -> Horizontal:
        placeholder = {
            "phone": "form.phone_placeholder",
            "phone_backup": "form.phone_placeholder",
            "email": "form.email_placeholder",
            "email_backup": "form.email_placeholder",
            "mobile": "form.mobile_placeholder",
        }.get(field)
        widgets: list[Label | Input | Static] = [
            Label(self._t(f"form.{field}"), classes="form-label"),
            SafeInput(
                self._initial[f"input-{field}"],
                placeholder=self._t(placeholder) if placeholder else "",
                max_length=MAX_LENGTHS[field],
                id=f"input-{field}",
                classes="form-input form-input-phone" if field in PHONE_FIELDS else "form-input",
            ),
        ]
        if field in PHONE_FIELDS:
            widgets += [
                Static(self._t("form.extension_mark"), classes="form-ext-mark"),
                SafeInput(
                    self._initial[f"input-{field}-ext"],
                    placeholder=self._t("form.extension_placeholder"),
                    max_length=EXTENSION_MAX,
                    restrict=r"[0-9]*",
                    id=f"input-{field}-ext",
                    classes="form-input form-input-ext",
                ),
            ]
        widgets.append(self._error(field))
        return Horizontal(*widgets, classes="form-row", id=f"row-{field}")

    def on_mount(self) -> None:
        if self.mode == "update" and self.account is not None:
            table = self.query_one("#form-pending", DataTable)
            table.can_focus = False
            pending = self.account.pending()
            unit_name = pending[0].unit_name if pending else self.account.unit_name
            table.add_column(self._t("form.pending_header"), key="category")
            table.add_column(plain(unit_name), key="status")
            for category_name, status in pending_rows(self.account, self.categories, self.language):
                table.add_row(plain(category_name), plain(status))
        self._load_categories()

    # ----- the unit's categories (worker) --------------------------------------------

    @work(thread=True, exclusive=True, group="form-categories")
    def _load_categories(self) -> None:
        try:
            codes = self.services.units.categories_of(self.unit.id)
        except Exception as exc:
            log.exception("loading the categories of unit %s", self.unit.code)
            self.post_message(self._CategoriesLoaded(None, str(exc) or type(exc).__name__))
        else:
            self.post_message(self._CategoriesLoaded(codes))

    @on(_CategoriesLoaded)
    async def _show_grid(self, message: _CategoriesLoaded) -> None:
        holder = self.query_one("#form-grid-holder", Vertical)
        loading = self.query_one("#form-grid-loading", Static)
        if message.codes is None:
            loading.update(self._t("form.roles_load_failed", reason=message.error))
            return
        grid = RoleGrid(
            self.unit.name,
            self.categories,
            message.codes,
            self.language,
            choices_of(self.account) if self.account is not None else None,
            id="role-grid",
        )
        await loading.remove()
        await holder.mount(grid)

    # ----- checking fields as the cursor leaves them ------------------------------------

    def _field_of(self, input_id: str | None) -> str | None:
        if not input_id or not input_id.startswith("input-"):
            return None
        field = input_id.removeprefix("input-").removesuffix("-ext")
        return field if field in TEXT_FIELDS else None

    def show_error(self, field: str, message: str | None) -> None:
        error = self.query_one(f"#error-{field}", Static)
        error.update(message or "")
        error.set_class(bool(message), "-shown")
        if field in TEXT_FIELDS:
            for input_id in (f"input-{field}", f"input-{field}-ext"):
                for widget in self.query(f"#{input_id}").results(Input):
                    widget.set_class(bool(message), "-invalid")

    @on(Input.Blurred)
    def _check_on_leave(self, event: Input.Blurred) -> None:
        field = self._field_of(event.input.id)
        if field is None:
            return
        if field in PHONE_FIELDS and self._moving_within_phone(field):
            return
        self.show_error(field, check_field(field, self.field_value(field), self.language))

    def _moving_within_phone(self, field: str) -> bool:
        """From the number to its #分機 (or back) is not leaving the phone field."""
        focused = self.focused
        return focused is not None and focused.id in (f"input-{field}", f"input-{field}-ext")

    @on(Input.Submitted)
    def _enter_moves_on(self, event: Input.Submitted) -> None:
        event.stop()
        self.focus_next()

    # ----- consent and submit ----------------------------------------------------

    @on(Checkbox.Changed, "#consent-agree")
    def _consent_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        self._consent = event.value
        if event.value:
            self.show_error("consent", None)
        self._update_submit()

    def _update_submit(self) -> None:
        self.query_one("#form-submit", Button).disabled = not self.can_submit
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "submit":
            return True if self.can_submit else None
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
        if not self.can_submit:
            return
        form = self.build_form()
        self._busy = True
        self._update_submit()
        self.query_one("#form-status", Static).update(self._t("form.submitting"))
        self._submit(form)

    @work(thread=True, exclusive=True, group="form-submit")
    def _submit(self, form: ApplicationForm) -> None:
        try:
            if self.mode == "update":
                assert self.expected_version is not None
                account_id = self.services.accounts.update_pending(form, self.expected_version)
            else:
                account_id = self.services.accounts.apply(form)
        except ServiceError as exc:
            self.post_message(self._Submitted(_Outcome(error=exc)))
        except Exception as exc:
            if database_failure(exc) is None:
                log.exception("submitting an application")
            self.post_message(self._Submitted(_Outcome(error=exc)))
        else:
            self.post_message(self._Submitted(_Outcome(account_id=account_id)))

    @on(_Submitted)
    def _after_submit(self, message: _Submitted) -> None:
        self._busy = False
        status = self.query_one("#form-status", Static)
        outcome = message.outcome
        if outcome.error is None:
            self._done = True
            self.submitted_account_id = outcome.account_id
            self._update_submit()
            status.update("")
            for field in (*TEXT_FIELDS, *OTHER_ERROR_FIELDS):
                self.show_error(field, None)
            self.app.push_screen(
                MessageDialog(self._t("apply.submitted"), language=self.language),
                self._close_submitted,
            )
            return
        self._update_submit()
        error = outcome.error
        if isinstance(error, ValidationFailed):
            messages = error.rendered(self.language)
            self._show_validation(messages)
            placed = {*TEXT_FIELDS, *OTHER_ERROR_FIELDS}
            unplaced = [message for key, message in messages.items() if key not in placed]
            status.update(" ".join([self._t("form.fix_errors"), *unplaced]))
            return
        status.update("")
        if isinstance(error, ServiceError):
            text = render_error(error, self.language)
        elif database_failure(error) is not None:
            # The database is down, restarting or read-only: nothing was written (each
            # submit is one transaction) and the form keeps every value, so the user
            # only has to submit again. The driver's detail is for the log, not a
            # public screen.
            log.warning("application not submitted: %s", database_failure(error))
            text = self._t("form.database_error")
        else:
            text = self._t("form.unexpected_error", reason=str(error) or type(error).__name__)
        self.app.push_screen(MessageDialog(text, language=self.language))

    def _close_submitted(self, _: bool | None) -> None:
        self.dismiss(True)

    def _show_validation(self, errors: dict[str, str]) -> None:
        for field in (*TEXT_FIELDS, *OTHER_ERROR_FIELDS):
            self.show_error(field, errors.get(field))
        first = next((f for f in TEXT_FIELDS if f in errors), None)
        if first is not None:
            self._input(f"input-{first}").focus()
        else:
            target = next((f for f in OTHER_ERROR_FIELDS if f in errors), None)
            if target is not None:
                self.query_one(f"#error-{target}", Static).scroll_visible()

    # ----- leaving ----------------------------------------------------------------

    def action_back(self) -> None:
        if self._busy:
            return
        if not self.is_modified():
            self.dismiss(False)
            return

        def answered(leave: bool | None) -> None:
            if leave:
                self.dismiss(False)

        self.app.push_screen(
            MessageDialog(self._t("form.discard_confirm"), language=self.language, cancel=True),
            answered,
        )
