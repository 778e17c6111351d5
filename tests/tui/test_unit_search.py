"""單位查詢: the modal against the real generated directory (5165 units)."""

from __future__ import annotations

import html
import re
import threading
import time
from collections.abc import Callable

import peewee
import pytest
from rich.cells import cell_len
from rich.text import Text
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Select

from models.db import open_database
from models.schema import Unit
from models.textfold import fold
from models.unit_search import refresh_unit_grams
from smis_tui.core.config import Settings
from smis_tui.screens import STYLES
from smis_tui.screens.unit_search import UnitSearchScreen
from smis_tui.services import build_services
from smis_tui.services.units import UnitDirectory, UnitPage, UnitRow
from smis_tui.widgets.pager import Pager, pager_labels
from smis_tui.widgets.safe import plain_cell

FIRST_PAGE_LINE = "【每頁 20 筆 · 第 1 頁 共 259 頁 5165 筆】"
FIRST_PAGER = "[1] 2 3 4 5 6 7 8 9 10 > >>"
UNSET = object()
SnapCompare = Callable[..., bool]
SVG_CELL_WIDTH = 12.2  # Rich's SVG export: 0.61 × font size 20


class Host(App[None]):
    """A bare app that opens the search and keeps what it was dismissed with."""

    # The app's base stylesheets; the screen brings its own file (its CSS_PATH).
    CSS_PATH = [STYLES / "app.tcss", STYLES / "widgets.tcss"]

    def __init__(self, directory: UnitDirectory, language: str = "zh_TW") -> None:
        super().__init__()
        self.directory = directory
        self.language = language
        self.result: object = UNSET

    def on_mount(self) -> None:
        self.push_screen(UnitSearchScreen(self.directory, self.language), self._chosen)

    def _chosen(self, row: UnitRow | None) -> None:
        self.result = row


def _host(settings: Settings, language: str = "zh_TW") -> Host:
    open_database(settings.database_url, settings.sqlite_path)
    return Host(build_services(settings).units, language)


async def settle(pilot: Pilot[None]) -> UnitSearchScreen:
    """Wait until typing has settled and the newest search has been shown."""
    deadline = time.monotonic() + 10
    await pilot.pause()
    screen = pilot.app.screen
    assert isinstance(screen, UnitSearchScreen)
    while screen.is_searching:
        assert time.monotonic() < deadline, "the search never answered"
        await pilot.pause(0.02)
    await pilot.pause()
    return screen


def screen_text(app: App[None]) -> str:
    """The screen as plain text lines, read back from the SVG screenshot (which leaves
    out runs of blanks: each run of text is put back at its column)."""
    lines: dict[int, str] = {}
    for x, line, text in re.findall(
        r'<text [^>]*x="([0-9.]+)"[^>]*clip-path="url\(#terminal-\d+-line-(\d+)\)">([^<]*)</text>',
        app.export_screenshot(),
    ):
        before = lines.get(int(line), "")
        column = round(float(x) / SVG_CELL_WIDTH)
        text = html.unescape(text).replace("\xa0", " ")
        lines[int(line)] = before + " " * (column - cell_len(before)) + text
    return "\n".join(text for _, text in sorted(lines.items()))


def page_line(screen: UnitSearchScreen) -> str:
    return str(screen.paged.page_line.render())


def pager_text(screen: UnitSearchScreen) -> str:
    return screen.query_one(Pager).text


def rows(screen: UnitSearchScreen) -> list[list[str]]:
    table = screen.query_one(DataTable)
    return [[str(cell) for cell in table.owner_cells(i)] for i in range(table.row_count)]


async def type_query(pilot: Pilot[None], text: str) -> UnitSearchScreen:
    screen = pilot.app.screen
    field = screen.query_one("#unit-search-query", Input)
    field.focus()
    field.value = ""
    await pilot.press(*text)
    return await settle(pilot)


# ----------------------------------------------------------------------- pager labels


def test_pager_labels_first_window() -> None:
    assert pager_labels(1, 259) == ["[1]", *map(str, range(2, 11)), ">", ">>"]
    assert " ".join(pager_labels(1, 259)) == FIRST_PAGER


