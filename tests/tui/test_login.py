"""The login screen end to end with the demo cards (in-process virtual cards)."""

from __future__ import annotations

from textual.widgets import Button, Input, Label

from card.sim.virtual import FaultyCard
from models.schema import Account, CardBinding
from smis_tui.app import SmisApp
from smis_tui.demo import DemoCard, virtual_card
from smis_tui.screens.home import HomeScreen
from smis_tui.screens.new_account import NewAccountScreen
from smis_tui.screens.person_id_prompt import PersonIdPrompt
from smis_tui.services.card_runtime import DEMO_READER, CardRuntime
from smis_tui.widgets.dialogs import MessageDialog
from tests.tui.conftest import settle


def card(cards: list[DemoCard], user: str) -> DemoCard:
    return next(c for c in cards if c.user == user)


def insert(runtime: CardRuntime, demo_card: DemoCard) -> None:
    assert runtime.demo_backend is not None and runtime.demo_pki is not None
    runtime.demo_backend.insert(DEMO_READER, virtual_card(runtime.demo_pki, demo_card))


def remove(runtime: CardRuntime) -> None:
    assert runtime.demo_backend is not None
    runtime.demo_backend.remove(DEMO_READER)


async def insert_and_type(pilot, runtime: CardRuntime, demo_card: DemoCard, pin: str) -> None:  # type: ignore[no-untyped-def]
    insert(runtime, demo_card)
    await settle(pilot)
    pin_input = pilot.app.screen.query_one("#pin", Input)
    assert pin_input.has_focus  # the card moved the focus to the PIN
    await pilot.press(*pin)
    await pilot.press("enter")
    await settle(pilot)


def kiosk(demo) -> SmisApp:  # type: ignore[no-untyped-def]
    services, runtime, cards = demo
    return SmisApp(services, runtime, demo_cards=cards)


def status(app: SmisApp) -> str:
    return str(app.login_screen.query_one("#card-status", Label).render())


async def test_active_officer_logs_in_and_logs_out_by_pulling_the_card(demo) -> None:  # type: ignore[no-untyped-def]
    services, runtime, cards = demo
    app = kiosk(demo)
    officer = card(cards, "moica")
    async with app.run_test(size=(100, 30)) as pilot:
        await insert_and_type(pilot, runtime, officer, officer.pin)
        assert isinstance(app.screen, HomeScreen)
        assert "王小明" in app.export_screenshot()
        remove(runtime)
        await pilot.pause()
        assert app.screen is app.login_screen
        assert status(app) == "請插入卡片"


async def test_wrong_pin_says_how_many_tries_are_left(demo) -> None:  # type: ignore[no-untyped-def]
    services, runtime, cards = demo
    app = kiosk(demo)
    async with app.run_test(size=(100, 30)) as pilot:
        await insert_and_type(pilot, runtime, card(cards, "moica"), "000000")
        error = str(app.screen.query_one("#pin-error", Label).render())
        assert error == "卡片密碼錯誤，尚可嘗試 2 次"
        assert app.screen.query_one("#pin", Input).value == ""


async def test_pending_applicant_gets_the_seed_message_and_the_hint(demo) -> None:  # type: ignore[no-untyped-def]
    services, runtime, cards = demo
    app = kiosk(demo)
    pending = card(cards, "moica2")
    async with app.run_test(size=(100, 30)) as pilot:
        await insert_and_type(pilot, runtime, pending, pending.pin)
        assert isinstance(app.screen, MessageDialog)
        shot = app.export_screenshot()
        assert "登入失敗，員工檔無資料或帳號未啟用" in shot
        assert "申請審核中，無須再次申請" in shot


async def test_disabled_account_ok_opens_the_application_with_the_id(demo) -> None:  # type: ignore[no-untyped-def]
    services, runtime, cards = demo
    app = kiosk(demo)
    disabled = card(cards, "hpc2")
    async with app.run_test(size=(100, 30)) as pilot:
        await insert_and_type(pilot, runtime, disabled, disabled.pin)
        assert isinstance(app.screen, MessageDialog)
        assert "您的帳號已停用，請點選「確定」重新申請帳號。" in app.export_screenshot()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, NewAccountScreen)
        typed = app.screen.query_one("#person-id", Input).value
        account = services.accounts.find_by_person_id(typed)
        assert account is not None and account.name == disabled.holder


async def test_expired_card_is_named_before_the_pin(demo) -> None:  # type: ignore[no-untyped-def]
    services, runtime, cards = demo
    app = kiosk(demo)
    expired = card(cards, "expired")
    async with app.run_test(size=(100, 30)) as pilot:
        insert(runtime, expired)
        await settle(pilot)
        text = status(app)
        assert "張雅婷" in text and "到期" in text
        assert app.login_screen.query_one("#login", Button).disabled


async def test_login_screen_snapshot_source_is_the_real_screen(demo) -> None:  # type: ignore[no-untyped-def]
    services, runtime, cards = demo
    app = kiosk(demo)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        shot = app.export_screenshot()
        for text in ("使用者登入", "醫事人員卡", "自然人憑證", "請插入卡片", "登入", "新帳號申請"):
            assert text in shot


async def test_home_lists_granted_roles_per_subsystem(demo) -> None:  # type: ignore[no-untyped-def]
    services, runtime, cards = demo
    app = kiosk(demo)
    officer = card(cards, "moica")
    async with app.run_test(size=(100, 30)) as pilot:
        await insert_and_type(pilot, runtime, officer, officer.pin)
        assert isinstance(app.screen, HomeScreen)
        shot = app.export_screenshot()
        for text in ("已核准的權限", "個人防護裝備", "承辦人", "流感抗病毒藥劑", "瀏覽者", "登出"):
            assert text in shot
        await pilot.press("f10")
        await pilot.pause()
        assert app.screen is app.login_screen


