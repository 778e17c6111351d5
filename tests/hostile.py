"""Hostile text for the abuse tests: Rich markup, ANSI/OSC escape
sequences, C0/C1 controls, bidi overrides, zero-width and combining characters, NULs
and long strings, as fixed lists and as hypothesis strategies.

`make test` runs few examples; ``HYPOTHESIS_PROFILE=stress`` (`make stress`) many more.
"""

from __future__ import annotations

import os
import re
import unicodedata

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

STRESS = os.environ.get("HYPOTHESIS_PROFILE") == "stress"


def examples(n: int) -> settings:
    """Hypothesis settings for ``n`` examples (twenty times as many under stress)."""
    return settings(
        max_examples=n * 20 if STRESS else n,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
    )


ESC = "\x1b"
MARKUP = [
    "[bold red]x[/]",
    "[link=https://evil.example/]click[/link]",
    "[/]",
    "[@click=app.quit]quit[/]",
    "[on red]" * 20,
    "[b]unclosed",
    r"\[escaped]",
]
ESCAPES = [
    f"{ESC}[31mred{ESC}[0m",
    f"{ESC}[2J{ESC}[H",  # clear screen, home
    f"{ESC}]52;c;{'aGVsbG8='}\x07",  # OSC 52: write the clipboard
    f"{ESC}]8;;https://evil.example/{ESC}\\link{ESC}]8;;{ESC}\\",  # OSC 8 hyperlink
    f"{ESC}]0;title\x07",
    f"{ESC}P1$r{ESC}\\",  # DCS
    "\x9b31m",  # C1 CSI
    "\x9d0;t\x9c",  # C1 OSC … ST
    f"{ESC}c",  # full reset
]
CONTROLS = ["\x00", "\x07", "\x08", "\r", "\t", "\x0b", "\x0c", "\x7f", "\x85", "\u2028", "\u2029"]
BIDI = [chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))]
ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\ufeff", "\u2060", "\u00ad"]
COMBINING = ["\u0301", "\u0336", "\u20dd", "e\u0301" * 30]

NASTY: list[str] = [
    *MARKUP,
    *ESCAPES,
    "A12345678\x009",
    "王\u202e小明",
    "A1\u200b23456789",
    "\x00" * 5,
    "x" * 4000,
    "王" * 2000,
    "[bold]" + f"{ESC}[31m" + "\u202e" + "\u200b" + "\u0301" + "\x00" + "[/bold]",
    "%s%n{0}{name}",
    "'; DROP TABLE account; --",
    "%_!",
]

_pieces = st.sampled_from(MARKUP + ESCAPES + CONTROLS + BIDI + ZERO_WIDTH + COMBINING)
_plainish = st.text(
    alphabet=st.sampled_from("AZaz09@.-#()[]/=\\王明衛生所 "), min_size=0, max_size=12
)
hostile_text: st.SearchStrategy[str] = st.one_of(
    st.lists(st.one_of(_pieces, _plainish), min_size=1, max_size=12).map("".join),
    st.text(max_size=40),  # any code point, surrogates excluded by hypothesis
    st.builds(lambda s, n: s * n, st.sampled_from(NASTY[:12]), st.integers(1, 200)),
    st.sampled_from(NASTY),
)

# What no text shown on the screen or the terminal may contain.
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co"})


def _invisible(ch: str) -> bool:
    """Control, format (bidi, zero-width), surrogate or private-use; or unassigned,
    unless it lies in the ideographic planes 2 and 3 (U+20000–U+3FFFD), where Unicode
    keeps adding the rare ideographs of real names that this Python's Unicode database
    may not know yet (docs/architecture.md, "Screens")."""
    category = unicodedata.category(ch)
    if category in _HIDDEN:
        return True
    if category != "Cn":
        return False
    code = ord(ch)
    return not (0x20000 <= code <= 0x3FFFD) or code in (0x2FFFE, 0x2FFFF)


def hidden_chars(text: str, *, allow: str = "\n") -> list[str]:
    """The characters of ``text`` a person cannot see, except those in ``allow``."""
    return [f"U+{ord(ch):04X}" for ch in text if ch not in allow and _invisible(ch)]


# Control sequences a terminal would act on, as they would appear in the raw output.
RAW_ESCAPE = re.compile(r"\x1b|\x9b|\x9d|\x90|\x9c|\x07")
