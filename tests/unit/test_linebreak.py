"""Chinese line breaking (smis_tui.core.linebreak): no line starts with a closing
bracket or a stop, none ends with an opening bracket, Latin words stay whole, nothing
is wider than the line and nothing but the spaces of a break is lost."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.cells import cell_len

from smis_tui.core.linebreak import NO_LINE_END, NO_LINE_START, break_lines
from smis_tui.text import CATALOGS

_OPENING = sorted(NO_LINE_END)
_CLOSING = sorted(NO_LINE_START)
_HANZI = "申請帳號權限異動刪除登入系統個人資料維護身分證卡片綁定醫事人員憑證中文"


def _rule_breaks(lines: list[str]) -> list[tuple[str, str]]:
    """Each place where a line starts with a closing mark or ends with an opening one."""
    return [
        (line, following)
        for line, following in zip(lines, lines[1:], strict=False)
        if (following and following[0] in NO_LINE_START) or (line and line[-1] in NO_LINE_END)
    ]


def _rebuilds(text: str, lines: list[str]) -> bool:
    """Whether ``text`` is ``lines`` joined by newlines or by runs of spaces (the spaces
    of a break), with perhaps spaces at a paragraph's end left off."""
    pattern = "".join(
        re.escape(line) + ("(?: *|\n)" if index < len(lines) - 1 else " *")
        for index, line in enumerate(lines)
    )
    return re.fullmatch(pattern, text) is not None and len(lines) >= text.count("\n") + 1


# --- examples ---------------------------------------------------------------------


def test_a_comma_never_starts_a_line_the_character_before_comes_down_with_it() -> None:
    assert break_lines("請包含區碼，例如 02-12345678", 10) == [
        "請包含區",
        "碼，例如",
        "02-1234567",
        "8",
    ]


def test_an_enumeration_comma_never_starts_a_line() -> None:
    text = "・清除您的個人資料：姓名、連絡電話、電子信箱、行動電話、身分證號與卡片綁定。"
    lines = break_lines(text, 54)
    assert lines == [
        "・清除您的個人資料：姓名、連絡電話、電子信箱、行動電",
        "話、身分證號與卡片綁定。",
    ]


def test_an_opening_bracket_goes_to_the_next_line_with_what_it_opens() -> None:
    assert break_lines("您的帳號已停用，請點選「確定」重新申請", 22) == [
        "您的帳號已停用，請點選",
        "「確定」重新申請",
    ]
    assert break_lines("您的帳號已停用，請點「確定」", 20) == ["您的帳號已停用，請點", "「確定」"]


def test_a_closing_bracket_after_a_full_line_pulls_the_last_character_down() -> None:
    assert break_lines("無須再次申請（送出日期）", 22) == ["無須再次申請（送出日", "期）"]


def test_latin_words_break_only_at_spaces_and_the_spaces_are_dropped() -> None:
    text = "Insert your card, e.g. HiCOS or MOICA, then type its PIN."
    lines = break_lines(text, 20)
    assert lines == ["Insert your card,", "e.g. HiCOS or MOICA,", "then type its PIN."]


def test_latin_and_chinese_may_break_where_they_meet() -> None:
    assert break_lines("請插入HiCOS卡片", 8) == ["請插入", "HiCOS卡", "片"]


def test_a_word_longer_than_the_line_is_cut_but_not_before_a_stop() -> None:
    assert break_lines("abcdefghij，", 5) == ["abcde", "fghi", "j，"]


def test_explicit_newlines_stay_and_empty_lines_too() -> None:
    assert break_lines("第一段。\n\n第二段，很長的一段文字。", 12) == [
        "第一段。",
        "",
        "第二段，很長",
        "的一段文字。",
    ]


def test_ideographs_take_two_cells() -> None:
    assert break_lines("一二三四五", 5) == ["一二", "三四", "五"]


def test_spaces_before_a_closing_mark_do_not_make_a_break() -> None:
    assert break_lines("中文中文 ，中文", 10) == ["中文中", "文 ，中文"]


def test_a_paragraph_of_closing_marks_alone_still_fits() -> None:
    lines = break_lines("，，，，，，，", 4)
    assert lines == ["，，", "，，", "，，", "，"]


