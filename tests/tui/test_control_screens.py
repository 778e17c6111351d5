"""帳號管理 and 軌跡紀錄 screens with Pilot, over the demo accounts and cards.

Demo (smis_tui/demo.py): ``hpc`` is the CDC 管理者 of every category, ``moica`` an
active clinic 承辦人 (ppe) + 瀏覽者 (flu_antiviral), ``moica2`` a bureau applicant for
管理者, ``hpc2`` a disabled hospital 承辦人, ``expired`` an active clinic 瀏覽者.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Select, Static

from card.identity import identity_from_certificate
from models.db import database_proxy, write_transaction
from models.schema import Account, AccountStatus, AuditEvent, Meta, Unit, UnitKind, utcnow
from smis_tui.app import SmisApp
from smis_tui.core.rocdate import to_roc
from smis_tui.screens.account_control import AccountControlScreen
from smis_tui.screens.audit_trail import AuditTrailScreen
from smis_tui.screens.reason_dialog import ReasonDialog
from smis_tui.services import Services
from smis_tui.services.accounts import RoleChoice, StartKind
from smis_tui.services.audit import GENESIS_HASH, HEAD_KEY, TAIWAN_OFFSET, _row_hash
from smis_tui.services.auth import LoginState
from smis_tui.services.scope import UnitTree
from smis_tui.widgets.dialogs import MessageDialog
from tests.helpers import form, new_person_id
from tests.tui.conftest import settle

SnapCompare = Callable[..., bool]
Demo = tuple[Services, object, list[object]]


def account_of(services: Services, tmp_path: Path, user: str) -> int:
    """The demo account bound to the demo card of PKI user ``user``."""
    pem = (tmp_path / "demo-pki" / "users" / f"{user}.pem").read_bytes()
    account = services.accounts.find_by_certificate(identity_from_certificate(pem).cert_sha256)
    assert account is not None
    return int(account.id)


def set_idle(account_id: int, days: int) -> None:
    long_ago = utcnow() - dt.timedelta(days=days)
    with write_transaction():
        Account.update(last_login_at=long_ago, activated_at=long_ago).where(
            Account.id == account_id
        ).execute()


def make_bureau_admin(services: Services, tmp_path: Path) -> int:
    """moica2's 管理者 requests approved by the CDC 管理者."""
    cdc = account_of(services, tmp_path, "hpc")
    bureau_admin = account_of(services, tmp_path, "moica2")
    for request in services.accounts.view(bureau_admin).pending():
        services.review.approve(cdc, request.id)
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
    account_id = services.accounts.apply(
        form(new_person_id(), unit, {"ppe": RoleChoice("officer")}, name=name)  # type: ignore[arg-type]
    )
    for request in services.accounts.view(account_id).pending():
        services.review.approve(approver, request.id)
    return account_id


def app_with(demo: Demo) -> SmisApp:
    services, runtime, cards = demo
    return SmisApp(services, runtime, demo_cards=cards)  # type: ignore[arg-type]


async def open_control(pilot: Pilot[None], services: Services, actor: int) -> AccountControlScreen:
    await pilot.pause()
    screen = AccountControlScreen(services, services.accounts.view(actor), "zh_TW")
    await pilot.app.push_screen(screen)
    await settle(pilot)
    return screen


async def open_trail(pilot: Pilot[None], services: Services, viewer: int) -> AuditTrailScreen:
    await pilot.pause()
    screen = AuditTrailScreen(services, services.accounts.view(viewer), "zh_TW")
    await pilot.app.push_screen(screen)
    await settle(pilot)
    return screen


def rows(table: DataTable[Text]) -> list[list[str]]:
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


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
    """Press 確定 on the confirmation and return the outcome dialog's message."""
    assert "確定停用" in dialog_text(pilot)
    await pilot.press("enter")
    await settle(pilot)
    text = dialog_text(pilot)
    await pilot.press("enter")
    await settle(pilot)
    return text


# ----------------------------------------------------------------------- 帳號管理


