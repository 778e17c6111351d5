"""權限定期檢閱 with Pilot, over the demo accounts and cards: from home to the list,
starting a review in its dialog, keeping and removing items (the warning before an
account loses its last permission), a decision someone else made first, a review past
its deadline, and names shown as typed.

Demo (smis_tui/demo.py): ``hpc`` is the 疾管署 管理者 of every category; below it
``moica`` holds 個人防護裝備 承辦人 and 流感抗病毒藥劑 瀏覽者 at a clinic, ``expired``
and ``expiring`` one 個人防護裝備 瀏覽者 each; ``hpc2`` is disabled.
"""

from __future__ import annotations

import datetime as dt
import html

from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Select

from models.db import write_transaction
from models.schema import AccessReview, Account, AuditEvent, PermissionRequest, Unit, utcnow
from smis_tui.app import SmisApp
from smis_tui.core.domain import AccountStatus, RequestStatus, UnitKind
from smis_tui.screens.access_review_items import AccessReviewItemsScreen
from smis_tui.screens.access_review_start import AccessReviewStartDialog
from smis_tui.screens.access_reviews import AccessReviewsScreen
from smis_tui.screens.home import HomeScreen
from smis_tui.screens.reason_dialog import ReasonDialog
from smis_tui.services import Services
from smis_tui.services.access_review import ItemDecision
from smis_tui.widgets.dialogs import MessageDialog
from tests.helpers import make_admin, unit_of_kind
from tests.tui.conftest import Demo, kiosk, log_in, open_screen, opened_as, settle

Accounts = dict[str, int]


def shown(app: SmisApp) -> str:
    """The screenshot's text, entities and non-breaking spaces undone."""
    return html.unescape(app.export_screenshot()).replace("\xa0", " ")


def rows(table: DataTable[Text]) -> list[list[str]]:
    return [[str(cell) for cell in table.owner_cells(i)] for i in range(table.row_count)]


def dialog_text(pilot: Pilot[None]) -> str:
    dialog = pilot.app.screen
    assert isinstance(dialog, MessageDialog), type(dialog)
    return dialog.message


async def press_ok(pilot: Pilot[None]) -> None:
    await pilot.click("#dialog-ok")
    await settle(pilot)


async def open_items(
    pilot: Pilot[None], services: Services, viewer: int, review_id: int
) -> AccessReviewItemsScreen:
    """The review's items, opened from the list as ``viewer``."""
    reviews = await open_screen(
        pilot, AccessReviewsScreen(services, services.accounts.view(viewer), "zh_TW")
    )
    table = reviews.paged.table
    table.move_cursor(row=table.get_row_index(str(review_id)))
    await pilot.press("enter")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, AccessReviewItemsScreen)
    return screen


def move_to(screen: AccessReviewItemsScreen, holder: int, category: str) -> int:
    """The cursor on ``holder``'s item of ``category`` (its name): the item's id."""
    for index, item in enumerate(screen._items.values()):
        if item.account_id == holder and item.category_name == category:
            screen.paged.table.move_cursor(row=index, animate=False)
            return item.item_id
    raise LookupError((holder, category))


# ----------------------------------------------------------------------- reaching it


async def test_home_leads_a_manager_to_the_reviews_and_a_review_is_started(
    demo: Demo, demo_accounts: Accounts
) -> None:
    async with kiosk(demo) as pilot:
        await log_in(pilot, "hpc")
        assert isinstance(pilot.app.screen, HomeScreen)
        await pilot.press("f2")
        await settle(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, AccessReviewsScreen)
        assert screen.paged.notice.display  # nothing yet
        await pilot.press("f2")
        await settle(pilot)
        dialog = pilot.app.screen
        assert isinstance(dialog, AccessReviewStartDialog)
        # Nothing typed: refused in place.
        await pilot.click("#areview-start-ok")
        await pilot.pause()
        assert pilot.app.screen is dialog
        assert dialog.query_one("#areview-start-error").display
        assert "請輸入檢閱名稱" in shown(pilot.app)
        dialog.query_one("#areview-name", Input).value = "113 年上半年"
        days = dialog.query_one("#areview-days", Input)
        days.value = "0"
        await pilot.pause()
        assert "天數須為 1 至 365 的整數" in shown(pilot.app)
        days.value = "7"
        await pilot.pause()
        assert "截止日：" in shown(pilot.app)
        await pilot.click("#areview-start-ok")
        await settle(pilot)
        text = dialog_text(pilot)
        assert text.startswith("已開始權限檢閱「113 年上半年」：共 4 項權限，截止日 ")
        await press_ok(pilot)
        assert pilot.app.screen is screen
        (row,) = rows(screen.paged.table)
        assert row[0] == "113 年上半年" and row[3:] == ["進行中", "0/4", "4"]
    review = AccessReview.get()
    assert review.started_by_id == demo_accounts["hpc"]
    assert AuditEvent.select().where(AuditEvent.action == "access_review_start").count() == 1


