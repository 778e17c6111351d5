"""單位查詢: the modal that picks a unit for 單位/醫事機構代碼 (seed step 3).

A 縣市 filter (``[全部]`` and the 22 counties), a 單位名稱 field taking a name or the
beginning of a 醫事機構代碼, 查詢, a table 縣市 / 單位/醫事機構代碼 / 名稱 of 20 units a
page, the pager ``[1] 2 3 … 10 > >>`` and ``【每頁 20 筆 · 第 1 頁 共 259 頁 5165 筆】``.

Results follow the typing (after a short pause) and each search runs in a worker
thread with its own database connection, so the screen never waits on the database.
Every search carries a sequence number; only the answer to the newest one is shown.

Enter on a row, or a click on it, dismisses the screen with that :class:`UnitRow`;
Esc dismisses it with None. PgUp / PgDn and the pager's links change pages.
Unit data is shown as plain text (never markup) with control characters removed.
"""

from __future__ import annotations

import logging
import time

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.coordinate import Coordinate
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Label, Select, Static

from models.db import database_proxy
from smis_tui.screens import STYLES
from smis_tui.services.units import DEFAULT_PAGE_SIZE, UnitDirectory, UnitPage, UnitRow
from smis_tui.text import t
from smis_tui.widgets.bars import KeyBar
from smis_tui.widgets.localised import Localised
from smis_tui.widgets.pager import Pager, page_bindings
from smis_tui.widgets.safe import plain_cell
from smis_tui.widgets.safe_input import SafeInput

log = logging.getLogger("smis_tui.unit_search")

ALL_COUNTIES = ""
# Every county name is three characters; codes are ten digits (narrower than headers).
COUNTY_WIDTH = 6
CODE_WIDTH = 10
"""The 縣市 select's value for ``[全部]``."""


class UnitTable(DataTable[Text]):
    """The results table: a single click on a row chooses it (the seed's 點擊單位名稱).

    DataTable itself selects only on a click on the row already under the cursor; this
    handler runs before DataTable's own (subclass first), moves the cursor to the
    clicked row, and DataTable then posts RowSelected for it.
    """

    def on_click(self, event: events.Click) -> None:
        meta = event.style.meta
        row, column = meta.get("row"), meta.get("column")
        if (
            isinstance(row, int)
            and isinstance(column, int)
            and row >= 0
            and column >= 0
            and not meta.get("out_of_bounds", False)
        ):
            self.cursor_coordinate = Coordinate(row, column)


