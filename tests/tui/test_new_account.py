"""新帳號申請 from the login screen: ID, 單位查詢, the form; and the update of a
pending application with the applicant's own card (steps 8–12)."""

from __future__ import annotations

from textual.widgets import Input

from card.identity import identity_from_certificate
from models.db import DatabaseUnavailable
from smis_tui.app import SmisApp
from smis_tui.core.identifiers import generate_national_id
from smis_tui.demo import DemoCard, virtual_card
from smis_tui.screens.application_form import ApplicationFormScreen
from smis_tui.screens.card_auth import CardAuthScreen
from smis_tui.screens.new_account import NewAccountScreen
from smis_tui.screens.unit_search import UnitSearchScreen
from smis_tui.services import Services
from smis_tui.services.card_runtime import DEMO_READER
from smis_tui.widgets.dialogs import MessageDialog
from tests.tui.conftest import kiosk, press, prove_with_card, settle
from tests.tui.test_application_form import VALID, fill


async def open_new_account(pilot) -> NewAccountScreen:  # type: ignore[no-untyped-def]
    """新帳號申請 (F2) from the login screen."""
    await press(pilot, "f2")
    screen = pilot.app.screen
    assert isinstance(screen, NewAccountScreen)
    return screen


async def open_application(pilot, person_id: str, query: str) -> None:  # type: ignore[no-untyped-def]
    await open_new_account(pilot)
    pilot.app.screen.query_one("#person-id", Input).value = person_id
    await choose_unit(pilot, query)


async def choose_unit(pilot, query: str, *, confirm: bool = True) -> None:  # type: ignore[no-untyped-def]
    """On 新帳號申請 with the ID typed: 選取, find ``query`` in 單位查詢, then 確定
    (unless not ``confirm``)."""
    app = pilot.app
    app.screen.query_one("#choose-unit").press()
    await settle(pilot)
    assert isinstance(app.screen, UnitSearchScreen)
    app.screen.query_one("#unit-search-query", Input).value = query
    await pilot.pause(0.5)
    await settle(pilot)
    table = app.screen.query_one("#unit-search-table")
    table.focus()
    await pilot.press("enter")
    await settle(pilot)
    assert isinstance(app.screen, NewAccountScreen)
    if confirm:
        app.screen.query_one("#confirm").press()
        await settle(pilot)


async def test_new_application_reaches_the_form_with_the_chosen_unit(demo) -> None:  # type: ignore[no-untyped-def]
    async with kiosk(demo) as pilot:
        await open_application(pilot, generate_national_id("C", 1, 7777777), "金門縣衛生局")
        assert isinstance(pilot.app.screen, ApplicationFormScreen)
        assert pilot.app.screen.unit.name == "金門縣衛生局"


async def test_unit_cannot_be_typed_and_is_required(demo) -> None:  # type: ignore[no-untyped-def]
    async with kiosk(demo) as pilot:
        screen = await open_new_account(pilot)
        assert screen.query_one("#unit-code", Input).disabled
        screen.query_one("#person-id", Input).value = "A123"
        screen.query_one("#confirm").press()
        await settle(pilot)
        shot = pilot.app.export_screenshot()
        assert "請點選「選取」選擇單位" in shot


async def test_pending_application_is_updated_after_the_card_check(demo) -> None:  # type: ignore[no-untyped-def]
    services, runtime, cards = demo
    pending = next(c for c in cards if c.user == "moica2")
    person_id = _person_id_of(services, pending)
    async with kiosk(demo) as pilot:
        await open_application(pilot, person_id, "金門縣衛生局")
        assert isinstance(pilot.app.screen, MessageDialog)
        assert "您有申請中的權限，是否確定更新申請？" in pilot.app.export_screenshot()
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(pilot.app.screen, CardAuthScreen)
        await prove_with_card(pilot, runtime, pending)
        assert isinstance(pilot.app.screen, ApplicationFormScreen)
        assert pilot.app.screen.mode == "update"


def _person_id_of(services: Services, card: DemoCard) -> str:
    from models.schema import Account

    account = Account.get(Account.name == card.holder)
    return services.accounts.person_id_of(account)


