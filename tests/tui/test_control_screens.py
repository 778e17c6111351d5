"""帳號管理 and 軌跡紀錄 screens with Pilot, over the demo accounts and cards.

Demo (smis_tui/demo.py): ``hpc`` is the CDC 管理者 of every category, ``moica`` an
active clinic 承辦人 (ppe) + 瀏覽者 (flu_antiviral), ``moica2`` a bureau applicant for
管理者, ``hpc2`` a disabled hospital 承辦人, ``expired`` an active clinic 瀏覽者.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Callable

import pytest
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Select, Static

from models.db import write_transaction
from models.schema import Account, AuditEvent, Meta, Unit, utcnow
from smis_tui.app import SmisApp
from smis_tui.core import clock
from smis_tui.core.clock import TAIWAN_OFFSET
from smis_tui.core.domain import AccountStatus, Role, UnitKind
from smis_tui.core.rocdate import to_roc
from smis_tui.screens.account_control import AccountControlScreen
from smis_tui.screens.audit_trail import AuditTrailScreen
from smis_tui.screens.reason_dialog import ReasonDialog
from smis_tui.services import Services
from smis_tui.services.accounts import RoleChoice, StartKind
from smis_tui.services.audit import GENESIS_HASH, HEAD_KEY, _row_hash
from smis_tui.services.audit_anchor import HEAD_MAC_KEY, AuditAnchor
from smis_tui.services.auth import LoginState
from smis_tui.services.scope import UnitTree
from smis_tui.widgets.dialogs import MessageDialog
from tests.helpers import approved_applicant, execute_sql, form, owner_proof, set_idle
from tests.tui.conftest import Demo, kiosk_app, open_as, opened_as, settle

SnapCompare = Callable[..., bool]
Accounts = dict[str, int]


def make_bureau_admin(services: Services, demo_accounts: Accounts) -> int:
    """moica2's 管理者 requests approved by the CDC 管理者."""
    bureau_admin = demo_accounts["moica2"]
    for request in services.accounts.view(bureau_admin).pending():
        services.review.approve(demo_accounts["hpc"], request.id)
    assert Account.get_by_id(bureau_admin).status == AccountStatus.ACTIVE
    return bureau_admin


def clinic_below(unit: Unit) -> Unit:
    """A clinic handling ppe under ``unit``."""
    tree = UnitTree()
    for clinic in Unit.select().where(Unit.kind == UnitKind.CLINIC).order_by(Unit.code):
        if unit.id in tree.ancestors(clinic.id):
            codes = {c.category.code for c in clinic.unit_categories}
            if "ppe" in codes:
                return clinic
    raise LookupError(f"no clinic under {unit.name}")


def active_below(services: Services, unit: Unit, approver: int, name: str) -> int:
    """An active ppe 承辦人 named ``name`` at ``unit``."""
    return approved_applicant(
        services, unit, approver, {"ppe": RoleChoice(Role.OFFICER)}, name=name
    )


def opened_control(demo: Demo, actor: int):  # type: ignore[no-untyped-def]
    """The 帳號管理 screen open as ``actor``: ``async with`` gives (pilot, screen)."""
    return opened_as(demo, AccountControlScreen, actor)


def opened_trail(demo: Demo, viewer: int):  # type: ignore[no-untyped-def]
    """The 軌跡紀錄 screen open as ``viewer``: ``async with`` gives (pilot, screen)."""
    return opened_as(demo, AuditTrailScreen, viewer)


async def open_control(pilot: Pilot[None], services: Services, actor: int) -> AccountControlScreen:
    return await open_as(pilot, services, AccountControlScreen, actor)


async def open_trail(pilot: Pilot[None], services: Services, viewer: int) -> AuditTrailScreen:
    return await open_as(pilot, services, AuditTrailScreen, viewer)


def rows(table: DataTable[Text]) -> list[list[str]]:
    return [[str(cell) for cell in table.owner_cells(i)] for i in range(table.row_count)]


def shown(app: SmisApp) -> str:
    """The screenshot's text, entities and non-breaking spaces undone."""
    return html.unescape(app.export_screenshot()).replace("\xa0", " ")


def choose(screen: AccountControlScreen, account_id: int) -> None:
    table = screen.paged.table
    table.move_cursor(row=table.get_row_index(str(account_id)))


def dialog_text(pilot: Pilot[None]) -> str:
    dialog = pilot.app.screen
    assert isinstance(dialog, MessageDialog), type(dialog)
    return dialog.message


