"""審核 as issue 20 asks (items 8 and 9), driven with Pilot over the demo: the pane
below the list tells the reviewer what they decide by (the role held now and the one
asked for, the contact details, how long it has waited, the applicant's other
requests with who decides those the reviewer may not, what was decided before and
why), scrolls when that does not fit and shows text from the database literally; F3
selects every request of one applicant in the queue, on every page."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import NamedTuple

import pytest
from textual.containers import VerticalScroll
from textual.pilot import Pilot

from models.db import write_transaction
from models.schema import Account, PermissionRequest, Unit, utcnow
from smis_tui.core import clock
from smis_tui.core.domain import RequestStatus, Role
from smis_tui.screens.review import ReviewScreen
from smis_tui.services import Services
from smis_tui.services.accounts import RoleChoice
from smis_tui.widgets.dialogs import MessageDialog
from tests.helpers import apply_for, branch, make_admin, owner_proof
from tests.hostile import ESCAPES, MARKUP, RAW_ESCAPE, hidden_chars
from tests.layout import layout_faults
from tests.review_history import (
    REJECTED_REASON,
    WITHDRAWN_REASON,
    Reviewers,
    reviewers_at,
    with_history,
)
from tests.tui import test_review_screen as review_screen_tests
from tests.tui.conftest import Demo
from tests.tui.test_review_screen import (
    DemoQueue,
    ask,
    detail,
    message,
    move_to,
    reviewing,
    rows,
    screen_text,
    settle,
    shown_ids,
    status,
)

queue = review_screen_tests.queue  # the fixture: the demo queue

LANGUAGES = ("zh_TW", "en")
SIZES = ((80, 24), (100, 30))
# Today, for the screen: the applicant's requests were sent three days before.
NOW = dt.datetime(2026, 12, 3, 17, 0, tzinfo=dt.UTC)  # 4 December in Taiwan
SENT = NOW.replace(tzinfo=None) - dt.timedelta(days=3)


class Applicant(NamedTuple):
    account_id: int
    ppe: int  # 瀏覽者 → 承辦人, the bureau reviewer's to decide
    flu: int  # decided above the clinic, by the region
    drugs: int  # decided by the clinic's own 管理者
    emerging: int  # 瀏覽者(猴痘(M痘)): decided by the demo's 疾管署 管理者


class Rich(NamedTuple):
    reviewers: Reviewers
    applicant: Applicant
    tree: dict[str, Unit]


def _pending(services: Services, account_id: int, category: str) -> int:
    return next(
        r.id for r in services.accounts.view(account_id).pending() if r.category_code == category
    )


@pytest.fixture
def rich(demo: Demo, monkeypatch: pytest.MonkeyPatch) -> Rich:
    """An applicant with a past (test_review_detail.with_history) at the demo's clinic,
    their requests sent three days before today; the bureau's ppe 管理者 reviews."""
    monkeypatch.setattr(clock, "utc_now", lambda: NOW)
    services = demo[0]
    tree = branch()
    reviewers = reviewers_at(services, tree)
    account_id = with_history(services, tree, reviewers)
    with write_transaction():
        PermissionRequest.update(submitted_at=SENT).where(
            (PermissionRequest.account == account_id)
            & (PermissionRequest.status == RequestStatus.PENDING)
        ).execute()
    applicant = Applicant(
        account_id,
        *(
            _pending(services, account_id, category)
            for category in ("ppe", "flu_antiviral", "epidemic_drugs", "emerging")
        ),
    )
    return Rich(reviewers, applicant, tree)


@asynccontextmanager
async def reviewing_rich(
    demo: Demo, rich: Rich, language: str, size: tuple[int, int]
) -> AsyncIterator[tuple[Pilot[None], ReviewScreen]]:
    async with reviewing(demo, rich.reviewers.bureau, language, size=size) as (pilot, screen):
        assert shown_ids(screen)[0] == rich.applicant.ppe  # the oldest first
        yield pilot, screen


