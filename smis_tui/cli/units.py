"""`smis-tui units …`: import the NHI institution list and search the unit directory.

No Textual here: these run on an operator's terminal or in scripts.
"""

from __future__ import annotations

import argparse
import sys
import unicodedata
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from smis_tui.core.chars import strip_hidden

if TYPE_CHECKING:
    from models.unit_import import ImportResult
    from smis_tui.core.config import Settings
    from smis_tui.services.audit import AuditLog
    from smis_tui.services.units import UnitPage

HEADERS = ("縣市", "單位/醫事機構代碼", "名稱")
EMPTY_RESULT = "查無符合條件的單位"
IMPORT_SUMMARY = "新增 {created} 筆、更新 {updated} 筆、停用 {deactivated} 筆"
RETIRED_SUMMARY = "另停用 {retired} 個系統產生的示範單位（同類的真實單位已匯入，避免重複）"
# Files at least this long get a progress bar even when stderr is not a terminal.
PROGRESS_MIN_ROWS = 1000
_BAR_WIDTH = 30

OpenDb = Callable[[Any], None]


# --------------------------------------------------------------------------- text


def clean(text: str) -> str:
    """Text from the database or a file, safe for a terminal: no control characters."""
    return strip_hidden(text, keep_newlines=False)


def one_line(text: str, limit: int = 400) -> str:
    """An error line that quotes what was typed: no control characters, and a value of
    thousands of characters shortened in the middle, keeping the start (which
    argument, how the value begins) and the end (e.g. argparse's "choose from" list)."""
    text = clean(text)
    if len(text) <= limit:
        return text
    keep = (limit - 3) // 2
    return f"{text[:keep]} … {text[-keep:]}"


def display_width(text: str) -> int:
    """Terminal columns: wide and full-width characters take two, combining marks none."""
    width = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def pad(text: str, width: int) -> str:
    return text + " " * max(0, width - display_width(text))


def format_table(page: UnitPage) -> list[str]:
    """The result table (header, rule, rows) or the empty-result line, then the pager line."""
    from smis_tui.services.units import page_line

    if not page.rows:
        return [EMPTY_RESULT, page_line(page)]
    rows = [(clean(r.county), clean(r.code), clean(r.name)) for r in page.rows]
    widths = [
        max(display_width(HEADERS[i]), *(display_width(row[i]) for row in rows)) for i in range(2)
    ]
    lines = [f"{pad(HEADERS[0], widths[0])}  {pad(HEADERS[1], widths[1])}  {HEADERS[2]}"]
    rule_name = max(display_width(HEADERS[2]), *(display_width(row[2]) for row in rows))
    lines.append("  ".join("-" * w for w in (*widths, rule_name)))
    for county, code, name in rows:
        lines.append(f"{pad(county, widths[0])}  {pad(code, widths[1])}  {name}")
    lines.append(page_line(page))
    return lines


