"""The app starts on the services it is handed and shows its first screen."""

from __future__ import annotations

from textual.widgets import DataTable, Static

from models.db import open_database
from smis_tui.app import SmisApp
from smis_tui.config import Settings
from smis_tui.demo import DemoCard
from smis_tui.services import build_services

CARDS = [
    DemoCard("moica", "已啟用的承辦人", "王小明", "moica", "222222"),
    DemoCard("x", "markup test", "[bold]林[/bold]", "hpc", "123456"),
]


def _app(settings: Settings, cards: list[DemoCard] | None = None) -> SmisApp:
    open_database(settings.database_url, settings.sqlite_path)
    return SmisApp(build_services(settings), demo_cards=cards or [])


async def test_placeholder_screen_shows_the_system_name(sqlite_settings: Settings) -> None:
    app = _app(sqlite_settings)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        title = app.screen.query_one("#placeholder-title", Static)
        assert "智慧防疫物資管理資訊系統" in str(title.render())
        assert app.sub_title == "帳號申請 / 重啟 / 登入"
        assert not app.screen.query("#demo-cards")


async def test_demo_cards_and_pins_are_listed_as_plain_text(sqlite_settings: Settings) -> None:
    app = _app(sqlite_settings, CARDS)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#demo-cards", DataTable)
        rows = [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]
        assert rows[0] == ["222222", "王小明", "已啟用的承辦人"]
        assert rows[1][1] == "[bold]林[/bold]"
        # Rendered literally, not interpreted as markup.
        assert "[bold]林[/bold]" in app.export_screenshot()


def test_placeholder_snapshot(snap_compare, sqlite_settings: Settings) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(_app(sqlite_settings, CARDS[:1]), terminal_size=(100, 30))
