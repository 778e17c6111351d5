"""帳號管理 (下級單位): a 管理者 sees the accounts of the units below theirs and
disables one permission or a whole account, with a reason.

The list has filters (姓名/身分證號, 單位, 狀態 including 「超過 150 天未登入」), 20 rows a
page with the pager, and beside it the chosen account's granted permissions. 停用權限
(F6) and 停用帳號 (F7) ask for the reason (:class:`ReasonDialog`), then confirm, then
write; whatever the service refuses is shown as its message and nothing changes.
Names, IDs and unit names are shown as plain text, never markup.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, Static

from smis_tui.core.domain import AccountStatus
from smis_tui.screens import STYLES
from smis_tui.screens.base import KioskScreen
from smis_tui.screens.paged import PagedList
from smis_tui.screens.reason_dialog import ReasonDialog
from smis_tui.services import Services
from smis_tui.services.accounts import AccountView
from smis_tui.services.control import ControlPage, ControlRow, GrantedPermission, StatusFilter
from smis_tui.text import render_error
from smis_tui.text.labels import category_label, role_label
from smis_tui.widgets.dialogs import MessageDialog
from smis_tui.widgets.keys_in_order import Button, Select
from smis_tui.widgets.paged_table import Column, PagedTable, page_keys
from smis_tui.widgets.prose import Prose
from smis_tui.widgets.safe import plain, plain_cell
from smis_tui.widgets.safe_input import SafeInput
from smis_tui.widgets.table import DataTable, FittedTable

STYLESHEET = STYLES / "control.tcss"
UNIT_COLUMN_MAX = 26
"""As long as a long hospital's name (國立臺灣大學醫學院附設醫院)."""
LIST_GIVE_WAY = ("name", "unit")
"""Where the list is narrower than its columns, names and units narrow (the widest
first); the ID, the idle days and the status stay whole."""


@dataclass(frozen=True)
class _Filters:
    name: str = ""
    unit: str = ""
    status: str = StatusFilter.ALL


DISABLE_KEYS = {"permission": "control.disable_permission", "account": "common.disable_account"}
"""The reason dialog's button: 停用權限 or 停用帳號."""


