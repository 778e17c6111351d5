"""`smis-tui card …`: card tooling for operators and demos (no Textual here)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smis_tui.cli.units import one_line

if TYPE_CHECKING:
    from smis_tui.services.card_inspect import Inspection

__all__ = ["OUTCOME_LABELS", "handle_inspect", "handle_make_test_pki", "register"]

OUTCOME_LABELS = {
    "ok": "可登入",
    "expired": "憑證已到期",
    "not_yet_valid": "憑證尚未生效",
    "revoked": "憑證已廢止",
    "untrusted": "簽發單位不受信任",
    "key_usage": "憑證用途不符",
    "crl_stale": "CRL 已過期",
    "crl_missing": "找不到 CRL",
    "not_personal": "不是個人憑證",
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

    inspect = card.add_parser(
        "inspect",
        help="檢查憑證檔或讀卡機中的卡片：本系統會如何判斷（上線前檢查用）",
        description="以本系統登入時的同一套規則檢查憑證：卡別、持卡人、身分證號線索（遮蔽）、"
        "簽發單位、有效期間（民國）、信任鏈與憑證廢止清冊（CRL）的結論。"
        "信任設定取自 SMIS_CA_DIR／SMIS_CRL_DIR（或 config.toml），可用 --ca-dir、--crl-dir 覆寫。",
        epilog="結束代碼：0 可登入；3 憑證無法解析；4 不是個人憑證；5 信任設定（CA 或 CRL 目錄）有誤；"
        "6 無法讀取卡片；10 已到期；11 尚未生效；12 簽發單位不受信任；13 已廢止；"
        "14 找不到 CRL；15 CRL 已過期；16 憑證用途不符；19 其他不可登入的原因；2 用法錯誤。",
    )
    source = inspect.add_mutually_exclusive_group(required=True)
    source.add_argument("file", metavar="FILE", nargs="?", type=Path, help="憑證檔（PEM 或 DER）")
    source.add_argument("--reader", metavar="NAME", help="改為讀取此讀卡機中的卡片")
    inspect.add_argument("--ca-dir", type=Path, default=None, metavar="DIR", help="CA 憑證目錄")
    inspect.add_argument("--crl-dir", type=Path, default=None, metavar="DIR", help="CRL 目錄")
    inspect.set_defaults(handler=handle_inspect)


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
        kind = user.kind.value if user.kind else "org"
        print(
            f"  {user.name:<14} {kind:<5} {user.cn}  {user.person_id or '—'}  "
            f"預期：{outcome}（{user.expected}）"
        )
        print(f"    {user.description}；憑證 {rel(user.cert_path)}，私鑰 {rel(user.key_path)}")
    print("注意：私鑰未加密，僅供測試與展示，切勿用於正式環境。")
    return 0


_KIND_LABELS = {"moica": "自然人憑證（MOICA）", "hpc": "醫事人員卡（HPC）", "piv": "PIV 卡"}


def _roc_span(start: dt.datetime, end: dt.datetime) -> str:
    from smis_tui.core.clock import taiwan_date
    from smis_tui.core.rocdate import to_roc

    return f"民國 {to_roc(taiwan_date(start))} 至 民國 {to_roc(taiwan_date(end))}（台灣時間）"


def _id_hint(masked: str | None) -> str:
    if masked is None:
        return "（憑證未載明）"
    if len(masked) == 4:
        return f"{masked}（憑證只載末 4 碼，此處遮蔽）"
    return f"{masked}（完整身分證號，此處遮蔽）"


def _print_inspection(source: str, inspection: Inspection) -> None:
    allowed = inspection.verdict == "ok"
    print(f"來源：{source}")
    verdict = "可登入" if allowed else f"不可登入：{one_line(inspection.message)}"
    print(f"結論：{verdict}（{inspection.verdict}，結束代碼 {inspection.exit_code}）")
    facts = inspection.facts
    if facts is None:
        return
    lines = [
        ("卡別", _KIND_LABELS.get(str(facts.kind), "—") if facts.kind else "—"),
        ("持有人類別", facts.subject_type or "（無，視為 PIV 卡）"),
        ("持卡人", facts.holder),
        ("身分證號線索", _id_hint(facts.masked_id)),
        ("簽發單位", facts.issuer),
        ("憑證序號", facts.serial),
        ("有效期間", _roc_span(facts.not_before, facts.not_after)),
        ("憑證政策", "、".join(facts.policies) or "（無）"),
        ("信任鏈", " → ".join(facts.chain) or "（無法連到信任的根憑證）"),
        ("CRL 發布點", "、".join(facts.crl_urls) or "（無）"),
        ("簽發單位憑證", "、".join(facts.ca_issuer_urls) or "（無）"),
        ("SHA-256", facts.sha256 or "—"),
    ]
    for label, value in lines:
        print(f"  {label}：{one_line(value)}")
    if facts.expiring_days is not None and allowed:
        print(f"注意：憑證將於 {facts.expiring_days} 天內到期，請持卡人儘早辦理展期或換發")


def _validator_for(settings: Any, args: argparse.Namespace) -> tuple[Any, Exception | None]:
    """(validator, None), or (None, why the trust settings cannot be used)."""
    from card.errors import CardError
    from smis_tui.core.config import ConfigError
    from smis_tui.services.card_runtime import certificate_validator

    changes = {}
    if args.ca_dir is not None:
        changes["ca_dir"] = args.ca_dir
    if args.crl_dir is not None:
        changes["crl_dir"] = args.crl_dir
    try:
        return certificate_validator(settings.with_overrides(**changes)), None
    except (CardError, ConfigError) as exc:
        return None, exc


def handle_inspect(settings: Any, args: argparse.Namespace) -> int:
    from smis_tui.services.card_inspect import EXIT_CODES, inspect_certificate

    validator, trust_problem = _validator_for(settings, args)
    if args.reader is not None:
        from card.errors import CardError
        from smis_tui.services.card_runtime import read_reader_certificate
        from smis_tui.text import render_error

        try:
            data = read_reader_certificate(args.reader)
        except CardError as exc:
            print(f"來源：讀卡機 {one_line(args.reader)}")
            print(f"結論：無法讀取卡片：{one_line(render_error(exc))}")
            return EXIT_CODES["card_unreadable"]
        source = f"讀卡機 {args.reader}"
    else:
        try:
            data = args.file.read_bytes()
        except OSError as exc:
            print(f"無法讀取憑證檔 {args.file}：{exc.strerror}", file=sys.stderr)
            return EXIT_CODES["unparseable"]
        source = str(args.file)
    inspection = inspect_certificate(data, validator, trust_problem=trust_problem)
    _print_inspection(source, inspection)
    return inspection.exit_code
