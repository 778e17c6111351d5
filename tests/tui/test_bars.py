"""The title and key bars (smis_tui/widgets/bars.py): a key on the bottom line is
pressed by a click, as on Textual's Footer; the title follows the language."""

from __future__ import annotations

from rich.cells import cell_len

from smis_tui.app import SmisApp
from smis_tui.screens.login import LoginScreen
from smis_tui.screens.new_account import NewAccountScreen
from smis_tui.screens.review import ReviewScreen
from smis_tui.widgets.bars import KeyBar, TitleBar
from tests.tui.conftest import open_as, settle


def _key_x(bar: KeyBar, key: str) -> int:
    """The middle cell of ``key`` on the bar's first line."""
    return _key_at(bar, key)[0]


def _key_at(bar: KeyBar, key: str) -> tuple[int, int]:
    """Where ``key`` is drawn on the bar: (middle cell of its key, line)."""
    for row, line in enumerate(str(bar.render()).split("\n")):
        if f" {key} " in line:
            return cell_len(line[: line.index(f" {key} ")]) + 1, row
    raise LookupError(key)


async def test_a_click_on_a_key_presses_it(demo) -> None:  # type: ignore[no-untyped-def]
    services, runtime, cards = demo
    app = SmisApp(services, runtime, demo_cards=cards, kiosk=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        bar = app.screen.query_one(KeyBar)
        assert [shown.display for shown in bar.keys] == ["F2", "F3", "F9", "F4", "F5"]
        await pilot.click(KeyBar, offset=(_key_x(bar, "F2"), 0))
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
        assert [shown.description for shown in keys] == [
            "Apply for a new account",
            "中文",
            "High contrast",
            "Remove card",
            "Insert a demo card",
        ]


async def test_keys_that_do_not_fit_go_on_a_second_line(demo, demo_accounts) -> None:  # type: ignore[no-untyped-def]
    """審核 at 80 columns: every key is shown, none cut, and a click on the second
    line presses the key drawn there."""
    services, runtime, cards = demo
    app = SmisApp(services, runtime, demo_cards=cards)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await open_as(pilot, services, ReviewScreen, demo_accounts["hpc"])
        bar = app.screen.query_one(KeyBar)
        lines = str(bar.render()).split("\n")
        assert len(lines) == 2 and bar.region.height == 2
        assert all(cell_len(line) <= 80 for line in lines)
        for shown in bar.keys:
            assert f" {shown.display} " in str(bar.render())
        x, row = _key_at(bar, "F5")
        assert row == 1
        await pilot.click(KeyBar, offset=(x, row))
        await settle(pilot)
        assert isinstance(app.screen, ReviewScreen)  # F5 refreshed, nothing else


async def test_the_english_title_alone_where_both_do_not_fit(demo) -> None:  # type: ignore[no-untyped-def]
    services, runtime, cards = demo
    app = SmisApp(services, runtime, demo_cards=cards)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("f3")
        await settle(pilot)
        title = str(app.screen.query_one(TitleBar).render())
        assert title == "SMIS — Epidemic Prevention Supplies Management"
        await pilot.resize_terminal(160, 30)
        await settle(pilot)
        title = str(app.screen.query_one(TitleBar).render())
        assert "Account application / reactivation / login" in title
