"""The login screen end to end with the demo cards (in-process virtual cards)."""

from __future__ import annotations

import pytest
from cryptography import x509
from textual.widgets import Button, Input, Label, Static

from card.identity import identity_from_certificate
from card.sim.virtual import FaultyCard
from models.schema import Account, CardBinding
from smis_tui.app import SmisApp
from smis_tui.core.clock import taiwan_date
from smis_tui.core.rocdate import to_roc
from smis_tui.demo import virtual_card
from smis_tui.screens.application_status import ApplicationStatusDialog
from smis_tui.screens.home import HomeScreen
from smis_tui.screens.new_account import NewAccountScreen
from smis_tui.screens.person_id_prompt import PersonIdPrompt
from smis_tui.services.card_runtime import DEMO_READER
from smis_tui.widgets.dialogs import MessageDialog
from tests.tui.conftest import Demo, card, insert, kiosk, kiosk_app, log_in, press, remove, settle


def status(app: SmisApp) -> str:
    return str(app.login_screen.query_one("#card-status", Label).render())


async def test_active_officer_logs_in_and_logs_out_by_pulling_the_card(demo: Demo) -> None:
    async with kiosk(demo) as pilot:
        await log_in(pilot, "moica")
        app = pilot.app
        assert isinstance(app.screen, HomeScreen)
        assert "王小明" in app.export_screenshot()
        remove(app.cards)
        await pilot.pause()
        assert app.screen is app.login_screen
        assert status(app) == "請插入卡片"


async def test_wrong_pin_says_how_many_tries_are_left(demo: Demo) -> None:
    async with kiosk(demo) as pilot:
        await log_in(pilot, "moica", pin="000000")
        screen = pilot.app.screen
        assert (
            str(screen.query_one("#pin-error", Label).render()) == "✖ 卡片密碼錯誤，尚可嘗試 2 次"
        )
        assert screen.query_one("#pin", Input).value == ""


async def test_pending_applicant_gets_the_seed_message_and_the_hint(demo: Demo) -> None:
    async with kiosk(demo) as pilot:
        await log_in(pilot, "moica2")
        assert isinstance(pilot.app.screen, ApplicationStatusDialog)
        shot = pilot.app.export_screenshot()
        assert "登入失敗，員工檔無資料或帳號未啟用" in shot
        assert "申請審核中，無須再次申請" in shot


async def test_disabled_account_ok_opens_the_application_with_the_id(demo: Demo) -> None:
    services = demo[0]
    async with kiosk(demo) as pilot:
        disabled = await log_in(pilot, "hpc2")
        app = pilot.app
        assert isinstance(app.screen, MessageDialog)
        shot = app.export_screenshot()
        assert "您的帳號已停用，請點選「確定」重新申請帳號。" in shot
        # The manual's sentence as it is, then one line with the cause.
        assert (
            "停用原因：超過&#160;180&#160;天未登入" in shot or "停用原因：超過 180 天未登入" in shot
        )
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, NewAccountScreen)
        typed = app.screen.query_one("#person-id", Input).value
        account = services.accounts.find_by_person_id(typed)
        assert account is not None and account.name == disabled.holder


async def test_expired_card_is_named_before_the_pin(demo: Demo) -> None:
    async with kiosk(demo) as pilot:
        insert(pilot.app.cards, card(demo[2], "expired"))
        await settle(pilot)
        text = status(pilot.app)
        assert "張雅婷" in text and "到期" in text
        assert pilot.app.login_screen.query_one("#login", Button).disabled


async def test_login_screen_snapshot_source_is_the_real_screen(demo: Demo) -> None:
    async with kiosk(demo) as pilot:
        await pilot.pause()
        shot = pilot.app.export_screenshot()
        for text in ("使用者登入", "醫事人員卡", "自然人憑證", "請插入卡片", "登入", "新帳號申請"):
            assert text in shot


