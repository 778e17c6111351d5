"""The administrator's screens as issue 20 found them (items 10–12): 帳号管理 says
before the confirmation that disabling the last permission disables the account; a
reason field shows its limit and refuses what does not fit in words; the idle column
and the trail's date fields say what is true today. Over the demo (described in
test_control_screens.py), at 80×24 in both languages and at 120×36."""

from __future__ import annotations

import datetime as dt

import pytest
from textual import events
from textual.geometry import Region
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import DataTable, Input, Select, Static
from textual.widgets._select import SelectCurrent, SelectOverlay

from models.db import write_transaction
from models.schema import Account, utcnow
from smis_tui.core import clock
from smis_tui.core.domain import AccountStatus
from smis_tui.screens.account_control import AccountControlScreen
from smis_tui.screens.audit_trail import AuditTrailScreen
from smis_tui.screens.reason_dialog import ReasonDialog
from tests.helpers import set_idle
from tests.layout import layout_faults
from tests.tui.conftest import Demo, opened_as, settle
from tests.tui.test_control_screens import Accounts, choose, dialog_text, give_reason, rows

LANGUAGES = ("zh_TW", "en")
SMALL = (80, 24)
LARGE = (120, 36)

LAST_PERMISSION_WARNING = {
    "zh_TW": "這是最後一項權限，帳號將一併停用",
    "en": "It is their last one, so the account will be disabled too",
}
LAST_PERMISSION_PROMPT = {
    "zh_TW": "這是此帳號最後一項權限：帳號將一併停用",
    "en": "It is their last one: the account is disabled with it",
}


# ----------------------------------------------------------------------- item 10


@pytest.mark.parametrize("language", LANGUAGES)
async def test_the_last_permission_warns_that_the_account_goes_too(
    demo: Demo, demo_accounts: Accounts, language: str
) -> None:
    viewer = demo_accounts["expired"]  # an active clinic 瀏覽者: one permission
    async with opened_as(demo, AccountControlScreen, demo_accounts["hpc"], language, SMALL) as (
        pilot,
        screen,
    ):
        choose(screen, viewer)
        await pilot.pause()
        screen.query_one("#control-permissions", DataTable).focus()
        await pilot.press("f6")
        await pilot.pause()
        prompt = pilot.app.screen
        assert isinstance(prompt, ReasonDialog)
        assert LAST_PERMISSION_PROMPT[language] in str(
            prompt.query_one("#reason-prompt", Static).render()
        )
        assert layout_faults(prompt) == []
        await give_reason(pilot, "不再負責")
        assert LAST_PERMISSION_WARNING[language] in dialog_text(pilot)
        assert layout_faults(pilot.app.screen) == []
        await pilot.click("#dialog-ok")
        await settle(pilot)
    assert Account.get_by_id(viewer).status == AccountStatus.DISABLED


async def test_a_permission_that_is_not_the_last_does_not_warn(
    demo: Demo, demo_accounts: Accounts
) -> None:
    officer = demo_accounts["moica"]  # 承辦人 and 瀏覽者
    async with opened_as(demo, AccountControlScreen, demo_accounts["hpc"], "zh_TW", LARGE) as (
        pilot,
        screen,
    ):
        choose(screen, officer)
        await pilot.pause()
        screen.query_one("#control-permissions", DataTable).focus()
        await pilot.press("f6")
        await pilot.pause()
        await give_reason(pilot, "不再負責")
        assert "帳號將一併停用" not in dialog_text(pilot)
        await pilot.press("escape")
        await settle(pilot)
    assert Account.get_by_id(officer).status == AccountStatus.ACTIVE


# ----------------------------------------------------------------------- item 12


def _last_seen(account_id: int, login_days: int | None, activated_days: int) -> None:
    now = utcnow()
    with write_transaction():
        Account.update(
            last_login_at=None if login_days is None else now - dt.timedelta(days=login_days),
            activated_at=now - dt.timedelta(days=activated_days),
        ).where(Account.id == account_id).execute()


IDLE = {
    "zh_TW": {"never": "從未登入", "days": "{} 天", "warning": "⚠ {} 天"},
    "en": {"never": "Never", "days": "{} d", "warning": "⚠ {} d"},
}


