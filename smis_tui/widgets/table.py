"""Textual's DataTable, running its own keys where they arrive (see
smis_tui.widgets.keys_in_order), with the row under the cursor told by a shape, and
the fitting of a table's columns to its width. A module of its own: the login screen,
which has no table, does not load Textual's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from rich.cells import cell_len
from rich.text import Text, TextType
from textual import events, on, widgets
from textual.widgets.data_table import ColumnKey, CursorType, RowKey

from smis_tui.widgets.keys_in_order import FOCUS_MARK, OwnKeysInOrder

CellType = TypeVar("CellType")

MARKER_COLUMN = "row-marker"
"""The key of the first column of a table whose cursor is a row: it holds
:data:`FOCUS_MARK` on the row under the cursor while the table has the focus,
:data:`CHOSEN_ROW_MARK` there while it has not, and nothing on the other rows, so that
a monochrome or 16-colour terminal, or a colour-blind reader, still sees which row is
chosen and whether the keyboard is on it (the cursor's background is a colour only)."""
CHOSEN_ROW_MARK = "▷"
MARKER_WIDTH = 1


GIVE_WAY_FLOOR = 4
"""A column that gives way keeps at least this many cells (or its header's width)."""
SCROLLBAR_ROOM = 2
"""Cells kept free for the table's vertical scrollbar, whether or not one shows."""
CELL_PADDING = 2
"""Cells a table column takes beside its width (DataTable's padding either side)."""


def fit_widths(
    widths: Sequence[int], floors: Sequence[int], give_way: Sequence[int], available: int
) -> list[int]:
    """``widths`` narrowed until the columns (with their padding) fit ``available``
    cells. Of the columns ``give_way`` lists (by index), the widest narrows first, a
    cell at a time, none below its floor; between equals, the one listed first. So no
    column is squeezed to a stub while another stays whole (審核's 單位 kept two
    characters while 物資類別 and 申請權限 kept all theirs). What cannot fit by then is
    left over: the table scrolls sideways."""
    fitted = list(widths)
    excess = sum(fitted) + CELL_PADDING * len(fitted) - available
    while excess > 0:
        narrowable = [index for index in give_way if fitted[index] > floors[index]]
        if not narrowable:
            break
        widest = max(narrowable, key=lambda index: fitted[index])
        fitted[widest] -= 1
        excess -= 1
    return fitted


def room_for_columns(table: widgets.DataTable[Any], width: int) -> int:
    """Of a table ``width`` cells wide, the cells its owner's columns may take: the
    row marker's column and room for a vertical scrollbar (kept whether or not one
    shows) are left out."""
    marker = MARKER_WIDTH + CELL_PADDING if table.cursor_type == "row" else 0
    return width - SCROLLBAR_ROOM - marker


def floor_of(header: str) -> int:
    """How narrow a column headed ``header`` may get: its header stays whole."""
    return max(cell_len(header), GIVE_WAY_FLOOR)


def _blank() -> Text:
    return Text(" ", end="")


class DataTable(OwnKeysInOrder, widgets.DataTable[CellType]):
    """A row-cursor table starts with the :data:`MARKER_COLUMN`, added with the first
    column; the owner's rows are given without it (``add_row`` puts it in front)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._marked_row: RowKey | None = None
        self._mark = ""

    @property
    def has_marker(self) -> bool:
        return MARKER_COLUMN in self.columns

    def add_column(
        self,
        label: TextType,
        *,
        width: int | None = None,
        key: str | None = None,
        default: CellType | None = None,
    ) -> ColumnKey:
        if self.cursor_type == "row" and not self.columns and key != MARKER_COLUMN:
            super().add_column(Text("", end=""), width=MARKER_WIDTH, key=MARKER_COLUMN)
        return super().add_column(label, width=width, key=key, default=default)

    def add_row(
        self,
        *cells: CellType,
        height: int | None = 1,
        key: str | None = None,
        label: TextType | None = None,
    ) -> RowKey:
        if self.has_marker and len(cells) < len(self.columns):
            cells = (_blank(), *cells)  # type: ignore[arg-type]
        row_key = super().add_row(*cells, height=height, key=key, label=label)
        if self.row_count - 1 == self.cursor_row:
            self._mark_cursor_row()
        return row_key

    def clear(self, columns: bool = False) -> Any:
        self._marked_row = None
        return super().clear(columns=columns)

    # Textual's own focus handlers (which set has_focus) run after a subclass's.
    def on_focus(self, event: events.Focus) -> None:
        self.call_next(self._mark_cursor_row)

    def on_blur(self, event: events.Blur) -> None:
        self.call_next(self._mark_cursor_row)

    def owner_cells(self, row_index: int) -> list[CellType]:
        """The cells of row ``row_index`` as the owner gave them (without the marker)."""
        cells = self.get_row_at(row_index)
        return cells[1:] if self.has_marker else cells

    @on(widgets.DataTable.RowHighlighted)
    def _follow_cursor(self, event: widgets.DataTable.RowHighlighted) -> None:
        # Not stopped: the screen hears of the highlighted row as before.
        if event.data_table is self:
            self._mark_cursor_row()

    def _mark_cursor_row(self) -> None:
        """Move the marker to the row under the cursor (read now, not from a message
        that may be older than the rows)."""
        if not self.has_marker:
            return
        wanted: RowKey | None = None
        if self.row_count and self.cursor_type == "row":
            wanted, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        mark = FOCUS_MARK if self.has_focus else CHOSEN_ROW_MARK
        if wanted == self._marked_row and mark == self._mark:
            return
        if self._marked_row is not None and self._marked_row in self.rows:
            self.update_cell(self._marked_row, MARKER_COLUMN, _blank())  # type: ignore[arg-type]
        if wanted is not None:
            self.update_cell(wanted, MARKER_COLUMN, Text(mark, end=""))  # type: ignore[arg-type]
        self._marked_row, self._mark = wanted, mark


class FittedTable(DataTable[Text]):
    """A small table (no pages) whose columns are as wide as their cells need, the
    columns in ``give_way`` narrowing (:func:`fit_widths`) to the table's width, again
    whenever that width changes; the cursor stays on its row."""

    def __init__(
        self,
        *,
        give_way: Sequence[int] = (),
        cursor_type: CursorType = "row",
        show_cursor: bool = True,
        zebra_stripes: bool = False,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(
            cursor_type=cursor_type,
            show_cursor=show_cursor,
            zebra_stripes=zebra_stripes,
            id=id,
            classes=classes,
        )
        self.give_way = tuple(give_way)
        self._headers: tuple[str, ...] = ()
        self._rows: tuple[tuple[str | None, tuple[Text, ...]], ...] = ()
        self._widths: list[int] = []

    def show(
        self,
        headers: Sequence[str],
        rows: Sequence[tuple[str | None, Sequence[Text]]],
        *,
        cursor: int = 0,
    ) -> None:
        """The columns ``headers`` and the rows (a key, or None, and the cells); the
        cursor on row ``cursor``."""
        self._headers = tuple(headers)
        self._rows = tuple((key, tuple(cells)) for key, cells in rows)
        self._widths = self._fitted()
        self.clear(columns=True)
        for index, (header, width) in enumerate(zip(self._headers, self._widths, strict=True)):
            self.add_column(Text(header, end=""), width=width, key=str(index))
        for key, cells in self._rows:
            self.add_row(*cells, key=key)
        if self._rows and cursor:
            self.move_cursor(row=min(cursor, len(self._rows) - 1), animate=False)

    def _fitted(self) -> list[int]:
        widths = [
            max([cell_len(header), *(cells[index].cell_len for _, cells in self._rows)])
            for index, header in enumerate(self._headers)
        ]
        floors = [floor_of(header) for header in self._headers]
        # Before the first layout the table has no width yet: the terminal's is the guess.
        available = room_for_columns(self, self.size.width or self.app.size.width)
        return fit_widths(widths, floors, self.give_way, available)

    def on_resize(self, event: events.Resize) -> None:
        if self._headers and self._fitted() != self._widths:
            self.show(self._headers, self._rows, cursor=self.cursor_row)
