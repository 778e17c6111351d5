"""審核結果 on home and in 個人資料維護 → 權限: the demo's "moica" account (a clinic's
個人防護裝備 承辦人 and 流感抗病毒藥劑 瀏覽者, approved by the CDC 管理者 "hpc") asked for
個人防護裝備 管理者 and was refused with a long reason, and lost 流感抗病毒藥劑 from
above with a reason in markup. Another applicant ("moica2") was refused too: their
reason must never show here."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from models.db import write_transaction
from models.schema import Account, PermissionRequest, Role, Unit
from smis_tui.app import SmisApp
from smis_tui.screens.home import HomeScreen
from smis_tui.screens.profile import ProfileScreen
from smis_tui.services import Services
from smis_tui.services.accounts import RoleChoice
from smis_tui.widgets.decisions import DecisionList
from smis_tui.widgets.prose import Prose
from tests.helpers import owner_proof
from tests.layout import layout_faults
from tests.tui.conftest import Demo, demo_proof, log_in, open_as, settle
from tests.tui.test_abuse_tui import PASTES, shown

ESC = "\x1b"
LONG_REASON = (
    "[b]所附在職證明已逾三個月[/b]，"
    + "請重新檢附最近三個月內由單位人事單位開立之在職證明，並由單位主管核章後再行申請。" * 8
)[:480] + f"{ESC}[31m紅字{ESC}[0m"
MARKUP_REASON = "[red]x[/] 已調離防疫業務"
OTHERS_REASON = "只屬於另一位申請人的原因"
SIZES = [(80, 24), (120, 36)]
LANGUAGES = ["zh_TW", "en"]


@dataclass(frozen=True)
class Decided:
    account_id: int
    cdc_name: str


@pytest.fixture
def decided(demo: Demo, demo_accounts: dict[str, int]) -> Decided:
    services: Services = demo[0]
    moica, hpc = demo_accounts["moica"], demo_accounts["hpc"]
    view = services.accounts.view(moica)
    (asked,) = services.accounts.request_changes(
        moica, {"ppe": RoleChoice(Role.ADMIN)}, view.version, owner_proof(services, moica)
    )
    services.review.reject(hpc, asked, LONG_REASON.replace(ESC, ""))
    # An escape sequence cannot be typed in as a reason; stored one all the same, it must
    # still show as text.
    with write_transaction():
        PermissionRequest.update(reason=LONG_REASON).where(PermissionRequest.id == asked).execute()
    flu = next(r.id for r in services.accounts.view(moica).granted() if r.category_code != "ppe")
    services.control.disable_permission(
        hpc, moica, flu, Account.get_by_id(moica).version, MARKUP_REASON
    )
    others = services.accounts.view(demo_accounts["moica2"]).pending()[0]
    services.review.reject(hpc, others.id, OTHERS_REASON)
    cdc = Unit.get_by_id(Account.get_by_id(hpc).unit_id)
    return Decided(moica, cdc.name)


def shown_texts(screen: HomeScreen | ProfileScreen) -> list[str]:
    decisions = screen.query_one("#decisions", DecisionList)
    return [prose.text for prose in decisions.query(Prose).results(Prose)]


async def on_screen(pilot: Pilot[None], widget_id: str) -> str:
    """The screen as a picture, once ``widget_id`` has been scrolled into view."""
    pilot.app.screen.query_one(widget_id).scroll_visible(animate=False, top=True)
    await settle(pilot)
    return pilot.app.export_screenshot()


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("size", SIZES)
async def test_home_tells_what_was_refused_and_withdrawn(
    demo: Demo, decided: Decided, size: tuple[int, int], language: str
) -> None:
    services, runtime, cards = demo
    with write_transaction():
        Account.update(language=language).execute()
    async with SmisApp(services, runtime, demo_cards=cards).run_test(size=size) as pilot:
        await settle(pilot)
        await log_in(pilot, "moica")
        screen = pilot.app.screen
        assert isinstance(screen, HomeScreen)
        assert layout_faults(screen) == []
        assert screen.query_one("#decisions-title", Static).display
        revoked, rejected = shown_texts(screen)
        if language == "zh_TW":
            assert revoked.startswith("已停用（")
            assert "流感抗病毒藥劑 瀏覽者" in revoked
            assert f"由{decided.cdc_name}管理者停用" in revoked
            assert rejected.startswith("未通過（")
            assert "個人防護裝備 管理者" in rejected
            assert f"由{decided.cdc_name}管理者審核" in rejected
        else:
            assert revoked.startswith("Disabled (")
            assert "Influenza antivirals, Viewer" in revoked
            assert f"Disabled by the administrators of {decided.cdc_name}" in revoked
            assert rejected.startswith("Not approved (")
        assert revoked.endswith(MARKUP_REASON)
        assert "[31m紅字[0m" in rejected and ESC not in rejected
        picture = await on_screen(pilot, "#decisions")
        assert "[red]x[/]" in picture
        assert OTHERS_REASON not in "".join(shown_texts(screen)) + picture


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("size", SIZES)
async def test_profile_permissions_list_every_decision(
    demo: Demo, decided: Decided, size: tuple[int, int], language: str
) -> None:
    services, runtime, cards = demo
    async with SmisApp(services, runtime, demo_cards=cards).run_test(size=size) as pilot:
        screen = await open_as(
            pilot,
            services,
            ProfileScreen,
            decided.account_id,
            language,
            cards=runtime,
            proof=demo_proof(demo, "moica"),
        )
        await pilot.press("f3")
        await settle(pilot)
        assert layout_faults(screen) == []
        texts = shown_texts(screen)
        states = ["已停用", "未通過", "已核准"] if language == "zh_TW" else []
        states = states or ["Disabled", "Not approved", "Approved"]
        # Newest first: the withdrawal, the refusal, then the approval still in force.
        assert [text.split("（" if language == "zh_TW" else " (")[0] for text in texts] == states
        assert texts[1].count("所附在職證明") == 1 and "[b]" in texts[1]
        picture = await on_screen(pilot, "#decisions")
        assert "[red]x[/]" in picture
        assert OTHERS_REASON not in picture


async def test_home_without_refusals_shows_no_decision_section(demo: Demo) -> None:
    services, runtime, cards = demo
    async with SmisApp(services, runtime, demo_cards=cards).run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await log_in(pilot, "moica")
        screen = pilot.app.screen
        assert isinstance(screen, HomeScreen)
        assert not screen.query_one("#decisions-title", Static).display
        assert "審核結果" not in pilot.app.export_screenshot()


async def test_home_shows_the_newest_refusals_and_says_where_the_rest_are(
    demo: Demo, decided: Decided, demo_accounts: dict[str, int]
) -> None:
    services, runtime, cards = demo
    moica, hpc = decided.account_id, demo_accounts["hpc"]
    for reason in ("第二次未通過", "第三次未通過", "最新的未通過"):
        view = services.accounts.view(moica)
        (asked,) = services.accounts.request_changes(
            moica, {"ppe": RoleChoice(Role.ADMIN)}, view.version, owner_proof(services, moica)
        )
        services.review.reject(hpc, asked, reason)
    async with SmisApp(services, runtime, demo_cards=cards).run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await log_in(pilot, "moica")
        screen = pilot.app.screen
        assert isinstance(screen, HomeScreen)
        texts = shown_texts(screen)
        assert [text.rsplit("：", 1)[-1] for text in texts] == [
            "最新的未通過",
            "第三次未通過",
            "第二次未通過",
        ]
        more = screen.query_one("#decisions-more", Prose)
        assert more.display
        assert more.text == "另有 2 筆較早的審核結果，請至「個人資料維護」→「權限」查看"
        assert layout_faults(screen) == []
        # The keys reach what does not fit at 80×24: Tab to the page, End to its foot.
        assert "第二次未通過" not in shown(pilot.app)
        await pilot.press("tab")
        await settle(pilot)
        assert pilot.app.focused is screen.query_one("#home")
        await pilot.press("end")
        await settle(pilot)
        assert "原因：第二次未通過" in shown(pilot.app)


async def test_stored_hostile_reasons_reach_the_screen_as_plain_text(
    demo: Demo, decided: Decided
) -> None:
    """Reasons as an older version or a hand-edited database could hold them: markup,
    escape sequences, bidi and zero-width tricks. The screen carries none of what a
    terminal acts on, and the markup reads as typed."""
    services, runtime, cards = demo
    revoked, rejected, _approved = (
        d.request_id for d in services.accounts.view(decided.account_id).decisions
    )
    with write_transaction():
        for request_id, reason in ((revoked, PASTES[0]), (rejected, PASTES[1])):
            PermissionRequest.update(reason=reason).where(
                PermissionRequest.id == request_id
            ).execute()
    async with SmisApp(services, runtime, demo_cards=cards).run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await log_in(pilot, "moica")
        pilot.app.screen.query_one("#decisions").scroll_visible(animate=False, top=True)
        await settle(pilot)
        text = shown(pilot.app)
        assert "[bold red]紅[/]" in text
        assert "[link=https://evil.example/]x[/link]" in text
