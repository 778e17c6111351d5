"""Keys typed ahead land where they would have landed if typed slowly: a laggy SSH
link or a paste delivers a whole run of keys at once, and a bound key (Tab, Backspace,
the arrows) must not be overtaken by the characters after it."""

from __future__ import annotations

from textual import events
from textual.widgets import Input

from smis_tui.core.identifiers import generate_national_id
from smis_tui.screens.application_form import ApplicationFormScreen
from smis_tui.screens.new_account import NewAccountScreen
from tests.tui.conftest import kiosk, press, settle
from tests.tui.test_new_account import open_application

NAMED_KEYS = {"-": "minus", " ": "space", "#": "number_sign"}


def deliver(pilot, *runs: str) -> None:  # type: ignore[no-untyped-def]
    """Post every key of ``runs`` to the app in one go, as one terminal read would:
    a run in angle brackets is a named key (<tab>), anything else is typed text."""
    for run in runs:
        if run.startswith("<") and run.endswith(">"):
            pilot.app.post_message(events.Key(run[1:-1], None))
            continue
        for character in run:
            pilot.app.post_message(events.Key(NAMED_KEYS.get(character, character), character))


async def test_an_id_then_tab_then_more_keys_in_one_batch(demo) -> None:  # type: ignore[no-untyped-def]
    async with kiosk(demo) as pilot:
        await press(pilot, "f2")
        screen = pilot.app.screen
        assert isinstance(screen, NewAccountScreen)
        person_id = screen.query_one("#person-id", Input)
        assert person_id.has_focus
        deliver(pilot, "A12345", "<tab>", "Z")
        await settle(pilot)
        assert person_id.value == "A12345"
        assert not person_id.has_focus


async def test_phone_and_extension_typed_ahead_each_land_in_their_own_field(demo) -> None:  # type: ignore[no-untyped-def]
    async with kiosk(demo, (100, 60)) as pilot:
        await open_application(pilot, generate_national_id("C", 1, 7777777), "金門縣衛生局")
        form = pilot.app.screen
        assert isinstance(form, ApplicationFormScreen)
        phone = form.query_one("#input-phone", Input)
        phone.focus()
        await settle(pilot)
        deliver(pilot, "02-23959825", "<tab>", "99", "<tab>")
        await settle(pilot)
        assert phone.value == "02-23959825"
        assert form.query_one("#input-phone-ext", Input).value == "99"


async def test_backspace_and_arrows_typed_ahead_keep_their_place(demo) -> None:  # type: ignore[no-untyped-def]
    async with kiosk(demo) as pilot:
        await press(pilot, "f2")
        person_id = pilot.app.screen.query_one("#person-id", Input)
        deliver(pilot, "A1239", "<backspace>", "4", "<left>", "<left>", "X", "<end>", "5")
        await settle(pilot)
        assert person_id.value == "A12X345"
