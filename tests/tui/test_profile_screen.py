"""個人資料維護 (ProfileScreen) driven through Pilot, on the demo accounts: the "moica"
card's account is active at a clinic with 個人防護裝備 承辦人 and 流感抗病毒藥劑 瀏覽者;
the "hpc" card's account is the CDC 管理者 of every category."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from textual.pilot import Pilot
from textual.widgets import Button, DataTable, Input, Static, TabbedContent

from card.identity import identity_from_certificate
from models.schema import Account, AccountStatus, CardBinding, RequestStatus, Role
from smis_tui.app import SmisApp
from smis_tui.demo import DemoCard
from smis_tui.screens.card_auth import CardAuthScreen
from smis_tui.screens.profile import TABS, ProfileScreen
from smis_tui.services import Services
from smis_tui.services.accounts import PersonalData, RoleChoice
from smis_tui.services.auth import LoginState
from smis_tui.services.card_runtime import CardRuntime
from smis_tui.widgets.dialogs import MessageDialog
from smis_tui.widgets.prose import ERROR_MARK
from smis_tui.widgets.role_grid import RoleGrid
from tests.helpers import owner_proof
from tests.tui.conftest import card, demo_proof, prove_with_card, settle

SIZE = (100, 30)
TALL = (100, 60)  # the whole permissions tab on screen, for clicks

Demo = tuple[Services, CardRuntime, list[DemoCard]]


def cert_sha256(tmp_path: Path, user: str) -> str:
    pem = (tmp_path / "demo-pki" / "users" / f"{user}.pem").read_bytes()
    return identity_from_certificate(x509.load_pem_x509_certificate(pem)).cert_sha256


def account_of(services: Services, tmp_path: Path, user: str) -> int:
    account = services.accounts.find_by_certificate(cert_sha256(tmp_path, user))
    assert account is not None
    return int(account.id)


class Host:
    """The app with the profile of the "moica" account pushed over the login screen."""

    def __init__(self, demo: Demo, tmp_path: Path) -> None:
        self.demo = demo
        self.services, self.runtime, self.cards = demo
        self.tmp_path = tmp_path
        self.account_id = account_of(self.services, tmp_path, "moica")
        self.app = SmisApp(self.services, self.runtime, demo_cards=self.cards)
        self.closed: list[ProfileScreen.Closed] = []

    async def open(self, pilot: Pilot[None], *, login_proof: bool = True) -> ProfileScreen:
        """The profile as after logging in with the "moica" card, whose proof it holds;
        without ``login_proof``, as once that proof has expired."""
        await settle(pilot)
        view = self.services.accounts.view(self.account_id)
        assert view.status == AccountStatus.ACTIVE
        proof = demo_proof(self.demo, "moica") if login_proof else None
        screen = ProfileScreen(self.services, view, "zh_TW", cards=self.runtime, proof=proof)
        self.app.push_screen(screen)
        await settle(pilot)
        assert self.app.screen is screen
        return screen


@pytest.fixture
def host(demo: Demo, tmp_path: Path) -> Host:
    return Host(demo, tmp_path)


def error_text(screen: ProfileScreen, field: str) -> str:
    """The error shown for ``field`` ("" for none), after the ✖ that marks it as one."""
    shown = str(screen.query_one(f"#error-{field}", Static).render())
    assert not shown or shown.startswith(ERROR_MARK), shown
    return shown.removeprefix(ERROR_MARK)


def text_of(screen: ProfileScreen, widget_id: str) -> str:
    return str(screen.query_one(f"#{widget_id}", Static).render())


async def answer(pilot: Pilot[None], ok: bool = True) -> str:
    """Press 確定 (or 取消) on the dialog on top; returns its message."""
    dialog = pilot.app.screen
    assert isinstance(dialog, MessageDialog), type(dialog)
    message = dialog.message
    await pilot.click("#dialog-ok" if ok else "#dialog-cancel")
    await settle(pilot)
    return message


def table_rows(screen: ProfileScreen) -> list[list[str]]:
    table = screen.query_one("#permissions", DataTable)
    return [[str(c) for c in table.owner_cells(i)] for i in range(table.row_count)]


async def to_permissions(pilot: Pilot[None], screen: ProfileScreen) -> None:
    await pilot.press("f3")
    await settle(pilot)
    assert screen.query_one("#profile-tabs", TabbedContent).active == "tab-permissions"


# ----- personal data ---------------------------------------------------------------


async def test_personal_data_is_prefilled_and_saved(host: Host) -> None:
    async with host.app.run_test(size=SIZE) as pilot:
        screen = await host.open(pilot)
        assert screen.query_one("#input-phone", Input).value == "02-23959825"
        assert screen.query_one("#input-phone-ext", Input).value == "1234"
        assert screen.query_one("#input-mobile", Input).value == "0912-345-678"
        assert screen.focused is screen.query_one("#input-name", Input)
        version = screen.view.version

        screen.query_one("#input-name", Input).value = ""
        await pilot.press(*"王大明")  # typed, key by key
        screen.query_one("#input-phone-ext", Input).value = ""
        screen.query_one("#input-email_backup", Input).value = "back@example.tw"
        await pilot.press("f9")
        await settle(pilot)

        view = host.services.accounts.view(host.account_id)
        assert view.data.name == "王大明"
        assert view.data.phone == "02-23959825"
        assert view.data.email_backup == "back@example.tw"
        assert view.version == version + 1
        assert screen.view.version == view.version
        assert text_of(screen, "personal-status") == "個人資料已更新。"
        assert "王大明" in text_of(screen, "profile-who")
        assert screen.changed


async def test_invalid_fields_keep_the_typed_value_and_say_why(host: Host) -> None:
    async with host.app.run_test(size=SIZE) as pilot:
        screen = await host.open(pilot)
        version = screen.view.version
        bad = {"name": "", "phone": "12345", "email": "not-an-email", "mobile": "0812"}
        for field, value in bad.items():
            screen.query_one(f"#input-{field}", Input).value = value
        await pilot.click("#save")
        await settle(pilot)

        assert "使用者姓名" in error_text(screen, "name")
        assert "主要連絡電話" in error_text(screen, "phone")
        assert "主要電子信箱" in error_text(screen, "email")
        assert "行動電話" in error_text(screen, "mobile")
        assert error_text(screen, "email_backup") == ""
        for field, value in bad.items():
            assert screen.query_one(f"#input-{field}", Input).value == value
            assert screen.query_one(f"#input-{field}", Input).has_class("-invalid")
        assert "修正" in text_of(screen, "personal-status")
        assert screen.focused is screen.query_one("#input-name", Input)
        view = host.services.accounts.view(host.account_id)
        assert view.version == version and view.data.name != ""
        assert not screen.changed

        # A field is checked again as the cursor leaves it.
        screen.query_one("#input-name", Input).value = "王小明"
        screen.query_one("#input-name", Input).focus()
        await pilot.press("tab")
        await settle(pilot)
        assert error_text(screen, "name") == ""


async def test_a_change_made_elsewhere_is_a_conflict_and_nothing_is_saved(host: Host) -> None:
    async with host.app.run_test(size=SIZE) as pilot:
        screen = await host.open(pilot)
        opened = screen.view
        # Another kiosk saves the same account meanwhile.
        elsewhere = PersonalData(
            "別處改的", opened.data.phone, "other@example.tw", "", "", opened.data.mobile
        )
        host.services.accounts.update_personal_data(
            host.account_id, opened.version, elsewhere, owner_proof(host.services, host.account_id)
        )

        screen.query_one("#input-name", Input).value = "我改的"
        await pilot.press("f9")
        await settle(pilot)
        message = await answer(pilot)
        assert "其他地方更新" in message and "沒有儲存" in message
        assert "使用者姓名" in message and "主要電子信箱" in message

        view = host.services.accounts.view(host.account_id)
        assert (view.data.name, view.data.email) == ("別處改的", "other@example.tw")
        assert view.version == opened.version + 1
        # What the user typed is kept; the screen now knows the latest version.
        assert screen.query_one("#input-name", Input).value == "我改的"
        assert screen.view.version == view.version


async def test_a_change_after_the_login_card_check_expired_asks_the_card(host: Host) -> None:
    """The login's card proof has run out: 儲存 asks the account's card (身份驗證 of
    個人資料維護), and with its PIN the change is saved."""
    async with host.app.run_test(size=SIZE) as pilot:
        screen = await host.open(pilot, login_proof=False)
        version = screen.view.version
        screen.query_one("#input-name", Input).value = "王大明"
        await pilot.press("f9")
        await settle(pilot)
        dialog = host.app.screen
        assert isinstance(dialog, CardAuthScreen)
        assert str(dialog.query_one(".dialog-title", Static).render()) == "個人資料維護"
        assert host.services.accounts.view(host.account_id).version == version

        await prove_with_card(pilot, host.runtime, card(host.cards, "moica"))
        assert host.app.screen is screen
        view = host.services.accounts.view(host.account_id)
        assert (view.data.name, view.version) == ("王大明", version + 1)
        assert text_of(screen, "personal-status") == "個人資料已更新。"
        assert screen.changed


async def test_another_persons_card_is_refused_in_the_dialog(host: Host) -> None:
    """At the 身份驗證 of a change, the card of someone else (the CDC 管理者's, bound to
    their own account) is refused where another card can be tried; the account stays
    as it was, and the next change asks the card again."""
    async with host.app.run_test(size=SIZE) as pilot:
        screen = await host.open(pilot, login_proof=False)
        before = screen.view
        screen.query_one("#input-name", Input).value = "冒名者"
        await pilot.press("f9")
        await settle(pilot)
        dialog = host.app.screen
        assert isinstance(dialog, CardAuthScreen)

        await prove_with_card(pilot, host.runtime, card(host.cards, "hpc"))
        assert host.app.screen is dialog
        assert "此卡片已綁定其他帳號" in host.app.export_screenshot()
        await pilot.press("escape")
        await settle(pilot)
        assert host.app.screen is screen
        assert not screen.query_one("#save", Button).disabled
        assert screen.query_one("#input-name", Input).value == "冒名者"
        assert not screen.changed
        await pilot.press("f9")
        await settle(pilot)
        assert isinstance(host.app.screen, CardAuthScreen)
    view = host.services.accounts.view(host.account_id)
    assert (view.data.name, view.version) == (before.data.name, before.version)


# ----- permissions -------------------------------------------------------------------


async def test_a_permission_change_goes_to_review_and_approval_grants_it(
    host: Host, tmp_path: Path
) -> None:
    async with host.app.run_test(size=TALL) as pilot:
        screen = await host.open(pilot)
        await to_permissions(pilot, screen)
        assert table_rows(screen) == [
            ["個人防護裝備", "承辦人", "已核准"],
            ["流感抗病毒藥劑", "瀏覽者", "已核准"],
        ]
        grid = screen.query_one(RoleGrid)
        assert grid.value == screen.view.current_choices()
        assert grid.value["ppe"] == RoleChoice(Role.OFFICER)

        # Nothing changed yet: the service says so beside the grid.
        await pilot.press("f10")
        await settle(pilot)
        assert "沒有任何權限異動" in text_of(screen, "error-roles")

        await pilot.click("#role-ppe-admin")
        await settle(pilot)
        assert grid.value["ppe"] == RoleChoice(Role.ADMIN)
        await pilot.click("#submit")
        await settle(pilot)
        assert await answer(pilot) == "已送出權限異動申請，請等待審核通過。"
        assert text_of(screen, "error-roles") == ""
        assert table_rows(screen)[-1] == ["個人防護裝備", "管理者", "審核中"]
        # The rebuilt grid shows the pending wish.
        assert screen.query_one(RoleGrid).value["ppe"] == RoleChoice(Role.ADMIN)

        (pending,) = host.services.accounts.view(host.account_id).pending()
        assert (pending.category_code, pending.role) == ("ppe", Role.ADMIN)
        admin_id = account_of(host.services, tmp_path, "hpc")
        host.services.review.approve(admin_id, pending.id)
        granted = host.services.accounts.view(host.account_id).granted()
        assert {(r.category_code, r.role) for r in granted} == {
            ("ppe", Role.ADMIN),
            ("flu_antiviral", Role.VIEWER),
        }


async def test_giving_up_one_permission(host: Host) -> None:
    async with host.app.run_test(size=TALL) as pilot:
        screen = await host.open(pilot)
        await to_permissions(pilot, screen)
        table = screen.query_one("#permissions", DataTable)
        table.focus()
        await pilot.press("down")
        await settle(pilot)
        assert str(screen.query_one("#drop", Button).label) == "放棄此權限"

        # 取消 leaves everything as it was.
        await pilot.press("enter")
        await settle(pilot)
        assert "流感抗病毒藥劑" in await answer(pilot, ok=False)
        assert len(host.services.accounts.view(host.account_id).granted()) == 2

        await pilot.click("#drop")
        await settle(pilot)
        message = await answer(pilot)
        assert "確定要放棄「流感抗病毒藥劑」的瀏覽者權限嗎" in message
        view = host.services.accounts.view(host.account_id)
        assert view.status == AccountStatus.ACTIVE
        assert [(r.category_code, r.role) for r in view.granted()] == [("ppe", Role.OFFICER)]
        assert table_rows(screen) == [["個人防護裝備", "承辦人", "已核准"]]
        assert "已放棄「流感抗病毒藥劑」的瀏覽者權限" in text_of(screen, "permissions-status")
        revoked = [r for r in view.requests if r.status == RequestStatus.REVOKED]
        assert [r.category_code for r in revoked] == ["flu_antiviral"]

        # Esc goes back and tells the screen below that something changed.
        below = host.app.screen_stack[-2]
        seen: list[ProfileScreen.Closed] = []
        post = below.post_message

        def record(message: object) -> bool:
            if isinstance(message, ProfileScreen.Closed):
                seen.append(message)
            return post(message)  # type: ignore[arg-type]

        below.post_message = record  # type: ignore[method-assign]
        await pilot.press("escape")
        await settle(pilot)
        below.post_message = post  # type: ignore[method-assign]
        assert host.app.screen is below
        assert len(seen) == 1 and seen[0].changed
        assert len(seen[0].view.granted()) == 1


# ----- disable and delete -------------------------------------------------------------


async def test_self_disable_logs_out_and_the_next_login_is_disabled(
    host: Host, tmp_path: Path
) -> None:
    async with host.app.run_test(size=SIZE) as pilot:
        screen = await host.open(pilot)
        await pilot.press("f5")
        await settle(pilot)
        await pilot.click("#disable")
        await settle(pilot)
        # 取消 has the focus: one stray Enter disables nothing.
        assert host.app.screen.query_one("#dialog-cancel").has_focus
        await pilot.press("enter")
        await settle(pilot)
        assert host.app.screen is screen
        assert host.services.accounts.view(host.account_id).status == AccountStatus.ACTIVE
        await pilot.click("#disable")
        await settle(pilot)
        assert "確定要停用帳號嗎" in await answer(pilot)
        assert await answer(pilot) == "您的帳號已停用。如需再次使用，請重新申請帳號。"
        assert host.app.screen is host.app.login_screen
        assert screen not in host.app.screen_stack

    view = host.services.accounts.view(host.account_id)
    assert (view.status, view.disabled_reason) == (AccountStatus.DISABLED, "self")
    assert view.granted() == ()
    outcome = host.services.login.outcome_for_certificate(cert_sha256(tmp_path, "moica"))
    assert outcome.state == LoginState.DISABLED
    assert outcome.message_key == "login.disabled"


async def test_deletion_erases_personal_data_and_login_is_impossible(
    host: Host, tmp_path: Path
) -> None:
    person_id = host.services.accounts.person_id_for(host.account_id)
    async with host.app.run_test(size=SIZE) as pilot:
        await host.open(pilot)
        await pilot.press("f6")
        await settle(pilot)
        text = text_of(host.app.screen, "delete-text")  # type: ignore[arg-type]
        assert "姓名" in text and "軌跡紀錄" in text
        await pilot.click("#delete")
        await settle(pilot)
        # 取消 first: nothing happens.
        await answer(pilot, ok=False)
        assert Account.get_by_id(host.account_id).status == AccountStatus.ACTIVE
        await pilot.click("#delete")
        await settle(pilot)
        message = await answer(pilot)
        assert "清除您的個人資料" in message and "無法復原" in message
        assert "個人資料已清除" in await answer(pilot)
        assert host.app.screen is host.app.login_screen

    account = Account.get_by_id(host.account_id)
    assert account.status == AccountStatus.DELETED
    assert (account.name, account.phone, account.email, account.mobile) == ("", "", "", "")
    assert account.person_id_cipher is None and account.person_id_index is None
    assert account.person_id_masked  # the trail's masked ID stays
    assert CardBinding.select().where(CardBinding.account == host.account_id).count() == 0
    assert (
        host.services.login.outcome_for_certificate(cert_sha256(tmp_path, "moica")).state
        == LoginState.NO_ACCOUNT
    )
    assert host.services.login.outcome_for_person(person_id).state == LoginState.NO_ACCOUNT
    assert host.services.audit.verify().ok


async def test_user_text_is_never_markup(host: Host) -> None:
    view = host.services.accounts.view(host.account_id)
    data = PersonalData("[bold]林[/bold]", view.data.phone, view.data.email, "", "", "")
    host.services.accounts.update_personal_data(
        host.account_id, view.version, data, owner_proof(host.services, host.account_id)
    )
    async with host.app.run_test(size=SIZE) as pilot:
        await host.open(pilot)
        assert "[bold]林[/bold]" in host.app.export_screenshot()


def test_profile_snapshot(snap_compare, demo: Demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    host = Host(demo, tmp_path)

    async def run_before(pilot: Pilot[None]) -> None:
        screen = await host.open(pilot)
        for widget in screen.query(Input).results(Input):
            widget.cursor_blink = False  # a blinking cursor makes the picture random
        await settle(pilot)

    assert snap_compare(host.app, terminal_size=SIZE, run_before=run_before)


def test_profile_permissions_snapshot(snap_compare, demo: Demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    host = Host(demo, tmp_path)

    async def run_before(pilot: Pilot[None]) -> None:
        screen = await host.open(pilot)
        await to_permissions(pilot, screen)

    assert snap_compare(host.app, terminal_size=SIZE, run_before=run_before)


async def test_giving_up_the_last_permission_disables_and_logs_out(host: Host) -> None:
    async with host.app.run_test(size=TALL) as pilot:
        screen = await host.open(pilot)
        await to_permissions(pilot, screen)
        screen.query_one("#permissions", DataTable).focus()
        await pilot.press("enter")
        await settle(pilot)
        assert "確定要放棄" in await answer(pilot)
        assert table_rows(screen) == [["流感抗病毒藥劑", "瀏覽者", "已核准"]]
        await pilot.press("enter")
        await settle(pilot)
        assert "最後一項權限" in await answer(pilot)
        assert "帳號已停用" in await answer(pilot)
        assert host.app.screen is host.app.login_screen
    view = host.services.accounts.view(host.account_id)
    assert (view.status, view.disabled_reason) == (AccountStatus.DISABLED, "self")


async def test_the_screen_speaks_english(host: Host) -> None:
    async with host.app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        view = host.services.accounts.view(host.account_id)
        screen = ProfileScreen(
            host.services, view, "en", cards=host.runtime, proof=demo_proof(host.demo, "moica")
        )
        host.app.push_screen(screen)
        await settle(pilot)
        tabs = screen.query_one("#profile-tabs", TabbedContent)
        labels = [str(tabs.get_tab(tab).label) for tab in TABS]
        assert labels == ["Personal data", "Permissions", "Disable account", "Delete account"]
        assert str(screen.query_one("#save", Button).label) == "Save"
        await pilot.press("f3")
        await settle(pilot)
        assert table_rows(screen)[0] == ["Personal protective equipment", "Officer", "Granted"]
