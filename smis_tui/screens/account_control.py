"""帳號管理 (下級單位): a 管理者 sees the accounts of the units below theirs and
disables one permission or a whole account, with a reason.

The list has filters (姓名/身分證號, 單位, 狀態 including 「超過 150 天未登入」), 20 rows a
page with the pager, and beside it the chosen account's granted permissions. 停用權限
(F6) and 停用帳號 (F7) ask for the reason (:class:`ReasonPrompt`), then confirm, then
write in a worker thread; whatever the service refuses is shown as its message and
nothing changes. Every database call runs in a worker with its own connection; the
screen only shows what the workers post back. Names, IDs and unit names are shown as
plain text, never markup.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Input, Label, Select, Static

from models.db import database_proxy
from models.schema import AccountStatus
from smis_tui.screens import STYLES
from smis_tui.services import Services
from smis_tui.services.accounts import AccountView
from smis_tui.services.control import (
    REASON_MAX,
    ControlPage,
    ControlRow,
    GrantedPermission,
    StatusFilter,
)
from smis_tui.services.errors import ServiceError
from smis_tui.text import t
from smis_tui.widgets.bars import KeyBar, TitleBar
from smis_tui.widgets.dialogs import MessageDialog
from smis_tui.widgets.localised import Localised
from smis_tui.widgets.pager import Pager, page_bindings
from smis_tui.widgets.role_grid import category_label
from smis_tui.widgets.safe import plain, plain_cell
from smis_tui.widgets.safe_input import SafeInput

log = logging.getLogger("smis_tui.account_control")

STYLESHEET = STYLES / "control.tcss"
UNIT_COLUMN_MAX = 16


def permission_label(permission: GrantedPermission, language: str) -> str:
    role = t(f"role.{permission.role}", language)
    if permission.options:
        role = f"{role}({t('form.option_separator', language).join(permission.options)})"
    category = category_label(permission.category_code, permission.category_name, language)
    return t("control.permission", language, category=category, role=role)


def status_label(row: ControlRow, language: str) -> str:
    if row.status == AccountStatus.DISABLED and row.disabled_reason:
        return t(f"control.reason_{row.disabled_reason}", language)
    return t(f"control.status_{row.status}", language)


class ReasonPrompt(Localised, ModalScreen[str | None]):
    """Asks why; dismisses with the reason (stripped, never empty) or None on 取消/Esc."""

    CSS_PATH = STYLESHEET
    BINDINGS = [Binding("escape", "cancel", show=False)]

    def __init__(self, what: str, language: str) -> None:
        super().__init__()
        self.what = what
        self.language = language

    def compose(self) -> ComposeResult:
        with Vertical(id="control-reason-dialog"):
            yield Static(t("control.reason_title", self.language), id="control-reason-title")
            yield Static(plain(self.what), id="control-reason-what")
            yield Label(t("control.reason_label", self.language), id="control-reason-label")
            yield SafeInput(
                placeholder=t("control.reason_placeholder", self.language),
                max_length=REASON_MAX,
                id="control-reason-input",
            )
            yield Static("", id="control-reason-error", markup=False)
            with Horizontal(id="control-reason-buttons"):
                yield Button(
                    t("dialog.ok", self.language), variant="primary", id="control-reason-ok"
                )
                yield Button(t("dialog.cancel", self.language), id="control-reason-cancel")

    def on_mount(self) -> None:
        self.query_one("#control-reason-input", Input).focus()

    @on(Input.Submitted, "#control-reason-input")
    @on(Button.Pressed, "#control-reason-ok")
    def _ok(self, event: Input.Submitted | Button.Pressed) -> None:
        event.stop()
        reason = self.query_one("#control-reason-input", Input).value.strip()
        if not reason:
            self.query_one("#control-reason-error", Static).update(
                t("control.reason_empty", self.language)
            )
            return
        self.dismiss(reason)

    @on(Button.Pressed, "#control-reason-cancel")
    def _cancel_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


@dataclass(frozen=True)
class _Filters:
    name: str = ""
    unit: str = ""
    status: str = StatusFilter.ALL


class AccountControlScreen(Localised, Screen[None]):
    """帳號管理 for ``actor``; dismissed (popped) with Esc."""

    CSS_PATH = STYLESHEET

    _DESCRIPTIONS = {
        "back": "control.key_back",
        "search": "control.key_search",
        "disable_permission": "control.key_disable_permission",
        "disable_account": "control.key_disable_account",
        "previous_page": "control.key_previous",
        "next_page": "control.key_next",
    }
    BINDINGS = [
        Binding("escape", "back", _DESCRIPTIONS["back"], key_display="Esc"),
        Binding("f5", "search", _DESCRIPTIONS["search"]),
        Binding("f6", "disable_permission", _DESCRIPTIONS["disable_permission"]),
        Binding("f7", "disable_account", _DESCRIPTIONS["disable_account"]),
        *page_bindings(_DESCRIPTIONS["previous_page"], _DESCRIPTIONS["next_page"]),
    ]

    class Loaded(Message):
        """A worker's answer to list request number ``sequence``."""

        def __init__(self, sequence: int, result: ControlPage | None, error: str = "") -> None:
            super().__init__()
            self.sequence = sequence
            self.result = result
            self.error = error

    class Written(Message):
        """A disable finished (``ok``) or was refused; ``text`` says which."""

        def __init__(self, ok: bool, text: str) -> None:
            super().__init__()
            self.ok = ok
            self.text = text

    def __init__(self, services: Services, actor: AccountView, language: str) -> None:
        super().__init__()
        self.services = services
        self.actor = actor
        self.language = language
        self.result: ControlPage | None = None
        """The page on display (None until the first answer, or after a failure)."""
        self.writing = False
        self._filters = _Filters()
        self._page = 1
        self._sequence = 0
        self._rows: dict[str, ControlRow] = {}
        self._current: ControlRow | None = None

    def _t(self, key: str, **params: object) -> str:
        return t(key, self.language, **params)

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        days = self.services.settings.inactive_warning_days
        statuses: list[tuple[str, str]] = [
            (self._t("control.filter_all"), StatusFilter.ALL),
            (self._t("control.filter_active"), StatusFilter.ACTIVE),
            (self._t("control.filter_inactive", days=days), StatusFilter.INACTIVE),
            (self._t("control.filter_pending"), StatusFilter.PENDING),
            (self._t("control.filter_disabled"), StatusFilter.DISABLED),
        ]
        yield TitleBar()
        with Vertical(id="control-body"):
            yield Static(self._t("control.title"), id="control-title")
            yield Static(
                self._t("control.intro", days=days, limit=self.services.settings.inactive_days),
                id="control-intro",
                markup=False,
            )
            with Horizontal(id="control-filters"):
                yield Label(self._t("control.name"), classes="control-label")
                yield SafeInput(placeholder=self._t("control.name_placeholder"), id="control-name")
                yield Label(self._t("control.unit"), classes="control-label")
                yield SafeInput(placeholder=self._t("control.unit_placeholder"), id="control-unit")
                yield Select(
                    statuses, value=StatusFilter.ALL, allow_blank=False, id="control-status"
                )
                yield Button(self._t("control.search"), id="control-search")
            with Horizontal(id="control-main"):
                with Vertical(id="control-list"):
                    with Horizontal(id="control-pager-row"):
                        yield Pager(id="control-pager")
                        yield Static("", id="control-page-line", markup=False)
                    yield DataTable(id="control-table", cursor_type="row", zebra_stripes=True)
                    yield Static(self._t("control.loading"), id="control-message", markup=False)
                with Vertical(id="control-side"):
                    yield Static(
                        self._t("control.pick_account"), id="control-side-title", markup=False
                    )
                    yield DataTable(id="control-permissions", cursor_type="row")
                    yield Button(
                        self._t("control.disable_permission"),
                        id="control-disable-permission",
                        classes="control-action",
                    )
                    yield Button(
                        self._t("control.disable_account"),
                        variant="error",
                        id="control-disable-account",
                        classes="control-action",
                    )
        yield KeyBar()

    def on_mount(self) -> None:
        self._fill_table([])
        self._show_permissions(None)
        self.query_one("#control-name", Input).focus()
        self._load(1)

    # ------------------------------------------------------------------ loading

    def _load(self, page: int) -> None:
        self._page = page
        self._sequence += 1
        self._fetch(self._sequence, self._filters, page)

    @work(thread=True, exclusive=True, group="control-load", exit_on_error=False)
    def _fetch(self, sequence: int, filters: _Filters, page: int) -> None:
        try:
            with database_proxy.obj.connection_context():
                result = self.services.control.accounts_below(
                    self.actor.id,
                    name=filters.name,
                    unit=filters.unit,
                    status=filters.status,
                    page=page,
                )
        except ServiceError as error:
            self.post_message(self.Loaded(sequence, None, error.render(self.language)))
        except Exception:
            log.exception("listing the accounts below failed")
            self.post_message(self.Loaded(sequence, None, self._t("control.failed")))
        else:
            self.post_message(self.Loaded(sequence, result))

    @on(Loaded)
    def _loaded(self, message: Loaded) -> None:
        message.stop()
        if message.sequence != self._sequence:
            return  # a newer list is on its way
        notice = self.query_one("#control-message", Static)
        table = self.query_one("#control-table", DataTable)
        result = self.result = message.result
        if result is None:
            self._rows = {}
            self._fill_table([])
            table.display = False
            notice.update(message.error)
            notice.display = True
            self._show_permissions(None)
            self.refresh_bindings()
            return
        self._page = result.page
        previous = self._current.account_id if self._current is not None else None
        self._rows = {str(row.account_id): row for row in result.rows}
        self._fill_table(list(result.rows))
        pager = self.query_one("#control-pager", Pager)
        pager.pages = result.pages
        pager.page = result.page
        self.query_one("#control-page-line", Static).update(
            t(
                "units.page_line",
                self.language,
                size=result.page_size,
                page=result.page,
                pages=result.pages,
                total=result.total,
            )
        )
        empty = not result.rows
        notice.update(self._t("control.empty") if empty else "")
        notice.display = empty
        table.display = not empty
        keep = str(previous) if previous is not None else None
        if keep in self._rows:
            table.move_cursor(row=table.get_row_index(keep))
        self._show_permissions(
            self._rows.get(keep)
            if keep in self._rows
            else (result.rows[0] if result.rows else None)
        )
        self.refresh_bindings()

    def _fill_table(self, rows: list[ControlRow]) -> None:
        cells = [
            (
                plain_cell(row.name),
                plain_cell(row.masked_id),
                plain_cell(row.unit_name),
                plain_cell(self._idle(row)),
                plain_cell(status_label(row, self.language)),
            )
            for row in rows
        ]
        table = self.query_one("#control-table", DataTable)
        table.clear(columns=True)
        for index, (key, label) in enumerate(
            (
                ("name", "control.col_name"),
                ("id", "control.col_id"),
                ("unit", "control.col_unit"),
                ("idle", "control.col_idle"),
                ("status", "control.col_status"),
            )
        ):
            header = Text(self._t(label), end="")
            width = max([header.cell_len, *(cell[index].cell_len for cell in cells)])
            if key == "unit":
                width = min(width, UNIT_COLUMN_MAX)
            table.add_column(header, width=width, key=key)
        for row, cell in zip(rows, cells, strict=True):
            table.add_row(*cell, key=str(row.account_id))

    def _idle(self, row: ControlRow) -> str:
        if row.idle_days is None:
            return self._t("control.no_idle")
        key = "control.idle_warning" if row.inactive else "control.idle_days"
        return self._t(key, days=row.idle_days)

    def _show_permissions(self, row: ControlRow | None) -> None:
        self._current = row
        title = self.query_one("#control-side-title", Static)
        table = self.query_one("#control-permissions", DataTable)
        table.clear(columns=True)
        table.add_column(Text(self._t("control.col_category"), end=""), key="category")
        table.add_column(Text(self._t("control.col_role"), end=""), key="role")
        if row is None:
            title.update(self._t("control.pick_account"))
        else:
            title.update(
                plain(self._t("control.permissions_of", name=row.name, masked_id=row.masked_id))
            )
            for permission in row.permissions:
                role = t(f"role.{permission.role}", self.language)
                if permission.options:
                    separator = self._t("form.option_separator")
                    role = f"{role}({separator.join(permission.options)})"
                table.add_row(
                    plain_cell(
                        category_label(
                            permission.category_code, permission.category_name, self.language
                        )
                    ),
                    plain_cell(role),
                    key=str(permission.request_id),
                )
            if not row.permissions:
                table.add_row(plain_cell(self._t("control.no_permissions")), Text(""))
        self.refresh_bindings()

    # ------------------------------------------------------------------ events

    @on(DataTable.RowHighlighted, "#control-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        row = self._rows.get(str(event.row_key.value))
        if row is not self._current:
            self._show_permissions(row)

    @on(DataTable.RowSelected, "#control-table")
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

    @on(Pager.PageChosen, "#control-pager")
    def _page_chosen(self, event: Pager.PageChosen) -> None:
        event.stop()
        self._load(event.page)

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
        if action == "previous_page":
            return True if self.result is not None and self._page > 1 else None
        if action == "next_page":
            return True if self.result is not None and self._page < self.result.pages else None
        if action in ("disable_permission", "disable_account"):
            return None if self.writing or self._current is None else True
        return True

    def action_back(self) -> None:
        self.dismiss(None)

    def action_search(self) -> None:
        status = self.query_one("#control-status", Select).value
        self._filters = _Filters(
            name=self.query_one("#control-name", Input).value,
            unit=self.query_one("#control-unit", Input).value,
            status=status if isinstance(status, str) else StatusFilter.ALL,
        )
        self._load(1)

    def action_previous_page(self) -> None:
        if self._page > 1:
            self._load(self._page - 1)

    def action_next_page(self) -> None:
        if self.result is not None and self._page < self.result.pages:
            self._load(self._page + 1)

    def _tell(self, text: str) -> None:
        self.app.push_screen(MessageDialog(text, language=self.language))

    def _target(self) -> ControlRow | None:
        row = self._current
        if row is None or self.writing:
            return None
        if row.status != AccountStatus.ACTIVE:
            self._tell(self._t("control.not_active_row", status=status_label(row, self.language)))
            return None
        return row

    def action_disable_account(self) -> None:
        row = self._target()
        if row is None:
            return
        names = {"name": row.name, "masked_id": row.masked_id}

        def confirmed(reason: str, ok: bool | None) -> None:
            if ok:
                self._write(row, None, reason)

        def reasoned(reason: str | None) -> None:
            if reason:
                self.app.push_screen(
                    MessageDialog(
                        self._t("control.confirm_account", reason=reason, **names),
                        language=self.language,
                        cancel=True,
                    ),
                    lambda ok: confirmed(reason, ok),
                )

        self.app.push_screen(
            ReasonPrompt(self._t("control.reason_for_account", **names), self.language), reasoned
        )

    def action_disable_permission(self) -> None:
        row = self._target()
        if row is None:
            return
        table = self.query_one("#control-permissions", DataTable)
        permission = None
        if table.row_count and row.permissions:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            permission = next((p for p in row.permissions if str(p.request_id) == key), None)
        if permission is None:
            self._tell(self._t("control.no_permission_row"))
            return
        names = {
            "name": row.name,
            "masked_id": row.masked_id,
            "permission": permission_label(permission, self.language),
        }

        def confirmed(reason: str, ok: bool | None) -> None:
            if ok:
                self._write(row, permission, reason)

        def reasoned(reason: str | None) -> None:
            if reason:
                self.app.push_screen(
                    MessageDialog(
                        self._t("control.confirm_permission", reason=reason, **names),
                        language=self.language,
                        cancel=True,
                    ),
                    lambda ok: confirmed(reason, ok),
                )

        self.app.push_screen(
            ReasonPrompt(self._t("control.reason_for_permission", **names), self.language),
            reasoned,
        )

    # ------------------------------------------------------------------ writing

    def _write(self, row: ControlRow, permission: GrantedPermission | None, reason: str) -> None:
        self.writing = True
        self.refresh_bindings()
        self.query_one("#control-side-title", Static).update(self._t("control.working"))
        self._disable(row, permission, reason)

    @work(thread=True, group="control-write", exit_on_error=False)
    def _disable(self, row: ControlRow, permission: GrantedPermission | None, reason: str) -> None:
        names = {"name": row.name, "masked_id": row.masked_id}
        control = self.services.control
        try:
            with database_proxy.obj.connection_context():
                if permission is None:
                    control.disable_account(self.actor.id, row.account_id, row.version, reason)
                    text = self._t("control.done_account", **names)
                else:
                    last = control.disable_permission(
                        self.actor.id, row.account_id, permission.request_id, row.version, reason
                    )
                    label = permission_label(permission, self.language)
                    key = "control.done_permission_last" if last else "control.done_permission"
                    text = self._t(key, permission=label, **names)
        except ServiceError as error:
            self.post_message(self.Written(False, error.render(self.language)))
        except Exception:
            log.exception("disabling failed unexpectedly")
            self.post_message(self.Written(False, self._t("control.unexpected")))
        else:
            self.post_message(self.Written(True, text))

    @on(Written)
    def _written(self, message: Written) -> None:
        message.stop()
        self.writing = False
        self._show_permissions(self._current)
        self._tell(message.text)
        self._load(self._page)
