"""SafeInput: an Input that never holds control or format characters.

Textual's Input draws its value as it is: a pasted ESC/OSC sequence, a bidi override
or a zero-width character would reach the terminal (or reorder what is shown) while
it sits in the field. Every insertion (typing, paste, programmatic insert) goes
through :meth:`Input.replace`, so the text is cleaned there, the same way
:func:`smis_tui.widgets.safe.strip_controls` cleans what the screens display.
"""

from __future__ import annotations

from textual.widgets import Input

from smis_tui.widgets.safe import strip_controls


class SafeInput(Input):
    def replace(self, text: str, start: int, end: int) -> None:
        super().replace(strip_controls(text, keep_newlines=False), start, end)