async def give_reason(pilot: Pilot[None], reason: str) -> None:
    prompt = pilot.app.screen
    assert isinstance(prompt, ReasonDialog)
    prompt.query_one("#reason-input", Input).value = reason
    await pilot.press("enter")
    await pilot.pause()


async def confirm(pilot: Pilot[None]) -> str:
    """Press 確定 on the confirmation and return the outcome dialog's message. 取消 has
    the focus there, so a stray Enter disables nothing: 確定 is chosen on purpose."""
    assert "確定停用" in dialog_text(pilot)
    assert pilot.app.screen.query_one("#dialog-cancel").has_focus
    await pilot.click("#dialog-ok")
    await settle(pilot)
    text = dialog_text(pilot)
    await pilot.press("enter")
    await settle(pilot)
    return text


async def search(pilot: Pilot[None]) -> None:
    """F5 (查詢), and wait for the answer."""
    await pilot.press("f5")
    await settle(pilot)


async def press_disable(pilot: Pilot[None], screen: AccountControlScreen, account_id: int) -> None:
    """Put the cursor on ``account_id``'s row and press F7 (停用帳號)."""
    choose(screen, account_id)
    await pilot.press("f7")
    await pilot.pause()


# ----------------------------------------------------------------------- 帳號管理


async def test_superior_disables_an_account_below(demo: Demo, demo_accounts: Accounts) -> None:
    services = demo[0]
    admin, officer = demo_accounts["hpc"], demo_accounts["moica"]
    async with opened_control(demo, admin) as (pilot, screen):
        names = {row[0] for row in rows(screen.paged.table)}
        officer_name = services.accounts.view(officer).data.name
        assert officer_name in names
        assert services.accounts.view(admin).data.name not in names
        choose(screen, officer)
        await pilot.pause()
        assert [r[0] for r in rows(screen.query_one("#control-permissions", DataTable))] == [
            "個人防護裝備",
            "流感抗病毒藥劑",
        ]
        await pilot.press("f7")
        await pilot.pause()
        await give_reason(pilot, "已離職")
        text = await confirm(pilot)
        assert (
            text == f"已停用 {officer_name}（{services.accounts.view(officer).masked_id}）的帳號。"
        )
        assert pilot.app.screen is screen
        row = rows(screen.paged.table)[screen.paged.table.get_row_index(str(officer))]
        assert row[4] == "已停用（上級）"
    person_id = services.accounts.person_id_for(officer)
    assert services.login.outcome_for_person(person_id).state == LoginState.DISABLED
    # The holder may apply again: the same empty form as anyone, sent with their card.
    unit = Unit.get(Unit.code == services.accounts.view(officer).unit_code)
    assert services.accounts.begin_application(person_id, unit.code).kind == StartKind.NEW
    again = form(person_id, unit, name=services.accounts.view(officer).data.name)
    assert services.accounts.apply(again, owner_proof(services, officer)) == officer
    assert Account.get_by_id(officer).status == AccountStatus.PENDING
    event = (
        AuditEvent.select()
        .where((AuditEvent.action == "disable_account") & (AuditEvent.actor == admin))
        .get()
    )
    assert event.target_id == str(officer) and "已離職" in event.details


async def test_disable_one_permission(demo: Demo, demo_accounts: Accounts) -> None:
    officer = demo_accounts["moica"]
    async with opened_control(demo, demo_accounts["hpc"]) as (pilot, screen):
        choose(screen, officer)
        await pilot.pause()
        permissions = screen.query_one("#control-permissions", DataTable)
        permissions.focus()
        await pilot.press("down")
        await pilot.press("f6")
        await pilot.pause()
        dialog = pilot.app.screen
        assert isinstance(dialog, ReasonDialog)
        assert "流感抗病毒藥劑：瀏覽者" in str(dialog.query_one("#reason-prompt", Static).render())
        await give_reason(pilot, "不再負責流感藥劑")
        text = await confirm(pilot)
        assert "「流感抗病毒藥劑：瀏覽者」權限" in text and "帳號已停用" not in text
        assert [r[0] for r in rows(screen.query_one("#control-permissions", DataTable))] == [
            "個人防護裝備"
        ]
    view = demo[0].accounts.view(officer)
    assert view.status == AccountStatus.ACTIVE
    assert [g.category_code for g in view.granted()] == ["ppe"]


