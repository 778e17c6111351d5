"""單位查詢: the modal that picks a unit for 單位/醫事機構代碼.

A 縣市 filter (``[全部]`` and the 22 counties), a 單位名稱 field taking a name or the
beginning of a 醫事機構代碼, 查詢, a table 縣市 / 單位/醫事機構代碼 / 名稱 of 20 units a
page, the pager ``[1] 2 3 … 10 > >>`` and ``【每頁 20 筆 · 第 1 頁 共 259 頁 5165 筆】``.

Results follow the typing, and each search runs off the UI thread
(:meth:`~smis_tui.screens.base.ServiceCalls.call_service`), so the screen never waits
on the database. At most one search runs at a time: typing meanwhile only changes
what is wanted next, asked for the moment the running one answers (no timer, and a
burst of keys never queues a search per key).

Enter on a row, or a click on it, dismisses the screen with that :class:`UnitRow`;
Esc dismisses it with None. Pages change with PgUp / PgDn (from anywhere), Home / End
(first / last page, from the table: in the name field they move the text cursor) and
the pager, by click or from the keyboard: Tab reaches it after 查詢, ←/→ highlight a
label, Enter opens it. The key bar lists the keys of where the focus is. The table
shows its cursor row only while it has the focus, so that while typing no unit looks
chosen.
Unit data is shown as plain text (never markup) with control characters removed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.coordinate import Coordinate
from textual.widgets import Input, Label

from smis_tui.screens import STYLES
from smis_tui.screens.base import KioskDialog
from smis_tui.screens.paged import PagedList
from smis_tui.services.units import DEFAULT_PAGE_SIZE, UnitDirectory, UnitPage, UnitRow
from smis_tui.widgets.bars import KeyBar
from smis_tui.widgets.keys_in_order import Button, Select
from smis_tui.widgets.paged_table import Column, PagedTable, page_keys
from smis_tui.widgets.safe import plain_cell
from smis_tui.widgets.safe_input import SafeInput
from smis_tui.widgets.table import DataTable

ALL_COUNTIES = ""
"""The 縣市 select's value for ``[全部]``."""
# Every county name is three characters; codes are ten digits (narrower than headers).
COUNTY_WIDTH = 6
CODE_WIDTH = 10


class UnitTable(DataTable[Text]):
    """The results table: a single click on a row chooses it (the seed's 點擊單位名稱).

    DataTable itself selects only on a click on the row already under the cursor; this
    handler runs before DataTable's own (subclass first), moves the cursor to the
    clicked row, and DataTable then posts RowSelected for it.

    The cursor row is drawn only while the table has the focus. DataTable draws it
    blurred otherwise, which reads as a unit already chosen while the person types;
    without the cursor that row looks like its neighbours, zebra stripe included (no
    stylesheet rule can do that: the cursor's style replaces the row's background).
    A click focuses the table before its Click arrives, so it still chooses the row.
    """

    def on_mount(self) -> None:
        self.show_cursor = self.has_focus

    def on_focus(self, event: events.Focus) -> None:
        self.show_cursor = True

    def on_blur(self, event: events.Blur) -> None:
        self.show_cursor = False

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


@dataclass(frozen=True, eq=False)
class _Search:
    """One search asked for (compared by identity: asking again searches again)."""

    query: str
    county: str | None
    page: int