def test_pager_labels_middle_window_has_arrows_on_both_sides() -> None:
    assert " ".join(pager_labels(15, 259)) == "<< < 11 12 13 14 [15] 16 17 18 19 20 > >>"
    assert " ".join(pager_labels(20, 259)) == "<< < 11 12 13 14 15 16 17 18 19 [20] > >>"


def test_pager_labels_last_page_and_last_window() -> None:
    assert pager_labels(259, 259) == ["<<", "<", *map(str, range(251, 259)), "[259]"]
    assert " ".join(pager_labels(10, 10)) == "1 2 3 4 5 6 7 8 9 [10]"
    assert " ".join(pager_labels(2, 2)) == "1 [2]"


def test_pager_labels_single_page_and_out_of_range() -> None:
    assert pager_labels(1, 1) == ["[1]"]
    assert pager_labels(1, 0) == ["[1]"]
    assert pager_labels(0, 5) == ["[1]", "2", "3", "4", "5"]
    assert pager_labels(9, 5) == ["1", "2", "3", "4", "[5]"]
    assert pager_labels(4, 9, window=3) == ["<<", "<", "[4]", "5", "6", ">", ">>"]
    with pytest.raises(ValueError):
        pager_labels(1, 1, window=0)


def test_cells_are_literal_text_without_control_characters() -> None:
    cell = plain_cell("[bold red]x[/]\x1b[31m\u202e衛生\n局\x00")
    assert isinstance(cell, Text)
    assert cell.plain == "[bold red]x[/][31m衛生 局"
    assert not cell.spans


# ----------------------------------------------------------------------- the screen


async def test_opening_shows_the_first_page_of_all_units(sqlite_settings: Settings) -> None:
    app = _host(sqlite_settings)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await settle(pilot)
        assert screen.query_one("#unit-search-dialog").border_title == "單位查詢"
        assert len(rows(screen)) == 20
        assert page_line(screen) == FIRST_PAGE_LINE
        assert pager_text(screen) == FIRST_PAGER
        select = screen.query_one("#unit-search-county", Select)
        assert select.value == ""
        assert screen.query_one("#unit-search-query", Input).placeholder == (
            "輸入單位名稱或醫事機構代碼"
        )
        shot = screen_text(app)
        assert FIRST_PAGER in shot
        assert FIRST_PAGE_LINE in shot
        for text in ("單位查詢", "縣市", "[全部]", "單位名稱", "查詢", "單位/醫事機構代碼", "名稱"):
            assert text in shot, text
        assert "衛生福利部疾病管制署" in shot  # wide names are not cut off
        assert "PgUp 上一頁" in shot and "PgDn 下一頁" in shot and "Esc 取消" in shot


async def test_typing_a_name_narrows_the_results(sqlite_settings: Settings) -> None:
    app = _host(sqlite_settings)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        screen = await type_query(pilot, "衛生局")
        assert page_line(screen) == "【每頁 20 筆 · 第 1 頁 共 2 頁 22 筆】"
        assert pager_text(screen) == "[1] 2"
        assert len(rows(screen)) == 20
        assert all("衛生局" in name for _, _, name in rows(screen))
        await pilot.press("pagedown")
        screen = await settle(pilot)
        assert page_line(screen) == "【每頁 20 筆 · 第 2 頁 共 2 頁 22 筆】"
        assert pager_text(screen) == "1 [2]"
        assert len(rows(screen)) == 2
        await pilot.press("pageup")
        screen = await settle(pilot)
        assert page_line(screen).startswith("【每頁 20 筆 · 第 1 頁")


async def test_county_filter_with_a_name(sqlite_settings: Settings) -> None:
    app = _host(sqlite_settings)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await settle(pilot)
        screen.query_one("#unit-search-county", Select).value = "金門縣"
        screen = await settle(pilot)
        assert {county for county, _, _ in rows(screen)} == {"金門縣"}
        screen = await type_query(pilot, "衛生局")
        assert rows(screen) == [["金門縣", "0090300011", "金門縣衛生局"]]
        assert page_line(screen) == "【每頁 20 筆 · 第 1 頁 共 1 頁 1 筆】"
        assert pager_text(screen) == "[1]"


