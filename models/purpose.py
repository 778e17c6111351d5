"""What a database is for: a demo database is marked as one when it is made
(`smis-tui db init --demo`), and demo accounts and cards go into no other."""

from __future__ import annotations

from models.db import write_transaction
from models.schema import Account, Meta

DEMO_KEY = "demo_database"


class NotADemoDatabase(RuntimeError):
    """Demo data was about to be written to a database that is not a demo's."""


def is_demo_database() -> bool:
    row = Meta.get_or_none(Meta.key == DEMO_KEY)
    return row is not None and row.value == "1"


def mark_demo_database() -> None:
    """Mark the database as a demo's. Only one that holds no account yet can be marked:
    a database people already use stays theirs."""
    with write_transaction():
        if is_demo_database():
            return
        if Account.select().exists():
            raise NotADemoDatabase(
                "此資料庫已有帳號，不是示範資料庫，不能改作示範用途；"
                "請在另一個資料目錄（SMIS_DATA_DIR）執行 smis-tui db init --demo"
            )
        Meta.insert(key=DEMO_KEY, value="1").on_conflict(
            conflict_target=[Meta.key], update={Meta.value: "1"}
        ).execute()


def require_demo_database() -> None:
    if not is_demo_database():
        raise NotADemoDatabase(
            "此資料庫不是示範資料庫（以 smis-tui db init --demo 建立），"
            "不寫入示範帳號與卡片；請在另一個資料目錄（SMIS_DATA_DIR）建立示範資料庫"
        )
