"""The 軌跡紀錄 screen names people by name and account number, never by any part of
their ID: not on a person's own trail, not on the CDC 管理者's (demo accounts of
tests/tui/test_control_screens.py)."""

from __future__ import annotations

import re
import stat
from typing import cast

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Static

from models.schema import Account
from smis_tui.app import SmisApp
from smis_tui.screens.audit_trail import AuditTrailScreen
from smis_tui.services.auth import RefusedWhy
from smis_tui.widgets.dialogs import MessageDialog
from tests.tui.conftest import Demo, opened_as, settle
from tests.tui.test_control_screens import Accounts, opened_trail, rows, search, shown


def _id_parts(person_id: str) -> set[str]:
    """The ID's masks of this and earlier versions, and every run of three or more of
    its characters after the letter (shorter runs are found in account numbers)."""
    tail = person_id[1:]
    runs = {tail[i:j] for i in range(len(tail)) for j in range(i + 3, len(tail) + 1)}
    return runs | {
        f"{person_id[:3]}****{person_id[-3:]}",
        f"{person_id[:2]}******{person_id[-2:]}",
        person_id[-2:] + "）",
    }


async def test_own_and_cdc_trails_show_names_and_account_numbers_not_ids(
    demo: Demo, demo_accounts: Accounts
) -> None:
    services = demo[0]
    officer, cdc = demo_accounts["moica"], demo_accounts["hpc"]
    names = {who: Account.get_by_id(who).name for who in (officer, cdc)}
    parts = set().union(
        *(_id_parts(services.accounts.person_id_for(who)) for who in (officer, cdc))
    )
    async with opened_trail(demo, officer) as (_pilot, screen):
        own = rows(screen.paged.table)
    # The CDC 管理者 looks the officer up by their full ID.
    async with opened_trail(demo, cdc) as (pilot, screen):
        screen.query_one("#trail-person", Input).value = services.accounts.person_id_for(officer)
        await search(pilot)
        searched = rows(screen.paged.table)
    for table in (own, searched):
        people = [cell for row in table for cell in (row[1], row[3])]
        # An actor with their unit, a target with what about them changed.
        assert f"{names[cdc]} #{cdc}（衛生福利部疾病管制署）" in people
        assert any(cell.startswith(f"{names[officer]} #{officer}") for cell in people)
        assert not any("*" in cell for cell in people)
        assert not any(part in cell for cell in people for part in parts)


# ----------------------------------------------------------------------- issue 20, item 7

SIZES = [(80, 24), (120, 36)]
LANGUAGES = ["zh_TW", "en"]
CDC_UNIT = "衛生福利部疾病管制署"


def _text(pilot: Pilot[None]) -> str:
    """The screen's text as read, the picture's markup left out."""
    return re.sub(r"<[^>]+>", "", shown(cast(SmisApp, pilot.app)))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("language", LANGUAGES)
async def test_every_action_is_named_in_the_readers_language(
    demo: Demo, demo_accounts: Accounts, language: str, size: tuple[int, int]
) -> None:
    """「set_language」 showed raw; now it, like every action, reads as words."""
    services = demo[0]
    officer = demo_accounts["moica"]
    services.accounts.set_language(officer, "en")
    async with opened_as(demo, AuditTrailScreen, officer, language, size) as (pilot, screen):
        await settle(pilot)
        table = rows(screen.paged.table)
        screenshot = shown(pilot.app)
    name, change = {
        "zh_TW": ("變更語言", "中文 → English"),
        "en": ("Language changed", "中文 → English"),
    }[language]
    assert table[0][2] == name and table[0][5] == change
    assert name in screenshot
    actions = {row[2] for row in table}
    assert not any("_" in action for action in actions), actions


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("language", LANGUAGES)
async def test_a_decision_names_the_person_category_role_and_the_change(
    demo: Demo, demo_accounts: Accounts, language: str, size: tuple[int, int]
) -> None:
    officer, cdc = demo_accounts["moica"], demo_accounts["hpc"]
    officer_name, cdc_name = (Account.get_by_id(who).name for who in (officer, cdc))
    async with opened_as(demo, AuditTrailScreen, officer, language, size) as (pilot, screen):
        await settle(pilot)
        table = rows(screen.paged.table)
    words = {
        "zh_TW": (
            "核准申請",
            f"{cdc_name} #{cdc}（{CDC_UNIT}）",
            "個人防護裝備 承辦人",
            "審核中 → 已核准",
        ),
        "en": (
            "Request approved",
            f"{cdc_name} #{cdc} ({CDC_UNIT})",
            "Personal protective equipment Officer",
            "under review → approved",
        ),
    }[language]
    decisions = [row for row in table if row[2] == words[0]]
    assert decisions, table
    assert all(row[1] == words[1] for row in decisions)
    assert f"{officer_name} #{officer} · {words[2]}" in [row[3] for row in decisions]
    assert all(row[5].startswith(words[3]) for row in decisions)


