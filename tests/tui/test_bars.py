"""The title and key bars (smis_tui/widgets/bars.py): a key on the bottom line is
pressed by a click, as on Textual's Footer; the title follows the language."""

from __future__ import annotations

from smis_tui.app import SmisApp
from smis_tui.screens.login import LoginScreen
from smis_tui.screens.new_account import NewAccountScreen
from smis_tui.widgets.bars import KeyBar, TitleBar
from tests.tui.conftest import settle


def _key_x(bar: KeyBar, key: str) -> int:
    """The middle cell of ``key`` on the bar (``KeyBar.keys`` in their drawn order)."""
    line = bar.render()
    plain = str(line)
    start = plain.index(f" {key} ")
    return start + 1


async def test_a_click_on_a_key_presses_it(demo) -> None:  # type: ignore[no-untyped-def]
    services, runtime, cards = demo
    app = SmisApp(services, runtime, demo_cards=cards, kiosk=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        bar = app.screen.query_one(KeyBar)
        assert [shown.display for shown in bar.keys] == ["f2", "f3"]
        await pilot.click(KeyBar, offset=(_key_x(bar, "f2"), 0))
        await settle(pilot)
        assert isinstance(app.screen, NewAccountScreen)

        bar = app.screen.query_one(KeyBar)
        assert "esc" in [shown.display for shown in bar.keys]
        await pilot.click(KeyBar, offset=(_key_x(bar, "esc"), 0))
        await settle(pilot)
        assert isinstance(app.screen, LoginScreen)

        # Between the keys' ends and the right edge: nothing is pressed.
        await pilot.click(KeyBar, offset=(90, 0))
        await settle(pilot)
        assert isinstance(app.screen, LoginScreen)


async def test_the_title_follows_the_language(demo) -> None:  # type: ignore[no-untyped-def]
    services, runtime, cards = demo
    app = SmisApp(services, runtime, demo_cards=cards, kiosk=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert "智慧防疫物資管理資訊系統" in str(app.screen.query_one(TitleBar).render())
        await pilot.press("f3")
        await settle(pilot)
        title = str(app.screen.query_one(TitleBar).render())
        assert "SMIS" in title
        assert "智慧" not in title
        keys = app.screen.query_one(KeyBar).keys
        assert [shown.description for shown in keys] == ["Apply for a new account", "中文"]
