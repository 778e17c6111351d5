"""A paged list: the pager and the page line above a table, or a notice in the table's
place when there is nothing to list (no match, a failed load).

The owner asks for pages and shows what comes back: :meth:`PagedTable.show_page` with
the service's page and the rows as cells, :meth:`PagedTable.show_failure` when the
load failed. A click on the pager, PgUp / PgDn, and Home / End while the table has
the focus (:func:`page_keys`, bound on the screen because the focus is often in a
filter field) post :class:`PagedTable.PageWanted`; the owner loads that page. With
``focusable_pager`` the pager is a Tab stop of its own, worked with its keys
(:class:`~smis_tui.widgets.pager.Pager`). Column widths are measured
here from the cells: DataTable measures its own later, on idle, and a frame drawn
before that keeps the old columns, which cuts names off. Everything shown is plain
text (the owner's cells are :func:`smis_tui.widgets.safe.plain_cell`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from rich.cells import cell_len
from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Static

from smis_tui.text import t
from smis_tui.widgets.keys_in_order import Select
from smis_tui.widgets.pager import Pager
from smis_tui.widgets.prose import Prose
from smis_tui.widgets.table import DataTable, fit_widths, floor_of, room_for_columns

TURN_PAGE = "turn_page"
"""The screen action of PgUp / PgDn; its parameter is the step (-1 or 1)."""
OPEN_END = "open_end"
"""The screen action of Home / End; its parameter is -1 (first page) or 1 (last page)."""


def page_keys(
    previous: str, following: str, first: str | None = None, last: str | None = None
) -> list[Binding]:
    """PgUp / PgDn for a screen's ``turn_page`` action and Home / End for its
    ``open_end``, with these descriptions; Home / End are listed only when given theirs.
    Priority bindings, so that a focused table's own paging and scrolling do not take
    the keys (its Home / End scroll sideways, which a table whose columns fit never
    needs; Ctrl+Home / Ctrl+End still go to its first / last row). Home / End page only
    from the table: in a field they still move the text cursor."""
    return [
        Binding("pageup", f"{TURN_PAGE}(-1)", previous, key_display="PgUp", priority=True),
        Binding("pagedown", f"{TURN_PAGE}(1)", following, key_display="PgDn", priority=True),
        Binding(
            "home",
            f"{OPEN_END}(-1)",
            first or "",
            key_display="Home",
            show=first is not None,
            priority=True,
        ),
        Binding(
            "end",
            f"{OPEN_END}(1)",
            last or "",
            key_display="End",
            show=last is not None,
            priority=True,
        ),
    ]


class PageInfo(Protocol):
    """What a service's page says about itself."""

    @property
    def page(self) -> int: ...

    @property
    def pages(self) -> int: ...

    @property
    def page_size(self) -> int: ...

    @property
    def total(self) -> int: ...


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    least: int = 0
    """At least this wide, whatever the page holds."""
    most: int = 0
    """At most this wide (0: as wide as its widest cell)."""
    floor: int = 0
    """Where it gives way, it keeps at least this many cells (and its header whole)."""


Row = tuple[str, Sequence[Text]]
"""A row's key and its cells, in the order of the columns."""


