"""Issue 20's layout sweep of the staff screens (審核, 帳號管理, 軌跡紀錄), read off the
screen as a person sees it, at an SSH terminal's 80×24 and at 120×36, in 中文 and in
English, each reached as a 管理者 reaches it (home, then F6 / F7 / F8): the title bar
names the screen, a filter left alone says [全部] / [All], the pager counts what the
screen lists, and every column of every table is inside the table and readable —
審核's 單位, 帳號管理's 狀態 and its permissions pane, 軌跡紀錄's 說明.

(Demo accounts: tests/tui/test_control_screens.py.)"""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from rich.cells import cell_len
from rich.text import Text
from textual.geometry import Region
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Select

from models.schema import Account
from smis_tui.core.domain import Role, RoleChoice, UnitKind
from smis_tui.screens.account_control import AccountControlScreen
from smis_tui.screens.audit_trail import AuditTrailScreen
from smis_tui.screens.review import ReviewScreen
from smis_tui.text import t
from smis_tui.widgets.bars import KeyBar
from smis_tui.widgets.dialogs import MessageDialog
from smis_tui.widgets.table import fit_widths
from tests.helpers import approved_applicant, unit_of_kind
from tests.tui.conftest import Demo, settle
from tests.tui.test_control_screens import Accounts
from tests.tui.test_every_screen import SCENES, _before, scene_app
from tests.tui.test_review_screen import SVG_CELL_WIDTH

SIZES = [(80, 24), (120, 36)]
LANGUAGES = ["zh_TW", "en"]
STAFF_SCREENS = ("review", "account_control", "audit_trail")


@asynccontextmanager
async def staff_screen(
    demo: Demo, name: str, language: str, size: tuple[int, int]
) -> AsyncIterator[Pilot[None]]:
    """The 管理者 (the demo's CDC 管理者) on ``name`` of tests/tui/test_every_screen.py,
    in ``language``."""
    async with scene_app(demo, name).run_test(size=size) as pilot:
        await _before(SCENES[name], demo, language)(pilot)
        yield pilot


def screen_lines(pilot: Pilot[None]) -> list[str]:
    """The screen as plain text, a line a row, read back from the SVG screenshot (a
    wide character takes two columns, as on the terminal)."""
    width, height = pilot.app.size
    lines = [""] * height
    for x, line, text in re.findall(
        r'<text [^>]*x="([0-9.]+)"[^>]*clip-path="url\(#terminal-\d+-line-(\d+)\)">([^<]*)</text>',
        pilot.app.export_screenshot(),
    ):
        before = lines[int(line)]
        column = round(float(x) / SVG_CELL_WIDTH)
        lines[int(line)] = before + " " * (column - cell_len(before)) + html.unescape(text)
    return [line.replace("\xa0", " ").ljust(width) for line in lines]


def cut(line: str, start: int, end: int) -> str:
    """The cells ``start`` to ``end`` of ``line``."""
    kept, column = [], 0
    for character in line:
        if start <= column < end:
            kept.append(character)
        column += cell_len(character)
    return "".join(kept)


def within(pilot: Pilot[None], region: Region) -> list[str]:
    """The lines of the screen inside ``region``."""
    return [
        cut(line, region.x, region.right) for line in screen_lines(pilot)[region.y : region.bottom]
    ]


def columns_fit(table: DataTable[Text]) -> bool:
    """No column reaches past the table's edge (nothing to scroll sideways to)."""
    return table.virtual_size.width <= table.scrollable_content_region.width


def key_bar(pilot: Pilot[None]) -> str:
    bar = pilot.app.screen.query_one(KeyBar)
    return " ".join(within(pilot, bar.region))


# ----------------------------------------------------------------------- fitting columns


def test_the_widest_column_narrows_first() -> None:
    """審核 at 80 columns in 中文: 單位, 物資類別 and 申請權限 (16, 14, 16) are 11
    cells over. The 單位 alone gave them all (down to 5); now each narrows in turn, the
    widest first, the first named first between equals."""
    date, unit, category, role = 9, 16, 14, 16
    over = 11
    padding = 2 * 4
    available = date + unit + category + role + padding - over
    assert fit_widths([date, unit, category, role], [4] * 4, [1, 2, 3], available) == [
        9,
        11,
        12,
        12,
    ]