async def test_home_lists_granted_roles_per_subsystem(demo: Demo) -> None:
    async with kiosk(demo) as pilot:
        await log_in(pilot, "moica")
        app = pilot.app
        assert isinstance(app.screen, HomeScreen)
        shot = app.export_screenshot()
        for text in ("已核准的權限", "個人防護裝備", "承辦人", "流感抗病毒藥劑", "瀏覽者", "登出"):
            assert text in shot
        await pilot.press("f10")
        await pilot.pause()
        assert app.screen is app.login_screen


async def test_a_new_card_asks_the_id_once_then_logs_in(demo: Demo) -> None:
    services = demo[0]
    account = Account.get(Account.name == card(demo[2], "moica").holder)
    CardBinding.delete().where(CardBinding.account == account.id).execute()
    async with kiosk(demo) as pilot:
        await log_in(pilot, "moica")
        app = pilot.app
        assert isinstance(app.screen, PersonIdPrompt)
        app.screen.query_one("#person-id", Input).value = "A123456788"
        await pilot.press("enter")
        await pilot.pause()
        assert "檢查碼" in app.export_screenshot()  # a wrong ID is refused at once
        app.screen.query_one("#person-id", Input).value = services.accounts.person_id_of(account)
        await press(pilot, "enter")
        assert isinstance(app.screen, HomeScreen)
    assert CardBinding.select().where(CardBinding.account == account.id).count() == 1


def _login_with(user: str):  # type: ignore[no-untyped-def]
    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await log_in(pilot, user)

    return run_before


def test_home_snapshot(snap_compare, demo: Demo) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(kiosk_app(demo), terminal_size=(100, 30), run_before=_login_with("moica"))


def test_disabled_dialog_snapshot(snap_compare, demo: Demo) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(kiosk_app(demo), terminal_size=(100, 30), run_before=_login_with("hpc2"))


async def test_a_card_pulled_out_during_login_leaves_nothing_behind(demo: Demo) -> None:
    runtime = demo[1]
    officer = card(demo[2], "moica")
    slow = FaultyCard(virtual_card(runtime.demo_pki, officer), "slow", after=3, seconds=1.0)
    async with kiosk(demo) as pilot:
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
        app = pilot.app
        assert app.screen is app.login_screen
        assert len(app.screen_stack) == 2  # the default screen and the login screen
        assert status(app) == "請插入卡片"


async def test_enter_twice_logs_in_once(demo: Demo) -> None:
    officer = card(demo[2], "moica")
    async with kiosk(demo) as pilot:
        insert(demo[1], officer)
        await settle(pilot)
        await press(pilot, *officer.pin, "enter", "enter")
        assert isinstance(pilot.app.screen, HomeScreen)
        assert not any(isinstance(s, MessageDialog) for s in pilot.app.screen_stack)


async def leave_home(pilot, key: str) -> SmisApp:  # type: ignore[no-untyped-def]
    """Log in with 王小明's card, then leave the home screen with ``key``."""
    await log_in(pilot, "moica")
    app = pilot.app
    assert isinstance(app.screen, HomeScreen)
    await press(pilot, key)
    assert app.screen is app.login_screen
    return app


async def test_logging_out_with_the_card_in_reads_it_again(demo: Demo) -> None:
    async with kiosk(demo) as pilot:
        app = await leave_home(pilot, "f10")
        assert card(demo[2], "moica").holder in status(app)
        assert not app.login_screen.query_one("#login", Button).disabled
        assert app.clipboard == ""


async def test_f4_takes_the_demo_card_out_from_home(demo: Demo) -> None:
    async with kiosk(demo) as pilot:
        app = await leave_home(pilot, "f4")
        assert status(app) == "請插入卡片"


