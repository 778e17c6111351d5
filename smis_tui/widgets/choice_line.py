"""One of a few options on one line: the login screen's 醫事人員卡 / 自然人憑證.

Drawn as the app's RadioSet draws its buttons (▐●▌ for the chosen one, ▐○▌ for the
others, ▶ in place of ▐ where the keyboard is while focused), but one widget: a RadioSet is a scrollable container
with a widget per button, a fifth of the work before the login screen's first frame
(bench/bench_tui.py). ←/→ (and ↑/↓) choose the previous/next option, a click chooses
the one under the pointer; :class:`ChoiceLine.Changed` is posted either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual import events
from textual.app import RenderResult
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

from smis_tui.widgets.keys_in_order import CHOSEN, EDGE_LEFT, FOCUS_MARK, UNCHOSEN, OwnKeysInOrder

BUTTON_LEFT, BUTTON_RIGHT = EDGE_LEFT, "▌"


class ChoiceLine(OwnKeysInOrder, Widget, can_focus=True):
    BINDINGS = [
        Binding("left,up", "move(-1)", show=False),
        Binding("right,down", "move(1)", show=False),
    ]
    COMPONENT_CLASSES = {
        "choice--button",
        "choice--button-on",
        "choice--label",
        "choice--label-chosen",
    }
    ALLOW_SELECT = False

    value: reactive[str] = reactive("", init=False)

    @dataclass
    class Changed(Message):
        choice_line: ChoiceLine
        value: str

        @property
        def control(self) -> ChoiceLine:
            return self.choice_line

    def __init__(
        self,
        options: Sequence[tuple[str, str]],
        value: str | None = None,
        *,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        """``options``: (value, label) pairs, labels shown as plain text."""
        super().__init__(id=id, classes=classes)
        if not options:
            raise ValueError("a ChoiceLine needs options")
        self.options = tuple(options)
        self.set_reactive(ChoiceLine.value, value if value is not None else options[0][0])

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(value for value, _label in self.options)

    def validate_value(self, value: str) -> str:
        if value not in self.values:
            raise ValueError(f"not an option: {value!r}")
        return value

    def watch_value(self, value: str) -> None:
        self.post_message(self.Changed(self, value))

    def action_move(self, step: int) -> None:
        values = self.values
        index = values.index(self.value)
        self.value = values[(index + step) % len(values)]

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return 1

    def _extents(self, width: int) -> list[tuple[int, int]]:
        """Where each option is drawn on a line ``width`` cells wide: an equal share
        each (the last takes what is left), or more where its label needs it; where
        equal shares would push the last option past the edge, each gets what it
        needs and the room left over is shared out between them."""
        needs = [
            len(BUTTON_LEFT + CHOSEN + BUTTON_RIGHT) + cell_len(f" {label} ")
            for _value, label in self.options
        ]
        share = max(1, width // len(self.options))
        if sum(max(need, share) for need in needs[:-1]) + needs[-1] > width:
            spare = max(0, width - sum(needs)) // len(needs)
            widths = [need + spare for need in needs]
        else:
            widths = [max(need, share) for need in needs]
        extents: list[tuple[int, int]] = []
        start = 0
        for index, option_width in enumerate(widths):
            end = (
                start + option_width
                if index < len(widths) - 1
                else max(width, start + option_width)
            )
            extents.append((start, end))
            start = end
        return extents

    def render(self) -> RenderResult:
        button = self.get_component_rich_style("choice--button")
        button_on = self.get_component_rich_style("choice--button-on")
        label_style = self.get_component_rich_style("choice--label", partial=True)
        chosen_style = self.get_component_rich_style("choice--label-chosen", partial=True)
        background = self.background_colors[1].rich_color
        line = Text(no_wrap=True, overflow="ellipsis", end="")
        extents = self._extents(self.content_region.width)
        for (value, label), (_start, end) in zip(self.options, extents, strict=True):
            chosen = value == self.value
            inner = button_on if chosen else button
            side = Style(color=inner.bgcolor, bgcolor=background)
            # A shape for each state, not only a colour: ● chosen, ○ not, and ▶ where the
            # keyboard is (the chosen option, while the line has the focus).
            if chosen and self.has_focus:
                line.append(FOCUS_MARK, chosen_style)
            else:
                line.append(BUTTON_LEFT, side)
            line.append(CHOSEN if chosen else UNCHOSEN, inner)
            line.append(BUTTON_RIGHT, side)
            line.append(f" {label} ", chosen_style if value == self.value else label_style)
            line.append(" " * (end - line.cell_len))
        return line

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        extents = self._extents(self.content_region.width)
        for (value, _label), (start, end) in zip(self.options, extents, strict=True):
            if start <= offset.x < end:
                self.value = value
                return
