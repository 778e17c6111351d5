"""The application form (新帳號申請 / 更新申請權限) driven through Pilot against the
SQLite database with the 5165 generated units."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Button, Checkbox, DataTable, Input, RadioButton, RadioSet, Static

from models.db import open_database, write_transaction
from models.schema import Category, CategoryOption, RequestStatus, Role, UnitKind
from smis_tui.core.config import Settings
from smis_tui.core.identifiers import generate_national_id
from smis_tui.screens import STYLES
from smis_tui.screens.application_form import ApplicationFormScreen, pending_status
from smis_tui.services import Services, build_services
from smis_tui.services.accounts import NAME_MAX, AccountView, RequestView, RoleChoice
from smis_tui.services.card_proof import CardProof
from smis_tui.services.units import UnitRow
from smis_tui.widgets.dialogs import MessageDialog
from smis_tui.widgets.person_fields import MAX_LENGTHS, join_phone, split_phone
from smis_tui.widgets.prose import ERROR_MARK
from smis_tui.widgets.role_grid import OptionCheckbox, RoleGrid
from tests.helpers import card_proof, form, unit_of_kind
from tests.tui.conftest import settle

SIZE = (100, 40)
TALL = (
    100,
    90,
)  # every widget of the form on screen, for Pilot clicks (a larger screen costs more)
TODAY = dt.date(2024, 7, 26)


class FormHost(App[None]):
    """Pushes the form and records what it was dismissed with."""

    CSS_PATH = [STYLES / "app.tcss", STYLES / "widgets.tcss"]
    TITLE = "智慧防疫物資管理資訊系統"

    def __init__(self, make_screen: Callable[[], ApplicationFormScreen]) -> None:
        super().__init__()
        self.make_screen = make_screen
        self.results: list[bool | None] = []

    def on_mount(self) -> None:
        self.push_screen(self.make_screen(), self.results.append)


@pytest.fixture
def form_services(sqlite_settings: Settings) -> Services:
    open_database(sqlite_settings.database_url, sqlite_settings.sqlite_path)
    return build_services(sqlite_settings)


@pytest.fixture
def clinic(form_services: Services) -> UnitRow:
    unit = unit_of_kind(UnitKind.CLINIC, with_category="ppe", without="antivenom")
    row = form_services.units.get(unit.code)
    assert row is not None
    # The tests choose roles in these; the data generator gives clinics both.
    assert {"ppe", "emerging"} <= form_services.units.categories_of(row.id)
    return row


def person(serial: int) -> str:
    return generate_national_id("A", 1, serial)


def new_form(
    services: Services, unit: UnitRow, person_id: str, proof: CardProof | None = None
) -> FormHost:
    """新帳號申請 of ``person_id``, sent with ``proof`` (no card reader: without a proof
    the form cannot be sent)."""
    return FormHost(
        lambda: ApplicationFormScreen(
            services, None, person_id, unit, "zh_TW", proof=proof, today=TODAY
        )
    )


def update_form(
    services: Services,
    unit: UnitRow,
    person_id: str,
    account: AccountView,
    expected_version: int | None = None,
    proof: CardProof | None = None,
) -> FormHost:
    """更新申請權限 of ``account``'s pending application, sent with ``proof``."""
    return FormHost(
        lambda: ApplicationFormScreen(
            services,
            None,
            person_id,
            unit,
            "zh_TW",
            proof=proof,
            mode="update",
            account=account,
            expected_version=expected_version,
            today=TODAY,
        )
    )


def form_screen(app: App[None]) -> ApplicationFormScreen:
    screen = app.screen
    assert isinstance(screen, ApplicationFormScreen)
    return screen


@asynccontextmanager
async def showing(
    app: FormHost, size: tuple[int, int] = SIZE
) -> AsyncIterator[tuple[Pilot[None], ApplicationFormScreen]]:
    """``app`` running under Pilot, its form loaded: (pilot, the form)."""
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        yield pilot, form_screen(app)


def error_text(screen: ApplicationFormScreen, field: str) -> str:
    """The error shown for ``field`` ("" for none), after the ✖ that marks it as one."""
    shown = str(screen.query_one(f"#error-{field}", Static).render())
    assert not shown or shown.startswith(ERROR_MARK), shown
    return shown.removeprefix(ERROR_MARK)


def fill(screen: ApplicationFormScreen, **values: str) -> None:
    """Set inputs directly (typing is tested on its own: each key costs a Pilot pause)."""
    for input_id, value in values.items():
        screen.query_one(f"#input-{input_id}", Input).value = value