EXPECTED = {
    "zh_TW": [
        "申請 #{ppe}：張雅婷（",
        "已等待 3 天（115/12/01 送出）",
        "個人防護裝備：瀏覽者 → 承辦人",
        "電話：02-23959825#1234 · 備用電話：02-23959826 · 行動電話：0912-345-678",
        "電子信箱：wang@example.tw · 備用信箱：lin@example.org",
        "其他審核中的申請：",
        "#{flu} 115/12/01 {clinic} · 流感抗病毒藥劑 · 瀏覽者 · 由上級單位「{region}」審核",
        "#{drugs} 115/12/01 {clinic} · 防疫藥品器材 · 承辦人 · 由「{clinic}」管理者審核",
        "#{emerging} 115/12/01 {clinic} · 新興傳染病用藥 · 瀏覽者(猴痘(M痘)) · 由疾管署審核",
        "歷次審核與停用：",
        "已停用（",
        "防疫藥品器材 瀏覽者 · {clinic} · 由{cdc}管理者停用",
        "原因：" + WITHDRAWN_REASON,
        "未通過（",
        "流感抗病毒藥劑 承辦人 · {clinic} · 由{region}管理者審核",
        "原因：" + REJECTED_REASON,
        "已核准（",
        "個人防護裝備 瀏覽者 · {clinic} · 由{cdc}管理者審核",
    ],
    "en": [
        "Request #{ppe}: 張雅婷 (",
        "Waiting 3 days (sent 115/12/01)",
        "Personal protective equipment: Viewer → Officer",
        "Phone: 02-23959825#1234 · Backup phone: 02-23959826 · Mobile: 0912-345-678",
        "E-mail: wang@example.tw · Backup e-mail: lin@example.org",
        "Other requests under review:",
        "· Viewer · decided by the superior unit {region}",
        "· Officer · decided by the administrators of {clinic}",
        "· Viewer (猴痘(M痘)) · decided by Taiwan CDC",
        "Earlier decisions and withdrawals:",
        "Disabled (",
        "Reason: " + WITHDRAWN_REASON,
        "Not approved (",
        "Reason: " + REJECTED_REASON,
        "Approved (",
    ],
}


def _expected(rich: Rich, language: str) -> list[str]:
    names = {key: unit.name for key, unit in rich.tree.items()}
    ids = rich.applicant._asdict()
    return [line.format(**names, **ids) for line in EXPECTED[language]]


# ----------------------------------------------------------------------- item 8


@pytest.mark.parametrize("language", LANGUAGES)
async def test_the_pane_shows_what_the_reviewer_decides_by(
    demo: Demo, rich: Rich, language: str
) -> None:
    async with reviewing_rich(demo, rich, language, (100, 30)) as (pilot, screen):
        text = detail(screen)
        for line in _expected(rich, language):
            assert line in text, line
        # In the order a reviewer reads them: who, how long, what changes, how to reach
        # them, the other requests, the past (newest first).
        positions = [text.index(line) for line in _expected(rich, language)]
        assert positions == sorted(positions)
        assert layout_faults(screen) == []


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("language", LANGUAGES)
async def test_the_pane_scrolls_to_what_does_not_fit(
    demo: Demo, rich: Rich, language: str, size: tuple[int, int]
) -> None:
    async with reviewing_rich(demo, rich, language, size) as (pilot, screen):
        assert layout_faults(screen) == []
        pane = screen.query_one("#review-detail", VerticalScroll)
        last = _expected(rich, language)[-1]
        if size == (80, 24):
            assert pane.max_scroll_y > 0 and last not in screen_text(pilot)
        # Tab from the list reaches the pane; its keys scroll it to the end.
        await pilot.press("tab")
        assert pane.has_focus
        await pilot.press(*["down"] * 30)
        await pilot.pause()
        assert pane.scroll_y == pane.max_scroll_y
        assert REJECTED_REASON in screen_text(pilot)
        assert layout_faults(screen) == []
        # Space, F2 and F3 belong to the list: back there, they are in the key bar.
        await pilot.press("shift+tab")
        assert screen.paged.table.has_focus
        keys = screen_text(pilot)
        for key in ("Space", "F2", "F3"):
            assert f"{key} " in keys, key


@pytest.mark.parametrize("language", LANGUAGES)
async def test_hostile_text_from_the_database_is_shown_literally(
    demo: Demo, rich: Rich, language: str
) -> None:
    """Whatever the database holds (a row written behind the services' back): markup
    stays brackets, escape sequences and hidden characters never reach the terminal."""
    markup, link, click = MARKUP[0], MARKUP[1], MARKUP[3]
    with write_transaction():
        Account.update(
            name=f"{markup}{ESCAPES[0]}",
            phone=link,
            mobile=f"0912{ESCAPES[2]}",
            email=f"{click}\u202e@example.tw",
        ).where(Account.id == rich.applicant.account_id).execute()
        PermissionRequest.update(reason=f"{MARKUP[4]}{ESCAPES[3]}\x00理由").where(
            (PermissionRequest.account == rich.applicant.account_id)
            & (PermissionRequest.status == RequestStatus.REJECTED)
        ).execute()
    async with reviewing_rich(demo, rich, language, (100, 30)) as (pilot, screen):
        text = detail(screen)
        for literal in (markup, link, click, MARKUP[4], "理由"):
            assert literal in text, literal
        assert hidden_chars(text) == []
        assert not RAW_ESCAPE.search(text)
        assert markup in rows(screen)[0][2]
        shown = screen_text(pilot)
        assert markup in shown and link in shown
        assert layout_faults(screen) == []