async def test_page_keys_and_pager_clicks(sqlite_settings: Settings) -> None:
    app = _host(sqlite_settings)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await settle(pilot)
        first = rows(screen)
        await pilot.press("pagedown")
        screen = await settle(pilot)
        assert page_line(screen) == "【每頁 20 筆 · 第 2 頁 共 259 頁 5165 筆】"
        assert pager_text(screen) == "1 [2] 3 4 5 6 7 8 9 10 > >>"
        assert rows(screen) != first
        # The table has the focus: its own PgDn (scroll) must not win over paging.
        screen.query_one(DataTable).focus()
        await pilot.press("pagedown")
        screen = await settle(pilot)
        assert page_line(screen).startswith("【每頁 20 筆 · 第 3 頁")
        # Click "5": offsets within " 1 2 [3] 4 5 …" (a blank before each label
        # holds the ▶ of the keyboard's highlight).
        text = " " + pager_text(screen)
        assert await pilot.click(Pager, offset=(text.index(" 5 ") + 1, 0))
        screen = await settle(pilot)
        assert page_line(screen) == "【每頁 20 筆 · 第 5 頁 共 259 頁 5165 筆】"
        # ">" opens the next window, ">>" the last page, "<<" the first.
        text = " " + pager_text(screen)
        await pilot.click(Pager, offset=(text.index("> >>"), 0))
        screen = await settle(pilot)
        assert pager_text(screen) == "<< < [11] 12 13 14 15 16 17 18 19 20 > >>"
        text = " " + pager_text(screen)
        await pilot.click(Pager, offset=(text.index(">>"), 0))
        screen = await settle(pilot)
        assert page_line(screen) == "【每頁 20 筆 · 第 259 頁 共 259 頁 5165 筆】"
        assert len(rows(screen)) == 5165 - 258 * 20
        await pilot.press("pagedown")  # nothing after the last page
        screen = await settle(pilot)
        assert page_line(screen).startswith("【每頁 20 筆 · 第 259 頁")
        await pilot.click(Pager, offset=(1, 0))
        screen = await settle(pilot)
        assert pager_text(screen) == FIRST_PAGER
        assert rows(screen) == first


def page_rows(screen: UnitSearchScreen, page: int) -> list[list[str]]:
    """The rows the directory itself gives for ``page`` of all units."""
    units = screen.directory.search("", None, page, screen.page_size).rows
    return [[unit.county, unit.code, unit.name] for unit in units]


def key_bar(app: App[None]) -> str:
    """The bottom line of the screen: the keys listed for where the focus is."""
    return screen_text(app).splitlines()[-1]


async def test_keys_alone_reach_page_3_the_last_and_the_first(sqlite_settings: Settings) -> None:
    app = _host(sqlite_settings)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await settle(pilot)
        assert screen.query_one("#unit-search-query", Input).has_focus
        await pilot.press("pagedown", "pagedown")
        screen = await settle(pilot)
        assert page_line(screen) == "【每頁 20 筆 · 第 3 頁 共 259 頁 5165 筆】"
        assert rows(screen) == page_rows(screen, 3)
        await pilot.press("down")  # into the results
        assert screen.query_one(DataTable).has_focus
        assert "Home 第一頁" in key_bar(app) and "End 最後一頁" in key_bar(app)
        await pilot.press("end")
        screen = await settle(pilot)
        assert page_line(screen) == "【每頁 20 筆 · 第 259 頁 共 259 頁 5165 筆】"
        assert rows(screen) == page_rows(screen, 259)
        assert len(rows(screen)) == 5
        await pilot.press("home")
        screen = await settle(pilot)
        assert page_line(screen) == FIRST_PAGE_LINE
        assert rows(screen) == page_rows(screen, 1)
        # Ctrl+End is still the table's own: the last row of the page.
        await pilot.press("ctrl+end")
        assert screen.query_one(DataTable).cursor_row == 19
        assert page_line(screen) == FIRST_PAGE_LINE


