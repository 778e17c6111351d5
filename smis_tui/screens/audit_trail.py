"""軌跡紀錄: everyone sees their own trail; a CDC 管理者 also searches everybody's by
身分證號, 單位, 動作 and 日期 (民國 dates), and checks the hash chain (驗證, the same
check as ``smis-tui audit verify``).

The screen opens on the viewer's own trail, 20 rows a page, newest first. Whether the
viewer is a CDC 管理者 is asked in the first worker; only then do the search fields and
驗證 appear (the service refuses the search to anyone else in any case). Every
database call runs in a worker thread with its own connection. Masked IDs, unit names
and reasons come from the database and are shown as plain text.
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
from textual.screen import Screen
from textual.widgets import Button, DataTable, Input, Label, Select, Static

from models.db import database_proxy
from smis_tui.core.rocdate import to_roc
from smis_tui.screens import STYLES
from smis_tui.services import Services
from smis_tui.services.accounts import AccountView
from smis_tui.services.audit import TrailPage, TrailRow, VerifyResult, to_taiwan
from smis_tui.services.errors import ServiceError, ValidationFailed
from smis_tui.text import t
from smis_tui.text.control import TRAIL_ACTIONS
from smis_tui.widgets.bars import KeyBar, TitleBar
from smis_tui.widgets.localised import Localised
from smis_tui.widgets.pager import Pager, page_bindings
from smis_tui.widgets.safe import plain_cell
from smis_tui.widgets.safe_input import SafeInput

log = logging.getLogger("smis_tui.audit_trail")

UNIT_COLUMN_MAX = 20
NOTE_COLUMN_MAX = 40


@dataclass(frozen=True)
class _Search:
    """None: the viewer's own trail; otherwise a CDC search with these fields."""

    person_id: str = ""
    unit: str = ""
    action: str = ""
    since: str = ""
    until: str = ""