async def test_superior_disables_an_account_below(demo: Demo, tmp_path: Path) -> None:
    services = demo[0]
    admin = account_of(services, tmp_path, "hpc")
    officer = account_of(services, tmp_path, "moica")
    app = app_with(demo)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_control(pilot, services, admin)
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
        assert app.screen is screen
        row = rows(screen.paged.table)[screen.paged.table.get_row_index(str(officer))]
        assert row[4] == "已停用（上級）"
    person_id = services.accounts.person_id_for(officer)
    assert services.login.outcome_for_person(person_id).state == LoginState.DISABLED
    view = services.accounts.view(officer)
    assert services.accounts.begin_application(person_id, view.unit_code).kind == StartKind.REAPPLY
    event = (
        AuditEvent.select()
        .where((AuditEvent.action == "disable_account") & (AuditEvent.actor == admin))
        .get()
    )
    assert event.target_id == str(officer) and "已離職" in event.details


async def test_disable_one_permission(demo: Demo, tmp_path: Path) -> None:
    services = demo[0]
    admin = account_of(services, tmp_path, "hpc")
    officer = account_of(services, tmp_path, "moica")
    app = app_with(demo)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_control(pilot, services, admin)
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
    view = services.accounts.view(officer)
    assert view.status == AccountStatus.ACTIVE
    assert [g.category_code for g in view.granted()] == ["ppe"]


async def test_a_reason_is_required(demo: Demo, tmp_path: Path) -> None:
    services = demo[0]
    admin = account_of(services, tmp_path, "hpc")
    officer = account_of(services, tmp_path, "moica")
    before = services.accounts.view(officer)
    events = AuditEvent.select().count()
    app = app_with(demo)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_control(pilot, services, admin)
        choose(screen, officer)
        await pilot.press("f7")
        await pilot.pause()
        prompt = app.screen
        assert isinstance(prompt, ReasonDialog)
        await give_reason(pilot, "   ")
        assert app.screen is prompt
        error = prompt.query_one("#reason-error", Static)
        assert str(error.render()) == "必須填寫原因"
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is screen
        # 取消 on the confirmation changes nothing either.
        await pilot.press("f7")
        await pilot.pause()
        await give_reason(pilot, "理由")
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is screen
    assert services.accounts.view(officer) == before
    assert AuditEvent.select().count() == events


async def test_refusals_are_shown_and_change_nothing(demo: Demo, tmp_path: Path) -> None:
    """The list was read, then the account moved: to a superior unit of the admin, or
    out of their reach. The service refuses with its message."""
    services = demo[0]
    bureau_admin = make_bureau_admin(services, tmp_path)
    bureau = Unit.get_by_id(Account.get_by_id(bureau_admin).unit_id)
    cdc = account_of(services, tmp_path, "hpc")
    target = active_below(services, clinic_below(bureau), cdc, "林下級")
    other = Unit.select().where(Unit.kind == UnitKind.HEALTH_BUREAU, Unit.id != bureau.id).first()
    app = app_with(demo)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_control(pilot, services, bureau_admin)
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
            await pilot.press("f5")
            await settle(pilot)
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
        await pilot.press("f5")
        await settle(pilot)
        assert rows(screen.paged.table) == []
        assert str(screen.paged.notice.render()) == "查無符合條件的帳號"


async def test_a_disabled_row_cannot_be_disabled_again(demo: Demo, tmp_path: Path) -> None:
    services = demo[0]
    admin = account_of(services, tmp_path, "hpc")
    disabled = account_of(services, tmp_path, "hpc2")
    app = app_with(demo)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_control(pilot, services, admin)
        choose(screen, disabled)
        await pilot.press("f7")
        await pilot.pause()
        assert dialog_text(pilot) == "只有啟用中的帳號可以停用（此帳號：已停用（逾期））"


async def test_a_user_without_admin_role_gets_a_message(demo: Demo, tmp_path: Path) -> None:
    services = demo[0]
    officer = account_of(services, tmp_path, "moica")
    app = app_with(demo)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_control(pilot, services, officer)
        message = screen.paged.notice
        assert str(message.render()) == "您不是任何單位的管理者，無法管理下級單位的帳號"
        assert not screen.paged.table.display
        await pilot.press("f7")  # nothing chosen: nothing happens
        await pilot.pause()
        assert app.screen is screen


async def test_inactive_filter_shows_a_160_day_idle_account(demo: Demo, tmp_path: Path) -> None:
    services = demo[0]
    admin = account_of(services, tmp_path, "hpc")
    idle = account_of(services, tmp_path, "expired")
    set_idle(idle, 160)
    app = app_with(demo)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_control(pilot, services, admin)
        screen.query_one("#control-status", Select).value = "inactive"
        await settle(pilot)
        found = rows(screen.paged.table)
        assert [(r[0], r[3]) for r in found] == [
            (services.accounts.view(idle).data.name, "⚠ 160 天")
        ]
        page_line = str(screen.paged.page_line.render())
        assert page_line == "【每頁 20 筆 · 第 1 頁 共 1 頁 1 筆】"