async def test_the_pager_is_worked_from_the_keyboard(sqlite_settings: Settings) -> None:
    app = _host(sqlite_settings)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await settle(pilot)
        pager = screen.query_one(Pager)
        await pilot.press("tab", "tab")  # the name field, 查詢, then the pager
        assert pager.has_focus
        assert pager.highlighted_label == "[1]"
        bar = key_bar(app)
        for shown in ("←→ 選頁", "Enter 前往", "Home 第一頁", "End 最後一頁", "Esc 取消"):
            assert shown in bar, shown
        await pilot.press("right", "right")
        assert pager.highlighted_label == "3"
        await pilot.press("enter")
        screen = await settle(pilot)
        assert page_line(screen) == "【每頁 20 筆 · 第 3 頁 共 259 頁 5165 筆】"
        assert rows(screen) == page_rows(screen, 3)
        assert pager.has_focus and pager.highlighted_label == "[3]"
        # ">" (the next ten pages) is a label like the numbers.
        await pilot.press(*["right"] * 8)
        assert pager.highlighted_label == ">"
        await pilot.press("enter")
        screen = await settle(pilot)
        assert pager_text(screen) == "<< < [11] 12 13 14 15 16 17 18 19 20 > >>"
        assert rows(screen) == page_rows(screen, 11)
        await pilot.press("end")
        screen = await settle(pilot)
        assert page_line(screen) == "【每頁 20 筆 · 第 259 頁 共 259 頁 5165 筆】"
        assert rows(screen) == page_rows(screen, 259)
        await pilot.press("pageup")  # PgUp / PgDn still page from here
        screen = await settle(pilot)
        assert page_line(screen).startswith("【每頁 20 筆 · 第 258 頁")
        await pilot.press("home")
        screen = await settle(pilot)
        assert page_line(screen) == FIRST_PAGE_LINE
        assert rows(screen) == page_rows(screen, 1)
        await pilot.press("tab")  # on to the results
        assert screen.query_one(DataTable).has_focus
        assert pager.highlighted_label is None


async def test_english_page_keys_fit_80_columns(sqlite_settings: Settings) -> None:
    app = _host(sqlite_settings, "en")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await settle(pilot)
        screen.query_one(DataTable).focus()
        await pilot.pause()
        bar = key_bar(app)
        for shown in ("Esc Cancel", "PgUp Previous page", "PgDn Next page", "End Last page"):
            assert shown in bar, shown
        screen.query_one(Pager).focus()
        await pilot.pause()
        bar = key_bar(app)
        for shown in ("←→ Choose page", "Enter Open", "Home First page", "End Last page"):
            assert shown in bar, shown


def row_look(table: DataTable[Text], row: int) -> set[tuple[object, ...]]:
    """How row ``row`` of ``table`` is drawn (its cells' colours and emphasis), as on
    the screen."""
    strip = table.render_line(table.header_height + row - round(table.scroll_y))
    return {
        (segment.style.color, segment.style.bgcolor, segment.style.bold, segment.style.reverse)
        for segment in strip
        if segment.style is not None and segment.text.strip()
    }


async def test_no_row_looks_chosen_while_typing(sqlite_settings: Settings) -> None:
    app = _host(sqlite_settings)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await type_query(pilot, "衛生局")
        table = screen.query_one(DataTable)
        assert not table.has_focus and table.cursor_row == 0
        # Row 0 is under the cursor; row 2 is a row of the same stripe.
        assert row_look(table, 0) == row_look(table, 2)
        # In the field, Home / End move the text cursor and are not listed as page keys.
        field = screen.query_one("#unit-search-query", Input)
        await pilot.press("home")
        assert field.cursor_position == 0
        await pilot.press("end")
        assert field.cursor_position == 3
        screen = await settle(pilot)
        assert page_line(screen) == "【每頁 20 筆 · 第 1 頁 共 2 頁 22 筆】"
        assert "第一頁" not in key_bar(app) and "最後一頁" not in key_bar(app)
        assert "PgUp 上一頁" in key_bar(app) and "PgDn 下一頁" in key_bar(app)
        await pilot.press("down")
        assert table.has_focus
        await pilot.pause()
        assert row_look(table, 0) != row_look(table, 2)
        assert row_look(table, 2) == row_look(table, 4)
        await pilot.press("down", "down")
        await pilot.pause()
        assert row_look(table, 2) != row_look(table, 0)
        screen.query_one("#unit-search-query", Input).focus()
        await pilot.pause()
        assert row_look(table, 2) == row_look(table, 0)
        # Enter in the field takes the focus to the results and shows the cursor again.
        await pilot.press("enter")
        await settle(pilot)
        assert table.has_focus
        assert row_look(table, 0) != row_look(table, 2)


