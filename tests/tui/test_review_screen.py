"""審核: the review queue screen, driven with Pilot on the demo database.

The demo's CDC administrator (card "hpc", every category) reviews; the demo's
pending applicant (card "moica2") asked for 管理者 of 個人防護裝備 and of
新興傳染病用藥 (COVID-19) at a health bureau.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import json
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, NamedTuple, TypeVar

import pytest
from rich.cells import cell_len
from textual.pilot import Pilot
from textual.screen import ModalScreen
from textual.widgets import Input, Select, Static

from models.db import write_transaction
from models.schema import Account, AuditEvent, PermissionRequest, Unit, utcnow
from smis_tui.core import clock
from smis_tui.core.domain import RequestStatus, Role, UnitKind
from smis_tui.core.identifiers import generate_national_id
from smis_tui.screens.reason_dialog import ReasonDialog
from smis_tui.screens.review import ReviewScreen
from smis_tui.services import Services
from smis_tui.services.accounts import RoleChoice
from smis_tui.services.review import QueuePage, ReviewService
from smis_tui.widgets.dialogs import MessageDialog
from smis_tui.widgets.pager import Pager
from tests.helpers import (
    card_proof,
    child_of,
    form,
    make_admin,
    new_person_id,
    other_bureau,
    own_request,
)
from tests.tui.conftest import SIZE, Demo, card, kiosk, kiosk_app, open_as

SnapCompare = Callable[..., bool]
DialogT = TypeVar("DialogT", bound=ModalScreen[Any])
SVG_CELL_WIDTH = 12.2  # Rich's SVG export: 0.61 × font size 20


# ----------------------------------------------------------------------- helpers


def pending_of(account: Account) -> list[PermissionRequest]:
    return list(
        PermissionRequest.select()
        .where(
            (PermissionRequest.account == account)
            & (PermissionRequest.status == RequestStatus.PENDING)
        )
        .order_by(PermissionRequest.id)
    )


def apply(services: Services, unit: Unit, roles: dict[str, RoleChoice], **kw: object) -> int:
    """A new applicant at ``unit`` with their 醫事人員卡: the id of their first request."""
    person_id = new_person_id()
    account_id = services.accounts.apply(
        form(person_id, unit, roles, **kw), card_proof(services, person_id)
    )
    return int(services.accounts.view(account_id).pending()[0].id)


def decisions(request_id: int | None = None) -> list[AuditEvent]:
    query = AuditEvent.select().where(AuditEvent.action.in_(["approve_request", "reject_request"]))
    if request_id is not None:
        query = query.where(AuditEvent.target_id == str(request_id))
    return list(query.order_by(AuditEvent.id))


def status(request_id: int) -> str:
    return str(PermissionRequest.get_by_id(request_id).status)


async def settle(pilot: Pilot[None]) -> ReviewScreen:
    """Wait until typing has settled and the newest answers have been shown."""
    deadline = time.monotonic() + 10
    await pilot.pause()
    screen = next(s for s in reversed(pilot.app.screen_stack) if isinstance(s, ReviewScreen))
    while screen.is_busy:
        assert time.monotonic() < deadline, "the review screen never settled"
        await pilot.pause(0.02)
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    return screen


def rows(screen: ReviewScreen) -> list[list[str]]:
    table = screen.paged.table
    return [[str(cell) for cell in table.owner_cells(i)] for i in range(table.row_count)]


def shown_ids(screen: ReviewScreen) -> list[int]:
    assert screen.page is not None
    return [item.request_id for item in screen.page.items]


def message(screen: ReviewScreen) -> str:
    return str(screen.query_one("#review-message", Static).render())


def notice(screen: ReviewScreen) -> str:
    """What stands in the table's place when there is nothing to list."""
    widget = screen.paged.notice
    return str(widget.render()) if widget.display else ""


def detail(screen: ReviewScreen) -> str:
    return str(screen.query_one("#review-detail-text", Static).render())


