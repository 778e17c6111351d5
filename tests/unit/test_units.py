"""The unit directory: generated data, search, the NHI importer and `units` commands."""

from __future__ import annotations

import argparse
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from models import migrate
from models.db import close_database, database_proxy, open_database
from models.schema import AuditEvent, Category, Unit, UnitCategory, UnitKind
from models.textfold import fold
from models.unit_data import (
    COUNTY_NAMES,
    HEALTH_BUREAUS,
    demo_unit_codes,
    generate_units,
    load_generated_units,
)
from models.unit_import import UnitImportError, import_units_csv, parse_date
from models.unit_search import refresh_unit_grams
from smis_tui.cli import units as cli_units
from smis_tui.core.config import Settings
from smis_tui.services.crypto import create_key_file
from smis_tui.services.units import UnitDirectory, page_line

# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("units") / "template.sqlite3"
    open_database(None, path)
    migrate.upgrade()
    assert load_generated_units() == 5165
    database_proxy.obj.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    close_database()
    return path


@pytest.fixture
def db(tmp_path: Path, template: Path) -> Iterator[Path]:
    """A fresh copy of a database holding the 5165 generated units."""
    path = tmp_path / "t.sqlite3"
    shutil.copyfile(template, path)
    open_database(None, path)
    yield path
    close_database()


@pytest.fixture
def directory(db: Path) -> UnitDirectory:
    return UnitDirectory()


HEADER = (
    "醫事機構代碼,醫事機構名稱,醫事機構種類,電話,地址,分區業務組,特約類別,服務項目,"
    "診療科別,終止合約或歇業日期,固定看診時段,備註,縣市別代碼"
)


def nhi_row(
    code: str, name: str, county: str = "65", kind: str = "西醫診所", ended: str = ""
) -> str:
    return (
        f"{code},{name},{kind},02-2960-1234,新北市板橋區文化路1號,臺北業務組,4,,,{ended},,,{county}"
    )


def write_csv(path: Path, *rows: str, bom: bool = False, header: str = HEADER) -> Path:
    text = "\n".join([header, *rows]) + "\n"
    path.write_text(("\ufeff" if bom else "") + text, encoding="utf-8")
    return path


def unit_count() -> int:
    return int(Unit.select().count())


# --------------------------------------------------------------------------- folding


def test_fold_normalises_width_variant_and_case() -> None:
    assert fold(" 臺北市ＡＢＣ１２３ ") == "台北市abc123"
    assert fold("Ｘ光診所") == "x光診所"


# --------------------------------------------------------------------------- generator


def test_generator_is_deterministic_and_sized() -> None:
    first = generate_units()
    assert len(first) == 5165
    assert first == generate_units()
    assert generate_units(seed=7) != first
    for total in (0, 1, 29, 400, 1000):
        assert len(generate_units(total)) == total


def test_generator_scales_to_30000_unique_codes() -> None:
    units = generate_units(30000)
    assert len(units) == 30000
    assert len({u.code for u in units}) == 30000


def test_generated_codes_names_and_counties() -> None:
    units = generate_units()
    codes = [u.code for u in units]
    assert len(set(codes)) == len(codes)
    assert all(len(c) == 10 and c.isdigit() for c in codes)
    assert len({u.name for u in units}) == len(units)
    assert {u.county for u in units} == set(COUNTY_NAMES)
    assert len(COUNTY_NAMES) == 22
    clinics = [u for u in units if u.kind == UnitKind.CLINIC]
    assert clinics and all(u.code.startswith("3") for u in clinics)
    assert all(u.name.endswith("診所") for u in clinics)
    assert all(u.name.endswith("藥局") for u in units if u.kind == UnitKind.PHARMACY)
    kinds = Counter(u.kind for u in units)
    assert kinds[UnitKind.CDC] == 1 and kinds[UnitKind.REGIONAL_CENTRE] == 6
    assert kinds[UnitKind.HEALTH_BUREAU] == 22
    assert 300 <= kinds[UnitKind.HEALTH_CENTRE] <= 400
    assert kinds[UnitKind.HOSPITAL] == 480


