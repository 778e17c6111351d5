"""Hostile text typed (pasted) into every input of the screens, and stored in the
database as unit and person names: the app keeps running, the
screen never carries an escape or another control character, and markup is shown
literally. A fixed list of nasty strings keeps the number of Pilot runs modest.
"""

from __future__ import annotations

import html
from pathlib import Path

from textual import events
from textual.pilot import Pilot
from textual.widgets import Button, Input

from models.db import write_transaction
from models.schema import Account, Unit
from smis_tui.app import SmisApp
from smis_tui.core.identifiers import generate_national_id
from smis_tui.screens.application_form import ApplicationFormScreen
from smis_tui.screens.home import HomeScreen
from smis_tui.screens.new_account import NewAccountScreen
from smis_tui.screens.unit_search import UnitSearchScreen
from smis_tui.services.accounts import RoleChoice
from tests.helpers import card_proof, form, new_person_id
from tests.hostile import hidden_chars
from tests.tui.conftest import account_of, kiosk, settle
from tests.tui.test_control_screens import open_control, open_trail
from tests.tui.test_new_account import open_application, open_new_account
from tests.tui.test_review_screen import open_review

MARKUP = "[bold red]紅[/]"
# Each one a paste of many tricks at once, so that few Pilot rounds cover them all.
PASTES = [
    f"{MARKUP}\x1b[31m\x1b]52;c;aGVsbG8=\x07\u202e\u200b\x00e\u0301",
    "[link=https://evil.example/]x[/link]\x1b]8;;https://evil.example/\x1b\\y\x9b2J",
    "\u2066A1\u2069" + "王" * 300 + "\x7f\x85\u2028",
]


def shown(app: SmisApp, *, clear_inputs: bool = True) -> str:
    """The screenshot, after checking that it carries nothing a terminal acts on.

    The inputs are emptied first: Textual's Input shows its own value as it is (see
    test_a_pasted_escape_is_not_echoed_by_the_input below); everything else on the
    screen (messages, tables, dialogs) must never echo the raw text."""
    if clear_inputs:
        for screen in app.screen_stack:
            for field in screen.query(Input):
                field.value = ""
    svg = app.export_screenshot()
    assert "\x1b" not in svg and "\x9b" not in svg and "\x07" not in svg
    text = html.unescape(svg).replace("\xa0", " ")
    assert not hidden_chars(text, allow="\n\r\t"), hidden_chars(text, allow="\n\r\t")[:5]
    return text


async def paste_everywhere(pilot: Pilot[None], values: list[str], submit: str = "") -> None:
    """Every enabled input of the screen gets each value; then ``submit`` is pressed."""
    app = pilot.app
    screen = app.screen
    for value in values:
        for field in screen.query(Input):
            if field.disabled:
                continue
            field.value = value
            field.focus()
            await pilot.pause()
        if submit:
            await pilot.press(submit)
        await settle(pilot)
        assert app.is_running
        shown(pilot.app)
        while app.screen is not screen and len(app.screen_stack) > 1:
            await pilot.press("escape")  # a message dialog about the input
            await settle(pilot)


async def test_new_account_and_unit_search_take_hostile_input(demo) -> None:  # type: ignore[no-untyped-def]
    async with kiosk(demo) as pilot:
        await open_new_account(pilot)
        for value in PASTES:
            pilot.app.screen.query_one("#person-id", Input).value = value
            pilot.app.screen.query_one("#confirm", Button).press()
            await settle(pilot)
            shown(pilot.app)
            while not isinstance(pilot.app.screen, NewAccountScreen):
                await pilot.press("escape")
                await settle(pilot)
        pilot.app.screen.query_one("#choose-unit", Button).press()
        await settle(pilot)
        assert isinstance(pilot.app.screen, UnitSearchScreen)
        for value in PASTES:
            pilot.app.screen.query_one("#unit-search-query", Input).value = value
            await pilot.pause(0.4)
            await settle(pilot)
            shown(pilot.app)
        assert pilot.app.is_running


async def test_application_form_takes_hostile_input(demo) -> None:  # type: ignore[no-untyped-def]
    async with kiosk(demo, (100, 40)) as pilot:
        await open_application(pilot, generate_national_id("C", 1, 7777771), "金門縣衛生局")
        screen = pilot.app.screen
        assert isinstance(screen, ApplicationFormScreen)
        before = Account.select().count()
        await paste_everywhere(pilot, PASTES)
        screen.query_one("#consent-agree").value = True  # type: ignore[attr-defined]
        screen.query_one("#form-submit", Button).press()
        await settle(pilot)
        shown(pilot.app)
        assert pilot.app.is_running and Account.select().count() == before


async def test_control_and_trail_searches_take_hostile_input(demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    services = demo[0]
    admin = account_of(services, tmp_path, "hpc")
    async with kiosk(demo) as pilot:
        await open_control(pilot, services, admin)
        await paste_everywhere(pilot, PASTES, submit="f5")
        await pilot.press("escape")
        await settle(pilot)
        await open_trail(pilot, services, admin)
        await paste_everywhere(pilot, PASTES, submit="f5")
        assert pilot.app.is_running


async def test_names_from_the_database_are_shown_literally(demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A unit and a person whose names hold markup and escapes (as an import or an
    older version could have stored them): home, 審核 and 帳號管理 show them as text."""
    services = demo[0]
    admin = account_of(services, tmp_path, "hpc")
    officer = account_of(services, tmp_path, "moica")
    unit = Unit.get_by_id(Account.get_by_id(officer).unit_id)
    evil_unit = f"{MARKUP}診所\x1b[2J\u202e"
    evil_name = "[link=https://evil.example/]王[/link]\x1b]52;c;eA==\x07"
    with write_transaction():
        Unit.update(name=evil_unit).where(Unit.id == unit.id).execute()
        Account.update(name=evil_name).where(Account.id == officer).execute()
    person_id = new_person_id()
    applicant = services.accounts.apply(
        form(person_id, unit, {"ppe": RoleChoice("officer")}, name="申請人"),  # type: ignore[arg-type]
        card_proof(services, person_id),
    )
    with write_transaction():
        Account.update(name=evil_name).where(Account.id == applicant).execute()
    async with kiosk(demo, (120, 40)) as pilot:
        await pilot.pause()
        await pilot.app.push_screen(HomeScreen(services.accounts.view(officer), "zh_TW", services))
        await settle(pilot)
        text = shown(pilot.app)
        assert "[bold red]紅[/]診所" in text
        await pilot.press("escape")
        await settle(pilot)
        await open_review(pilot, services, Account.get_by_id(admin))
        text = shown(pilot.app)
        assert "[link=https://evil.example/]王[/link]" in text or "[link=" in text
        await pilot.press("escape")
        await settle(pilot)
        await open_control(pilot, services, admin)
        pilot.app.screen.query_one("#control-name", Input).value = "[link"
        await pilot.press("f5")
        await settle(pilot)
        text = shown(pilot.app)
        assert "[link=https://evil.example/]王[/link]" in text


async def test_a_pasted_escape_is_not_echoed_by_the_input(demo) -> None:  # type: ignore[no-untyped-def]
    async with kiosk(demo) as pilot:
        field = (await open_new_account(pilot)).query_one("#person-id", Input)
        field.focus()
        field._on_paste(events.Paste("\x1b]52;c;eA==\x07"))
        await pilot.pause()
        shown(pilot.app, clear_inputs=False)
