"""Import of the NHI open data of contracted institutions (健保特約醫事機構).

``smis-tui units import FILE.csv`` reads the CSV as published (UTF-8, with or without
a BOM) and brings the unit table in line with it, all or nothing:

* a unit whose code is new is created (source "nhi", parent = the county's health
  bureau, categories by kind as for the generated directory);
* a unit whose code exists keeps its row (and so its accounts and requests) and gets
  the file's name, phone, address, kind and county;
* a row with a 終止合約或歇業日期 that has come makes the unit inactive; a date still
  ahead keeps it in force until that day (``closes_on``; :func:`close_ended_units`,
  run by ``smis-tui maintenance``, retires it then); units are never deleted, and
  units that are not in the file are left alone;
* the generated stand-ins of the kinds the file brings (hospitals, clinics,
  pharmacies) are retired, so that no institution is offered twice; the CDC, the
  regional centres, the health bureaus and the health stations stay.

The file is read as the NHI publishes it (docs/nhi-data.md): header names with spaces
in them, the 14 columns of 醫學中心 … 診所 or the 11 of 藥局 (which has no 縣市別代碼: the
county is then read from the address), "-" for an empty cell.

Any bad row stops the import with :class:`UnitImportError`, whose message names the
physical line of the file (the header is line 1) and the reason; the transaction is
rolled back, so nothing of the file is kept.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from models.db import bulk_insert, is_postgres, write_transaction
from models.schema import Category, Unit, utcnow
from models.textfold import fold
from models.unit_data import (
    COUNTY_BY_CODE,
    COUNTY_NAMES,
    INSERT_BATCH,
    TYPICAL_CATEGORIES,
    UNIT_COLUMNS,
    county_rank,
)
from models.unit_search import refresh_statistics, refresh_unit_grams
from smis_tui.core.chars import has_hidden, strip_hidden
from smis_tui.core.clock import taiwan_date
from smis_tui.core.domain import UnitKind

# The hospital and clinic files' 14 columns, in the published order (docs/nhi-data.md);
# the pharmacy file has 11 of them.
HOSPITAL_COLUMNS: tuple[str, ...] = (
    "醫事機構代碼",
    "醫事機構名稱",
    "醫事機構種類",
    "電話",
    "地址",
    "分區業務組",
    "特約類別",
    "服務項目",
    "診療科別",
    "終止合約或歇業日期",
    "固定看診時段",
    "備註",
    "縣市別代碼",
    "合約起日",
)
# Without these a row says nothing we can use.
REQUIRED_COLUMNS: tuple[str, ...] = ("醫事機構代碼", "醫事機構名稱", "地址")
# Read when the file has them: 藥局's file has no 縣市別代碼 (nor 診療科別 or 備註).
OPTIONAL_COLUMNS: tuple[str, ...] = (
    "醫事機構種類",
    "電話",
    "特約類別",
    "終止合約或歇業日期",
    "縣市別代碼",
)
# What the NHI writes in a cell that has nothing to say.
PLACEHOLDERS = frozenset({"-", "－", "—", "─"})
# The tree every scope hangs from: no file renames, moves or retires one of these.
KEPT_FROM_THE_FILE = frozenset({UnitKind.CDC, UnitKind.REGIONAL_CENTRE, UnitKind.HEALTH_BUREAU})
# Kinds whose generated stand-ins an import of real units of that kind retires.
RETIRED_WITH_REAL_DATA = (UnitKind.HOSPITAL, UnitKind.CLINIC, UnitKind.PHARMACY)

SOURCE = "nhi"
_CODE = re.compile(r"[0-9A-Z]{10}")
_NAME_MAX = Unit.name.max_length or 128
_PHONE_MAX = Unit.phone.max_length or 40
_ADDRESS_MAX = Unit.address.max_length or 200
_COUNTY_BY_FOLDED = {fold(name): name for name in COUNTY_NAMES}


class UnitImportError(ValueError):
    """A row (or the file) cannot be imported; the message is zh-TW for the operator."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        self.line = line
        self.reason = reason
        where = f"第 {line} 行：" if line is not None else ""
        super().__init__(f"匯入失敗，{where}{reason}（整個檔案未匯入）")