class AccountControlScreen(PagedList, KioskScreen[None]):
    """帳號管理 for ``actor``; dismissed (popped) with Esc."""

    CSS_PATH = STYLESHEET

    BINDINGS = [
        Binding("escape", "back", "common.back", key_display="Esc"),
        Binding("f5", "search", "common.search"),
        Binding("f6", "disable_permission", "control.disable_permission"),
        Binding("f7", "disable_account", "common.disable_account"),
        *page_keys("common.previous_page", "common.next_page"),
    ]

    def __init__(self, services: Services, actor: AccountView, language: str) -> None:
        super().__init__(language)
        self.services = services
        self.actor = actor
        self.result: ControlPage | None = None
        """The page on display (None until the first answer, or after a failure)."""
        self.writing = False
        self._filters = _Filters()
        self._rows: dict[str, ControlRow] = {}
        self._current: ControlRow | None = None
        self.paged = PagedTable(
            [
                Column("name", self.tr("common.name")),
                Column("id", self.tr("common.id")),
                Column("unit", self.tr("common.unit"), most=UNIT_COLUMN_MAX),
                Column("idle", self.tr("control.col_idle")),
                Column("status", self.tr("common.status")),
            ],
            line_key="control.page_line",
            empty=self.tr("control.empty"),
            language=language,
            give_way=LIST_GIVE_WAY,
            id="control-list",
        )

    # ------------------------------------------------------------------ names

    def _status(self, row: ControlRow) -> str:
        if row.status == AccountStatus.DISABLED and row.disabled_reason:
            return self.tr(f"control.reason_{row.disabled_reason}")
        if row.rejected:
            return self.tr("control.status_rejected")
        return self.tr(f"control.status_{row.status}")

    def _category(self, permission: GrantedPermission) -> str:
        return category_label(permission.category_name, permission.category_name_en, self.language)

    def _permission(self, permission: GrantedPermission) -> str:
        role = role_label(permission.role, self.language, permission.options)
        return self.tr("control.permission", category=self._category(permission), role=role)

    def _idle(self, row: ControlRow) -> str:
        """Days since the last login, or that there was none; ⚠ when the 180-day rule
        (which counts from activation too) is near."""
        if row.login_days is None:
            shown = self.tr("control.never_logged_in")
        else:
            shown = self.tr("control.idle_days", days=row.login_days)
        return self.tr("control.idle_warning", idle=shown) if row.inactive else shown

    # ------------------------------------------------------------------ layout

    def compose_body(self) -> ComposeResult:
        days = self.services.settings.inactive_warning_days
        # Text, not str: a Select reads a str prompt as markup, and "[All]" is a tag.
        statuses: list[tuple[Text, str]] = [
            (Text(self.tr("common.all")), StatusFilter.ALL),
            (Text(self.tr("control.status_active")), StatusFilter.ACTIVE),
            (Text(self.tr("control.filter_inactive", days=days)), StatusFilter.INACTIVE),
            (Text(self.tr("control.status_pending")), StatusFilter.PENDING),
            (Text(self.tr("control.status_rejected")), StatusFilter.REJECTED),
            (Text(self.tr("control.status_disabled")), StatusFilter.DISABLED),
        ]
        with Vertical(id="control-body"):
            yield Static(self.tr("control.title"), id="control-title")
            yield Prose(
                self.tr("control.intro", days=days, limit=self.services.settings.inactive_days),
                id="control-intro",
                markup=False,
            )
            with Horizontal(id="control-filters"):
                yield Label(self.tr("control.name"), classes="control-label")
                yield SafeInput(placeholder=self.tr("control.name_placeholder"), id="control-name")
                yield Label(self.tr("common.unit"), classes="control-label")
                yield SafeInput(placeholder=self.tr("common.unit_placeholder"), id="control-unit")
                yield Select(
                    statuses, value=StatusFilter.ALL, allow_blank=False, id="control-status"
                )
                yield Button(self.tr("common.search"), id="control-search")
            with Horizontal(id="control-main"):
                yield self.paged
                with Vertical(id="control-side"):
                    yield Static(
                        self.tr("control.pick_account"), id="control-side-title", markup=False
                    )
                    # Both columns narrow to the pane: the role is not pushed out of it.
                    yield FittedTable(give_way=(0, 1), id="control-permissions")
                    with Vertical(id="control-actions"):
                        yield Button(
                            self.tr("control.disable_permission"),
                            id="control-disable-permission",
                            classes="control-action",
                        )
                        yield Button(
                            self.tr("common.disable_account"),
                            variant="error",
                            id="control-disable-account",
                            classes="control-action",
                        )

    def on_mount(self) -> None:
        self.sub_title = self.tr("home.control")
        self._show_permissions(None)
        self.query_one("#control-name", Input).focus()
        self.load_page(1)

    # ------------------------------------------------------------------ loading

    def load_page(self, page: int) -> None:
        self.paged.page = page
        filters, actor = self._filters, self.actor.id
        self.call_service(
            lambda: self.services.control.accounts_below(
                actor, name=filters.name, unit=filters.unit, status=filters.status, page=page
            ),
            self._loaded,
            group="accounts",
            failed=self._load_failed,
        )

    def _load_failed(self, error: Exception) -> None:
        self.result = None
        self._rows = {}
        self.paged.show_failure(render_error(error, self.language))
        self._show_permissions(None)

    def _loaded(self, result: ControlPage) -> None:
        self.result = result
        previous = self._current.account_id if self._current is not None else None
        self._rows = {str(row.account_id): row for row in result.rows}
        rows = [(key, self._cells(row)) for key, row in self._rows.items()]
        ids = [row.account_id for row in result.rows]
        kept = ids.index(previous) if previous in ids else None
        self.paged.show_page(result, rows, cursor=kept or 0)
        self._show_permissions(result.rows[kept or 0] if result.rows else None)

    def _cells(self, row: ControlRow) -> tuple[Text, ...]:
        texts = (row.name, row.masked_id, row.unit_name, self._idle(row), self._status(row))
        return tuple(plain_cell(text) for text in texts)

    def _show_permissions(self, row: ControlRow | None) -> None:
        self._current = row
        title = self.query_one("#control-side-title", Static)
        table = self.query_one("#control-permissions", FittedTable)
        rows: list[tuple[str | None, tuple[Text, Text]]] = []
        if row is None:
            title.update(self.tr("control.pick_account"))
        else:
            title.update(
                plain(self.tr("control.permissions_of", name=row.name, masked_id=row.masked_id))
            )
            rows = [
                (
                    str(permission.request_id),
                    (
                        plain_cell(self._category(permission)),
                        plain_cell(role_label(permission.role, self.language, permission.options)),
                    ),
                )
                for permission in row.permissions
            ]
            if not row.permissions:
                rows.append((None, (plain_cell(self.tr("control.no_permissions")), Text(""))))
        table.show([self.tr("common.category"), self.tr("common.role")], rows)
        self.refresh_bindings()

    # ------------------------------------------------------------------ events

    @on(DataTable.RowHighlighted, "#control-list DataTable")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        row = self._rows.get(str(event.row_key.value))
        if row is not self._current:
            self._show_permissions(row)

    @on(DataTable.RowSelected, "#control-list DataTable")
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.query_one("#control-permissions", DataTable).focus()

    @on(Input.Submitted, "#control-name")
    @on(Input.Submitted, "#control-unit")
    @on(Button.Pressed, "#control-search")
    def _submit(self, event: Input.Submitted | Button.Pressed) -> None:
        event.stop()
        self.action_search()

    @on(Select.Changed, "#control-status")
    def _status_changed(self, event: Select.Changed) -> None:
        event.stop()
        status = event.value if isinstance(event.value, str) else StatusFilter.ALL
        if status != self._filters.status:
            self.action_search()

    @on(Button.Pressed, "#control-disable-permission")
    def _disable_permission_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_disable_permission()

    @on(Button.Pressed, "#control-disable-account")
    def _disable_account_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_disable_account()

    # ------------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("disable_permission", "disable_account"):
            return None if self.writing or self._current is None else True
        return super().check_action(action, parameters)

    def action_back(self) -> None:
        self.dismiss(None)

    def action_search(self) -> None:
        status = self.query_one("#control-status", Select).value
        self._filters = _Filters(
            name=self.query_one("#control-name", Input).value,
            unit=self.query_one("#control-unit", Input).value,
            status=status if isinstance(status, str) else StatusFilter.ALL,
        )
        self.load_page(1)

    def _tell(self, text: str) -> None:
        self.app.push_screen(MessageDialog(text, language=self.language))

    def _target(self) -> ControlRow | None:
        row = self._current
        if row is None or self.writing:
            return None
        if row.status != AccountStatus.ACTIVE:
            self._tell(self.tr("control.not_active_row", status=self._status(row)))
            return None
        return row

    def _chosen_permission(self, row: ControlRow) -> GrantedPermission | None:
        table = self.query_one("#control-permissions", DataTable)
        if not (table.row_count and row.permissions):
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((p for p in row.permissions if str(p.request_id) == key), None)

    def action_disable_account(self) -> None:
        row = self._target()
        if row is not None:
            self._ask_and_disable(row, None)

    def action_disable_permission(self) -> None:
        row = self._target()
        if row is None:
            return
        permission = self._chosen_permission(row)
        if permission is None:
            self._tell(self.tr("control.no_permission_row"))
            return
        self._ask_and_disable(row, permission)

    def _ask_and_disable(self, row: ControlRow, permission: GrantedPermission | None) -> None:
        """The reason, then the confirmation, then the write."""
        names = {"name": row.name, "masked_id": row.masked_id}
        what = "account"
        if permission is not None:
            names["permission"] = self._permission(permission)
            # The service disables the account with its last permission: the person
            # deciding must know that before they confirm, not from the outcome.
            what = "last_permission" if len(row.permissions) == 1 else "permission"

        def confirmed(reason: str, ok: bool | None) -> None:
            if ok:
                self._write(row, permission, reason)

        def reasoned(reason: str | None) -> None:
            if reason:
                self.app.push_screen(
                    MessageDialog(
                        self.tr(f"control.confirm_{what}", reason=reason, **names),
                        language=self.language,
                        cancel=True,
                        destructive=True,
                    ),
                    lambda ok: confirmed(reason, ok),
                )

        self.app.push_screen(
            ReasonDialog(
                self.language,
                title=self.tr("control.reason_title"),
                prompt=self.tr(f"control.reason_for_{what}", **names),
                placeholder=self.tr("control.reason_placeholder"),
                submit=self.tr(DISABLE_KEYS["account" if permission is None else "permission"]),
            ),
            reasoned,
        )

    # ------------------------------------------------------------------ writing

    def _write(self, row: ControlRow, permission: GrantedPermission | None, reason: str) -> None:
        self.writing = True
        self.refresh_bindings()
        self.query_one("#control-side-title", Static).update(self.tr("control.working"))
        names = {"name": row.name, "masked_id": row.masked_id}
        control, actor = self.services.control, self.actor.id

        def disable() -> str:
            if permission is None:
                control.disable_account(actor, row.account_id, row.version, reason)
                return self.tr("control.done_account", **names)
            last = control.disable_permission(
                actor, row.account_id, permission.request_id, row.version, reason
            )
            key = "control.done_permission_last" if last else "control.done_permission"
            return self.tr(key, permission=self._permission(permission), **names)

        self.call_service(
            disable,
            self._written,
            group="write",
            failed=lambda error: self._written(render_error(error, self.language)),
        )

    def _written(self, text: str) -> None:
        self.writing = False
        self._show_permissions(self._current)
        self._tell(text)
        self.load_page(self.paged.page)
