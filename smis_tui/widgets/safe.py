"""Text from users or the database, made safe to show: never markup, no control or
format characters (escape sequences, bidi overrides, zero-width tricks)."""

from __future__ import annotations

from rich.text import Text

from smis_tui.core.chars import strip_hidden


def strip_controls(value: str, *, keep_newlines: bool = True) -> str:
    return strip_hidden(value, keep_newlines=keep_newlines)


def plain(value: str) -> Text:
    """``value`` as literal text: brackets stay brackets."""
    return Text(strip_controls(value))


def plain_cell(value: object) -> Text:
    """A one-line table cell: literal text, line breaks and tabs as spaces."""
    text = "" if value is None else str(value)
    return Text(strip_controls(text, keep_newlines=False), end="")