def test_only_the_22_health_bureaus_say_衛生局() -> None:
    units = generate_units()
    bureaus = [u for u in units if "衛生局" in u.name]
    assert len(bureaus) == 22
    assert all(u.kind == UnitKind.HEALTH_BUREAU for u in bureaus)
    assert {u.name for u in bureaus} == set(HEALTH_BUREAUS.values())
    assert {"新北市政府衛生局", "金門縣衛生局", "連江縣衛生局"} <= {u.name for u in bureaus}


def test_generated_categories() -> None:
    units = generate_units()
    hospitals = [u for u in units if u.kind == UnitKind.HOSPITAL]
    antivenom = [u for u in hospitals if "antivenom" in u.category_codes]
    assert 180 <= len(antivenom) <= 220
    clinics = [u for u in units if u.kind == UnitKind.CLINIC]
    assert all(not {"antivenom", "biosafety", "hiv_tb"} & set(u.category_codes) for u in clinics)
    assert all(len(u.category_codes) == 2 for u in units if u.kind == UnitKind.PHARMACY)
    centres = [u for u in units if u.kind == UnitKind.HEALTH_CENTRE]
    assert all("antivenom" not in u.category_codes for u in centres)
    cdc = next(u for u in units if u.kind == UnitKind.CDC)
    assert len(cdc.category_codes) == 7
    kinmen = next(u for u in units if u.name == "金門縣衛生局")
    assert "biosafety" not in kinmen.category_codes  # as the seed's grid shows


def test_demo_codes_name_real_units() -> None:
    codes = demo_unit_codes()
    by_code = {u.code: u for u in generate_units()}
    assert by_code[codes["cdc"]].name == "衛生福利部疾病管制署"
    assert by_code[codes["kinmen_bureau"]].name == "金門縣衛生局"
    assert by_code[codes["clinic"]].kind == UnitKind.CLINIC
    assert "antivenom" in by_code[codes["hospital"]].category_codes
    assert "antivenom" not in by_code[codes["hospital_no_antivenom"]].category_codes


# --------------------------------------------------------------------------- loaded data


def test_loaded_units_and_hierarchy(db: Path) -> None:
    assert unit_count() == 5165
    assert load_generated_units() == 0  # idempotent
    assert unit_count() == 5165
    units = {u.id: u for u in Unit.select()}
    roots = [u for u in units.values() if u.parent_id is None]
    assert [u.kind for u in roots] == [UnitKind.CDC]
    for unit in units.values():
        if unit.kind == UnitKind.HEALTH_BUREAU:
            centre = units[unit.parent_id]
            assert centre.kind == UnitKind.REGIONAL_CENTRE
            assert units[centre.parent_id].kind == UnitKind.CDC
        elif unit.kind in (UnitKind.HEALTH_CENTRE, UnitKind.HOSPITAL):
            parent = units[unit.parent_id]
            assert parent.kind in (UnitKind.HEALTH_BUREAU, UnitKind.HEALTH_CENTRE)
            assert parent.county == unit.county
        elif unit.kind in (UnitKind.CLINIC, UnitKind.PHARMACY):
            parent = units[unit.parent_id]
            assert parent.kind == UnitKind.HEALTH_CENTRE and parent.county == unit.county
    assert all(u.search_key == fold(u.name) for u in units.values())


def test_loaded_categories(db: Path, directory: UnitDirectory) -> None:
    codes = demo_unit_codes()
    cdc = directory.get(codes["cdc"])
    clinic = directory.get(codes["clinic"])
    assert cdc is not None and clinic is not None
    assert len(directory.categories_of(cdc.id)) == 7
    assert "antivenom" not in directory.categories_of(clinic.id)
    antivenom = (
        UnitCategory.select()
        .join(Unit)
        .switch(UnitCategory)
        .join(Category)
        .where((Unit.kind == UnitKind.HOSPITAL) & (Category.code == "antivenom"))
        .count()
    )
    assert 180 <= antivenom <= 220


