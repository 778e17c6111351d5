"""The whole account lifecycle at one kiosk, as people meet it, with the demo data:
a CDC administrator approves a pending applicant, who then logs in, disables their own
account, is told so at the next login and applies again."""

from __future__ import annotations

import time

from cryptography import x509
from textual.widgets import Input

from card.identity import identity_from_certificate
from models.schema import AccountStatus, RequestStatus
from smis_tui.app import SmisApp
from smis_tui.screens.application_form import ApplicationFormScreen
from smis_tui.screens.home import HomeScreen
from smis_tui.screens.new_account import NewAccountScreen
from smis_tui.screens.profile import ProfileScreen
from smis_tui.screens.review import ReviewScreen
from smis_tui.screens.unit_search import UnitSearchScreen
from smis_tui.services.card_runtime import DEMO_READER
from smis_tui.widgets.dialogs import MessageDialog
from tests.tui.conftest import card, insert_and_type, settle
from tests.tui.test_application_form import VALID, fill


async def until(pilot, condition, seconds: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.05)
    await settle(pilot)


async def press_ok(pilot) -> str:  # type: ignore[no-untyped-def]
    dialog = pilot.app.screen
    assert isinstance(dialog, MessageDialog), type(dialog)
    message = dialog.message
    await pilot.click("#dialog-ok")
    await settle(pilot)
    return message


async def test_admin_approves_applicant_who_logs_in_disables_and_reapplies(demo) -> None:  # type: ignore[no-untyped-def]
    services, runtime, cards = demo
    admin, applicant = card(cards, "hpc"), card(cards, "moica2")
    account = services.accounts.find_by_certificate(_cert_of(runtime, applicant))
    assert account is not None and account.status == AccountStatus.PENDING
    person_id = services.accounts.person_id_of(account)
    pending = services.accounts.view(account.id).pending()
    assert len(pending) == 2  # 個人防護裝備 管理者, 新興傳染病用藥 管理者(COVID-19)

    app = SmisApp(services, runtime, demo_cards=cards, kiosk=True)
    async with app.run_test(size=(100, 34)) as pilot:
        # 1. The CDC administrator logs in and approves both requests in 審核.
        await insert_and_type(pilot, runtime, admin, admin.pin)
        assert isinstance(app.screen, HomeScreen)
        await pilot.press("f6")
        await until(pilot, lambda: isinstance(app.screen, ReviewScreen) and not app.screen.is_busy)
        review = app.screen
        assert "周怡君" in app.export_screenshot()
        await pilot.press("f2")  # the whole page
        await pilot.press("a")
        await pilot.pause()
        assert "2 筆" in await press_ok(pilot)
        await until(pilot, lambda: not review.is_busy)
        assert all(
            r.status == RequestStatus.APPROVED for r in services.accounts.view(account.id).requests
        )
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
        runtime.demo_backend.remove(DEMO_READER)  # F4 in the demo: the card leaves
        await pilot.pause()
        assert app.screen is app.login_screen

        # 2. The applicant logs in and reaches home with the granted roles.
        await insert_and_type(pilot, runtime, applicant, applicant.pin)
        assert isinstance(app.screen, HomeScreen)
        shot = app.export_screenshot()
        assert "周怡君" in shot and "管理者(COVID-19)" in shot

        # 3. 個人資料維護 → 停用帳號, confirmed: logged out at once.
        await pilot.press("f5")
        await until(pilot, lambda: isinstance(app.screen, ProfileScreen))
        await pilot.press("f5")  # the 停用帳號 tab
        await settle(pilot)
        await pilot.click("#disable")
        await settle(pilot)
        assert "停用" in await press_ok(pilot)
        assert "已停用" in await press_ok(pilot)
        assert app.screen is app.login_screen
        assert services.accounts.view(account.id).status == AccountStatus.DISABLED

        # 4. The card is still in the reader: the next login is told the account is
        #    disabled, and 確定 opens the application with the ID filled in.
        await until(pilot, lambda: app.screen.query_one("#pin", Input).has_focus)
        await pilot.press(*applicant.pin, "enter")
        await until(pilot, lambda: isinstance(app.screen, MessageDialog))
        # The manual's sentence word for word, then why: the applicant gave up the
        # last permission themselves.
        assert await press_ok(pilot) == (
            "您的帳號已停用，請點選「確定」重新申請帳號。\n停用原因：您已自行停用所有系統權限"
        )
        assert isinstance(app.screen, NewAccountScreen)
        assert app.screen.query_one("#person-id", Input).value == person_id

        # 5. ... and applies again: unit, personal data, a role, consent, 送出申請.
        app.screen.query_one("#choose-unit").press()
        await until(pilot, lambda: isinstance(app.screen, UnitSearchScreen))
        app.screen.query_one("#unit-search-query", Input).value = "金門縣衛生局"
        await until(pilot, lambda: not app.screen.is_searching)  # type: ignore[attr-defined]
        app.screen.query_one("#unit-search-table").focus()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, NewAccountScreen))
        app.screen.query_one("#confirm").press()
        await until(pilot, lambda: isinstance(app.screen, ApplicationFormScreen))
        form = app.screen
        fill(form, **VALID)  # type: ignore[arg-type]
        for selector in ("#role-ppe-officer", "#consent-agree", "#form-submit"):
            widget = form.query_one(selector)
            widget.scroll_visible(animate=False)
            await settle(pilot)
            await pilot.click(selector)
        await settle(pilot)
        assert await press_ok(pilot) == "已送出申請，請等待審核通過。"
        assert app.screen is app.login_screen

    again = services.accounts.view(account.id)
    assert again.status == AccountStatus.PENDING
    assert [(r.category_code, r.role) for r in again.pending()] == [("ppe", "officer")]


def _cert_of(runtime, demo_card) -> str:  # type: ignore[no-untyped-def]
    pem = (runtime.demo_pki / "users" / f"{demo_card.user}.pem").read_bytes()
    return identity_from_certificate(x509.load_pem_x509_certificate(pem)).cert_sha256