@dataclass(frozen=True)
class ImportResult:
    created: int
    updated: int
    deactivated: int
    # Generated stand-ins retired by this import (see the module's docstring).
    retired: int = 0


@dataclass(frozen=True)
class _Record:
    line: int
    code: str
    name: str
    kind: str
    phone: str
    address: str
    county: str
    active: bool
    closes_on: dt.date | None


# --------------------------------------------------------------------------- parsing


def _shown(value: str, limit: int = 24) -> str:
    """A cell quoted in a message: no control characters, not too long."""
    clean = strip_hidden(value, keep_newlines=False)
    return clean if len(clean) <= limit else clean[:limit] + "…"


def parse_date(text: str) -> dt.date | None:
    """終止合約或歇業日期: 民國 1130726 / 113/07/26 / 990726, or 2024-07-26 / 20240726.

    Empty means none; anything else that is not a real date raises ValueError.
    """
    value = text.strip()
    if not value:
        return None
    parts = re.split(r"[/.\-]", value)
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        year_text, month, day = parts
        if len(year_text) == 4:
            year = int(year_text)
        elif 1 <= len(year_text) <= 3:
            year = int(year_text) + 1911
        else:
            raise ValueError(value)
        return dt.date(year, int(month), int(day))
    if value.isdigit() and len(value) == 8:
        return dt.date(int(value[:4]), int(value[4:6]), int(value[6:]))
    if value.isdigit() and len(value) in (6, 7):
        return dt.date(int(value[:-4]) + 1911, int(value[-4:-2]), int(value[-2:]))
    raise ValueError(value)


def _kind_from_text(text: str) -> UnitKind | None:
    if "衛生所" in text or "健康服務中心" in text:
        return UnitKind.HEALTH_CENTRE
    if "醫院" in text or "醫學中心" in text:
        return UnitKind.HOSPITAL
    if "診所" in text:
        return UnitKind.CLINIC
    if "藥局" in text:
        return UnitKind.PHARMACY
    return None


# 特約類別: 1 醫學中心, 2 區域醫院, 3 地區醫院, 4 基層院所 (clinics), 5 藥局.
_KIND_BY_CONTRACT = {
    "1": UnitKind.HOSPITAL,
    "2": UnitKind.HOSPITAL,
    "3": UnitKind.HOSPITAL,
    "4": UnitKind.CLINIC,
    "5": UnitKind.PHARMACY,
}


def classify_kind(kind_text: str, contract_type: str, name: str) -> UnitKind:
    """The unit kind from 醫事機構種類, else 特約類別, else the name; OTHER if none says."""
    return (
        _kind_from_text(kind_text)
        or _KIND_BY_CONTRACT.get(contract_type.strip())
        or _kind_from_text(name)
        or UnitKind.OTHER
    )


def county_of(code: str) -> str | None:
    """縣市別代碼 (內政部 63/65/…/10017/09020, NHI area 01/31/…, or the name) → county."""
    value = code.strip()
    if value in COUNTY_BY_CODE:
        return COUNTY_BY_CODE[value]
    if value.isdigit() and len(value) < 5 and value.zfill(5) in COUNTY_BY_CODE:
        return COUNTY_BY_CODE[value.zfill(5)]  # 9007 for 09007, as spreadsheets write it
    return _COUNTY_BY_FOLDED.get(fold(value)) if value else None


# Counties merged into a municipality in 2010 (2014 for 桃園縣), as old addresses write
# them.
_FORMER_COUNTIES = {
    "臺北縣": "新北市",
    "桃園縣": "桃園市",
    "臺中縣": "臺中市",
    "臺南縣": "臺南市",
    "高雄縣": "高雄市",
}
_ADDRESS_COUNTY = re.compile(r"^[0-9\s]*(..[縣市])")


