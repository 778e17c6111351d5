"""Textual's DataTable, running its own keys where they arrive (see
smis_tui.widgets.keys_in_order), with the row under the cursor told by a shape. A
module of its own: the login screen, which has no table, does not load Textual's."""

from __future__ import annotations

from typing import Any, TypeVar

from rich.text import Text, TextType
from textual import events, on, widgets
from textual.widgets.data_table import ColumnKey, RowKey

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