def test_no_column_narrows_below_its_floor() -> None:
    assert fit_widths([20, 20], [4, 18], [0, 1], 20) == [4, 18]  # still over: scrolls
    assert fit_widths([20, 20], [4, 18], [0, 1], 100) == [20, 20]  # room: untouched


# ----------------------------------------------------------------------- every staff screen

SCREEN_NAMES = {
    "review": {"zh_TW": "審核", "en": "Review"},
    "account_control": {"zh_TW": "帳號管理", "en": "Accounts below"},
    "audit_trail": {"zh_TW": "軌跡紀錄", "en": "Audit trail"},
}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", STAFF_SCREENS)
async def test_the_title_bar_names_the_screen(
    demo: Demo, name: str, language: str, size: tuple[int, int]
) -> None:
    """As the home screen's key names it (F7 帳號管理, F8 軌跡紀錄), after the system's
    name; 帳號管理 and 軌跡紀錄 said 「帳號申請 / 重啟 / 登入」, the login screen's."""
    async with staff_screen(demo, name, language, size) as pilot:
        title = screen_lines(pilot)[0].strip()
    assert title == f"{t('app.title', language)} — {SCREEN_NAMES[name][language]}"


FILTERS = {
    "review": ("#review-category", "#review-county"),
    "account_control": ("#control-status",),
    "audit_trail": ("#trail-action",),
}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", STAFF_SCREENS)
async def test_a_filter_left_alone_says_all(
    demo: Demo, name: str, language: str, size: tuple[int, int]
) -> None:
    """Each list filter nobody chose from shows [全部] / [All] (Textual read the words
    as a markup tag and showed the field blank), and still does after a search with
    every field left blank, which lists everything."""
    everything = t("common.all", language)
    async with staff_screen(demo, name, language, size) as pilot:
        screen = pilot.app.screen
        for search in (False, True):
            if search:
                screen.query_one(FILTERS[name][0], Select).focus()
                await pilot.press("f5")
                await settle(pilot)
            for selector in FILTERS[name]:
                select = screen.query_one(selector, Select)
                assert any(everything in line for line in within(pilot, select.region))
            assert sum(line.count(everything) for line in screen_lines(pilot)) == len(FILTERS[name])
            assert screen.paged.table.row_count  # type: ignore[attr-defined]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("language", LANGUAGES)
async def test_the_account_pager_counts_accounts(
    demo: Demo, language: str, size: tuple[int, int]
) -> None:
    async with staff_screen(demo, "account_control", language, size) as pilot:
        screen = pilot.app.screen
        assert isinstance(screen, AccountControlScreen) and screen.result is not None
        total = screen.result.total
        shown = "\n".join(screen_lines(pilot))
    counted = {
        "zh_TW": f"【每頁 20 筆 · 第 1 頁 共 1 頁 {total} 筆】",
        "en": f"[20 per page · page 1 of 1 · {total} accounts]",
    }[language]
    assert counted in shown
    assert "units" not in shown.replace("units below", "")


# ----------------------------------------------------------------------- 審核


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("language", LANGUAGES)
async def test_review_shows_enough_of_each_unit(
    demo: Demo, language: str, size: tuple[int, int]
) -> None:
    """The 單位 column narrowed to two characters (「臺北」) at 80 columns while the
    category and role kept all of theirs: now the widest narrow first. A unit keeps
    its first five characters, a role its name; at 120 columns all is whole."""
    async with staff_screen(demo, "review", language, size) as pilot:
        screen = pilot.app.screen
        assert isinstance(screen, ReviewScreen) and screen.page is not None
        table = screen.paged.table
        assert columns_fit(table)
        rows = within(pilot, table.region)[1 : 1 + table.row_count]
        items = screen.page.items
    assert len(rows) == len(items) > 0
    for line, item in zip(rows, items, strict=True):
        assert item.unit_name[:5] in line
        assert t(f"role.{item.role}", language) in line
        if size[0] >= 120:
            assert item.unit_name in line


# ----------------------------------------------------------------------- 帳號管理


