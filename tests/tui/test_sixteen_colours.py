"""A 16-colour terminal (TERM=xterm, COLORTERM unset: Rich's "standard" colour system)
shows every colour as the nearest of its 16. Text must stay readable there: no
character whose colour becomes its background's (issue 21)."""

from __future__ import annotations

import pytest
from rich.color import ColorSystem
from rich.segment import Segment
from textual.pilot import Pilot

from tests.tui.conftest import Demo
from tests.tui.test_every_screen import SCENES, _before, scene_app

SCREENS = ("login", "application_form", "review", "home_admin", "account_control")


def unreadable(pilot: Pilot[None]) -> list[str]:
    """The text whose foreground and background are one colour in 16 colours."""
    faults = []
    strips = pilot.app.screen._compositor.render_strips()
    for y, strip in enumerate(strips):
        for segment in strip:
            assert isinstance(segment, Segment)
            style = segment.style
            # Edges and half blocks draw borders and the toggles' sides, not text.
            text = "".join(c for c in segment.text if not 0x2500 <= ord(c) <= 0x259F)
            if not text.strip() or style is None or style.color is None or style.bgcolor is None:
                continue
            fg = style.color.downgrade(ColorSystem.STANDARD).get_truecolor()
            bg = style.bgcolor.downgrade(ColorSystem.STANDARD).get_truecolor()
            if fg == bg and not (style.reverse or style.underline):
                faults.append(f"row {y}: {text.strip()!r}")
    return faults


@pytest.mark.parametrize("theme", ["default", "high-contrast"])
@pytest.mark.parametrize("name", SCREENS)
async def test_readable_in_sixteen_colours(demo: Demo, name: str, theme: str) -> None:
    app = scene_app(demo, name)
    app.apply_theme(theme)
    async with app.run_test(size=(100, 30)) as pilot:
        await _before(SCENES[name], demo, "zh_TW")(pilot)
        assert unreadable(pilot) == []
