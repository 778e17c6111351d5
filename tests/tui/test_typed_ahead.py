"""Keys typed ahead land where they would have landed if typed slowly: a laggy SSH
link or a paste delivers a whole run of keys at once, and a bound key (Tab, Backspace,
the arrows) must not be overtaken by the characters after it."""

from __future__ import annotations

from textual import events
from textual.widgets import Button, Checkbox, DataTable, Input

from smis_tui.core.identifiers import generate_national_id
from smis_tui.screens.application_form import ApplicationFormScreen
from smis_tui.screens.new_account import NewAccountScreen
from smis_tui.screens.unit_search import UnitSearchScreen
from tests.tui.conftest import kiosk, press, settle
from tests.tui.test_new_account import choose_unit, open_application, open_new_account

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


async def test_enter_on_a_button_then_tab_presses_that_button(demo) -> None:  # type: ignore[no-untyped-def]
    """Enter on 確定 with a Tab right behind it: 確定 is pressed (the form opens), not
    whatever the Tab moved the focus to."""
    async with kiosk(demo) as pilot:
        await open_new_account(pilot)
        screen = pilot.app.screen
        screen.query_one("#person-id", Input).value = generate_national_id("C", 1, 7777777)
        await choose_unit(pilot, "金門縣衛生局", confirm=False)
        confirm = screen.query_one("#confirm", Button)
        confirm.focus()
        await settle(pilot)
        deliver(pilot, "<enter>", "<tab>")
        await settle(pilot)
        assert isinstance(pilot.app.screen, ApplicationFormScreen)


async def test_enter_on_the_consent_then_tab_ticks_it_and_sends_nothing(demo) -> None:  # type: ignore[no-untyped-def]
    """Enter ticks 我同意個資聲明事項; the Tab typed after it goes on to 送出申請, and
    the Enter must not press 送出申請 there."""
    async with kiosk(demo, (100, 60)) as pilot:
        await open_application(pilot, generate_national_id("C", 1, 7777777), "金門縣衛生局")
        form = pilot.app.screen
        assert isinstance(form, ApplicationFormScreen)
        consent = form.query_one("#consent-agree", Checkbox)
        consent.focus()
        await settle(pilot)
        deliver(pilot, "<enter>", "<tab>")
        await settle(pilot)
        assert consent.value
        assert form.query_one("#form-submit", Button).has_focus
        assert pilot.app.screen is form
        assert all(not note.has_class("-shown") for note in form.query(".form-error")), (
            "送出申請 was pressed: the form shows what is missing"
        )


async def test_down_then_enter_in_the_unit_results_chooses_the_second_unit(demo) -> None:  # type: ignore[no-untyped-def]
    async with kiosk(demo) as pilot:
        await open_new_account(pilot)
        pilot.app.screen.query_one("#choose-unit", Button).press()
        await settle(pilot)
        search = pilot.app.screen
        assert isinstance(search, UnitSearchScreen)
        search.query_one("#unit-search-query", Input).value = "衛生局"
        await pilot.pause(0.5)
        await settle(pilot)
        table = search.query_one("#unit-search-table", DataTable)
        table.focus()
        await settle(pilot)
        second = table.owner_cells(1)
        deliver(pilot, "<down>", "<enter>", "<tab>")
        await settle(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, NewAccountScreen)
        assert screen.query_one("#unit-code", Input).value in map(str, second)
