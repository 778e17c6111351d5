"""The kiosk of an SSH session: the PIN is typed on the staff member's own computer, in
their card agent, never on the kiosk. The login screen and the identity check show no
PIN field; 登入 asks the staff computer (here: tests.tui.conftest.ScriptedStaffComputer)
and the screen says where to type the PIN, with the session's id, until the card
answers, Esc cancels or the wait runs out."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, Label

from card.errors import CardRemoved
from smis_tui.app import SmisApp
from smis_tui.screens.card_auth import CardAuthScreen
from smis_tui.screens.home import HomeScreen
from smis_tui.screens.login import LoginScreen
from smis_tui.services.accounts import AccountView
from smis_tui.widgets.bars import KeyBar
from smis_tui.widgets.dialogs import MessageDialog
from smis_tui.widgets.prose import ERROR_MARK
from tests.tui.conftest import (
    SIZE,
    Demo,
    ScriptedStaffComputer,
    account_of,
    card,
    insert,
    remote_demo,
    remove,
    settle,
    wait_until,
)
from tests.tui.test_english import assert_english, data_values, screen_text

SESSION_LINE = "工作階段 4711-c0ffee00"
WAITING = "請在您的電腦上輸入卡片密碼"


def remote_app(demo: Demo, pin_timeout: float = 30.0) -> tuple[SmisApp, ScriptedStaffComputer]:
    (services, runtime, cards), staff = remote_demo(demo, pin_timeout)
    return SmisApp(services, runtime, demo_cards=cards), staff


def status(app: SmisApp, selector: str) -> str:
    """The line as shown; a refusal under the PIN after the ✖ that marks it."""
    shown = str(app.screen.query_one(selector, Label).render())
    if selector == "#pin-error" and shown:
        assert shown.startswith(ERROR_MARK), shown
    return shown.removeprefix(ERROR_MARK)


def keys_shown(app: SmisApp) -> list[str]:
    return [key.key for key in app.screen.query_one(KeyBar).keys]


async def card_in(pilot, user: str) -> None:  # type: ignore[no-untyped-def]
    app = pilot.app
    insert(app.cards, card(app.demo_cards, user))
    await settle(pilot)


async def ask_staff_computer(pilot, staff: ScriptedStaffComputer) -> None:  # type: ignore[no-untyped-def]
    """Enter on the login screen (its 登入 has the focus once the card is shown, or
    a refusal was told: the focus moves when the app is next idle)."""
    login = pilot.app.screen.query_one("#login")
    await wait_until(pilot, lambda: login.has_focus and not login.disabled)
    await pilot.press("enter")
    await wait_until(pilot, staff.asking.is_set)


async def test_the_pin_is_typed_at_the_staff_computer_not_here(demo: Demo) -> None:
    app, staff = remote_app(demo)
    async with app.run_test(size=SIZE) as pilot:
        await card_in(pilot, "moica")
        login = app.screen
        assert isinstance(login, LoginScreen)
        assert not login.query_one("#pin", Input).display  # no PIN field at all
        assert not login.query_one("#pin-label", Label).display
        hint = status(app, "#remote-pin")
        assert "按「登入」後，請在您的電腦上輸入卡片密碼" in hint and SESSION_LINE in hint
        assert "escape" not in keys_shown(app)

        await ask_staff_computer(pilot, staff)
        waiting = status(app, "#remote-pin")
        assert waiting.startswith(WAITING) and SESSION_LINE in waiting
        assert "escape" in keys_shown(app)  # Esc 取消, in the key bar
        assert "取消" in screen_text(app)
        await pilot.press("enter")  # pressing again does not ask twice
        await pilot.pause()

        staff.type_pin(card(app.demo_cards, "moica").pin)
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
        assert staff.proofs == 1
        assert card(app.demo_cards, "moica").pin not in screen_text(app)


async def test_esc_cancels_and_enter_asks_again(demo: Demo) -> None:
    app, staff = remote_app(demo)
    async with app.run_test(size=SIZE) as pilot:
        await card_in(pilot, "moica")
        await ask_staff_computer(pilot, staff)
        await pilot.press("escape")
        await settle(pilot)
        assert not staff.asking.is_set()
        assert status(app, "#pin-error") == "已取消：卡片密碼未輸入，未登入"
        assert not status(app, "#remote-pin").startswith(WAITING)
        assert "escape" not in keys_shown(app)
        assert isinstance(app.screen, LoginScreen)

        await ask_staff_computer(pilot, staff)
        assert status(app, "#pin-error") == ""
        staff.type_pin(card(app.demo_cards, "moica").pin)
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)


async def test_nobody_typing_the_pin_ends_the_wait(demo: Demo) -> None:
    app, staff = remote_app(demo, pin_timeout=0.3)
    async with app.run_test(size=SIZE) as pilot:
        await card_in(pilot, "moica")
        await pilot.press("enter")
        await settle(pilot)  # the worker returns once the wait has run out
        assert status(app, "#pin-error") == (
            "等候您在電腦上輸入卡片密碼已逾 0.3 秒，未登入；請重新登入"
        )
        assert isinstance(app.screen, LoginScreen)
        assert not app.screen.query_one("#login").disabled  # 登入 may ask again


async def test_a_wrong_pin_says_the_tries_left_then_where_to_unblock(demo: Demo) -> None:
    app, staff = remote_app(demo)
    async with app.run_test(size=SIZE) as pilot:
        await card_in(pilot, "moica")
        for tries_left in (2, 1):
            await ask_staff_computer(pilot, staff)
            staff.type_pin("000000")
            await settle(pilot)
            assert status(app, "#pin-error") == f"卡片密碼錯誤，尚可嘗試 {tries_left} 次"
            assert app.screen.query_one("#login").has_focus  # Enter asks again
        await ask_staff_computer(pilot, staff)
        staff.type_pin("000000")
        await settle(pilot)
        assert isinstance(app.screen, MessageDialog)
        assert "卡片密碼已鎖住" in screen_text(app) and "自然人憑證管理中心" in screen_text(app)


async def test_the_card_taken_out_while_waiting_withdraws_the_prompt(demo: Demo) -> None:
    app, staff = remote_app(demo)
    async with app.run_test(size=SIZE) as pilot:
        await card_in(pilot, "moica")
        await ask_staff_computer(pilot, staff)
        remove(app.cards)
        await settle(pilot)
        assert not staff.asking.is_set()  # the staff computer's prompt was cancelled
        assert isinstance(app.screen, LoginScreen)
        assert status(app, "#card-status") == "請插入卡片"
        assert (
            not status(app, "#remote-pin").startswith(WAITING) and status(app, "#pin-error") == ""
        )
        assert "escape" not in keys_shown(app)


async def test_a_card_gone_at_the_staff_computer_is_said_so(demo: Demo) -> None:
    """The agent found no card (or another one) when the PIN came: the kiosk says the
    card was removed, and logs nobody in."""
    app, staff = remote_app(demo)
    async with app.run_test(size=SIZE) as pilot:
        await card_in(pilot, "moica")
        await ask_staff_computer(pilot, staff)
        staff.fail(CardRemoved())
        await settle(pilot)
        assert isinstance(app.screen, MessageDialog)
        assert "卡片已被移除，請重新插入卡片" in screen_text(app)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, LoginScreen)
        assert not status(app, "#remote-pin").startswith(WAITING)


async def test_the_remote_login_in_english(demo: Demo) -> None:
    # Long enough that a busy machine still sees the wait before it times out.
    app, staff = remote_app(demo, pin_timeout=1.5)
    data = data_values(demo[2])
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("f3")
        await settle(pilot)
        await card_in(pilot, "moica")
        assert status(app, "#remote-pin") == (
            "Press Log in, then type the card PIN on your own computer\nSession 4711-c0ffee00"
        )
        assert_english(app, data, "remote login")
        await pilot.press("enter")
        await wait_until(pilot, staff.asking.is_set)
        assert status(app, "#remote-pin").startswith("Type the card PIN on your own computer")
        assert_english(app, data, "remote login waiting")
        await settle(pilot)
        assert status(app, "#pin-error").startswith(
            "No card PIN was entered on your computer within 1.5 seconds"
        )
        assert_english(app, data, "remote login timed out")
        await pilot.press("enter")
        await wait_until(pilot, staff.asking.is_set)
        await pilot.press("escape")
        await settle(pilot)
        assert status(app, "#pin-error") == "Cancelled: no card PIN was entered; not logged in"
        await pilot.press("enter")
        await wait_until(pilot, staff.asking.is_set)
        staff.type_pin("000000")
        await settle(pilot)
        assert "Wrong PIN" in screen_text(app)
        assert_english(app, data, "remote login after a wrong PIN")


@pytest.mark.parametrize("language", ["zh_TW", "en"])
async def test_the_identity_check_asks_the_staff_computer_too(
    demo: Demo, tmp_path: Path, language: str
) -> None:
    services = demo[0]
    applicant = account_of(services, tmp_path, "moica2")
    person_id = services.accounts.person_id_for(applicant)
    assert person_id is not None
    app, staff = remote_app(demo)
    async with app.run_test(size=SIZE) as pilot:
        app.set_language(language)
        await card_in(pilot, "moica2")
        answers: list[AccountView | None] = []
        # Step 11: the card proved at the staff computer opens the pending application.
        dialog = CardAuthScreen(
            app.cards,
            language,
            lambda proof: services.accounts.pending_application(proof, person_id),
            reader="示範讀卡機",
        )
        app.push_screen(dialog, answers.append)
        await settle(pilot)
        assert not dialog.query(Input)  # no PIN field
        session = "Session 4711-c0ffee00" if language == "en" else SESSION_LINE
        assert session in status(app, "#auth-remote")
        if language == "en":
            assert_english(app, data_values(demo[2]), "remote identity check")

        await pilot.press("enter")  # 確定 has the focus
        await wait_until(pilot, staff.asking.is_set)
        waiting = "Type the card PIN on your own computer" if language == "en" else WAITING
        assert waiting in status(app, "#auth-remote")
        await pilot.press("escape")  # first Esc: the prompt at the staff computer
        await settle(pilot)
        assert app.screen is dialog and answers == []
        cancelled = "Cancelled" if language == "en" else "已取消"
        assert cancelled in status(app, "#auth-error")

        await pilot.press("enter")
        await wait_until(pilot, staff.asking.is_set)
        staff.type_pin(card(app.demo_cards, "moica2").pin)
        await settle(pilot)
        assert [answer.id if answer else None for answer in answers] == [applicant]


async def test_the_local_kiosk_still_asks_the_pin_here(demo: Demo) -> None:
    async with SmisApp(demo[0], demo[1], demo_cards=demo[2]).run_test(size=SIZE) as pilot:
        await card_in(pilot, "moica")
        assert pilot.app.screen.query_one("#pin", Input).has_focus
        assert not pilot.app.screen.query("#remote-pin")
        assert demo[1].remote_session is None


def test_remote_login_screen_snapshot(snap_compare, demo: Demo) -> None:  # type: ignore[no-untyped-def]
    app, _ = remote_app(demo)

    async def card_shown(pilot) -> None:  # type: ignore[no-untyped-def]
        await card_in(pilot, "moica")

    assert snap_compare(app, terminal_size=SIZE, run_before=card_shown)
