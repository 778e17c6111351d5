"""The high-contrast theme (issue 21): F9 on the login screen, kept as the account's
own like its language, the kiosk's own again for the next person."""

from __future__ import annotations

from models.schema import Account
from smis_tui.screens.home import HomeScreen
from smis_tui.themes import DEFAULT_THEME, HIGH_CONTRAST
from tests.tui.conftest import Demo, kiosk, kiosk_app, log_in, remove, settle


def theme_of(account_id: int) -> str:
    return str(Account.get_by_id(account_id).theme)


async def wait_for(pilot, condition) -> None:  # type: ignore[no-untyped-def]
    for _ in range(100):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("not within 5 s")


async def test_high_contrast_chosen_at_login_stays_with_the_account(
    demo: Demo, demo_accounts: dict[str, int]
) -> None:
    account = demo_accounts["hpc"]
    async with kiosk(demo) as pilot:
        await settle(pilot)
        assert pilot.app.theme == DEFAULT_THEME
        await pilot.press("f9")
        await settle(pilot)
        assert pilot.app.theme == HIGH_CONTRAST.name
        await log_in(pilot, "hpc")
        await settle(pilot)
        assert isinstance(pilot.app.screen, HomeScreen)
        assert pilot.app.theme == HIGH_CONTRAST.name  # not switched back by the login
        await wait_for(pilot, lambda: theme_of(account) == "high-contrast")

        # The next person meets the kiosk's own colours.
        remove(pilot.app.cards)
        await settle(pilot)
        assert pilot.app.theme == DEFAULT_THEME

        # The account's own, at its next login.
        await log_in(pilot, "hpc")
        await settle(pilot)
        assert pilot.app.theme == HIGH_CONTRAST.name

        # Switched back on home: saved for the next time as well.
        await pilot.press("f9")
        await wait_for(pilot, lambda: theme_of(account) == "default")
        assert pilot.app.theme == DEFAULT_THEME


async def test_the_operator_sets_the_kiosks_theme(demo: Demo) -> None:
    services = demo[0]
    settings = services.settings.with_overrides(theme="high-contrast")
    app = kiosk_app(demo)
    app.settings = settings
    app.apply_theme(settings.theme)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert pilot.app.theme == HIGH_CONTRAST.name
