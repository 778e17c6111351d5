"""No state told by colour alone (issue 21): with colours off (NO_COLOR, as on a
monochrome terminal or for a colour-blind person), the screen's *text* still differs
between chosen and unchosen, ticked and empty, focused and not, an error and none."""

from __future__ import annotations

import pytest
from textual.geometry import Region
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Input

from smis_tui.widgets.choice_line import ChoiceLine
from smis_tui.widgets.keys_in_order import Button, Checkbox, RadioButton, RadioSet
from smis_tui.widgets.prose import ERROR_CLASSES, Prose
from smis_tui.widgets.table import DataTable
from tests.tui.conftest import Demo, kiosk_app, settle
from tests.tui.test_every_screen import (
    SCENES,
    account_control,
    application_form,
    audit_trail,
    scene_app,
)
from tests.tui.test_every_screen import _before as play


@pytest.fixture(autouse=True)
def no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")


def drawn(widget: Widget) -> str:
    """What ``widget`` draws (its border included), as text only: no colour, no style."""
    size = widget.outer_size
    return "\n".join(strip.text for strip in widget.render_lines(Region(0, 0, *size)))


def drawn_all(widget: Widget) -> str:
    """What ``widget`` and everything inside it draw, as text only."""
    return "\n".join(drawn(w) for w in (widget, *widget.walk_children()) if isinstance(w, Widget))


def toggle_line(widget: Widget) -> str:
    """The line of a check box or radio button with its ▐?▌ (inside any border)."""
    return next(line for line in drawn(widget).splitlines() if "▌" in line)


def error_lines(pilot: Pilot[None]) -> list[str]:
    shown = [w for w in pilot.app.screen.query(Prose) if w.display and w.text]
    return [drawn(w) for w in shown if w.classes & ERROR_CLASSES]


async def test_the_card_kind_chosen_and_the_keyboard_on_it_have_shapes(demo: Demo) -> None:
    async with kiosk_app(demo).run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        line = pilot.app.screen.query_one(ChoiceLine)
        line.blur()
        await settle(pilot)
        blurred = drawn(line)
        assert blurred.count("●") == 1 and blurred.count("○") == len(line.options) - 1
        assert "▶" not in blurred
        line.focus()
        await settle(pilot)
        focused = drawn(line)
        assert focused.count("▶") == 1 and focused != blurred
        await pilot.press("right")
        await settle(pilot)
        moved = drawn(line)
        assert moved.count("●") == 1 and moved != focused  # the other option is chosen


async def test_the_role_grid_the_consent_box_and_the_focused_field_have_shapes(
    demo: Demo,
) -> None:
    async with kiosk_app(demo).run_test(size=(100, 30)) as pilot:
        pilot.app.animation_level = "none"
        await application_form(pilot, demo)
        form = pilot.app.screen
        radios = form.query(RadioSet).first()
        chosen = [b for b in radios.query(RadioButton) if b.value]
        others = [b for b in radios.query(RadioButton) if not b.value]
        assert chosen and others
        assert "●" in drawn(chosen[0]) and "○" in drawn(others[0])

        consent = form.query_one("#consent-agree", Checkbox)
        consent.scroll_visible(animate=False)
        await settle(pilot)
        empty = toggle_line(consent)
        consent.value = True
        await settle(pilot)
        ticked = toggle_line(consent)
        assert "▐X▌" in ticked and "▐ ▌" in empty
        consent.focus()
        await settle(pilot)
        assert "▶X▌" in toggle_line(consent)

        # The focused field: heavy edges (one-row fields: a heavy bar), the others not.
        name = form.query(Input).first()
        name.focus()
        name.scroll_visible(animate=False)
        await settle(pilot)
        assert "┏" in drawn(name) or drawn(name).startswith("┃")
        consent.focus()
        await settle(pilot)
        assert "┏" not in drawn(name) and not drawn(name).startswith("┃")


async def test_an_error_is_marked_by_a_sign_not_only_by_its_colour(demo: Demo) -> None:
    async with kiosk_app(demo).run_test(size=(100, 30)) as pilot:
        pilot.app.animation_level = "none"
        await application_form(pilot, demo)
        assert error_lines(pilot) == []
        await pilot.press("f10")  # send the empty form
        await settle(pilot)
        errors = error_lines(pilot)
        assert errors and all(text.strip().startswith("✖ ") for text in errors), errors


def row_lines(table: DataTable[object]) -> list[str]:
    """The table's rows as text, the header line left out."""
    return drawn(table).splitlines()[1 : 1 + table.row_count]


@pytest.mark.parametrize("scene", [account_control, audit_trail])
async def test_the_row_under_the_cursor_is_marked_by_a_shape(demo: Demo, scene: object) -> None:
    async with kiosk_app(demo).run_test(size=(100, 30)) as pilot:
        pilot.app.animation_level = "none"
        await scene(pilot, demo)  # type: ignore[operator]
        await settle(pilot)
        table = next(t for t in pilot.app.screen.query(DataTable) if t.row_count > 1)
        table.focus()
        await settle(pilot)
        lines = row_lines(table)
        marked = [i for i, line in enumerate(lines) if line.lstrip().startswith("▶")]
        assert marked == [table.cursor_row], lines
        await pilot.press("down")
        await settle(pilot)
        lines = row_lines(table)
        marked = [i for i, line in enumerate(lines) if line.lstrip().startswith("▶")]
        assert marked == [table.cursor_row] and table.cursor_row == 1, lines
        table.blur()  # the row stays chosen; the keyboard is elsewhere
        await settle(pilot)
        lines = row_lines(table)
        assert "▶" not in "".join(lines)
        assert [i for i, line in enumerate(lines) if line.lstrip().startswith("▷")] == [1]


async def test_a_frameless_button_points_at_itself_when_focused(demo: Demo) -> None:
    async with kiosk_app(demo).run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        language = pilot.app.screen.query_one("#language", Button)
        apply = pilot.app.screen.query_one("#apply", Button)
        assert language.compact and apply.compact
        language.focus()
        await settle(pilot)
        assert "▶" in drawn(language) and "▶" not in drawn(apply)
        width = language.outer_size.width
        apply.focus()
        await settle(pilot)
        assert "▶" not in drawn(language) and "▶" in drawn(apply)
        assert language.outer_size.width == width  # nothing moves


@pytest.mark.parametrize("name", list(SCENES))
async def test_every_screen_shows_where_the_keyboard_is_without_colour(
    demo: Demo, name: str
) -> None:
    """On every screen, at 80×24 with colours off, each widget the Tab key reaches
    draws differently with the focus and without it: the keyboard's place is a shape."""
    async with scene_app(demo, name).run_test(size=(80, 24)) as pilot:
        await play(SCENES[name], demo, "zh_TW")(pilot)
        screen = pilot.app.screen
        chain = [w for w in screen.focus_chain if w.region.area]
        assert chain, f"{name}: the Tab key reaches nothing"
        unmarked = []
        for widget in chain:
            screen.set_focus(widget, scroll_visible=False)
            await settle(pilot)
            with_focus = drawn_all(widget)
            screen.set_focus(None)
            await settle(pilot)
            if drawn_all(widget) == with_focus:
                unmarked.append(f"{type(widget).__name__}#{widget.id}")
        assert unmarked == [], f"{name}: {unmarked}"