async def test_a_reason_is_required(demo: Demo, demo_accounts: Accounts) -> None:
    services = demo[0]
    officer = demo_accounts["moica"]
    before = services.accounts.view(officer)
    events = AuditEvent.select().count()
    async with opened_control(demo, demo_accounts["hpc"]) as (pilot, screen):
        await press_disable(pilot, screen, officer)
        prompt = pilot.app.screen
        assert isinstance(prompt, ReasonDialog)
        await give_reason(pilot, "   ")
        assert pilot.app.screen is prompt
        error = prompt.query_one("#reason-error", Static)
        assert str(error.render()) == "✖ 必須填寫原因"
        await pilot.press("escape")
        await settle(pilot)
        assert pilot.app.screen is screen
        # 取消 on the confirmation changes nothing either.
        await pilot.press("f7")
        await pilot.pause()
        await give_reason(pilot, "理由")
        await pilot.press("escape")
        await settle(pilot)
        assert pilot.app.screen is screen
    assert services.accounts.view(officer) == before
    assert AuditEvent.select().count() == events


async def test_refusals_are_shown_and_change_nothing(demo: Demo, demo_accounts: Accounts) -> None:
    """The list was read, then the account moved: to a superior unit of the admin, or
    out of their reach. The service refuses with its message."""
    services = demo[0]
    bureau_admin = make_bureau_admin(services, demo_accounts)
    bureau = Unit.get_by_id(Account.get_by_id(bureau_admin).unit_id)
    target = active_below(services, clinic_below(bureau), demo_accounts["hpc"], "林下級")
    other = Unit.select().where(Unit.kind == UnitKind.HEALTH_BUREAU, Unit.id != bureau.id).first()
    async with opened_control(demo, bureau_admin) as (pilot, screen):
        table = screen.paged.table
        listed = [int(str(key.value)) for key in table.rows]
        assert target in listed and bureau_admin not in listed
        tree = UnitTree()
        for account_id in listed:  # nothing outside the bureau, nor the bureau itself
            assert bureau.id in tree.ancestors(Account.get_by_id(account_id).unit_id)
        home = Account.get_by_id(target).unit_id
        for unit, message in (
            (bureau.parent_id, "不可停用上級單位的帳號"),
            (other.id, "此帳號不屬於您所管理單位以下的單位"),
        ):
            with write_transaction():
                Account.update(unit=home).where(Account.id == target).execute()
            await search(pilot)
            choose(screen, target)
            with write_transaction():
                Account.update(unit=unit).where(Account.id == target).execute()
            before = services.accounts.view(target)
            await pilot.press("f7")
            await pilot.pause()
            await give_reason(pilot, "理由")
            assert await confirm(pilot) == message
            assert services.accounts.view(target) == before
            assert str(target) not in {str(k.value) for k in table.rows}
        screen.query_one("#control-name", Input).value = "林下級"
        await search(pilot)
        assert rows(screen.paged.table) == []
        assert str(screen.paged.notice.render()) == "查無符合條件的帳號"


async def test_a_disabled_row_cannot_be_disabled_again(demo: Demo, demo_accounts: Accounts) -> None:
    async with opened_control(demo, demo_accounts["hpc"]) as (pilot, screen):
        await press_disable(pilot, screen, demo_accounts["hpc2"])
        assert dialog_text(pilot) == "只有啟用中的帳號可以停用（此帳號：已停用（逾期））"


async def test_a_user_without_admin_role_gets_a_message(
    demo: Demo, demo_accounts: Accounts
) -> None:
    async with opened_control(demo, demo_accounts["moica"]) as (pilot, screen):
        message = screen.paged.notice
        assert str(message.render()) == "✖ 您不是任何單位的管理者，無法管理下級單位的帳號"
        assert not screen.paged.table.display
        await pilot.press("f7")  # nothing chosen: nothing happens
        await pilot.pause()
        assert pilot.app.screen is screen


async def test_inactive_filter_shows_a_160_day_idle_account(
    demo: Demo, demo_accounts: Accounts
) -> None:
    idle = demo_accounts["expired"]
    set_idle(idle, 160)
    async with opened_control(demo, demo_accounts["hpc"]) as (pilot, screen):
        screen.query_one("#control-status", Select).value = "inactive"
        await settle(pilot)
        found = rows(screen.paged.table)
        assert [(r[0], r[3]) for r in found] == [
            (demo[0].accounts.view(idle).data.name, "⚠ 160 天")
        ]
        page_line = str(screen.paged.page_line.render())
        assert page_line == "【每頁 20 筆 · 第 1 頁 共 1 頁 1 筆】"