def county_of_address(address: str) -> str | None:
    """The county an address begins with (after a postal code, if any): 台 and 臺,
    full-width digits and the counties merged in 2010 are all understood."""
    found = _ADDRESS_COUNTY.match(fold(address))
    if found is None:
        return None
    name = found.group(1).replace("台", "臺")
    if name in _FORMER_COUNTIES:
        return _FORMER_COUNTIES[name]
    return name if name in COUNTY_NAMES else None


def _header_name(cell: str) -> str:
    """A header cell as the column's name: older releases have spaces in and around
    the names (「地 址 」)."""
    return "".join(cell.split())


def _lines(path: Path) -> Iterator[str]:
    """The file's lines decoded as UTF-8 (BOM dropped), one at a time."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                raise UnitImportError(
                    "檔案不是 UTF-8 編碼（可能是 Big5），請另存為 UTF-8 後再匯入", number
                ) from None


def _rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(first physical line, fields) for every non-empty record of the file."""
    reader = csv.reader(_lines(path), strict=True)
    last = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise UnitImportError(f"CSV 格式錯誤（{exc}）", last + 1) from None
        start, last = last + 1, reader.line_num
        if row and any(cell.strip() for cell in row):
            yield start, row


class _Header:
    def __init__(self, line: int, row: Sequence[str], today: dt.date) -> None:
        names = [_header_name(cell) for cell in row]
        missing = [name for name in REQUIRED_COLUMNS if name not in names]
        if missing:
            raise UnitImportError(f"標題列缺少欄位：{'、'.join(missing)}", line)
        self.width = len(names)
        self.index = {
            name: names.index(name)
            for name in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
            if name in names
        }
        self.today = today

    def record(self, line: int, row: Sequence[str]) -> _Record:
        if len(row) != self.width:
            raise UnitImportError(f"欄位數 {len(row)} 與標題列的 {self.width} 不符", line)

        def cell(name: str) -> str:
            index = self.index.get(name)
            value = row[index].strip() if index is not None else ""
            return "" if value in PLACEHOLDERS else value

        code = cell("醫事機構代碼")
        if not _CODE.fullmatch(code):
            raise UnitImportError(
                f"醫事機構代碼「{_shown(code)}」格式錯誤（應為 10 碼數字或大寫英文字母）", line
            )
        for column in ("醫事機構名稱", "電話", "地址"):
            # The cells that are stored: a NUL, an escape sequence or a bidi override
            # would be shown everywhere (and PostgreSQL refuses NULs outright). Other
            # cells may have line breaks (固定看診時段) and are never stored.
            if has_hidden(cell(column)):
                raise UnitImportError(f"{column}含有控制字元或隱藏字元", line)
        name = cell("醫事機構名稱")
        if not name:
            raise UnitImportError("醫事機構名稱空白", line)
        if len(name) > _NAME_MAX:
            raise UnitImportError(f"醫事機構名稱超過 {_NAME_MAX} 字", line)
        phone, address = cell("電話"), cell("地址")
        if len(phone) > _PHONE_MAX:
            raise UnitImportError(f"電話超過 {_PHONE_MAX} 字", line)
        if len(address) > _ADDRESS_MAX:
            raise UnitImportError(f"地址超過 {_ADDRESS_MAX} 字", line)
        county_code = cell("縣市別代碼")
        if county_code:
            # A code we do not know means a file we do not understand: refused, not
            # guessed from the address.
            county = county_of(county_code)
            if county is None:
                raise UnitImportError(f"縣市別代碼「{_shown(county_code)}」不明", line)
        else:
            # 藥局's file has no such column, and a row may leave it empty.
            county = county_of_address(address)
            if county is None:
                raise UnitImportError(
                    f"沒有縣市別代碼，地址「{_shown(address)}」也看不出縣市", line
                )
        ended = cell("終止合約或歇業日期")
        try:
            end_date = parse_date(ended)
        except ValueError:
            raise UnitImportError(
                f"終止合約或歇業日期「{_shown(ended)}」不是有效日期", line
            ) from None
        in_force = end_date is None or end_date > self.today
        kind = classify_kind(cell("醫事機構種類"), cell("特約類別"), name)
        return _Record(
            line=line,
            code=code,
            name=name,
            kind=kind.value,
            phone=phone,
            address=address,
            county=county,
            active=in_force,
            closes_on=end_date if in_force else None,
        )


