"""申請審核中 in full: an applicant whose application is under review logs in with their
card and sees each request, where it stands and which unit's 管理者 decides it.

Demo (smis_tui/demo.py): ``moica2`` applied at a health bureau for 管理者 of 個人防護裝備
and of 新興傳染病用藥 (COVID-19); ``hpc`` is the CDC 管理者 of every category, the only
one above the bureau who can decide them."""

from __future__ import annotations

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Static

from card.identity import identity_from_certificate
from models.schema import Account, Unit
from smis_tui.app import SmisApp
from smis_tui.core.domain import Role, UnitKind
from smis_tui.screens.application_status import ApplicationStatusDialog
from smis_tui.services.accounts import RoleChoice
from smis_tui.services.card_proof import CardProof
from smis_tui.text import t
from tests.helpers import card_identity, form, new_person_id
from tests.layout import layout_faults
from tests.tui.conftest import (
    Demo,
    card,
    kiosk,
    log_in,
    open_screen,
    press,
    remove,
    settle,
)
from tests.tui.test_english import assert_english, data_values, screen_text

SIZES = [(80, 24), (100, 30)]
LANGUAGES = ["zh_TW", "en"]
REASON = "局內已有管理者，請改申請承辦人"


def bureau() -> Unit:
    """moica2's unit (the demo's first health bureau handling 新興傳染病用藥)."""
    return Account.get(Account.name == "周怡君").unit  # type: ignore[no-any-return]


def cdc() -> Unit:
    return Unit.get(Unit.kind == UnitKind.CDC)  # type: ignore[no-any-return]


def requests_shown(dialog: ApplicationStatusDialog) -> list[str]:
    """Each request block of the dialog as its lines, joined by " | "."""
    return [
        " | ".join(str(line.content) for line in block.query(Static))
        for block in dialog.query(".status-request")
    ]


async def log_in_pending(pilot: Pilot[None], language: str = "zh_TW") -> ApplicationStatusDialog:
    if language == "en":
        await press(pilot, "f3")  # the login screen's English
    await log_in(pilot, "moica2")
    dialog = pilot.app.screen
    assert isinstance(dialog, ApplicationStatusDialog)
    return dialog


def reject_ppe(demo: Demo, reason: str = REASON) -> None:
    """The CDC 管理者 rejects moica2's 個人防護裝備 request in 審核."""
    services = demo[0]
    applicant = Account.get(Account.name == "周怡君").id
    admin = Account.get(Account.name == card(demo[2], "hpc").holder).id
    ppe = next(r for r in services.accounts.view(applicant).pending() if r.category_code == "ppe")
    services.review.reject(admin, ppe.id, reason)


async def test_pending_applicant_sees_each_request_and_who_decides_it(demo: Demo) -> None:
    async with kiosk(demo) as pilot:
        dialog = await log_in_pending(pilot)
        unit, decider = bureau().name, cdc().name
        assert requests_shown(dialog) == [
            f"個人防護裝備 管理者 | 審核中 | 申請單位：{unit} | 由{decider}管理者審核",
            f"新興傳染病用藥 管理者(COVID-19) | 審核中 | 申請單位：{unit} | 由{decider}管理者審核",
        ]
        shot = screen_text(pilot.app)
        # The seed's own message and hint stay, above the requests.
        assert "登入失敗，員工檔無資料或帳號未啟用" in shot
        assert "申請審核中，無須再次申請" in shot
        assert f"由{decider}管理者審核" in shot


async def test_a_rejection_shows_not_approved_and_its_reason(demo: Demo) -> None:
    async with kiosk(demo) as pilot:
        dialog = await log_in_pending(pilot)
        assert "未通過" not in screen_text(pilot.app)
        await press(pilot, "escape")
        app = pilot.app
        assert app.screen is app.login_screen

        reject_ppe(demo)
        # The card is still in: its holder types the PIN again.
        assert app.login_screen.query_one("#pin", Input).has_focus
        await press(pilot, *card(demo[2], "moica2").pin, "enter")
        dialog = app.screen
        assert isinstance(dialog, ApplicationStatusDialog)
        ppe, emerging = requests_shown(dialog)
        assert ppe.startswith("個人防護裝備 管理者 | 未通過 ")
        assert ppe.endswith(f"由{cdc().name}管理者審核 | 未通過原因：{REASON}")
        assert "| 審核中 |" in emerging
        shot = screen_text(app)
        assert f"未通過原因：{REASON}" in shot


