"""The app starts on the login screen with the services and cards it is handed."""

from __future__ import annotations

from textual.widgets import Button

from models.schema import Account
from smis_tui.app import SmisApp
from smis_tui.demo import DemoCard


async def test_demo_cards_and_pins_are_listed_as_plain_text(demo) -> None:  # type: ignore[no-untyped-def]
    services, runtime, cards = demo
    cards = [*cards, DemoCard("moica", "markup test", "[bold]林[/bold]", "moica", "123456")]
    app = SmisApp(services, runtime, demo_cards=cards)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        buttons = list(app.screen.query(".demo-card").results(Button))
        assert len(buttons) == len(cards)
        assert str(buttons[0].label).split() == ["111111", "陳美玲", "疾管署管理者（各類別）"]
        # Rendered literally, not interpreted as markup.
        assert "[bold]林[/bold]" in app.export_screenshot()
    assert Account.select().count() >= 5


def test_login_screen_snapshot(snap_compare, demo) -> None:  # type: ignore[no-untyped-def]
    services, runtime, cards = demo
    assert snap_compare(SmisApp(services, runtime, demo_cards=cards), terminal_size=(100, 30))
