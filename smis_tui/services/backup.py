"""Backups of the database, their restore, and the copy of a SQLite database to
PostgreSQL (docs/backup.md). No Textual: the operator's `smis-tui db …` commands.

A backup is one file and a manifest beside it (``<file>.json``): the schema version,
every table's row count in the snapshot the backup was taken from, the SHA-256 and
size of the file, and the data key's check value. The key itself is never in a
backup: without the key file the person IDs in it cannot be read, and the audit
chain's head cannot be checked. Each command checks what it wrote: the backup's rows
against the source's snapshot, the restored or copied rows against the manifest or
the source, and the audit chain with `audit verify`'s own check.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import glob
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import peewee
from psycopg2.extensions import parse_dsn
from psycopg2.extras import execute_values

from models.db import (
    _describe,
    close_database,
    database_proxy,
    make_database,
    open_database,
)
from models.migrate import SCHEMA_VERSION, SCHEMA_VERSION_KEY, check_schema, upgrade
from models.schema import ALL_MODELS
from models.unit_search import refresh_statistics
from smis_tui.core.chars import strip_hidden
from smis_tui.core.config import Settings
from smis_tui.services.audit import AuditLog, VerifyResult
from smis_tui.services.audit_anchor import AuditAnchor
from smis_tui.services.crypto import KeyFileError, KeyRing, fsync_directory
from smis_tui.services.registry import KEY_CHECK

MANIFEST_FORMAT = "smis-tui-backup-v1"
SQLITE = "sqlite"
POSTGRESQL = "postgresql"
TABLES = tuple(model._meta.table_name for model in ALL_MODELS)
# What `db upgrade` itself writes into a new database: a database holding nothing else
# has no data anyone entered or imported, and may be written over without --force.
SCHEMA_ONLY_TABLES = frozenset({"meta", "category", "category_option"})
TABLE_NAMES = {
    "meta": "系統資訊",
    "category": "物資類別",
    "category_option": "類別子項",
    "unit": "單位",
    "unit_gram": "單位查詢索引",
    "unit_gram_count": "單位查詢統計",
    "unit_category": "單位類別",
    "account": "帳號",
    "permission_request": "權限申請",
    "card_binding": "卡片綁定",
    "consent_record": "個資同意紀錄",
    "audit_event": "軌跡紀錄",
    "access_review": "權限檢閱",
    "access_review_item": "權限檢閱項目",
}
COPY_BATCH_ROWS = 1000
# A file read in pieces of this size for its SHA-256.
_HASH_CHUNK = 1 << 20


class BackupError(RuntimeError):
    """A backup, restore or copy that cannot go on; the message is one line for the
    operator. ``exit_code`` follows the CLI's table (1: a database or file error)."""

    exit_code = 1


class BackupRefused(BackupError):
    """Refused to protect data (an existing file, a database that holds data)."""

    exit_code = 2


@dataclass(frozen=True)
class Manifest:
    source: str
    schema_version: int
    tables: dict[str, int]
    key_check: str | None
    key_file: str
    created_at: str
    size: int
    sha256: str
    format: str = MANIFEST_FORMAT

    @property
    def key_id(self) -> str:
        """The key's id as the audit anchor names it: its check value's first 8 bytes."""
        return (self.key_check or "")[:16]

    @property
    def rows(self) -> int:
        return sum(self.tables.values())


@dataclass(frozen=True)
class BackupResult:
    file: Path
    manifest_file: Path
    manifest: Manifest
    key_file: Path
    key_matches: bool
    """Whether the configured key file is the one the database was written with."""


@dataclass(frozen=True)
class RestorePlan:
    settings: Settings
    file: Path
    manifest: Manifest
    keys: KeyRing
    target: str
    """The database to be written, for messages (no password)."""
    replaced: dict[str, int]
    """The target's rows that the restore replaces (nothing when it holds no data)."""


@dataclass(frozen=True)
class Verified:
    """What a restore or a copy found afterwards."""

    tables: dict[str, int]
    audit: VerifyResult


def manifest_path(file: Path) -> Path:
    return file.with_name(f"{file.name}.json")