class ProgressBar:
    """A plain carriage-return bar on a text stream; redraws only when the percentage moves."""

    def __init__(self, stream: TextIO, label: str = "匯入中") -> None:
        self.stream = stream
        self.label = label
        self.shown = -1
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        percent = 100 if total <= 0 else min(100, done * 100 // total)
        if percent == self.shown:
            return
        self.shown = percent
        filled = percent * _BAR_WIDTH // 100
        bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
        self.stream.write(f"\r{self.label} [{bar}] {percent:3d}%  {done}/{total}")
        self.stream.flush()
        self.drawn = True

    def finish(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


class ProgressLines:
    """Progress as whole lines, one per tenth of the file: for a log or a pipe, where a
    carriage return would pile the bar up on one line."""

    def __init__(self, stream: TextIO, label: str = "匯入中") -> None:
        self.stream = stream
        self.label = label
        self.shown = -1

    def __call__(self, done: int, total: int) -> None:
        tenth = 10 if total <= 0 else min(10, done * 10 // total)
        if tenth == self.shown:
            return
        self.shown = tenth
        self.stream.write(f"{self.label} {tenth * 10}%（{done}/{total}）\n")
        self.stream.flush()

    def finish(self) -> None:
        pass


def _count_lines(path: Path) -> int:
    """A cheap estimate of the rows in a file (physical lines), to decide on a bar."""
    try:
        with path.open("rb") as handle:
            return sum(1 for _ in handle)
    except OSError:
        return 0


# --------------------------------------------------------------------------- handlers


def _audit_import(audit: AuditLog, path: Path, result: ImportResult) -> None:
    audit.record(
        "units_import",
        actor=None,
        actor_label="cli",
        target_type="units",
        target_id=path.name,
        details=vars(result),
    )


def _audit_log(settings: Settings) -> AuditLog:
    """The audit trail with its anchor (the data key): the import's row moves the
    chain's head, which must be sealed like any other."""
    from smis_tui.services.audit import AuditLog
    from smis_tui.services.audit_anchor import AuditAnchor
    from smis_tui.services.crypto import KeyRing
    from smis_tui.services.registry import check_key

    keys = KeyRing.from_file(settings.resolved_key_file)
    check_key(keys)
    return AuditLog(AuditAnchor.for_key_file(keys, settings.resolved_key_file, settings.data_dir))


def handle_import(args: argparse.Namespace, settings: Settings | None = None) -> int:
    """`units import FILE.csv`: 0 on success, 1 when the file is refused. ``settings``:
    where the data key is (the environment's when not given)."""
    # Imported here: the importer is not needed to start the kiosk.
    from models.unit_import import UnitImportError, import_units_csv
    from smis_tui.core.config import load_settings

    audit = _audit_log(settings if settings is not None else load_settings())
    path = Path(args.file)
    stderr = sys.stderr
    bar: ProgressBar | ProgressLines | None = None
    if stderr.isatty():
        bar = ProgressBar(stderr)
    elif _count_lines(path) - 1 >= PROGRESS_MIN_ROWS:
        bar = ProgressLines(stderr)
    try:
        result = import_units_csv(path, progress=bar, audit=partial(_audit_import, audit, path))
    except UnitImportError as exc:
        if bar is not None:
            bar.finish()
        print(one_line(str(exc)), file=stderr)  # it may quote the file name as typed
        return 1
    if bar is not None:
        bar.finish()
    print(IMPORT_SUMMARY.format(**vars(result)))
    if result.retired:
        print(RETIRED_SUMMARY.format(retired=result.retired))
    return 0


def handle_search(args: argparse.Namespace) -> int:
    """`units search [QUERY] [--county C] [--page N]`: 0, or 2 for an unknown county."""
    from smis_tui.services.units import UnitDirectory, normalise_county

    county: str | None = args.county
    if county is not None:
        official = normalise_county(county)
        if official is None:
            directory = UnitDirectory()
            print(
                f"縣市「{one_line(county, 60)}」不存在，請使用：{'、'.join(directory.counties())}",
                file=sys.stderr,
            )
            return 2
        county = official
    page = UnitDirectory().search(args.query or "", county=county, page=args.page)
    for line in format_table(page):
        print(line)
    return 0


def _page_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("頁數必須是正整數") from None
    if value < 1:
        raise argparse.ArgumentTypeError("頁數必須是正整數")
    return value


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    open_db: OpenDb,
) -> None:
    """Add `units import` and `units search` to the CLI. Their handlers are called as
    ``handler(settings, args)``; ``open_db(settings)`` opens and checks the database."""

    def opening(
        handler: Callable[[argparse.Namespace], int],
    ) -> Callable[[Any, argparse.Namespace], int]:
        def run(settings: Any, args: argparse.Namespace) -> int:
            open_db(settings)
            return handler(args)

        return run

    units = subparsers.add_parser("units", help="單位資料").add_subparsers(
        dest="units_command", required=True
    )
    imp = units.add_parser(
        "import",
        help="匯入健保特約醫事機構 CSV（全部成功或全部不匯入）",
        description="匯入健保署開放資料的特約醫事機構 CSV（UTF-8）。"
        "已存在的代碼就地更新，終止合約或歇業者停用（不刪除）。",
    )
    imp.add_argument("file", metavar="FILE.csv", type=Path, help="CSV 檔案")

    def run_import(settings: Any, args: argparse.Namespace) -> int:
        open_db(settings)
        return handle_import(args, settings)

    imp.set_defaults(handler=run_import)

    search = units.add_parser(
        "search",
        help="查詢單位（名稱或醫事機構代碼）",
        description="查詢單位（名稱或醫事機構代碼）。以 - 開頭的查詢字串照樣輸入即可，"
        "或寫在 -- 之後，例如 smis-tui units search -- -1。",
        allow_abbrev=False,
    )
    search.add_argument("query", nargs="?", default="", help="單位名稱或醫事機構代碼開頭")
    # A query may begin with "-" (a name or code as typed): main() takes the one
    # argument argparse did not recognise as the query.
    search.set_defaults(takes_dash_query=True)
    search.add_argument("--county", default=None, help="縣市，例如 新北市")
    search.add_argument("--page", type=_page_number, default=1, help="頁數（預設 1）")
    search.set_defaults(handler=opening(handle_search))
