"""Text from users or the database, made safe to show: never markup, no control
characters (which could move the cursor or retitle the terminal)."""

from __future__ import annotations

import unicodedata

from rich.text import Text


def strip_controls(value: str) -> str:
    return "".join(ch for ch in value if ch == "\n" or unicodedata.category(ch) not in ("Cc", "Cf"))


def plain(value: str) -> Text:
    """``value`` as literal text: brackets stay brackets."""
    return Text(strip_controls(value))
