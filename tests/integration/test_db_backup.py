"""`smis-tui db backup`, `db restore` and `db copy` as an operator runs them: a loss
(the database deleted, its tables dropped) is undone from a backup with every account
and an audit chain that still verifies; what would lose data or let a forged trail in
is refused or reported."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from models.db import (
    close_database,
    database_named,
    open_database,
    server_execute,
    worker_connection,
)
from models.schema import ALL_MODELS
from smis_tui.core.config import Settings
from smis_tui.core.domain import UnitKind
from smis_tui.services import Services, build_services, open_services
from smis_tui.services.backup import pg_command
from smis_tui.services.crypto import KeyRing, create_key_file
from tests.conftest import postgres_admin_url
from tests.helpers import apply_for, unit_of_kind

SMIS = [sys.executable, "-m", "smis_tui.cli"]
TABLES = [model._meta.table_name for model in ALL_MODELS]


def smis(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SMIS_KEY_FILE")}
    full_env["SMIS_DATA_DIR"] = str(settings.data_dir)
    if settings.database_url:
        full_env["DATABASE_URL"] = settings.database_url
    full_env.update(env)
    return subprocess.run(
        [*SMIS, *args], capture_output=True, text=True, env=full_env, timeout=300, check=False
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def row_counts() -> dict[str, int]:
    from models.db import database_proxy

    db = database_proxy.obj
    return {
        table: int(db.execute_sql(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0])  # noqa: S608
        for table in TABLES
    }


def new_applicant(services: Services, name: str) -> tuple[int, str]:
    """An application sent at a clinic: (account id, the applicant's person ID)."""
    clinic = unit_of_kind(UnitKind.CLINIC, with_category="ppe")
    account_id, _ = apply_for(services, clinic, name=name)
    return account_id, services.accounts.person_id_for(account_id)


def with_account(settings: Settings) -> tuple[int, str, dict[str, int]]:
    """One applicant in the database of ``settings``, which is closed again for the
    commands to open: the account id, its person ID and every table's row count."""
    services = _services_for(settings)
    account_id, person_id = new_applicant(services, "林備份")
    assert services.audit.verify().ok
    counts = row_counts()
    close_database()
    return account_id, person_id, counts


def _services_for(settings: Settings) -> Services:
    close_database()
    open_database(settings.database_url, settings.sqlite_path)
    return build_services(settings)


def wipe(settings: Settings) -> None:
    """What a lost database looks like: the SQLite file gone, or every table dropped."""
    close_database()
    if settings.database_url:
        open_database(settings.database_url, settings.sqlite_path)
        from models.db import database_proxy

        database_proxy.obj.execute_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        close_database()
    else:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{settings.sqlite_path}{suffix}").unlink(missing_ok=True)


def reopened(settings: Settings) -> Services:
    close_database()
    return open_services(settings)


def backup(settings: Settings, target: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    done = smis(settings, "db", "backup", str(target), *extra)
    assert done.returncode == 0, done.stderr
    return done


# ----------------------------------------------------------------- backup and restore


def test_backup_wipe_restore_brings_every_row_back(settings: Settings, tmp_path: Path) -> None:
    account_id, person_id, counts = with_account(settings)
    target = tmp_path / "backups" / "smis.backup"
    target.parent.mkdir()
    made = backup(settings, target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    manifest_file = Path(f"{target}.json")
    assert stat.S_IMODE(manifest_file.stat().st_mode) == 0o600
    # Nothing half-written is left beside it.
    assert sorted(p.name for p in target.parent.iterdir()) == ["smis.backup", "smis.backup.json"]
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    assert manifest["tables"] == counts
    assert manifest["sha256"] == hashlib.sha256(target.read_bytes()).hexdigest()
    # The key is not in the backup: the operator is told which file to keep.
    assert str(settings.resolved_key_file) in made.stdout and "金鑰" in made.stdout

    wipe(settings)
    restored = smis(settings, "db", "restore", str(target))
    assert restored.returncode == 0, restored.stderr
    assert "軌跡紀錄完整" in restored.stdout

    services = reopened(settings)
    assert row_counts() == counts
    assert services.audit.verify().ok
    assert services.accounts.view(account_id).data.name == "林備份"
    assert services.accounts.person_id_for(account_id) == person_id
    assert smis(settings, "audit", "verify").returncode == 0


def test_a_backup_taken_while_a_kiosk_writes_restores_whole(
    settings: Settings, tmp_path: Path
) -> None:
    with_account(settings)
    services = _services_for(settings)
    stop = threading.Event()
    written: list[int] = []

    def keep_applying() -> None:
        with worker_connection():
            while not stop.is_set():
                written.append(new_applicant(services, "陳同時")[0])

    kiosk = threading.Thread(target=keep_applying)
    kiosk.start()
    try:
        target = tmp_path / "smis.backup"
        made = smis(settings, "db", "backup", str(target))
    finally:
        stop.set()
        kiosk.join()
    assert made.returncode == 0, made.stderr
    assert written

    wipe(settings)
    restored = smis(settings, "db", "restore", str(target))
    # The manifest's counts are the file's, and the audit head is the last row's.
    assert restored.returncode == 0, restored.stderr
    assert "軌跡紀錄完整" in restored.stdout


def test_backup_refuses_to_overwrite_a_file(settings: Settings, tmp_path: Path) -> None:
    with_account(settings)
    target = tmp_path / "smis.backup"
    target.write_bytes(b"last week's backup")
    refused = smis(settings, "db", "backup", str(target))
    assert refused.returncode == 2
    assert "--force" in one_error_line(refused)
    assert target.read_bytes() == b"last week's backup"
    assert not Path(f"{target}.json").exists()
    backup(settings, target, "--force")
    assert target.read_bytes() != b"last week's backup"


def test_restore_refuses_a_database_with_data_without_force(
    settings: Settings, tmp_path: Path
) -> None:
    account_id, _, _ = with_account(settings)
    target = tmp_path / "smis.backup"
    backup(settings, target)
    services = _services_for(settings)
    later, _ = new_applicant(services, "王後來")
    close_database()

    refused = smis(settings, "db", "restore", str(target))
    assert refused.returncode == 2
    assert "--force" in one_error_line(refused)
    services = reopened(settings)
    assert services.accounts.view(later).data.name == "王後來"
    close_database()

    forced = smis(settings, "db", "restore", str(target), "--force")
    assert forced.returncode == 0, forced.stderr
    assert "取代" in forced.stdout
    services = reopened(settings)
    assert services.accounts.view(account_id).data.name == "林備份"
    from models.schema import Account

    assert Account.get_or_none(Account.id == later) is None


def test_restore_refuses_a_backup_made_under_another_key(
    settings: Settings, tmp_path: Path
) -> None:
    with_account(settings)
    target = tmp_path / "smis.backup"
    backup(settings, target)
    wipe(settings)
    other_key = tmp_path / "other" / "smis.key"
    create_key_file(other_key)
    refused = smis(settings, "db", "restore", str(target), SMIS_KEY_FILE=str(other_key))
    assert refused.returncode == 1
    line = one_error_line(refused)
    assert "金鑰" in line and str(settings.resolved_key_file) in line
    # Refused before anything was written: the lost database is still lost.
    if settings.database_url:
        open_database(settings.database_url, settings.sqlite_path)
        from models.db import database_proxy

        assert database_proxy.obj.get_tables() == []
    else:
        assert not settings.sqlite_path.exists() or sqlite3.connect(settings.sqlite_path).execute(
            "SELECT COUNT(*) FROM sqlite_master"
        ).fetchone() == (0,)


def test_a_manifest_edited_to_name_another_key_is_refused(
    settings: Settings, tmp_path: Path
) -> None:
    with_account(settings)
    target = tmp_path / "smis.backup"
    backup(settings, target)
    other_key = tmp_path / "other" / "smis.key"
    create_key_file(other_key)
    manifest_file = Path(f"{target}.json")
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    manifest["key_check"] = KeyRing.read(other_key).check_value
    manifest_file.write_text(json.dumps(manifest), encoding="utf-8")
    wipe(settings)
    refused = smis(settings, "db", "restore", str(target), SMIS_KEY_FILE=str(other_key))
    assert refused.returncode == 1
    assert "清單" in one_error_line(refused)


def test_a_backup_altered_after_it_was_written_is_refused(
    sqlite_settings: Settings,
    tmp_path: Path,
) -> None:
    with_account(sqlite_settings)
    target = tmp_path / "smis.backup"
    backup(sqlite_settings, target)
    with sqlite3.connect(target) as conn:
        conn.execute("UPDATE account SET name = '冒名者'")
    conn.close()
    wipe(sqlite_settings)
    refused = smis(sqlite_settings, "db", "restore", str(target))
    assert refused.returncode == 1
    assert "備份檔" in one_error_line(refused)
    assert not sqlite_settings.sqlite_path.exists()


def test_a_forged_audit_row_in_a_backup_fails_the_restore_verification(
    sqlite_settings: Settings,
    tmp_path: Path,
) -> None:
    with_account(sqlite_settings)
    target = tmp_path / "smis.backup"
    backup(sqlite_settings, target)
    # Whoever can write the backup can rewrite its manifest too.
    with sqlite3.connect(target) as conn:
        conn.execute("UPDATE audit_event SET actor_label = 'someone else' WHERE id = 1")
    conn.close()
    manifest_file = Path(f"{target}.json")
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    manifest["sha256"] = hashlib.sha256(target.read_bytes()).hexdigest()
    manifest_file.write_text(json.dumps(manifest), encoding="utf-8")

    wipe(sqlite_settings)
    restored = smis(sqlite_settings, "db", "restore", str(target))
    assert restored.returncode == 3
    line = one_error_line(restored)
    assert "#1" in line and "軌跡紀錄" in line


def test_restoring_behind_this_machines_checkpoint_reports_the_lost_rows(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    with_account(sqlite_settings)
    target = tmp_path / "smis.backup"
    backup(sqlite_settings, target)
    new_applicant(_services_for(sqlite_settings), "王後來")
    close_database()
    # This machine vouches for the rows written after the backup.
    assert smis(sqlite_settings, "audit", "verify").returncode == 0

    wipe(sqlite_settings)
    restored = smis(sqlite_settings, "db", "restore", str(target))
    assert restored.returncode == 3
    assert "檢查點" in one_error_line(restored)


def test_pg_dump_gets_the_password_from_its_environment_only() -> None:
    argv, env = pg_command(
        "pg_dump",
        "postgresql://smis:pa%20ss'w\\rd@db1.example.tw:6432,db2.example.tw/smis"
        "?sslmode=verify-full&target_session_attrs=read-write",
        "--format=custom",
    )
    assert env["PGPASSWORD"] == "pa ss'w\\rd"
    assert not any("pa ss" in arg or "pa%20ss" in arg for arg in argv)
    conninfo = next(arg for arg in argv if arg.startswith("--dbname="))
    for part in ("host='db1.example.tw,db2.example.tw'", "port='6432,'", "sslmode='verify-full'"):
        assert part in conninfo
    assert "target_session_attrs='read-write'" in conninfo


# ----------------------------------------------------------------------------- copy


@pytest.fixture
def empty_postgres() -> Iterator[str]:
    """An empty PostgreSQL database; its URL carries the test server's password
    (scripts/test-services.sh asks for one over TCP), which no output may show."""
    base = postgres_admin_url()
    name = f"smis_copy_{uuid.uuid4().hex[:12]}"
    server_execute(base, f"CREATE DATABASE {name}")
    url = database_named(base, name)
    assert urlsplit(url).password, "the test server should ask for a password"
    yield url
    close_database()
    server_execute(base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_copy_from_sqlite_to_postgres_serves_the_same_accounts(
    sqlite_settings: Settings,
    empty_postgres: str,
) -> None:
    account_id, person_id, counts = with_account(sqlite_settings)
    copied = smis(sqlite_settings, "db", "copy", "--to", empty_postgres)
    assert copied.returncode == 0, copied.stderr
    assert str(urlsplit(empty_postgres).password) not in copied.stdout + copied.stderr
    assert "軌跡紀錄完整" in copied.stdout

    on_postgres = sqlite_settings.with_overrides(database_url=empty_postgres)
    services = reopened(on_postgres)
    assert row_counts() == counts
    assert services.audit.verify().ok
    assert services.accounts.view(account_id).data.name == "林備份"
    assert services.accounts.person_id_for(account_id) == person_id
    # New rows get new ids: the sequences continue after the copied rows.
    later, _ = new_applicant(services, "王新來")
    assert later > account_id
    assert services.audit.verify().ok
    close_database()

    again = smis(sqlite_settings, "db", "copy", "--to", empty_postgres)
    assert again.returncode == 2
    assert str(urlsplit(empty_postgres).password) not in one_error_line(again)


def test_copy_refuses_a_postgres_database_that_holds_data(
    sqlite_settings: Settings,
    postgres_settings: Settings,
) -> None:
    with_account(sqlite_settings)
    url = postgres_settings.database_url
    assert url is not None
    refused = smis(sqlite_settings, "db", "copy", "--to", url)
    assert refused.returncode == 2
    one_error_line(refused)
    open_database(url, Path("/nonexistent"))
    from models.schema import Account

    assert Account.select().count() == 0