def test_load_is_fast_enough(tmp_path: Path) -> None:
    import time

    open_database(None, tmp_path / "fresh.sqlite3")
    try:
        migrate.upgrade()
        seen: list[tuple[int, int]] = []
        started = time.perf_counter()
        assert load_generated_units(progress=lambda done, total: seen.append((done, total))) == 5165
        assert time.perf_counter() - started < 4  # target 2 s; slack for loaded CI machines
        assert seen[-1] == (5165, 5165)
    finally:
        close_database()


# --------------------------------------------------------------------------- search


def test_first_page_and_page_line(directory: UnitDirectory) -> None:
    page = directory.search()
    assert (page.total, page.pages, page.page, page.page_size) == (5165, 259, 1, 20)
    assert len(page.rows) == 20
    assert page_line(page) == "【每頁 20 筆 · 第 1 頁 共 259 頁 5165 筆】"
    assert page.rows[0].name == "衛生福利部疾病管制署"
    last = directory.search(page=259)
    assert len(last.rows) == 5165 - 258 * 20
    assert last.rows[-1].county == "連江縣"


def test_pages_cover_everything_in_county_order(directory: UnitDirectory) -> None:
    seen: list[tuple[int, str]] = []
    for number in range(1, 260):
        seen.extend(
            (COUNTY_NAMES.index(r.county), r.code) for r in directory.search(page=number).rows
        )
    assert len(seen) == 5165 and len(set(seen)) == 5165
    assert seen == sorted(seen)


def test_health_bureau_search_lists_exactly_22(directory: UnitDirectory) -> None:
    first = directory.search("衛生局")
    second = directory.search("衛生局", page=2)
    assert (first.total, first.pages) == (22, 2)
    names = [r.name for r in first.rows + second.rows]
    assert sorted(names) == sorted(HEALTH_BUREAUS.values())
    assert all(r.kind == UnitKind.HEALTH_BUREAU for r in first.rows + second.rows)


def test_tai_variants_and_full_width_fold(directory: UnitDirectory) -> None:
    with_tai = directory.search("台北市政府")
    assert [r.name for r in with_tai.rows] == ["臺北市政府衛生局"]
    assert directory.search("臺北").total == directory.search("台北").total > 0
    assert directory.search("ＸＹＺ").total == directory.search("xyz").total
    assert directory.search("金門縣衛生局").rows[0].name == "金門縣衛生局"
    assert directory.search(" 金門縣衛生局 ").total == 1


def _rename_clinic(name: str) -> None:
    """The demo clinic renamed outside the importer, which refreshes the index itself."""
    Unit.update(name=name, search_key=fold(name)).where(
        Unit.code == demo_unit_codes()["clinic"]
    ).execute()
    refresh_unit_grams()


def test_full_width_query_finds_ascii_name(db: Path, directory: UnitDirectory) -> None:
    _rename_clinic("ABC診所")
    assert [r.name for r in directory.search("ＡＢＣ").rows] == ["ABC診所"]
    assert [r.name for r in directory.search("abc診").rows] == ["ABC診所"]


def test_code_prefix(directory: UnitDirectory) -> None:
    code = demo_unit_codes()["clinic"]
    exact = directory.search(code)
    assert [r.code for r in exact.rows] == [code]
    prefix = directory.search(code[:4])
    assert prefix.total > 1 and all(r.code.startswith(code[:4]) for r in prefix.rows)
    full_width = "".join(chr(ord(ch) + 0xFEE0) for ch in code[:4])
    assert directory.search(full_width).total == prefix.total
    assert directory.get(code) is not None and directory.get(code[:9]) is None


