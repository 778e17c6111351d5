"""The demo cards' list on the login screen and in the F5 picker: the card in the demo
reader is marked, and each card says what its account is now, not only what it was
made to show."""

from __future__ import annotations

from textual.widgets import Button

from smis_tui.app import SmisApp
from smis_tui.screens.demo_picker import DemoCardPicker
from smis_tui.services import Services
from tests.tui.conftest import Demo, card, insert, kiosk, press, remove, settle


def entry(app: SmisApp, user: str) -> Button:
    """The login screen's button of the demo card of PKI user ``user``."""
    index = next(i for i, c in enumerate(app.demo_cards) if c.user == user)
    return app.login_screen.query_one(f"#demo-card-{index}", Button)


def text_of(button: Button) -> str:
    return str(button.label)


def marked(app: SmisApp) -> list[str]:
    """The holders of the login screen's entries marked as in the reader."""
    return [
        text_of(button).removeprefix("●").split()[1]
        for button in app.login_screen.query(".demo-card").results(Button)
        if text_of(button).startswith("●") or button.has_class("-in-reader")
    ]


def decide_all(services: Services, demo_accounts: dict[str, int], user: str, approve: bool) -> None:
    """The demo's 管理者 decides every request of ``user``'s account under review."""
    admin = demo_accounts["hpc"]
    for request in services.accounts.view(demo_accounts[user]).pending():
        if approve:
            services.review.approve(admin, request.id)
        else:
            services.review.reject(admin, request.id, "資料不全")


async def test_the_card_in_the_reader_is_marked_and_named(demo: Demo) -> None:
    services, runtime, cards = demo
    async with kiosk(demo) as pilot:
        app = pilot.app
        await settle(pilot)
        assert marked(app) == []
        insert(runtime, card(cards, "moica2"))
        await settle(pilot)
        pending = entry(app, "moica2")
        assert text_of(pending).startswith("● 333333")
        assert "讀卡機中" in text_of(pending) and pending.has_class("-in-reader")
        assert marked(app) == [card(cards, "moica2").holder]
        # Another card in its place moves the mark; taking it out clears it.
        insert(runtime, card(cards, "expired"))
        await settle(pilot)
        assert marked(app) == [card(cards, "expired").holder]
        remove(runtime)
        await settle(pilot)
        assert marked(app) == []
        assert "讀卡機中" not in app.export_screenshot()


async def test_an_approved_applicants_card_no_longer_says_under_review(
    demo: Demo, demo_accounts: dict[str, int]
) -> None:
    services, runtime, cards = demo
    async with kiosk(demo) as pilot:
        app = pilot.app
        await settle(pilot)
        assert text_of(entry(app, "moica2")).split()[-1] == "申請審核中"
        decide_all(services, demo_accounts, "moica2", approve=True)
        # The next card event reads the accounts again.
        insert(runtime, card(cards, "moica2"))
        await settle(pilot)
        assert text_of(entry(app, "moica2")).split()[-1] == "帳號已啟用"
        # The picker F5 opens says the same, the card in the reader marked.
        await press(pilot, "f5")
        picker = app.screen
        assert isinstance(picker, DemoCardPicker)
        index = list(cards).index(card(cards, "moica2"))
        pick = picker.query_one(f"#demo-pick-{index}", Button)
        assert "帳號已啟用" in text_of(pick) and "申請審核中" not in text_of(pick)
        assert text_of(pick).startswith("●") and pick.has_class("-in-reader")
        others = [b for b in picker.query(".demo-card").results(Button) if b is not pick]
        assert not any(text_of(b).startswith("●") for b in others)


async def test_back_on_the_login_screen_a_rejection_is_shown(
    demo: Demo, demo_accounts: dict[str, int]
) -> None:
    services = demo[0]
    async with kiosk(demo) as pilot:
        app = pilot.app
        await press(pilot, "f2")  # 新帳號申請, while the 管理者 decides elsewhere
        decide_all(services, demo_accounts, "moica2", approve=False)
        await press(pilot, "escape")
        assert app.screen is app.login_screen
        assert text_of(entry(app, "moica2")).split()[-1] == "申請未通過"


async def test_what_the_card_itself_shows_stays(demo: Demo, demo_accounts: dict[str, int]) -> None:
    """An expired card is expired whatever its account is: its label stays."""
    services, runtime, cards = demo
    async with kiosk(demo) as pilot:
        app = pilot.app
        services.accounts.run_maintenance()
        insert(runtime, card(cards, "hpc"))
        await settle(pilot)
        assert text_of(entry(app, "expired")).split()[-1] == "憑證已過期"
        # The demo's 管理者 is still what the card was made to show.
        assert text_of(entry(app, "hpc")).split()[-1] == "疾管署管理者（各類別）"


async def test_in_english_a_changed_account_is_said_in_english(
    demo: Demo, demo_accounts: dict[str, int]
) -> None:
    services, runtime, cards = demo
    decide_all(services, demo_accounts, "moica2", approve=True)
    async with kiosk(demo) as pilot:
        app = pilot.app
        await press(pilot, "f3")
        insert(runtime, card(cards, "moica2"))
        await settle(pilot)
        pending = entry(app, "moica2")
        assert "Account active" in text_of(pending) and "inserted" in text_of(pending)