async def test_the_card_kind_follows_the_card_and_demo_cards_are_inserted_by_button(
    demo: Demo,
) -> None:
    from smis_tui.widgets.choice_line import ChoiceLine

    async with kiosk(demo) as pilot:
        await pilot.pause()
        screen = pilot.app.login_screen
        assert screen.query_one("#card-kind", ChoiceLine).value == "hpc"  # the default
        # 王小明's card is a 自然人憑證: pressing its demo button inserts it.
        index = next(i for i, c in enumerate(demo[2]) if c.user == "moica")
        screen.query_one(f"#demo-card-{index}", Button).press()
        await settle(pilot)
        assert "王小明" in status(pilot.app)
        assert screen.query_one("#card-kind", ChoiceLine).value == "moica"
        assert screen.query_one("#pin", Input).has_focus


async def test_a_card_expiring_within_a_month_logs_in_and_home_says_when(demo: Demo) -> None:
    async with kiosk(demo) as pilot:
        await log_in(pilot, "expiring")
        app = pilot.app
        assert isinstance(app.screen, HomeScreen)
        notice = str(app.screen.query_one("#home-card-expiry", Static).render())
        pem = (app.cards.demo_pki / "users" / "expiring.pem").read_bytes()  # type: ignore[operator]
        last_day = to_roc(taiwan_date(x509.load_pem_x509_certificate(pem).not_valid_after_utc))
        assert f"民國 {last_day} 到期" in notice
        assert "自然人憑證管理中心" in notice and "19 天" in notice
        await pilot.press("f10")
        await pilot.pause()
        await log_in(pilot, "moica")  # the next person's card is far from its end
        assert isinstance(app.screen, HomeScreen)
        assert not app.screen.query("#home-card-expiry")


async def test_an_organisation_card_is_refused_before_the_pin(demo: Demo) -> None:
    async with kiosk(demo) as pilot:
        insert(pilot.app.cards, card(demo[2], "org"))
        await settle(pilot)
        text = status(pilot.app)
        assert "不是個人憑證" in text and "請使用醫事人員卡或自然人憑證" in text
        assert pilot.app.login_screen.query_one("#login", Button).disabled


async def test_a_card_that_cannot_log_in_takes_no_pin_and_says_where_to_go(demo: Demo) -> None:
    async with kiosk(demo) as pilot:
        insert(pilot.app.cards, card(demo[2], "expired"))  # a 自然人憑證
        await settle(pilot)
        pin = pilot.app.login_screen.query_one("#pin", Input)
        assert pin.disabled
        assert "自然人憑證管理中心" in status(pilot.app)
        await pilot.press("1", "2", "enter")
        assert pin.value == ""
        remove(pilot.app.cards)
        await settle(pilot)
        insert(pilot.app.cards, card(demo[2], "moica"))
        await settle(pilot)
        assert not pin.disabled and pin.has_focus


async def test_no_account_says_how_to_apply(demo: Demo) -> None:
    """A valid card nobody has applied with: the seed's message, then where to go."""
    async with kiosk(demo) as pilot:
        newcomer = await log_in(pilot, "newcomer")
        prompt = pilot.app.screen
        assert isinstance(prompt, PersonIdPrompt)
        pem = (pilot.app.cards.demo_pki / "users" / f"{newcomer.user}.pem").read_bytes()
        prompt.query_one("#person-id", Input).value = identity_from_certificate(pem).id_hint
        await press(pilot, "enter")
        dialog = pilot.app.screen
        assert isinstance(dialog, MessageDialog)
        assert dialog.message == (
            "登入失敗，員工檔無資料或帳號未啟用\n尚未申請帳號者，請按 F2 新帳號申請。"
        )