async def test_filters_and_literal_names(demo: Demo, demo_accounts: Accounts) -> None:
    services = demo[0]
    admin = demo_accounts["hpc"]
    clinic = Unit.get_by_id(Account.get_by_id(demo_accounts["moica"]).unit_id)
    odd = active_below(services, clinic, admin, "[bold red]x[/]")
    async with opened_control(demo, admin) as (pilot, screen):
        screen.query_one("#control-name", Input).value = "[bold"
        await search(pilot)
        assert [r[0] for r in rows(screen.paged.table)] == ["[bold red]x[/]"]
        assert "[bold red]x[/]" in shown(pilot.app)
        screen.query_one("#control-name", Input).value = services.accounts.person_id_for(odd)
        await search(pilot)
        assert [r[0] for r in rows(screen.paged.table)] == ["[bold red]x[/]"]
        screen.query_one("#control-name", Input).value = ""
        screen.query_one("#control-unit", Input).value = clinic.code
        screen.query_one("#control-unit", Input).focus()
        await pilot.press("enter")
        await settle(pilot)
        assert {r[2] for r in rows(screen.paged.table)} == {clinic.name}
        await pilot.press("escape")
        await pilot.pause()
        assert pilot.app.screen is not screen


# ----------------------------------------------------------------------- 軌跡紀錄


def trail_mode(screen: AuditTrailScreen) -> str:
    return str(screen.query_one("#trail-mode", Static).render())


async def test_own_trail_without_search(demo: Demo, demo_accounts: Accounts) -> None:
    officer = demo_accounts["moica"]
    async with opened_trail(demo, officer) as (pilot, screen):
        assert not screen.is_cdc
        assert not screen.query_one("#trail-search").display
        actions = [r[2] for r in rows(screen.paged.table)]
        assert actions.count("核准申請") == 2
        assert {"新帳號申請", "綁定卡片"} <= set(actions)
        assert trail_mode(screen) == "我的軌跡紀錄"
        # Every row is the officer's own: they acted (named with their unit), or it
        # was about them or their requests (named with the category and role).
        own = f"{demo[0].accounts.view(officer).data.name} #{officer}"
        assert all(
            r[1].startswith(f"{own}（") or r[3] == "" or r[3] == own or r[3].startswith(f"{own} · ")
            for r in rows(screen.paged.table)
        )
        shot = shown(pilot.app)
        assert "F5" not in shot and "F9" not in shot and "Esc" in shot
        await pilot.press("f5", "f9")
        await settle(pilot)
        assert screen.verify_result is None
        assert trail_mode(screen) == "我的軌跡紀錄"


async def test_cdc_search_by_person_unit_action_and_date(
    demo: Demo, demo_accounts: Accounts
) -> None:
    services = demo[0]
    officer = demo_accounts["moica"]
    async with opened_trail(demo, demo_accounts["hpc"]) as (pilot, screen):
        assert screen.is_cdc and screen.query_one("#trail-search").display
        person = screen.query_one("#trail-person", Input)
        person.value = services.accounts.person_id_for(officer)
        await search(pilot)
        assert trail_mode(screen) == "軌跡紀錄查詢結果"
        by_person = rows(screen.paged.table)
        own = services.control.own_trail(officer)
        assert len(by_person) == own.total
        person.value = ""
        screen.query_one("#trail-action", Select).value = "approve_request"
        await search(pilot)
        approvals = rows(screen.paged.table)
        assert approvals and {r[2] for r in approvals} == {"核准申請"}
        screen.query_one("#trail-action", Select).value = ""
        clinic = Unit.get_by_id(Account.get_by_id(officer).unit_id)
        screen.query_one("#trail-unit", Input).value = clinic.code
        await search(pilot)
        assert {r[4] for r in rows(screen.paged.table)} == {clinic.name}
        screen.query_one("#trail-unit", Input).value = ""
        today = to_roc((utcnow() + TAIWAN_OFFSET).date())
        screen.query_one("#trail-since", Input).value = today
        screen.query_one("#trail-until", Input).value = today
        await search(pilot)
        assert screen.result is not None
        assert screen.result.total == AuditEvent.select().count()
        screen.query_one("#trail-until", Input).value = "2024/01/01"
        await search(pilot)
        errors = screen.query_one("#trail-errors", Static)
        assert errors.display and "民國年" in str(errors.render())
        await pilot.click("#trail-own-button")
        await settle(pilot)
        assert trail_mode(screen) == "我的軌跡紀錄"
        assert not errors.display