async def test_a_new_card_asks_the_id_once_then_logs_in(demo) -> None:  # type: ignore[no-untyped-def]
    services, runtime, cards = demo
    officer = card(cards, "moica")
    account = Account.get(Account.name == officer.holder)
    CardBinding.delete().where(CardBinding.account == account.id).execute()
    app = SmisApp(services, runtime, demo_cards=cards)
    async with app.run_test(size=(100, 30)) as pilot:
        await insert_and_type(pilot, runtime, officer, officer.pin)
        assert isinstance(app.screen, PersonIdPrompt)
        app.screen.query_one("#person-id", Input).value = "A123456788"
        await pilot.press("enter")
        await pilot.pause()
        assert "檢查碼" in app.export_screenshot()  # a wrong ID is refused at once
        app.screen.query_one("#person-id", Input).value = services.accounts.person_id_of(account)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
    assert CardBinding.select().where(CardBinding.account == account.id).count() == 1


def _login_with(user: str):  # type: ignore[no-untyped-def]
    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        app = pilot.app
        demo_card = next(c for c in app.demo_cards if c.user == user)
        app.cards.demo_backend.insert(DEMO_READER, virtual_card(app.cards.demo_pki, demo_card))
        await settle(pilot)
        await pilot.press(*demo_card.pin, "enter")
        await settle(pilot)

    return run_before


def test_home_snapshot(snap_compare, demo) -> None:  # type: ignore[no-untyped-def]
    services, runtime, cards = demo
    app = kiosk(demo)
    assert snap_compare(app, terminal_size=(100, 30), run_before=_login_with("moica"))


def test_disabled_dialog_snapshot(snap_compare, demo) -> None:  # type: ignore[no-untyped-def]
    services, runtime, cards = demo
    app = kiosk(demo)
    assert snap_compare(app, terminal_size=(100, 30), run_before=_login_with("hpc2"))


async def test_a_card_pulled_out_during_login_leaves_nothing_behind(demo) -> None:  # type: ignore[no-untyped-def]
    services, runtime, cards = demo
    app = kiosk(demo)
    officer = card(cards, "moica")
    slow = FaultyCard(virtual_card(runtime.demo_pki, officer), "slow", after=3, seconds=1.0)
    async with app.run_test(size=(100, 30)) as pilot:
        insert(runtime, officer)
        await settle(pilot)
        runtime.demo_backend.insert(DEMO_READER, slow)  # type: ignore[union-attr]
        await settle(pilot)
        await pilot.press(*officer.pin, "enter")
        await pilot.pause(0.1)
        remove(runtime)
        await settle(pilot)
        await pilot.pause(1.2)
        await settle(pilot)
        assert app.screen is app.login_screen
        assert len(app.screen_stack) == 2  # the default screen and the login screen
        assert status(app) == "請插入卡片"


async def test_enter_twice_logs_in_once(demo) -> None:  # type: ignore[no-untyped-def]
    services, runtime, cards = demo
    app = kiosk(demo)
    officer = card(cards, "moica")
    async with app.run_test(size=(100, 30)) as pilot:
        insert(runtime, officer)
        await settle(pilot)
        await pilot.press(*officer.pin, "enter", "enter")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
        assert not any(isinstance(s, MessageDialog) for s in app.screen_stack)


async def test_logging_out_with_the_card_in_reads_it_again(demo) -> None:  # type: ignore[no-untyped-def]
    services, runtime, cards = demo
    app = kiosk(demo)
    officer = card(cards, "moica")
    async with app.run_test(size=(100, 30)) as pilot:
        await insert_and_type(pilot, runtime, officer, officer.pin)
        assert isinstance(app.screen, HomeScreen)
        await pilot.press("f10")
        await settle(pilot)
        assert app.screen is app.login_screen
        assert officer.holder in status(app)
        assert not app.login_screen.query_one("#login", Button).disabled
        assert app.clipboard == ""


async def test_f4_takes_the_demo_card_out_from_home(demo) -> None:  # type: ignore[no-untyped-def]
    services, runtime, cards = demo
    app = kiosk(demo)
    officer = card(cards, "moica")
    async with app.run_test(size=(100, 30)) as pilot:
        await insert_and_type(pilot, runtime, officer, officer.pin)
        assert isinstance(app.screen, HomeScreen)
        await pilot.press("f4")
        await settle(pilot)
        assert app.screen is app.login_screen
        assert status(app) == "請插入卡片"


async def test_the_card_kind_follows_the_card_and_demo_cards_are_inserted_by_button(demo) -> None:  # type: ignore[no-untyped-def]
    from smis_tui.widgets.choice_line import ChoiceLine

    services, runtime, cards = demo
    app = kiosk(demo)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        screen = app.login_screen
        assert screen.query_one("#card-kind", ChoiceLine).value == "hpc"  # the default
        # 王小明's card is a 自然人憑證: pressing its demo button inserts it.
        index = next(i for i, c in enumerate(cards) if c.user == "moica")
        screen.query_one(f"#demo-card-{index}", Button).press()
        await settle(pilot)
        assert "王小明" in status(app)
        assert screen.query_one("#card-kind", ChoiceLine).value == "moica"
        assert screen.query_one("#pin", Input).has_focus
