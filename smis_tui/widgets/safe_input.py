"""SafeInput: an Input that never holds control or format characters, and whose
editing keys keep their place among the characters typed around them.

Textual's Input draws its value as it is: a pasted ESC/OSC sequence, a bidi override
or a zero-width character would reach the terminal (or reorder what is shown) while
it sits in the field. Every insertion (typing, paste, programmatic insert) goes
through :meth:`Input.replace`, so the text is cleaned there, the same way
:func:`smis_tui.widgets.safe.strip_controls` cleans what the screens display.

Keys typed ahead (a laggy SSH link or a paste delivers a whole run at once) must land
where they would have landed if typed slowly. Textual handles a printable character
in the focused Input at once, but runs a bound key (Backspace, the arrows, Home, End,
Enter) only after the key has bubbled up to the app, so the characters after it can
overtake it (Textual issue #6605). The field runs its own editing keys where they
arrive, in order; Tab and Shift+Tab are the app's priority keys (smis_tui.app), so
focus moves before the keys after them are handed to a field.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual import events
from textual.binding import Binding
from textual.geometry import Region
from textual.message import Message
from textual.strip import Strip
from textual.widgets import Input

from smis_tui.widgets.safe import strip_controls

# Input's own editing keys and their actions, by key.
EDITING_KEYS: dict[str, str] = {
    binding.key: binding.action for binding in Binding.make_bindings(Input.BINDINGS)
}


class SafeInput(Input):
    @dataclass
    class Refused(Message):
        """Text did not go in (a paste or a key past the field's length): the screen
        says so, rather than the text vanishing without a word."""

        limit: int

    def restricted(self) -> None:
        self.post_message(self.Refused(self.max_length or 0))

    def replace(self, text: str, start: int, end: int) -> None:
        super().replace(strip_controls(text, keep_newlines=False), start, end)

    def render_lines(self, crop: Region) -> list[Strip]:
        # Input puts the terminal's cursor (where an input method such as 注音 opens its
        # candidate window) at the field only when the field is focused or its text
        # cursor moves. A field focused before the first layout (AUTO_FOCUS), or moved
        # after (the screen's size class comes in, the form scrolls, a row above it
        # grows), would leave it behind. Every layout draws the field again, so the
        # cursor follows here, just before the frame with it is written.
        if self.has_focus:
            self.app.cursor_position = self.cursor_screen_offset
        return super().render_lines(crop)

    async def on_key(self, event: events.Key) -> None:
        action = EDITING_KEYS.get(event.key)
        if action is None:
            return  # typing, and keys for the screen: as Textual handles them
        event.stop()
        event.prevent_default()
        await self.run_action(action)