def test_county_filter(directory: UnitDirectory) -> None:
    page = directory.search(county="新北市")
    assert page.total > 0 and all(r.county == "新北市" for r in page.rows)
    assert page.rows[0].name == "新北市政府衛生局"
    assert directory.search(county="台北市").total == directory.search(county="臺北市").total
    both = directory.search("診所", county="新北市")
    assert 0 < both.total < page.total
    assert all(r.county == "新北市" and "診所" in r.name for r in both.rows)
    assert directory.search(county="火星市").total == 0
    assert directory.counties()[0] == "臺北市" and directory.counties()[-1] == "連江縣"


def test_page_is_clamped(directory: UnitDirectory) -> None:
    assert directory.search(page=0).page == 1
    assert directory.search(page=-5).page == 1
    high = directory.search(page=10_000)
    assert high.page == 259 and high.rows
    few = directory.search("衛生局", page=99)
    assert (few.page, len(few.rows)) == (2, 2)
    nothing = directory.search("沒有這個單位", page=3)
    assert (nothing.page, nothing.pages, nothing.total, nothing.rows) == (1, 1, 0, [])
    assert page_line(nothing) == "【每頁 20 筆 · 第 1 頁 共 1 頁 0 筆】"


def test_dense_and_sparse_results_page_alike(directory: UnitDirectory) -> None:
    # "診所" has thousands of matches (COUNT + page); "衛生所" a few hundred (probe).
    for query in ("診所", "衛生所", "藥局"):
        page = directory.search(query)
        codes: list[str] = []
        for number in range(1, page.pages + 1):
            codes.extend(r.code for r in directory.search(query, page=number).rows)
        assert len(codes) == len(set(codes)) == page.total
        expected = Unit.select().where(Unit.search_key.contains(fold(query))).count()
        assert page.total == expected


@pytest.mark.parametrize("county", [None, "新北市"])
@pytest.mark.parametrize("query", ["", "3", "35", "3631", "0", "衛生", "醫院", "新北", "a1"])
def test_search_agrees_with_brute_force(
    db: Path, directory: UnitDirectory, query: str, county: str | None
) -> None:
    # One unit whose name contains a code prefix of others: found by name and by code.
    Unit.update(name="3631a1診所", search_key=fold("3631a1診所")).where(
        Unit.code == demo_unit_codes()["pharmacy"]
    ).execute()
    refresh_unit_grams()  # renames outside the importer refresh the index
    q = fold(query)
    expected = [
        u.code
        for u in sorted(
            Unit.select().where(Unit.active == True),  # noqa: E712
            key=lambda u: (COUNTY_NAMES.index(u.county), u.code),
        )
        if (county is None or u.county == county)
        and (q in u.search_key or (q and u.code.startswith(q.upper())))
    ]
    first = directory.search(query, county=county, page_size=50)
    assert first.total == len(expected)
    found: list[str] = []
    for number in range(1, first.pages + 1):
        found.extend(r.code for r in directory.search(query, county, number, 50).rows)
    assert found == expected


@pytest.mark.parametrize("query", ["%", "_", "\\", "%診所", "診_", "100%"])
def test_like_wildcards_are_literal(directory: UnitDirectory, query: str) -> None:
    assert directory.search(query).total == 0


def test_wildcard_in_a_name_is_found_literally(db: Path, directory: UnitDirectory) -> None:
    _rename_clinic("百分之100%診所")
    assert [r.name for r in directory.search("100%").rows] == ["百分之100%診所"]
    assert directory.search("%").total == 1
    assert directory.search("0_").total == 0


def test_inactive_units_are_not_listed(db: Path, directory: UnitDirectory) -> None:
    code = demo_unit_codes()["clinic"]
    Unit.update(active=False).where(Unit.code == code).execute()
    refresh_unit_grams()  # renames outside the importer refresh the index
    assert directory.search().total == 5164
    assert directory.search(code).total == 0
    assert directory.get(code) is None
    assert directory.get(code, include_inactive=True) is not None


# --------------------------------------------------------------------------- importer