async def test_enter_on_a_row_chooses_it(sqlite_settings: Settings) -> None:
    app = _host(sqlite_settings)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        screen = await type_query(pilot, "衛生局")
        await pilot.press("down", "down", "enter")
        await pilot.pause()
        assert isinstance(app.result, UnitRow)
        assert app.result.code == "0031300017"
        assert app.result.name == "新北市政府衛生局"
        assert app.screen is not screen


async def test_enter_in_the_field_searches_then_enter_picks(sqlite_settings: Settings) -> None:
    app = _host(sqlite_settings)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        screen = app.screen
        screen.query_one("#unit-search-query", Input).value = "金門縣衛生局"
        await pilot.press("enter")
        await settle(pilot)
        assert screen.query_one(DataTable).has_focus
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.result, UnitRow)
        assert app.result.code == "0090300011"


async def test_a_click_on_a_row_chooses_it(sqlite_settings: Settings) -> None:
    app = _host(sqlite_settings)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await type_query(pilot, "衛生局")
        expected = rows(screen)[3]
        # Header on line 0, rows from line 1.
        assert await pilot.click(DataTable, offset=(30, 4))
        await pilot.pause()
        assert isinstance(app.result, UnitRow)
        assert [app.result.county, app.result.code, app.result.name] == expected


async def test_escape_dismisses_with_none(sqlite_settings: Settings) -> None:
    app = _host(sqlite_settings)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("escape")
        await pilot.pause()
        assert app.result is None
        assert not isinstance(app.screen, UnitSearchScreen)


async def test_a_code_prefix_finds_units_by_code(sqlite_settings: Settings) -> None:
    app = _host(sqlite_settings)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await type_query(pilot, "00903")
        found = rows(screen)
        assert found
        assert all(code.startswith("00903") for _, code, _ in found)
        assert ["金門縣", "0090300011", "金門縣衛生局"] in found


async def test_no_match_shows_the_empty_message(sqlite_settings: Settings) -> None:
    app = _host(sqlite_settings)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await type_query(pilot, "不存在的單位")
        message = screen.paged.notice
        assert message.display
        assert str(message.render()) == "查無符合條件的單位"
        assert page_line(screen) == "【每頁 20 筆 · 第 1 頁 共 1 頁 0 筆】"
        assert pager_text(screen) == "[1]"
        assert "查無符合條件的單位" in screen_text(app)
        screen = await type_query(pilot, "衛生局")
        assert not screen.paged.notice.display
        assert len(rows(screen)) == 20


class SlowDirectory(UnitDirectory):
    """Holds the search for ``slow_query`` until ``release`` is set."""

    def __init__(self, slow_query: str) -> None:
        self.slow_query = slow_query
        self.release = threading.Event()
        self.answered: list[str] = []

    def search(
        self, query: str = "", county: str | None = None, page: int = 1, page_size: int = 20
    ) -> UnitPage:
        if query == self.slow_query:
            assert self.release.wait(10)
        result = super().search(query, county, page, page_size)
        self.answered.append(query)
        return result


