"""The NHI open data as it is published (docs/nhi-data.md): the files in tests/data/nhi
follow the published layouts, not our own idea of them.

- hospitals-and-clinics.csv: the 14 columns of 醫學中心 … 診所 (縣市別代碼 with 內政部
  five-digit codes, 合約起日 last), a BOM, CRLF, full-width digits in addresses, "-" in
  備註 and in a date, a termination date in the future and one in the past, and 9007
  for 09007 as a spreadsheet writes it;
- pharmacies.csv: 藥局's 11 columns, with no 診療科別, 備註 or 縣市別代碼;
- older-header.csv: an older release, headers with spaces in them (「地 址 」) and no
  縣市別代碼.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from models.db import database_proxy
from models.migrate import SCHEMA_VERSION, upgrade
from models.schema import Meta, Unit, UnitKind
from models.unit_import import (
    UnitImportError,
    close_ended_units,
    county_of,
    import_units_csv,
)
from smis_tui.services.units import UnitDirectory
from tests.unit import test_units
from tests.unit.test_units import HEADER, write_csv

# A fresh copy of a database with the 5165 generated units, as tests/unit/test_units.py
# makes it.
template = test_units.template
db = test_units.db

DATA = Path(__file__).resolve().parents[1] / "data" / "nhi"
TODAY = dt.date(2026, 12, 3)


def unit(code: str) -> Unit:
    return Unit.get(Unit.code == code)


def test_the_14_column_file_imports_whole(db: Path) -> None:
    result = import_units_csv(DATA / "hospitals-and-clinics.csv", today=TODAY)
    assert result.created + result.updated == 5
    ntuh = unit("0401180014")
    assert (ntuh.name, ntuh.county, ntuh.kind, ntuh.active) == (
        "國立臺灣大學醫學院附設醫院",
        "臺北市",
        UnitKind.HOSPITAL,
        True,
    )
    assert ntuh.address == "臺北市中正區中山南路７號"  # as published
    assert unit("0421040011").county == "臺南市"
    assert unit("3502050012").county == "連江縣"  # 9007, the 0 lost in a spreadsheet
    assert unit("3502050012").active  # "-" in 終止合約或歇業日期 is no date


def test_a_termination_date_in_the_future_keeps_the_unit_until_that_day(db: Path) -> None:
    import_units_csv(DATA / "hospitals-and-clinics.csv", today=TODAY)
    keelung = unit("1101100011")
    assert keelung.active and keelung.closes_on == dt.date(2030, 12, 31)
    assert unit("3590300018").active is False  # ended 2020-01-31
    assert close_ended_units(dt.date(2030, 12, 30)) == 0
    assert unit("1101100011").active
    assert close_ended_units(dt.date(2030, 12, 31)) == 1
    assert unit("1101100011").active is False
    assert UnitDirectory().search("基隆長庚").total == 0


def test_the_pharmacy_file_without_county_codes_takes_the_county_from_the_address(
    db: Path,
) -> None:
    result = import_units_csv(DATA / "pharmacies.csv", today=TODAY)
    assert result.created + result.updated == 3
    assert unit("5901010010").county == "臺北市"
    assert unit("5931020013").county == "新北市"
    assert unit("5942030015").county == "臺中市"  # 台中市 in the address
    assert {unit(code).kind for code in ("5901010010", "5931020013")} == {UnitKind.PHARMACY}
    assert unit("5942030015").closes_on == dt.date(2029, 11, 30)


def test_an_older_header_with_spaces_in_its_names_is_read(db: Path) -> None:
    import_units_csv(DATA / "older-header.csv", today=TODAY)
    assert unit("0421040011").address == "臺南市北區勝利路１３８號"
    assert unit("0421040011").county == "臺南市"


def test_the_first_real_import_retires_the_generated_units_of_its_kinds(db: Path) -> None:
    directory = UnitDirectory()
    assert directory.search("國立成功大學醫學院附設醫院").total >= 1
    generated_pharmacies = Unit.select().where(
        (Unit.source == "generated") & (Unit.kind == UnitKind.PHARMACY) & Unit.active
    )
    pharmacies_before = generated_pharmacies.count()
    assert pharmacies_before > 0

    result = import_units_csv(DATA / "hospitals-and-clinics.csv", today=TODAY)

    assert [row.code for row in directory.search("國立成功大學醫學院附設醫院").rows] == [
        "0421040011"
    ]
    assert result.retired > 0
    still_generated = Unit.select().where(
        (Unit.source == "generated")
        & Unit.kind.in_([UnitKind.HOSPITAL, UnitKind.CLINIC])
        & Unit.active
    )
    assert still_generated.count() == 0
    # A file of hospitals and clinics leaves the generated pharmacies in place, and the
    # CDC, the regional centres, the bureaus and the health stations always stay.
    assert generated_pharmacies.count() == pharmacies_before
    for kind in (UnitKind.CDC, UnitKind.REGIONAL_CENTRE, UnitKind.HEALTH_BUREAU):
        assert not Unit.select().where((Unit.kind == kind) & ~Unit.active).exists()
    assert directory.search("金門縣衛生局").total == 1


def test_a_row_with_no_county_anywhere_names_its_line(db: Path, tmp_path: Path) -> None:
    header = HEADER.replace(",縣市別代碼", "")
    row = "3531999993,無縣市診所,西醫診所,02-1,某某路1號,臺北業務組,4,,,,,"
    with pytest.raises(UnitImportError) as caught:
        import_units_csv(write_csv(tmp_path / "n.csv", row, header=header), today=TODAY)
    assert caught.value.line == 2
    assert "縣市" in str(caught.value) and "地址" in str(caught.value)


def test_a_missing_required_column_is_named(db: Path, tmp_path: Path) -> None:
    shutil.copy(DATA / "pharmacies.csv", tmp_path / "p.csv")
    text = (tmp_path / "p.csv").read_text(encoding="utf-8-sig").replace("地址", "住址", 1)
    (tmp_path / "p.csv").write_text(text, encoding="utf-8")
    with pytest.raises(UnitImportError) as caught:
        import_units_csv(tmp_path / "p.csv", today=TODAY)
    assert caught.value.line == 1 and "地址" in str(caught.value)


def test_a_version_4_database_gets_the_closing_day_on_upgrade(db: Path) -> None:
    database = database_proxy.obj
    database.execute_sql("ALTER TABLE unit DROP COLUMN closes_on")
    Meta.update(value="4").where(Meta.key == "schema_version").execute()
    assert upgrade() == (4, SCHEMA_VERSION)
    assert "closes_on" in {column.name for column in database.get_columns("unit")}
    import_units_csv(DATA / "hospitals-and-clinics.csv", today=TODAY)
    assert unit("1101100011").closes_on == dt.date(2030, 12, 31)
    assert upgrade() == (SCHEMA_VERSION, SCHEMA_VERSION)


def test_a_file_cannot_turn_a_health_bureau_into_a_clinic(db: Path, tmp_path: Path) -> None:
    """The CDC, the regional centres and the bureaus are the tree every scope hangs
    from; a row that carries one's code must not rename it, move it or retire it."""
    bureau = Unit.get((Unit.kind == UnitKind.HEALTH_BUREAU) & (Unit.county == "金門縣"))
    row = f"{bureau.code},假冒診所,西醫診所,082-1,金門縣金城鎮１號,臺北業務組,4,,,20200101,,,09020"
    path = write_csv(tmp_path / "x.csv", row)
    with pytest.raises(UnitImportError) as caught:
        import_units_csv(path, today=TODAY)
    assert caught.value.line == 2 and "金門縣衛生局" in str(caught.value)
    again = Unit.get_by_id(bureau.id)
    assert (again.name, again.kind, again.active) == ("金門縣衛生局", UnitKind.HEALTH_BUREAU, True)


@pytest.mark.parametrize(
    ("code", "county"),
    [
        ("63000", "臺北市"),
        ("65000", "新北市"),
        ("68000", "桃園市"),
        ("66000", "臺中市"),
        ("67000", "臺南市"),
        ("64000", "高雄市"),
        ("10017", "基隆市"),
        ("09020", "金門縣"),
        ("09007", "連江縣"),
        ("9007", "連江縣"),
    ],
)
def test_the_five_digit_county_codes_of_the_files(code: str, county: str) -> None:
    """縣市別代碼 as the files write it (docs/nhi-data.md): 「63000」不明 refused the
    first row of the real file."""
    assert county_of(code) == county