def database_kind(url: str | None) -> str:
    return POSTGRESQL if url and urlsplit(url).scheme in ("postgres", "postgresql") else SQLITE


def sqlite_file(settings: Settings) -> Path:
    """The SQLite file the settings name: the data directory's, or a sqlite:/// URL's."""
    url = settings.database_url
    if url and urlsplit(url).scheme == "sqlite":
        return Path(urlsplit(url).path)
    return settings.sqlite_path


def describe_target(settings: Settings) -> str:
    url = settings.database_url
    return (
        _describe(url) if database_kind(url) == POSTGRESQL and url else str(sqlite_file(settings))
    )


def holds_data(counts: dict[str, int]) -> bool:
    return any(rows for table, rows in counts.items() if table not in SCHEMA_ONLY_TABLES)


def counts_line(counts: dict[str, int]) -> str:
    """``帳號 3、軌跡紀錄 12、…``: the tables in schema order, named for people."""
    return "、".join(f"{TABLE_NAMES.get(table, table)} {rows}" for table, rows in counts.items())


def _clean(text: str) -> str:
    return strip_hidden(text, keep_newlines=False)


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


# --------------------------------------------------------------------- PostgreSQL tools


def pg_tool(name: str) -> str:
    """``pg_dump`` or ``pg_restore``: the newest installed server version's (a dump
    must be made by a pg_dump at least as new as the server), else the one on PATH."""

    def version(path: str) -> tuple[int, ...]:
        number = Path(path).parts[-3]
        return tuple(int(part) for part in number.split(".") if part.isdigit())

    installed = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=version)
    found = installed[-1] if installed else shutil.which(name)
    if not found:
        raise BackupError(f"找不到 {name}：請安裝 PostgreSQL 用戶端程式（postgresql-client）")
    return found


def _conninfo_value(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def pg_command(tool: str, url: str, *args: str) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that run ``tool`` against ``url``. The URL is
    read by libpq's own parser, as models.db reads it; the password goes to the
    program in PGPASSWORD, never on its command line, which every user of the machine
    can read (ps, /proc)."""
    params = parse_dsn(url)
    password = params.pop("password", None)
    conninfo = " ".join(f"{key}={_conninfo_value(str(value))}" for key, value in params.items())
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = str(password)
    return [pg_tool(tool), f"--dbname={conninfo}", *args], env


def _run(argv: list[str], env: dict[str, str] | None = None) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        detail = "；".join(lines[:3]) if lines else f"結束代碼 {done.returncode}"
        raise BackupError(f"{Path(argv[0]).name} 失敗：{_clean(detail)}")


def dump_contents(file: Path) -> tuple[dict[str, int], str | None]:
    """Every table's row count in a pg_dump custom-format file, and the key check
    value its ``meta`` table holds, read back through pg_restore (its table of
    contents, then every row of data)."""
    _run([pg_tool("pg_restore"), "--list", str(file)])
    counts: dict[str, int] = {}
    key_check: str | None = None
    argv = [pg_tool("pg_restore"), "--data-only", "--file=-", str(file)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout is not None
        table: str | None = None
        # COPY's text format writes one row per line (a newline in a value is \n) and
        # separates the columns with tabs.
        for line in process.stdout:
            if table is None:
                if line.startswith(b"COPY ") and line.rstrip().endswith(b"FROM stdin;"):
                    name = line[5:].split(b" ", 1)[0].decode("utf-8")
                    table = name.rpartition(".")[2].strip('"')
                    counts[table] = 0
            elif line == b"\\.\n":
                table = None
            else:
                counts[table] += 1
                if table == "meta":
                    key, _, value = line.rstrip(b"\n").decode("utf-8").partition("\t")
                    if key == KEY_CHECK:
                        key_check = value
        error = process.stderr.read().decode("utf-8", "replace") if process.stderr else ""
    if process.returncode != 0:
        raise BackupError(f"pg_restore 無法讀取備份檔 {file}：{_clean(error.strip())}")
    return {name: counts.get(name, 0) for name in TABLES if name in counts}, key_check


# ------------------------------------------------------------------- what a database holds


Rows = Callable[..., list[Any]]


def _facts(db: peewee.Database) -> tuple[dict[str, int], int, str | None]:
    """Row counts of the schema's tables that exist, the schema version and the key's
    check value, read in the caller's transaction (one snapshot)."""
    return _read_facts(
        lambda sql, *params: list(db.execute_sql(sql, params or None).fetchall()),
        set(db.get_tables()),
        db.param,
    )


def _read_facts(
    rows: Rows, existing: set[str], param: str
) -> tuple[dict[str, int], int, str | None]:
    counts = {
        table: int(rows(f'SELECT COUNT(*) FROM "{table}"')[0][0])  # noqa: S608 - schema names
        for table in TABLES
        if table in existing
    }
    meta: dict[str, str] = {}
    if "meta" in existing:
        sql = f'SELECT "key", "value" FROM "meta" WHERE "key" IN ({param}, {param})'  # noqa: S608
        meta = dict(rows(sql, SCHEMA_VERSION_KEY, KEY_CHECK))
    return counts, int(meta.get(SCHEMA_VERSION_KEY, 0)), meta.get(KEY_CHECK)


def _sqlite_connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    """A connection to an existing file (never creating one)."""
    mode = "ro" if read_only else "rw"
    try:
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode={mode}", uri=True, timeout=10, isolation_level=None
        )
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        raise BackupError(f"無法開啟 SQLite 資料庫 {path}：{exc}") from None
    return conn


