"""An applicant whose every request was rejected (issue 20, item 6), as the people
at the kiosk see it: 帳號管理 says 已退回, not 審核中, and typing the ID again opens a
fresh application form with one line saying why (never the reviewer's reason)."""

from __future__ import annotations

import pytest

from models.schema import Account
from smis_tui.screens.account_control import AccountControlScreen
from smis_tui.screens.application_form import ApplicationFormScreen
from tests.tui.conftest import Demo, kiosk, opened_as, settle
from tests.tui.test_control_screens import Accounts, rows, shown
from tests.tui.test_new_account import open_application

LANGUAGES = ["zh_TW", "en"]


@pytest.mark.parametrize("size", [(80, 24), (120, 36)])
@pytest.mark.parametrize("language", LANGUAGES)
async def test_an_applicant_rejected_in_full_shows_as_rejected_in_account_control(
    demo: Demo, demo_accounts: Accounts, language: str, size: tuple[int, int]
) -> None:
    services = demo[0]
    applicant, cdc = demo_accounts["moica2"], demo_accounts["hpc"]
    for request in services.accounts.view(applicant).pending():
        services.review.reject(cdc, request.id, "非本單位人員")
    name = Account.get_by_id(applicant).name
    async with opened_as(demo, AccountControlScreen, cdc, language, size) as (pilot, screen):
        await settle(pilot)
        table = rows(screen.paged.table)
    row = next(r for r in table if r[0] == name)
    assert row[-1] == {"zh_TW": "已退回", "en": "Rejected"}[language]
    assert "審核中" not in row[-1] and "Under review" not in row[-1]


async def test_re_entering_a_rejected_id_opens_a_fresh_form_saying_why(
    demo: Demo, demo_accounts: Accounts
) -> None:
    services = demo[0]
    applicant, cdc = demo_accounts["moica2"], demo_accounts["hpc"]
    for request in services.accounts.view(applicant).pending():
        services.review.reject(cdc, request.id, "非本單位人員")
    person_id = services.accounts.person_id_for(applicant)
    async with kiosk(demo) as pilot:
        await open_application(pilot, person_id, "金門縣衛生局")
        form_screen = pilot.app.screen
        assert isinstance(form_screen, ApplicationFormScreen) and form_screen.mode == "new"
        assert "此身分證號先前的申請均已退回，請重新填寫申請。" in shown(pilot.app)
        assert "非本單位人員" not in shown(pilot.app)  # the reason is for the card only
