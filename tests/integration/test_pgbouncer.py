"""The app behind PgBouncer in transaction pooling mode (docs/pgbouncer.md).

Many SSH sessions reach PostgreSQL through one PgBouncer whose ``pool_mode =
transaction`` hands each transaction whichever server connection is free: nothing the
app does may rest on session state (a session-level advisory lock, a prepared
statement, a ``SET`` outside a transaction, LISTEN, a temporary table, a WITH HOLD
cursor). scripts/test-services.sh starts that PgBouncer in front of the test
PostgreSQL; the scratch databases are made on the server directly and the app reaches
them through PgBouncer. Without it, under CI / `make test`, these tests fail.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from bench.load import run_postgres
from models.db import close_database, database_named, database_proxy, open_database
from models.schema import Account, AuditEvent, Unit
from smis_tui.core.config import Settings
from smis_tui.core.domain import AccountStatus
from smis_tui.services import Services, build_services
from tests.conftest import pgbouncer_url, postgres_admin_url, through_pgbouncer
from tests.helpers import card_proof, form, make_admin, new_person_id
from tests.integration.test_load import MAX_OPS, SECONDS, _assert_clean

# More kiosk sessions than the pool has server connections (default_pool_size = 20 in
# scripts/test-services.sh): their transactions must share the servers.
LOAD_SESSIONS = 24

# What holds state in a server session beyond the transaction: PgBouncer's feature
# table (https://www.pgbouncer.org/features.html) lists these as not working, or not
# safely, in transaction pooling.
SESSION_STATE = re.compile(
    # SET LOCAL and SET TRANSACTION last until the transaction ends: allowed.
    r"""^\s*(SET\s+(?!LOCAL\b|TRANSACTION\b)(SESSION\s+)?\w|RESET\b|DISCARD\b|LISTEN\b|UNLISTEN\b
         |PREPARE\b|DEALLOCATE\b|LOAD\b
         |CREATE\s+((GLOBAL|LOCAL)\s+)?(TEMP|TEMPORARY|UNLOGGED\s+TEMP)\b)
       |\bWITH\s+HOLD\b
       |\bpg_(try_)?advisory_lock(_shared)?\s*\(
       |\bset_config\s*\([^)]*\bfalse\s*\)""",
    re.IGNORECASE | re.VERBOSE,
)


def _db_name(url: str) -> str:
    return url.partition("?")[0].rsplit("/", 1)[1]


def _direct(url: str) -> Any:
    """A psycopg2 connection to ``url``'s database on the server itself."""
    conn = psycopg2.connect(database_named(postgres_admin_url(), _db_name(url)))
    conn.autocommit = True
    return conn


def _client(url: str) -> Any:
    """A client connection through PgBouncer, statements outside BEGIN committing at once
    (as the app's connections: peewee runs psycopg2 in autocommit)."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    return conn


def _one(conn: Any, sql: str) -> Any:
    with conn.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


def _console(command: str) -> list[dict[str, Any]]:
    """A SHOW command on PgBouncer's admin console (the database "pgbouncer")."""
    conn = _client(database_named(pgbouncer_url(), "pgbouncer"))
    try:
        with conn.cursor() as cursor:
            cursor.execute(command)
            names = [column.name for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        conn.close()


@pytest.fixture
def bouncer_settings(postgres_settings: Settings) -> Settings:
    """A fresh scratch database (made on the server), the app's URL through PgBouncer."""
    assert postgres_settings.database_url is not None
    url = through_pgbouncer(postgres_settings.database_url)
    assert url != database_named(postgres_admin_url(), _db_name(url))
    return postgres_settings.with_overrides(database_url=url)


@pytest.fixture
def services(bouncer_settings: Settings) -> Iterator[Services]:
    """The app's services on the PgBouncer URL (conftest's ``tree`` builds on these)."""
    open_database(bouncer_settings.database_url, bouncer_settings.sqlite_path)
    yield build_services(bouncer_settings)
    close_database()


class _RecordingCursor:
    """The driver's cursor, every statement it is given written down."""

    def __init__(self, cursor: Any, statements: list[str]) -> None:
        self._cursor = cursor
        self._statements = statements

    def execute(self, sql: str, params: object = None) -> Any:
        self._statements.append(sql)
        return self._cursor.execute(sql, params)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cursor)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


