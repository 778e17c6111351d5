"""Textual's DataTable, running its own keys where they arrive (see
smis_tui.widgets.keys_in_order). A module of its own: the login screen, which has no
table, does not load Textual's."""

from __future__ import annotations

from typing import TypeVar

from textual import widgets

from smis_tui.widgets.keys_in_order import OwnKeysInOrder

CellType = TypeVar("CellType")


class DataTable(OwnKeysInOrder, widgets.DataTable[CellType]):
    pass