def choose(screen: ApplicationFormScreen, *selectors: str) -> None:
    """Turn radio buttons / checkboxes on directly, through their sets' own handlers."""
    for selector in selectors:
        widget = screen.query_one(selector)
        assert isinstance(widget, RadioButton | Checkbox)
        widget.value = True


async def send(pilot: Pilot[None], screen: ApplicationFormScreen) -> None:
    """Tick 我同意個資聲明事項, press 送出申請 and wait for the worker's answer."""
    choose(screen, "#consent-agree")
    await pilot.pause()
    screen.query_one("#form-submit", Button).press()
    await settle(pilot)


VALID = {
    "name": "王小明",
    "phone": "02-23959825",
    "phone-ext": "1234",
    "email": "wang@example.tw",
    "mobile": "0912345678",
}


async def test_grid_marks_categories_the_unit_lacks(
    form_services: Services, clinic: UnitRow
) -> None:
    app = new_form(form_services, clinic, person(1))
    async with showing(app, TALL) as (pilot, screen):
        assert str(screen.query_one("#form-apply-date", Static).render()) == "113/07/26"
        grid = screen.query_one(RoleGrid)
        lacking = grid.query_one("#no-business-antivenom", Static)
        assert str(lacking.render()) == "【單位無此業務權限】"
        assert not grid.query("#roles-antivenom")
        assert not grid.query("#grid-antivenom RadioButton")
        labels = [str(b.label) for b in grid.query_one("#roles-ppe", RadioSet).query(RadioButton)]
        assert labels == ["管理者", "承辦人", "瀏覽者", "不申請"]
        assert grid.value == {}
        # The disease options are there but off until a role is chosen.
        boxes = list(grid.query(OptionCheckbox))
        assert [b.option for b in boxes] == ["猴痘(M痘)", "COVID-19"]
        assert all(b.disabled for b in boxes)
        await pilot.click("#role-emerging-viewer")
        await pilot.pause()
        assert not any(b.disabled for b in grid.query(OptionCheckbox))
        assert grid.value == {"emerging": RoleChoice(Role.VIEWER, ())}


async def test_every_sub_option_the_data_holds_is_a_box_of_its_own(
    form_services: Services, clinic: UnitRow
) -> None:
    """The manual's example list (猴痘 A痘 B痘 M痘 COVID-19) as data: one box each, in
    the data's order; an option taken out of use is not offered."""
    emerging = Category.get(Category.code == "emerging")
    with write_transaction():
        CategoryOption.delete().where(CategoryOption.category == emerging).execute()
        for order, name in enumerate(["猴痘", "A痘", "B痘", "M痘", "COVID-19", "舊疫病"]):
            CategoryOption.create(
                category=emerging, name=name, sort_order=order, active=name != "舊疫病"
            )
    app = new_form(form_services, clinic, person(3))
    async with showing(app, TALL) as (pilot, screen):
        grid = screen.query_one(RoleGrid)
        boxes = list(grid.query(OptionCheckbox))
        assert [b.option for b in boxes] == ["猴痘", "A痘", "B痘", "M痘", "COVID-19"]
        assert [str(b.label) for b in boxes] == [b.option for b in boxes]
        await pilot.click("#role-emerging-officer")
        for box in boxes[1:3]:
            box.value = True
        await pilot.pause()
        assert grid.value == {"emerging": RoleChoice(Role.OFFICER, ("A痘", "B痘"))}


async def test_submit_without_consent_says_what_is_missing(
    form_services: Services, clinic: UnitRow
) -> None:
    app = new_form(form_services, clinic, person(2))
    async with showing(app, TALL) as (pilot, screen):
        submit = screen.query_one("#form-submit", Button)
        assert str(submit.label) == "送出申請"
        assert not submit.disabled  # it answers, rather than looking dead
        for press_submit in (lambda: pilot.click("#form-submit"), lambda: pilot.press("f10")):
            await press_submit()
            await settle(pilot)
            assert app.screen is screen and not app.results
            assert "請閱讀並勾選「我同意個資聲明事項」" in str(
                screen.query_one("#error-consent", Static).render()
            )
            assert screen.query_one("#consent-agree", Checkbox).has_focus
        await pilot.click("#consent-agree")
        await pilot.pause()
        assert screen.query_one("#consent-agree", Checkbox).value
        assert str(screen.query_one("#error-consent", Static).render()) == ""
        # The statement is there in full, verbatim.
        statement = str(screen.query_one("#consent-statement", Static).render())
        assert statement.startswith("依據:本署依傳染病防治法第26條")
        assert statement.endswith("將無法為您開放資訊系統相關服務。")


