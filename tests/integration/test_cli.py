"""The `smis-tui` command as an operator runs it: real processes, real files."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID

from card.identity import MOICA_SUBJECT_TYPE, SUBJECT_TYPE_ATTRIBUTE_OID
from card.sim.testpki import encode_subject_directory_attributes, self_signed_certificate
from models.db import database_named, server_execute
from smis_tui.cli import EXIT_CODE_LINES
from smis_tui.services.crypto import create_key_file
from tests.conftest import postgres_admin_url
from tests.helpers import new_person_id

SMIS = [sys.executable, "-m", "smis_tui.cli"]


def smis(
    data_dir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    full_env["SMIS_DATA_DIR"] = str(data_dir)
    full_env.update(env or {})
    return subprocess.run(
        [*SMIS, *args], capture_output=True, text=True, env=full_env, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def initialised(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("cli") / "data"
    result = smis(data_dir, "db", "init")
    assert result.returncode == 0, result.stderr
    assert "已載入預設單位 5165 筆" in result.stdout
    return data_dir


@pytest.fixture
def data_dir(initialised: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(initialised, copy)
    return copy


def test_init_creates_private_key_and_database_and_is_idempotent(data_dir: Path) -> None:
    key = data_dir / "smis.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((data_dir / "smis.sqlite3").stat().st_mode) == 0o600
    before = key.read_bytes()
    again = smis(data_dir, "db", "init")
    assert again.returncode == 0, again.stderr
    assert "單位資料已存在" in again.stdout
    assert key.read_bytes() == before


def test_search_without_query_shows_all_pages(data_dir: Path) -> None:
    result = smis(data_dir, "units", "search")
    assert result.returncode == 0, result.stderr
    assert "【每頁 20 筆 · 第 1 頁 共 259 頁 5165 筆】" in result.stdout
    assert "縣市" in result.stdout and "單位/醫事機構代碼" in result.stdout


def test_search_health_bureaus_lists_all_22(data_dir: Path) -> None:
    result = smis(data_dir, "units", "search", "衛生局")
    assert result.returncode == 0, result.stderr
    assert "共 2 頁 22 筆" in result.stdout
    assert "新北市政府衛生局" in result.stdout or "金門縣衛生局" in result.stdout
    page2 = smis(data_dir, "units", "search", "衛生局", "--page", "2")
    names = [line for line in (result.stdout + page2.stdout).splitlines() if "衛生局" in line]
    assert len(names) == 22


def test_unreachable_database_is_one_clear_line(data_dir: Path) -> None:
    result = smis(
        data_dir,
        "units",
        "search",
        env={"DATABASE_URL": "postgresql://nobody:secret@127.0.0.1:1/none"},
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "無法連線資料庫" in lines[0]
    assert "secret" not in result.stderr


def test_unknown_database_scheme_is_refused(data_dir: Path) -> None:
    result = smis(data_dir, "db", "upgrade", env={"DATABASE_URL": "mysql://x@localhost/db"})
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "DATABASE_URL" in result.stderr


def test_kiosk_refuses_an_unknown_schema_version(data_dir: Path) -> None:
    with sqlite3.connect(data_dir / "smis.sqlite3") as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    result = smis(data_dir, "run")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "版本 99" in result.stderr and "請更新 smis-tui" in result.stderr


def test_the_linux_console_is_told_in_one_ascii_line_what_to_use(data_dir: Path) -> None:
    result = smis(data_dir, "run", env={"TERM": "linux"})
    assert result.returncode == 1
    assert result.stderr.isascii() and len(result.stderr.strip().splitlines()) == 1
    assert "cannot draw Chinese" in result.stderr and "foot" in result.stderr


def test_kiosk_refuses_an_uninitialised_database(tmp_path: Path) -> None:
    result = smis(tmp_path / "empty", "run")
    assert result.returncode != 0
    assert "smis-tui db init" in result.stderr


def test_missing_or_foreign_key_file_is_refused(data_dir: Path, tmp_path: Path) -> None:
    (data_dir / "smis.key").rename(tmp_path / "moved.key")
    missing = smis(data_dir, "maintenance")
    assert missing.returncode != 0 and "找不到資料加密金鑰檔" in missing.stderr
    other = tmp_path / "other" / "smis.key"
    create_key_file(other)
    wrong = smis(data_dir, "maintenance", env={"SMIS_KEY_FILE": str(other)})
    assert wrong.returncode != 0 and "金鑰與資料庫不符" in wrong.stderr
    assert "Traceback" not in wrong.stderr


def _admin_certificate(path: Path, name: str) -> None:
    citizen = x509.UnrecognizedExtension(
        ExtensionOID.SUBJECT_DIRECTORY_ATTRIBUTES,
        encode_subject_directory_attributes(
            {SUBJECT_TYPE_ATTRIBUTE_OID.dotted_string: MOICA_SUBJECT_TYPE}
        ),
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = self_signed_certificate(key, name, days=30, extensions=[(citizen, False)])
    path.write_bytes(cert.public_bytes(Encoding.PEM))


def test_bootstrap_then_audit_verify_then_tamper(data_dir: Path, tmp_path: Path) -> None:
    cert = tmp_path / "admin.pem"
    _admin_certificate(cert, "陳管理")
    args = ["admin", "bootstrap", "--cert", str(cert), "--person-id", new_person_id()]
    args += ["--phone", "02-23959825", "--email", "admin@cdc.example.tw"]
    first = smis(data_dir, *args)
    assert first.returncode == 0, first.stderr
    assert "陳管理" in first.stdout
    second = smis(data_dir, *args)
    assert second.returncode != 0 and "已存在" in second.stderr

    ok = smis(data_dir, "audit", "verify")
    assert ok.returncode == 0 and "共驗證 1 筆" in ok.stdout
    with sqlite3.connect(data_dir / "smis.sqlite3") as conn:
        conn.execute("UPDATE audit_event SET actor_label = 'someone else' WHERE id = 1")
    bad = smis(data_dir, "audit", "verify")
    assert bad.returncode != 0
    assert "#1" in bad.stderr and "修改" in bad.stderr


def test_maintenance_is_idempotent(data_dir: Path) -> None:
    first = smis(data_dir, "maintenance")
    second = smis(data_dir, "maintenance")
    assert first.returncode == second.returncode == 0
    assert "已停用 0 個" in second.stdout


def test_a_published_file_imports_and_maintenance_retires_a_unit_on_its_day(
    data_dir: Path,
) -> None:
    published = Path(__file__).resolve().parents[1] / "data" / "nhi" / "hospitals-and-clinics.csv"
    imported = smis(data_dir, "units", "import", str(published))
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.startswith("新增 ")
    found = smis(data_dir, "units", "search", "基隆長庚紀念醫院")
    assert "1101100011" in found.stdout  # its contract ends on 2030-12-31
    with sqlite3.connect(data_dir / "smis.sqlite3") as conn:
        conn.execute("UPDATE unit SET closes_on = '2000-01-01' WHERE code = '1101100011'")
    retired = smis(data_dir, "maintenance")
    assert retired.returncode == 0, retired.stderr
    assert "已停用 1 個健保合約已於今日前終止的單位" in retired.stdout
    gone = smis(data_dir, "units", "search", "基隆長庚紀念醫院")
    assert "1101100011" not in gone.stdout


def test_init_and_search_on_postgres(tmp_path: Path) -> None:
    base = postgres_admin_url()
    server_execute(
        base, "DROP DATABASE IF EXISTS smis_cli WITH (FORCE)", "CREATE DATABASE smis_cli"
    )
    env = {"DATABASE_URL": database_named(base, "smis_cli")}
    try:
        init = smis(tmp_path / "data", "db", "init", env=env)
        assert init.returncode == 0, init.stderr
        result = smis(tmp_path / "data", "units", "search", "衛生局", env=env)
        assert "共 2 頁 22 筆" in result.stdout, result.stderr
        assert not (tmp_path / "data" / "smis.sqlite3").exists()
    finally:
        server_execute(base, "DROP DATABASE IF EXISTS smis_cli WITH (FORCE)")


def test_version_and_the_exit_codes_are_told(tmp_path: Path) -> None:
    from importlib.metadata import version

    shown = smis(tmp_path, "--version")
    assert shown.returncode == 0 and shown.stdout.strip() == f"smis-tui {version('smis-tui')}"
    helped = smis(tmp_path, "--help")
    assert helped.returncode == 0
    for code, meaning in (("0", "成功"), ("1", "設定"), ("2", "拒絕"), ("3", "軌跡紀錄")):
        assert any(
            line.split()[:1] == [code] and meaning in line for line in helped.stdout.splitlines()
        ), helped.stdout
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    for line in EXIT_CODE_LINES:
        code = line.split()[0]
        assert f"| {code} |" in readme, f"exit code {code} is not in the README's table"
