"""The `smis-tui` command: the kiosk and its operator sub-commands."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import NoReturn

from smis_tui.boot import hold_collector, operator_errors, prepare_textual
from smis_tui.cli import agent as cli_agent
from smis_tui.cli import card as cli_card
from smis_tui.cli import crl as cli_crl
from smis_tui.cli import db as cli_db
from smis_tui.cli import key as cli_key
from smis_tui.cli import ssh as cli_ssh
from smis_tui.cli import units as cli_units
from smis_tui.core.config import Settings, load_settings

# The operator sub-commands import what they use inside their function: `smis-tui run`
# shows its first screen before the database driver and crypto are even imported.

log = logging.getLogger("smis_tui")

# What `pip install 'smis-tui[kiosk]'` adds to the card agent's own packages.
KIOSK_PACKAGES = frozenset({"textual", "rich", "peewee", "playhouse", "psycopg2"})


def _open_checked(settings: Settings) -> None:
    from models.db import open_database
    from models.migrate import check_schema

    open_database(settings.database_url, settings.sqlite_path)
    check_schema()


def cmd_db_init(settings: Settings, args: argparse.Namespace) -> int:
    from models.db import open_database
    from models.migrate import upgrade
    from models.unit_data import load_generated_units
    from smis_tui.services import check_key
    from smis_tui.services.crypto import KeyRing, create_key_file

    open_database(settings.database_url, settings.sqlite_path)
    before, after = upgrade()
    key_path = settings.resolved_key_file
    if create_key_file(key_path):
        print(f"已建立資料加密金鑰檔 {key_path}（權限 0600）")
    check_key(KeyRing.from_file(key_path))
    if args.demo:
        from models.purpose import NotADemoDatabase, mark_demo_database

        try:
            mark_demo_database()
        except NotADemoDatabase as exc:
            print(f"smis-tui: {exc}", file=sys.stderr)
            return 2
    added = load_generated_units(total=args.units)
    if before == 0:
        print(f"已建立資料庫結構（版本 {after}）")
    else:
        print(f"資料庫結構版本 {after}")
    print(f"已載入預設單位 {added} 筆" if added else "單位資料已存在，未重複載入")
    if args.demo:
        print("這是示範資料庫：可執行 smis-tui demo init")
    return 0


def cmd_db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    from models.db import open_database
    from models.migrate import upgrade
    from smis_tui.services import check_key
    from smis_tui.services.crypto import KeyRing, person_id_slot

    open_database(settings.database_url, settings.sqlite_path)
    loaded: list[KeyRing] = []

    def rebind_person_id(account_id: int, blob: bytes) -> bytes | None:
        # The key is needed only when there are encrypted values to bind to their rows.
        if not loaded:
            loaded.append(KeyRing.from_file(settings.resolved_key_file))
            check_key(loaded[0])
        return loaded[0].bind_legacy(blob, person_id_slot(account_id))

    before, after = upgrade(rebind_person_id)
    print(
        f"資料庫結構已由版本 {before} 升級至 {after}"
        if before != after
        else f"資料庫結構已是最新版本 {after}"
    )
    return 0


def cmd_db_version(settings: Settings, args: argparse.Namespace) -> int:
    from models.db import open_database
    from models.migrate import SCHEMA_VERSION, current_version

    open_database(settings.database_url, settings.sqlite_path)
    print(f"資料庫結構版本 {current_version()}（本程式支援 {SCHEMA_VERSION}）")
    return 0


def cmd_audit_verify(settings: Settings, args: argparse.Namespace) -> int:
    from smis_tui.services import open_services

    services = open_services(settings)
    result = services.audit.verify()
    if result.ok:
        # The verified head goes to this machine's checkpoint file (sealed first when
        # the database is from the version before the anchor).
        written = services.audit.checkpoint()
        if written.ok:
            print(f"軌跡紀錄完整：共驗證 {result.checked} 筆")
            if not result.anchored:
                print("紀錄鏈末端原無簽章（舊版資料庫）：已驗證並加上簽章")
            print(f"已寫入檢查點 {services.audit.checkpoint_file}")
            return 0
        result = written
    print(
        f"軌跡紀錄遭竄改：第一筆異常紀錄 #{result.first_bad_id}（{result.reason}）；"
        f"之前 {result.checked} 筆正常",
        file=sys.stderr,
    )
    return 3


def cmd_maintenance(settings: Settings, args: argparse.Namespace) -> int:
    from smis_tui.services import open_services

    services = open_services(settings)
    disabled = services.accounts.run_maintenance()
    print(f"已停用 {disabled} 個超過 {settings.inactive_days} 天未登入的帳號")
    from models.unit_import import close_ended_units

    closed = close_ended_units()
    print(f"已停用 {closed} 個健保合約已於今日前終止的單位")
    # 權限定期檢閱 past their deadline: each undecided item gets the review's default.
    reviewed = services.access_reviews.apply_defaults()
    print(
        f"已依預設處理 {reviewed.applied} 個逾期未決定的權限檢閱項目"
        f"（保留 {reviewed.kept}、移除 {reviewed.removed}），結束 {reviewed.reviews} 次權限檢閱"
    )
    if reviewed.trail_broken:
        print(
            "軌跡紀錄驗證未通過：未依預設處理任何權限檢閱；請執行 smis-tui audit verify 並查明",
            file=sys.stderr,
        )
    elif reviewed.refused:
        from models.schema import AccessReview

        for review in AccessReview.select().where(AccessReview.id.in_(reviewed.refused)):
            name = "".join(ch if ch.isprintable() else "?" for ch in review.name)
            print(
                f"權限檢閱 #{review.id}「{name}」與開始時的紀錄不符（資料庫內容遭修改），"
                "未依預設處理，也未結束；請執行 smis-tui audit verify 並查明",
                file=sys.stderr,
            )
    # A checkpoint of the sealed head each run (a timer runs maintenance): rows cut
    # off or re-chained after it are caught by `audit verify` on this machine.
    written = services.audit.checkpoint()
    if not written.ok:
        print(
            f"軌跡紀錄遭竄改，未寫入檢查點：#{written.first_bad_id}（{written.reason}）；"
            "請執行 smis-tui audit verify",
            file=sys.stderr,
        )
        return 3
    return 3 if reviewed.refused else 0


def cmd_config_check(settings: Settings, args: argparse.Namespace) -> int:
    """The settings in force: the configuration file was read (unknown keys refused
    before we get here) and the environment applied."""
    from models.db import describe_database

    print(f"資料目錄：{settings.data_dir}")
    print(f"資料庫：{describe_database(settings.database_url, settings.sqlite_path)}")
    print(f"資料加密金鑰檔：{settings.resolved_key_file}")
    print(f"信任的 CA 目錄：{settings.ca_dir or '（未設定：無法以卡片登入）'}")
    print(f"廢止清冊目錄：{settings.resolved_crl_dir or '（未設定）'}")
    default = ACCESS_REVIEW_DEFAULT_WORDS[settings.access_review_default]
    print(
        f"權限定期檢閱：預設 {settings.access_review_days} 天；"
        f"超過 {settings.access_review_inactive_days} 天未登入建議移除；"
        f"截止時未決定的項目{default}（access_review_default = {settings.access_review_default}）"
    )
    return 0


# How `config check` says each access_review_default (smis_tui.core.config).
ACCESS_REVIEW_DEFAULT_WORDS = {
    "keep": "保留",
    "remove": "移除",
    "recommendation": "依建議（保留或移除）",
}


def cmd_admin_bootstrap(settings: Settings, args: argparse.Namespace) -> int:
    from smis_tui.services import open_services
    from smis_tui.services.accounts import PersonalData
    from smis_tui.services.bootstrap import bootstrap_admin, read_certificate

    services = open_services(settings)
    cert = read_certificate(args.cert)
    data = PersonalData(
        name=args.name or cert.name,
        phone=args.phone,
        email=args.email,
        phone_backup="",
        email_backup="",
        mobile="",
    )
    account_id = bootstrap_admin(services.accounts, cert, args.person_id, data)
    print(f"已建立疾管署管理者帳號 #{account_id}（{data.name}），綁定憑證 {cert.cert_sha256[:16]}…")
    return 0


def cmd_demo_init(settings: Settings, args: argparse.Namespace) -> int:
    from models.purpose import NotADemoDatabase
    from smis_tui.demo import create_demo
    from smis_tui.services import open_services

    services = open_services(settings)
    try:
        cards = create_demo(services, settings.data_dir / "demo-pki")
    except NotADemoDatabase as exc:
        print(f"smis-tui: {exc}", file=sys.stderr)
        return 2
    print("示範卡片（卡片密碼）：")
    for card in cards:
        print(f"  {card.pin}  {card.holder}　{card.label}")
    return 0


# The Linux console (TERM=linux, e.g. tty1) has a 512-glyph font: no Chinese at all. In
# ASCII, since this terminal could not show anything else.
CONSOLE_MESSAGE = (
    "smis-tui: this terminal (TERM=linux, the Linux console) cannot draw Chinese; "
    "run the kiosk in a terminal that can, e.g. `cage -- foot` with fonts-noto-cjk "
    "(docs/operator.md), or over SSH from a desktop terminal."
)


def console_cannot_draw_cjk() -> bool:
    return os.environ.get("TERM", "").strip() == "linux"


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    started = time.perf_counter()
    if console_cannot_draw_cjk():
        print(CONSOLE_MESSAGE, file=sys.stderr)
        return 1
    if settings.crl_grace_hours > 0 and not args.demo:
        # Logins go on with CRLs past their nextUpdate: whoever starts the kiosk is told.
        print(f"注意：憑證廢止清冊逾期寬限 {settings.crl_grace_hours} 小時", file=sys.stderr)
    hold_collector()  # until the app has booted: see smis_tui.boot
    prepare_textual()
    from smis_tui.app import SmisApp
    from smis_tui.boot import boot

    app = SmisApp(
        settings=settings,
        boot=lambda: boot(settings, demo=args.demo),
        kiosk=args.kiosk,
        started_at=started,
        demo=args.demo,
    )
    from smis_tui.crash import run_logging_crashes

    return run_logging_crashes(app, settings.language)


class _Parser(argparse.ArgumentParser):
    """argparse quotes unrecognised arguments as typed: their control characters
    (escape sequences, bidi overrides) must not reach the terminal, and a pasted
    screenful is shortened (tests/integration/test_abuse_cli.py). Sub-command parsers
    are of this class too."""

    def error(self, message: str) -> NoReturn:
        super().error(cli_units.one_line(message))


# What every command's exit code means (a command may add its own: `--help` of
# `card inspect`, `crl refresh` and `ssh-session` lists them). The README has the same
# table (tests/integration/test_cli.py checks).
EXIT_CODE_LINES = (
    "0    成功",
    "1    設定、金鑰、資料庫或檔案有誤（stderr 一行說明原因）",
    "2    指令用法錯誤，或操作被拒絕（例如在非示範資料庫執行 demo init）",
    "3    軌跡紀錄驗證失敗（audit verify、maintenance、db restore、db copy）；crl refresh：下載失敗",
    "4    crl refresh：仍有 CA 沒有有效的廢止清冊",
    "130  被 Ctrl+C 中斷",
    "141  輸出的讀取端已關閉（例如 | head）",
)


def program_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("smis-tui")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = _Parser(
        prog="smis-tui",
        description="智慧防疫物資管理資訊系統 帳號申請 kiosk",
        epilog="結束代碼：\n" + "\n".join(f"  {line}" for line in EXIT_CODE_LINES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"smis-tui {program_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(
        subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        handler: Callable[[Settings, argparse.Namespace], int],
        help_text: str,
    ) -> argparse.ArgumentParser:
        command = subparsers.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(handler=handler)
        return command

    run = add(sub, "run", cmd_run, "開啟 kiosk")
    run.add_argument("--kiosk", action="store_true", help="公用櫃台模式")
    run.add_argument("--demo", action="store_true", help="使用示範卡片（smis-tui demo init）")

    demo = sub.add_parser("demo", help="示範資料").add_subparsers(
        dest="demo_command", required=True
    )
    add(demo, "init", cmd_demo_init, "建立示範帳號與示範卡片（可重複執行）")

    db = sub.add_parser("db", help="資料庫管理").add_subparsers(dest="db_command", required=True)
    init = add(db, "init", cmd_db_init, "建立資料庫結構、類別、預設單位與加密金鑰")
    init.add_argument("--units", type=int, default=5165, help=argparse.SUPPRESS)
    init.add_argument(
        "--demo",
        action="store_true",
        help="建立示範資料庫（只有示範資料庫可寫入示範帳號與卡片）",
    )
    add(db, "upgrade", cmd_db_upgrade, "升級資料庫結構")
    add(db, "version", cmd_db_version, "顯示資料庫結構版本")
    cli_db.register(db)

    audit = sub.add_parser("audit", help="軌跡紀錄").add_subparsers(
        dest="audit_command", required=True
    )
    add(audit, "verify", cmd_audit_verify, "驗證軌跡紀錄雜湊鏈")

    add(
        sub,
        "maintenance",
        cmd_maintenance,
        "停用超過期限未登入的帳號與合約已終止的單位，並處理已截止的權限檢閱（可重複執行）",
    )

    config = sub.add_parser("config", help="設定").add_subparsers(
        dest="config_command", required=True
    )
    add(config, "check", cmd_config_check, "檢查設定檔並顯示生效的設定（不顯示密碼）")

    admin = sub.add_parser("admin", help="系統管理").add_subparsers(
        dest="admin_command", required=True
    )
    boot = add(admin, "bootstrap", cmd_admin_bootstrap, "建立第一位疾管署管理者並綁定憑證")
    boot.add_argument("--cert", type=_path, required=True, help="管理者卡片憑證檔（PEM 或 DER）")
    boot.add_argument("--person-id", required=True, help="管理者身分證號")
    boot.add_argument("--name", default="", help="姓名（預設為憑證 CN）")
    boot.add_argument("--phone", required=True, help="主要連絡電話，例如 02-23959825#1234")
    boot.add_argument("--email", required=True, help="主要電子信箱")

    cli_units.register(sub, _open_checked)
    cli_card.register(sub)
    cli_crl.register(sub)
    cli_key.register(sub, _open_checked)
    cli_agent.register(sub)
    cli_ssh.register(sub)
    return parser


def _path(text: str) -> object:
    from pathlib import Path

    return Path(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unrecognised = parser.parse_known_args(argv)
    if unrecognised:
        if getattr(args, "takes_dash_query", False) and not args.query and len(unrecognised) == 1:
            args.query = unrecognised[0]
        else:
            parser.error(f"unrecognized arguments: {' '.join(unrecognised)}")
    if getattr(args, "handler", None) is None:
        args = parser.parse_args(["run", *(argv or [])])
    try:
        if getattr(args, "config", None):
            os.environ["SMIS_CONFIG"] = args.config
        if getattr(args, "run_as", None):
            # The staff member's half of a session run as the service account: it
            # may not read the configuration, and needs none (smis_tui.cli.ssh).
            return int(args.handler(None, args))
        settings = load_settings()
        from smis_tui.core.logs import setup_logging

        setup_logging(settings.data_dir)
        return int(args.handler(settings, args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of our output (e.g. `| head`) went away; that is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in KIOSK_PACKAGES:
            raise
        # The staff computer's install has only what the card agent needs.
        print(
            f"smis-tui：此指令需要 kiosk 元件（缺少 {exc.name}），"
            "請安裝：pip install 'smis-tui[kiosk]'",
            file=sys.stderr,
        )
        return 1
    except Exception as exc:
        try:
            known = operator_errors()
        except ModuleNotFoundError:
            raise exc from None
        if not isinstance(exc, known):
            from models.db import database_failure, is_transient

            # The server gone in the middle of a command (after it opened the
            # database, e.g. behind PgBouncer): one line like any other unreachable
            # database, the driver's words in the log. Any other database error (a
            # schema or SQL fault) keeps its traceback.
            failure = database_failure(exc) if is_transient(exc) else None
            if failure is None:
                log.exception("smis-tui %s ended with an unexpected error", args.command)
                raise
            log.warning("smis-tui %s: database failure: %s", args.command, exc)
            exc = failure
        # Errors an operator can act on: one line on stderr, no traceback.
        # The message may quote a path or a value as typed: no control characters.
        print(f"smis-tui: {cli_units.one_line(str(exc))}", file=sys.stderr)
        return 1
    finally:
        if "models.db" in sys.modules:
            sys.modules["models.db"].close_database()
