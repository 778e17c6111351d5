"""軌跡紀錄: everyone sees their own trail; a CDC 管理者 also searches everybody's by
身分證號, 單位, 動作 and 日期 (民國 dates), and checks the hash chain (驗證, the same
check as ``smis-tui audit verify``).

The screen opens on the viewer's own trail, 20 rows a page, newest first. The columns
always fit the table, whatever the terminal's width: every one but the time narrows,
the widest first. Under the table, the highlighted row's 說明 is shown whole (a reason
runs long, and at 80 columns its column holds a few words); Enter (shown in the key
bar) opens the whole row. Whether the viewer is a CDC 管理者 comes with the first
answer; only then do the search fields and 驗證 appear (the service refuses the
search to anyone else in any case). People are named by name and account number
(王小明 #12), never by any part of their ID; names, unit names and reasons come from
the database and are shown as plain text.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, Static

from smis_tui.core.clock import taiwan_today
from smis_tui.core.rocdate import to_roc
from smis_tui.screens import STYLES
from smis_tui.screens.base import KioskScreen
from smis_tui.screens.paged import PagedList
from smis_tui.services import Services
from smis_tui.services.accounts import AccountView
from smis_tui.services.audit import TrailPage, TrailRow, VerifyResult
from smis_tui.services.control import TrailExport
from smis_tui.services.errors import ValidationFailed
from smis_tui.services.trail_words import TrailWords, action_name, trail_words
from smis_tui.text import render_error
from smis_tui.text.control import TRAIL_ACTIONS
from smis_tui.widgets.dialogs import MessageDialog
from smis_tui.widgets.keys_in_order import Button, Select
from smis_tui.widgets.paged_table import Column, PagedTable, page_keys
from smis_tui.widgets.prose import Prose
from smis_tui.widgets.safe import plain_cell
from smis_tui.widgets.safe_input import SafeInput
from smis_tui.widgets.table import DataTable

UNIT_COLUMN_MAX = 20
NOTE_COLUMN_MAX = 40
# A person with their unit, and a target with its category and role, run long: the
# row's detail view (Enter) shows them whole.
ACTOR_COLUMN_MAX = 16
TARGET_COLUMN_MAX = 22
NOTE_LINES = 2
"""Lines of the highlighted row's 說明 under the table (Enter shows the rest)."""
# Where the columns narrow, a person's name and number (王小明 #12) and an action stay
# readable: the action is what a person scans the trail for. Most run to six
# characters in 中文 (個人資料維護) and sixteen in English (Language changed).
PERSON_COLUMN_FLOOR = 9
ACTION_COLUMN_FLOOR = {"zh_TW": 12, "en": 16}
GIVE_WAY = ("unit", "actor", "target", "action", "note")
"""Every column but the time narrows to fit (the widest first; between equals, the
first named): the 說明 last, and read whole under the table in any case."""


@dataclass(frozen=True)
class _Search:
    """A CDC search with these fields (None stands for the viewer's own trail)."""

    person_id: str = ""
    unit: str = ""
    action: str = ""
    since: str = ""
    until: str = ""