# ----------------------------------------------------------------------- item 9


def _two_pages_and_one_applicant_on_both(
    services: Services, reviewer: Account
) -> tuple[int, int, int]:
    """The demo queue, 20 newcomers, and an applicant whose 承辦人 of ppe is the
    oldest request (page 1) and whose flu_antiviral request the newest (page 2):
    (their account, the ppe request, the flu_antiviral request)."""
    tree = branch()
    account_id, first = apply_for(services, tree["clinic"], Role.VIEWER, name="吳建宏")
    services.review.approve(reviewer.id, first)
    for _ in range(20):
        apply_for(services, tree["clinic"], Role.VIEWER)
    [early] = services.accounts.request_changes(
        account_id,
        {"ppe": RoleChoice(Role.OFFICER)},
        services.accounts.view(account_id).version,
        owner_proof(services, account_id),
    )
    [late] = services.accounts.request_changes(
        account_id,
        {"flu_antiviral": RoleChoice(Role.OFFICER)},
        services.accounts.view(account_id).version,
        owner_proof(services, account_id),
    )
    with write_transaction():
        PermissionRequest.update(submitted_at=utcnow() - dt.timedelta(days=9)).where(
            PermissionRequest.id == early
        ).execute()
    return account_id, early, late


@pytest.mark.parametrize("language", LANGUAGES)
async def test_f3_selects_the_applicant_on_every_page(
    demo: Demo, queue: DemoQueue, language: str
) -> None:
    account_id, early, late = _two_pages_and_one_applicant_on_both(demo[0], queue.admin)
    async with reviewing(demo, queue.admin, language, size=(80, 24)) as (pilot, screen):
        assert shown_ids(screen)[0] == early and late not in shown_ids(screen)
        assert "Space " in screen_text(pilot)  # the footer names Space at 80×24
        await pilot.press("f3")
        screen = await settle(pilot)
        assert screen.selected == {early, late}
        assert rows(screen)[0][0] == "✓"
        said = {"zh_TW": "已選取 吳建宏 在審核清單中的 2 筆申請", "en": "Selected the 2 request"}
        assert said[language] in message(screen)
        await pilot.press("pagedown")
        screen = await settle(pilot)
        assert late in shown_ids(screen)
        assert rows(screen)[shown_ids(screen).index(late)][0] == "✓"
        # F3 again, from the other page: all off.
        await move_to(pilot, screen, late)
        await pilot.press("f3")
        screen = await settle(pilot)
        assert screen.selected == set()
        assert rows(screen)[shown_ids(screen).index(late)][0] == ""
        await pilot.press("f3")
        screen = await settle(pilot)
        assert screen.selected == {early, late}
        # The confirmation lists both, whatever page they are on; 取消 is its default.
        dialog = await ask(pilot, "a", MessageDialog)
        assert f"#{early}" in dialog.message and f"#{late}" in dialog.message
        assert dialog.query_one("#dialog-cancel").has_focus
        assert layout_faults(dialog) == []
        await pilot.click("#dialog-ok")
        screen = await settle(pilot)
        assert status(early) == status(late) == RequestStatus.APPROVED
        assert screen.selected == set()
        # None of theirs is left: the message says whose request the cursor is on.
        assert screen.page is not None
        [item] = [i for i in screen.page.items if str(i.request_id) == screen.paged.current_key]
        assert item.account_id != account_id
        assert item.applicant_name in message(screen)
        assert layout_faults(screen) == []


async def test_f3_on_an_applicant_decided_meanwhile_selects_nothing(
    demo: Demo, queue: DemoQueue
) -> None:
    services = demo[0]
    colleague = make_admin(services, Unit.get_by_id(queue.admin.unit_id))
    async with reviewing(demo, queue.admin, size=(80, 24)) as (pilot, screen):
        for request in (queue.ppe, queue.emerging):
            services.review.approve(colleague.id, request.id)
        await pilot.press("f3")
        screen = await settle(pilot)
        assert screen.selected == set()
        assert f"{queue.applicant.name} 已沒有待您審核的申請" in message(screen)
