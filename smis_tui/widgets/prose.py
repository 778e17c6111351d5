"""Prose: plain text broken into lines by the rules of Chinese line breaking.

Textual wraps text at any character, so a line may start with ，or 、 . Prose shows
its text through a Visual that breaks it with
:func:`smis_tui.core.linebreak.break_lines` at the width the layout gives and counts
the same lines as its height, so the widget asks for exactly the rows it shows, and
breaks again on every resize or update. The text is never markup and loses its hidden
characters, so it may carry text from users or the database.
"""

from __future__ import annotations

from typing import Literal

from rich.cells import cell_len
from rich.text import Text
from textual.content import Content
from textual.css.styles import RulesMap
from textual.strip import Strip
from textual.style import Style
from textual.visual import RenderOptions, Visual, VisualType
from textual.widgets import Label, Static

from smis_tui.core.linebreak import break_lines
from smis_tui.widgets.safe import strip_controls


def _plain_text(content: VisualType) -> str:
    if isinstance(content, (Text, Content)):
        return strip_controls(content.plain)
    return strip_controls(str(content))


ELLIPSIS = "…"


class BrokenText(Visual):
    """Plain text whose lines are broken by :func:`break_lines` at the width it is
    drawn at; with ``max_lines``, at most that many, the last ending in … where the
    text goes on. ``str()`` is the text as given, without the line breaks."""

    def __init__(self, text: str, max_lines: int | None = None) -> None:
        self.text = text
        self.max_lines = max_lines

    def __str__(self) -> str:
        return self.text

    def lines(self, width: int) -> list[str]:
        lines = break_lines(self.text, width)
        if self.max_lines is None or len(lines) <= self.max_lines:
            return lines
        kept = lines[: self.max_lines]
        last = kept[-1]
        while last and cell_len(last) + cell_len(ELLIPSIS) > width:
            last = last[:-1]
        kept[-1] = last + ELLIPSIS
        return kept

    def get_optimal_width(self, rules: RulesMap, container_width: int) -> int:
        widest = max(cell_len(paragraph) for paragraph in self.text.split("\n"))
        # Wider than the container would cut the text off; narrower, it is broken.
        return min(widest, container_width) if container_width > 0 else widest

    def get_height(self, rules: RulesMap, width: int) -> int:
        return len(self.lines(width))

    def render_strips(
        self, width: int, height: int | None, style: Style, options: RenderOptions
    ) -> list[Strip]:
        broken = Content("\n".join(self.lines(width)))
        return broken.render_strips(width, height, style, options)


# The classes of the screens' error lines (their stylesheets colour them).
ERROR_CLASSES = frozenset(
    {"error", "error-text", "form-error", "person-error", "profile-error-block", "-error"}
)
ERROR_MARK = "✖ "


class Prose(Static):
    """A Static whose text is broken into lines by the rules of Chinese typesetting;
    with ``max_lines``, no more than that many (the last ending in … when cut).

    ``update`` takes a string, or a Rich Text or Content whose plain text is shown
    (their styles are not kept).
    """

    def __init__(
        self,
        text: str | Text = "",
        *,
        markup: Literal[False] = False,
        max_lines: int | None = None,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
        disabled: bool = False,
    ) -> None:
        self.max_lines = max_lines
        super().__init__(
            BrokenText(_plain_text(text), max_lines),
            markup=markup,
            name=name,
            id=id,
            classes=classes,
            disabled=disabled,
        )

    @property
    def text(self) -> str:
        """The text shown, before it is broken into lines (without the error mark)."""
        return str(self.visual)

    def render(self) -> Visual:
        # An error says so by a shape too, not only by its colour: a ✖ before it.
        text = self.text
        if text and self.classes & ERROR_CLASSES:
            return BrokenText(ERROR_MARK + text, self.max_lines)
        return self.visual

    def update(self, content: VisualType = "", *, layout: bool = True) -> None:
        # The number of lines may change with the text, so the layout is always redone.
        super().update(BrokenText(_plain_text(content), self.max_lines), layout=True)


class ProseLabel(Prose, Label):
    """Prose where a Label stood: as wide as its text (up to its container), and found
    by queries for a Label."""

    # Textual takes default styles along the first base class only, so Label's are
    # restated here.
    DEFAULT_CSS = """
    ProseLabel {
        width: auto;
        height: auto;
    }
    """
