"""Kiosk behaviour: idle timeout with its countdown, the operator key, the language."""

from __future__ import annotations

import re

from textual.widgets import Input, Static

from smis_tui.app import SmisApp
from smis_tui.screens.home import HomeScreen
from smis_tui.screens.login import LoginScreen
from smis_tui.screens.new_account import NewAccountScreen
from smis_tui.widgets.idle import IdleWarning
from tests.tui.conftest import Demo, kiosk_app, log_in, settle

CJK = re.compile(r"[\u3400-\u9fff\uff00-\uffef\u3000-\u303f]")


def timed_app(demo: Demo, timeout: int = 2, *, kiosk: bool = True) -> SmisApp:
    """The demo app whose idle timeout is ``timeout`` seconds."""
    app = kiosk_app(demo, kiosk=kiosk)
    app.settings = app.settings.with_overrides(idle_timeout_seconds=timeout)
    return app


async def wait_for(pilot, condition, seconds: float = 6.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(seconds / 0.1)):
        if condition():
            return
        await pilot.pause(0.1)
    raise AssertionError("timed out")


async def test_idle_kiosk_counts_down_then_clears_everything_back_to_login(demo) -> None:  # type: ignore[no-untyped-def]
    app = timed_app(demo, timeout=4)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("f2")  # 新帳號申請
        await settle(pilot)
        assert isinstance(app.screen, NewAccountScreen)
        await pilot.press(*"A123456789")
        await wait_for(pilot, lambda: isinstance(app.screen, IdleWarning))
        countdown = str(app.screen.query_one("#idle-countdown", Static).render())
        assert "秒後將回到登入畫面" in countdown
        await wait_for(pilot, lambda: app.screen is app.login_screen)
        await settle(pilot)
        assert app.screen_stack[-1] is app.login_screen and len(app.screen_stack) == 2
        # A new application starts empty: nothing of the last person's typing is left.
        await pilot.press("f2")
        await settle(pilot)
        assert all(not field.value for field in app.screen.query(Input))


async def test_a_key_during_the_countdown_keeps_the_session(demo) -> None:  # type: ignore[no-untyped-def]
    app = timed_app(demo, timeout=600)
    async with app.run_test(size=(100, 30)) as pilot:
        await log_in(pilot, "moica")
        assert isinstance(app.screen, HomeScreen)
        app.settings = app.settings.with_overrides(idle_timeout_seconds=4)
        await wait_for(pilot, lambda: isinstance(app.screen, IdleWarning))
        await pilot.press("space")
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)
        # ... and it does count again from then on: the session ends later, not never.
        await wait_for(pilot, lambda: app.screen is app.login_screen, seconds=8)


async def test_an_idle_empty_login_screen_shows_no_countdown(demo) -> None:  # type: ignore[no-untyped-def]
    app = timed_app(demo, timeout=2)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.pause(3)
        assert app.screen is app.login_screen


async def test_an_idle_ssh_session_ends(demo) -> None:  # type: ignore[no-untyped-def]
    # Logged in first with time to spare (a busy machine may take seconds to log in),
    # then idle for 2 s.
    app = timed_app(demo, timeout=600, kiosk=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await log_in(pilot, "moica")
        app.settings = app.settings.with_overrides(idle_timeout_seconds=2)
        await wait_for(pilot, lambda: app.exit_line or not app.is_running, seconds=6)
    assert app.return_code == 0
    assert app.exit_line == "閒置逾時，連線已結束。"


async def test_only_the_operator_key_ends_a_kiosk(demo) -> None:  # type: ignore[no-untyped-def]
    app = timed_app(demo, timeout=60)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+q")
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert app.is_running and app.screen is app.login_screen
        await pilot.press(app.settings.operator_key)
        await pilot.pause()
    assert app.return_code == 0


async def test_ctrl_q_still_quits_outside_kiosk_mode(demo) -> None:  # type: ignore[no-untyped-def]
    app = timed_app(demo, timeout=60, kiosk=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert not app.is_running


def _interface_text(app: SmisApp, data: list[str]) -> str:
    """The screen's text (from the SVG screenshot) without the values that came from
    the database."""
    text = re.sub(r"<[^>]+>", "", app.export_screenshot()).replace("&#160;", " ")
    for value in data:
        text = text.replace(value, "")
    return text


async def test_language_switch_at_login_and_back_to_the_default_after_logout(demo) -> None:  # type: ignore[no-untyped-def]
    cards = demo[2]
    app = timed_app(demo, timeout=60)
    data = [c.holder for c in cards] + [c.label for c in cards]
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("f3")
        await settle(pilot)
        assert isinstance(app.screen, LoginScreen) and app.screen.language == "en"
        # Everything is English but the data and the way back, which names 中文 itself.
        shot = _interface_text(app, data).replace("中文", "")
        assert "Login" in shot or "Log in" in shot
        assert not CJK.search(shot), CJK.findall(shot)
        # The account applied in zh-TW: after login its own language is used ...
        await log_in(pilot, "moica")
        assert isinstance(app.screen, HomeScreen) and app.screen.language == "zh_TW"
        # ... and after logout the kiosk greets the next person in its default language.
        await pilot.press("f10")
        await settle(pilot)
        assert app.screen is app.login_screen and app.login_screen.language == "zh_TW"
        assert app.language == "zh_TW"


async def test_an_account_keeps_its_own_language_for_the_next_login(demo) -> None:  # type: ignore[no-untyped-def]
    services = demo[0]
    app = timed_app(demo, timeout=60)
    async with app.run_test(size=(100, 30)) as pilot:
        officer = await log_in(pilot, "moica")
        assert isinstance(app.screen, HomeScreen) and app.screen.language == "zh_TW"
        account_id = app.screen.view.id
        await pilot.press("f3")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen) and app.screen.language == "en"
        assert "Log&#160;out" in app.export_screenshot()
        assert services.accounts.view(account_id).language == "en"
        # The next person meets the kiosk in zh-TW; this account gets English again.
        await pilot.press("f10")
        await settle(pilot)
        assert app.login_screen.language == "zh_TW"
        await pilot.press(*officer.pin, "enter")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen) and app.screen.language == "en"