@pytest.fixture
def statements(services: Services, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every SQL statement the app sends from here on (BEGIN and COMMIT included)."""
    sent: list[str] = []
    db = database_proxy.obj
    original = db.cursor
    monkeypatch.setattr(db, "cursor", lambda *a, **k: _RecordingCursor(original(*a, **k), sent))
    return sent


# ------------------------------------------------------------ really through PgBouncer


def test_the_app_reaches_the_server_through_pgbouncer(
    services: Services, bouncer_settings: Settings
) -> None:
    url = bouncer_settings.database_url
    assert url is not None
    name = _db_name(url)
    db = database_proxy.obj
    # The app's connection ends at PgBouncer's port; the server behind it has its own.
    server_port = int(db.execute_sql("SELECT inet_server_port()").fetchone()[0])
    assert server_port != int(url.rsplit(":", 1)[1].split("/", 1)[0])
    assert server_port == int(postgres_admin_url().rsplit(":", 1)[1].split("/", 1)[0])
    # PgBouncer counts the app among its clients of that database, pooled per transaction.
    assert any(client["database"] == name for client in _console("SHOW CLIENTS"))
    pools = [pool for pool in _console("SHOW POOLS") if pool["database"] == name]
    assert pools and {pool["pool_mode"] for pool in pools} == {"transaction"}


def test_consecutive_transactions_of_one_client_land_on_different_servers(
    bouncer_settings: Settings,
) -> None:
    """What makes session state unsafe, shown on the test PgBouncer: a session-level
    SET stays on the server connection, which the next transaction of the same client
    may not get and another client's may."""
    assert bouncer_settings.database_url is not None
    first, second = _client(bouncer_settings.database_url), _client(bouncer_settings.database_url)
    try:
        server = _one(first, "SELECT pg_backend_pid()")
        with first.cursor() as cursor:  # what the app never does
            cursor.execute("SET statement_timeout = '123s'")
        # The other client's transaction gets the server connection the first one left.
        with second.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("SELECT pg_backend_pid(), current_setting('statement_timeout')")
            assert cursor.fetchone() == (server, "123s")
            # ... so the first client's next transaction runs on another one, without it.
            assert _one(first, "SELECT pg_backend_pid()") != server
            assert _one(first, "SHOW statement_timeout") != "123s"
            cursor.execute("COMMIT")
    finally:
        first.close()
        second.close()


# ------------------------------------------------------------ the service flows


def test_apply_review_and_disable_through_pgbouncer(
    services: Services,
    tree: dict[str, Unit],
    statements: list[str],
    bouncer_settings: Settings,
) -> None:
    admin = make_admin(services, tree["bureau"])
    person = new_person_id()
    account_id = services.accounts.apply(
        form(person, tree["clinic"], name="柯池化"), card_proof(services, person)
    )
    assert Account.get_by_id(account_id).status == AccountStatus.PENDING
    (request,) = services.accounts.view(account_id).pending()
    assert [item.request_id for item in services.review.queue(admin.id).items] == [request.id]
    services.review.approve(admin.id, request.id)
    assert Account.get_by_id(account_id).status == AccountStatus.ACTIVE
    version = Account.get_by_id(account_id).version
    services.control.disable_account(admin.id, account_id, version, "已離職")
    assert Account.get_by_id(account_id).status == AccountStatus.DISABLED
    actions = [event.action for event in AuditEvent.select().order_by(AuditEvent.id)]
    assert "approve_request" in actions and actions[-1] == "disable_account"
    assert services.audit.verify().ok

    # Every statement the flows sent was recorded (the writes and their audit rows) ...
    assert any(re.match(r'\s*INSERT INTO "audit_event"', sql) for sql in statements)
    assert any(sql.strip().upper() == "BEGIN" for sql in statements)
    # ... and none of them leaves state on the server session.
    assert [sql for sql in statements if SESSION_STATE.search(sql)] == []

    # Nothing is left on the server either: no lock, open transaction or temporary table.
    assert bouncer_settings.database_url is not None
    direct = _direct(bouncer_settings.database_url)
    try:
        with direct.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND a.datname = current_database()"
            )
            assert cursor.fetchone()[0] == 0
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND state LIKE 'idle in transaction%%' AND pid <> pg_backend_pid()"
            )
            assert cursor.fetchone()[0] == 0
            cursor.execute("SELECT count(*) FROM pg_class WHERE relpersistence = 't'")
            assert cursor.fetchone()[0] == 0
    finally:
        direct.close()


def test_the_session_state_pattern_catches_what_it_must() -> None:
    """The statement check above is not vacuous."""
    unsafe = [
        "SET statement_timeout = 5000",
        "set search_path to x",
        "SET SESSION lock_timeout = '1s'",
        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "SELECT pg_advisory_lock(1)",
        "SELECT pg_try_advisory_lock_shared(1)",
        "PREPARE q AS SELECT 1",
        "LISTEN audit",
        "CREATE TEMP TABLE t (x int)",
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
        "SELECT set_config('search_path', 'x', false)",
    ]
    safe = [
        "SET LOCAL lock_timeout = '1s'",
        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY",
        "SELECT pg_advisory_xact_lock(%s)",
        'UPDATE "account" SET "status" = %s WHERE ("id" = %s)',
        "SELECT set_config('search_path', 'x', true)",
        "BEGIN",
    ]
    assert [sql for sql in unsafe if not SESSION_STATE.search(sql)] == []
    assert [sql for sql in safe if SESSION_STATE.search(sql)] == []


# ------------------------------------------------------------ the load


def test_load_through_pgbouncer(bouncer_settings: Settings, tmp_path: Path) -> None:
    url = bouncer_settings.database_url
    assert url is not None
    name = _db_name(url)
    before = sum(
        row["total_xact_count"] for row in _console("SHOW STATS") if row["database"] == name
    )
    run = run_postgres(url, LOAD_SESSIONS, SECONDS, MAX_OPS, tmp_path)
    close_database()
    _assert_clean(run)
    # The load's transactions went through PgBouncer, on no more server connections
    # than its pool holds.
    after = sum(
        row["total_xact_count"] for row in _console("SHOW STATS") if row["database"] == name
    )
    operations = sum(len(log["events"]) for log in run.logs)
    assert after - before >= operations > 0
    servers = [server for server in _console("SHOW SERVERS") if server["database"] == name]
    assert 0 < len(servers) <= 20