def test_parse_date_forms() -> None:
    assert str(parse_date("1130726")) == "2024-07-26"
    assert str(parse_date("113/07/26")) == "2024-07-26"
    assert str(parse_date("990726")) == "2010-07-26"
    assert str(parse_date("2024-07-26")) == "2024-07-26"
    assert str(parse_date("20240726")) == "2024-07-26"
    assert parse_date("  ") is None
    for bad in ("1131301", "113/02/30", "abc", "24-07", "11307266"):
        with pytest.raises(ValueError):
            parse_date(bad)


@pytest.mark.parametrize("bom", [True, False])
def test_import_creates_units(
    db: Path, directory: UnitDirectory, tmp_path: Path, bom: bool
) -> None:
    path = write_csv(
        tmp_path / "nhi.csv",
        nhi_row("3531999991", "測試甲診所"),
        nhi_row("1131999990", "測試乙醫院", county="31", kind="地區醫院"),
        nhi_row("5931999994", "測試丙藥局", county="09020", kind="藥局"),
        nhi_row("3931999998", "已歇業診所", county="10002", ended="1130726"),
        bom=bom,
    )
    progress: list[tuple[int, int]] = []
    result = import_units_csv(path, progress=lambda done, total: progress.append((done, total)))
    assert (result.created, result.updated, result.deactivated) == (4, 0, 1)
    assert progress[-1] == (4, 4)
    assert unit_count() == 5165 + 4
    clinic = Unit.get(Unit.code == "3531999991")
    assert (clinic.county, clinic.kind, clinic.source, clinic.active) == (
        "新北市",
        UnitKind.CLINIC,
        "nhi",
        True,
    )
    assert clinic.parent.name == "新北市政府衛生局"
    assert directory.categories_of(clinic.id) == {"ppe", "flu_antiviral"}
    hospital = Unit.get(Unit.code == "1131999990")
    assert hospital.kind == UnitKind.HOSPITAL and "antivenom" not in directory.categories_of(
        hospital.id
    )
    assert Unit.get(Unit.code == "5931999994").parent.name == "金門縣衛生局"
    assert [r.name for r in directory.search("測試").rows] == [
        "測試乙醫院",
        "測試甲診所",
        "測試丙藥局",
    ]
    assert directory.search("已歇業").total == 0
    assert Unit.get(Unit.code == "3931999998").active is False


def test_reimport_updates_in_place_and_deactivates(
    db: Path, directory: UnitDirectory, tmp_path: Path
) -> None:
    first = write_csv(
        tmp_path / "a.csv", nhi_row("3531999991", "測試甲診所"), nhi_row("3531999992", "測試丁診所")
    )
    import_units_csv(first)
    before = {u.code: u.id for u in Unit.select().where(Unit.code.startswith("353199999"))}
    again = import_units_csv(first)
    assert (again.created, again.updated, again.deactivated) == (0, 0, 0)
    second = write_csv(
        tmp_path / "b.csv",
        nhi_row("3531999991", "測試甲聯合診所", county="63"),
        nhi_row("3531999992", "測試丁診所", ended="113/08/01"),
    )
    result = import_units_csv(second)
    assert (result.created, result.updated, result.deactivated) == (0, 2, 1)
    renamed = Unit.get(Unit.code == "3531999991")
    assert renamed.id == before["3531999991"]
    assert (renamed.name, renamed.county, renamed.search_key) == (
        "測試甲聯合診所",
        "臺北市",
        "測試甲聯合診所",
    )
    assert renamed.parent.name == "臺北市政府衛生局"
    closed = Unit.get(Unit.code == "3531999992")
    assert closed.id == before["3531999992"] and closed.active is False
    assert [r.code for r in directory.search("測試").rows] == ["3531999991"]
    assert unit_count() == 5167


