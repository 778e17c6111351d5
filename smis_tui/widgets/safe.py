"""Text from users or the database, made safe to show: never markup, no control or
format characters (escape sequences, bidi overrides, zero-width tricks)."""

from __future__ import annotations

import unicodedata

from rich.text import Text

_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


def strip_controls(value: str, *, keep_newlines: bool = True) -> str:
    kept = []
    for ch in value:
        if ch == "\n" and keep_newlines:
            kept.append(ch)
        elif ch.isspace():
            kept.append(" ")
        elif unicodedata.category(ch) not in _HIDDEN_CATEGORIES:
            kept.append(ch)
    return "".join(kept)


def plain(value: str) -> Text:
    """``value`` as literal text: brackets stay brackets."""
    return Text(strip_controls(value))


def plain_cell(value: object) -> Text:
    """A one-line table cell: literal text, line breaks and tabs as spaces."""
    text = "" if value is None else str(value)
    return Text(strip_controls(text, keep_newlines=False), end="")