def screen_text(pilot: Pilot[None]) -> str:
    """The screen as plain text lines, read back from the SVG screenshot."""
    lines: dict[int, str] = {}
    for x, line, text in re.findall(
        r'<text [^>]*x="([0-9.]+)"[^>]*clip-path="url\(#terminal-\d+-line-(\d+)\)">([^<]*)</text>',
        pilot.app.export_screenshot(),
    ):
        before = lines.get(int(line), "")
        column = round(float(x) / SVG_CELL_WIDTH)
        text = html.unescape(text).replace("\xa0", " ")
        lines[int(line)] = before + " " * (column - cell_len(before)) + text
    return "\n".join(text for _, text in sorted(lines.items()))


async def move_to(pilot: Pilot[None], screen: ReviewScreen, request_id: int) -> None:
    table = screen.paged.table
    table.focus()
    table.move_cursor(row=table.get_row_index(str(request_id)), animate=False)
    await pilot.pause()


async def ask(pilot: Pilot[None], key: str, dialog_class: type[DialogT]) -> DialogT:
    """Press ``key`` and return the dialog it opened."""
    await pilot.press(key)
    await pilot.pause()
    dialog = pilot.app.screen
    assert isinstance(dialog, dialog_class), type(dialog)
    return dialog


async def confirm(pilot: Pilot[None]) -> ReviewScreen:
    """Answer the open dialog with 確定 / 核准 and settle (clicked: a batch's
    confirmation has 取消 focused, test_review_ux.py)."""
    assert isinstance(pilot.app.screen, MessageDialog)
    await pilot.click("#dialog-ok")
    return await settle(pilot)


async def open_review(
    pilot: Pilot[None], services: Services, reviewer: Account, language: str = "zh_TW"
) -> ReviewScreen:
    await open_as(pilot, services, ReviewScreen, reviewer.id, language)
    return await settle(pilot)


@asynccontextmanager
async def reviewing(
    demo: Demo,
    reviewer: Account,
    language: str = "zh_TW",
    *,
    size: tuple[int, int] = SIZE,
    services: Services | None = None,
) -> AsyncIterator[tuple[Pilot[None], ReviewScreen]]:
    """The demo app running under Pilot with 審核 open as ``reviewer``."""
    async with kiosk(demo, size) as pilot:
        yield pilot, await open_review(pilot, services or demo[0], reviewer, language)


class DemoQueue(NamedTuple):
    """The demo's CDC 管理者, the demo applicant and the applicant's two requests."""

    admin: Account
    applicant: Account
    ppe: PermissionRequest
    emerging: PermissionRequest


@pytest.fixture
def queue(demo: Demo) -> DemoQueue:
    admin, applicant = (
        Account.get(Account.name == card(demo[2], u).holder) for u in ("hpc", "moica2")
    )
    return DemoQueue(admin, applicant, *pending_of(applicant))


async def test_the_queue_shows_each_request_with_its_applicant(
    demo: Demo, queue: DemoQueue
) -> None:
    admin, applicant, ppe, emerging = queue
    async with reviewing(demo, admin) as (pilot, screen):
        assert shown_ids(screen) == [ppe.id, emerging.id]
        bureau = Unit.get_by_id(applicant.unit_id)
        first, second = rows(screen)
        assert first[0] == ""  # not selected
        assert re.fullmatch(r"1\d\d/\d\d/\d\d", first[1])  # 民國 date
        assert first[2:] == [
            applicant.name,
            applicant.person_id_masked,
            bureau.name,
            "個人防護裝備",
            "管理者",
        ]
        assert second[5:] == ["新興傳染病用藥", "管理者(COVID-19)"]
        # The highlighted request's applicant, with their other pending request.
        text = detail(screen)
        assert f"申請 #{ppe.id}：{applicant.name}（{applicant.person_id_masked}）" in text
        assert bureau.code in text and bureau.county in text
        assert f"#{emerging.id}" in text and "新興傳染病用藥 · 管理者(COVID-19)" in text
        await pilot.press("down")
        assert f"#{ppe.id}" in detail(screen) and "個人防護裝備 · 管理者" in detail(screen)
        assert str(screen.paged.page_line.render()) == ("【每頁 20 筆 · 第 1 頁 共 1 頁 2 筆】")
        shot = screen_text(pilot)
        for text in ("審核者：", "物資類別", "縣市", "[全部]", "申請日期", "身分證號"):
            assert text in shot, text
        for key in ("Esc 返回", "Space 選取", "a 核准", "r 退回", "F5 重新整理"):
            assert key in shot, key