@pytest.mark.parametrize("language", LANGUAGES)
async def test_the_idle_column_says_never_and_counts_every_account(
    demo: Demo, demo_accounts: Accounts, language: str
) -> None:
    services = demo[0]
    _last_seen(demo_accounts["moica"], None, 3)  # activated 3 days ago, never logged in
    set_idle(demo_accounts["expired"], 160)
    _last_seen(demo_accounts["hpc2"], 200, 200)  # disabled by the 180-day rule
    names = {user: services.accounts.view(demo_accounts[user]).data.name for user in demo_accounts}
    words = IDLE[language]
    async with opened_as(demo, AccountControlScreen, demo_accounts["hpc"], language, SMALL) as (
        pilot,
        screen,
    ):
        idle = {row[0]: row[3] for row in rows(screen.paged.table)}
        assert idle[names["moica"]] == words["never"]
        assert idle[names["expired"]] == words["warning"].format(160)
        assert idle[names["hpc2"]] == words["days"].format(200)
        assert idle[names["moica2"]] == words["never"]  # an applicant under review
        assert layout_faults(screen) == []


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("size", [SMALL, LARGE])
async def test_the_inactive_filter_fits_on_one_line(
    demo: Demo, demo_accounts: Accounts, language: str, size: tuple[int, int]
) -> None:
    option = {"zh_TW": "超過 150 天未登入", "en": "No login > 150 days"}[language]
    async with opened_as(demo, AccountControlScreen, demo_accounts["hpc"], language, size) as (
        pilot,
        screen,
    ):
        status = screen.query_one("#control-status", Select)
        status.focus()
        await pilot.press("enter")  # the list of choices opens
        await settle(pilot)
        assert option in _rows_of(status.query_one(SelectOverlay))
        await pilot.press("escape")
        status.value = "inactive"
        await settle(pilot)
        assert option in _rows_of(status.query_one(SelectCurrent).query_one("#label"))
        assert layout_faults(screen) == []


def _rows_of(widget: Widget) -> str:
    """What ``widget`` shows, row by row (the intro names the filter too)."""
    lines = widget.render_lines(Region(0, 0, *widget.outer_size))
    return "\n".join(line.text for line in lines)


@pytest.mark.parametrize("language", LANGUAGES)
async def test_the_trail_dates_show_today_in_taiwan(
    demo: Demo, demo_accounts: Accounts, language: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 17:00 UTC on 3 December is already 4 December in Taiwan.
    moment = dt.datetime(2026, 12, 3, 17, 0, tzinfo=dt.UTC)
    monkeypatch.setattr(clock, "utc_now", lambda: moment)
    async with opened_as(demo, AuditTrailScreen, demo_accounts["hpc"], language, SMALL) as (
        pilot,
        screen,
    ):
        # Marked as an example, whole: not a filter already set to today.
        example = "例 115/12/04" if language == "zh_TW" else "e.g. 115/12/04"
        for field in ("#trail-since", "#trail-until"):
            assert example in _rows_of(screen.query_one(field, Input))
        assert layout_faults(screen) == []
    async with opened_as(demo, AuditTrailScreen, demo_accounts["hpc"], language, (120, 36)) as (
        pilot,
        screen,
    ):
        for field in ("#trail-since", "#trail-until"):
            assert example in _rows_of(screen.query_one(field, Input))
        assert layout_faults(screen) == []


# ----------------------------------------------------------------------- item 11


async def _reason_dialog(pilot: Pilot[None], screen: AccountControlScreen, account: int) -> Input:
    """F7 on ``account``: the reason dialog, its field focused."""
    choose(screen, account)
    await pilot.press("f7")
    await pilot.pause()
    assert isinstance(pilot.app.screen, ReasonDialog)
    field = pilot.app.screen.query_one("#reason-input", Input)
    assert field.has_focus
    return field


async def paste(pilot: Pilot[None], text: str) -> None:
    """``text`` pasted as the terminal delivers a (bracketed) paste."""
    pilot.app.post_message(events.Paste(text))
    await settle(pilot)


async def test_a_pasted_escape_sequence_is_kept_in_order_without_its_controls(
    demo: Demo, demo_accounts: Accounts
) -> None:
    async with opened_as(demo, AccountControlScreen, demo_accounts["hpc"], "zh_TW", SMALL) as (
        pilot,
        screen,
    ):
        field = await _reason_dialog(pilot, screen, demo_accounts["moica"])
        await pilot.press("B")
        await paste(pilot, "A\x1b[31mRED\x1b[0m")
        assert field.value == "BA[31mRED[0m"  # as typed, the ESC bytes left out


@pytest.mark.parametrize("language", LANGUAGES)
async def test_a_reason_shows_its_count_and_refuses_what_does_not_fit(
    demo: Demo, demo_accounts: Accounts, language: str
) -> None:
    async with opened_as(demo, AccountControlScreen, demo_accounts["hpc"], language, SMALL) as (
        pilot,
        screen,
    ):
        field = await _reason_dialog(pilot, screen, demo_accounts["moica"])
        dialog = pilot.app.screen
        count = dialog.query_one("#reason-count", Static)
        assert _rows_of(count).strip() == "0/500"
        await pilot.press(*"已離職")
        await settle(pilot)
        assert _rows_of(count).strip() == "3/500"
        await paste(pilot, "長" * 498)
        assert field.value == "已離職"  # 501 would not fit: nothing of it went in
        error = dialog.query_one("#reason-error", Static)
        assert error.display and "500" in _rows_of(error)
        assert _rows_of(count).strip() == "3/500"
        assert layout_faults(dialog) == []
        await paste(pilot, "長" * 497)
        assert field.value == "已離職" + "長" * 497
        assert _rows_of(count).strip() == "500/500"
        assert not error.display  # what was wrong is no longer
