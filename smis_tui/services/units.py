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


_ROWS = "u.id, u.code, u.name, u.county, u.kind"
# (county rank, units) of the matches, in county order, counties without any left out.
CountyCounts = list[tuple[int, int]]


@dataclass(frozen=True)
class _Part:
    """One SELECT of (id, county_rank, code) rows whose table alias is ``alias``."""

    sql: str
    params: list[object]
    alias: str


def _page_start(counts: CountyCounts, offset: int) -> tuple[int, int]:
    """The county the row at ``offset`` is in, and how many of that county's matches
    come before it: a page is read from its own county on, never from the first row."""
    before = 0
    for rank, units in counts:
        if before + units > offset:
            return rank, offset - before
        before += units
    raise ValueError(f"offset {offset} is past the {before} matches")


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
        county matches nothing. The matches are counted per county: from the gram
        counts (models.unit_search) when one gram decides them, else by one pass over
        an index range. Page N is then read from the county it starts in, with an
        OFFSET of at most that county's matches, so jumping to any page costs what
        stepping to it would. Every fragment of SQL below is a constant of this module;
        user text is only ever a bound parameter.
        """
        page_size = max(1, min(int(page_size), MAX_PAGE_SIZE))
        rank: int | None = None
        if county is not None and county.strip():
            official = normalise_county(county)
            if official is None:
                return UnitPage(rows=[], page=1, pages=1, total=0, page_size=page_size)
            rank = COUNTY_NAMES.index(official) + 1
        db = database_proxy.obj
        parts, counts = self._matches(db, fold(query), rank)
        if not parts:
            return UnitPage(rows=[], page=1, pages=1, total=0, page_size=page_size)
        if counts is None:
            counts = self._count(db, parts)
        total = sum(units for _, units in counts)
        page, pages = page_bounds(int(page), total, page_size)
        rows: list[UnitRow] = []
        if total:
            start_rank, skip = _page_start(counts, page_offset(page, page_size))
            # With a county chosen, its equality already is the start (SQLite would
            # take a second bound on the rank for a range and sort the page).
            rows = self._rows(db, parts, None if rank else start_rank, skip, page_size)
        return UnitPage(rows, page=page, pages=pages, total=total, page_size=page_size)

    def _matches(
        self, db: peewee.Database, folded: str, rank: int | None
    ) -> tuple[list[_Part], CountyCounts | None]:
        """The SELECTs whose union is the matches (none when nothing can match), and
        their counts per county when the gram counts already answer them."""
        p = db.param
        county = f" AND g.county_rank = {p}" if rank else ""
        county_params: list[object] = [rank] if rank else []
        grams = query_grams(folded)
        counts = self._gram_counts(db, grams, rank)
        rarest = min(grams, key=lambda gram: sum(units for _, units in counts[gram]))
        parts: list[_Part] = []
        if counts[rarest]:
            name = (
                "SELECT g.unit_id AS id, g.county_rank, g.code FROM unit_gram g"  # noqa: S608
                f" WHERE g.gram = {p}{county}"
            )
            params: list[object] = [rarest, *county_params]
            if len(folded) > 2:
                contains = "strpos" if is_postgres(db) else "instr"
                name += f" AND {contains}(g.search_key, {p}) > 0"
                params.append(folded)
            parts.append(_Part(name, params, "g"))
        prefix = folded.upper()
        if _CODE_PREFIX.fullmatch(prefix):
            parts.append(
                _Part(
                    "SELECT c.id, c.county_rank, c.code FROM unit c"  # noqa: S608
                    f" WHERE c.active = {p} AND c.code >= {p} AND c.code < {p}"
                    + (f" AND c.county_rank = {p}" if rank else ""),
                    [True, prefix, _next_prefix(prefix), *county_params],
                    "c",
                )
            )
        # One gram alone decides the matches only when no name has to be checked and
        # no code can match besides.
        decided = len(parts) == 1 and parts[0].alias == "g" and len(folded) <= 2
        return parts, (counts[rarest] if decided else None)

    @staticmethod
    def _gram_counts(
        db: peewee.Database, grams: list[str], rank: int | None
    ) -> dict[str, CountyCounts]:
        """For each gram, how many units hold it in each county (in ``rank`` only when
        given), in county order."""
        p = db.param
        sql = (
            "SELECT gram, county_rank, units FROM unit_gram_count"  # noqa: S608
            f" WHERE gram IN ({', '.join([p] * len(grams))}) AND units > 0"
            + (f" AND county_rank = {p}" if rank else "")
            + " ORDER BY gram, county_rank"
        )
        counts: dict[str, CountyCounts] = {gram: [] for gram in grams}
        for gram, county_rank, units in db.execute_sql(sql, [*grams, *([rank] if rank else [])]):
            counts[gram].append((int(county_rank), int(units)))
        return counts

    @staticmethod
    def _count(db: peewee.Database, parts: list[_Part]) -> CountyCounts:
        """The matches per county, counted in one pass over their index ranges."""
        keys = " UNION ".join(part.sql for part in parts)
        sql = (
            f"SELECT k.county_rank, COUNT(*) FROM ({keys}) k"  # noqa: S608
            " GROUP BY k.county_rank ORDER BY k.county_rank"
        )
        params = [value for part in parts for value in part.params]
        return [(int(r), int(n)) for r, n in db.execute_sql(sql, params)]

    @staticmethod
    def _rows(
        db: peewee.Database,
        parts: list[_Part],
        start_rank: int | None,
        skip: int,
        page_size: int,
    ) -> list[UnitRow]:
        """``page_size`` matches in page order, from the ``skip``-th match of county
        ``start_rank`` on (of the first county when None)."""
        p = db.param
        if start_rank is None:
            keys = " UNION ".join(part.sql for part in parts)
            params = [value for part in parts for value in part.params]
        else:
            keys = " UNION ".join(
                f"{part.sql} AND {part.alias}.county_rank >= {p}" for part in parts
            )
            params = [value for part in parts for value in (*part.params, start_rank)]
        sql = (
            f"SELECT {_ROWS} FROM ({keys} ORDER BY 2, 3 LIMIT {p} OFFSET {p}) k "  # noqa: S608
            "JOIN unit u ON u.id = k.id ORDER BY k.county_rank, k.code"
        )
        cursor = db.execute_sql(sql, [*params, page_size, skip])
        return [UnitRow(*row) for row in cursor]

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
