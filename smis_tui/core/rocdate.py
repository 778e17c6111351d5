"""民國 (Republic of China era) dates: 民國 year = Gregorian year − 1911.

``to_roc(date(2024, 7, 26)) == "113/07/26"`` and ``to_roc(date(2010, 1, 5)) ==
"99/01/05"`` (the year is never padded).  :func:`from_roc` accepts
``"113/07/26"``, ``"113-07-26"``, ``"113.07.26"``, the compact 7-digit form
``"1130726"`` and ``"民國113年7月26日"`` (full-width digits too).

Pure standard-library code; never imports Textual.
"""

from __future__ import annotations

import calendar
import datetime
import re
import unicodedata

__all__ = ["ROC_OFFSET", "RocDateError", "from_roc", "to_roc"]

#: Gregorian year = 民國 year + ROC_OFFSET.
ROC_OFFSET = 1911

_DEFAULT_FIELD = "日期"
_EXAMPLE = "例如 113/07/26"

# ASCII-only digit classes: \d would also match e.g. Arabic-Indic digits.
_SEPARATED = re.compile(r"(?:民國)?([0-9]{1,4})([/.\-])([0-9]{1,2})\2([0-9]{1,2})")
_COMPACT = re.compile(r"(?:民國)?([0-9]{7}|[0-9]{8})")  # 8 digits: Gregorian by mistake
_CHINESE = re.compile(r"(?:民國)?([0-9]{1,4})年([0-9]{1,2})月([0-9]{1,2})日?")


class RocDateError(ValueError):
    """Invalid 民國 date; ``str(e)`` is a zh-TW sentence ``"<欄位>：<問題>"``."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}：{problem}")
        self.field = field
        self.problem = problem

    def __reduce__(self) -> tuple[type[RocDateError], tuple[str, str]]:
        return (type(self), (self.field, self.problem))


def to_roc(d: datetime.date) -> str:
    """Format ``d`` as ``"113/07/26"``; dates before 1912-01-01 raise :class:`RocDateError`."""
    year = d.year - ROC_OFFSET
    if year < 1:
        raise RocDateError(_DEFAULT_FIELD, "早於民國元年（1912 年），無法以民國紀年表示")
    return f"{year}/{d.month:02d}/{d.day:02d}"


def _split(text: str) -> tuple[str, str, str] | None:
    compact = _COMPACT.fullmatch(text)
    if compact:
        digits = compact.group(1)
        year_len = len(digits) - 4
        return digits[:year_len], digits[year_len:-2], digits[-2:]
    separated = _SEPARATED.fullmatch(text)
    if separated:
        return separated.group(1), separated.group(3), separated.group(4)
    chinese = _CHINESE.fullmatch(text)
    if chinese:
        return chinese.group(1), chinese.group(2), chinese.group(3)
    return None


def from_roc(text: str, *, field: str = _DEFAULT_FIELD) -> datetime.date:
    """Parse a 民國 date string; raises :class:`RocDateError` with a zh-TW message."""
    s = unicodedata.normalize("NFKC", text).strip()
    if not s:
        raise RocDateError(field, "請輸入")
    s = "".join(s.split())  # "民國 113 年 7 月 26 日" → "民國113年7月26日"
    parts = _split(s)
    if parts is None:
        raise RocDateError(field, f"格式不正確，{_EXAMPLE}")
    year_text, month_text, day_text = parts
    if len(year_text) == 4:
        raise RocDateError(field, f"請以民國年輸入（{_EXAMPLE}），而非西元年")
    year, month, day = int(year_text), int(month_text), int(day_text)
    if year < 1:
        raise RocDateError(field, "民國年份應大於 0")
    if not 1 <= month <= 12:
        raise RocDateError(field, "月份應介於 1 至 12")
    gregorian = year + ROC_OFFSET
    days = calendar.monthrange(gregorian, month)[1]
    if not 1 <= day <= days:
        raise RocDateError(field, f"民國 {year} 年 {month} 月只有 {days} 天，此日期不存在")
    return datetime.date(gregorian, month, day)