async def test_applying_again_after_a_disable_goes_with_the_login_card(demo: Demo) -> None:
    """您的帳號已停用 → 確定 → the application is sent with the card that just logged
    in: no second card check."""
    from smis_tui.screens.application_form import ApplicationFormScreen
    from tests.tui.test_application_form import VALID, fill
    from tests.tui.test_new_account import choose_unit

    services = demo[0]
    async with kiosk(demo, (100, 90)) as pilot:
        disabled = await log_in(pilot, "hpc2")
        await press(pilot, "enter")
        assert isinstance(pilot.app.screen, NewAccountScreen)
        await choose_unit(pilot, "金門縣衛生局")
        form = pilot.app.screen
        assert isinstance(form, ApplicationFormScreen)
        # The card proved the holder: what they sent last time is filled in.
        assert form.query_one("#input-name", Input).value == disabled.holder
        assert form.query_one("#input-email", Input).value == "hpc2@demo.example.tw"
        fill(form, phone=VALID["phone"])
        await pilot.click("#role-ppe-officer")
        await pilot.click("#consent-agree")
        await pilot.click("#form-submit")
        await settle(pilot)
        assert isinstance(pilot.app.screen, MessageDialog)
        assert "已送出申請，請等待審核通過。" in pilot.app.export_screenshot()
    account = Account.get(Account.name == disabled.holder)
    assert account.status == "pending"
    assert services.accounts.view(account.id).pending()[0].unit_name == "金門縣衛生局"


# ----------------------------------------------------------------------- the demo's keys


def footer_keys(app: SmisApp) -> list[tuple[str, str]]:
    """The keys on the key bar of the screen on top, with what they say."""
    from smis_tui.widgets.bars import KeyBar

    return [(key.display, key.description) for key in app.screen.query_one(KeyBar).keys]


async def test_the_demo_login_footer_lists_f4_and_f5_and_other_screens_do_not(demo: Demo) -> None:
    async with kiosk(demo) as pilot:
        await settle(pilot)
        app = pilot.app
        keys = footer_keys(app)
        assert ("F4", "取出卡片") in keys and ("F5", "插入示範卡片") in keys
        await press(pilot, "f4")  # nothing in the reader: nothing happens
        await press(pilot, "f5")
        assert type(app.screen).__name__ == "DemoCardPicker"
        await press(pilot, "escape")
        await log_in(pilot, "moica")
        assert isinstance(app.screen, HomeScreen)
        # Home's own F5 is 個人資料維護; the demo's keys are not listed there.
        assert not {"取出卡片", "插入示範卡片"} & {text for _, text in footer_keys(app)}
        await press(pilot, "f4")  # still takes the card out from there
        assert app.screen is app.login_screen
        assert status(app) == "請插入卡片"


async def test_without_the_demo_the_login_footer_has_no_card_keys(demo: Demo) -> None:
    services, runtime, _ = demo
    async with SmisApp(services, runtime).run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        keys = footer_keys(pilot.app)
        assert keys and not {"F4", "F5"} & {key for key, _ in keys}


# ----------------------------------------------------------------------- room at 80×24


@pytest.mark.parametrize("language", ["zh_TW", "en"])
@pytest.mark.parametrize("size", [(80, 24), (100, 30)], ids=["80x24", "100x30"])
@pytest.mark.parametrize("scene", ["no card", "card in", "first login", "cards' picker"])
async def test_the_login_screen_and_its_demo_cards_fit(
    demo: Demo, scene: str, size: tuple[int, int], language: str
) -> None:
    """At an SSH terminal's 80×24 as at 100×30: every demo card can be reached (the
    list scrolls), nothing is cut or needs more room than it has."""
    from textual.widgets import Button as ButtonWidget

    from tests.layout import layout_faults

    async with kiosk(demo, size) as pilot:
        await settle(pilot)
        app = pilot.app
        if language == "en":
            await press(pilot, "f3")
        if scene == "card in":
            insert(app.cards, card(demo[2], "moica2"))
        elif scene == "first login":
            await log_in(pilot, "newcomer")  # a new card: its holder's ID is asked
            assert isinstance(app.screen, PersonIdPrompt)
        elif scene == "cards' picker":
            await press(pilot, "f5")
        await settle(pilot)
        for field in app.screen.query(Input):
            field.cursor_blink = False
        assert layout_faults(app.screen) == []
        if scene == "no card":
            last = list(app.screen.query(".demo-card").results(ButtonWidget))[-1]
            last.focus()  # the last card, scrolled to
            await settle(pilot)
            assert layout_faults(app.screen) == []
            assert last.region.intersection(app.screen.region) == last.region
