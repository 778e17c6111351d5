"""個人資料維護: an active user's own account, from home.

Four tabs: 個人資料 (the personal data, checked as in the application form), 權限
(the granted and pending roles per category; 放棄此權限 / 撤回此申請 on one row;
a role grid for 權限異動申請 that goes to review like an application), 停用帳號 and
申請刪除帳號 (each confirmed with a dialog, then the kiosk logs out).

Thin: every service call runs in a thread worker that posts a :class:`_Done` back;
the screen keeps the account as last read (:attr:`view`) and writes with its version,
so a change made elsewhere meanwhile is a conflict with a clear message and no change.

Leaving (Esc): the screen is dismissed with None and posts :class:`ProfileScreen.Closed`
to the screen below it (home), carrying the latest view and whether anything changed;
:attr:`changed` and :attr:`view` say the same to a dismiss callback. Styles live in
``styles/profile.tcss``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, fields

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import (
    Button,
    DataTable,
    Input,
    Label,
    Static,
    TabbedContent,
    TabPane,
)

from models.schema import AccountStatus, RequestStatus
from smis_tui.screens import STYLES
from smis_tui.screens.application_form import (
    EXTENSION_MAX,
    MAX_LENGTHS,
    PHONE_FIELDS,
    TEXT_FIELDS,
    check_field,
    grid_categories,
    join_phone,
    split_phone,
)
from smis_tui.services import Services
from smis_tui.services.accounts import (
    AccountView,
    PersonalData,
    RequestView,
    RoleChoice,
    field_label,
)
from smis_tui.services.errors import ConflictError, ServiceError, ValidationFailed
from smis_tui.text import render_error, t
from smis_tui.widgets.bars import KeyBar, TitleBar
from smis_tui.widgets.dialogs import MessageDialog
from smis_tui.widgets.localised import Localised
from smis_tui.widgets.role_grid import RoleGrid, role_label
from smis_tui.widgets.safe import plain, plain_cell
from smis_tui.widgets.safe_input import SafeInput

log = logging.getLogger("smis_tui.screens.profile")

TABS = ("tab-personal", "tab-permissions", "tab-disable", "tab-delete")
PLACEHOLDERS = {
    "phone": "profile.phone_placeholder",
    "phone_backup": "profile.phone_placeholder",
    "email": "profile.email_placeholder",
    "email_backup": "profile.email_placeholder",
    "mobile": "profile.mobile_placeholder",
}


# ----- pure helpers ------------------------------------------------------------------


def current_choices(view: AccountView) -> dict[str, RoleChoice]:
    """What each category has now: the pending wish where there is one (the latest
    word), otherwise the granted role. The grid of 權限異動申請 starts from this."""
    choices = {r.category_code: RoleChoice(r.role, r.options) for r in view.granted()}
    choices.update({r.category_code: RoleChoice(r.role, r.options) for r in view.pending()})
    return choices


def permission_label(request: RequestView, language: str) -> str:
    """``承辦人`` or ``瀏覽者(COVID-19)``."""
    role = role_label(request.role, language)
    if not request.options:
        return role
    options = t("profile.option_separator", language).join(request.options)
    return t("profile.role_options", language, role=role, options=options)


def changed_fields(before: PersonalData, after: PersonalData) -> list[str]:
    """The personal-data fields that differ, in form order."""
    return [
        f.name for f in fields(PersonalData) if getattr(before, f.name) != getattr(after, f.name)
    ]


@dataclass(frozen=True)
class _Action:
    """What a worker did: ``kind`` names it, ``request`` is the row it acted on."""

    kind: str
    request: RequestView | None = None


class ProfileScreen(Localised, Screen[None]):
    """個人資料維護 of the logged-in (active) account."""

    CSS_PATH = STYLES / "profile.tcss"
    AUTO_FOCUS = "#input-name"
    BINDINGS = [
        Binding("escape", "back", "profile.key_back"),
        Binding("f2", "tab('tab-personal')", "profile.key_personal"),
        Binding("f3", "tab('tab-permissions')", "profile.key_permissions"),
        Binding("f5", "tab('tab-disable')", "profile.key_disable"),
        Binding("f6", "tab('tab-delete')", "profile.key_delete"),
        Binding("f9", "save", "profile.key_save"),
        Binding("f10", "submit_changes", "profile.key_submit"),
    ]

    class Closed(Message):
        """Posted to the screen below when the profile closes: ``view`` is the account
        as last read, ``changed`` whether anything was written."""

        def __init__(self, view: AccountView, changed: bool) -> None:
            super().__init__()
            self.view = view
            self.changed = changed

    class _Done(Message):
        def __init__(
            self,
            action: _Action,
            view: AccountView | None,
            error: BaseException | None = None,
        ) -> None:
            super().__init__()
            self.action = action
            self.view = view
            self.error = error

    class _CategoriesLoaded(Message):
        def __init__(self, codes: set[str] | None, error: str = "") -> None:
            super().__init__()
            self.codes = codes
            self.error = error

    def __init__(
        self,
        services: Services,
        view: AccountView,
        language: str,
        *,
        name: str | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id)
        self.services = services
        self.view = view
        self.language = language
        self.categories = grid_categories(language)
        self.changed = False
        self._busy = False
        self._handled: set[str] | None = None
        self._grid_serial = 0

    # ----- helpers -------------------------------------------------------------------

    def _t(self, key: str, **params: object) -> str:
        return t(key, self.language, **params)

    def category_name(self, request: RequestView) -> str:
        """The request's category in the UI language."""
        names = {c.code: c.name for c in self.categories}
        return names.get(request.category_code, request.category_name)

    def _input(self, input_id: str) -> Input:
        return self.query_one(f"#{input_id}", Input)

    def field_value(self, field: str) -> str:
        """The typed value of a personal-data field, phones joined with their #分機."""
        value = self._input(f"input-{field}").value
        if field in PHONE_FIELDS:
            return join_phone(value, self._input(f"input-{field}-ext").value)
        return value.strip()

    def typed_data(self) -> PersonalData:
        return PersonalData(**{field: self.field_value(field) for field in TEXT_FIELDS})

    @property
    def grid(self) -> RoleGrid | None:
        grids = self.query(RoleGrid)
        return grids.first() if grids else None

    @property
    def active_tab(self) -> str:
        return self.query_one("#profile-tabs", TabbedContent).active

    # ----- compose -------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        view = self.view
        yield TitleBar()
        yield Static(self._t("profile.title"), id="profile-title")
        yield Static(self._who(view), id="profile-who")
        with TabbedContent(id="profile-tabs", initial="tab-personal"):
            with TabPane(self._t("profile.tab_personal"), id="tab-personal"):
                with VerticalScroll(id="personal-body", can_focus=False):
                    for field in TEXT_FIELDS:
                        yield self._field_row(field)
                    with Horizontal(classes="profile-buttons"):
                        yield Button(self._t("profile.save"), variant="primary", id="save")
                    yield Static("", id="personal-status", classes="profile-status", markup=False)
            with TabPane(self._t("profile.tab_permissions"), id="tab-permissions"):
                with VerticalScroll(id="permissions-body", can_focus=False):
                    yield Static(self._t("profile.current_title"), classes="profile-section")
                    yield DataTable(id="permissions", cursor_type="row", zebra_stripes=True)
                    with Horizontal(classes="profile-buttons"):
                        yield Button(self._t("profile.give_up"), id="drop", disabled=True)
                    yield Static(self._t("profile.changes_title"), classes="profile-section")
                    yield Static(self._t("profile.changes_hint"), classes="profile-hint")
                    with Vertical(id="grid-holder"):
                        yield Static(self._t("profile.roles_loading"), id="grid-loading")
                    yield Static("", id="error-roles", classes="profile-error-block", markup=False)
                    with Horizontal(classes="profile-buttons"):
                        yield Button(
                            self._t("profile.submit_changes"), variant="primary", id="submit"
                        )
                    yield Static(
                        "", id="permissions-status", classes="profile-status", markup=False
                    )
            with TabPane(self._t("profile.tab_disable"), id="tab-disable"):
                with Vertical(classes="profile-danger"):
                    yield Static(self._t("profile.disable_text"), classes="profile-danger-text")
                    with Horizontal(classes="profile-buttons"):
                        yield Button(
                            self._t("profile.disable_button"), variant="error", id="disable"
                        )
            with TabPane(self._t("profile.tab_delete"), id="tab-delete"):
                with Vertical(classes="profile-danger"):
                    yield Static(
                        plain(self._delete_text()), id="delete-text", classes="profile-danger-text"
                    )
                    with Horizontal(classes="profile-buttons"):
                        yield Button(self._t("profile.delete_button"), variant="error", id="delete")
        yield KeyBar()

    def _who(self, view: AccountView) -> Text:
        return plain(
            self._t(
                "profile.who", name=view.data.name, masked_id=view.masked_id, unit=view.unit_name
            )
        )

    def _delete_text(self) -> str:
        return self._t("profile.delete_text", masked_id=self.view.masked_id)

    def _field_row(self, field: str) -> Horizontal:
        number, extension = (
            split_phone(getattr(self.view.data, field))
            if field in PHONE_FIELDS
            else (getattr(self.view.data, field), "")
        )
        placeholder = PLACEHOLDERS.get(field)
        widgets: list[Label | Input | Static] = [
            Label(self._t(f"profile.field.{field}"), classes="profile-label"),
            SafeInput(
                number,
                placeholder=self._t(placeholder) if placeholder else "",
                max_length=MAX_LENGTHS[field],
                id=f"input-{field}",
                classes="profile-input profile-input-phone"
                if field in PHONE_FIELDS
                else "profile-input",
            ),
        ]
        if field in PHONE_FIELDS:
            widgets += [
                Static(self._t("profile.extension_mark"), classes="profile-ext-mark"),
                SafeInput(
                    extension,
                    placeholder=self._t("profile.extension_placeholder"),
                    max_length=EXTENSION_MAX,
                    restrict=r"[0-9]*",
                    id=f"input-{field}-ext",
                    classes="profile-input profile-input-ext",
                ),
            ]
        widgets.append(Static("", id=f"error-{field}", classes="profile-error", markup=False))
        return Horizontal(*widgets, classes="profile-row", id=f"row-{field}")

    def on_mount(self) -> None:
        table = self.query_one("#permissions", DataTable)
        table.add_column(self._t("profile.col_category"), key="category")
        table.add_column(self._t("profile.col_role"), key="role")
        table.add_column(self._t("profile.col_status"), key="status")
        self._fill_permissions()
        self._load_categories()

    # ----- the permissions table -------------------------------------------------------

    def _rows(self) -> list[RequestView]:
        """Granted, then pending, each in the grid's category order."""
        order = {c.code: i for i, c in enumerate(self.categories)}
        rows = [*self.view.granted(), *self.view.pending()]
        return sorted(
            rows,
            key=lambda r: (r.status != RequestStatus.APPROVED, order.get(r.category_code, 99)),
        )

    def _fill_permissions(self) -> None:
        table = self.query_one("#permissions", DataTable)
        table.clear()
        rows = self._rows()
        for request in rows:
            status = (
                "profile.status_granted"
                if request.status == RequestStatus.APPROVED
                else "profile.status_pending"
            )
            table.add_row(
                plain_cell(self.category_name(request)),
                plain_cell(permission_label(request, self.language)),
                self._t(status),
                key=str(request.id),
            )
        if not rows:
            table.add_row(self._t("profile.no_permissions"), "", "")
        self._update_drop()

    def highlighted_request(self) -> RequestView | None:
        table = self.query_one("#permissions", DataTable)
        rows = self._rows()
        if not rows or not 0 <= table.cursor_row < len(rows):
            return None
        return rows[table.cursor_row]

    def _update_drop(self) -> None:
        request = self.highlighted_request()
        button = self.query_one("#drop", Button)
        button.disabled = request is None or self._busy
        pending = request is not None and request.status == RequestStatus.PENDING
        button.label = self._t("profile.withdraw" if pending else "profile.give_up")

    @on(DataTable.RowHighlighted, "#permissions")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._update_drop()

    @on(DataTable.RowSelected, "#permissions")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_drop()

    # ----- the role grid (worker for the unit's categories) ---------------------------

    @work(thread=True, exclusive=True, group="profile-categories", exit_on_error=False)
    def _load_categories(self) -> None:
        try:
            unit = self.services.units.get(self.view.unit_code, include_inactive=True)
            codes = self.services.units.categories_of(unit.id) if unit is not None else set()
        except Exception as exc:
            log.exception("loading the categories of unit %s", self.view.unit_code)
            self.post_message(self._CategoriesLoaded(None, str(exc) or type(exc).__name__))
        else:
            self.post_message(self._CategoriesLoaded(codes))

    @on(_CategoriesLoaded)
    async def _categories_loaded(self, message: _CategoriesLoaded) -> None:
        if message.codes is None:
            self.query_one("#grid-loading", Static).update(
                self._t("profile.roles_load_failed", reason=message.error)
            )
            return
        self._handled = message.codes
        await self._rebuild_grid()

    async def _rebuild_grid(self) -> None:
        """A fresh grid showing what each category has now."""
        if self._handled is None:
            return
        holder = self.query_one("#grid-holder", Vertical)
        await holder.remove_children()
        self._grid_serial += 1
        await holder.mount(
            RoleGrid(
                self.view.unit_name,
                self.categories,
                self._handled,
                self.language,
                current_choices(self.view),
                id=f"role-grid-{self._grid_serial}",
            )
        )

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
        focused = self.focused
        if field in PHONE_FIELDS and focused is not None:
            if focused.id in (f"input-{field}", f"input-{field}-ext"):
                return  # from the number to its #分機 is not leaving the field
        self.show_error(field, check_field(field, self.field_value(field), self.language))

    @on(Input.Submitted)
    def _enter_moves_on(self, event: Input.Submitted) -> None:
        event.stop()
        self.focus_next()

    # ----- actions -------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "save":
            return self.active_tab == "tab-personal"
        if action == "submit_changes":
            return self.active_tab == "tab-permissions"
        return True

    @on(TabbedContent.TabActivated)
    def _tab_changed(self, event: TabbedContent.TabActivated) -> None:
        event.stop()
        self.refresh_bindings()

    def action_tab(self, tab: str) -> None:
        if tab in TABS:
            self.query_one("#profile-tabs", TabbedContent).active = tab
            self.refresh_bindings()

    @on(Button.Pressed)
    def _button(self, event: Button.Pressed) -> None:
        handlers: dict[str, Callable[[], None]] = {
            "save": self.action_save,
            "drop": self.action_drop,
            "submit": self.action_submit_changes,
            "disable": self.action_disable,
            "delete": self.action_delete,
        }
        handler = handlers.get(event.button.id or "")
        if handler is not None:
            event.stop()
            handler()

    def _start(self, action: _Action, call: Callable[[], object], status: str | None) -> None:
        self._busy = True
        self._update_drop()
        for button in self.query(Button).results(Button):
            if button.id != "drop":
                button.disabled = True
        if status is not None:
            self.query_one(f"#{status}", Static).update(self._t("profile.busy"))
        self._write(action, self.view.id, call)

    def _confirm(self, text: str, then: Callable[[], None]) -> None:
        def answered(yes: bool | None) -> None:
            if yes and not self._busy:
                then()

        self.app.push_screen(MessageDialog(text, language=self.language, cancel=True), answered)

    def action_save(self) -> None:
        if self._busy:
            return
        data = self.typed_data()
        version = self.view.version
        account_id = self.view.id
        self._start(
            _Action("save"),
            lambda: self.services.accounts.update_personal_data(account_id, version, data),
            "personal-status",
        )

    def action_submit_changes(self) -> None:
        grid = self.grid
        if self._busy or grid is None:
            return
        roles = grid.value
        version = self.view.version
        account_id = self.view.id
        self.show_error("roles", None)
        self._start(
            _Action("changes"),
            lambda: self.services.accounts.request_changes(account_id, roles, version),
            "permissions-status",
        )

    def action_drop(self) -> None:
        request = self.highlighted_request()
        if self._busy or request is None:
            return
        names = {
            "category": self.category_name(request),
            "role": permission_label(request, self.language),
        }
        account_id = self.view.id
        accounts = self.services.accounts
        if request.status == RequestStatus.PENDING:
            text = self._t("profile.withdraw_confirm", **names)

            def withdraw() -> None:
                version = self.view.version
                self._start(
                    _Action("withdraw", request),
                    lambda: accounts.withdraw_request(account_id, request.id, version),
                    "permissions-status",
                )

            self._confirm(text, withdraw)
            return
        last = len(self.view.granted()) == 1
        text = self._t(
            "profile.give_up_last_confirm" if last else "profile.give_up_confirm", **names
        )

        def give_up() -> None:
            version = self.view.version
            self._start(
                _Action("give_up", request),
                lambda: accounts.give_up_permission(account_id, request.id, version),
                "permissions-status",
            )

        self._confirm(text, give_up)

    def action_disable(self) -> None:
        if self._busy:
            return
        account_id = self.view.id
        accounts = self.services.accounts

        def disable() -> None:
            version = self.view.version
            self._start(
                _Action("disable"), lambda: accounts.disable_self(account_id, version), None
            )

        self._confirm(self._t("profile.disable_confirm"), disable)

    def action_delete(self) -> None:
        if self._busy:
            return
        account_id = self.view.id
        accounts = self.services.accounts

        def delete() -> None:
            version = self.view.version
            self._start(
                _Action("delete"), lambda: accounts.delete_account(account_id, version), None
            )

        self._confirm(self._t("profile.delete_confirm", text=self._delete_text()), delete)

    # ----- the worker and its answer ------------------------------------------------------

    @work(thread=True, group="profile-write", exit_on_error=False)
    def _write(self, action: _Action, account_id: int, call: Callable[[], object]) -> None:
        error: BaseException | None = None
        try:
            call()
        except ServiceError as exc:
            error = exc
        except Exception as exc:
            log.exception("profile action %s failed", action.kind)
            error = exc
        view: AccountView | None = None
        if error is not None or action.kind not in ("disable", "delete"):
            try:
                view = self.services.accounts.view(account_id)
            except Exception:
                log.exception("re-reading account %s", account_id)
        self.post_message(self._Done(action, view, error))

    @on(_Done)
    async def _done(self, message: _Done) -> None:
        self._busy = False
        for button in self.query(Button).results(Button):
            button.disabled = False
        for status in ("personal-status", "permissions-status"):
            self.query_one(f"#{status}", Static).update("")
        action, error = message.action, message.error
        before = self.view
        if error is None:
            self.changed = True
        if message.view is not None:
            self.view = message.view
            self.query_one("#profile-who", Static).update(self._who(self.view))
            self._fill_permissions()
        else:
            self._update_drop()
        if error is None and action.kind in ("disable", "delete"):
            self._leave(
                self._t(
                    "profile.disabled_done" if action.kind == "disable" else "profile.deleted_done"
                )
            )
            return
        if message.view is not None and message.view.status != AccountStatus.ACTIVE:
            if error is None and action.kind == "give_up":
                self._leave(self._t("profile.disabled_done"))
            else:
                self._leave(self._t("profile.account_gone"))
            return
        if error is None:
            self._succeeded(action)
            if action.kind != "save":
                await self._rebuild_grid()
            return
        await self._failed(action, error, before)

    def _succeeded(self, action: _Action) -> None:
        if action.kind == "save":
            for field in TEXT_FIELDS:
                self.show_error(field, None)
                value = getattr(self.view.data, field)
                number, extension = split_phone(value) if field in PHONE_FIELDS else (value, "")
                self._input(f"input-{field}").value = number
                if field in PHONE_FIELDS:
                    self._input(f"input-{field}-ext").value = extension
            self.query_one("#personal-status", Static).update(self._t("profile.saved"))
            return
        if action.kind == "changes":
            self.show_error("roles", None)
            self.app.push_screen(
                MessageDialog(self._t("profile.changes_submitted"), language=self.language)
            )
            return
        assert action.request is not None
        names = {
            "category": self.category_name(action.request),
            "role": permission_label(action.request, self.language),
        }
        key = "profile.withdrawn" if action.kind == "withdraw" else "profile.given_up"
        self.query_one("#permissions-status", Static).update(self._t(key, **names))

    async def _failed(self, action: _Action, error: BaseException, before: AccountView) -> None:
        if isinstance(error, ValidationFailed):
            if action.kind == "save":
                for field in TEXT_FIELDS:
                    self.show_error(field, error.message(field, self.language))
                self.query_one("#personal-status", Static).update(self._t("profile.fix_errors"))
                first = next((f for f in TEXT_FIELDS if f in error.messages), None)
                if first is not None:
                    self._input(f"input-{first}").focus()
            else:
                self.show_error(
                    "roles", error.message("roles", self.language) or error.render(self.language)
                )
            return
        if isinstance(error, ConflictError):
            text = self._t("profile.conflict")
            moved = changed_fields(before.data, self.view.data)
            if moved:
                labels = self._t("error.field_separator").join(
                    field_label(f, self.language) for f in moved
                )
                text += "\n" + self._t("profile.conflict_fields", fields=labels)
        elif isinstance(error, ServiceError):
            text = render_error(error, self.language)
        else:
            text = self._t("profile.unexpected_error", reason=str(error) or type(error).__name__)
        self.app.push_screen(MessageDialog(text, language=self.language))

    def _leave(self, text: str) -> None:
        """The account can no longer be used: log out, then say why."""
        app = self.app
        logout = getattr(app, "logout", None)
        if callable(logout):
            logout()
        else:  # hosted outside SmisApp
            self.dismiss(None)
        app.push_screen(MessageDialog(text, language=self.language))

    # ----- leaving ----------------------------------------------------------------------

    def action_back(self) -> None:
        if self._busy:
            return
        stack = self.app.screen_stack
        below = stack[-2] if len(stack) > 1 and stack[-1] is self else None
        if below is not None:
            below.post_message(self.Closed(self.view, self.changed))
        self.dismiss(None)
