"""單位查詢 paging on both databases: every page, reached directly or by stepping, is
the same slice of the same order as a plain scan of the unit table would give, also
where a page runs from one county into the next; the gram counts a page starts from
follow every refresh, and a version-3 database gets them on upgrade."""

from __future__ import annotations

import pytest

from models.db import database_proxy, write_transaction
from models.migrate import SCHEMA_VERSION, current_version, upgrade
from models.schema import Meta, Unit, UnitGramCount
from models.textfold import fold
from models.unit_data import COUNTY_NAMES
from models.unit_search import refresh_unit_grams
from smis_tui.services import Services
from smis_tui.services.units import UnitDirectory


def expected_codes(query: str = "", county: str | None = None) -> list[str]:
    """The codes the search must list, in page order, from a plain scan of the units."""
    wanted = fold(query)
    rank = COUNTY_NAMES.index(county) + 1 if county else None
    units = Unit.select(Unit.code, Unit.county_rank, Unit.search_key).where(Unit.active)
    return [
        u.code
        for u in sorted(units, key=lambda u: (u.county_rank, u.code))
        if (rank is None or u.county_rank == rank)
        and (wanted in u.search_key or (wanted and u.code.startswith(wanted.upper())))
    ]


def stepped_codes(
    directory: UnitDirectory, query: str, county: str | None, page_size: int
) -> list[list[str]]:
    """Every page's codes, page 1, 2, … as the screen's next-page key reaches them."""
    first = directory.search(query, county, 1, page_size)
    pages = [[r.code for r in first.rows]]
    for number in range(2, first.pages + 1):
        page = directory.search(query, county, number, page_size)
        assert (page.page, page.total) == (number, first.total)
        pages.append([r.code for r in page.rows])
    return pages


# Queries whose pages cross county boundaries at odd places: no query (every unit), a
# common gram, a whole county, a long name checked against each candidate's name, a
# code prefix whose units lie in one county, one that matches names and codes alike.
CASES = [
    ("", None, 97),
    ("診所", None, 53),
    ("", "新北市", 41),
    ("衛生所", None, 7),
    ("牙醫診所", None, 11),
    ("3531", None, 13),
    ("1", None, 29),
]


@pytest.mark.parametrize(("query", "county", "page_size"), CASES)
def test_pages_stepped_and_jumped_to_are_the_plain_order(
    services: Services, query: str, county: str | None, page_size: int
) -> None:
    directory = services.units
    expected = expected_codes(query, county)
    assert expected, "the case must match something to test paging"
    stepped = stepped_codes(directory, query, county, page_size)
    assert [code for page in stepped for code in page] == expected
    assert all(len(page) == page_size for page in stepped[:-1])
    # Straight to each page, last first, as typing a page number does.
    for number in range(len(stepped), 0, -1):
        jumped = directory.search(query, county, number, page_size)
        assert [r.code for r in jumped.rows] == stepped[number - 1], number


def test_a_page_running_into_the_next_county(services: Services) -> None:
    directory = services.units
    taipei = directory.search(county="臺北市").total
    page_size = 20
    straddling = taipei // page_size + 1  # holds the last of 臺北市 and the first of 新北市
    assert taipei % page_size, "the generated data must not end 臺北市 on a page boundary"
    rows = directory.search(page=straddling, page_size=page_size).rows
    counties = [r.county for r in rows]
    assert counties == ["臺北市"] * (taipei % page_size) + ["新北市"] * (
        page_size - taipei % page_size
    )


def _gram_counts_as_rows() -> dict[tuple[str, int], int]:
    return {
        (c.gram, c.county_rank): c.units
        for c in UnitGramCount.select().where(UnitGramCount.units != 0)
    }


def _gram_counts_recounted() -> dict[tuple[str, int], int]:
    cursor = database_proxy.obj.execute_sql(
        "SELECT gram, county_rank, COUNT(*) FROM unit_gram GROUP BY gram, county_rank"
    )
    return {(gram, rank): count for gram, rank, count in cursor}


def test_a_partial_refresh_keeps_the_counts_exact(services: Services) -> None:
    directory = services.units
    renamed, closed, moved = (
        Unit.select().where(Unit.active & Unit.name.endswith("診所")).order_by(Unit.id).limit(3)
    )
    with write_transaction():
        name = "測試牙醫1號聯合診所"  # "1" then matches a name and codes alike
        Unit.update(name=name, search_key=fold(name)).where(Unit.id == renamed.id).execute()
        Unit.update(active=False).where(Unit.id == closed.id).execute()
        Unit.update(county="連江縣", county_rank=22).where(Unit.id == moved.id).execute()
        refresh_unit_grams([renamed.id, closed.id, moved.id])
    assert _gram_counts_as_rows() == _gram_counts_recounted()
    for query, county in [
        ("", None),
        ("診所", None),
        ("測試牙醫", None),
        ("", "連江縣"),
        ("1", None),
    ]:
        stepped = stepped_codes(directory, query, county, 37)
        assert [code for page in stepped for code in page] == expected_codes(query, county)
    assert [r.code for r in directory.search("測試牙醫").rows] == [renamed.code]
    assert directory.search().total == 5164
    with write_transaction():
        refresh_unit_grams()
    assert _gram_counts_as_rows() == _gram_counts_recounted()


def _make_version_3() -> None:
    """The unit gram table as schema version 3 had it: no names, no counts."""
    db = database_proxy.obj
    db.execute_sql("DROP TABLE unit_gram_count")
    db.execute_sql("DROP TABLE unit_gram")
    db.execute_sql(
        "CREATE TABLE unit_gram (gram VARCHAR(2) NOT NULL, county_rank SMALLINT NOT NULL,"
        " code VARCHAR(10) NOT NULL, unit_id INTEGER NOT NULL REFERENCES unit (id))"
    )
    db.execute_sql("CREATE INDEX unit_id_search_key ON unit (id, search_key)")
    Meta.update(value="3").where(Meta.key == "schema_version").execute()


def _indexes_of_unit() -> set[str]:
    return {index.name for index in database_proxy.obj.get_indexes("unit")}


def test_a_version_3_database_gets_the_gram_counts_on_upgrade(services: Services) -> None:
    with write_transaction():
        _make_version_3()
    assert current_version() == 3
    assert upgrade() == (3, SCHEMA_VERSION)
    assert current_version() == SCHEMA_VERSION
    assert "unit_id_search_key" not in _indexes_of_unit()
    assert _gram_counts_as_rows() == _gram_counts_recounted()
    directory = services.units
    assert directory.search().total == 5165
    for query in ("牙醫診所", "衛生局"):
        stepped = stepped_codes(directory, query, None, 20)
        assert [code for page in stepped for code in page] == expected_codes(query)
    # Upgrading again changes nothing and rebuilds nothing.
    before = _gram_counts_as_rows()
    assert upgrade() == (SCHEMA_VERSION, SCHEMA_VERSION)
    assert _gram_counts_as_rows() == before