def test_no_room_yet_keeps_each_paragraph_whole() -> None:
    assert break_lines("中文，中文\nabc", 0) == ["中文，中文", "abc"]


def test_a_character_wider_than_the_line_stands_alone() -> None:
    assert break_lines("中文", 1) == ["中", "文"]


def test_empty_text_is_one_empty_line() -> None:
    assert break_lines("", 10) == [""]


# --- the kiosk's own texts -----------------------------------------------------------


_CATALOGUE = sorted(
    {
        (language, key, value)
        for language, catalog in CATALOGS.items()
        for key, value in catalog.items()
    }
)


@pytest.mark.parametrize("width", range(20, 77))
def test_every_kiosk_text_keeps_the_rules_at_widths_from_20_to_76(width: int) -> None:
    faults = []
    for language, key, value in _CATALOGUE:
        lines = break_lines(value, width)
        if any(cell_len(line) > width for line in lines):
            faults.append(f"{language} {key}: too wide {lines}")
        if _rule_breaks(lines):
            faults.append(f"{language} {key}: {_rule_breaks(lines)}")
        if not _rebuilds(value, lines):
            faults.append(f"{language} {key}: lost text {lines}")
    assert faults == []


# --- properties ----------------------------------------------------------------------

_cjk = st.sampled_from(_HANZI)
_latin = st.text(alphabet="abcXYZ019@-/'", min_size=1, max_size=8)


@st.composite
def _token(draw: st.DrawFn) -> str:
    opening = draw(st.sampled_from(["", *_OPENING]))
    core = draw(st.one_of(_cjk, _latin))
    closing = draw(st.sampled_from(["", *_CLOSING]))
    return opening + core + closing


@st.composite
def _kept_text(draw: st.DrawFn) -> str:
    """Text in which every run that must stay on one line is at most 12 cells wide."""
    paragraphs = []
    for _ in range(draw(st.integers(1, 3))):
        text = ""
        for token in draw(st.lists(_token(), max_size=30)):
            narrow_meet = text and cell_len(text[-1]) == 1 and cell_len(token[0]) == 1
            text += (" " if narrow_meet else draw(st.sampled_from(["", " "]))) + token
        paragraphs.append(text)
    return "\n".join(paragraphs)


@given(_kept_text(), st.integers(12, 60))
def test_no_line_breaks_a_rule_when_the_line_has_room(text: str, width: int) -> None:
    lines = break_lines(text, width)
    assert all(cell_len(line) <= width for line in lines)
    assert _rule_breaks(lines) == []
    assert _rebuilds(text, lines)


_anything = st.text(
    alphabet=st.one_of(
        st.sampled_from(_HANZI + "".join(_OPENING) + "".join(_CLOSING) + "  ab1\n"),
        st.characters(codec="utf-8", exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn")),
    ),
    max_size=120,
)


@given(_anything, st.integers(4, 40))
def test_no_line_is_wider_than_asked_and_only_break_spaces_are_lost(text: str, width: int) -> None:
    lines = break_lines(text, width)
    assert all(cell_len(line) <= width for line in lines)
    assert _rebuilds(text, lines)


@st.composite
def _hanzi_with_marks(draw: st.DrawFn) -> str:
    """Ideographs, each with at most one bracket or stop: nothing that must stay
    together is wider than 4 cells."""
    tokens = draw(
        st.lists(
            st.tuples(st.sampled_from(["", *_OPENING]), _cjk, st.sampled_from(["", *_CLOSING])),
            max_size=40,
        )
    )
    return "".join(
        (opening + hanzi) if opening else (hanzi + closing) for opening, hanzi, closing in tokens
    )


@given(_hanzi_with_marks(), st.integers(4, 11))
def test_even_narrow_lines_keep_the_rules(text: str, width: int) -> None:
    lines = break_lines(text, width)
    assert all(cell_len(line) <= width for line in lines)
    assert _rule_breaks(lines) == []
    assert "".join(lines) == text


@given(st.text(alphabet="".join(_CLOSING), min_size=1, max_size=40), st.integers(4, 40))
def test_a_paragraph_of_closing_marks_alone_is_cut_anywhere(text: str, width: int) -> None:
    lines = break_lines(text, width)
    assert all(cell_len(line) <= width for line in lines)
    assert "".join(lines) == text