async def test_filters_and_literal_names(demo: Demo, tmp_path: Path) -> None:
    services = demo[0]
    admin = account_of(services, tmp_path, "hpc")
    officer = account_of(services, tmp_path, "moica")
    clinic = Unit.get_by_id(Account.get_by_id(officer).unit_id)
    odd = active_below(services, clinic, admin, "[bold red]x[/]")
    app = app_with(demo)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_control(pilot, services, admin)
        screen.query_one("#control-name", Input).value = "[bold"
        await pilot.press("f5")
        await settle(pilot)
        assert [r[0] for r in rows(screen.paged.table)] == ["[bold red]x[/]"]
        assert "[bold red]x[/]" in shown(app)
        screen.query_one("#control-name", Input).value = services.accounts.person_id_for(odd)
        await pilot.press("f5")
        await settle(pilot)
        assert [r[0] for r in rows(screen.paged.table)] == ["[bold red]x[/]"]
        screen.query_one("#control-name", Input).value = ""
        screen.query_one("#control-unit", Input).value = clinic.code
        screen.query_one("#control-unit", Input).focus()
        await pilot.press("enter")
        await settle(pilot)
        assert {r[2] for r in rows(screen.paged.table)} == {clinic.name}
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is not screen


# ----------------------------------------------------------------------- 軌跡紀錄


async def test_own_trail_without_search(demo: Demo, tmp_path: Path) -> None:
    services = demo[0]
    officer = account_of(services, tmp_path, "moica")
    app = app_with(demo)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_trail(pilot, services, officer)
        assert not screen.is_cdc
        assert not screen.query_one("#trail-search").display
        actions = [r[2] for r in rows(screen.paged.table)]
        assert actions.count("核准申請") == 2
        assert {"新帳號申請", "綁定卡片"} <= set(actions)
        assert str(screen.query_one("#trail-mode", Static).render()) == "我的軌跡紀錄"
        masked = services.accounts.view(officer).masked_id
        assert all(
            r[1] == masked or r[3] in (masked, "") or r[3].startswith("#")
            for r in rows(screen.paged.table)
        )
        shot = shown(app)
        assert "F5" not in shot and "F9" not in shot and "Esc" in shot
        await pilot.press("f5", "f9")
        await settle(pilot)
        assert screen.verify_result is None
        assert str(screen.query_one("#trail-mode", Static).render()) == "我的軌跡紀錄"


async def test_cdc_search_by_person_unit_action_and_date(demo: Demo, tmp_path: Path) -> None:
    services = demo[0]
    admin = account_of(services, tmp_path, "hpc")
    officer = account_of(services, tmp_path, "moica")
    app = app_with(demo)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_trail(pilot, services, admin)
        assert screen.is_cdc and screen.query_one("#trail-search").display
        person = screen.query_one("#trail-person", Input)
        person.value = services.accounts.person_id_for(officer)
        await pilot.press("f5")
        await settle(pilot)
        assert str(screen.query_one("#trail-mode", Static).render()) == "軌跡紀錄查詢結果"
        by_person = rows(screen.paged.table)
        own = services.control.own_trail(officer)
        assert len(by_person) == own.total
        person.value = ""
        screen.query_one("#trail-action", Select).value = "approve_request"
        await pilot.press("f5")
        await settle(pilot)
        approvals = rows(screen.paged.table)
        assert approvals and {r[2] for r in approvals} == {"核准申請"}
        screen.query_one("#trail-action", Select).value = ""
        clinic = Unit.get_by_id(Account.get_by_id(officer).unit_id)
        screen.query_one("#trail-unit", Input).value = clinic.code
        await pilot.press("f5")
        await settle(pilot)
        assert {r[4] for r in rows(screen.paged.table)} == {clinic.name}
        screen.query_one("#trail-unit", Input).value = ""
        today = to_roc((utcnow() + TAIWAN_OFFSET).date())
        screen.query_one("#trail-since", Input).value = today
        screen.query_one("#trail-until", Input).value = today
        await pilot.press("f5")
        await settle(pilot)
        assert screen.result is not None
        assert screen.result.total == AuditEvent.select().count()
        screen.query_one("#trail-until", Input).value = "2024/01/01"
        await pilot.press("f5")
        await settle(pilot)
        errors = screen.query_one("#trail-errors", Static)
        assert errors.display and "民國年" in str(errors.render())
        await pilot.click("#trail-own-button")
        await settle(pilot)
        assert str(screen.query_one("#trail-mode", Static).render()) == "我的軌跡紀錄"
        assert not errors.display


