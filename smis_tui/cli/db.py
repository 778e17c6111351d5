"""`smis-tui db backup`, `db restore` and `db copy` (smis_tui.services.backup).

Imports per command, like the other operator commands: `--help` loads no database
driver and no crypto.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from smis_tui.core.config import Settings

if TYPE_CHECKING:
    from smis_tui.services.audit import VerifyResult
    from smis_tui.services.backup import Manifest

_BACKUP_EPILOG = """\
SQLite 以線上備份 API 複製（kiosk 可繼續使用）；PostgreSQL 以 pg_dump 自訂格式備份，
密碼只經由環境變數傳給 pg_dump。備份檔與其清單 <檔案>.json 權限皆為 0600，
寫完後以唯讀方式開啟核對各資料表筆數。資料加密金鑰檔不在備份內：請另外保管，
沒有它，備份中的身分證號無法解密，軌跡紀錄也無法驗證。"""

_RESTORE_EPILOG = """\
還原前核對備份清單、檔案的 SHA-256 與筆數，以及金鑰檔是否為備份時的金鑰；
目標資料庫已有資料時須加 --force。還原後核對筆數並驗證軌跡紀錄（結束代碼 3：驗證失敗）。
PostgreSQL 以 pg_restore --clean --single-transaction 還原；請先停止所有 kiosk。"""

_COPY_EPILOG = """\
以本程式的資料庫結構建立目標資料庫，於同一交易內複製所有資料列並接續編號，
完成後核對筆數並驗證軌跡紀錄（結束代碼 3：驗證失敗）。目標資料庫必須是空的。"""


def register(db: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `backup`, `restore` and `copy` to the `db` sub-commands; their handlers are
    called as ``handler(settings, args)``."""
    backup = db.add_parser(
        "backup",
        help="備份資料庫到檔案（並寫出備份清單 <檔案>.json）",
        description="備份目前設定的資料庫（SQLite 或 PostgreSQL）到檔案，並驗證備份內容。",
        epilog=_BACKUP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    backup.add_argument("file", metavar="FILE", type=Path, help="備份檔")
    backup.add_argument("--force", action="store_true", help="覆寫已存在的備份檔")
    backup.set_defaults(handler=_guarded(handle_backup))

    restore = db.add_parser(
        "restore",
        help="由備份檔還原資料庫，並驗證筆數與軌跡紀錄",
        description="由 smis-tui db backup 的備份檔還原目前設定的資料庫。",
        epilog=_RESTORE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    restore.add_argument("file", metavar="FILE", type=Path, help="備份檔")
    restore.add_argument("--force", action="store_true", help="取代資料庫中現有的資料")
    restore.set_defaults(handler=_guarded(handle_restore))

    copy = db.add_parser(
        "copy",
        help="將 SQLite 資料庫複製到空的 PostgreSQL 資料庫",
        description="將目前設定的 SQLite 資料庫完整複製到 --to 指定的空 PostgreSQL 資料庫。",
        epilog=_COPY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    copy.add_argument("--to", required=True, metavar="URL", help="postgresql://…")
    copy.set_defaults(handler=_guarded(handle_copy))


def _guarded(
    handler: Callable[[Settings, argparse.Namespace], int],
) -> Callable[[Settings, argparse.Namespace], int]:
    """A refusal or a failed check is one line on stderr with its own exit code."""

    def run(settings: Settings, args: argparse.Namespace) -> int:
        from smis_tui.cli.units import one_line
        from smis_tui.services.backup import BackupError

        try:
            return handler(settings, args)
        except BackupError as exc:
            print(f"smis-tui: {one_line(str(exc))}", file=sys.stderr)
            return exc.exit_code
        except OSError as exc:
            # The backup file or its directory (a full disk, no permission, a name
            # too long): the file named and the system's reason.
            where = f"{exc.filename}：" if exc.filename else ""
            reason = exc.strerror or type(exc).__name__
            print(f"smis-tui: 檔案錯誤：{one_line(f'{where}{reason}')}", file=sys.stderr)
            return 1

    return run


def handle_backup(settings: Settings, args: argparse.Namespace) -> int:
    from smis_tui.services.backup import backup_database

    result = backup_database(settings, args.file, force=args.force)
    manifest = result.manifest
    print(
        f"已備份 {_kind(manifest)} 資料庫到 {_shown(result.file)}："
        f"{len(manifest.tables)} 個資料表、共 {manifest.rows} 筆、"
        f"結構版本 {manifest.schema_version}、{_size(manifest.size)}"
    )
    _print_tables(manifest.tables)
    print("已驗證備份檔：各資料表筆數與備份時的資料庫一致")
    print(f"備份清單 {_shown(result.manifest_file)}")
    if result.key_matches:
        print(
            f"資料加密金鑰不在備份中：請另外妥善保管金鑰檔 {_shown(result.key_file)}"
            f"（指紋 {manifest.key_id}），沒有它備份中的身分證號無法解密"
        )
    else:
        print(
            f"注意：目前的金鑰檔 {_shown(result.key_file)} 不是此資料庫的金鑰；還原此備份需要指紋 "
            f"{manifest.key_id or '（無）'} 的金鑰檔，請找出並另外保管",
            file=sys.stderr,
        )
    return 0


def handle_restore(settings: Settings, args: argparse.Namespace) -> int:
    from smis_tui.services.backup import counts_line, plan_restore, restore

    plan = plan_restore(settings, args.file, force=args.force)
    manifest = plan.manifest
    print(
        f"備份檔 {_shown(plan.file)}：{_kind(manifest)}、建立於 {_shown(manifest.created_at)}（UTC）、"
        f"結構版本 {manifest.schema_version}、共 {manifest.rows} 筆；檔案與清單相符"
    )
    if plan.replaced:
        print(f"將取代資料庫 {_shown(plan.target)} 現有的資料：{counts_line(plan.replaced)}")
    verified = restore(plan)
    print(f"已還原到 {_shown(plan.target)}：各資料表筆數與備份清單一致")
    _print_tables(verified.tables)
    code = _report_audit(verified.audit)
    if code == 0 and manifest.schema_version < _schema_version():
        print("備份的資料庫結構較舊：請執行 smis-tui db upgrade")
    return code


def handle_copy(settings: Settings, args: argparse.Namespace) -> int:
    from smis_tui.services.backup import copy_to_postgres, plan_copy

    plan = plan_copy(settings, args.to)
    counts, verified = copy_to_postgres(plan)
    print(
        f"已複製到 {_shown(plan.target)}：{len(counts)} 個資料表、共 {sum(counts.values())} 筆，"
        "筆數與來源一致"
    )
    _print_tables(verified.tables)
    code = _report_audit(verified.audit)
    if code == 0:
        print("kiosk 改用此資料庫：設定 DATABASE_URL（或設定檔的 database_url）")
    return code


def _report_audit(result: VerifyResult) -> int:
    if result.ok:
        print(f"軌跡紀錄完整：共驗證 {result.checked} 筆")
        if not result.anchored:
            print("紀錄鏈末端原無簽章（舊版資料庫）：執行 smis-tui audit verify 加上簽章")
        return 0
    hint = (
        "；本機檢查點記錄了不在此資料庫中的紀錄（例如備份之後寫入的紀錄）"
        if result.code == "checkpoint"
        else ""
    )
    print(
        f"軌跡紀錄驗證失敗：第一筆異常紀錄 #{result.first_bad_id}（{result.reason}）；"
        f"之前 {result.checked} 筆正常{hint}",
        file=sys.stderr,
    )
    return 3


def _print_tables(tables: dict[str, int]) -> None:
    from smis_tui.services.backup import counts_line

    print(f"  {counts_line(tables)}")


def _shown(name: object) -> str:
    """A path or a database as typed or configured, safe for a terminal."""
    from smis_tui.cli.units import clean

    return clean(str(name))


def _kind(manifest: Manifest) -> str:
    return "SQLite" if manifest.source == "sqlite" else "PostgreSQL"


def _size(size: int) -> str:
    if size >= 1 << 20:
        return f"{size / (1 << 20):.1f} MB"
    return f"{size / 1024:.1f} KB"


def _schema_version() -> int:
    from models.migrate import SCHEMA_VERSION

    return SCHEMA_VERSION