async def test_a_long_reason_is_read_whole_in_the_detail_view(
    demo: Demo, demo_accounts: Accounts
) -> None:
    services = demo[0]
    officer, cdc = demo_accounts["moica"], demo_accounts["hpc"]
    reason = "此權限停用原因很長，" * 12 + "[b]不是標記[/b]結尾"
    request = services.accounts.view(officer).granted()[0]
    services.control.disable_permission(
        cdc, officer, request.id, Account.get_by_id(officer).version, reason
    )
    async with opened_trail(demo, officer) as (pilot, screen):
        await settle(pilot)
        table = screen.paged.table
        assert reason not in shown(pilot.app)  # the column shows its start only
        newest = screen.result.rows[0] if screen.result else None
        assert newest is not None and newest.action == "disable_permission"
        table.move_cursor(row=table.get_row_index(str(newest.id)))
        table.focus()
        await pilot.press("enter")
        await settle(pilot)
        dialog = pilot.app.screen
        assert isinstance(dialog, MessageDialog)
        assert reason in dialog.message
        assert dialog.title_text == f"軌跡紀錄 #{newest.id}"
        assert "動作：停用權限" in dialog.message
        assert "[b]不是標記[/b]結尾" in shown(pilot.app).replace("\n", "")
        await pilot.press("escape")
        await settle(pilot)
        assert pilot.app.screen is screen


@pytest.mark.parametrize("language", LANGUAGES)
async def test_refused_logins_are_named_in_words(
    demo: Demo, demo_accounts: Accounts, language: str
) -> None:
    services = demo[0]
    officer, cdc = demo_accounts["moica"], demo_accounts["hpc"]
    officer_name = Account.get_by_id(officer).name
    services.login.record_refusal(
        RefusedWhy.WRONG_PIN,
        account_id=officer,
        card_kind="moica",
        cert_sha256="ab" * 32,
        tries_left=2,
    )
    services.login.record_refusal(
        RefusedWhy.UNKNOWN_CARD, account_id=None, card_kind="moica", cert_sha256="cd" * 32
    )
    async with opened_as(demo, AuditTrailScreen, cdc, language) as (pilot, screen):
        await settle(pilot)
        await search(pilot)
        table = rows(screen.paged.table)
    unknown, wrong = table[0], table[1]
    if language == "zh_TW":
        assert unknown[2] == wrong[2] == "登入遭拒"
        assert unknown[3] == "卡片 cdcdcdcd（自然人憑證）" and unknown[5] == "卡片未綁定任何帳號"
        assert wrong[3] == f"{officer_name} #{officer}"
        assert wrong[5] == "卡片密碼錯誤；尚可嘗試 2 次"
        assert wrong[1].startswith("櫃台 ")
        assert "建立疾管署管理者" in [row[2] for row in table]
        assert "cli" not in [row[1] for row in table]  # the command line, in words
    else:
        assert unknown[2] == wrong[2] == "Login refused"
        assert unknown[5] == "card bound to no account"
        assert wrong[5] == "wrong PIN; 2 tries left"
        assert wrong[1].startswith("kiosk ")


@pytest.mark.parametrize("size", SIZES)
async def test_a_cdc_admin_exports_the_search_as_csv(
    demo: Demo, demo_accounts: Accounts, size: tuple[int, int]
) -> None:
    services = demo[0]
    cdc = demo_accounts["hpc"]
    async with opened_as(demo, AuditTrailScreen, cdc, "zh_TW", size) as (pilot, screen):
        await settle(pilot)
        assert "匯出" not in shown(pilot.app)  # offered once a search is on screen
        await search(pilot)
        assert "F6 匯出" in _text(pilot)
        await pilot.press("f6")
        await settle(pilot)
        line = str(screen.query_one("#trail-export-result", Static).render())
        exported = screen.exported
    assert exported is not None and str(exported.path) in line.replace("\n", "")
    assert exported.path.parent == services.settings.data_dir / "exports"
    text = exported.path.read_bytes()
    assert text.startswith(b"\xef\xbb\xbf") and "時間,操作者".encode() in text
    assert stat.S_IMODE(exported.path.stat().st_mode) == 0o600


async def test_export_is_not_offered_to_anyone_but_a_cdc_admin(
    demo: Demo, demo_accounts: Accounts
) -> None:
    services = demo[0]
    async with opened_trail(demo, demo_accounts["moica"]) as (pilot, screen):
        await settle(pilot)
        await pilot.press("f6")
        await settle(pilot)
        assert "匯出" not in shown(pilot.app)
        assert screen.exported is None
    assert not (services.settings.data_dir / "exports").exists()