def _newcomer(demo) -> tuple[DemoCard, str]:  # type: ignore[no-untyped-def]
    """The demo card of a person with no account yet, and the ID on it."""
    runtime, cards = demo[1], demo[2]
    newcomer = next(c for c in cards if c.user == "newcomer")
    person_id = _newcomer_identity(runtime).id_hint
    assert person_id is not None  # a 醫事人員卡 carries the whole ID
    return newcomer, person_id


def _newcomer_identity(runtime):  # type: ignore[no-untyped-def]
    return identity_from_certificate((runtime.demo_pki / "users" / "newcomer.pem").read_bytes())


async def send_newcomers_form(pilot, newcomer: DemoCard, person_id: str) -> ApplicationFormScreen:  # type: ignore[no-untyped-def]
    """新帳號申請 of the newcomer at 金門縣衛生局, filled in and 送出申請 pressed: the
    form (the card dialog is on top of it now)."""
    await open_application(pilot, person_id, "金門縣衛生局")
    form = pilot.app.screen
    assert isinstance(form, ApplicationFormScreen)
    fill(form, **{**VALID, "name": newcomer.holder})
    await pilot.click("#role-ppe-officer")
    await pilot.click("#consent-agree")
    await pilot.click("#form-submit")
    await settle(pilot)
    return form


async def test_whole_new_application_from_login_back_to_a_cleared_login(demo) -> None:  # type: ignore[no-untyped-def]
    services, runtime, _ = demo
    newcomer, person_id = _newcomer(demo)
    async with kiosk(demo, (100, 90)) as pilot:
        await send_newcomers_form(pilot, newcomer, person_id)
        # 送出申請 asks the applicant's card: the application goes with it.
        assert isinstance(pilot.app.screen, CardAuthScreen)
        assert "新帳號申請" in pilot.app.export_screenshot()
        assert services.accounts.find_by_person_id(person_id) is None
        await prove_with_card(pilot, runtime, newcomer)
        assert isinstance(pilot.app.screen, MessageDialog)
        assert "已送出申請，請等待審核通過。" in pilot.app.export_screenshot()
        await pilot.click("#dialog-ok")
        await settle(pilot)
        assert pilot.app.screen is pilot.app.login_screen
        runtime.demo_backend.remove(DEMO_READER)  # type: ignore[union-attr]
        await settle(pilot)
        assert "請插入卡片" in pilot.app.export_screenshot()
    account = services.accounts.find_by_person_id(person_id)
    assert account is not None and account.status == "pending"
    assert services.accounts.find_by_certificate(_newcomer_identity(runtime).cert_sha256) == account


async def test_another_persons_card_at_submit_sends_nothing(demo) -> None:  # type: ignore[no-untyped-def]
    """Someone types a stranger's ID and name and offers their own card: the dialog
    says the card does not match, and nothing is written."""
    services, runtime, cards = demo
    newcomer, person_id = _newcomer(demo)
    other = next(c for c in cards if c.user == "moica")
    async with kiosk(demo, (100, 90)) as pilot:
        form = await send_newcomers_form(pilot, newcomer, person_id)
        await prove_with_card(pilot, runtime, other)
        assert isinstance(pilot.app.screen, CardAuthScreen)
        assert "此卡片已綁定其他帳號" in pilot.app.export_screenshot()
        await press(pilot, "escape")
        assert pilot.app.screen is form
        assert not form.query_one("#form-submit").disabled
    assert services.accounts.find_by_person_id(person_id) is None