async def test_text_from_the_database_is_never_markup(demo: Demo) -> None:
    async with kiosk(demo) as pilot:
        reject_ppe(demo, "[b]重複申請[/b] [link=https://x.example]詳見[/link]")
        await log_in_pending(pilot)
        assert "未通過原因：[b]重複申請[/b] [link=https://x.example]詳見[/link]" in screen_text(
            pilot.app
        )


async def test_closing_goes_back_to_a_cleared_login(demo: Demo) -> None:
    async with kiosk(demo) as pilot:
        await log_in_pending(pilot)
        app: SmisApp = pilot.app  # type: ignore[assignment]
        app.screen.query_one("#status-close").press()
        await settle(pilot)
        assert app.screen is app.login_screen
        assert app.login_screen.proof is None  # the card must log in again
        assert app.login_screen.query_one("#pin", Input).value == ""
        assert app.login_screen.query_one("#pin", Input).has_focus


async def test_the_card_taken_out_closes_it(demo: Demo) -> None:
    async with kiosk(demo) as pilot:
        await log_in_pending(pilot)
        remove(pilot.app.cards)
        await settle(pilot)
        assert pilot.app.screen is pilot.app.login_screen
        assert "申請單位" not in screen_text(pilot.app)


async def test_a_made_up_proof_shows_nobody(demo: Demo) -> None:
    """The dialog opened with a made-up proof of moica2's own card: the refusal, none of
    the requests."""
    services, runtime, _ = demo
    assert runtime.demo_pki is not None
    pem = (runtime.demo_pki / "users" / "moica2.pem").read_bytes()
    forged = CardProof(identity_from_certificate(pem), token="made-up")
    async with kiosk(demo) as pilot:
        dialog = await open_screen(
            pilot, ApplicationStatusDialog(services.accounts, forged, "zh_TW", "")
        )
        assert requests_shown(dialog) == []
        shot = screen_text(pilot.app)
        assert t("error.card_proof_expired") in shot
        assert bureau().name not in shot


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_it_fits(demo: Demo, size: tuple[int, int], language: str) -> None:
    reason = "本局已有管理者，" * 6  # long enough to wrap
    reject_ppe(demo, reason)
    async with kiosk(demo, size) as pilot:
        dialog = await log_in_pending(pilot, language)
        assert len(requests_shown(dialog)) == 2
        assert layout_faults(dialog) == []
        if language == "en":
            assert_english(pilot.app, [reason, *data_values(demo[2])], "application status")
            assert "Under review" in screen_text(pilot.app)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_many_requests_scroll_and_close_stays_in_view(
    demo: Demo, size: tuple[int, int], language: str
) -> None:
    """An applicant for every category of their bureau: the requests scroll, the
    message and 關閉 stay on screen."""
    services = demo[0]
    person_id = new_person_id()
    own_card = card_identity(person_id)
    categories = ("ppe", "flu_antiviral", "epidemic_drugs", "antivenom", "biosafety", "hiv_tb")
    roles = {code: RoleChoice(Role.OFFICER) for code in categories}
    services.accounts.apply(
        form(person_id, bureau(), roles), services.accounts.proofs.issue(own_card)
    )
    proof = services.accounts.proofs.issue(own_card)
    async with kiosk(demo, size) as pilot:
        message = t("login.no_account", language)
        dialog = await open_screen(
            pilot, ApplicationStatusDialog(services.accounts, proof, language, message)
        )
        await settle(pilot)
        assert len(requests_shown(dialog)) == len(categories)
        assert layout_faults(dialog) == []
        close = dialog.query_one("#status-close")
        assert close.region.bottom <= size[1] and close.has_focus
        assert message in screen_text(pilot.app)
        await press(pilot, "enter")
        assert pilot.app.screen is pilot.app.login_screen