def test_import_updates_a_generated_unit(
    db: Path, directory: UnitDirectory, tmp_path: Path
) -> None:
    code = demo_unit_codes()["clinic"]
    unit_id = Unit.get(Unit.code == code).id
    import_units_csv(write_csv(tmp_path / "g.csv", nhi_row(code, "改名後診所")))
    unit = Unit.get(Unit.code == code)
    assert unit.id == unit_id and unit.name == "改名後診所"


@pytest.mark.parametrize(
    ("bad_row", "reason"),
    [
        (nhi_row("35319999", "短代碼診所"), "醫事機構代碼"),
        (nhi_row("3531abcdef", "小寫診所"), "醫事機構代碼"),
        (nhi_row("3531999993", ""), "醫事機構名稱空白"),
        (
            "3531999993,外國診所,西醫診所,02-1,Rue de Rivoli 1,臺北業務組,4,,,,,,99",
            "縣市別代碼「99」不明",
        ),
        (nhi_row("3531999993", "壞日期診所", ended="113/02/30"), "終止合約或歇業日期"),
        (nhi_row("3531999991", "重複診所"), "與第 2 行重複"),
        ("3531999993,少欄位診所,診所", "欄位數"),
    ],
)
def test_bad_row_aborts_with_its_line(db: Path, tmp_path: Path, bad_row: str, reason: str) -> None:
    path = write_csv(
        tmp_path / "bad.csv",
        nhi_row("3531999991", "好的診所"),
        nhi_row("3531999992", "也好的診所"),
        bad_row,
        nhi_row("3531999994", "後面的診所"),
    )
    with pytest.raises(UnitImportError) as caught:
        import_units_csv(path)
    assert caught.value.line == 4
    assert "第 4 行" in str(caught.value) and reason in str(caught.value)
    assert unit_count() == 5165
    assert not Unit.select().where(Unit.code == "3531999991").exists()


def test_bad_row_after_many_batches_leaves_nothing(db: Path, tmp_path: Path) -> None:
    rows = [nhi_row(f"35{n:08d}", f"批次{n}診所") for n in range(1200)]
    rows.append(nhi_row("3500000001", "重複診所"))
    path = write_csv(tmp_path / "big.csv", *rows)
    with pytest.raises(UnitImportError) as caught:
        import_units_csv(path)
    assert caught.value.line == 1202
    assert unit_count() == 5165


def test_missing_header_column(db: Path, tmp_path: Path) -> None:
    header = HEADER.replace(",地址", "")
    path = write_csv(tmp_path / "h.csv", "3531999991,x,診所,,,,,,,,,65", header=header)
    with pytest.raises(UnitImportError) as caught:
        import_units_csv(path)
    assert caught.value.line == 1 and "地址" in str(caught.value)