def _sqlite_facts(conn: sqlite3.Connection) -> tuple[dict[str, int], int, str | None]:
    existing = {
        row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    return _read_facts(lambda sql, *params: conn.execute(sql, params).fetchall(), existing, "?")


def _target_counts(settings: Settings) -> dict[str, int]:
    """The rows the configured database holds now (nothing when it does not exist)."""
    if database_kind(settings.database_url) == SQLITE:
        path = sqlite_file(settings)
        if not path.exists() or path.stat().st_size == 0:
            return {}
        conn = _sqlite_connect(path)
        try:
            return _sqlite_facts(conn)[0]
        finally:
            conn.close()
    db = _connected(settings.database_url or "")
    try:
        return _facts(db)[0]
    finally:
        db.close()


def _connected(url: str) -> peewee.Database:
    db = make_database(url, Path("/nonexistent"))
    db.connect()
    return db


# ------------------------------------------------------------------------------ backup


@dataclass
class _Snapshot:
    counts: dict[str, int]
    version: int
    key_check: str | None


def backup_database(settings: Settings, file: Path, *, force: bool = False) -> BackupResult:
    """Write a backup of the configured database to ``file`` and its manifest beside it;
    both appear whole or not at all."""
    if file.name in ("", ".", "..") or file.is_dir():
        raise BackupRefused(f"{file} 是目錄：請指定備份檔的檔名")
    manifest_file = manifest_path(file)
    for existing in (file, manifest_file):
        if existing.exists() and not force:
            raise _already_there(existing)
    if not file.parent.is_dir():
        raise BackupError(f"備份目錄 {file.parent} 不存在")
    kind = database_kind(settings.database_url)
    with _partial(file) as partial:
        if kind == SQLITE:
            snapshot = _sqlite_backup(sqlite_file(settings), partial)
            copied, _ = _sqlite_contents(partial)
        else:
            snapshot = _postgres_backup(settings.database_url or "", partial)
            copied, _ = dump_contents(partial)
        if snapshot.version == 0:
            raise BackupError("資料庫尚未初始化（沒有結構版本）：沒有可備份的資料")
        if copied != snapshot.counts:
            raise BackupError(
                f"備份檔驗證失敗：筆數與來源不符（來源 {counts_line(snapshot.counts)}；"
                f"備份 {counts_line(copied)}）"
            )
        size, digest = _fsync_and_hash(partial)
        manifest = Manifest(
            source=kind,
            schema_version=snapshot.version,
            tables=snapshot.counts,
            key_check=snapshot.key_check,
            key_file=str(settings.resolved_key_file),
            created_at=_utc_now(),
            size=size,
            sha256=digest,
        )
        with _partial(manifest_file) as manifest_partial:
            manifest_partial.write_text(
                json.dumps(asdict(manifest), ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
            )
            _fsync_and_hash(manifest_partial)
            _place(partial, file, force=force)
            _place(manifest_partial, manifest_file, force=force)
    fsync_directory(file.parent)
    return BackupResult(
        file=file,
        manifest_file=manifest_file,
        manifest=manifest,
        key_file=settings.resolved_key_file,
        key_matches=_key_matches(settings.resolved_key_file, snapshot.key_check),
    )


@contextlib.contextmanager
def _partial(final: Path) -> Iterator[Path]:
    """A private (0600) file beside ``final`` to write into and rename over it: a
    crash or an error never leaves a half-written file under the final name. Removed
    unless it was renamed."""
    fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".partial")
    os.close(fd)
    partial = Path(name)
    try:
        yield partial
    finally:
        partial.unlink(missing_ok=True)


def _already_there(path: Path) -> BackupRefused:
    return BackupRefused(f"{path} 已存在：不覆寫既有的備份；確定要覆寫請加 --force")


def _place(partial: Path, final: Path, *, force: bool) -> None:
    """``partial`` under its final name. Without ``force`` a hard link, which fails
    rather than replace a file that appeared since the check (another backup run); on
    a file system without hard links (FAT on a USB disk), a check and a rename."""
    if not force:
        try:
            os.link(partial, final)
        except FileExistsError:
            raise _already_there(final) from None
        except OSError:
            if final.exists():
                raise _already_there(final) from None
        else:
            partial.unlink()
            return
    partial.replace(final)


def _fsync_and_hash(path: Path) -> tuple[int, str]:
    """Its content on disk before it is renamed into place; its size and SHA-256."""
    with path.open("rb") as handle:
        os.fsync(handle.fileno())
    return _hash(path)


def _hash(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _key_matches(key_file: Path, key_check: str | None) -> bool:
    try:
        return key_check is not None and KeyRing.read(key_file).check_value == key_check
    except KeyFileError:
        return False


def _sqlite_backup(source: Path, partial: Path) -> _Snapshot:
    """SQLite's online backup (sqlite3_backup_*), taken inside a read transaction of
    the source: the counts and the copy are the same snapshot while kiosks go on
    writing (WAL readers are not blocked, and do not block)."""
    if not source.exists():
        raise BackupError(f"找不到資料庫 {source}")
    conn = _sqlite_connect(source)
    try:
        conn.execute("BEGIN")
        counts, version, key_check = _sqlite_facts(conn)
        copy = sqlite3.connect(partial, isolation_level=None)
        try:
            conn.backup(copy)
            # One self-contained file: no -wal beside it, readable read-only.
            copy.execute("PRAGMA journal_mode=DELETE").fetchone()
        finally:
            copy.close()
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise BackupError(f"備份 SQLite 資料庫 {source} 失敗：{exc}") from None
    finally:
        conn.close()
    return _Snapshot(counts, version, key_check)


def _sqlite_contents(file: Path) -> tuple[dict[str, int], str | None]:
    """The row counts of a SQLite backup and the key check value it holds, opened
    read-only after its integrity check."""
    conn = _sqlite_connect(file, read_only=True)
    try:
        problem = conn.execute("PRAGMA quick_check").fetchone()[0]
        if problem != "ok":
            raise BackupError(f"備份檔 {file} 已損毀：{_clean(str(problem))}")
        counts, _, key_check = _sqlite_facts(conn)
        return counts, key_check
    except sqlite3.Error as exc:
        raise BackupError(f"備份檔 {file} 無法讀取：{exc}") from None
    finally:
        conn.close()


def _postgres_backup(url: str, partial: Path) -> _Snapshot:
    """pg_dump's custom format of the snapshot this transaction exports: the counts
    read here and the rows pg_dump writes are the same, whatever commits meanwhile."""
    db = _connected(url)
    try:
        with db.atomic():
            db.execute_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            snapshot = str(db.execute_sql("SELECT pg_export_snapshot()").fetchone()[0])
            counts, version, key_check = _facts(db)
            argv, env = pg_command(
                "pg_dump", url, "--format=custom", f"--snapshot={snapshot}", f"--file={partial}"
            )
            _run(argv, env)
    finally:
        db.close()
    return _Snapshot(counts, version, key_check)


# ----------------------------------------------------------------------------- restore


def read_manifest(file: Path) -> Manifest:
    if not file.is_file():
        raise BackupError(f"找不到備份檔 {file}")
    path = manifest_path(file)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupError(f"找不到備份清單 {path}（備份時與備份檔一同寫出）") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BackupError(f"備份清單 {path} 無法讀取：{_clean(str(exc))}") from None
    try:
        if data.get("format") != MANIFEST_FORMAT:
            raise ValueError(data.get("format"))
        return Manifest(
            source=str(data["source"]),
            schema_version=int(data["schema_version"]),
            tables={str(k): int(v) for k, v in dict(data["tables"]).items()},
            key_check=None if data["key_check"] is None else str(data["key_check"]),
            key_file=str(data["key_file"]),
            created_at=str(data["created_at"]),
            size=int(data["size"]),
            sha256=str(data["sha256"]),
        )
    except (AttributeError, KeyError, TypeError, ValueError):
        raise BackupError(f"備份清單 {path} 格式不符") from None


def plan_restore(settings: Settings, file: Path, *, force: bool = False) -> RestorePlan:
    """Every check that comes before writing: the manifest, the backup file against
    it, the key, the kind of database, and whether the target holds data."""
    manifest = read_manifest(file)
    kind = database_kind(settings.database_url)
    if manifest.source != kind:
        if manifest.source == SQLITE:
            raise BackupRefused(
                "這是 SQLite 資料庫的備份，目前設定的是 PostgreSQL：請先還原到 SQLite，"
                "再以 smis-tui db copy --to 複製到 PostgreSQL"
            )
        raise BackupRefused(
            "這是 PostgreSQL 資料庫的備份：請以 DATABASE_URL 指定要還原到的 PostgreSQL 資料庫"
        )
    if manifest.schema_version > SCHEMA_VERSION:
        raise BackupRefused(
            f"備份的資料庫結構版本 {manifest.schema_version} 比本程式支援的版本 "
            f"{SCHEMA_VERSION} 新，請更新 smis-tui"
        )
    key_file = settings.resolved_key_file
    keys = KeyRing.from_file(key_file)
    if manifest.key_check is not None and keys.check_value != manifest.key_check:
        raise KeyFileError(
            f"備份需要建立它時的資料加密金鑰檔（當時為 {manifest.key_file}，指紋 "
            f"{manifest.key_id}）；目前的金鑰檔 {key_file} 指紋 {keys.key_id.hex()} 不符："
            "請以 SMIS_KEY_FILE 指定正確的金鑰檔"
        )
    check_backup_file(file, manifest)
    current = _target_counts(settings)
    target = describe_target(settings)
    if holds_data(current) and not force:
        raise BackupRefused(
            f"資料庫 {target} 已有資料（{counts_line(current)}）：還原會取代全部資料；"
            "確定要取代請加 --force"
        )
    return RestorePlan(
        settings=settings,
        file=file,
        manifest=manifest,
        keys=keys,
        target=target,
        replaced=current if holds_data(current) else {},
    )


def check_backup_file(file: Path, manifest: Manifest) -> None:
    """The file is the one the manifest describes, and its rows are all there."""
    size, digest = _hash(file)
    if (size, digest) != (manifest.size, manifest.sha256):
        raise BackupError(f"備份檔 {file} 與其備份清單不符（大小或 SHA-256）：檔案已損毀或遭修改")
    read = _sqlite_contents if manifest.source == SQLITE else dump_contents
    found, key_check = read(file)
    if found != manifest.tables:
        raise BackupError(
            f"備份檔 {file} 的筆數與備份清單不符（清單 {counts_line(manifest.tables)}；"
            f"檔案 {counts_line(found)}）"
        )
    # The manifest's key is what the restore was checked against: the file's own must
    # be the same, or the key check was made against an edited manifest.
    if key_check != manifest.key_check:
        raise BackupError(f"備份檔 {file} 記錄的金鑰與其備份清單不符：清單遭修改")


def restore(plan: RestorePlan) -> Verified:
    """Write the backup over the configured database, then check the rows against the
    manifest and the audit chain (with this machine's checkpoints and the key)."""
    settings = plan.settings
    close_database()
    if plan.manifest.source == SQLITE:
        _sqlite_restore(plan.file, sqlite_file(settings))
    else:
        url = settings.database_url or ""
        argv, env = pg_command(
            "pg_restore",
            url,
            "--clean",
            "--if-exists",
            "--no-owner",
            "--single-transaction",
            "--exit-on-error",
            str(plan.file),
        )
        _run(argv, env)
    counts = _target_counts(settings)
    if counts != plan.manifest.tables:
        raise BackupError(
            f"還原後的筆數與備份清單不符（清單 {counts_line(plan.manifest.tables)}；"
            f"資料庫 {counts_line(counts)}）"
        )
    open_database(settings.database_url, settings.sqlite_path)
    return Verified(counts, _audit(plan.keys, settings).verify())


def _sqlite_restore(backup: Path, target: Path) -> None:
    """SQLite's backup API from the backup file into the configured one: the whole
    database is replaced in one write transaction of the target, so a kiosk still
    connected sees the old rows or the new ones, never a mix, and no -wal of the old
    file is ever applied to the new one (as it could be after a rename)."""
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    source = _sqlite_connect(backup, read_only=True)
    try:
        dest = _sqlite_connect(target)
        try:
            source.backup(dest)
        finally:
            dest.close()
    except sqlite3.Error as exc:
        raise BackupError(f"還原到 {target} 失敗：{exc}") from None
    finally:
        source.close()


def _audit(keys: KeyRing, settings: Settings) -> AuditLog:
    key_file = settings.resolved_key_file
    return AuditLog(AuditAnchor.for_key_file(keys, key_file, settings.data_dir))


# -------------------------------------------------------------------------------- copy


@dataclass(frozen=True)
class CopyPlan:
    settings: Settings
    url: str
    target: str
    keys: KeyRing


def plan_copy(settings: Settings, url: str) -> CopyPlan:
    """Checks before a copy: SQLite to PostgreSQL, the key is this database's, the
    source's schema is current, and the target holds no data."""
    if database_kind(settings.database_url) != SQLITE:
        raise BackupRefused("db copy 只從 SQLite 資料庫複製：目前設定的資料庫已是 PostgreSQL")
    if database_kind(url) != POSTGRESQL:
        raise BackupRefused("db copy --to 需要 PostgreSQL 的 URL（postgresql://…）")
    target = _describe(url)
    keys = KeyRing.from_file(settings.resolved_key_file)
    open_database(settings.database_url, settings.sqlite_path)
    check_schema()
    _, _, key_check = _facts(database_proxy.obj)
    if key_check is not None and key_check != keys.check_value:
        raise KeyFileError(
            "資料加密金鑰與資料庫不符：請確認 SMIS_KEY_FILE 指向此資料庫建立時的金鑰檔。"
        )
    close_database()
    db = _connected(url)
    try:
        current = _facts(db)[0]
    finally:
        db.close()
    if holds_data(current):
        raise BackupRefused(
            f"目標資料庫 {target} 已有資料（{counts_line(current)}）：db copy 只寫入空的資料庫"
        )
    return CopyPlan(settings=settings, url=url, target=target, keys=keys)


def copy_to_postgres(plan: CopyPlan) -> tuple[dict[str, int], Verified]:
    """The schema made on the target by the project's own migrations, then every row
    copied in one transaction; the source's row counts and what the target holds
    afterwards. The source is read in one transaction too: one snapshot, while kiosks
    may go on writing."""
    settings = plan.settings
    source = make_database(settings.database_url, settings.sqlite_path)
    target = make_database(plan.url, Path("/nonexistent"))
    try:
        source.connect()
        database_proxy.initialize(target)
        upgrade()
        with source.atomic(), target.atomic():
            counts = _facts(source)[0]
            # upgrade() seeded the reference data: the source's rows replace it.
            for model in reversed(ALL_MODELS):
                target.execute_sql(f'DELETE FROM "{model._meta.table_name}"')  # noqa: S608
            for model in ALL_MODELS:
                _copy_table(model, source, target)
            _continue_sequences(target)
        refresh_statistics()
        found = _facts(target)[0]
        if found != counts:
            raise BackupError(
                f"複製後的筆數不符（來源 {counts_line(counts)}；目標 {counts_line(found)}）"
            )
        return counts, Verified(found, _audit(plan.keys, settings).verify())
    finally:
        if not source.is_closed():
            source.close()


def _copy_table(model: Any, source: peewee.Database, target: peewee.Database) -> None:
    fields = list(model._meta.sorted_fields)
    columns = [field.column_name for field in fields]
    names = ", ".join(f'"{column}"' for column in columns)
    table = model._meta.table_name
    order = ", ".join(f'"{column}"' for column in columns)
    cursor = source.execute_sql(f'SELECT {names} FROM "{table}" ORDER BY {order}')  # noqa: S608
    insert = f'INSERT INTO "{table}" ({names}) VALUES %s'  # noqa: S608
    with target.cursor() as out:
        for batch in _batches(model, fields, cursor):
            execute_values(out, insert, batch, page_size=COPY_BATCH_ROWS)


def _batches(
    model: Any, fields: list[peewee.Field], cursor: Any
) -> Iterator[list[tuple[object, ...]]]:
    """The rows in batches, each value as the field reads it; a table that refers to
    itself (a unit's superior unit) parents first, since its foreign key is checked
    row by row."""

    def converted(rows: list[Any]) -> list[tuple[object, ...]]:
        return [tuple(_value(f, raw) for f, raw in zip(fields, row, strict=True)) for row in rows]

    if _self_reference(model, fields) is not None:
        rows = _parents_first(model, fields, converted(cursor.fetchall()))
        for start in range(0, len(rows), COPY_BATCH_ROWS):
            yield rows[start : start + COPY_BATCH_ROWS]
        return
    while batch := cursor.fetchmany(COPY_BATCH_ROWS):
        yield converted(batch)


def _self_reference(model: Any, fields: list[peewee.Field]) -> int | None:
    for index, field in enumerate(fields):
        if isinstance(field, peewee.ForeignKeyField) and field.rel_model is model:
            return index
    return None


def _value(field: peewee.Field, raw: object) -> object:
    """A SQLite value as the field reads it (0/1 → bool, text → datetime), which
    psycopg2 then writes as PostgreSQL's own type."""
    value = field.python_value(raw)
    if isinstance(value, memoryview):
        return value.tobytes()
    return value


def _parents_first(
    model: Any, fields: list[peewee.Field], rows: list[tuple[object, ...]]
) -> list[tuple[object, ...]]:
    own = _self_reference(model, fields)
    if own is None:
        return rows
    key = fields.index(model._meta.primary_key)
    parent_of = {row[key]: row[own] for row in rows}

    def depth(row_id: object) -> int:
        seen = 0
        while (row_id := parent_of.get(row_id)) is not None and seen <= len(parent_of):
            seen += 1
        return seen

    return sorted(rows, key=lambda row: depth(row[key]))


def _continue_sequences(target: peewee.Database) -> None:
    """Every id sequence continues after the copied rows (max(id) + 1): the rows were
    written with their ids, which does not move a sequence."""
    for model in ALL_MODELS:
        primary = model._meta.primary_key
        if not isinstance(primary, peewee.AutoField):
            continue
        table, column = model._meta.table_name, primary.column_name
        target.execute_sql(
            f"SELECT setval(pg_get_serial_sequence(%s, %s), "  # noqa: S608 - schema names
            f'COALESCE((SELECT MAX("{column}") FROM "{table}"), 0) + 1, false)',
            (f'"{table}"', column),
        )