async def test_approve_after_confirming(demo: Demo, queue: DemoQueue) -> None:
    admin, applicant, ppe, emerging = queue
    async with reviewing(demo, admin) as (pilot, screen):
        await pilot.press("enter")  # Enter on the highlighted row: approve it
        await pilot.pause()
        dialog = pilot.app.screen
        assert isinstance(dialog, MessageDialog)
        assert applicant.name in dialog.message and "個人防護裝備" in dialog.message
        screen = await confirm(pilot)
        assert status(ppe.id) == RequestStatus.APPROVED
        assert status(emerging.id) == RequestStatus.PENDING
        assert message(screen) == "已核准 1 筆申請"
        assert shown_ids(screen) == [emerging.id]
        [event] = decisions(ppe.id)
        assert event.action == "approve_request" and event.actor_id == admin.id
        # The first approval activates the account.
        assert Account.get_by_id(applicant.id).status == "active"


async def test_cancelling_the_confirmation_changes_nothing(demo: Demo, queue: DemoQueue) -> None:
    admin, applicant, _, _ = queue
    before = len(decisions())
    async with reviewing(demo, admin) as (pilot, screen):
        await ask(pilot, "a", MessageDialog)
        await pilot.press("escape")
        screen = await settle(pilot)
        assert pilot.app.screen is screen
        assert len(pending_of(applicant)) == 2
        assert len(decisions()) == before


async def test_reject_without_a_reason_is_refused(demo: Demo, queue: DemoQueue) -> None:
    admin, applicant, ppe, _ = queue
    before = len(decisions())
    async with reviewing(demo, admin) as (pilot, screen):
        dialog = await ask(pilot, "r", ReasonDialog)
        assert applicant.name in dialog.prompt
        await pilot.press("enter")  # nothing typed
        await pilot.pause()
        assert pilot.app.screen is dialog
        error = dialog.query_one("#reason-error", Static)
        assert error.display and str(error.render()) == "✖ 必須填寫原因"
        await pilot.press("space", "space", "enter")  # blanks only
        await pilot.pause()
        assert pilot.app.screen is dialog and error.display
        await pilot.press("escape")
        screen = await settle(pilot)
        assert pilot.app.screen is screen
        assert status(ppe.id) == RequestStatus.PENDING
        assert len(decisions()) == before
        assert shown_ids(screen)[0] == ppe.id


async def test_reject_with_a_reason(demo: Demo, queue: DemoQueue) -> None:
    admin, applicant, ppe, emerging = queue
    async with reviewing(demo, admin) as (pilot, screen):
        await move_to(pilot, screen, emerging.id)
        await ask(pilot, "r", ReasonDialog)
        pilot.app.screen.query_one("#reason-input", Input).value = " 非本單位人員 "
        await pilot.press("enter")
        screen = await settle(pilot)
        assert pilot.app.screen is screen
        request = PermissionRequest.get_by_id(emerging.id)
        assert (request.status, request.reason, request.reviewer_id) == (
            RequestStatus.REJECTED,
            "非本單位人員",
            admin.id,
        )
        assert message(screen) == "已退回 1 筆申請"
        assert shown_ids(screen) == [ppe.id]
        [event] = decisions(emerging.id)
        assert event.action == "reject_request"
        assert json.loads(event.details)["reason"] == "非本單位人員"


