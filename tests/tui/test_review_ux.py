"""審核 as issue 20 found it (item 9): a selection kept across pages, all of one
applicant's requests chosen at once, a batch confirmation that lists what it decides
and has 取消 first, the cursor kept with the applicant after a decision, and Space in
the key bar. Over the demo queue of test_review_screen.py."""

from __future__ import annotations

import pytest

from models.schema import Unit
from smis_tui.core.domain import RequestStatus, Role, UnitKind
from smis_tui.screens.reason_dialog import ReasonDialog
from smis_tui.services.accounts import RoleChoice
from smis_tui.widgets.bars import KeyBar
from smis_tui.widgets.dialogs import MessageDialog
from tests.layout import layout_faults
from tests.tui import test_review_screen as review_screen_tests
from tests.tui.conftest import Demo
from tests.tui.test_review_screen import (
    DemoQueue,
    apply,
    ask,
    message,
    move_to,
    reviewing,
    settle,
    shown_ids,
    status,
)

queue = review_screen_tests.queue  # the fixture: the demo queue

LANGUAGES = ("zh_TW", "en")


def _clinic() -> Unit:
    return Unit.get(
        Unit.code
        == Unit.select(Unit.code).where(Unit.kind == UnitKind.CLINIC).order_by(Unit.code).scalar()
    )


async def test_a_selection_survives_paging_and_the_batch_lists_it(
    demo: Demo, queue: DemoQueue
) -> None:
    services = demo[0]
    clinic = _clinic()
    for _ in range(21):
        apply(services, clinic, {"ppe": RoleChoice(Role.VIEWER)})
    async with reviewing(demo, queue.admin, size=(80, 24)) as (pilot, screen):
        first = shown_ids(screen)[0]
        await pilot.press("space")
        await pilot.press("pagedown")
        screen = await settle(pilot)
        last = shown_ids(screen)[-1]
        await move_to(pilot, screen, last)
        await pilot.press("space")
        assert screen.selected == {first, last}
        await pilot.press("pageup")
        screen = await settle(pilot)
        assert screen.selected == {first, last}
        assert "已選取 2 筆" in str(screen.query_one("#review-selected").render())
        dialog = await ask(pilot, "a", MessageDialog)
        assert f"#{first}" in dialog.message and f"#{last}" in dialog.message
        assert dialog.query_one("#dialog-cancel").has_focus  # Enter decides nothing
        await pilot.press("enter")
        screen = await settle(pilot)
        assert status(first) == status(last) == RequestStatus.PENDING
        await ask(pilot, "a", MessageDialog)
        await pilot.click("#dialog-ok")
        screen = await settle(pilot)
        assert status(first) == status(last) == RequestStatus.APPROVED
        assert screen.selected == set()
        # A long batch lists what fits and says how many more.
        await pilot.press("f2")
        dialog = await ask(pilot, "a", MessageDialog)
        assert "確定核准已選取的 20 筆申請？" in dialog.message
        assert "…另有 15 筆" in dialog.message
        assert layout_faults(dialog) == []


@pytest.mark.parametrize("language", LANGUAGES)
async def test_one_applicants_requests_chosen_at_once_and_followed(
    demo: Demo, queue: DemoQueue, language: str
) -> None:
    services = demo[0]
    other = apply(services, _clinic(), {"ppe": RoleChoice(Role.VIEWER)})
    async with reviewing(demo, queue.admin, language, size=(80, 24)) as (pilot, screen):
        assert shown_ids(screen) == [queue.ppe.id, queue.emerging.id, other]
        keys = {key.display for key in screen.query_one(KeyBar).keys}
        assert {"Space", "F3"} <= keys
        await move_to(pilot, screen, queue.emerging.id)
        await pilot.press("f3")  # both of the demo applicant's requests
        assert screen.selected == {queue.ppe.id, queue.emerging.id}
        await pilot.press("f3")  # and off again
        assert screen.selected == set()
        # One of the applicant's two decided: the cursor stays with the applicant.
        await move_to(pilot, screen, queue.ppe.id)
        await ask(pilot, "a", MessageDialog)
        await pilot.press("enter")  # one request: 核准 is the first button
        screen = await settle(pilot)
        assert status(queue.ppe.id) == RequestStatus.APPROVED
        assert screen.paged.current_key == str(queue.emerging.id)
        # The last one decided: the message says where the cursor went.
        await ask(pilot, "a", MessageDialog)
        await pilot.press("enter")
        screen = await settle(pilot)
        assert screen.paged.current_key == str(other)
        name = screen.page.items[0].applicant_name if screen.page else ""
        assert name and name in message(screen)
        assert layout_faults(screen) == []


@pytest.mark.parametrize("language", LANGUAGES)
async def test_a_batch_lists_what_it_decides_in_both_languages(
    demo: Demo, queue: DemoQueue, language: str
) -> None:
    services = demo[0]
    clinic = _clinic()
    for _ in range(8):
        apply(services, clinic, {"ppe": RoleChoice(Role.VIEWER)})
    async with reviewing(demo, queue.admin, language, size=(80, 24)) as (pilot, screen):
        await pilot.press("f2")
        dialog = await ask(pilot, "r", ReasonDialog)
        assert f"#{queue.ppe.id}" in dialog.prompt and f"#{queue.emerging.id}" in dialog.prompt
        more = {"zh_TW": "…另有 5 筆", "en": "…and 5 more"}[language]
        assert more in dialog.prompt
        assert layout_faults(dialog) == []
        await pilot.press("escape")
        await settle(pilot)
        confirmation = await ask(pilot, "a", MessageDialog)
        assert f"#{queue.ppe.id}" in confirmation.message and more in confirmation.message
        assert layout_faults(confirmation) == []