class UnitSearchScreen(PagedList, KioskDialog[UnitRow | None]):
    """Pick a unit; dismisses with the chosen :class:`UnitRow`, or None on Esc."""

    CSS_PATH = STYLES / "unit_search.tcss"
    # A search still running after this long (a locked or slow database) no longer holds
    # back the newer ones: they start beside it, and its answer is dropped when it comes.
    OVERTAKE_SECONDS = 0.15

    BINDINGS = [
        Binding("escape", "cancel", "common.cancel", key_display="Esc"),
        *page_keys(
            "common.previous_page", "common.next_page", "pager.first_page", "pager.last_page"
        ),
        Binding("down", "focus_results", show=False),
    ]

    def __init__(
        self,
        directory: UnitDirectory,
        language: str = "zh_TW",
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        name: str | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(language, name=name, id=id)
        self.directory = directory
        self.page_size = page_size
        self.result: UnitPage | None = None
        """The page on display (None until the first answer, or after a failure)."""
        self.paged = PagedTable(
            [
                Column("county", self.tr("common.county"), least=COUNTY_WIDTH),
                Column("code", self.tr("unit_search.column_code"), least=CODE_WIDTH),
                Column("name", self.tr("unit_search.column_name")),
            ],
            line_key="units.page_line",
            empty=self.tr("unit_search.empty"),
            language=language,
            table=UnitTable(id="unit-search-table"),
            focusable_pager=True,
            id="unit-search-list",
        )
        self._query = ""
        self._county: str | None = None
        self._wanted = _Search("", None, 1)
        self._answered = False
        self._asked: _Search | None = None
        self._asked_since = 0.0
        self._rows: dict[str, UnitRow] = {}
        self._focus_results = False

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        counties: list[tuple[Text, str]] = [(Text(self.tr("common.all")), ALL_COUNTIES)]
        counties += [(Text(name), name) for name in self.directory.counties()]
        with Vertical(id="unit-search-dialog") as dialog:
            dialog.border_title = self.tr("unit_search.title")
            with Horizontal(id="unit-search-filters"):
                yield Label(self.tr("common.county"), markup=False, classes="unit-search-label")
                yield Select(
                    counties, value=ALL_COUNTIES, allow_blank=False, id="unit-search-county"
                )
                yield Label(self.tr("unit_search.name"), markup=False, classes="unit-search-label")
                yield SafeInput(
                    placeholder=self.tr("unit_search.placeholder"), id="unit-search-query"
                )
                yield Button(self.tr("common.search"), id="unit-search-submit")
            yield self.paged
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#unit-search-query", Input).focus()
        self._search(1)

    # ------------------------------------------------------------------ searching

    @property
    def is_searching(self) -> bool:
        """True while the newest search (query, county, page) is unanswered."""
        return not self._answered

    def _search(self, page: int) -> None:
        """Want the current query and county's ``page``; ask at once unless a search
        is running (and not stalled)."""
        self.paged.page = page
        self._wanted = _Search(self._query, self._county, page)
        self._answered = False
        stalled = time.monotonic() - self._asked_since > self.OVERTAKE_SECONDS
        if self._asked is None or stalled:
            self._start_newest()

    def _start_newest(self) -> None:
        search = self._asked = self._wanted
        self._asked_since = time.monotonic()
        self.call_service(
            lambda: self.directory.search(search.query, search.county, search.page, self.page_size),
            lambda result: self._answer(search, result),
            group="unit-search",
            failed=lambda _error: self._answer(search, None),
        )

    def _answer(self, search: _Search, result: UnitPage | None) -> None:
        self._asked = None
        if search is not self._wanted:
            self._start_newest()  # overtaken by typing meanwhile: nothing of it is shown
            return
        self._answered = True
        self.result = result
        table = self.paged.table
        if result is None:
            self._rows = {}
            self.paged.show_failure(self.tr("unit_search.failed"))
        else:
            self._rows = {str(row.id): row for row in result.rows}
            self._fill_table(result)
        if table.has_focus and not table.display:
            self.query_one("#unit-search-query", Input).focus()
        elif self._focus_results and table.display:
            table.focus()
        self._focus_results = False

    def _fill_table(self, result: UnitPage) -> None:
        rows = [
            (str(unit.id), (plain_cell(unit.county), plain_cell(unit.code), plain_cell(unit.name)))
            for unit in result.rows
        ]
        self.paged.show_page(result, rows)

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

    @on(DataTable.RowSelected, "#unit-search-table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        row = self._rows.get(str(event.row_key.value))
        if row is not None:
            self.dismiss(row)

    # ------------------------------------------------------------------ actions

    def load_page(self, page: int) -> None:
        self._search(page)

    def action_focus_results(self) -> None:
        table = self.paged.table
        if table.display and table.row_count:
            table.focus()

    def action_cancel(self) -> None:
        self.dismiss(None)