class UnitSearchScreen(Localised, ModalScreen[UnitRow | None]):
    """Pick a unit; dismisses with the chosen :class:`UnitRow`, or None on Esc."""

    CSS_PATH = STYLES / "unit_search.tcss"
    # A search still running after this long (a locked or slow database) no longer holds
    # back the newer ones: they start beside it, and its answer is dropped when it comes.
    OVERTAKE_SECONDS = 0.15

    _DESCRIPTIONS = {
        "cancel": "unit_search.key_cancel",
        "previous_page": "unit_search.key_previous",
        "next_page": "unit_search.key_next",
    }
    # In zh-TW here; __init__ puts the descriptions in the screen's language.
    BINDINGS = [
        Binding("escape", "cancel", _DESCRIPTIONS["cancel"], key_display="Esc"),
        *page_bindings(_DESCRIPTIONS["previous_page"], _DESCRIPTIONS["next_page"]),
        Binding("down", "focus_results", show=False),
    ]

    class Answered(Message):
        """A worker's answer to search number ``sequence`` (None if it failed)."""

        def __init__(self, sequence: int, result: UnitPage | None) -> None:
            super().__init__()
            self.sequence = sequence
            self.result = result

    def __init__(
        self,
        directory: UnitDirectory,
        language: str = "zh_TW",
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.directory = directory
        self.language = language
        self.page_size = page_size
        self.result: UnitPage | None = None
        """The page on display (None until the first answer)."""
        self._query = ""
        self._county: str | None = None
        self._page = 1
        self._sequence = 0
        self._answered = 0
        # (Names of our own: Textual's MessagePump already has a ``_running``.)
        # At most one search runs at a time; typing meanwhile only marks that the newest
        # query still needs one, started the moment the running one answers. No timer:
        # results follow the keys as fast as the database answers, and a burst of keys
        # never queues a search per key.
        self._search_running: int | None = None
        self._search_since = 0.0
        self._rows: dict[str, UnitRow] = {}
        self._widths: list[int] = []
        self._focus_results = False

    def _t(self, key: str, **params: object) -> str:
        return t(key, self.language, **params)

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        counties: list[tuple[Text, str]] = [(Text(self._t("unit_search.county_all")), ALL_COUNTIES)]
        counties += [(Text(name), name) for name in self.directory.counties()]
        with Vertical(id="unit-search-dialog") as dialog:
            dialog.border_title = self._t("unit_search.title")
            with Horizontal(id="unit-search-filters"):
                yield Label(
                    self._t("unit_search.county"), markup=False, classes="unit-search-label"
                )
                yield Select(
                    counties, value=ALL_COUNTIES, allow_blank=False, id="unit-search-county"
                )
                yield Label(self._t("unit_search.name"), markup=False, classes="unit-search-label")
                yield SafeInput(
                    placeholder=self._t("unit_search.placeholder"), id="unit-search-query"
                )
                yield Button(self._t("unit_search.submit"), id="unit-search-submit")
            yield Pager(id="unit-search-pager")
            yield Static("", id="unit-search-page-line", markup=False)
            yield UnitTable(id="unit-search-table", cursor_type="row", zebra_stripes=True)
            yield Static("", id="unit-search-message", markup=False)
        yield KeyBar()

    def on_mount(self) -> None:
        self._fill_table([])
        self.query_one("#unit-search-message").display = False
        self.query_one("#unit-search-query", Input).focus()
        self._search(1)

    # ------------------------------------------------------------------ state

    @property
    def is_searching(self) -> bool:
        """True while the newest search (query, county, page) is unanswered."""
        return self._answered != self._sequence

    # ------------------------------------------------------------------ searching

    def _search(self, page: int) -> None:
        """Ask for search number n+1 for the current query, county and ``page``."""
        self._page = page
        self._sequence += 1
        stalled = time.monotonic() - self._search_since > self.OVERTAKE_SECONDS
        if self._search_running is None or stalled:
            self._start_newest()

    def _start_newest(self) -> None:
        self._search_running = self._sequence
        self._search_since = time.monotonic()
        self._run_search(self._sequence, self._query, self._county, self._page)

    @work(thread=True, group="unit-search", exit_on_error=False)
    def _run_search(self, sequence: int, query: str, county: str | None, page: int) -> None:
        result: UnitPage | None
        try:
            # Peewee connections are per thread: this thread opens its own, and closes it.
            with database_proxy.obj.connection_context():
                result = self.directory.search(query, county, page, self.page_size)
        except Exception:
            log.exception("unit search failed")
            result = None
        self.post_message(self.Answered(sequence, result))

    @on(Answered)
    def _show_answer(self, message: Answered) -> None:
        message.stop()
        if message.sequence == self._search_running:
            self._search_running = None
        if message.sequence != self._sequence:
            # Overtaken by typing meanwhile: nothing of it is shown, the newest goes next.
            if self._search_running is None:
                self._start_newest()
            return
        self._answered = message.sequence
        result = message.result
        table = self.query_one(UnitTable)
        notice = self.query_one("#unit-search-message", Static)
        if result is None:
            self.result = None
            self._rows = {}
            self._fill_table([])
            if table.has_focus:
                self.query_one("#unit-search-query", Input).focus()
            table.display = False
            notice.update(self._t("unit_search.failed"))
            notice.display = True
            self._focus_results = False
            self.refresh_bindings()  # PgUp / PgDn follow the page
            return
        self.result = result
        self._page = result.page
        self._rows = {str(row.id): row for row in result.rows}
        self._fill_table(result.rows)
        pager = self.query_one(Pager)
        pager.pages = result.pages
        pager.page = result.page
        self.query_one("#unit-search-page-line", Static).update(
            self._t(
                "units.page_line",
                size=result.page_size,
                page=result.page,
                pages=result.pages,
                total=result.total,
            )
        )
        empty = not result.rows
        notice.update(self._t("unit_search.empty") if empty else "")
        notice.display = empty
        if empty and table.has_focus:
            self.query_one("#unit-search-query", Input).focus()
        table.display = not empty
        if self._focus_results and not empty:
            table.focus()
        self._focus_results = False
        self.refresh_bindings()  # PgUp / PgDn follow the page

    def _fill_table(self, units: list[UnitRow]) -> None:
        """Show ``units``. Column widths are set explicitly: DataTable's own measuring
        happens later, on idle, and a frame drawn before it keeps the old (header-wide)
        columns, which cut off names. A page whose columns are as wide as the last
        one's (most pages: codes and counties are fixed) only replaces the rows."""
        cells = [
            (plain_cell(unit.county), plain_cell(unit.code), plain_cell(unit.name))
            for unit in units
        ]
        table = self.query_one(UnitTable)
        headers = [
            Text(self._t(label), end="")
            for label in (
                "unit_search.column_county",
                "unit_search.column_code",
                "unit_search.column_name",
            )
        ]
        widths = [
            max([header.cell_len, *(row[index].cell_len for row in cells)])
            for index, header in enumerate(headers)
        ]
        widths[0] = max(widths[0], COUNTY_WIDTH)
        widths[1] = max(widths[1], CODE_WIDTH)
        if widths != self._widths or not table.columns:
            self._widths = widths
            table.clear(columns=True)
            for key, header, width in zip(("county", "code", "name"), headers, widths, strict=True):
                table.add_column(header, width=width, key=key)
        else:
            table.clear()
        for unit, row in zip(units, cells, strict=True):
            table.add_row(*row, key=str(unit.id))

    # ------------------------------------------------------------------ events

    @on(Input.Changed, "#unit-search-query")
    def _query_changed(self, event: Input.Changed) -> None:
        self._query = event.value
        self._search(1)

    @on(Input.Submitted, "#unit-search-query")
    @on(Button.Pressed, "#unit-search-submit")
    def _submit(self, event: Input.Submitted | Button.Pressed) -> None:
        event.stop()
        self._query = self.query_one("#unit-search-query", Input).value
        self._focus_results = True
        self._search(1)

    @on(Select.Changed, "#unit-search-county")
    def _county_changed(self, event: Select.Changed) -> None:
        county = event.value if isinstance(event.value, str) and event.value else None
        if county != self._county:
            self._county = county
            self._search(1)

    @on(Pager.PageChosen)
    def _page_chosen(self, event: Pager.PageChosen) -> None:
        event.stop()
        self._search(event.page)

    @on(DataTable.RowSelected, "#unit-search-table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        row = self._rows.get(str(event.row_key.value))
        if row is not None:
            self.dismiss(row)

    # ------------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("previous_page", "next_page"):
            counties = self.query("#unit-search-county").results(Select)
            if any(select.expanded for select in counties):
                return False  # the open county list pages itself
            if self.result is None:
                return None
            if action == "previous_page":
                return True if self._page > 1 else None
            return True if self._page < self.result.pages else None
        return True

    def action_previous_page(self) -> None:
        if self._page > 1:
            self._search(self._page - 1)

    def action_next_page(self) -> None:
        if self.result is not None and self._page < self.result.pages:
            self._search(self._page + 1)

    def action_focus_results(self) -> None:
        table = self.query_one(UnitTable)
        if table.display and table.row_count:
            table.focus()

    def action_cancel(self) -> None:
        self.dismiss(None)