async def test_a_user_without_admin_roles_has_no_way_in(demo: Demo) -> None:
    async with kiosk(demo) as pilot:
        await log_in(pilot, "moica")
        home = pilot.app.screen
        assert isinstance(home, HomeScreen)
        assert not home.query_one("#access-review").display
        await pilot.press("f2")
        await settle(pilot)
        assert pilot.app.screen is home


async def test_a_manager_who_may_not_start_one_is_told_so(demo: Demo) -> None:
    services = demo[0]
    hospital = make_admin(services, unit_of_kind(UnitKind.HOSPITAL, with_category="ppe"))
    async with opened_as(demo, AccessReviewsScreen, hospital.id) as (pilot, screen):
        assert screen.choices == ()
        await pilot.press("f2")
        await settle(pilot)
        assert pilot.app.screen is screen  # F2 is off: no dialog


# ----------------------------------------------------------------------- deciding


async def test_keep_a_selection(demo: Demo, demo_accounts: Accounts) -> None:
    services = demo[0]
    review_id = services.access_reviews.start(demo_accounts["hpc"], "保留")
    async with kiosk(demo) as pilot:
        screen = await open_items(pilot, services, demo_accounts["hpc"], review_id)
        assert len(rows(screen.paged.table)) == 4
        move_to(screen, demo_accounts["moica"], "個人防護裝備")
        await pilot.press("space")
        move_to(screen, demo_accounts["moica"], "流感抗病毒藥劑")
        await pilot.press("space")
        await pilot.pause()
        assert "已選 2 項" in shown(pilot.app)
        await pilot.press("k")
        await pilot.pause()
        text = dialog_text(pilot)
        assert text.startswith("確定保留以下 2 項權限嗎？")
        # Many at once: 取消 has the focus, a stray Enter keeps nothing.
        assert pilot.app.screen.query_one("#dialog-cancel").has_focus
        await press_ok(pilot)
        assert pilot.app.screen is screen
        assert "已保留 2 項。" in shown(pilot.app)
        # The undecided list no longer has them; the whole list shows them kept.
        assert demo_accounts["moica"] not in {i.account_id for i in screen._items.values()}
        screen.query_one("#areview-show", Select).value = "all"
        await settle(pilot)
        decided = [row for row in rows(screen.paged.table) if row[7] == "保留"]
        assert len(decided) == 2
    statuses = {
        r.status
        for r in PermissionRequest.select().where(
            PermissionRequest.account == demo_accounts["moica"]
        )
    }
    assert statuses == {RequestStatus.APPROVED}


async def test_removing_a_last_permission_warns_then_disables_the_account(
    demo: Demo, demo_accounts: Accounts
) -> None:
    services = demo[0]
    review_id = services.access_reviews.start(demo_accounts["hpc"], "移除")
    expired = demo_accounts["expired"]
    name = Account.get_by_id(expired).name
    async with kiosk(demo) as pilot:
        screen = await open_items(pilot, services, demo_accounts["hpc"], review_id)
        move_to(screen, expired, "個人防護裝備")
        await pilot.pause()
        assert "這是此帳號最後一項權限" in shown(pilot.app)
        await pilot.press("r")
        await pilot.pause()
        prompt = pilot.app.screen
        assert isinstance(prompt, ReasonDialog)
        await pilot.press("enter")  # no reason: refused in place
        await pilot.pause()
        assert pilot.app.screen is prompt
        prompt.query_one("#reason-input", Input).value = "已離職"
        await pilot.press("enter")
        await pilot.pause()
        text = dialog_text(pilot)
        assert "以下帳號將失去最後一項權限而停用，須重新申請：" + name in text
        assert "原因：已離職" in text
        assert pilot.app.screen.query_one("#dialog-cancel").has_focus
        await press_ok(pilot)
        assert "已移除 1 項；1 個帳號因此停用。" in shown(pilot.app)
    account = Account.get_by_id(expired)
    assert account.status == AccountStatus.DISABLED
    (told,) = [
        d for d in services.accounts.view(expired).decisions if d.status == RequestStatus.REVOKED
    ]
    assert told.reason == "已離職"