class AuditTrailScreen(PagedList, KioskScreen[None]):
    """軌跡紀錄 of ``viewer``; popped with Esc."""

    CSS_PATH = STYLES / "control.tcss"

    BINDINGS = [
        Binding("escape", "back", "common.back", key_display="Esc"),
        Binding("f5", "search", "common.search"),
        Binding("f6", "export", "trail.export"),
        Binding("f9", "verify", "trail.verify"),
        # Priority, so that the key bar names it; it stands aside (check_action) unless
        # the list has the focus, where Enter belongs to the field or the button.
        Binding("enter", "detail", "trail.detail", key_display="Enter", priority=True),
        *page_keys("common.previous_page", "common.next_page"),
    ]

    def __init__(self, services: Services, viewer: AccountView, language: str) -> None:
        super().__init__(language)
        self.services = services
        self.viewer = viewer
        self.is_cdc = False
        """Set from the first answer: whether the search and 驗證 are offered."""
        self.result: TrailPage | None = None
        self.verify_result: VerifyResult | None = None
        self.verifying = False
        self.exporting = False
        self.exported: TrailExport | None = None
        self._search: _Search | None = None
        self._rows: dict[str, TrailRow] = {}
        self.paged = PagedTable(
            [
                Column("time", self.tr("trail.col_time")),
                Column(
                    "actor",
                    self.tr("trail.col_actor"),
                    most=ACTOR_COLUMN_MAX,
                    floor=PERSON_COLUMN_FLOOR,
                ),
                Column(
                    "action", self.tr("trail.action"), floor=ACTION_COLUMN_FLOOR.get(language, 16)
                ),
                Column(
                    "target",
                    self.tr("trail.col_target"),
                    most=TARGET_COLUMN_MAX,
                    floor=PERSON_COLUMN_FLOOR,
                ),
                Column("unit", self.tr("common.unit"), most=UNIT_COLUMN_MAX),
                Column("note", self.tr("trail.col_note"), most=NOTE_COLUMN_MAX),
            ],
            give_way=GIVE_WAY,
            line_key="trail.page_line",
            empty=self.tr("trail.empty"),
            language=language,
            id="trail-list",
        )

    # ------------------------------------------------------------------ layout

    def compose_body(self) -> ComposeResult:
        # Text, not str: a Select reads a str prompt as markup, and "[All]" is a tag.
        actions: list[tuple[Text, str]] = [(Text(self.tr("common.all")), "")]
        actions += [(Text(self._action_label(a)), a) for a in TRAIL_ACTIONS]
        with Vertical(id="trail-body"):
            yield Static(self.tr("trail.title"), id="trail-title")
            with Vertical(id="trail-search"):
                with Horizontal(classes="trail-row"):
                    yield Label(self.tr("common.id"), classes="trail-label")
                    yield SafeInput(
                        placeholder=self.tr("trail.person_placeholder"),
                        max_length=20,
                        id="trail-person",
                    )
                    yield Label(self.tr("common.unit"), classes="trail-label")
                    yield SafeInput(placeholder=self.tr("common.unit_placeholder"), id="trail-unit")
                    yield Label(self.tr("trail.action"), classes="trail-label")
                    yield Select(actions, value="", allow_blank=False, id="trail-action")
                # Today as the example: the manual's own date reads as a stale default.
                today = self.tr("trail.date_example", date=to_roc(taiwan_today()))
                with Horizontal(classes="trail-row"):
                    yield Label(self.tr("trail.dates"), classes="trail-label")
                    yield SafeInput(
                        placeholder=today,
                        max_length=16,
                        id="trail-since",
                    )
                    yield Label(self.tr("trail.date_separator"), classes="trail-separator")
                    yield SafeInput(
                        placeholder=today,
                        max_length=16,
                        id="trail-until",
                    )
                    yield Button(
                        self.tr("common.search"), variant="primary", id="trail-search-button"
                    )
                    yield Button(self.tr("trail.own"), id="trail-own-button")
                    yield Button(self.tr("trail.verify"), id="trail-verify-button")
                yield Prose("", id="trail-errors", markup=False)
                yield Prose("", id="trail-verify-result", markup=False)
                yield Prose("", id="trail-export-result", markup=False)
            yield Static(self.tr("trail.own_title"), id="trail-mode")
            yield self.paged
            with Vertical(id="trail-detail") as detail:
                detail.border_title = self.tr("trail.col_note")
                yield Prose("", id="trail-detail-text", max_lines=NOTE_LINES)

    def on_mount(self) -> None:
        self.sub_title = self.tr("trail.title")
        for widget in ("#trail-errors", "#trail-verify-result", "#trail-export-result"):
            self.query_one(widget).display = False
        self.paged.table.focus()
        self._load(None, 1)

    def _action_label(self, action: str) -> str:
        return action_name(action, self.language)

    # ------------------------------------------------------------------ loading

    def load_page(self, page: int) -> None:
        self._load(self._search, page)

    def _load(self, search: _Search | None, page: int) -> None:
        self._search = search
        self.paged.page = page
        viewer = self.viewer.id
        control = self.services.control

        def fetch() -> tuple[bool, TrailPage]:
            is_cdc = control.is_cdc_admin(viewer)
            if search is None:
                return is_cdc, control.own_trail(viewer, page)
            return is_cdc, control.search_trail(
                viewer,
                person_id=search.person_id,
                unit=search.unit,
                action=search.action,
                since=search.since,
                until=search.until,
                page=page,
            )

        self.call_service(fetch, self._loaded, group="trail", failed=self._load_failed)

    def _loaded(self, answer: tuple[bool, TrailPage]) -> None:
        is_cdc, result = answer
        if is_cdc != self.is_cdc:
            self.is_cdc = is_cdc
            self.query_one("#trail-search").set_class(is_cdc, "-cdc")
        self._show_field_errors({})
        self._show_mode()
        self.result = result
        self._rows = {str(row.id): row for row in result.rows}
        rows = [(str(row.id), self._cells(row)) for row in result.rows]
        self.paged.show_page(result, rows)
        self._show_note()
        self.refresh_bindings()

    def _load_failed(self, error: Exception) -> None:
        if isinstance(error, ValidationFailed):
            # The input was wrong: the last good page stays on screen.
            self._show_field_errors(error.rendered(self.language))
            self.refresh_bindings()
            return
        self._show_field_errors({})
        self._show_mode()
        self.result = None
        self._rows = {}
        self.paged.show_failure(render_error(error, self.language))
        self._show_note()

    def _show_field_errors(self, errors: dict[str, str]) -> None:
        line = self.query_one("#trail-errors", Static)
        line.update("\n".join(errors.values()))
        line.display = bool(errors)

    def _show_mode(self) -> None:
        self.query_one("#trail-mode", Static).update(
            self.tr("trail.own_title" if self._search is None else "trail.search_title")
        )

    def _cells(self, row: TrailRow) -> tuple[Text, ...]:
        words = trail_words(row, self.language)
        return tuple(
            plain_cell(text)
            for text in (
                words.time,
                words.actor,
                words.action,
                words.target,
                words.unit_name,
                self._note(words),
            )
        )

    def _note(self, words: TrailWords) -> str:
        separator = "；" if self.language == "zh_TW" else "; "
        return separator.join(part for part in (words.change, words.note) if part)

    # ------------------------------------------------------------------ one row

    def _current_row(self) -> TrailRow | None:
        key = self.paged.current_key
        return self._rows.get(key) if key is not None else None

    def _show_note(self) -> None:
        """The highlighted row's 說明, whole (as plain text): what its column cuts."""
        row = self._current_row()
        note = self._note(trail_words(row, self.language, whole=True)) if row else ""
        text = self.query_one("#trail-detail-text", Prose)
        text.update(note or (self.tr("trail.no_note") if row else ""))
        text.set_class(not note, "-none")

    @on(DataTable.RowHighlighted, "#trail-list DataTable")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._show_note()

    def _detail(self, row: TrailRow) -> str:
        """The whole row, one labelled line a field (nothing cut: a long reason is read
        here). Plain text: the dialog never reads it as markup."""
        words = trail_words(row, self.language, whole=True)
        unit = f"{words.unit_name} {words.unit_code}".strip()
        fields = (
            ("trail.col_time", words.time),
            ("trail.col_actor", words.actor),
            ("trail.action", words.action),
            ("trail.col_target", words.target),
            ("trail.col_target_unit", words.target_unit),
            ("common.unit", unit),
            ("trail.col_change", words.change),
            ("trail.col_note", words.note),
        )
        return "\n".join(
            self.tr("trail.detail_line", label=self.tr(key), value=value)
            for key, value in fields
            if value
        )

    @on(DataTable.RowSelected, "#trail-list DataTable")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        """A click on the highlighted row (Enter is :meth:`action_detail`)."""
        event.stop()
        self._open_detail(self._rows.get(str(event.row_key.value)))

    def action_detail(self) -> None:
        self._open_detail(self._current_row())

    def _open_detail(self, row: TrailRow | None) -> None:
        if row is None:
            return
        self.app.push_screen(
            MessageDialog(
                self._detail(row),
                language=self.language,
                title=self.tr("trail.detail_title", id=row.id),
            )
        )

    # ------------------------------------------------------------------ verifying

    def action_verify(self) -> None:
        if not self.is_cdc or self.verifying:
            return
        self.verifying = True
        line = self.query_one("#trail-verify-result", Static)
        line.remove_class("-ok", "-bad")
        line.update(self.tr("trail.verifying"))
        line.display = True
        viewer = self.viewer.id
        self.call_service(
            lambda: self.services.control.verify_trail(viewer),
            self._verified,
            group="verify",
            failed=lambda error: self._verified(None, render_error(error, self.language)),
        )

    def _verified(self, result: VerifyResult | None, error: str = "") -> None:
        self.verifying = False
        self.verify_result = result
        line = self.query_one("#trail-verify-result", Static)
        line.set_class(result is not None and result.ok, "-ok")
        line.set_class(result is None or not result.ok, "-bad")
        if result is None:
            line.update(error)
        elif result.ok:
            line.update(self.tr("trail.verify_ok", count=result.checked))
        else:
            reason = self.tr(f"trail.verify_{result.code}") if result.code else result.reason
            line.update(
                self.tr(
                    "trail.verify_bad", row=result.first_bad_id, reason=reason, count=result.checked
                )
            )
        self.refresh_bindings()

    # ------------------------------------------------------------------ exporting

    def action_export(self) -> None:
        """The search on screen as a CSV file under the data directory (offered once a
        search is shown); the service checks the viewer is a CDC 管理者."""
        if not self.is_cdc or self.exporting or self._search is None:
            return
        self.exporting = True
        line = self.query_one("#trail-export-result", Static)
        line.remove_class("-ok", "-bad")
        line.update(self.tr("trail.exporting"))
        line.display = True
        search = self._search
        viewer, language = self.viewer.id, self.language
        self.call_service(
            lambda: self.services.control.export_trail(
                viewer,
                language,
                person_id=search.person_id,
                unit=search.unit,
                action=search.action,
                since=search.since,
                until=search.until,
            ),
            self._exported,
            group="export",
            failed=lambda error: self._exported(None, render_error(error, self.language)),
        )

    def _exported(self, result: TrailExport | None, error: str = "") -> None:
        self.exporting = False
        self.exported = result
        line = self.query_one("#trail-export-result", Static)
        line.set_class(result is not None, "-ok")
        line.set_class(result is None, "-bad")
        if result is None:
            line.update(error)
        else:
            line.update(self.tr("trail.exported", count=result.rows, path=str(result.path)))
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
        self._show_field_errors({})
        self._load(None, 1)

    @on(Button.Pressed, "#trail-verify-button")
    def _verify_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_verify()

    # ------------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "search":
            return self.is_cdc
        if action == "verify":
            return (True if not self.verifying else None) if self.is_cdc else False
        if action == "detail":
            return self.paged.table.has_focus and self._current_row() is not None
        if action == "export":
            if not self.is_cdc or self._search is None:
                return False
            return True if not self.exporting else None
        return super().check_action(action, parameters)

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
