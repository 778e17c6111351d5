"""Database choice and connection handling.

SQLite is the default (one file under the data directory, WAL, foreign keys on);
PostgreSQL is used when a ``postgres://`` / ``postgresql://`` URL is given.
Every model binds to :data:`database_proxy`, which :func:`open_database` fills in.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import peewee
from psycopg2 import ProgrammingError as DsnError
from psycopg2.extensions import parse_dsn

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
    text = str(exc).lower()
    # A server that became a standby (a failover) refuses writes as an internal error.
    read_only_server = isinstance(exc, peewee.InternalError) and "read-only" in text
    if not (
        isinstance(exc, peewee.OperationalError | peewee.InterfaceError | sqlite3.Error)
        or read_only_server
    ):
        return None
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
            # libpq writes one line per host it tried ("connection to server at …
            # failed: …", several with a multi-host URL) and indents its hints: every
            # host's reason, on one line. libpq never repeats the password.
            lines = [line.strip() for line in str(exc).splitlines() if line[:1].strip()]
            reason = "；".join(lines) if lines else type(exc).__name__
            where = f"{_servers(self.connect_params)}/{self.database}"
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
    """The URL without its user, password and options, for messages: every host (a
    multi-host URL names several) and the database."""
    scheme = url.partition("://")[0]
    if scheme not in ("postgres", "postgresql"):
        return f"{scheme}://{urlsplit(url).path}"
    try:
        params = parse_dsn(url)
    except DsnError:
        return f"{scheme}://…"
    return f"{scheme}://{_servers(params)}/{params.get('dbname', '')}"


def describe_database(url: str | None, sqlite_path: Path) -> str:
    """Which database ``url`` (or, without one, the SQLite file) names, for an operator:
    never the user name or the password."""
    return _describe(url) if url else f"SQLite {sqlite_path}"


def _servers(params: dict[str, Any]) -> str:
    """The ``host:port`` pairs libpq tries in turn, from its comma-separated ``host``
    (or ``hostaddr``) and ``port`` lists; one port applies to every host."""
    hosts = str(params.get("host") or params.get("hostaddr") or "localhost").split(",")
    ports = str(params.get("port") or "").split(",")
    if len(ports) == 1:
        ports *= len(hosts)
    return ",".join(
        f"{host or 'localhost'}:{port}" if port else host or "localhost"
        for host, port in itertools.zip_longest(hosts, ports, fillvalue="")
    )


def server_execute(url: str, *statements: str) -> None:
    """Run ``statements`` on the PostgreSQL server of ``url``, connected to its
    ``postgres`` database outside a transaction (CREATE and DROP DATABASE need that):
    how tests and benchmarks make and drop their scratch databases. A multi-host URL
    reaches the server libpq picks (with target_session_attrs=read-write, the primary)."""
    params = parse_dsn(url)
    params["dbname"] = "postgres"
    params.setdefault("user", "postgres")
    server = peewee.PostgresqlDatabase(params.pop("dbname"), **params)
    server.connect()
    try:
        server.connection().autocommit = True
        for statement in statements:
            server.execute_sql(statement)
    finally:
        server.close()


def database_named(url: str, name: str) -> str:
    """``url`` naming the database ``name`` on the same server(s), with the same
    options (``?target_session_attrs=…``)."""
    base, mark, query = url.partition("?")
    scheme, sep, rest = base.partition("://")
    authority = rest.partition("/")[0]
    return f"{scheme}{sep}{authority}/{name}{mark}{query}"


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
            # libpq's own parser (PQconninfoParse): several hosts
            # (postgresql://u@h1:p1,h2:p2/db), target_session_attrs, sslmode,
            # connect_timeout … mean what the libpq documentation says; the
            # parameters go to psycopg2.connect as they are.
            params = parse_dsn(url)
            params.setdefault("connect_timeout", "5")
            # libpq's default database is the user's name.
            name = params.pop("dbname", "") or params.get("user", "")
            if not name:
                raise ValueError("未指定資料庫名稱")
            return _PostgresDatabase(name, **params)
        except (ValueError, TypeError, DsnError) as exc:
            # libpq quotes the part it could not read, which may be the password.
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            userinfo = url.partition("://")[2].partition("/")[0].rpartition("@")[0]
            password = userinfo.partition(":")[2]
            if password:
                detail = detail.replace(password, "***")
            raise DatabaseUnavailable(f"DATABASE_URL 無法解析：{detail}") from None
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


class _WriteState(threading.local):
    """The write transaction this thread is in: how deep, and the work deferred to
    just before its commit (grouped by its flush function, in the order deferred)."""

    def __init__(self) -> None:
        self.depth = 0
        self.deferred: list[tuple[Callable[[list[Any]], None], Any]] = []


_write_state = _WriteState()


@contextlib.contextmanager
def write_transaction() -> Iterator[None]:
    """One atomic write.

    SQLite takes the write lock up front (BEGIN IMMEDIATE) so a transaction that read
    first never fails at its first write with a stale snapshot: one writer at a time,
    as the file allows. PostgreSQL runs writers in parallel (READ COMMITTED): a change
    locks the rows it is about (:func:`locked`), and whatever must be appended in
    commit order — the audit chain — is deferred with :func:`defer_until_commit` and
    written just before the commit, so its lock is held only for that append.
    """
    db = database_proxy.obj
    state = _write_state
    outermost = state.depth == 0
    if isinstance(db, peewee.SqliteDatabase) and not db.in_transaction():
        block: contextlib.AbstractContextManager[object] = db.atomic("IMMEDIATE")
    else:
        block = db.atomic()
    state.depth += 1
    try:
        with block:
            mark = len(state.deferred)
            try:
                yield
            except BaseException:
                # This block (a savepoint when nested) is rolled back: so is what it
                # deferred.
                del state.deferred[mark:]
                raise
            if outermost:
                _flush_deferred(state)
    finally:
        state.depth -= 1
        if outermost:
            state.deferred = []


def _flush_deferred(state: _WriteState) -> None:
    groups: dict[Callable[[list[Any]], None], list[Any]] = {}
    for flush, item in state.deferred:
        groups.setdefault(flush, []).append(item)
    state.deferred = []
    for flush, items in groups.items():
        flush(items)


def defer_until_commit(flush: Callable[[list[Any]], None], item: Any) -> bool:
    """Have ``flush`` write ``item`` (with the other items deferred to the same flush)
    just before the current write transaction commits; dropped if it rolls back.
    False when the caller is in no :func:`write_transaction` (it writes at once)."""
    if _write_state.depth == 0:
        return False
    _write_state.deferred.append((flush, item))
    return True


def locked(query: peewee.ModelSelect, share: bool = False) -> peewee.ModelSelect:
    """``query`` locking the rows it reads until the transaction ends (FOR UPDATE), on
    PostgreSQL inside a transaction: a change reads the row it is about this way
    first, so two changes of the same account run one after the other while changes
    of different accounts run in parallel. SQLite's write transactions are already
    one at a time. ``share``: FOR SHARE, for the acting account, so that it is not
    disabled or changed under a decision it is making, while it may act in parallel."""
    db = database_proxy.obj
    if is_postgres(db) and db.in_transaction():
        return query.for_update("FOR SHARE" if share else True)
    return query


def lock_chain() -> None:
    """Serialise appends to the audit chain until this transaction ends (PostgreSQL;
    a transaction-scoped advisory lock, so it holds through a transaction-pooling
    PgBouncer too)."""
    db = database_proxy.obj
    if is_postgres(db):
        db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (AUDIT_CHAIN_LOCK_KEY,))


def is_transient(exc: BaseException) -> bool:
    """A failure that running the same transaction again may not meet: a lock, a
    serialization conflict, the server restarting, failing over or unreachable."""
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
            # A failover (docs/failover.md): the old primary shutting down or gone
            # into recovery, or a connection left on a server that became a standby;
            # the next attempt connects again, to the new primary.
            "the database system is shutting down",
            "the database system is in recovery mode",
            "the database system is starting up",
            "in a read-only transaction",
            "session is read-only",
            # PgBouncer (docs/pgbouncer.md) waiting for, or failing to reach, the server.
            "query_wait_timeout",
            "pgbouncer cannot connect to server",
            "server login has been failing",
        )
    )


def _is_unique_violation(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "duplicate key value violates unique constraint" in text or (
        "unique constraint failed" in text
    )


def retrying(fn: Callable[[], T], attempts: int = 5) -> T:
    """Run a whole write transaction again when the database reports a transient error."""
    delay = 0.05
    for attempt in range(attempts):
        try:
            return fn()
        except peewee.IntegrityError as exc:
            # Two writers inserted the same unique value at once (PostgreSQL runs them
            # in parallel): the run again sees the other's row and answers as it would
            # have had they come one after the other ("already applied").
            if attempt == attempts - 1 or not _is_unique_violation(exc):
                raise
            time.sleep(delay)
            delay *= 2
        except (
            peewee.OperationalError,
            peewee.InterfaceError,
            peewee.InternalError,
            DatabaseUnavailable,
        ) as exc:
            # A server that went away mid-transaction may be back by the next attempt
            # (a restart): connecting again is part of the retry.
            reconnect = isinstance(exc, DatabaseUnavailable) and attempt > 0
            if attempt == attempts - 1 or not (reconnect or is_transient(exc)):
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