def test_non_utf8_file_is_refused(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "big5.csv"
    path.write_bytes((HEADER + "\n" + nhi_row("3531999991", "大安診所") + "\n").encode("big5"))
    with pytest.raises(UnitImportError) as caught:
        import_units_csv(path)
    assert "UTF-8" in str(caught.value)
    assert unit_count() == 5165


def test_missing_or_empty_file(db: Path, tmp_path: Path) -> None:
    with pytest.raises(UnitImportError, match="找不到檔案"):
        import_units_csv(tmp_path / "nope.csv")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(UnitImportError, match="缺少標題列"):
        import_units_csv(empty)
    header_only = write_csv(tmp_path / "header.csv")
    result = import_units_csv(header_only)
    assert (result.created, result.updated, result.deactivated) == (0, 0, 0)


def test_quoted_multiline_cell_keeps_line_numbers(db: Path, tmp_path: Path) -> None:
    multi = nhi_row("3531999991", "好的診所").replace(",,,65", ',"第一行\n第二行",,65')
    path = write_csv(tmp_path / "m.csv", multi, nhi_row("3531999992", ""))
    with pytest.raises(UnitImportError) as caught:
        import_units_csv(path)
    assert caught.value.line == 4


# --------------------------------------------------------------------------- CLI


def _args(**values: object) -> argparse.Namespace:
    return argparse.Namespace(**values)


@pytest.fixture
def keyed(db: Path) -> Settings:
    """Settings with a data key: an import's audit row seals the chain's head with it."""
    settings = Settings(data_dir=db.parent)
    create_key_file(settings.resolved_key_file)
    return settings


def test_cli_search_table(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_units.handle_search(_args(query="", county=None, page=1)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["縣市", "單位/醫事機構代碼", "名稱"]
    assert lines[-1] == "【每頁 20 筆 · 第 1 頁 共 259 頁 5165 筆】"
    rows = lines[2:-1]
    assert len(rows) == 20
    # CJK-aware alignment: every code starts in the same terminal column.
    columns = {cli_units.display_width(row[: row.index(row.split()[1])]) for row in rows}
    columns.add(cli_units.display_width(lines[0][: lines[0].index("單位")]))
    assert len(columns) == 1


def test_cli_search_empty_and_county(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_units.handle_search(_args(query="沒有這個單位", county=None, page=1)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["查無符合條件的單位", "【每頁 20 筆 · 第 1 頁 共 1 頁 0 筆】"]
    assert cli_units.handle_search(_args(query="衛生局", county="金門縣", page=1)) == 0
    assert "金門縣衛生局" in capsys.readouterr().out
    assert cli_units.handle_search(_args(query="", county="火星市", page=1)) == 2
    err = capsys.readouterr().err
    assert "火星市" in err and "臺北市" in err and "連江縣" in err


def test_cli_import(keyed: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_csv(
        tmp_path / "c.csv",
        nhi_row("3531999991", "測試甲診所"),
        nhi_row("3531999992", "測試丁診所", ended="1130101"),
    )
    assert cli_units.handle_import(_args(file=path), keyed) == 0
    captured = capsys.readouterr()
    summary, retired = captured.out.splitlines()
    assert summary == "新增 2 筆、更新 0 筆、停用 1 筆"
    # The generated clinics give way to the real ones.
    generated_clinics = Unit.select().where(
        (Unit.source == "generated") & (Unit.kind == UnitKind.CLINIC)
    )
    assert (
        retired
        == f"另停用 {generated_clinics.count()} 個系統產生的示範單位（同類的真實單位已匯入，避免重複）"
    )
    assert "\r" not in captured.err  # small file, not a terminal: no bar
    audit = AuditEvent.get(AuditEvent.action == "units_import")
    assert audit.target_id == "c.csv" and '"created": 2' in audit.details
    bad = write_csv(tmp_path / "d.csv", nhi_row("3531999993", ""))
    assert cli_units.handle_import(_args(file=bad), keyed) == 1
    captured = capsys.readouterr()
    assert "第 2 行" in captured.err and captured.out == ""
    assert AuditEvent.select().count() == 1  # the refused file left no audit row either


def test_cli_import_large_file_shows_progress(
    keyed: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [nhi_row(f"35{n:08d}", f"批次{n}診所") for n in range(1100)]
    assert cli_units.handle_import(_args(file=write_csv(tmp_path / "e.csv", *rows)), keyed) == 0
    captured = capsys.readouterr()
    # Not a terminal: whole lines, no carriage return to pile up in a log.
    assert "\r" not in captured.err
    assert captured.err.splitlines()[-1] == "匯入中 100%（1100/1100）"
    assert captured.out.splitlines()[0] == "新增 1100 筆、更新 0 筆、停用 0 筆"


def test_cli_register_parses(db: Path) -> None:
    opened: list[object] = []
    parser = argparse.ArgumentParser()
    cli_units.register(parser.add_subparsers(dest="command"), opened.append)
    args = parser.parse_args(["units", "search", "衛生局", "--county", "新北市", "--page", "1"])
    assert args.handler("settings", args) == 0 and opened == ["settings"]
    with pytest.raises(SystemExit):
        parser.parse_args(["units", "search", "--page", "0"])