async def test_a_reason_with_hidden_characters_is_refused(demo: Demo, queue: DemoQueue) -> None:
    """The dialog refuses it in place; the service, asked all the same, refuses it by
    the same rule and nothing changes."""
    admin, applicant, ppe, _ = queue
    before = len(decisions())
    async with reviewing(demo, admin, "en") as (pilot, screen):
        dialog = await ask(pilot, "r", ReasonDialog)
        dialog.query_one("#reason-input", Input).value = "bad\x1b[31m"
        await pilot.press("enter")
        await pilot.pause()
        assert pilot.app.screen is dialog
        error = str(dialog.query_one("#reason-error", Static).render())
        assert error == "✖ The reason contains control or hidden characters"
        await pilot.press("escape")
        screen = await settle(pilot)
        item = screen.page.items[0] if screen.page is not None else None
        assert item is not None and item.request_id == ppe.id
        screen._decide(False, (item,), "bad\x1b[31m")
        screen = await settle(pilot)
        assert isinstance(pilot.app.screen, MessageDialog)
        assert "hidden characters" in pilot.app.screen.message
        assert "hidden characters" in message(screen)
        assert status(ppe.id) == RequestStatus.PENDING
        assert len(decisions()) == before


async def test_a_reviewer_sees_only_their_scope_and_never_their_own(
    demo: Demo, queue: DemoQueue
) -> None:
    services, applicant = demo[0], queue.applicant
    bureau = Unit.get_by_id(applicant.unit_id)
    # A ppe administrator of the applicant's bureau: 管理者 requests there need a
    # superior unit, so the demo applicant's requests are not theirs.
    reviewer = make_admin(services, bureau, ["ppe"])
    below = child_of(bureau)
    in_scope = apply(services, below, {"ppe": RoleChoice(Role.OFFICER)})
    other_category = apply(services, below, {"flu_antiviral": RoleChoice(Role.OFFICER)})
    elsewhere = apply(services, other_bureau(bureau), {"ppe": RoleChoice(Role.OFFICER)})
    own = own_request(reviewer, below, Role.VIEWER)
    async with reviewing(demo, reviewer) as (pilot, screen):
        assert shown_ids(screen) == [in_scope]
        for hidden in (other_category, elsewhere, own, queue.ppe.id, queue.emerging.id):
            assert f"#{hidden} " not in screen_text(pilot)
        # The filters offer only the reviewer's categories and counties.
        assert screen.filters is not None
        assert [c.code for c in screen.filters.categories] == ["ppe"]
        assert screen.filters.counties == (bureau.county,)


async def test_an_account_without_admin_roles_is_told_so(demo: Demo, queue: DemoQueue) -> None:
    async with reviewing(demo, queue.applicant) as (pilot, screen):
        assert shown_ids(screen) == []
        assert "不是任何物資類別的管理者" in notice(screen)
        assert not screen.paged.table.display
        await pilot.press("a")
        await pilot.pause()
        assert pilot.app.screen is screen  # nothing to approve: no dialog
        assert message(screen) == "✖ 請先選擇要審核的申請"


async def test_a_request_decided_meanwhile_is_a_conflict_not_a_second_decision(
    demo: Demo, queue: DemoQueue
) -> None:
    services = demo[0]
    admin, applicant, ppe, _ = queue
    colleague = make_admin(services, Unit.get_by_id(admin.unit_id))
    async with reviewing(demo, admin) as (pilot, screen):
        assert shown_ids(screen)[0] == ppe.id
        # Behind the screen's back, another reviewer rejects it.
        services.review.reject(colleague.id, ppe.id, "資料不符")
        await pilot.press("a")
        screen = await confirm(pilot)
        dialog = pilot.app.screen
        assert isinstance(dialog, MessageDialog)
        expected = f"申請 #{ppe.id}（{applicant.name}）已由其他審核者退回，未重複審核。"
        assert expected in dialog.message
        assert expected in message(screen)
        request = PermissionRequest.get_by_id(ppe.id)
        assert (request.status, request.reviewer_id, request.reason) == (
            RequestStatus.REJECTED,
            colleague.id,
            "資料不符",
        )
        [event] = decisions(ppe.id)
        assert event.actor_id == colleague.id
        await pilot.press("enter")  # close the dialog
        screen = await settle(pilot)
        assert ppe.id not in shown_ids(screen)  # the reloaded queue no longer has it
        assert services.audit.verify().ok