class AuditTrailScreen(Localised, Screen[None]):
    """軌跡紀錄 of ``viewer``; popped with Esc."""

    CSS_PATH = STYLES / "control.tcss"

    _DESCRIPTIONS = {
        "back": "trail.key_back",
        "search": "trail.key_search",
        "verify": "trail.key_verify",
        "previous_page": "trail.key_previous",
        "next_page": "trail.key_next",
    }
    BINDINGS = [
        Binding("escape", "back", _DESCRIPTIONS["back"], key_display="Esc"),
        Binding("f5", "search", _DESCRIPTIONS["search"]),
        Binding("f9", "verify", _DESCRIPTIONS["verify"]),
        *page_bindings(_DESCRIPTIONS["previous_page"], _DESCRIPTIONS["next_page"]),
    ]

    class Loaded(Message):
        def __init__(
            self,
            sequence: int,
            result: TrailPage | None,
            is_cdc: bool | None = None,
            error: str = "",
            field_errors: dict[str, str] | None = None,
        ) -> None:
            super().__init__()
            self.sequence = sequence
            self.result = result
            self.is_cdc = is_cdc
            self.error = error
            self.field_errors = field_errors or {}

    class Verified(Message):
        def __init__(self, result: VerifyResult | None, error: str = "") -> None:
            super().__init__()
            self.result = result
            self.error = error

    def __init__(self, services: Services, viewer: AccountView, language: str) -> None:
        super().__init__()
        self.services = services
        self.viewer = viewer
        self.language = language
        self.is_cdc = False
        """Set from the first answer: whether the search and 驗證 are offered."""
        self.result: TrailPage | None = None
        self.verify_result: VerifyResult | None = None
        self.verifying = False
        self._search: _Search | None = None
        self._page = 1
        self._sequence = 0

    def _t(self, key: str, **params: object) -> str:
        return t(key, self.language, **params)

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        actions: list[tuple[str, str]] = [(self._t("trail.action_all"), "")]
        actions += [(self._action_label(a), a) for a in TRAIL_ACTIONS]
        yield TitleBar()
        with Vertical(id="trail-body"):
            yield Static(self._t("trail.title"), id="trail-title")
            with Vertical(id="trail-search"):
                with Horizontal(classes="trail-row"):
                    yield Label(self._t("trail.person"), classes="trail-label")
                    yield SafeInput(
                        placeholder=self._t("trail.person_placeholder"),
                        max_length=20,
                        id="trail-person",
                    )
                    yield Label(self._t("trail.unit"), classes="trail-label")
                    yield SafeInput(placeholder=self._t("trail.unit_placeholder"), id="trail-unit")
                    yield Label(self._t("trail.action"), classes="trail-label")
                    yield Select(actions, value="", allow_blank=False, id="trail-action")
                with Horizontal(classes="trail-row"):
                    yield Label(self._t("trail.dates"), classes="trail-label")
                    yield SafeInput(
                        placeholder=self._t("trail.date_placeholder"),
                        max_length=16,
                        id="trail-since",
                    )
                    yield Label(self._t("trail.date_separator"), classes="trail-separator")
                    yield SafeInput(
                        placeholder=self._t("trail.date_placeholder"),
                        max_length=16,
                        id="trail-until",
                    )
                    yield Button(
                        self._t("trail.search"), variant="primary", id="trail-search-button"
                    )
                    yield Button(self._t("trail.own"), id="trail-own-button")
                    yield Button(self._t("trail.verify"), id="trail-verify-button")
                yield Static("", id="trail-errors", markup=False)
                yield Static("", id="trail-verify-result", markup=False)
            yield Static(self._t("trail.own_title"), id="trail-mode")
            with Horizontal(id="trail-pager-row"):
                yield Pager(id="trail-pager")
                yield Static("", id="trail-page-line", markup=False)
            yield DataTable(id="trail-table", cursor_type="row", zebra_stripes=True)
            yield Static(self._t("trail.loading"), id="trail-message", markup=False)
        yield KeyBar()

    def on_mount(self) -> None:
        self._fill_table([])
        for widget in ("#trail-errors", "#trail-verify-result"):
            self.query_one(widget).display = False
        self.query_one("#trail-table", DataTable).focus()
        self._load(None, 1)

    def _action_label(self, action: str) -> str:
        key = f"trail.action.{action}"
        return self._t(key) if action in TRAIL_ACTIONS else action

    # ------------------------------------------------------------------ loading

    def _load(self, search: _Search | None, page: int) -> None:
        self._search = search
        self._page = page
        self._sequence += 1
        self._fetch(self._sequence, search, page)

    @work(thread=True, exclusive=True, group="trail-load", exit_on_error=False)
    def _fetch(self, sequence: int, search: _Search | None, page: int) -> None:
        control = self.services.control
        try:
            with database_proxy.obj.connection_context():
                is_cdc = control.is_cdc_admin(self.viewer.id)
                if search is None:
                    result = control.own_trail(self.viewer.id, page)
                else:
                    result = control.search_trail(
                        self.viewer.id,
                        person_id=search.person_id,
                        unit=search.unit,
                        action=search.action,
                        since=search.since,
                        until=search.until,
                        page=page,
                    )
        except ValidationFailed as error:
            self.post_message(
                self.Loaded(sequence, None, field_errors=error.rendered(self.language))
            )
        except ServiceError as error:
            self.post_message(self.Loaded(sequence, None, error=error.render(self.language)))
        except Exception:
            log.exception("reading the audit trail failed")
            self.post_message(self.Loaded(sequence, None, error=self._t("trail.failed")))
        else:
            self.post_message(self.Loaded(sequence, result, is_cdc))

    @on(Loaded)
    def _loaded(self, message: Loaded) -> None:
        message.stop()
        if message.sequence != self._sequence:
            return
        if message.is_cdc is not None and message.is_cdc != self.is_cdc:
            self.is_cdc = message.is_cdc
            self.query_one("#trail-search").set_class(self.is_cdc, "-cdc")
        errors = self.query_one("#trail-errors", Static)
        errors.update("\n".join(message.field_errors.values()))
        errors.display = bool(message.field_errors)
        if message.field_errors:
            self.refresh_bindings()
            return  # the input was wrong: the last good page stays on screen
        notice = self.query_one("#trail-message", Static)
        table = self.query_one("#trail-table", DataTable)
        result = self.result = message.result
        self.query_one("#trail-mode", Static).update(
            self._t("trail.own_title" if self._search is None else "trail.search_title")
        )
        if result is None:
            self._fill_table([])
            table.display = False
            notice.update(message.error)
            notice.display = True
            self.refresh_bindings()
            return
        self._page = result.page
        self._fill_table(list(result.rows))
        pager = self.query_one("#trail-pager", Pager)
        pager.pages = result.pages
        pager.page = result.page
        self.query_one("#trail-page-line", Static).update(
            self._t(
                "trail.page_line",
                size=result.page_size,
                page=result.page,
                pages=result.pages,
                total=result.total,
            )
        )
        empty = not result.rows
        notice.update(self._t("trail.empty") if empty else "")
        notice.display = empty
        table.display = not empty
        self.refresh_bindings()

    def _fill_table(self, rows: list[TrailRow]) -> None:
        cells = [
            (
                plain_cell(self._time(row)),
                plain_cell(self._actor(row)),
                plain_cell(self._action_label(row.action)),
                plain_cell(row.target_label),
                plain_cell(row.unit_name),
                plain_cell(row.note),
            )
            for row in rows
        ]
        table = self.query_one("#trail-table", DataTable)
        table.clear(columns=True)
        columns = (
            ("time", "trail.col_time", None),
            ("actor", "trail.col_actor", None),
            ("action", "trail.col_action", None),
            ("target", "trail.col_target", None),
            ("unit", "trail.col_unit", UNIT_COLUMN_MAX),
            ("note", "trail.col_note", NOTE_COLUMN_MAX),
        )
        for index, (key, label, limit) in enumerate(columns):
            header = Text(self._t(label), end="")
            width = max([header.cell_len, *(cell[index].cell_len for cell in cells)])
            table.add_column(header, width=min(width, limit) if limit else width, key=key)
        for row, cell in zip(rows, cells, strict=True):
            table.add_row(*cell, key=str(row.id))

    @staticmethod
    def _time(row: TrailRow) -> str:
        local = to_taiwan(row.at)
        return f"{to_roc(local.date())} {local:%H:%M:%S}"

    def _actor(self, row: TrailRow) -> str:
        return self._t("trail.system") if row.actor_label == "system" else row.actor_label

    # ------------------------------------------------------------------ verifying

    @work(thread=True, exclusive=True, group="trail-verify", exit_on_error=False)
    def _run_verify(self) -> None:
        try:
            with database_proxy.obj.connection_context():
                result = self.services.control.verify_trail(self.viewer.id)
        except ServiceError as error:
            self.post_message(self.Verified(None, error.render(self.language)))
        except Exception:
            log.exception("verifying the audit trail failed")
            self.post_message(self.Verified(None, self._t("trail.verify_failed")))
        else:
            self.post_message(self.Verified(result))

    @on(Verified)
    def _verified(self, message: Verified) -> None:
        message.stop()
        self.verifying = False
        self.verify_result = result = message.result
        line = self.query_one("#trail-verify-result", Static)
        line.display = True
        line.set_class(result is not None and result.ok, "-ok")
        line.set_class(result is None or not result.ok, "-bad")
        if result is None:
            line.update(message.error)
        elif result.ok:
            line.update(self._t("trail.verify_ok", count=result.checked))
        else:
            reason = self._t(f"trail.verify_{result.code}") if result.code else result.reason
            line.update(
                self._t(
                    "trail.verify_bad", row=result.first_bad_id, reason=reason, count=result.checked
                )
            )
        self.refresh_bindings()

    # ------------------------------------------------------------------ events

    @on(Input.Submitted, "#trail-search Input")
    @on(Button.Pressed, "#trail-search-button")
    def _submit(self, event: Input.Submitted | Button.Pressed) -> None:
        event.stop()
        self.action_search()

    @on(Button.Pressed, "#trail-own-button")
    def _own(self, event: Button.Pressed) -> None:
        event.stop()
        self.query_one("#trail-errors").display = False
        self._load(None, 1)

    @on(Button.Pressed, "#trail-verify-button")
    def _verify_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_verify()

    @on(Pager.PageChosen, "#trail-pager")
    def _page_chosen(self, event: Pager.PageChosen) -> None:
        event.stop()
        self._load(self._search, event.page)

    # ------------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "search":
            return self.is_cdc
        if action == "verify":
            return (True if not self.verifying else None) if self.is_cdc else False
        if action == "previous_page":
            return True if self.result is not None and self._page > 1 else None
        if action == "next_page":
            return True if self.result is not None and self._page < self.result.pages else None
        return True

    def action_back(self) -> None:
        self.dismiss(None)

    def action_search(self) -> None:
        if not self.is_cdc:
            return
        action = self.query_one("#trail-action", Select).value
        self._load(
            _Search(
                person_id=self.query_one("#trail-person", Input).value,
                unit=self.query_one("#trail-unit", Input).value,
                action=action if isinstance(action, str) else "",
                since=self.query_one("#trail-since", Input).value,
                until=self.query_one("#trail-until", Input).value,
            ),
            1,
        )

    def action_verify(self) -> None:
        if not self.is_cdc or self.verifying:
            return
        self.verifying = True
        line = self.query_one("#trail-verify-result", Static)
        line.remove_class("-ok", "-bad")
        line.update(self._t("trail.verifying"))
        line.display = True
        self._run_verify()

    def action_previous_page(self) -> None:
        if self._page > 1:
            self._load(self._search, self._page - 1)

    def action_next_page(self) -> None:
        if self.result is not None and self._page < self.result.pages:
            self._load(self._search, self._page + 1)
