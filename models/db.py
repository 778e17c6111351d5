"""Database choice and connection handling.

SQLite is the default (one file under the data directory, WAL, foreign keys on);
PostgreSQL is used when a ``postgres://`` / ``postgresql://`` URL is given.
Every model binds to :data:`database_proxy`, which :func:`open_database` fills in.
"""

from __future__ import annotations

import contextlib
import os
import select
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import peewee
from playhouse.db_url import parse as parse_url

database_proxy = peewee.DatabaseProxy()

T = TypeVar("T")

# Any writer waits this long for another kiosk's transaction before giving up.
SQLITE_BUSY_TIMEOUT_MS = 10_000
# Arbitrary constant naming the advisory lock that serialises audit-chain appends.
AUDIT_CHAIN_LOCK_KEY = 0x534D4953


class DatabaseUnavailable(RuntimeError):
    """The database cannot be opened; the message is one clear line for the user."""


def database_failure(exc: BaseException) -> DatabaseUnavailable | None:
    """The database itself failed under a running program (the server down or
    restarting, a read-only file or disk, a full disk): one clear line for the user,
    with the driver's detail kept on ``__cause__``. None for anything else (a
    constraint, a bug), which callers handle as before."""
    if isinstance(exc, DatabaseUnavailable):
        return exc
    if not isinstance(exc, peewee.OperationalError | peewee.InterfaceError | sqlite3.Error):
        return None
    text = str(exc).lower()
    if "readonly" in text or "read-only" in text or "read only" in text:
        failure = DatabaseUnavailable("資料庫為唯讀，無法寫入：請洽系統管理人員")
    elif "disk" in text and "full" in text:
        failure = DatabaseUnavailable("資料庫磁碟空間已滿，無法寫入：請洽系統管理人員")
    elif "database is locked" in text:
        failure = DatabaseUnavailable("資料庫忙碌中，請稍後再試")
    else:
        failure = DatabaseUnavailable("資料庫暫時無法連線，請稍後再試")
    failure.__cause__ = exc
    return failure


class _PostgresDatabase(peewee.PostgresqlDatabase):
    """PostgreSQL whose idle connections survive a server restart.

    peewee keeps one connection per thread, and the kiosk's worker threads are reused
    (Textual runs them in a thread pool): a connection the server dropped would fail
    every query of its thread for good. Outside a transaction, a connection that is
    closed, or whose socket is readable while idle (the server's goodbye and EOF after
    a restart; we never LISTEN), is replaced before use: one non-blocking select().
    Inside a transaction the error goes to the caller (``retrying`` runs the whole
    transaction again). A server that cannot be reached is DatabaseUnavailable.
    """

    def cursor(self, commit: object = None, named_cursor: object = None) -> object:
        conn = self._state.conn
        if conn is not None and not self._state.closed and not self.in_transaction():
            if _dropped(conn):
                self.close()
        return super().cursor(commit, named_cursor)

    def connect(self, reuse_if_open: bool = False) -> bool:
        try:
            return bool(super().connect(reuse_if_open))
        except peewee.OperationalError as exc:
            lines = str(exc).strip().splitlines()
            reason = lines[0] if lines else type(exc).__name__
            where = f"{self.connect_params.get('host', 'localhost')}/{self.database}"
            raise DatabaseUnavailable(f"無法連線資料庫 {where}：{reason}") from exc


def _dropped(conn: Any) -> bool:
    if getattr(conn, "closed", 0):
        return True
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError, TypeError):
        return True
    return bool(readable)


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


def server_execute(url: str, *statements: str) -> None:
    """Run ``statements`` on the PostgreSQL server of ``url``, connected to its
    ``postgres`` database outside a transaction (CREATE and DROP DATABASE need that):
    how tests and benchmarks make and drop their scratch databases."""
    parts = urlsplit(url)
    server = peewee.PostgresqlDatabase(
        "postgres", host=parts.hostname, port=parts.port, user=parts.username or "postgres"
    )
    server.connect()
    try:
        server.connection().autocommit = True
        for statement in statements:
            server.execute_sql(statement)
    finally:
        server.close()


def database_named(url: str, name: str) -> str:
    """``url`` naming the database ``name`` on the same server."""
    return url.rsplit("/", 1)[0] + "/" + name


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
            return _PostgresDatabase(**parse_url(url), connect_timeout=5)
        except (ValueError, TypeError) as exc:
            raise DatabaseUnavailable(f"DATABASE_URL 無法解析：{exc}") from None
    return _sqlite(sqlite_path)


def _sqlite(path: Path) -> peewee.SqliteDatabase:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Created private before SQLite opens it (its -wal and -shm files take the same
    # mode), whether named by the data directory or by a sqlite:/// DATABASE_URL.
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
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
    except (
        peewee.OperationalError,
        peewee.InterfaceError,
        sqlite3.Error,
        DatabaseUnavailable,
    ) as exc:
        where = _describe(url) if url else str(sqlite_path)
        cause = exc.__cause__ if isinstance(exc, DatabaseUnavailable) else exc
        text = str(cause or exc).strip()
        reason = text.splitlines()[0] if text else type(exc).__name__
        raise DatabaseUnavailable(f"無法連線資料庫 {where}：{reason}") from None
    if isinstance(db, peewee.SqliteDatabase):
        with contextlib.suppress(OSError):
            Path(db.database).chmod(0o600)
    database_proxy.initialize(db)
    return db


def worker_connection() -> contextlib.AbstractContextManager[object]:
    """The connection scope of one call on a worker thread: peewee keeps a connection
    per thread, opened here and closed at the end, so a reused thread never holds a
    connection a restarted server has dropped. Nothing to open before a database is."""
    db = database_proxy.obj
    if db is None:
        return contextlib.nullcontext()
    return db.connection_context()


def check_writable() -> None:
    """Refuse, at start, a SQLite database nobody can write (a read-only file,
    directory or disk): found before the first applicant's submit, not at it. The
    probe writes nothing (a DELETE of no row, rolled back)."""
    db = database_proxy.obj
    if not isinstance(db, peewee.SqliteDatabase):
        return
    try:
        with db.atomic("IMMEDIATE") as txn:
            db.execute_sql('DELETE FROM "meta" WHERE 0')
            txn.rollback()
    except (peewee.OperationalError, sqlite3.Error) as exc:
        failure = database_failure(exc)
        detail = str(failure) if failure is not None else str(exc)
        raise DatabaseUnavailable(f"資料庫 {db.database} 無法寫入（{detail}）") from exc


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
        except (peewee.OperationalError, peewee.InterfaceError, DatabaseUnavailable) as exc:
            # A server that went away mid-transaction may be back by the next attempt
            # (a restart): connecting again is part of the retry.
            reconnect = isinstance(exc, DatabaseUnavailable) and attempt > 0
            if attempt == attempts - 1 or not (reconnect or _is_transient(exc)):
                # Nothing was written (the transaction rolled back): one clear line.
                failure = database_failure(exc)
                if failure is None or failure is exc:
                    raise
                raise failure from exc
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
