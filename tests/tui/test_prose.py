"""Prose (smis_tui/widgets/prose.py): long zh-TW text on the screen never has a line
starting with ，、。 or ending with 「, takes the rows its lines need, and breaks its
lines again when the terminal is resized or the text changes."""

from __future__ import annotations

import pytest
from rich.cells import cell_len
from textual.app import App, ComposeResult
from textual.containers import Vertical
from textual.geometry import Size
from textual.widgets import Label, Static

from smis_tui.core.linebreak import NO_LINE_END, NO_LINE_START, break_lines
from smis_tui.text import t
from smis_tui.widgets.prose import Prose, ProseLabel

# At 40 and at 80 columns, Textual's own wrapping starts a line of this with 。
NOTICE = t("apply.notice") + t("error.account_active") + t("login.disabled")


class _ProseApp(App[None]):
    CSS = """
    #boxed { border: round white; padding: 0 3; height: auto; }
    """

    def __init__(self, text: str, kind: type[Static] = Prose, *, boxed: bool = False) -> None:
        super().__init__()
        self.text = text
        self.kind = kind
        self.boxed = boxed

    def compose(self) -> ComposeResult:
        if self.boxed:
            with Vertical(id="boxed"):
                yield self.kind(self.text, id="prose", markup=False)
        else:
            yield self.kind(self.text, id="prose", markup=False)
        yield Static("below", id="below")


def _shown_lines(app: App[None]) -> list[str]:
    """The widget's rows as drawn, trailing blanks left off."""
    prose = app.query_one("#prose")
    return [prose.render_line(y).text.rstrip() for y in range(prose.size.height)]


def _rule_breaks(lines: list[str]) -> list[str]:
    return [
        line
        for index, line in enumerate(lines)
        if (index and line[:1] in NO_LINE_START) or line[-1:] in NO_LINE_END
    ]


@pytest.mark.parametrize("columns", [40, 80])
async def test_textual_alone_starts_a_line_with_a_stop(columns: int) -> None:
    """The fault Prose is for, shown on the same text and widths as the tests below."""
    app = _ProseApp(NOTICE, Static)
    async with app.run_test(size=(columns, 24)) as pilot:
        await pilot.pause()
        assert _rule_breaks(_shown_lines(app))


@pytest.mark.parametrize("kind", [Prose, ProseLabel])
@pytest.mark.parametrize("columns", [40, 80])
async def test_no_line_starts_with_a_stop_and_the_rows_fit(columns: int, kind: type[Prose]) -> None:
    app = _ProseApp(NOTICE, kind)
    async with app.run_test(size=(columns, 24)) as pilot:
        await pilot.pause()
        lines = _shown_lines(app)
        assert _rule_breaks(lines) == []
        assert lines == break_lines(NOTICE, columns)
        assert "".join(lines) == NOTICE
        prose = app.query_one("#prose")
        assert prose.size.height == len(lines)
        assert app.query_one("#below").region.y == prose.region.bottom


async def test_lines_break_again_when_the_terminal_is_resized() -> None:
    app = _ProseApp(NOTICE)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert len(_shown_lines(app)) == 3
        await pilot.resize_terminal(40, 24)
        await pilot.pause()
        lines = _shown_lines(app)
        assert lines == break_lines(NOTICE, 40)
        assert len(lines) == 6
        assert app.query_one("#below").region.y == 6
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert _shown_lines(app) == break_lines(NOTICE, 80)
        assert app.query_one("#below").region.y == 3


async def test_lines_break_again_when_the_text_changes() -> None:
    app = _ProseApp("短。")
    async with app.run_test(size=(40, 24)) as pilot:
        await pilot.pause()
        assert _shown_lines(app) == ["短。"]
        app.query_one("#prose", Prose).update(NOTICE)
        await pilot.pause()
        lines = _shown_lines(app)
        assert lines == break_lines(NOTICE, 40)
        assert app.query_one("#below").region.y == len(lines)


@pytest.mark.parametrize("kind", [Prose, ProseLabel])
async def test_lines_fit_inside_the_border_and_padding_around_them(kind: type[Prose]) -> None:
    app = _ProseApp(NOTICE, kind, boxed=True)
    async with app.run_test(size=(40, 24)) as pilot:
        await pilot.pause()
        prose = app.query_one("#prose")
        lines = _shown_lines(app)
        assert prose.size.width == 40 - 2 - 6
        assert all(cell_len(line) <= prose.size.width for line in lines)
        assert lines == break_lines(NOTICE, prose.size.width)
        assert app.query_one("#below").region.y == len(lines) + 2


async def test_text_from_people_is_shown_as_it_is_without_hidden_characters() -> None:
    app = _ProseApp("王[b]小明[/b]\x1b[31m\u202e，謝謝")
    async with app.run_test(size=(40, 24)) as pilot:
        await pilot.pause()
        assert _shown_lines(app) == ["王[b]小明[/b][31m，謝謝"]


async def test_explicit_newlines_stay() -> None:
    app = _ProseApp("第一行\n\n第三行")
    async with app.run_test(size=(40, 24)) as pilot:
        await pilot.pause()
        assert _shown_lines(app) == ["第一行", "", "第三行"]


async def test_a_prose_label_is_as_wide_as_a_short_text_and_found_as_a_label() -> None:
    app = _ProseApp("請插入卡片", ProseLabel)
    async with app.run_test(size=(40, 24)) as pilot:
        await pilot.pause()
        label = app.query_one("#prose", Label)
        assert label.size == Size(10, 1)
        assert str(label.render()) == "請插入卡片"
        label.update(NOTICE)
        await pilot.pause()
        assert label.size == Size(40, len(break_lines(NOTICE, 40)))
        assert str(label.render()) == NOTICE


class _ShortProseApp(App[None]):
    def compose(self) -> ComposeResult:
        yield Prose(NOTICE, id="prose", max_lines=2)
        yield Static("below", id="below")


@pytest.mark.parametrize("columns", [40, 80])
async def test_at_most_max_lines_the_last_ending_in_an_ellipsis(columns: int) -> None:
    """軌跡紀錄's 說明 under its table: two lines, and … where the text goes on."""
    app = _ShortProseApp()
    async with app.run_test(size=(columns, 24)) as pilot:
        await pilot.pause()
        lines = _shown_lines(app)
        assert len(lines) == 2 and app.query_one("#prose").size.height == 2
        assert lines[0] == break_lines(NOTICE, columns)[0]
        assert lines[1].endswith("…") and cell_len(lines[1]) <= columns
        assert NOTICE.startswith("".join(lines)[:-1])
        prose = app.query_one("#prose", Prose)
        prose.update("短")
        await pilot.pause()
        assert _shown_lines(app) == ["短"]