async def test_removing_one_of_two_permissions_says_nothing_of_the_account(
    demo: Demo, demo_accounts: Accounts
) -> None:
    services = demo[0]
    review_id = services.access_reviews.start(demo_accounts["hpc"], "一項")
    officer = demo_accounts["moica"]
    async with kiosk(demo) as pilot:
        screen = await open_items(pilot, services, demo_accounts["hpc"], review_id)
        move_to(screen, officer, "流感抗病毒藥劑")
        await pilot.press("r")
        await pilot.pause()
        pilot.app.screen.query_one("#reason-input", Input).value = "不再負責"
        await pilot.press("enter")
        await pilot.pause()
        text = dialog_text(pilot)
        assert text.startswith("確定移除嗎？（1 項）") and "停用" not in text
        await press_ok(pilot)
        assert "已移除 1 項。" in shown(pilot.app)
    assert Account.get_by_id(officer).status == AccountStatus.ACTIVE


async def test_an_item_decided_meanwhile_says_who_decided_it(
    demo: Demo, demo_accounts: Accounts
) -> None:
    services = demo[0]
    cdc = Unit.get(Unit.kind == UnitKind.CDC)
    other = make_admin(services, cdc)
    with write_transaction():
        Account.update(name="李其他").where(Account.id == other.id).execute()
    review_id = services.access_reviews.start(demo_accounts["hpc"], "搶先")
    async with kiosk(demo) as pilot:
        screen = await open_items(pilot, services, demo_accounts["hpc"], review_id)
        item = move_to(screen, demo_accounts["moica"], "個人防護裝備")
        services.access_reviews.decide(other.id, [item], ItemDecision.KEEP)
        await pilot.press("r")
        await pilot.pause()
        pilot.app.screen.query_one("#reason-input", Input).value = "太晚"
        await pilot.press("enter")
        await pilot.pause()
        await press_ok(pilot)
        text = dialog_text(pilot)
        assert "的這項權限已由 李其他 決定保留" in text
        await press_ok(pilot)
    request = PermissionRequest.get_by_id(
        next(
            r.id
            for r in PermissionRequest.select().where(
                PermissionRequest.account == demo_accounts["moica"]
            )
            if r.category.code == "ppe"
        )
    )
    assert request.status == RequestStatus.APPROVED


async def test_past_the_deadline_nothing_is_decided(demo: Demo, demo_accounts: Accounts) -> None:
    services = demo[0]
    review_id = services.access_reviews.start(
        demo_accounts["hpc"], "已截止", now=utcnow() - dt.timedelta(days=30)
    )
    async with kiosk(demo) as pilot:
        screen = await open_items(pilot, services, demo_accounts["hpc"], review_id)
        assert "（已截止）" in shown(pilot.app)
        await pilot.press("k")
        await pilot.pause()
        assert pilot.app.screen is screen  # k is off: no dialog
    assert AuditEvent.select().where(AuditEvent.action == "access_review_keep").count() == 0


# ----------------------------------------------------------------------- hostile text


async def test_names_and_reasons_are_shown_as_typed(demo: Demo, demo_accounts: Accounts) -> None:
    services = demo[0]
    hostile = "[b]紅[/b][@click=app.quit]x[/]"
    review_id = services.access_reviews.start(demo_accounts["hpc"], hostile)
    with write_transaction():
        Account.update(name="[link=https://evil.example/]林[/link]").where(
            Account.id == demo_accounts["moica"]
        ).execute()
    item = services.access_reviews.items(demo_accounts["hpc"], review_id).items[0]
    async with kiosk(demo) as pilot:
        reviews = await open_screen(
            pilot,
            AccessReviewsScreen(services, services.accounts.view(demo_accounts["hpc"]), "zh_TW"),
        )
        assert rows(reviews.paged.table)[0][0] == hostile
        await pilot.press("enter")
        await settle(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, AccessReviewItemsScreen)
        assert hostile in shown(pilot.app)
        assert "[link=https://evil.example/]林[/link]" in {
            row[1] for row in rows(screen.paged.table)
        }
        services.access_reviews.decide(
            demo_accounts["hpc"], [item.item_id], ItemDecision.REMOVE, "[red]原因[/red]"
        )
        screen.query_one("#areview-show", Select).value = "all"
        await settle(pilot)
        screen.paged.table.move_cursor(
            row=screen.paged.table.get_row_index(str(item.item_id)), animate=False
        )
        await pilot.pause()
        assert "原因：[red]原因[/red]" in shown(pilot.app)
        assert isinstance(pilot.app, SmisApp)  # [@click=app.quit] quit nothing


async def test_escape_goes_back_to_home(demo: Demo) -> None:
    async with kiosk(demo) as pilot:
        await log_in(pilot, "hpc")
        home = pilot.app.screen
        await pilot.press("f2")
        await settle(pilot)
        await pilot.press("escape")
        await pilot.pause()
        assert pilot.app.screen is home