async def test_invalid_phone_and_email_show_beside_the_field_on_leaving(
    form_services: Services, clinic: UnitRow
) -> None:
    app = new_form(form_services, clinic, person(3))
    async with showing(app) as (pilot, screen):
        phone = screen.query_one("#input-phone", Input)
        phone.focus()
        await pilot.press(*"123", "tab")  # to its #分機: still the same field
        await pilot.pause()
        assert error_text(screen, "phone") == ""
        await pilot.press("tab")  # leaves the phone
        await pilot.pause()
        assert error_text(screen, "phone") == "主要連絡電話：請包含區碼，例如 02-12345678"
        assert phone.value == "123"
        assert phone.has_class("-invalid")

        email = screen.query_one("#input-email", Input)
        email.focus()
        await pilot.press(*"a@b", "tab")
        await pilot.pause()
        assert error_text(screen, "email") == "主要電子信箱：格式不正確，例如 name@example.tw"
        assert email.value == "a@b"

        # Fixing a field clears its message as soon as it is right, still in it.
        phone.focus()
        await pilot.pause()
        phone.value = "02-12"
        await pilot.pause()
        assert error_text(screen, "phone") != ""  # not right yet
        phone.value = "02-23959825"
        await pilot.pause()
        assert phone.has_focus
        assert error_text(screen, "phone") == ""
        assert not phone.has_class("-invalid")
        assert error_text(screen, "email") != ""


async def test_submitting_without_a_role_says_so_beside_the_grid(
    form_services: Services, clinic: UnitRow
) -> None:
    person_id = person(4)
    app = new_form(form_services, clinic, person_id)
    async with showing(app) as (pilot, screen):
        fill(screen, **VALID)
        await send(pilot, screen)
        assert app.screen is screen
        assert error_text(screen, "roles") == "請至少選擇一項子系統權限"
        assert screen.query_one("#error-roles", Static).display
        assert error_text(screen, "name") == ""
        assert screen.query_one("#input-name", Input).value == "王小明"
        assert not screen.query_one("#form-submit", Button).disabled
        assert form_services.accounts.find_by_person_id(person_id) is None


async def test_a_full_application_is_submitted_and_stored(
    form_services: Services, clinic: UnitRow
) -> None:
    person_id = person(5)
    app = new_form(form_services, clinic, person_id, card_proof(form_services, person_id))
    async with showing(app, TALL) as (pilot, screen):
        fill(screen, **VALID)
        # Keyboard: the cursor starts on the pressed 不申請; up twice is 承辦人.
        screen.query_one("#roles-ppe", RadioSet).focus()
        await pilot.press("up", "up", "space")
        # Mouse: 管理者 of 新興傳染病用藥 for COVID-19.
        await pilot.click("#role-emerging-admin")
        await pilot.click("#option-emerging-1")
        await pilot.click("#consent-agree")
        await pilot.click("#form-submit")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, MessageDialog)
        assert dialog.message == "已送出申請，請等待審核通過。"
        assert "已送出申請，請等待審核通過。" in app.export_screenshot()
        await pilot.click("#dialog-ok")
        await pilot.pause()
        assert app.results == [True]

    account = form_services.accounts.find_by_person_id(person_id)
    assert account is not None
    view = form_services.accounts.view(account.id)
    assert view.unit_code == clinic.code
    assert view.data.name == "王小明"
    assert view.data.phone == "02-23959825#1234"
    assert view.data.mobile == "0912-345-678"
    assert {(r.category_code, r.role, r.options) for r in view.pending()} == {
        ("ppe", Role.OFFICER, ()),
        ("emerging", Role.ADMIN, ("COVID-19",)),
    }


