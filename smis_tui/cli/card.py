"""`smis-tui card …`: card tooling for operators and demos (no Textual here)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["OUTCOME_LABELS", "handle_make_test_pki", "register"]

OUTCOME_LABELS = {
    "ok": "可登入",
    "expired": "憑證已到期",
    "not_yet_valid": "憑證尚未生效",
    "revoked": "憑證已廢止",
    "untrusted": "簽發單位不受信任",
    "key_usage": "憑證用途不符",
    "crl_stale": "CRL 已過期",
    "crl_missing": "找不到 CRL",
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `card make-test-pki DIR`; handlers are called as ``handler(settings, args)``."""
    card = subparsers.add_parser("card", help="卡片工具").add_subparsers(
        dest="card_command", required=True
    )
    make = card.add_parser(
        "make-test-pki",
        help="產生測試用 PKI（根憑證、簽發單位、CRL 與測試使用者憑證）",
        description="產生測試用 PKI：GRCA 類根憑證、MOICA 類與 HCA 類簽發單位、CRL、"
        "不受信任的憑證鏈，以及各種情況的測試使用者憑證與私鑰。"
        "私鑰未加密，僅供測試與展示。",
    )
    make.add_argument("directory", metavar="DIR", type=Path, help="輸出目錄（不存在則建立）")
    make.add_argument(
        "--key-cache",
        type=Path,
        default=None,
        metavar="DIR",
        help="重複使用此目錄中的金鑰（加快重新產生）",
    )
    make.set_defaults(handler=handle_make_test_pki)


def handle_make_test_pki(settings: Any, args: argparse.Namespace) -> int:
    from card.sim.testpki import make_test_pki  # cryptography only when this command runs

    pki = make_test_pki(args.directory, key_cache=args.key_cache)
    base = pki.directory

    def rel(path: Path) -> str:
        return path.relative_to(base).as_posix()

    print(f"已產生測試用 PKI：{base}")
    print(f"  CA 憑證目錄（信任設定）：{rel(pki.ca_dir)}/")
    print(f"  憑證廢止清冊（CRL）目錄：{rel(pki.crl_dir)}/")
    print(f"  不受信任的憑證鏈：{rel(pki.untrusted_dir)}/")
    print(f"  說明檔：{rel(pki.manifest_path)}")
    print("測試使用者：")
    for user in pki.users.values():
        outcome = OUTCOME_LABELS.get(user.expected, user.expected)
        print(
            f"  {user.name:<14} {user.kind.value:<5} {user.cn}  {user.person_id}  "
            f"預期：{outcome}（{user.expected}）"
        )
        print(f"    {user.description}；憑證 {rel(user.cert_path)}，私鑰 {rel(user.key_path)}")
    print("注意：私鑰未加密，僅供測試與展示，切勿用於正式環境。")
    return 0