async def test_conflict_message_in_english(demo: Demo, queue: DemoQueue) -> None:
    services = demo[0]
    admin, applicant, ppe, _ = queue
    colleague = make_admin(services, Unit.get_by_id(admin.unit_id))
    async with reviewing(demo, admin, "en") as (pilot, screen):
        services.review.approve(colleague.id, ppe.id)
        await pilot.press("a")
        await confirm(pilot)
        assert isinstance(pilot.app.screen, MessageDialog)
        assert (
            f"Request #{ppe.id} ({applicant.name}) was already approved by another reviewer"
            in pilot.app.screen.message
        )
        assert len(decisions(ppe.id)) == 1
        assert "Esc Back" in screen_text(pilot)
        assert screen.query_one("#review-detail").border_title == "Request details"


async def test_batch_approve_and_batch_reject(demo: Demo, queue: DemoQueue) -> None:
    services = demo[0]
    admin, applicant, ppe, emerging = queue
    bureau = Unit.get_by_id(applicant.unit_id)
    third = apply(services, child_of(bureau), {"ppe": RoleChoice(Role.VIEWER)})
    fourth = apply(services, child_of(bureau), {"ppe": RoleChoice(Role.OFFICER)})
    async with reviewing(demo, admin) as (pilot, screen):
        assert shown_ids(screen) == [ppe.id, emerging.id, third, fourth]
        await pilot.press("space", "down", "space")  # first and third
        assert screen.selected == {ppe.id, third}
        assert [row[0] for row in rows(screen)] == ["✓", "", "✓", ""]
        assert "已選取 2 筆" in screen_text(pilot)
        await pilot.press("space")  # the cursor moved on: the fourth too
        await pilot.press("up", "space")  # and the third off again
        assert screen.selected == {ppe.id, fourth}
        await ask(pilot, "a", MessageDialog)
        assert "2 筆" in pilot.app.screen.message
        screen = await confirm(pilot)
        assert (status(ppe.id), status(fourth)) == (RequestStatus.APPROVED,) * 2
        assert message(screen).startswith("已核准 2 筆申請")  # and where the cursor went
        assert shown_ids(screen) == [emerging.id, third]
        assert screen.selected == set()
        # F2 selects the whole page; one reason for all of them.
        await pilot.press("f2")
        assert screen.selected == {emerging.id, third}
        await ask(pilot, "r", ReasonDialog)
        assert "2 筆" in pilot.app.screen.prompt
        await pilot.press(*"重複申請", "enter")
        screen = await settle(pilot)
        assert (status(emerging.id), status(third)) == (RequestStatus.REJECTED,) * 2
        assert message(screen) == "已退回 2 筆申請"
        assert shown_ids(screen) == []
        assert notice(screen) == "目前沒有待審核的申請"
        assert len(decisions()) >= 4
        for request_id in (ppe.id, emerging.id, third, fourth):
            assert len(decisions(request_id)) == 1


async def test_a_batch_with_a_conflict_decides_the_rest(demo: Demo, queue: DemoQueue) -> None:
    services = demo[0]
    admin, applicant, ppe, emerging = queue
    colleague = make_admin(services, Unit.get_by_id(admin.unit_id))
    async with reviewing(demo, admin) as (pilot, _):
        await pilot.press("f2")
        services.review.approve(colleague.id, emerging.id)
        await pilot.press("a")
        await confirm(pilot)
        assert isinstance(pilot.app.screen, MessageDialog)
        assert "已核准 1 筆申請" in pilot.app.screen.message
        assert (
            f"申請 #{emerging.id}（{applicant.name}）已由其他審核者核准" in pilot.app.screen.message
        )
        assert status(ppe.id) == RequestStatus.APPROVED
        assert [e.actor_id for e in decisions(emerging.id)] == [colleague.id]
        assert [e.actor_id for e in decisions(ppe.id)] == [admin.id]


