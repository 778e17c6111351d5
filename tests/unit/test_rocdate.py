"""Tests for smis_tui.core.rocdate (民國 dates)."""

from __future__ import annotations

import datetime
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smis_tui.core.rocdate import ROC_OFFSET, RocDateError, from_roc, to_roc

roc_dates = st.dates(min_value=datetime.date(1912, 1, 1), max_value=datetime.date(2300, 12, 31))


@pytest.mark.parametrize(
    ("d", "text"),
    [
        (datetime.date(2024, 7, 26), "113/07/26"),
        (datetime.date(2010, 1, 5), "99/01/05"),
        (datetime.date(1912, 1, 1), "1/01/01"),
        (datetime.date(2011, 12, 31), "100/12/31"),
        (datetime.date(2024, 2, 29), "113/02/29"),
        (datetime.datetime(2024, 7, 26, 23, 59), "113/07/26"),
    ],
)
def test_to_roc(d: datetime.date, text: str) -> None:
    assert to_roc(d) == text


def test_to_roc_rejects_dates_before_roc_1() -> None:
    with pytest.raises(RocDateError, match="民國元年"):
        to_roc(datetime.date(1911, 12, 31))


@pytest.mark.parametrize(
    "text",
    [
        "113/07/26",
        "113-07-26",
        "113.07.26",
        "1130726",
        "民國113年7月26日",
        "民國113年07月26日",
        "113年7月26日",
        "民國 113 年 7 月 26 日",
        "113/7/26",
        " 113/07/26 ",
        "１１３／０７／２６",  # full-width
        "民國113/07/26",
    ],
)
def test_from_roc_formats(text: str) -> None:
    assert from_roc(text) == datetime.date(2024, 7, 26)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("99/01/05", datetime.date(2010, 1, 5)),
        ("099/01/05", datetime.date(2010, 1, 5)),
        ("0990105", datetime.date(2010, 1, 5)),
        ("1/01/01", datetime.date(1912, 1, 1)),
        ("113/02/29", datetime.date(2024, 2, 29)),
        ("389/12/31", datetime.date(2300, 12, 31)),
    ],
)
def test_from_roc_values(text: str, expected: datetime.date) -> None:
    assert from_roc(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "請輸入"),
        ("   ", "請輸入"),
        ("113/02/30", "只有 29 天"),
        ("112/02/29", "只有 28 天"),
        ("113/04/31", "只有 30 天"),
        ("113/07/00", "此日期不存在"),
        ("0/01/01", "民國年份應大於 0"),
        ("000/01/01", "民國年份應大於 0"),
        ("0000101", "民國年份應大於 0"),
        ("113/13/01", "月份應介於 1 至 12"),
        ("113/00/01", "月份應介於 1 至 12"),
        ("2024/07/26", "西元年"),
        ("20240726", "西元年"),
        ("113/07-26", "格式不正確"),
        ("113/07", "格式不正確"),
        ("113726", "格式不正確"),
        ("abc", "格式不正確"),
        ("-1/01/01", "格式不正確"),
        ("113/07/26\x00", "格式不正確"),
        ("\u202e113/07/26", "格式不正確"),
        ("١١٣/٠٧/٢٦", "格式不正確"),  # Arabic-Indic digits are not accepted
    ],
)
def test_from_roc_invalid(text: str, fragment: str) -> None:
    with pytest.raises(RocDateError) as info:
        from_roc(text)
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith("日期：")
    assert fragment in str(info.value)


def test_custom_field_and_pickle() -> None:
    with pytest.raises(RocDateError) as info:
        from_roc("113/02/30", field="帳號到期日")
    err = info.value
    assert str(err) == "帳號到期日：民國 113 年 2 月只有 29 天，此日期不存在"
    assert err.field == "帳號到期日"
    clone = pickle.loads(pickle.dumps(err))
    assert str(clone) == str(err)


@settings(max_examples=300)
@given(roc_dates)
def test_roundtrip(d: datetime.date) -> None:
    text = to_roc(d)
    assert from_roc(text) == d
    year, month, day = text.split("/")
    assert int(year) == d.year - ROC_OFFSET
    assert not year.startswith("0")
    assert len(month) == len(day) == 2


@settings(max_examples=200)
@given(roc_dates)
def test_roundtrip_other_formats(d: datetime.date) -> None:
    year = d.year - ROC_OFFSET
    assert from_roc(f"{year:03d}{d.month:02d}{d.day:02d}") == d
    assert from_roc(f"民國{year}年{d.month}月{d.day}日") == d
    assert from_roc(f"{year}-{d.month:02d}-{d.day:02d}") == d
    assert from_roc(f"{year}.{d.month}.{d.day}") == d
