"""Demo data never reaches a database people use: demo accounts (a demo CDC 管理者
among them) and cards go only into a database made for the demo, and `make run`
keeps its demo in a directory of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from models.db import close_database, open_database
from models.schema import Account
from smis_tui.boot import boot
from smis_tui.core.config import ConfigError, load_settings

REPO = Path(__file__).resolve().parents[2]


def smis(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMIS_")}
    env.pop("DATABASE_URL", None)
    env["SMIS_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "smis_tui.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=180,
        check=False,
    )


def accounts_in(data_dir: Path) -> int:
    open_database(None, data_dir / "smis.sqlite3")
    try:
        return int(Account.select().count())
    finally:
        close_database()


def test_demo_init_refuses_a_database_not_made_for_the_demo(tmp_path: Path) -> None:
    data_dir = tmp_path / "production"
    assert smis(data_dir, "db", "init").returncode == 0
    refused = smis(data_dir, "demo", "init")
    assert refused.returncode == 2
    assert "不是示範資料庫" in refused.stderr and "db init --demo" in refused.stderr
    assert accounts_in(data_dir) == 0
    assert not (data_dir / "demo-pki").exists()


def test_a_used_database_cannot_be_turned_into_a_demo(tmp_path: Path) -> None:
    data_dir = tmp_path / "in-use"
    assert smis(data_dir, "db", "init", "--demo").returncode == 0
    assert smis(data_dir, "demo", "init").returncode == 0
    accounts = accounts_in(data_dir)
    assert accounts > 0
    # The same data, as if someone had used it before the demo mark was there.
    open_database(None, data_dir / "smis.sqlite3")
    try:
        from models.purpose import DEMO_KEY
        from models.schema import Meta

        Meta.delete().where(Meta.key == DEMO_KEY).execute()
    finally:
        close_database()
    refused = smis(data_dir, "db", "init", "--demo")
    assert refused.returncode == 2 and "已有帳號" in refused.stderr
    assert smis(data_dir, "demo", "init").returncode == 2


def test_the_kiosk_with_demo_cards_refuses_a_database_not_made_for_the_demo(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "production"
    assert smis(data_dir, "db", "init").returncode == 0
    settings = load_settings({"SMIS_DATA_DIR": str(data_dir)})
    try:
        with pytest.raises(ConfigError, match="不是示範資料庫"):
            boot(settings, demo=True)
    finally:
        close_database()


def test_make_run_keeps_its_demo_in_its_own_directory() -> None:
    """`make run` with a production database configured in the environment still runs
    on a SQLite database and a key of its own."""
    env = dict(os.environ, DATABASE_URL="postgresql://smis@db.example/smis")
    env["SMIS_KEY_FILE"] = "/var/lib/smis-tui/smis.key"
    planned = subprocess.run(
        ["make", "-n", "run"], cwd=REPO, env=env, capture_output=True, text=True, check=True
    ).stdout
    commands = [line for line in planned.splitlines() if "smis-tui " in line]
    assert commands, planned
    for command in commands:
        assert "-u DATABASE_URL" in command and "-u SMIS_KEY_FILE" in command, command
        assert f"SMIS_DATA_DIR={REPO}/.demo" in command, command
    assert any("db init --demo" in command for command in commands)