# ----------------------------------------------------------------------- filters, pages


async def test_filters_by_category_unit_and_county(demo: Demo, queue: DemoQueue) -> None:
    services = demo[0]
    admin, applicant, ppe, emerging = queue
    bureau = Unit.get_by_id(applicant.unit_id)
    away = other_bureau(bureau)
    elsewhere = apply(services, away, {"ppe": RoleChoice(Role.OFFICER)})
    async with reviewing(demo, admin) as (pilot, screen):
        assert shown_ids(screen) == [ppe.id, emerging.id, elsewhere]
        screen.query_one("#review-category", Select).value = "emerging"
        screen = await settle(pilot)
        assert shown_ids(screen) == [emerging.id]
        screen.query_one("#review-category", Select).value = ""
        screen.query_one("#review-county", Select).value = away.county
        screen = await settle(pilot)
        assert shown_ids(screen) == [elsewhere]
        screen.query_one("#review-county", Select).value = ""
        field = screen.query_one("#review-unit", Input)
        field.focus()
        await pilot.press(*away.code[:8])
        screen = await settle(pilot)
        assert shown_ids(screen) == [elsewhere]
        # Letters typed into the field stay there: "a" does not approve.
        field.value = ""
        await pilot.press(*bureau.name[:3], "a")
        screen = await settle(pilot)
        assert field.value == bureau.name[:3] + "a"
        assert pilot.app.screen is screen and shown_ids(screen) == []
        assert notice(screen) == "目前沒有待審核的申請"
        field.value = bureau.name
        await pilot.press("enter")
        screen = await settle(pilot)
        assert shown_ids(screen) == [ppe.id, emerging.id]
        assert screen.paged.table.has_focus


async def test_pages_of_twenty(demo: Demo, queue: DemoQueue) -> None:
    services = demo[0]
    clinic = Unit.get(
        Unit.code
        == Unit.select(Unit.code).where(Unit.kind == UnitKind.CLINIC).order_by(Unit.code).scalar()
    )
    for _ in range(21):
        apply(services, clinic, {"ppe": RoleChoice(Role.VIEWER)})
    async with reviewing(demo, queue.admin) as (pilot, screen):
        line = screen.paged.page_line
        assert str(line.render()) == "【每頁 20 筆 · 第 1 頁 共 2 頁 23 筆】"
        assert screen.query_one(Pager).text == "[1] 2"
        first = shown_ids(screen)
        assert len(first) == 20
        await pilot.press("pagedown")
        screen = await settle(pilot)
        assert str(line.render()) == "【每頁 20 筆 · 第 2 頁 共 2 頁 23 筆】"
        assert len(shown_ids(screen)) == 3 and not set(shown_ids(screen)) & set(first)
        await pilot.press("pageup")
        screen = await settle(pilot)
        assert shown_ids(screen) == first


async def test_names_are_shown_literally(demo: Demo, queue: DemoQueue) -> None:
    request_id = apply(
        demo[0],
        child_of(Unit.get_by_id(queue.applicant.unit_id)),
        {"ppe": RoleChoice(Role.VIEWER)},
        name="[b]林[/b]怡君",
    )
    async with reviewing(demo, queue.admin) as (pilot, screen):
        await move_to(pilot, screen, request_id)
        assert rows(screen)[-1][2] == "[b]林[/b]怡君"
        assert "[b]林[/b]怡君" in detail(screen)
        assert "[b]林[/b]怡君" in screen_text(pilot)