async def test_update_prefills_shows_pending_and_replaces_the_requests(
    form_services: Services, clinic: UnitRow
) -> None:
    from models.schema import Unit

    person_id = person(6)
    unit = Unit.get(Unit.code == clinic.code)
    account_id = form_services.accounts.apply(
        form(person_id, unit, {"ppe": RoleChoice(Role.OFFICER)}, phone_backup="07-1234567"),
        card_proof(form_services, person_id),
    )
    before = form_services.accounts.view(account_id)
    proof = card_proof(form_services, person_id)
    app = update_form(form_services, clinic, person_id, before, before.version, proof)
    async with showing(app) as (pilot, screen):
        assert str(screen.query_one("#form-title", Static).render()) == "更新申請權限"
        assert screen.query_one("#input-name", Input).value == "王小明"
        assert screen.query_one("#input-phone", Input).value == "02-23959825"
        assert screen.query_one("#input-phone-ext", Input).value == "1234"
        assert screen.query_one("#input-phone_backup", Input).value == "07-1234567"
        table = screen.query_one("#form-pending", DataTable)
        rows = {
            str(table.owner_cells(i)[0]): str(table.owner_cells(i)[1])
            for i in range(table.row_count)
        }
        assert rows["個人防護裝備"] == "承辦人(審核中)"
        assert rows["流感抗病毒藥劑"] == "無此權限"
        assert len(rows) == 7
        grid = screen.query_one(RoleGrid)
        assert grid.value == {"ppe": RoleChoice(Role.OFFICER, ())}
        assert screen.query_one("#role-ppe-officer", RadioButton).value
        submit = screen.query_one("#form-submit", Button)
        assert str(submit.label) == "更新申請"

        fill(screen, name="王大明")
        choose(screen, "#role-ppe-viewer", "#role-flu_antiviral-admin")
        await send(pilot, screen)
        assert isinstance(app.screen, MessageDialog)
        assert app.screen.message == "已送出申請，請等待審核通過。"
        await pilot.press("enter")
        await pilot.pause()
        assert app.results == [True]

    after = form_services.accounts.view(account_id)
    assert after.version == before.version + 1
    assert after.data.name == "王大明"
    assert {(r.category_code, r.role) for r in after.pending()} == {
        ("ppe", Role.VIEWER),
        ("flu_antiviral", Role.ADMIN),
    }
    old = [r for r in after.requests if r.id == before.pending()[0].id]
    assert old[0].status == RequestStatus.SUPERSEDED


async def test_a_stale_update_shows_one_dialog_and_keeps_the_form(
    form_services: Services, clinic: UnitRow
) -> None:
    from models.schema import Unit

    person_id = person(7)
    unit = Unit.get(Unit.code == clinic.code)
    account_id = form_services.accounts.apply(
        form(person_id, unit), card_proof(form_services, person_id)
    )
    view = form_services.accounts.view(account_id)
    # Another kiosk updates the application first.
    form_services.accounts.update_pending(
        form(person_id, unit, name="別人改的"), view.version, card_proof(form_services, person_id)
    )
    app = update_form(
        form_services, clinic, person_id, view, proof=card_proof(form_services, person_id)
    )
    async with showing(app) as (pilot, screen):
        fill(screen, name="我改的")
        await send(pilot, screen)
        dialog = app.screen
        assert isinstance(dialog, MessageDialog)
        assert dialog.message.startswith("資料已被其他人員更新（版本 1 → 2）")
        assert not dialog.query("#dialog-cancel")
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is screen and not app.results
        assert screen.query_one("#input-name", Input).value == "我改的"
        assert not screen.query_one("#form-submit", Button).disabled
    assert form_services.accounts.view(account_id).data.name == "別人改的"


async def test_escape_goes_back_asking_first_when_something_was_typed(
    form_services: Services, clinic: UnitRow
) -> None:
    app = new_form(form_services, clinic, person(8))
    async with showing(app) as (pilot, screen):
        screen.query_one("#input-name", Input).focus()
        await pilot.press("x", "escape")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, MessageDialog)
        assert dialog.message == "已填寫的資料尚未送出，確定要離開嗎？"
        await pilot.press("escape")  # = 取消
        await pilot.pause()
        assert app.screen is screen and not app.results
        assert screen.query_one("#input-name", Input).value == "x"
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("enter")  # 取消 has the focus: one stray Enter loses nothing
        await pilot.pause()
        assert app.screen is screen and not app.results
        await pilot.press("escape")
        await pilot.pause()
        await pilot.click("#dialog-ok")
        await pilot.pause()
        assert app.results == [False]

    untouched = new_form(form_services, clinic, person(9))
    async with untouched.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("escape")
        await pilot.pause()
        assert untouched.results == [False]


