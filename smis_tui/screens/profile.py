"""個人資料維護: an active user's own account, from home.

Four tabs: 個人資料 (the personal data, checked as in the application form), 權限
(the granted and pending roles per category; 放棄此權限 / 撤回此申請 on one row;
a role grid for 權限異動申請 that goes to review like an application; 審核結果, every
decision about the account's permissions with its reason and unit), 停用帳號 and
申請刪除帳號 (each confirmed with a dialog, then the kiosk logs out).

Thin: every service call runs off the UI thread (:meth:`KioskScreen.call_service`); a
write reads the account again and answers with it. The screen keeps the account as
last read (:attr:`view`) and writes with its version, so a change made elsewhere
meanwhile is a conflict with a clear message and no change.

Leaving (Esc): the screen is dismissed with None and posts :class:`ProfileScreen.Closed`
to the screen below it (home), carrying the latest view and whether anything changed;
:attr:`changed` and :attr:`view` say the same to a dismiss callback. Styles live in
``smis_tui/styles/profile.tcss``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Static, TabbedContent, TabPane

from smis_tui.core.domain import AccountStatus, RequestStatus
from smis_tui.screens import STYLES
from smis_tui.screens.base import KioskScreen, SessionEnded
from smis_tui.screens.card_auth import CardAuthScreen
from smis_tui.services import Services
from smis_tui.services.accounts import (
    AccountView,
    CategoryView,
    PersonalData,
    RequestView,
    check_personal_field,
    field_label,
)
from smis_tui.services.card_proof import PROOF_GONE, CardProof
from smis_tui.services.card_runtime import CardRuntime
from smis_tui.services.errors import ConflictError, NotAllowed, ServiceError, ValidationFailed
from smis_tui.text import render_error
from smis_tui.text.labels import category_label, listed, role_label
from smis_tui.widgets.decisions import DecisionList
from smis_tui.widgets.dialogs import MessageDialog
from smis_tui.widgets.keys_in_order import Button
from smis_tui.widgets.person_fields import PersonFields
from smis_tui.widgets.prose import Prose
from smis_tui.widgets.role_grid import RoleGrid
from smis_tui.widgets.safe import plain, plain_cell
from smis_tui.widgets.table import DataTable

TABS = ("tab-personal", "tab-permissions", "tab-disable", "tab-delete")


def changed_fields(before: PersonalData, after: PersonalData) -> list[str]:
    """The personal-data fields that differ, in form order."""
    return [
        f.name for f in fields(PersonalData) if getattr(before, f.name) != getattr(after, f.name)
    ]


@dataclass(frozen=True)
class _Action:
    """What a write does: ``kind`` names it, ``request`` is the row it acts on."""

    kind: str
    request: RequestView | None = None


@dataclass(frozen=True)
class _Written:
    """After a write: the account read again (None once it is disabled or deleted),
    and the domain error that refused the write (None: it was done)."""

    view: AccountView | None
    error: ServiceError | None = None
    # The write needs the card (again): nothing was written.
    needs_card: bool = False


class ProfileScreen(KioskScreen[None]):
    """個人資料維護 of the logged-in (active) account."""

    CSS_PATH = [STYLES / "profile.tcss", STYLES / "person_fields.tcss"]
    AUTO_FOCUS = "#input-name"
    BINDINGS = [
        Binding("escape", "back", "common.back"),
        Binding("f2", "tab('tab-personal')", "profile.tab_personal"),
        Binding("f3", "tab('tab-permissions')", "profile.tab_permissions"),
        Binding("f5", "tab('tab-disable')", "profile.key_disable"),
        Binding("f6", "tab('tab-delete')", "profile.key_delete"),
        Binding("f9", "save", "profile.save"),
        Binding("f10", "submit_changes", "profile.key_submit"),
    ]

    class Closed(Message):
        """Posted to the screen below when the profile closes: ``view`` is the account
        as last read, ``changed`` whether anything was written."""

        def __init__(self, view: AccountView, changed: bool) -> None:
            super().__init__()
            self.view = view
            self.changed = changed

    def __init__(
        self,
        services: Services,
        view: AccountView,
        language: str,
        *,
        cards: CardRuntime | None = None,
        proof: CardProof | None = None,
        name: str | None = None,
        id: str | None = None,
    ) -> None:
        """``proof``: the card of the login, standing for the account while it lasts;
        after that every change asks the card again (身份驗證)."""
        super().__init__(language, name=name, id=id)
        self.services = services
        self.cards = cards
        self.proof = proof
        self.view = view
        self.changed = False
        self._busy = False
        self._categories: tuple[CategoryView, ...] = ()
        self._handled: set[str] | None = None
        self._grid_serial = 0

    # ----- helpers -------------------------------------------------------------------

    def category_name(self, request: RequestView) -> str:
        """The request's category in the UI language."""
        return category_label(request.category_name, request.category_name_en, self.language)

    def permission_label(self, request: RequestView) -> str:
        """``承辦人`` or ``瀏覽者(COVID-19)``."""
        return role_label(request.role, self.language, request.options)

    @property
    def person_fields(self) -> PersonFields:
        return self.query_one(PersonFields)

    def typed_data(self) -> PersonalData:
        return PersonalData(**self.person_fields.values())

    @property
    def grid(self) -> RoleGrid | None:
        grids = self.query(RoleGrid)
        return grids.first() if grids else None

    @property
    def active_tab(self) -> str:
        return self.query_one("#profile-tabs", TabbedContent).active

    # ----- compose -------------------------------------------------------------------

    def compose_body(self) -> ComposeResult:
        view = self.view
        yield Static(self.tr("profile.title"), id="profile-title")
        yield Static(self._who(view), id="profile-who")
        with TabbedContent(id="profile-tabs", initial="tab-personal"):
            with TabPane(self.tr("profile.tab_personal"), id="tab-personal"):
                with VerticalScroll(id="personal-body", can_focus=False):
                    yield PersonFields(
                        asdict(view.data), check_personal_field, self.language, id="person-fields"
                    )
                    with Horizontal(classes="profile-buttons"):
                        yield Button(self.tr("profile.save"), variant="primary", id="save")
                    yield Prose("", id="personal-status", classes="profile-status", markup=False)
            with TabPane(self.tr("profile.tab_permissions"), id="tab-permissions"):
                with VerticalScroll(id="permissions-body", can_focus=False):
                    yield Static(self.tr("profile.current_title"), classes="profile-section")
                    yield DataTable(id="permissions", cursor_type="row", zebra_stripes=True)
                    with Horizontal(classes="profile-buttons"):
                        yield Button(self.tr("profile.give_up"), id="drop", disabled=True)
                    yield Static(self.tr("profile.changes_title"), classes="profile-section")
                    yield Prose(self.tr("profile.changes_hint"), classes="profile-hint")
                    with Vertical(id="grid-holder"):
                        yield Static(self.tr("form.roles_loading"), id="grid-loading")
                    yield Prose("", id="error-roles", classes="profile-error-block", markup=False)
                    with Horizontal(classes="profile-buttons"):
                        yield Button(
                            self.tr("profile.submit_changes"), variant="primary", id="submit"
                        )
                    yield Prose("", id="permissions-status", classes="profile-status", markup=False)
                    # Last: however long the history, the changes above stay where they are.
                    yield Static(self.tr("decision.title"), classes="profile-section")
                    yield DecisionList(
                        view.decisions,
                        self.language,
                        empty=self.tr("decision.none"),
                        id="decisions",
                    )
            with TabPane(self.tr("common.disable_account"), id="tab-disable"):
                with Vertical(classes="profile-danger"):
                    yield Prose(self.tr("profile.disable_text"), classes="profile-danger-text")
                    with Horizontal(classes="profile-buttons"):
                        yield Button(
                            self.tr("common.disable_account"), variant="error", id="disable"
                        )
            with TabPane(self.tr("profile.tab_delete"), id="tab-delete"):
                with Vertical(classes="profile-danger"):
                    yield Prose(
                        plain(self._delete_text()), id="delete-text", classes="profile-danger-text"
                    )
                    with Horizontal(classes="profile-buttons"):
                        yield Button(self.tr("profile.tab_delete"), variant="error", id="delete")

    def _who(self, view: AccountView) -> Text:
        return plain(
            self.tr("home.who", name=view.data.name, masked_id=view.masked_id, unit=view.unit_name)
        )

    def _delete_text(self) -> str:
        return self.tr("profile.delete_text", masked_id=self.view.masked_id)

    def on_mount(self) -> None:
        table = self.query_one("#permissions", DataTable)
        table.add_column(self.tr("common.category"), key="category")
        table.add_column(self.tr("common.role"), key="role")
        table.add_column(self.tr("common.status"), key="status")
        self._fill_permissions()
        self._load_categories()

    # ----- the permissions table -------------------------------------------------------

    def _rows(self) -> list[RequestView]:
        """Granted, then pending, each in the grid's category order."""
        rows = [*self.view.granted(), *self.view.pending()]
        return sorted(rows, key=lambda r: (r.status != RequestStatus.APPROVED, r.category_order))

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
                plain_cell(self.permission_label(request)),
                self.tr(status),
                key=str(request.id),
            )
        if not rows:
            table.add_row(self.tr("profile.no_permissions"), "", "")
        self._update_drop()
        decisions = self.query_one("#decisions", DecisionList)
        if decisions.decisions != self.view.decisions:
            decisions.show(self.view.decisions)

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
        button.label = self.tr("profile.withdraw" if pending else "profile.give_up")

    @on(DataTable.RowHighlighted, "#permissions")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._update_drop()

    @on(DataTable.RowSelected, "#permissions")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_drop()

    # ----- the role grid ---------------------------------------------------------------

    def _load_categories(self) -> None:
        accounts, units, unit_code = (
            self.services.accounts,
            self.services.units,
            self.view.unit_code,
        )

        def load() -> tuple[tuple[CategoryView, ...], set[str]]:
            unit = units.get(unit_code, include_inactive=True)
            handled = units.categories_of(unit.id) if unit is not None else set()
            return accounts.categories(), handled

        self.call_service(
            load, self._categories_loaded, group="categories", failed=self._categories_failed
        )

    def _categories_loaded(self, loaded: tuple[tuple[CategoryView, ...], set[str]]) -> None:
        self._categories, self._handled = loaded
        self._rebuild_grid()

    def _categories_failed(self, error: Exception) -> None:
        reason = render_error(error, self.language)
        self.query_one("#grid-loading", Static).update(
            self.tr("form.roles_load_failed", reason=reason)
        )

    def _rebuild_grid(self) -> None:
        """A fresh grid showing what each category has now."""
        if self._handled is None:
            return
        holder = self.query_one("#grid-holder", Vertical)
        holder.remove_children()
        self._grid_serial += 1
        holder.mount(
            RoleGrid(
                self.view.unit_name,
                self._categories,
                self._handled,
                self.language,
                self.view.current_choices(),
                id=f"role-grid-{self._grid_serial}",
            )
        )

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

    def _start(
        self, action: _Action, call: Callable[[CardProof | None], object], status: str | None
    ) -> None:
        """Run the write ``call`` with the card's proof, then read the account again
        (unless it is gone). Without a proof that still stands, the card is asked
        first."""
        self._busy = True
        self._update_drop()
        for button in self.query(Button).results(Button):
            if button.id != "drop":
                button.disabled = True
        if status is not None:
            self.query_one(f"#{status}", Static).update(self.tr("profile.busy"))
        accounts, account_id, proof = self.services.accounts, self.view.id, self.proof

        def write() -> _Written:
            try:
                call(proof)
            except NotAllowed as error:
                if error.key in PROOF_GONE:
                    return _Written(None, error, needs_card=True)
                return _Written(accounts.view(account_id), error)
            except ServiceError as error:
                return _Written(accounts.view(account_id), error)
            if action.kind in ("disable", "delete"):
                return _Written(None)
            return _Written(accounts.view(account_id))

        def written(written: _Written) -> None:
            error = written.error
            if error is not None and error.key.startswith("error.card_"):
                self.proof = None  # that card stands for nobody here: ask again next time
            if written.needs_card and self.cards is not None:
                self._ask_card(action, call, status)
            else:
                self._done(action, written.view, written.error)

        self.call_service(
            write, written, group="write", failed=lambda error: self._done(action, None, error)
        )

    def _ask_card(
        self, action: _Action, call: Callable[[CardProof | None], object], status: str | None
    ) -> None:
        """身份驗證 before a change in 個人資料維護, then the change with that card."""
        assert self.cards is not None
        accounts, account_id = self.services.accounts, self.view.id

        def owners(proof: CardProof) -> CardProof:
            accounts.confirm_owner(account_id, proof)  # another card is refused right here
            return proof

        def answered(proof: CardProof | None) -> None:
            if proof is None:  # cancelled: nothing written, the screen as it was
                self._idle()
                return
            self.proof = proof
            self._start(action, call, status)

        self.app.push_screen(
            CardAuthScreen(
                self.cards,
                self.language,
                owners,
                title_key="auth.title_profile",
                reader=self._reader(),
            ),
            answered,
        )

    def _reader(self) -> str | None:
        login = getattr(self.app, "login_screen", None)
        return getattr(login, "reader", None)

    def action_save(self) -> None:
        if self._busy:
            return
        data = self.typed_data()
        version = self.view.version
        account_id = self.view.id
        self._start(
            _Action("save"),
            lambda proof: self.services.accounts.update_personal_data(
                account_id, version, data, proof
            ),
            "personal-status",
        )

    def action_submit_changes(self) -> None:
        grid = self.grid
        if self._busy or grid is None:
            return
        roles = grid.value
        version = self.view.version
        account_id = self.view.id
        self._show_roles_error(None)
        self._start(
            _Action("changes"),
            lambda proof: self.services.accounts.request_changes(account_id, roles, version, proof),
            "permissions-status",
        )

    def action_drop(self) -> None:
        request = self.highlighted_request()
        if self._busy or request is None:
            return
        names = {"category": self.category_name(request), "role": self.permission_label(request)}
        accounts = self.services.accounts
        if request.status == RequestStatus.PENDING:
            self._confirm_write(
                _Action("withdraw", request),
                self.tr("profile.withdraw_confirm", **names),
                lambda account_id, version, proof: accounts.withdraw_request(
                    account_id, request.id, version, proof
                ),
            )
            return
        last = len(self.view.granted()) == 1
        self._confirm_write(
            _Action("give_up", request),
            self.tr("profile.give_up_last_confirm" if last else "profile.give_up_confirm", **names),
            lambda account_id, version, proof: accounts.give_up_permission(
                account_id, request.id, version, proof
            ),
        )

    def action_disable(self) -> None:
        if not self._busy:
            self._confirm_write(
                _Action("disable"),
                self.tr("profile.disable_confirm"),
                self.services.accounts.disable_self,
                status=None,
            )

    def action_delete(self) -> None:
        if not self._busy:
            self._confirm_write(
                _Action("delete"),
                self.tr("profile.delete_confirm", text=self._delete_text()),
                self.services.accounts.delete_account,
                status=None,
            )

    def _confirm_write(
        self,
        action: _Action,
        text: str,
        write: Callable[[int, int, CardProof | None], object],
        status: str | None = "permissions-status",
    ) -> None:
        """Ask ``text``; on yes, ``write(account id, version, proof)`` with the version
        as it is then (the account may have been read again while the dialog was
        open)."""
        account_id = self.view.id

        def answered(yes: bool | None) -> None:
            if yes and not self._busy:
                version = self.view.version
                self._start(action, lambda proof: write(account_id, version, proof), status)

        self.app.push_screen(
            MessageDialog(text, language=self.language, cancel=True, destructive=True), answered
        )

    # ----- the answer of a write ----------------------------------------------------------

    def _idle(self) -> None:
        self._busy = False
        for button in self.query(Button).results(Button):
            button.disabled = False
        for status in ("personal-status", "permissions-status"):
            self.query_one(f"#{status}", Static).update("")
        self._update_drop()

    def _done(self, action: _Action, view: AccountView | None, error: Exception | None) -> None:
        self._idle()
        before = self.view
        if error is None:
            self.changed = True
        if view is not None:
            self.view = view
            self.query_one("#profile-who", Static).update(self._who(self.view))
            self._fill_permissions()
        else:
            self._update_drop()
        if error is None and action.kind in ("disable", "delete"):
            self._leave(
                self.tr(
                    "profile.disabled_done" if action.kind == "disable" else "profile.deleted_done"
                )
            )
            return
        if view is not None and view.status != AccountStatus.ACTIVE:
            if error is None and action.kind == "give_up":
                self._leave(self.tr("profile.disabled_done"))
            else:
                self._leave(self.tr("profile.account_gone"))
            return
        if error is None:
            self._succeeded(action)
            if action.kind != "save":
                self._rebuild_grid()
            return
        self._failed(action, error, before)

    def _show_roles_error(self, message: str | None) -> None:
        note = self.query_one("#error-roles", Static)
        note.update(message or "")
        note.set_class(bool(message), "-shown")

    def _succeeded(self, action: _Action) -> None:
        if action.kind == "save":
            self.person_fields.reset(asdict(self.view.data))
            self.query_one("#personal-status", Static).update(self.tr("profile.saved"))
            return
        if action.kind == "changes":
            self._show_roles_error(None)
            self.app.push_screen(
                MessageDialog(self.tr("profile.changes_submitted"), language=self.language)
            )
            return
        assert action.request is not None
        names = {
            "category": self.category_name(action.request),
            "role": self.permission_label(action.request),
        }
        key = "profile.withdrawn" if action.kind == "withdraw" else "profile.given_up"
        self.query_one("#permissions-status", Static).update(self.tr(key, **names))

    def _failed(self, action: _Action, error: Exception, before: AccountView) -> None:
        if isinstance(error, ValidationFailed):
            if action.kind == "save":
                self.person_fields.show_errors(error.rendered(self.language))
                self.query_one("#personal-status", Static).update(self.tr("profile.fix_errors"))
            else:
                self._show_roles_error(
                    error.message("roles", self.language) or error.render(self.language)
                )
            return
        text = render_error(error, self.language)
        if isinstance(error, ConflictError):
            text = self.tr("profile.conflict")
            moved = changed_fields(before.data, self.view.data)
            if moved:
                labels = listed((field_label(f, self.language) for f in moved), self.language)
                text += "\n" + self.tr("profile.conflict_fields", fields=labels)
        self.app.push_screen(MessageDialog(text, language=self.language))

    def _leave(self, text: str) -> None:
        """The account can no longer be used: log out, then say why."""
        self.post_message(SessionEnded(text))

    # ----- leaving ----------------------------------------------------------------------

    def action_back(self) -> None:
        if self._busy:
            return
        if not self.person_fields.is_modified:
            self._go_back()
            return

        self.ask_before_discarding(self._go_back)

    def _go_back(self) -> None:
        stack = self.app.screen_stack
        below = stack[-2] if len(stack) > 1 and stack[-1] is self else None
        if below is not None:
            below.post_message(self.Closed(self.view, self.changed))
        self.dismiss(None)