async def test_a_bureau_admin_cannot_search(demo: Demo, demo_accounts: Accounts) -> None:
    bureau_admin = make_bureau_admin(demo[0], demo_accounts)
    async with opened_trail(demo, bureau_admin) as (pilot, screen):
        assert not screen.is_cdc
        assert not screen.query_one("#trail-search").display
        screen.action_search()
        screen.action_verify()
        await settle(pilot)
        assert trail_mode(screen) == "我的軌跡紀錄"
        assert screen.verify_result is None


async def test_verify_shows_the_result_and_a_tampered_row(
    demo: Demo, demo_accounts: Accounts
) -> None:
    async with opened_trail(demo, demo_accounts["hpc"]) as (pilot, screen):
        await pilot.press("f9")
        await settle(pilot)
        line = screen.query_one("#trail-verify-result", Static)
        count = AuditEvent.select().count()
        assert str(line.render()) == f"軌跡紀錄完整：共驗證 {count} 筆"
        assert line.has_class("-ok")
        victim = AuditEvent.select().order_by(AuditEvent.id).offset(3).first()
        execute_sql(
            "UPDATE audit_event SET details = ? WHERE id = ?", ('{"forged": true}', victim.id)
        )
        await pilot.click("#trail-verify-button")
        await settle(pilot)
        assert str(line.render()) == (
            f"軌跡紀錄遭竄改：第一筆異常紀錄 #{victim.id}（內容雜湊不符：此筆紀錄已被修改）；"
            "之前 3 筆正常"
        )
        assert line.has_class("-bad")


# ----------------------------------------------------------------------- snapshots


def freeze_trail(services: Services, start: dt.datetime) -> None:
    """Every audit row at a fixed time (a minute apart), the chain hashed again and
    its head sealed with the data key: the trail looks the same on every run."""
    prev = GENESIS_HASH
    with write_transaction():
        for event in AuditEvent.select().order_by(AuditEvent.id):
            event.at = start + dt.timedelta(minutes=event.id)
            event.prev_hash = prev
            event.row_hash = _row_hash(event)
            event.save()
            prev = event.row_hash
            head = f"{event.id}:{event.row_hash}"
        Meta.update(value=head).where(Meta.key == HEAD_KEY).execute()
        sealed = AuditAnchor([services.keys], None).head_mac(head)
        Meta.update(value=sealed).where(Meta.key == HEAD_MAC_KEY).execute()


async def _quiet(pilot: Pilot[None]) -> None:
    await settle(pilot)
    for field in pilot.app.screen.query(Input):
        field.cursor_blink = False
    await pilot.pause()


def test_account_control_snapshot(
    snap_compare: SnapCompare, demo: Demo, demo_accounts: Accounts
) -> None:
    set_idle(demo_accounts["expired"], 160)

    async def run_before(pilot: Pilot[None]) -> None:
        screen = await open_control(pilot, demo[0], demo_accounts["hpc"])
        choose(screen, demo_accounts["moica"])
        await _quiet(pilot)

    assert snap_compare(kiosk_app(demo), terminal_size=(100, 30), run_before=run_before)


def test_audit_trail_snapshot(
    snap_compare: SnapCompare,
    demo: Demo,
    demo_accounts: Accounts,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    freeze_trail(demo[0], dt.datetime(2024, 7, 26, 1, 0, 0))
    # The date fields show today: the same day on every run.
    monkeypatch.setattr(clock, "utc_now", lambda: dt.datetime(2024, 7, 26, 2, 0, tzinfo=dt.UTC))

    async def run_before(pilot: Pilot[None]) -> None:
        await open_trail(pilot, demo[0], demo_accounts["hpc"])
        await pilot.press("f9")
        await _quiet(pilot)

    assert snap_compare(kiosk_app(demo), terminal_size=(100, 30), run_before=run_before)


@pytest.mark.parametrize("language", ["en"])
async def test_english(demo: Demo, demo_accounts: Accounts, language: str) -> None:
    admin = demo_accounts["hpc"]
    async with opened_as(demo, AccountControlScreen, admin, language) as (pilot, _):
        shot = shown(pilot.app)
        assert "Account control (units below)" in shot and "Disable account" in shot
        assert "[All]" in shot  # the status filter's prompt, not read as markup
        await pilot.press("escape")
        await open_as(pilot, demo[0], AuditTrailScreen, admin, language)
        assert "My audit trail" in shown(pilot.app)
        assert "[All]" in shown(pilot.app)  # the action filter's prompt