def _count_rows(path: Path) -> int:
    """Data records in the file (a first pass: it also finds encoding errors early)."""
    return max(0, sum(1 for _ in _rows(path)) - 1)


# --------------------------------------------------------------------------- writing


class _Writer:
    def __init__(self) -> None:
        self.created = self.updated = self.deactivated = 0
        self.bureau_of: dict[str, int] = {}
        for unit_id, county in (
            Unit.select(Unit.id, Unit.county)
            .where(Unit.kind == UnitKind.HEALTH_BUREAU)
            .order_by(Unit.id)
            .tuples()
        ):
            self.bureau_of.setdefault(county, unit_id)
        self.category_ids = {c.code: c.id for c in Category.select(Category.id, Category.code)}
        self.now = utcnow()
        self.stamp: object = self.now if is_postgres() else self.now.isoformat(" ")

    def _day(self, day: dt.date | None) -> object:
        # A raw insert: SQLite keeps dates as ISO text, as peewee's DateField does.
        if day is None or is_postgres():
            return day
        return day.isoformat()

    def retire_generated(self, kinds: set[str]) -> int:
        """Retire the generated stand-ins of ``kinds``: the file brought the real ones."""
        if not kinds:
            return 0
        return int(
            Unit.update(active=False, updated_at=self.now)
            .where((Unit.source == "generated") & Unit.kind.in_(sorted(kinds)) & Unit.active)
            .execute()
        )

    def write(self, batch: list[_Record]) -> None:
        codes = [r.code for r in batch]
        existing = {
            unit.code: unit
            for unit in Unit.select(
                Unit.id,
                Unit.code,
                Unit.name,
                Unit.kind,
                Unit.phone,
                Unit.address,
                Unit.county,
                Unit.active,
                Unit.closes_on,
                Unit.source,
                Unit.parent,
            ).where(Unit.code.in_(codes))
        }
        new = [r for r in batch if r.code not in existing]
        for record in batch:
            if record.code in existing:
                unit = existing[record.code]
                if unit.kind in KEPT_FROM_THE_FILE:
                    raise UnitImportError(
                        f"醫事機構代碼 {record.code} 是「{_shown(unit.name)}」，"
                        "疾管署、區管制中心與衛生局不由健保資料變更",
                        record.line,
                    )
                self._update(unit, record)
        self._insert(new)

    def _update(self, unit: Unit, record: _Record) -> None:
        changes: dict[str, object] = {}
        for field in ("name", "kind", "phone", "address", "county", "active", "closes_on"):
            if getattr(unit, field) != getattr(record, field):
                changes[field] = getattr(record, field)
        if unit.source != SOURCE:
            # A generated unit under a real code is real from now on: it is not one of
            # the stand-ins the import retires.
            changes["source"] = SOURCE
        if not changes:
            return
        if "name" in changes:
            changes["search_key"] = fold(record.name)
        if "county" in changes:
            changes["county_rank"] = county_rank(record.county)
        old_bureau = self.bureau_of.get(unit.county)
        parent_id = unit.parent_id
        if "county" in changes and parent_id in (None, old_bureau):
            changes["parent"] = self.bureau_of.get(record.county)
        changes["updated_at"] = self.now
        Unit.update({getattr(Unit, k): v for k, v in changes.items()}).where(
            Unit.id == unit.id
        ).execute()
        self.updated += 1
        if unit.active and not record.active:
            self.deactivated += 1

    def _insert(self, records: list[_Record]) -> None:
        if not records:
            return
        rows = [
            (
                r.code,
                r.name,
                r.county,
                county_rank(r.county),
                r.kind,
                self.bureau_of.get(r.county),
                r.active,
                fold(r.name),
                r.address,
                r.phone,
                SOURCE,
                self.stamp,
                self._day(r.closes_on),
            )
            for r in records
        ]
        returned = bulk_insert("unit", (*UNIT_COLUMNS, "closes_on"), rows, returning='"id", "code"')
        id_of = {str(code): unit_id for unit_id, code in returned}
        links = [
            (id_of[r.code], self.category_ids[c])
            for r in records
            for c in TYPICAL_CATEGORIES[UnitKind(r.kind)]
            if c in self.category_ids
        ]
        for start in range(0, len(links), INSERT_BATCH):
            bulk_insert(
                "unit_category", ("unit_id", "category_id"), links[start : start + INSERT_BATCH]
            )
        self.created += len(records)
        self.deactivated += sum(1 for r in records if not r.active)