async def test_a_late_answer_never_overwrites_a_newer_one(sqlite_settings: Settings) -> None:
    open_database(sqlite_settings.database_url, sqlite_settings.sqlite_path)
    directory = SlowDirectory(slow_query="衛生")
    app = Host(directory)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await settle(pilot)
        field = screen.query_one("#unit-search-query", Input)
        field.value = "衛生"
        await pilot.pause(UnitSearchScreen.OVERTAKE_SECONDS + 0.1)
        assert screen.is_searching  # the search for 衛生 is stuck in its thread
        # The screen still answers: typing goes on and the newer search is shown.
        await pilot.press("局")
        screen = await settle(pilot)
        assert page_line(screen) == "【每頁 20 筆 · 第 1 頁 共 2 頁 22 筆】"
        shown = rows(screen)
        directory.release.set()
        deadline = time.monotonic() + 10
        while "衛生" not in directory.answered:
            assert time.monotonic() < deadline
            await pilot.pause(0.02)
        await pilot.pause(0.1)
        assert rows(screen) == shown
        assert page_line(screen) == "【每頁 20 筆 · 第 1 頁 共 2 頁 22 筆】"


class BrokenDirectory(UnitDirectory):
    def search(
        self, query: str = "", county: str | None = None, page: int = 1, page_size: int = 20
    ) -> UnitPage:
        raise peewee.OperationalError("database is locked")


async def test_a_failing_search_is_reported_not_fatal(sqlite_settings: Settings) -> None:
    open_database(sqlite_settings.database_url, sqlite_settings.sqlite_path)
    app = Host(BrokenDirectory())
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await settle(pilot)
        message = screen.paged.notice
        assert message.display
        assert str(message.render()) == "✖ 查詢失敗，請稍後再試"
        assert not screen.query_one(DataTable).display
        await pilot.press("escape")
        await pilot.pause()
        assert app.result is None


async def test_unit_names_are_shown_literally(sqlite_settings: Settings) -> None:
    app = _host(sqlite_settings)
    name = "[bold red]x[/]"
    unit = Unit.get(Unit.code == "0001100018")
    Unit.update(name=name, search_key=fold(name)).where(Unit.id == unit.id).execute()
    refresh_unit_grams()
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await settle(pilot)
        assert rows(screen)[0] == ["臺北市", "0001100018", name]
        assert "[bold red]x[/]" in screen_text(app)
        screen = await type_query(pilot, "bold red")
        assert rows(screen) == [["臺北市", "0001100018", name]]


async def test_english(sqlite_settings: Settings) -> None:
    app = _host(sqlite_settings, "en")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await settle(pilot)
        assert screen.query_one("#unit-search-dialog").border_title == "Unit search"
        assert page_line(screen) == "[20 per page · page 1 of 259 · 5165 units]"
        shot = screen_text(app)
        assert "[All]" in shot
        assert "PgDn Next page" in shot


async def test_fits_80_by_24(sqlite_settings: Settings) -> None:
    app = _host(sqlite_settings)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await settle(pilot)
        dialog = screen.query_one("#unit-search-dialog")
        assert dialog.region.right <= 80 and dialog.region.bottom <= 23
        table = screen.query_one(DataTable)
        assert table.region.height >= 10
        assert table.virtual_size.width <= table.scrollable_content_region.width
        for widget in ("#unit-search-query", "#unit-search-submit", Pager):
            assert screen.query_one(widget).region.right <= dialog.region.right


async def _quiet(pilot: Pilot[None]) -> None:
    """Settled, and without the blinking cursor (a snapshot must not depend on time)."""
    await settle(pilot)
    pilot.app.screen.query_one(Input).cursor_blink = False
    await pilot.pause()


def test_unit_search_snapshot(snap_compare: SnapCompare, sqlite_settings: Settings) -> None:
    assert snap_compare(_host(sqlite_settings), terminal_size=(100, 30), run_before=_quiet)


def test_unit_search_snapshot_second_page_of_a_query(
    snap_compare: SnapCompare, sqlite_settings: Settings
) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await type_query(pilot, "衛生局")
        await pilot.press("pagedown")
        await _quiet(pilot)

    assert snap_compare(_host(sqlite_settings), terminal_size=(100, 30), run_before=run_before)


def test_unit_search_snapshot_80_by_24(
    snap_compare: SnapCompare, sqlite_settings: Settings
) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await settle(pilot)  # PgDn waits for the first answer (it needs the page count)
        for _ in range(14):
            await pilot.press("pagedown")
        await _quiet(pilot)

    assert snap_compare(_host(sqlite_settings), terminal_size=(80, 24), run_before=run_before)