class PagedTable(Vertical):
    """The pager, the page line, the table and the notice; see the module
    documentation. ``line_key`` is the page line's text key (parameters ``size``,
    ``page``, ``pages``, ``total``); ``empty`` stands in the table's place for a page
    without rows. The columns named in ``give_way`` narrow (:func:`fit_widths`; down to
    their headers) when the columns are wider than the table, and again whenever the
    table's width changes. ``focusable_pager`` makes the pager a Tab stop worked with
    the keyboard."""

    class PageWanted(Message):
        """The pager or a page key asks for ``page``."""

        def __init__(self, paged: PagedTable, page: int) -> None:
            super().__init__()
            self.paged = paged
            self.page = page

        @property
        def control(self) -> PagedTable:
            return self.paged

    def __init__(
        self,
        columns: Sequence[Column],
        *,
        line_key: str,
        empty: str,
        language: str,
        table: DataTable[Text] | None = None,
        give_way: Sequence[str] = (),
        focusable_pager: bool = False,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.columns = tuple(columns)
        self.line_key = line_key
        self.empty = empty
        self.language = language
        self.give_way = tuple(give_way)
        self.table: DataTable[Text] = table or DataTable()
        self.table.cursor_type = "row"
        self.table.zebra_stripes = True
        self.pager = Pager(focusable=focusable_pager)
        self.page_line = Static("", classes="page-line", markup=False)
        self.notice = Prose("", classes="notice", markup=False)
        self.notice.display = False
        self.page = 1
        """The page asked for last, or shown."""
        self.pages: int | None = None
        """How many pages the last answer has; None before it or after a failure."""
        self._widths: list[int] = []
        self._rows: Sequence[Row] = ()
        """The rows on display: laid out again when the table's width changes."""

    def compose(self) -> ComposeResult:
        with Horizontal(classes="paging"):
            yield self.pager
            yield self.page_line
        yield self.table
        yield self.notice

    def on_mount(self) -> None:
        self.show_rows(())  # the headers, before the first answer

    def on_resize(self, event: events.Resize) -> None:
        """A terminal made narrower or wider (an SSH window resized): the columns are
        fitted to the new width, the cursor kept on its row."""
        if self.give_way and self._fitted(self._rows) != self._widths:
            self.show_rows(self._rows, cursor=self.table.cursor_row)

    # ------------------------------------------------------------------ showing

    def show_page(self, info: PageInfo, rows: Sequence[Row], *, cursor: int = 0) -> None:
        """Page ``info.page`` with ``rows``; the cursor on row ``cursor`` (or the last)."""
        self.page, self.pages = info.page, info.pages
        self.pager.pages = info.pages
        self.pager.page = info.page
        self.page_line.update(
            t(
                self.line_key,
                self.language,
                size=info.page_size,
                page=info.page,
                pages=info.pages,
                total=info.total,
            )
        )
        self.show_rows(rows, cursor=cursor)
        self.show_notice("" if rows else self.empty)
        self.screen.refresh_bindings()  # the page keys follow the page

    def show_failure(self, text: str) -> None:
        """No rows and ``text`` in the table's place; no paging until the next page."""
        self.pages = None
        self.show_rows(())
        self.show_notice(text, error=True)
        self.screen.refresh_bindings()

    def show_notice(self, text: str, *, error: bool = False) -> None:
        """``text`` in the table's place, or the table again when ``text`` is empty."""
        self.notice.update(text)
        self.notice.set_class(error, "-error")
        self.notice.display = bool(text)
        self.table.display = not text

    def show_rows(self, rows: Sequence[Row], *, cursor: int = 0) -> None:
        """The rows, in columns as wide as they need. A page whose columns are as wide
        as the last one's only replaces the rows."""
        table = self.table
        self._rows = tuple(rows)
        widths = self._fitted(rows)
        if widths != self._widths or not table.columns:
            self._widths = widths
            table.clear(columns=True)
            for column, width in zip(self.columns, widths, strict=True):
                table.add_column(Text(column.header, end=""), width=width, key=column.key)
        else:
            table.clear()
        for key, cells in rows:
            table.add_row(*cells, key=key)
        if rows and cursor:
            table.move_cursor(row=min(cursor, len(rows) - 1), animate=False)

    def _fitted(self, rows: Sequence[Row]) -> list[int]:
        """Each column's width for ``rows``: as wide as its cells need (within its
        least and most), then fitted to the table."""
        widths = [
            self._width(column, [cells[index] for _, cells in rows])
            for index, column in enumerate(self.columns)
        ]
        if not self.give_way:
            return widths
        floors = [max(floor_of(column.header), column.floor) for column in self.columns]
        keys = [column.key for column in self.columns]
        give_way = [keys.index(key) for key in self.give_way]
        # Before the first layout the table has no width yet: the terminal's is the guess.
        available = room_for_columns(self.table, self.content_region.width or self.app.size.width)
        return fit_widths(widths, floors, give_way, available)

    @staticmethod
    def _width(column: Column, cells: list[Text]) -> int:
        width = max([cell_len(column.header), column.least, *(cell.cell_len for cell in cells)])
        return min(width, column.most) if column.most else width

    @property
    def current_key(self) -> str | None:
        """The key of the row under the cursor; None when the table is empty."""
        if not self.table.row_count:
            return None
        row_key, _ = self.table.coordinate_to_cell_key(self.table.cursor_coordinate)
        return str(row_key.value)

    # ------------------------------------------------------------------ paging

    def turn_allowed(self, parameters: tuple[object, ...]) -> bool | None:
        """For the screen's ``check_action`` of :data:`TURN_PAGE`: False while a list
        is open or the pager has the focus (they page themselves), None (shown dimmed)
        when there is no such page."""
        step = parameters[0] if parameters else 0
        if self.pages is None or not isinstance(step, int):
            return None  # no answer yet (the table may not even be mounted)
        if self.pager.has_focus:
            return False
        if any(select.expanded for select in self.screen.query(Select).results(Select)):
            return False
        return True if 1 <= self.page + step <= self.pages else None

    def turn(self, step: int) -> None:
        """PgUp (-1) / PgDn (1): ask for the page before or after."""
        if self.turn_allowed((step,)):
            self.post_message(self.PageWanted(self, self.page + step))

    def _end_page(self, end: object) -> int | None:
        if self.pages is None or end not in (-1, 1):
            return None
        return 1 if end == -1 else self.pages

    def end_allowed(self, parameters: tuple[object, ...]) -> bool | None:
        """For the screen's ``check_action`` of :data:`OPEN_END`: False unless the table
        has the focus (elsewhere Home / End belong to the field or the pager), None
        (shown dimmed) on that page already."""
        if not self.table.has_focus:
            return False
        page = self._end_page(parameters[0] if parameters else None)
        return None if page is None or page == self.page else True

    def open_end(self, end: int) -> None:
        """Home (-1) / End (1): ask for the first or the last page."""
        page = self._end_page(end)
        if page is not None and self.end_allowed((end,)):
            self.post_message(self.PageWanted(self, page))

    @on(Pager.PageChosen)
    def _page_chosen(self, event: Pager.PageChosen) -> None:
        event.stop()
        self.post_message(self.PageWanted(self, event.page))