def close_ended_units(today: dt.date | None = None) -> int:
    """Retire the units whose contract ended by ``today`` (Taiwan's, by default): the
    file said when, and that day has come. Returns how many."""
    day = today if today is not None else taiwan_date(utcnow())
    with write_transaction():
        closed = int(
            Unit.update(active=False, updated_at=utcnow())
            .where(Unit.active & Unit.closes_on.is_null(False) & (Unit.closes_on <= day))
            .execute()
        )
        if closed:
            refresh_unit_grams()
    return closed


def import_units_csv(
    path: str | Path,
    progress: Callable[[int, int], None] | None = None,
    audit: Callable[[ImportResult], None] | None = None,
    *,
    today: dt.date | None = None,
) -> ImportResult:
    """Import the NHI CSV at ``path`` in one transaction; see the module docstring.

    ``audit(result)`` runs inside that transaction before it commits, so the audit
    row of the import is written with the import or not at all.

    ``progress(rows_done, rows_total)`` is called after every batch of rows.
    ``deactivated`` counts units that are inactive because of this file: active units
    the file terminates, and new units created already terminated. ``today`` (Taiwan's
    by default) decides whether a termination date has come.
    """
    day = today if today is not None else taiwan_date(utcnow())
    source = Path(path)
    try:
        total = _count_rows(source)
    except FileNotFoundError:
        raise UnitImportError(f"找不到檔案 {source}") from None
    except IsADirectoryError:
        raise UnitImportError(f"{source} 是目錄，不是 CSV 檔案") from None
    except PermissionError:
        raise UnitImportError(f"沒有權限讀取檔案 {source}") from None
    except OSError as exc:
        raise UnitImportError(f"無法讀取檔案 {source}：{exc.strerror or exc}") from None
    seen: dict[str, int] = {}
    kinds: set[str] = set()
    done = 0
    with write_transaction():
        writer = _Writer()
        header: _Header | None = None
        batch: list[_Record] = []
        for line, row in _rows(source):
            if header is None:
                header = _Header(line, row, day)
                continue
            record = header.record(line, row)
            if record.code in seen:
                raise UnitImportError(
                    f"醫事機構代碼 {record.code} 與第 {seen[record.code]} 行重複", line
                )
            seen[record.code] = line
            kinds.add(record.kind)
            batch.append(record)
            if len(batch) >= INSERT_BATCH:
                writer.write(batch)
                done += len(batch)
                batch = []
                if progress is not None:
                    progress(done, total)
        if header is None:
            raise UnitImportError("檔案是空的，缺少標題列", 1)
        writer.write(batch)
        done += len(batch)
        retired = writer.retire_generated(kinds & set(RETIRED_WITH_REAL_DATA))
        refresh_unit_grams()
        result = ImportResult(writer.created, writer.updated, writer.deactivated, retired)
        if audit is not None:
            audit(result)
        if progress is not None:
            progress(done, total)
    refresh_statistics()
    return result