def accounts_that_run_long(demo: Demo, demo_accounts: Accounts) -> int:
    """A hospital 承辦人 with a long name and four permissions (one with a sub-option),
    and an account its superior disabled: the widest names, statuses and roles the
    list and its pane show. Returns the first."""
    services, admin = demo[0], demo_accounts["hpc"]
    hospital = unit_of_kind(UnitKind.HOSPITAL, with_category="emerging")
    many = approved_applicant(
        services,
        hospital,
        admin,
        {
            "ppe": RoleChoice(Role.OFFICER),
            "emerging": RoleChoice(Role.ADMIN, ("COVID-19",)),
            "flu_antiviral": RoleChoice(Role.VIEWER),
            "antivenom": RoleChoice(Role.OFFICER),
        },
        name="Elizabeth Chen-Wang",
    )
    disabled = approved_applicant(services, hospital, admin, name="歐陽娜娜美")
    services.control.disable_account(admin, disabled, Account.get_by_id(disabled).version, "離職")
    return many


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("language", LANGUAGES)
async def test_account_control_shows_every_status_and_permission_whole(
    demo: Demo, demo_accounts: Accounts, language: str, size: tuple[int, int]
) -> None:
    """「Disabled (superior)」 ran past the list's edge at 80 columns behind a long
    name; at 120 the permissions pane, 30 columns wide, left the role out of sight.
    Now names and units narrow to make room, and the pane (beside the list from 100
    columns, under it below) shows each permission's role."""
    many = accounts_that_run_long(demo, demo_accounts)
    async with staff_screen(demo, "account_control", language, size) as pilot:
        screen = pilot.app.screen
        assert isinstance(screen, AccountControlScreen) and screen.result is not None
        table = screen.paged.table
        table.move_cursor(row=table.get_row_index(str(many)))
        await settle(pilot)
        assert columns_fit(table)
        listed = within(pilot, table.region)
        seen = 0
        for row in screen.result.rows:
            line = next((line for line in listed if row.masked_id in line), None)
            if line is not None:  # the rest are scrolled out of view
                assert screen._status(row) in line
                seen += 1
        assert seen >= 4
        widest = max(cell_len(screen._status(row)) for row in screen.result.rows)
        assert table.columns["status"].width == widest
        side = screen.query_one("#control-side").region
        if size[0] >= 100:
            assert side.x >= table.region.right
        else:
            assert side.y >= table.region.bottom
        permissions = screen.query_one("#control-permissions", DataTable)
        assert columns_fit(permissions)
        granted = screen._rows[str(many)].permissions
        roles = {t(f"role.{permission.role}", language) for permission in granted}
        assert len(granted) == 4
        category, role = permissions.columns["0"], permissions.columns["1"]
        assert role.width >= max(cell_len(name) for name in roles)
        assert category.width >= 8
        # The pane under the list at 80 columns shows three rows at a time.
        shown = within(pilot, permissions.region)[1 : 1 + min(permissions.row_count, 3)]
        for line in shown:
            assert any(name in line for name in roles), line
        if language == "zh_TW":  # there is room for all of it wherever the pane is
            assert role.width >= cell_len("管理者(COVID-19)")


# ----------------------------------------------------------------------- 軌跡紀錄

LONG_REASON = "職務調整，不再負責個人防護裝備的採購與管理業務，改由同單位其他同仁承辦"
VERY_LONG_REASON = "此權限停用原因很長，" * 14 + "結尾"
NOTE_HEADERS = ("trail.col_time", "trail.col_actor", "trail.action", "trail.col_target")


async def trail_with_reason(demo: Demo, demo_accounts: Accounts, reason: str) -> None:
    """The CDC 管理者 disabled one of the clinic 承辦人's permissions with ``reason``:
    the newest row of their own trail."""
    services, admin, officer = demo[0], demo_accounts["hpc"], demo_accounts["moica"]
    request = services.accounts.view(officer).granted()[0]
    services.control.disable_permission(
        admin, officer, request.id, Account.get_by_id(officer).version, reason
    )


async def to_the_disabling(pilot: Pilot[None], screen: AuditTrailScreen) -> None:
    """The cursor on the row of the disabling (the 管理者's login since is newer)."""
    assert screen.result is not None
    table = screen.paged.table
    table.focus()
    table.move_cursor(
        row=next(
            i for i, row in enumerate(screen.result.rows) if row.action == "disable_permission"
        )
    )
    await pilot.pause()


