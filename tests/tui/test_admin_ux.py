"""The administrator's screens as issue 20 found them (items 10–12): 帳号管理 says
before the confirmation that disabling the last permission disables the account; a
reason field shows its limit and refuses what does not fit in words; the idle column
and the trail's date fields say what is true today. Over the demo (described in
test_control_screens.py), at 80×24 in both languages and at 120×36."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Static

from models.schema import Account
from smis_tui.core.domain import AccountStatus
from smis_tui.screens.account_control import AccountControlScreen
from smis_tui.screens.reason_dialog import ReasonDialog
from tests.layout import layout_faults
from tests.tui.conftest import Demo, opened_as, settle
from tests.tui.test_control_screens import Accounts, choose, dialog_text, give_reason

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
