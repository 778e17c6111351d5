"""The top and bottom lines of every screen: the title, and the keys of the screen.

They show what Textual's Header and Footer show, each as one widget. The Header is
four widgets (its icon opens the command palette, which the kiosk turns off; its
clock space is empty), the Footer a widget per key, mounted twice on a new screen
(empty until the bindings settle, then again) and again whenever the focused
widget's keys change. Together that was a fifth of the work before the login screen's
first frame (bench/bench_tui.py); here it is a line of text each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual import events
from textual.app import RenderResult
from textual.geometry import Size
from textual.screen import Screen
from textual.widget import Widget


class TitleBar(Widget, can_focus=False):
    """The title and sub-title (``App.format_title``), centred where the Header centres
    them: the screen's own where it sets them (審核 does), else the app's, which follow
    the language. Where both do not fit (an 80-column terminal in English) the title
    is shown alone rather than cut."""

    def on_mount(self) -> None:
        for node in (self.app, self.screen):
            self.watch(node, "title", self._retitle, init=False)
            self.watch(node, "sub_title", self._retitle, init=False)

    def _retitle(self) -> None:
        self.refresh()

    def render(self) -> RenderResult:
        screen, app = self.screen, self.app
        title = screen.title if screen.title is not None else app.title
        sub_title = screen.sub_title if screen.sub_title is not None else app.sub_title
        # format_title assembles Content from the plain strings: no markup is read.
        both = app.format_title(title, sub_title)
        if both.cell_length <= self.content_region.width:
            return both
        return app.format_title(title, "")


FUNCTION_KEY = re.compile(r"f[1-9][0-9]?")


def as_on_the_keyboard(shown: str) -> str:
    """Function keys as the keyboard and every hint in the text name them (F5), not
    in Textual's lower case."""
    return shown.upper() if FUNCTION_KEY.fullmatch(shown) else shown


@dataclass(frozen=True)
class ShownKey:
    key: str
    display: str
    description: str
    enabled: bool


class KeyBar(Widget, can_focus=False):
    """The keys of the screen and its focused widget (``Screen.active_bindings``, those
    with ``show``), one per action, drawn as the Footer draws them. Each description
    is the screen's ``key_description(binding)`` where it has one (bindings carry text
    keys; smis_tui.screens.base.Localised). A click on a key
    presses it, as on the Footer; a disabled key rings the bell."""

    COMPONENT_CLASSES = {"keybar--key", "keybar--description", "keybar--hover"}
    ALLOW_SELECT = False

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.keys: tuple[ShownKey, ...] = ()
        self._hovered: int | None = None

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._keys_updated)
        self._collect(self.screen)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _keys_updated(self, screen: Screen[object]) -> None:
        if self.is_attached and screen is self.screen:
            self._collect(screen)

    def _collect(self, screen: Screen[object]) -> None:
        keys: dict[str, ShownKey] = {}
        describe = getattr(screen, "key_description", None)
        for _node, binding, enabled, _tooltip in screen.active_bindings.values():
            if binding.show and binding.action not in keys:
                keys[binding.action] = ShownKey(
                    binding.key,
                    as_on_the_keyboard(self.app.get_key_display(binding)),
                    describe(binding) if callable(describe) else binding.description,
                    enabled,
                )
        shown = tuple(keys.values())
        if shown != self.keys:
            self.keys = shown
            self._hovered = None
            self.refresh(layout=True)

    @staticmethod
    def _key_text(key: ShownKey) -> str:
        return f" {key.display} "

    @staticmethod
    def _description(key: ShownKey) -> str:
        return f"{key.description} " if key.description else ""

    def _width_of(self, key: ShownKey) -> int:
        return cell_len(self._key_text(key)) + cell_len(self._description(key))

    def _rows(self, width: int) -> list[list[int]]:
        """The keys, by index, on as many lines of ``width`` as they need: a key is
        never split, and never left off because the terminal is narrow."""
        rows: list[list[int]] = [[]]
        used = 0
        for index, key in enumerate(self.keys):
            needed = self._width_of(key)
            if rows[-1] and used + needed > width:
                rows.append([])
                used = 0
            rows[-1].append(index)
            used += needed
        return rows

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self._rows(width))

    def render(self) -> RenderResult:
        key_style = self.get_component_rich_style("keybar--key", partial=True)
        description_style = self.get_component_rich_style("keybar--description", partial=True)
        hover_style = self.get_component_rich_style("keybar--hover", partial=True)
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        for row_number, row in enumerate(self._rows(self.content_region.width)):
            if row_number:
                text.append("\n")
            for index in row:
                shown = self.keys[index]
                extra = Style(dim=not shown.enabled)
                if index == self._hovered:
                    extra += hover_style
                text.append(self._key_text(shown), key_style + extra)
                text.append(self._description(shown), description_style + extra)
        return text

    def _key_at(self, x: int, y: int) -> int | None:
        """Which of ``keys`` is drawn at ``x``, ``y``: worked out from the keys
        themselves, so a click that comes after they changed but before the next paint
        is matched against the keys that paint will show, never against ones that are
        gone."""
        rows = self._rows(self.content_region.width)
        if not 0 <= y < len(rows):
            return None
        end = 0
        for index in rows[y]:
            end += self._width_of(self.keys[index])
            if x < end:
                return index
        return None

    def on_mouse_move(self, event: events.MouseMove) -> None:
        hovered = self._key_at(event.x, event.y)
        if hovered != self._hovered:
            self._hovered = hovered
            self.refresh()

    def on_leave(self, event: events.Leave) -> None:
        if self._hovered is not None:
            self._hovered = None
            self.refresh()

    def on_mouse_down(self, event: events.MouseDown) -> None:
        index = self._key_at(event.x, event.y)
        if index is None:
            return
        shown = self.keys[index]
        if shown.enabled:
            self.app.simulate_key(shown.key)
        else:
            self.app.bell()