def note_lines(pilot: Pilot[None]) -> list[str]:
    detail = pilot.app.screen.query_one("#trail-detail-text")
    return [line.rstrip() for line in within(pilot, detail.region)]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("language", LANGUAGES)
async def test_the_trail_columns_fit_and_the_note_is_read_under_them(
    demo: Demo, demo_accounts: Accounts, language: str, size: tuple[int, int]
) -> None:
    """At 80 columns the 單位 and 說明 columns were past the table's edge. Now every
    column fits, the highlighted row's 說明 is shown whole under the table, and the key
    bar offers Enter for the whole row."""
    await trail_with_reason(demo, demo_accounts, LONG_REASON)
    async with staff_screen(demo, "audit_trail", language, size) as pilot:
        screen = pilot.app.screen
        assert isinstance(screen, AuditTrailScreen) and screen.result is not None
        table = screen.paged.table
        assert columns_fit(table)
        header = within(pilot, table.region)[0]
        for key in (*NOTE_HEADERS, "common.unit", "trail.col_note"):
            assert t(key, language) in header
        await to_the_disabling(pilot, screen)
        title = within(pilot, screen.query_one("#trail-detail").region)[0]
        assert t("trail.col_note", language) in title
        change = {"zh_TW": "已核准 → 已停用；", "en": "granted → disabled; "}[language]
        assert "".join(note_lines(pilot)) == change + LONG_REASON
        assert f"Enter {t('trail.detail', language)}" in key_bar(pilot)

        # A row without a note says so, rather than keeping the last one's.
        login = next(i for i, row in enumerate(screen.result.rows) if row.action == "login")
        table.move_cursor(row=login)
        await pilot.pause()
        assert note_lines(pilot)[0].strip() == t("trail.no_note", language)


@pytest.mark.parametrize("language", LANGUAGES)
async def test_a_note_too_long_for_two_lines_ends_in_an_ellipsis_and_enter_shows_it(
    demo: Demo, demo_accounts: Accounts, language: str
) -> None:
    await trail_with_reason(demo, demo_accounts, VERY_LONG_REASON)
    async with staff_screen(demo, "audit_trail", language, (80, 24)) as pilot:
        screen = pilot.app.screen
        assert isinstance(screen, AuditTrailScreen)
        await to_the_disabling(pilot, screen)
        lines = note_lines(pilot)
        assert len(lines) == 2 and lines[1].endswith("…")
        assert VERY_LONG_REASON not in "".join(lines)
        await pilot.press("enter")
        await settle(pilot)
        dialog = pilot.app.screen
        assert isinstance(dialog, MessageDialog)
        assert VERY_LONG_REASON in dialog.message
        await pilot.press("escape")
        await settle(pilot)
        assert pilot.app.screen is screen


async def test_enter_in_a_search_field_searches_and_is_not_offered_as_details(
    demo: Demo, demo_accounts: Accounts
) -> None:
    """Enter opens a row only from the list: in a field it searches, as before."""
    async with staff_screen(demo, "audit_trail", "zh_TW", (80, 24)) as pilot:
        screen = pilot.app.screen
        assert isinstance(screen, AuditTrailScreen)
        assert "Enter 詳細" in key_bar(pilot)
        field = screen.query_one("#trail-unit", Input)
        field.focus()
        await pilot.pause()
        assert "Enter 詳細" not in key_bar(pilot)
        field.value = "中全診所"
        await pilot.press("enter")
        await settle(pilot)
        assert pilot.app.screen is screen
        assert screen.result is not None
        assert {row.unit_name for row in screen.result.rows} == {"中全診所"}


async def test_the_trail_columns_fit_again_when_the_terminal_narrows(
    demo: Demo, demo_accounts: Accounts
) -> None:
    """An SSH window made narrower: the columns are fitted again, the cursor stays."""
    async with staff_screen(demo, "audit_trail", "en", (120, 36)) as pilot:
        screen = pilot.app.screen
        assert isinstance(screen, AuditTrailScreen)
        table = screen.paged.table
        table.move_cursor(row=2)
        wide = sum(column.width for column in table.columns.values())
        await pilot.resize_terminal(80, 24)
        await settle(pilot)
        await pilot.pause()
        assert columns_fit(table)
        assert sum(column.width for column in table.columns.values()) < wide
        assert table.cursor_row == 2