async def test_markup_in_a_name_is_stored_and_shown_literally(
    form_services: Services, clinic: UnitRow
) -> None:
    person_id = person(10)
    name = "[bold red]x[/]"
    app = new_form(form_services, clinic, person_id, card_proof(form_services, person_id))
    async with showing(app) as (pilot, screen):
        fill(screen, **{**VALID, "name": name})
        choose(screen, "#role-ppe-admin")
        await send(pilot, screen)
        await pilot.press("enter")
        await pilot.pause()
        assert app.results == [True]
    account = form_services.accounts.find_by_person_id(person_id)
    assert account is not None and account.name == name

    view = form_services.accounts.view(account.id)
    again = update_form(form_services, clinic, person_id, view)
    async with showing(again) as (_, screen):
        assert screen.query_one("#input-name", Input).value == name
        assert name in again.export_screenshot().replace("&#160;", " ")


def test_pending_status_and_phone_formats() -> None:
    def request(role: Role, options: tuple[str, ...] = ()) -> RequestView:
        return RequestView(
            1, "X", "U", "emerging", "新興傳染病用藥", role, options, RequestStatus.PENDING,
            dt.datetime(2024, 7, 26),
        )  # fmt: skip

    assert pending_status(request(Role.ADMIN), "zh_TW") == "管理者(審核中)"
    assert pending_status(request(Role.ADMIN, ("COVID-19",)), "zh_TW") == "管理者(COVID-19)(審核中)"
    assert pending_status(request(Role.VIEWER, ("猴痘(M痘)", "COVID-19")), "zh_TW") == (
        "瀏覽者(猴痘(M痘)、COVID-19)(審核中)"
    )
    assert MAX_LENGTHS["name"] == NAME_MAX  # the input takes no more than the service keeps
    assert join_phone(" 02-23959825 ", "") == "02-23959825"
    assert join_phone("02-23959825", "12") == "02-23959825#12"
    assert split_phone("02-23959825#12") == ("02-23959825", "12")
    assert split_phone("") == ("", "")


def test_new_application_snapshot(
    snap_compare: Callable[..., bool], form_services: Services, clinic: UnitRow
) -> None:
    async def ready(pilot: Pilot[None]) -> None:
        await settle(pilot)
        for field in pilot.app.screen.query(Input):
            field.cursor_blink = False
        await pilot.pause()

    assert snap_compare(new_form(form_services, clinic, person(1)), (), (100, 30), ready)


async def test_update_page_words_it_as_the_manual_and_choose_picks_another_unit(
    form_services: Services, clinic: UnitRow
) -> None:
    """Step 12: 會先帶出前次填寫的相關資料，均可進行修正; under ※欲申請的權限 a 選擇
    button picks another unit as in steps 3–5, and the role grid follows that unit."""
    from models.schema import Unit
    from smis_tui.screens.unit_search import UnitSearchScreen

    person_id = person(12)
    unit = Unit.get(Unit.code == clinic.code)
    account_id = form_services.accounts.apply(
        form(person_id, unit, {"ppe": RoleChoice(Role.OFFICER)}),
        card_proof(form_services, person_id),
    )
    before = form_services.accounts.view(account_id)
    proof = card_proof(form_services, person_id)
    app = update_form(form_services, clinic, person_id, before, before.version, proof)
    async with showing(app, TALL) as (pilot, screen):
        assert str(screen.query_one("#form-notice", Static).render()) == (
            "會先帶出前次填寫的相關資料，均可進行修正"
        )
        assert str(screen.query_one("#consent-agree", Checkbox).label) == "*我同意個資聲明事項"
        await pilot.click("#form-choose-unit")
        await settle(pilot)
        search = app.screen
        assert isinstance(search, UnitSearchScreen)
        search.query_one("#unit-search-query", Input).value = "金門縣衛生局"
        table = search.query_one("#unit-search-table", DataTable)
        for _ in range(100):  # the search runs after a pause in typing, in a worker
            await pilot.pause(0.05)
            await settle(pilot)
            if table.row_count and "金門縣衛生局" in str(table.owner_cells(0)):
                break
        table.focus()
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen is screen
        assert str(screen.query_one("#form-wanted-unit", Static).render()) == "金門縣衛生局"
        assert str(screen.query_one("#form-unit-name", Static).render()) == "金門縣衛生局"
        choose(screen, "#role-ppe-admin")
        await send(pilot, screen)
        assert isinstance(app.screen, MessageDialog)
    after = form_services.accounts.view(account_id)
    assert after.unit_name == "金門縣衛生局"
    assert {(r.unit_name, r.category_code, r.role) for r in after.pending()} == {
        ("金門縣衛生局", "ppe", Role.ADMIN)
    }
