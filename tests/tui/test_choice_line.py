"""ChoiceLine (the login screen's 醫事人員卡 / 自然人憑證): the arrow keys and a click
choose, the choice is announced, and labels are shown as typed."""

from __future__ import annotations

from textual.app import App, ComposeResult

from smis_tui.app import STYLES
from smis_tui.widgets.choice_line import ChoiceLine


class Host(App[None]):
    CSS_PATH = [STYLES / "widgets.tcss"]

    def __init__(self) -> None:
        super().__init__()
        self.changes: list[str] = []

    def compose(self) -> ComposeResult:
        yield ChoiceLine([("hpc", "醫事人員卡"), ("moica", "[b]自然人憑證[/b]")], id="kind")

    def on_choice_line_changed(self, message: ChoiceLine.Changed) -> None:
        self.changes.append(message.value)


async def test_arrow_keys_choose_and_wrap_around() -> None:
    app = Host()
    async with app.run_test(size=(60, 5)) as pilot:
        line = app.query_one(ChoiceLine)
        line.focus()
        assert line.value == "hpc"
        await pilot.press("right")
        assert line.value == "moica"
        await pilot.press("right")  # past the last: back to the first
        assert line.value == "hpc"
        await pilot.press("up")
        assert line.value == "moica"
        await pilot.pause()
        assert app.changes == ["moica", "hpc", "moica"]


async def test_a_click_chooses_the_option_under_the_pointer() -> None:
    app = Host()
    async with app.run_test(size=(60, 5)) as pilot:
        line = app.query_one(ChoiceLine)
        # Border and padding: the content starts 2 cells in; each option has half.
        await pilot.click(ChoiceLine, offset=(2 + line.content_region.width // 2 + 3, 1))
        assert line.value == "moica"
        await pilot.click(ChoiceLine, offset=(4, 1))
        assert line.value == "hpc"
        await pilot.pause()
        assert app.changes == ["moica", "hpc"]


async def test_labels_are_shown_as_typed() -> None:
    app = Host()
    async with app.run_test(size=(60, 5)) as pilot:
        await pilot.pause()
        assert "[b]自然人憑證[/b]" in app.export_screenshot()
