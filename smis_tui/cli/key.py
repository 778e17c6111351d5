"""`smis-tui key rotate`: a new data key for the person IDs (smis_tui.services.key_rotation).

Imports per command, like the other operator commands: `--help` loads no crypto.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from smis_tui.core.config import Settings

_EPILOG = """\
輪替前請停止所有 kiosk，並備份資料庫與金鑰檔。輪替先寫出新金鑰檔 <金鑰檔>.new
與舊金鑰備份 <金鑰檔>.old（權限 0600），再分批以新金鑰重寫每個身分證號與其查詢索引；
中途中斷時再執行一次即從中斷處繼續。全部驗證無誤後新金鑰才取代原金鑰檔；
<金鑰檔>.old 請備份後自行移除。"""


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    open_checked: Callable[[Settings], None],
) -> None:
    """Add `key rotate`; its handler is called as ``handler(settings, args)``."""
    key = subparsers.add_parser("key", help="資料加密金鑰").add_subparsers(
        dest="key_command", required=True
    )
    rotate = key.add_parser(
        "rotate",
        help="更換資料加密金鑰（可中斷後重新執行）",
        description="產生新的資料加密金鑰，並以其重寫所有加密的身分證號與查詢索引。",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    def handle_rotate(settings: Settings, args: argparse.Namespace) -> int:
        from smis_tui.services.key_rotation import rotate_key

        open_checked(settings)
        key_file = settings.resolved_key_file
        result = rotate_key(key_file)
        if result.resumed:
            print("已接續先前未完成的金鑰輪替")
        print(
            f"資料加密金鑰已更換：重寫 {result.rewritten} 筆、驗證 {result.verified} 筆，"
            f"新金鑰在 {key_file}"
        )
        print(f"舊金鑰保留於 {result.old_key_file}：確認新金鑰已備份後請移除。")
        return 0

    rotate.set_defaults(handler=handle_rotate)
