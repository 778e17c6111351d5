"""The app starts on the services it is handed and shows its first screen."""

from __future__ import annotations

from textual.widgets import Static

from models.db import open_database
from smis_tui.app import SmisApp
from smis_tui.config import Settings
from smis_tui.services import build_services


def _app(settings: Settings) -> SmisApp:
    open_database(settings.database_url, settings.sqlite_path)
    return SmisApp(build_services(settings))


async def test_placeholder_screen_shows_the_system_name(sqlite_settings: Settings) -> None:
    app = _app(sqlite_settings)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        title = app.query_one("#placeholder-title", Static)
        assert "智慧防疫物資管理資訊系統" in str(title.render())
        assert app.sub_title == "帳號申請 / 重啟 / 登入"


def test_placeholder_snapshot(snap_compare, sqlite_settings: Settings) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(_app(sqlite_settings), terminal_size=(100, 30))
