"""The unit directory: search and paging for the 單位查詢 screen
(docs/architecture.md, "Data walk").

A query matches a unit when its folded text (臺→台, full-width→half-width, case) is a
substring of the unit's folded name (``search_key``), or when it is the beginning of
the unit's code (醫事機構代碼). Only active units are listed, in the real county order
(臺北市 … 連江縣), then by code. Substring matching never uses LIKE, so "100%" looks
for the characters 1 0 0 %.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import peewee

from models.db import database_proxy, is_postgres
from models.schema import Category, Unit, UnitCategory
from models.textfold import fold
from models.unit_data import COUNTY_NAMES
from models.unit_search import query_grams
from smis_tui.services.paging import Paged, page_bounds, page_offset

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 200

# 【每頁 20 筆 · 第 1 頁 共 259 頁 5165 筆】 (the seed's pager line).
PAGE_LINE_FORMAT = "【每頁 {page_size} 筆 · 第 {page} 頁 共 {pages} 頁 {total} 筆】"

_CODE_PREFIX = re.compile(r"[0-9A-Z]{1,10}")
_COUNTY_BY_FOLDED = {fold(name): name for name in COUNTY_NAMES}


@dataclass(frozen=True)
class UnitRow:
    id: int
    code: str
    name: str
    county: str
    kind: str


@dataclass(frozen=True)
class UnitPage(Paged):
    rows: list[UnitRow]


def page_line(page: UnitPage) -> str:
    """The pager summary, e.g. 【每頁 20 筆 · 第 1 頁 共 259 頁 5165 筆】."""
    return PAGE_LINE_FORMAT.format(
        page_size=page.page_size, page=page.page, pages=page.pages, total=page.total
    )


def normalise_county(county: str | None) -> str | None:
    """The official county name for 台北市 / 臺北市 / ' 臺北市 '; None if unknown or empty."""
    if county is None:
        return None
    return _COUNTY_BY_FOLDED.get(fold(county))


def _next_prefix(prefix: str) -> str:
    """The smallest string above every string starting with ``prefix`` ([0-9A-Z] only)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


# Grams more frequent than this are all "common"; the rarest pair of a long query is
# found by counting each pair only up to here.
GRAM_COUNT_CAP = 2000
_ROWS = "u.id, u.code, u.name, u.county, u.kind"


class UnitDirectory:
    """Unit look-ups against the bound database; holds no state of its own."""

    def counties(self) -> list[str]:
        """The 22 counties in their official order (臺北市 … 連江縣)."""
        return list(COUNTY_NAMES)

    def search(
        self,
        query: str = "",
        county: str | None = None,
        page: int = 1,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> UnitPage:
        """One page of active units matching ``query`` (name or code prefix) and ``county``.

        ``page`` is clamped to 1..pages; there is always at least one page. An unknown
        county matches nothing. One COUNT and one page query, both index ranges: the
        name match goes through the unit gram table (models.unit_search), the code
        prefix through the code index. Every fragment of SQL below is a constant of
        this module; user text is only ever a bound parameter.
        """
        page_size = max(1, min(int(page_size), MAX_PAGE_SIZE))
        rank: int | None = None
        if county is not None and county.strip():
            official = normalise_county(county)
            if official is None:
                return UnitPage(rows=[], page=1, pages=1, total=0, page_size=page_size)
            rank = COUNTY_NAMES.index(official) + 1
        db = database_proxy.obj
        p = db.param
        folded = fold(query)
        if not folded:
            where = f"u.active = {p}" + (f" AND u.county_rank = {p}" if rank else "")
            params: list[object] = [True] + ([rank] if rank else [])
            keys = f"SELECT u.id, u.county_rank, u.code FROM unit u WHERE {where}"  # noqa: S608
        else:
            keys, params = self._matches(db, folded, rank)
        if not keys:
            return UnitPage(rows=[], page=1, pages=1, total=0, page_size=page_size)
        total = int(db.execute_sql(f"SELECT COUNT(*) FROM ({keys}) k", params).fetchone()[0])  # noqa: S608
        page, pages = page_bounds(int(page), total, page_size)
        rows: list[UnitRow] = []
        if total:
            sql = (
                f"SELECT {_ROWS} FROM ({keys} ORDER BY 2, 3 LIMIT {p} OFFSET {p}) k "  # noqa: S608
                "JOIN unit u ON u.id = k.id ORDER BY k.county_rank, k.code"
            )
            cursor = db.execute_sql(sql, [*params, page_size, page_offset(page, page_size)])
            rows = [UnitRow(*row) for row in cursor]
        return UnitPage(rows, page=page, pages=pages, total=total, page_size=page_size)

    def _matches(
        self, db: peewee.Database, folded: str, rank: int | None
    ) -> tuple[str, list[object]]:
        """SQL selecting (id, county_rank, code) of the matches, and its parameters;
        an empty statement when nothing can match."""
        p = db.param
        county = f" AND g.county_rank = {p}" if rank else ""
        county_params: list[object] = [rank] if rank else []
        grams = query_grams(folded)
        rarest = min(grams, key=lambda gram: self._gram_count(db, gram))
        parts: list[str] = []
        params: list[object] = []
        if self._gram_count(db, rarest):
            name = (
                "SELECT g.unit_id AS id, g.county_rank, g.code FROM unit_gram g"  # noqa: S608
                f" WHERE g.gram = {p}{county}"
            )
            params += [rarest, *county_params]
            if len(folded) > 2:
                contains = (
                    "strpos(u.search_key, {p}) > 0"
                    if is_postgres(db)
                    else "instr(u.search_key, {p}) > 0"
                )
                name = (
                    name.replace(
                        " FROM unit_gram g", " FROM unit_gram g JOIN unit u ON u.id = g.unit_id"
                    )
                    + " AND "
                    + contains.format(p=p)
                )
                params.append(folded)
            parts.append(name)
        prefix = folded.upper()
        if _CODE_PREFIX.fullmatch(prefix):
            parts.append(
                "SELECT c.id, c.county_rank, c.code FROM unit c"  # noqa: S608
                f" WHERE c.active = {p} AND c.code >= {p} AND c.code < {p}"
                + (f" AND c.county_rank = {p}" if rank else "")
            )
            params += [True, prefix, _next_prefix(prefix), *county_params]
        return " UNION ".join(parts), params

    @staticmethod
    def _gram_count(db: peewee.Database, gram: str) -> int:
        sql = f"SELECT COUNT(*) FROM (SELECT 1 FROM unit_gram WHERE gram = {db.param} LIMIT {db.param}) x"  # noqa: S608
        return int(db.execute_sql(sql, [gram, GRAM_COUNT_CAP]).fetchone()[0])

    def get(self, code: str, include_inactive: bool = False) -> UnitRow | None:
        """The unit with this code (active only unless ``include_inactive``)."""
        wanted = fold(code).upper()
        if len(wanted) != 10 or not _CODE_PREFIX.fullmatch(wanted):
            return None
        condition: peewee.Expression = Unit.code == wanted
        if not include_inactive:
            condition &= Unit.active == True  # noqa: E712 (SQL, not Python)
        row = (
            Unit.select(Unit.id, Unit.code, Unit.name, Unit.county, Unit.kind)
            .where(condition)
            .tuples()
            .first()
        )
        return UnitRow(*row) if row else None

    def categories_of(self, unit_id: int) -> set[str]:
        """Codes of the categories (subsystems) the unit handles."""
        rows = (
            Category.select(Category.code)
            .join(UnitCategory, on=UnitCategory.category == Category.id)
            .where(UnitCategory.unit == unit_id)
            .tuples()
        )
        return {code for (code,) in rows}
