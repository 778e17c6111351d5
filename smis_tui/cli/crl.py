"""`smis-tui crl refresh`: download the CRLs of the trusted CAs into the CRL directory.

The kiosk refuses every login through a CA that has no current CRL (card.validation),
so this runs regularly (cron or a systemd timer, more often than the CAs publish).
Which URLs, and which checks a CRL must pass before it replaces the one in place:
card.revocation. No Textual here.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from smis_tui.cli.units import one_line

__all__ = [
    "EXIT_CA_WITHOUT_CRL",
    "EXIT_DOWNLOAD_FAILED",
    "handle_refresh",
    "register",
]

EXIT_DOWNLOAD_FAILED = 3
EXIT_CA_WITHOUT_CRL = 4

_EPILOG = f"""\
下載來源：CA 憑證目錄中每張 CA 憑證的 CRL 發布點（CRL distribution points，http），
以及設定檔 config.toml 的 crl_urls（各簽發單位自己的 CRL 網址只列在卡片憑證中，
可由 smis-tui card inspect 查得）。每份 CRL 須由 CA 憑證目錄中的憑證機構簽發並通過簽章驗證、
不是差異清冊、部分廢止原因清冊、間接清冊或屬性憑證清冊、發布時間不晚於現在、
未逾下次更新日期（加上 crl_grace_hours 寬限），且不比同一範圍現有的舊，才會以原子方式
取代該範圍的檔案；否則保留現有檔案。完整清冊與各分割清冊（依發布點或憑證類別）各存一檔，
分割清冊不會取代完整清冊。每個網址的下載時間有上限，逾時即算失敗。

結束代碼：
  0  每個網址都取得有效的 CRL，且每個 CA 都有有效的 CRL
  1  設定錯誤（例如未設定 CA 憑證目錄）
  {EXIT_DOWNLOAD_FAILED}  至少一個網址失敗（無法下載、逾時、不是 CRL、簽章不符、無法使用、
     已過期、比現有的舊，或無法寫入 CRL 目錄）
  {EXIT_CA_WITHOUT_CRL}  下載都成功，但仍有 CA 沒有有效的 CRL（其簽發的卡片無法登入）"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `crl refresh`; its handler is called as ``handler(settings, args)``."""
    crl = subparsers.add_parser("crl", help="憑證廢止清冊（CRL）").add_subparsers(
        dest="crl_command", required=True
    )
    refresh = crl.add_parser(
        "refresh",
        help="下載並更新憑證廢止清冊（CRL）",
        description="下載並更新信任的憑證機構的憑證廢止清冊（CRL）。",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    refresh.set_defaults(handler=handle_refresh)


def _roc(when: dt.datetime | None) -> str:
    from smis_tui.core.clock import taiwan_date
    from smis_tui.core.rocdate import to_roc

    return to_roc(taiwan_date(when)) if when is not None else "未載明"


def handle_refresh(settings: Any, args: argparse.Namespace) -> int:
    # cryptography and urllib only when this command runs
    from card.errors import TrustStoreError
    from card.revocation import collect_urls, load_ca_directory, missing_or_stale, refresh
    from smis_tui.core.config import ConfigError

    ca_dir = settings.ca_dir
    crl_dir = settings.resolved_crl_dir
    if ca_dir is None or crl_dir is None:
        raise ConfigError(
            "未設定信任的憑證機構目錄：請設定 SMIS_CA_DIR（或 config.toml 的 ca_dir）"
        )
    grace = dt.timedelta(hours=settings.crl_grace_hours)
    try:
        urls = collect_urls(load_ca_directory(ca_dir), settings.crl_urls)
        outcomes = refresh(ca_dir, crl_dir, urls, grace=grace)
        without = missing_or_stale(ca_dir, crl_dir, now=dt.datetime.now(dt.UTC), grace=grace)
    except TrustStoreError as exc:
        raise ConfigError(str(exc)) from exc

    if not urls:
        print("沒有可下載的 CRL 網址：CA 憑證未載明 CRL 發布點，config.toml 也未設定 crl_urls")
    for outcome in outcomes:
        url = one_line(outcome.url, 200)
        name = one_line(outcome.ca or "", 120)
        if outcome.status == "updated":
            file = outcome.path.name if outcome.path is not None else ""
            print(f"已更新：「{name}」→ {file}（下次更新 {_roc(outcome.next_update)}）　{url}")
        elif outcome.status == "unchanged":
            print(f"未變更：「{name}」已是最新（下次更新 {_roc(outcome.next_update)}）　{url}")
        else:
            reason = one_line(str(outcome.error), 300)
            who = f"「{name}」" if name else url
            print(f"失敗：{who}：{reason}　{url}")
    for label in without:
        print(
            f"注意：「{one_line(label, 120)}」沒有有效的憑證廢止清冊，由其簽發的憑證都無法登入；"
            "請於 config.toml 的 crl_urls 加入其 CRL 網址（可由 smis-tui card inspect 查得）"
        )

    failed = [o for o in outcomes if not o.ok]
    if failed:
        names = "、".join(
            one_line(f"「{o.ca}」（{o.url}）" if o.ca else o.url, 200) for o in failed
        )
        print(f"smis-tui: 憑證廢止清冊更新失敗：{names}", file=sys.stderr)
        return EXIT_DOWNLOAD_FAILED
    if without:
        return EXIT_CA_WITHOUT_CRL
    return 0