class SlowReview(ReviewService):
    """Holds the queue for ``slow_category`` until ``release`` is set."""

    def __init__(self, inner: ReviewService, slow_category: str) -> None:
        super().__init__(inner.audit)
        self.slow_category = slow_category
        self.release = threading.Event()

    def queue(self, reviewer_id: int, **filters: object) -> QueuePage:
        if filters.get("category") == self.slow_category:
            assert self.release.wait(10)
        return super().queue(reviewer_id, **filters)  # type: ignore[arg-type]


async def test_a_late_answer_never_overwrites_a_newer_one(demo: Demo, queue: DemoQueue) -> None:
    services = demo[0]
    admin, applicant, ppe, emerging = queue
    slow = SlowReview(services.review, "ppe")
    patched = dataclasses.replace(services, review=slow)
    async with reviewing(demo, admin, services=patched) as (pilot, screen):
        category = screen.query_one("#review-category", Select)
        category.value = "ppe"  # stuck in its thread
        await pilot.pause(0.1)
        category.value = "emerging"
        deadline = time.monotonic() + 10
        while shown_ids(screen) != [emerging.id]:
            assert time.monotonic() < deadline
            await pilot.pause(0.02)
        slow.release.set()
        screen = await settle(pilot)
        assert shown_ids(screen) == [emerging.id]  # the late ppe answer was dropped
        assert ppe.id not in shown_ids(screen)


async def test_escape_goes_back(demo: Demo, queue: DemoQueue) -> None:
    async with kiosk(demo) as pilot:
        before = pilot.app.screen
        await open_review(pilot, demo[0], queue.admin)
        await pilot.press("escape")
        await pilot.pause()
        assert pilot.app.screen is before


# ----------------------------------------------------------------------- snapshot


def test_review_screen_snapshot(
    snap_compare: SnapCompare, demo: Demo, queue: DemoQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = demo[0]
    # The days waited are counted to a fixed today (the requests are sent on fixed days).
    today = dt.datetime(2024, 7, 23, 4, 0, tzinfo=dt.UTC)
    monkeypatch.setattr(clock, "utc_now", lambda: today)
    bureau = Unit.get_by_id(queue.applicant.unit_id)
    # A fixed person ID: the masked ID is in the picture.
    person_id = generate_national_id("B", 1, 4242)
    services.accounts.apply(
        form(person_id, child_of(bureau), {"ppe": RoleChoice(Role.VIEWER)}, name="李志明"),
        card_proof(services, person_id),
    )
    # Fixed submission days, so the picture does not depend on today.
    with write_transaction():
        for index, request in enumerate(
            PermissionRequest.select()
            .where(PermissionRequest.status == RequestStatus.PENDING)
            .order_by(PermissionRequest.id)
        ):
            PermissionRequest.update(
                submitted_at=utcnow().replace(year=2024, month=7, day=20 + index, hour=2)
            ).where(PermissionRequest.id == request.id).execute()
        # Fixed card fingerprints (the demo's keys are new at each run), as the
        # applications recorded their cards for the reviewer.
        for event in AuditEvent.select().where(AuditEvent.action.in_(["apply", "reapply"])):
            details = json.loads(event.details)
            details["card"]["cert_sha256"] = f"{int(event.target_id):02x}" * 32
            AuditEvent.update(details=json.dumps(details)).where(
                AuditEvent.id == event.id
            ).execute()

    async def run_before(pilot: Pilot[None]) -> None:
        await open_review(pilot, services, queue.admin)
        await pilot.press("down", "space", "up")
        await settle(pilot)

    assert snap_compare(kiosk_app(demo), terminal_size=(100, 30), run_before=run_before)


@pytest.mark.parametrize("language", ["zh_TW", "en"])
async def test_fits_80_by_24(demo: Demo, queue: DemoQueue, language: str) -> None:
    async with reviewing(demo, queue.admin, language, size=(80, 24)) as (_, screen):
        table = screen.paged.table
        assert table.region.height >= 5
        assert table.virtual_size.width <= table.scrollable_content_region.width
