"""Widgets that run their own keys where the keys arrive, in order.

Textual hands a key to the focused widget, but runs the widget's key bindings (Enter
on a button, Space on a checkbox, the arrows in a table) only once the key has bubbled
up to the app, and by then a Tab read after it (the app's priority key, so that
characters after a Tab land in the next field: smis_tui.widgets.safe_input) may have
moved the focus. A laggy SSH link or a paste delivers such runs at once, and the Enter
meant for 確定 then pressed what the Tab moved to, a Space meant for 我同意個資聲明事項
pressed 送出申請. These widgets look their own bindings up as the key reaches them and
run them there; every other key goes on as Textual handles it.

Screens import these in place of Textual's (ruff's banned-api list keeps it so); the
table is in smis_tui.widgets.table, so that a screen without one does not load it.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, TypeVar

from textual import events, widgets
from textual.app import RenderResult
from textual.binding import Binding
from textual.content import Content
from textual.geometry import Size
from textual.widget import Widget

if TYPE_CHECKING:
    _MixinBase = Widget
else:
    # Textual reads a widget's CSS type names through its first base that is a
    # DOMNode, so the mixin is a plain class at run time (a Button stays a Button to
    # the stylesheets).
    _MixinBase = object


@cache
def own_key_actions(widget_class: type[object]) -> dict[str, str]:
    """The actions of ``widget_class``'s own (non-priority) bindings, by key; a class's
    binding replaces one of the same key in the classes it is built on."""
    actions: dict[str, str] = {}
    for cls in reversed(widget_class.__mro__):
        for binding in Binding.make_bindings(cls.__dict__.get("BINDINGS", ())):
            if not binding.priority:
                actions[binding.key] = binding.action
    return actions


class OwnKeysInOrder(_MixinBase):
    """Mixin (before the Textual widget): the widget's own bindings run as their key
    arrives."""

    async def on_key(self, event: events.Key) -> None:
        action = own_key_actions(type(self)).get(event.key)
        if action is None:
            return
        if await self.app.run_action(action, self):
            event.stop()
            event.prevent_default()
        # Otherwise the action stood aside (a table already at its last row): the key
        # goes up to the containers around, as Textual would send it.


SelectType = TypeVar("SelectType")


class Button(OwnKeysInOrder, widgets.Button):
    """A button drawn without a frame (compact, or made one row high on a narrow
    screen) has no edges to thicken when focused (see widgets.tcss), so it points at
    itself: ▶ before its label while it has the focus, a blank there otherwise (the
    room is always kept: nothing moves)."""

    @property
    def frameless(self) -> bool:
        return self.compact or self.styles.border_left[0] in ("", "none", "hidden")

    def render(self) -> RenderResult:
        label = super().render()
        if not self.frameless or not isinstance(label, Content):
            return label
        mark = FOCUS_MARK if self.has_focus else " "
        lines = label.split("\n")
        # On the first line; the lines below keep their places under it.
        return Content("\n").join(
            Content(mark if index == 0 else " ") + line for index, line in enumerate(lines)
        )

    def get_content_width(self, container: Size, viewport: Size) -> int:
        width = super().get_content_width(container, viewport)
        return width + len(FOCUS_MARK) if self.frameless else width

    def on_blur(self, event: events.Blur) -> None:
        self.refresh()


# Each state has a shape of its own, not only a colour (a colour-blind person, a
# monochrome or 16-colour terminal): ticked X / empty, chosen ● / open ○, and the
# focused toggle pointed at by ▶ in place of its left edge.
TICKED, UNTICKED = "X", " "
CHOSEN, UNCHOSEN = "●", "○"
FOCUS_MARK = "▶"
EDGE_LEFT = "▐"


class Checkbox(OwnKeysInOrder, widgets.Checkbox):
    @property
    def BUTTON_INNER(self) -> str:  # type: ignore[override]
        return TICKED if self.value else UNTICKED

    @property
    def BUTTON_LEFT(self) -> str:  # type: ignore[override]
        return FOCUS_MARK if self.has_focus else EDGE_LEFT

    def on_focus(self, event: events.Focus) -> None:
        self.refresh()

    def on_blur(self, event: events.Blur) -> None:
        self.refresh()


class RadioButton(widgets.RadioButton):
    @property
    def BUTTON_INNER(self) -> str:  # type: ignore[override]
        return CHOSEN if self.value else UNCHOSEN

    @property
    def BUTTON_LEFT(self) -> str:  # type: ignore[override]
        # The keyboard cursor of a focused RadioSet is on this button.
        parent = self.parent
        focused = self.has_focus or (
            isinstance(parent, widgets.RadioSet)
            and parent.has_focus
            and self.has_class("-selected")
        )
        return FOCUS_MARK if focused else EDGE_LEFT


class RadioSet(OwnKeysInOrder, widgets.RadioSet):
    def on_focus(self, event: events.Focus) -> None:
        for button in self.query(RadioButton):
            button.refresh()

    def on_blur(self, event: events.Blur) -> None:
        for button in self.query(RadioButton):
            button.refresh()


class Select(OwnKeysInOrder, widgets.Select[SelectType]):
    pass
