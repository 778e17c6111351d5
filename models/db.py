"""Database choice and connection handling.

SQLite is the default (one file under the data directory, WAL, foreign keys on);
PostgreSQL is used when a ``postgres://`` / ``postgresql://`` URL is given.
Every model binds to :data:`database_proxy`, which :func:`open_database` fills in.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import peewee
from playhouse.db_url import connect as connect_url

database_proxy = peewee.DatabaseProxy()

T = TypeVar("T")

# Any writer waits this long for another kiosk's transaction before giving up.
SQLITE_BUSY_TIMEOUT_MS = 10_000
# Arbitrary constant naming the advisory lock that serialises audit-chain appends.
AUDIT_CHAIN_LOCK_KEY = 0x534D4953


class DatabaseUnavailable(RuntimeError):
    """The database cannot be opened; the message is one clear line for the user."""


class BaseModel(peewee.Model):
    class Meta:
        database = database_proxy
        legacy_table_names = False


def is_postgres(db: peewee.Database | None = None) -> bool:
    target = db if db is not None else database_proxy.obj
    return isinstance(target, peewee.PostgresqlDatabase)


def _describe(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def make_database(url: str | None, sqlite_path: Path) -> peewee.Database:
    """Build (but do not bind) the database named by ``url`` or the SQLite file."""
    if url:
        scheme = urlsplit(url).scheme
        if scheme not in ("postgres", "postgresql", "sqlite"):
            raise DatabaseUnavailable(
                f"DATABASE_URL 格式不支援（{scheme or '無'}）：請使用 postgresql://… 或 sqlite:///…"
            )
        try:
            if scheme == "sqlite":
                return _sqlite(Path(urlsplit(url).path))
            return connect_url(url, connect_timeout=5)
        except (ValueError, TypeError) as exc:
            raise DatabaseUnavailable(f"DATABASE_URL 無法解析：{exc}") from None
    return _sqlite(sqlite_path)


def _sqlite(path: Path) -> peewee.SqliteDatabase:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return peewee.SqliteDatabase(
        str(path),
        pragmas={
            "journal_mode": "wal",
            "foreign_keys": 1,
            "busy_timeout": SQLITE_BUSY_TIMEOUT_MS,
            "synchronous": "normal",
        },
        check_same_thread=False,
    )


def open_database(url: str | None, sqlite_path: Path) -> peewee.Database:
    """Bind the models to the chosen database and check that it answers."""
    db = make_database(url, sqlite_path)
    try:
        db.connect(reuse_if_open=True)
        db.execute_sql("SELECT 1")
    except (peewee.OperationalError, peewee.InterfaceError, sqlite3.Error) as exc:
        where = _describe(url) if url else str(sqlite_path)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(f"無法連線資料庫 {where}：{reason}") from None
    if isinstance(db, peewee.SqliteDatabase) and not url:
        with contextlib.suppress(OSError):
            sqlite_path.chmod(0o600)
    database_proxy.initialize(db)
    return db


def close_database() -> None:
    db = database_proxy.obj
    if db is not None and not db.is_closed():
        db.close()


@contextlib.contextmanager
def write_transaction() -> Iterator[None]:
    """One atomic write.

    SQLite takes the write lock up front (BEGIN IMMEDIATE) so a transaction that read
    first never fails at its first write with a stale snapshot; PostgreSQL serialises
    audit-chain appends with a transaction-scoped advisory lock.
    """
    db = database_proxy.obj
    if isinstance(db, peewee.SqliteDatabase) and not db.in_transaction():
        with db.atomic("IMMEDIATE"):
            yield
        return
    with db.atomic():
        if is_postgres(db):
            db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (AUDIT_CHAIN_LOCK_KEY,))
        yield


def _is_transient(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(
        marker in text
        for marker in (
            "database is locked",
            "could not serialize",
            "deadlock detected",
            "server closed the connection",
            "connection already closed",
            "terminating connection",
        )
    )


def retrying(fn: Callable[[], T], attempts: int = 5) -> T:
    """Run a whole write transaction again when the database reports a transient error."""
    delay = 0.05
    for attempt in range(attempts):
        try:
            return fn()
        except (peewee.OperationalError, peewee.InterfaceError) as exc:
            if attempt == attempts - 1 or not _is_transient(exc):
                raise
            db = database_proxy.obj
            if db is not None and is_postgres(db) and not db.in_transaction():
                db.close()
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def bulk_insert(
    table: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[object]],
    returning: str = "",
) -> list[tuple[object, ...]]:
    """One multi-row INSERT with bound parameters (peewee's insert_many spends most of
    its time building SQL for thousands of values). Table and column names are
    constants of this module; values are always parameters."""
    if not rows:
        return []
    db = database_proxy.obj
    placeholders = "(" + ", ".join([db.param] * len(columns)) + ")"
    names = ", ".join(f'"{c}"' for c in columns)
    sql = f'INSERT INTO "{table}" ({names}) VALUES ' + ", ".join([placeholders] * len(rows))  # noqa: S608
    if returning:
        sql += f" RETURNING {returning}"
    params = [value for row in rows for value in row]
    cursor = db.execute_sql(sql, params)
    return [tuple(r) for r in cursor.fetchall()] if returning else []