async def test_database_down_at_the_card_check_says_so_plainly_and_keeps_the_form(
    demo, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """The card proved the applicant, then the database failed (a server down, a
    failover): the dialog says nothing was written and to press 確定 again, without the
    driver's words or the server's address, and the form keeps every value."""
    services, runtime, _ = demo
    newcomer, person_id = _newcomer(demo)

    def database_down(*_: object, **__: object) -> int:
        raise DatabaseUnavailable(
            "無法連線資料庫 10.20.30.40:5432,10.20.30.41:5432/smis：server closed the connection"
        )

    monkeypatch.setattr(services.accounts, "apply", database_down)
    async with kiosk(demo, (100, 90)) as pilot:
        form = await send_newcomers_form(pilot, newcomer, person_id)
        typed = {key: form.query_one(f"#input-{key}", Input).value for key in VALID}
        await prove_with_card(pilot, runtime, newcomer)
        assert isinstance(pilot.app.screen, CardAuthScreen)
        shown = pilot.app.export_screenshot()
        assert "資料庫暫時無法使用，這次沒有寫入任何資料" in shown.replace("&#160;", " ")
        assert "10.20.30.40" not in shown and "server closed" not in shown
        await press(pilot, "escape")
        assert pilot.app.screen is form
        assert {key: form.query_one(f"#input-{key}", Input).value for key in VALID} == typed
    assert services.accounts.find_by_person_id(person_id) is None


async def test_pulling_the_card_out_mid_update_saves_nothing(demo) -> None:  # type: ignore[no-untyped-def]
    services, runtime, cards = demo
    pending = next(c for c in cards if c.user == "moica2")
    person_id = _person_id_of(services, pending)
    before = services.accounts.view(services.accounts.find_by_person_id(person_id).id)
    async with kiosk(demo) as pilot:
        await open_application(pilot, person_id, "金門縣衛生局")
        await pilot.press("enter")
        await settle(pilot)
        await prove_with_card(pilot, runtime, pending)
        assert isinstance(pilot.app.screen, ApplicationFormScreen)
        runtime.demo_backend.remove(DEMO_READER)  # type: ignore[union-attr]
        await settle(pilot)
        assert pilot.app.screen is pilot.app.login_screen
    after = services.accounts.view(before.id)
    assert after.version == before.version and after.pending() == before.pending()


def test_new_account_screen_snapshot(snap_compare, demo) -> None:  # type: ignore[no-untyped-def]
    services, runtime, cards = demo

    async def open_it(pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("f2")
        await pilot.pause()

    assert snap_compare(
        SmisApp(services, runtime, demo_cards=cards), terminal_size=(100, 30), run_before=open_it
    )


async def test_with_the_card_already_in_the_reader_the_pin_is_typed_straight_away(demo) -> None:  # type: ignore[no-untyped-def]
    """Step 11 with the 自然人憑證 inserted before: the dialog names it, has chosen its
    kind, and the PIN typed at once (then Enter) proves it."""
    services, runtime, cards = demo
    pending = next(c for c in cards if c.user == "moica2")
    person_id = _person_id_of(services, pending)
    async with kiosk(demo) as pilot:
        await settle(pilot)
        runtime.demo_backend.insert(DEMO_READER, virtual_card(runtime.demo_pki, pending))  # type: ignore[union-attr]
        await settle(pilot)
        await open_application(pilot, person_id, "金門縣衛生局")
        await press(pilot, "enter")  # 確定 on 您有申請中的權限，是否確定更新申請？
        dialog = pilot.app.screen
        assert isinstance(dialog, CardAuthScreen)
        shot = pilot.app.export_screenshot()
        assert pending.holder in shot and "請輸入卡片密碼" in shot
        assert dialog.query_one("#auth-kind").value == "moica"
        await pilot.press(*pending.pin)
        await press(pilot, "enter")
        assert isinstance(pilot.app.screen, ApplicationFormScreen)
        assert pilot.app.screen.mode == "update"


async def test_in_the_demo_a_card_is_inserted_from_inside_the_card_dialog(demo) -> None:  # type: ignore[no-untyped-def]
    """The dialog covers the login screen's demo list: F5 picks a demo card there."""
    from smis_tui.screens.demo_picker import DemoCardPicker

    services, _, cards = demo
    newcomer, person_id = _newcomer(demo)
    async with kiosk(demo, (100, 90)) as pilot:
        await send_newcomers_form(pilot, newcomer, person_id)
        dialog = pilot.app.screen
        assert isinstance(dialog, CardAuthScreen)
        hints = [str(label.render()) for label in dialog.query(".hint")]
        assert "示範：按 F5 選擇示範卡片插入，F4 取出" in hints
        await press(pilot, "f5")
        assert isinstance(pilot.app.screen, DemoCardPicker)
        await pilot.click(f"#demo-pick-{list(cards).index(newcomer)}")
        await settle(pilot)
        assert pilot.app.screen is dialog
        assert newcomer.holder in pilot.app.export_screenshot()
        await pilot.press(*newcomer.pin)
        await press(pilot, "enter")
        assert isinstance(pilot.app.screen, MessageDialog)
    assert services.accounts.find_by_person_id(person_id) is not None


async def test_a_paste_too_long_for_the_field_is_told_not_dropped_silently(demo) -> None:  # type: ignore[no-untyped-def]
    import html

    from textual import events

    from tests.tui.conftest import SIZE, kiosk_app

    async with kiosk_app(demo).run_test(size=SIZE, notifications=True) as pilot:
        screen = await open_new_account(pilot)
        field = screen.query_one("#person-id", Input)
        field.post_message(events.Paste("A" * 5000))
        await settle(pilot)
        assert field.value == ""
        shown = html.unescape(pilot.app.export_screenshot()).replace("\xa0", " ")
        assert "此欄位最多 20 個字，超過的內容未輸入。" in shown


# ----------------------------------------------------------------------- Esc asks first


def _asks_before_leaving(app: SmisApp) -> MessageDialog:
    """The dialog on top asks whether to leave, with 取消 focused: one stray Enter
    keeps what was typed."""
    dialog = app.screen
    assert isinstance(dialog, MessageDialog)
    assert dialog.message == "已填寫的資料尚未送出，確定要離開嗎？"
    assert dialog.focused is not None and dialog.focused.id == "dialog-cancel"
    return dialog


async def test_esc_with_a_typed_id_asks_and_cancel_keeps_it(demo) -> None:  # type: ignore[no-untyped-def]
    async with kiosk(demo) as pilot:
        screen = await open_new_account(pilot)
        screen.query_one("#person-id", Input).focus()
        await pilot.press(*"A123456789")
        await press(pilot, "escape")
        _asks_before_leaving(pilot.app)
        await press(pilot, "enter")  # 取消, focused
        assert pilot.app.screen is screen
        assert screen.query_one("#person-id", Input).value == "A123456789"
        await press(pilot, "escape")
        await pilot.click("#dialog-ok")
        await settle(pilot)
        assert pilot.app.screen is pilot.app.login_screen


async def test_esc_with_a_chosen_unit_asks(demo) -> None:  # type: ignore[no-untyped-def]
    async with kiosk(demo) as pilot:
        screen = await open_new_account(pilot)
        screen.query_one("#choose-unit").press()
        await settle(pilot)
        pilot.app.screen.query_one("#unit-search-query", Input).value = "金門縣衛生局"
        await pilot.pause(0.5)
        await settle(pilot)
        pilot.app.screen.query_one("#unit-search-table").focus()
        await press(pilot, "enter")
        assert pilot.app.screen is screen and screen.unit is not None
        await press(pilot, "escape")
        _asks_before_leaving(pilot.app)
        await press(pilot, "escape")  # Esc in the dialog is 取消 too
        assert pilot.app.screen is screen and screen.unit is not None


async def test_esc_with_nothing_typed_leaves_at_once(demo) -> None:  # type: ignore[no-untyped-def]
    async with kiosk(demo) as pilot:
        await open_new_account(pilot)
        await press(pilot, "escape")
        assert pilot.app.screen is pilot.app.login_screen


async def test_esc_on_the_profile_with_changed_personal_data_asks(demo, demo_accounts) -> None:  # type: ignore[no-untyped-def]
    from smis_tui.screens.profile import ProfileScreen
    from tests.tui.conftest import opened_as

    async with opened_as(demo, ProfileScreen, demo_accounts["moica"]) as (pilot, profile):
        await press(pilot, "escape")  # nothing changed: closes at once
        assert pilot.app.screen is not profile
    async with opened_as(demo, ProfileScreen, demo_accounts["moica"]) as (pilot, profile):
        field = profile.query_one("#input-email", Input)
        loaded = field.value
        field.value = "new@demo.example.tw"
        await press(pilot, "escape")
        _asks_before_leaving(pilot.app)
        await press(pilot, "enter")  # 取消
        assert pilot.app.screen is profile and field.value == "new@demo.example.tw"
        field.value = loaded  # put back as it was loaded: nothing to lose
        await press(pilot, "escape")
        assert pilot.app.screen is not profile
