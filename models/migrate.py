"""Versioned schema management.

A new database gets the current schema in one go and is stamped with
:data:`SCHEMA_VERSION`; an older one is brought forward by the numbered steps in
:data:`MIGRATIONS`. A database newer than this program is never touched.
"""

from __future__ import annotations

from collections.abc import Callable

import peewee

from models.db import database_proxy, write_transaction
from models.reference import CATEGORIES
from models.schema import ALL_MODELS, Category, CategoryOption, Meta

# Step N brings a database from version N-1 to N. Version 1 is the initial schema,
# which a fresh database gets from the models directly.
MIGRATIONS: dict[int, Callable[[peewee.Database], None]] = {}
SCHEMA_VERSION = 1

SCHEMA_VERSION_KEY = "schema_version"


class SchemaMismatch(RuntimeError):
    """The database's schema is not the one this program was written for."""


def current_version() -> int:
    db = database_proxy.obj
    if not db.table_exists(Meta._meta.table_name):
        return 0
    row = Meta.get_or_none(Meta.key == SCHEMA_VERSION_KEY)
    return int(row.value) if row else 0


def _stamp(version: int) -> None:
    Meta.insert(key=SCHEMA_VERSION_KEY, value=str(version)).on_conflict(
        conflict_target=[Meta.key], update={Meta.value: str(version)}
    ).execute()


def seed_reference_data() -> None:
    """Insert the categories and sub-options that are missing; never duplicates."""
    for order, seed in enumerate(CATEGORIES, start=1):
        category, _ = Category.get_or_create(
            code=seed.code,
            defaults={"name": seed.name, "name_en": seed.name_en, "sort_order": order},
        )
        for option_order, option in enumerate(seed.options, start=1):
            CategoryOption.get_or_create(
                category=category, name=option, defaults={"sort_order": option_order}
            )


def upgrade() -> tuple[int, int]:
    """Bring the schema to :data:`SCHEMA_VERSION`; returns (before, after)."""
    with write_transaction():
        # Read inside the transaction: two upgrades at once never run a step twice.
        before = current_version()
        if before > SCHEMA_VERSION:
            raise SchemaMismatch(
                f"資料庫結構版本 {before} 比本程式支援的版本 {SCHEMA_VERSION} 新，請更新 smis-tui。"
            )
        if before == 0:
            database_proxy.obj.create_tables(ALL_MODELS, safe=True)
        else:
            for step in range(before + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[step](database_proxy.obj)
        _stamp(SCHEMA_VERSION)
        seed_reference_data()
    return before, SCHEMA_VERSION


def check_schema() -> None:
    """Refuse to run on a schema this program does not know."""
    found = current_version()
    if found == SCHEMA_VERSION:
        return
    if found == 0:
        raise SchemaMismatch("資料庫尚未初始化，請先執行 smis-tui db init。")
    if found < SCHEMA_VERSION:
        raise SchemaMismatch(
            f"資料庫結構版本 {found} 較舊（本程式需要 {SCHEMA_VERSION}），請先執行 smis-tui db upgrade。"
        )
    raise SchemaMismatch(
        f"資料庫結構版本 {found} 比本程式支援的版本 {SCHEMA_VERSION} 新，請更新 smis-tui。"
    )
