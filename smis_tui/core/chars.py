"""The one rule for characters a person cannot see.

A character is hidden when it is a control (Cc), a format character (Cf: bidi
overrides, zero-width joiners, the BOM), a surrogate (Cs), private use (Co), a
noncharacter, or unassigned (Cn) outside the ideograph planes.

Why the exception: Taiwanese names use rare ideographs that Unicode keeps adding to
the Supplementary and Tertiary Ideographic Planes (CJK Extensions B to I and later).
A Python built with an older Unicode database reports the newest of them as
unassigned, so refusing every unassigned code point would refuse real names. An
unassigned code point anywhere else has no glyph a clerk could check.
"""

from __future__ import annotations

import unicodedata

_ALWAYS_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co"})
# Planes 2 and 3: every assigned character there is a CJK ideograph.
_IDEOGRAPH_PLANES = range(0x20000, 0x40000)


def is_hidden(ch: str) -> bool:
    category = unicodedata.category(ch)
    if category in _ALWAYS_HIDDEN:
        return True
    if category != "Cn":
        return False
    code = ord(ch)
    is_noncharacter = (code & 0xFFFE) == 0xFFFE or 0xFDD0 <= code <= 0xFDEF
    return is_noncharacter or code not in _IDEOGRAPH_PLANES


def has_hidden(text: str) -> bool:
    return any(is_hidden(ch) for ch in text)


def strip_hidden(text: str, *, keep_newlines: bool = True) -> str:
    """``text`` with hidden characters dropped and other white space made a space."""
    kept = []
    for ch in text:
        if ch == "\n" and keep_newlines:
            kept.append(ch)
        elif ch.isspace():
            kept.append(" ")
        elif not is_hidden(ch):
            kept.append(ch)
    return "".join(kept)