async def test_a_bureau_admin_cannot_search(demo: Demo, tmp_path: Path) -> None:
    services = demo[0]
    bureau_admin = make_bureau_admin(services, tmp_path)
    app = app_with(demo)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_trail(pilot, services, bureau_admin)
        assert not screen.is_cdc
        assert not screen.query_one("#trail-search").display
        screen.action_search()
        screen.action_verify()
        await settle(pilot)
        assert str(screen.query_one("#trail-mode", Static).render()) == "我的軌跡紀錄"
        assert screen.verify_result is None


async def test_verify_shows_the_result_and_a_tampered_row(demo: Demo, tmp_path: Path) -> None:
    services = demo[0]
    admin = account_of(services, tmp_path, "hpc")
    app = app_with(demo)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_trail(pilot, services, admin)
        await pilot.press("f9")
        await settle(pilot)
        line = screen.query_one("#trail-verify-result", Static)
        count = AuditEvent.select().count()
        assert str(line.render()) == f"軌跡紀錄完整：共驗證 {count} 筆"
        assert line.has_class("-ok")
        victim = AuditEvent.select().order_by(AuditEvent.id).offset(3).first()
        param = "%s" if "Postgres" in type(database_proxy.obj).__name__ else "?"
        database_proxy.obj.execute_sql(
            f"UPDATE audit_event SET details = {param} WHERE id = {param}",  # noqa: S608
            ('{"forged": true}', victim.id),
        )
        await pilot.click("#trail-verify-button")
        await settle(pilot)
        assert str(line.render()) == (
            f"軌跡紀錄遭竄改：第一筆異常紀錄 #{victim.id}（內容雜湊不符：此筆紀錄已被修改）；"
            "之前 3 筆正常"
        )
        assert line.has_class("-bad")


# ----------------------------------------------------------------------- snapshots


def freeze_trail(start: dt.datetime) -> None:
    """Every audit row at a fixed time (a minute apart), the chain hashed again: the
    trail looks the same on every run."""
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


async def _quiet(pilot: Pilot[None]) -> None:
    await settle(pilot)
    for field in pilot.app.screen.query(Input):
        field.cursor_blink = False
    await pilot.pause()


def test_account_control_snapshot(snap_compare: SnapCompare, demo: Demo, tmp_path: Path) -> None:
    services = demo[0]
    admin = account_of(services, tmp_path, "hpc")
    set_idle(account_of(services, tmp_path, "expired"), 160)

    async def run_before(pilot: Pilot[None]) -> None:
        screen = await open_control(pilot, services, admin)
        choose(screen, account_of(services, tmp_path, "moica"))
        await _quiet(pilot)

    assert snap_compare(app_with(demo), terminal_size=(100, 30), run_before=run_before)


def test_audit_trail_snapshot(snap_compare: SnapCompare, demo: Demo, tmp_path: Path) -> None:
    services = demo[0]
    admin = account_of(services, tmp_path, "hpc")
    freeze_trail(dt.datetime(2024, 7, 26, 1, 0, 0))

    async def run_before(pilot: Pilot[None]) -> None:
        await open_trail(pilot, services, admin)
        await pilot.press("f9")
        await _quiet(pilot)

    assert snap_compare(app_with(demo), terminal_size=(100, 30), run_before=run_before)


@pytest.mark.parametrize("language", ["en"])
async def test_english(demo: Demo, tmp_path: Path, language: str) -> None:
    services = demo[0]
    admin = account_of(services, tmp_path, "hpc")
    app = app_with(demo)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        screen = AccountControlScreen(services, services.accounts.view(admin), language)
        await app.push_screen(screen)
        await settle(pilot)
        shot = shown(app)
        assert "Account control (units below)" in shot and "Disable account" in shot
        await pilot.press("escape")
        trail = AuditTrailScreen(services, services.accounts.view(admin), language)
        await app.push_screen(trail)
        await settle(pilot)
        assert "My audit trail" in shown(app)
