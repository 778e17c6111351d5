"""Versioned schema management.

A new database gets the current schema in one go and is stamped with
:data:`SCHEMA_VERSION`; an older one is brought forward by the numbered steps in
:data:`MIGRATIONS`. A database newer than this program is never touched.

Version 2 binds every encrypted person ID to its row (the AES-GCM associated data
names the table, the column and the primary key). That step rewrites rows with the
data key, which this package never holds: the caller passes the rewriting function,
and the rows are rewritten in batches of one transaction each, so a large database is
not locked at once and an interrupted upgrade simply runs again.

Version 3 narrows every stored masked person ID to the mask that leaves at least
100 000 candidate IDs (``A12****789`` becomes ``A1******89``). The new mask is taken
from the stored mask itself, which holds every character the narrower one shows, so no
key is needed and deleted accounts (whose encrypted ID is erased) are narrowed too. It
runs in batches like version 2, and masking a mask again changes nothing.

Version 4 rebuilds the unit gram index with each unit's folded name and per-county
counts beside it (models.unit_search.rebuild_gram_index), and refreshes the planner's
statistics after the upgrade's transaction.

Version 5 adds the day a unit's NHI contract ends when that day lies ahead
(``unit.closes_on``): the unit stays in force until then.

Version 6 adds each account's own colours (``account.theme``).

Version 7 adds the access reviews (權限定期檢閱): ``access_review`` and
``access_review_item`` (smis_tui.services.access_review).
"""

from __future__ import annotations

from collections.abc import Callable

import peewee

from models.db import database_proxy, write_transaction
from models.reference import CATEGORIES
from models.schema import (
    ALL_MODELS,
    AccessReview,
    AccessReviewItem,
    Account,
    Category,
    CategoryOption,
    Meta,
)
from models.unit_search import rebuild_gram_index, refresh_statistics
from smis_tui.core.identifiers import mask_person_id

# Step N brings a database from version N-1 to N. Version 1 is the initial schema,
# which a fresh database gets from the models directly. Step 2 rewrites data (see
# the module's docstring) and step 3 rewrites data too; both are run by :func:`upgrade`
# itself, batch by batch.
MIGRATIONS: dict[int, Callable[[peewee.Database], None]] = {}
ROW_BOUND_VERSION = 2
NARROW_MASK_VERSION = 3
GRAM_NAMES_VERSION = 4
MIGRATIONS[GRAM_NAMES_VERSION] = rebuild_gram_index
CLOSES_ON_VERSION = 5


def add_unit_closes_on(db: peewee.Database) -> None:
    if not any(column.name == "closes_on" for column in db.get_columns("unit")):
        db.execute_sql("ALTER TABLE unit ADD COLUMN closes_on DATE")


MIGRATIONS[CLOSES_ON_VERSION] = add_unit_closes_on

# Version 6: account.theme, each account's own colours (a high-contrast theme).
ACCOUNT_THEME_VERSION = 6


def add_account_theme(db: peewee.Database) -> None:
    if not any(column.name == "theme" for column in db.get_columns("account")):
        db.execute_sql(
            "ALTER TABLE account ADD COLUMN theme VARCHAR(16) NOT NULL DEFAULT 'default'"
        )


MIGRATIONS[ACCOUNT_THEME_VERSION] = add_account_theme

# Version 7: 權限定期檢閱, the access reviews and their items (two new tables).
REVIEW_VERSION = 7


def add_access_reviews(db: peewee.Database) -> None:
    db.create_tables([AccessReview, AccessReviewItem], safe=True)


MIGRATIONS[REVIEW_VERSION] = add_access_reviews
SCHEMA_VERSION = REVIEW_VERSION

# (account id, encrypted person ID as stored) → the value bound to that row, or None
# when it already is. Raises when the value cannot be read with the key.
PersonIdRebinder = Callable[[int, bytes], bytes | None]

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


def upgrade(
    rebind_person_id: PersonIdRebinder | None = None, *, batch_size: int = 500
) -> tuple[int, int]:
    """Bring the schema to :data:`SCHEMA_VERSION`; returns (before, after).

    ``rebind_person_id`` is needed only when encrypted person IDs of a version-1
    database have to be bound to their rows."""
    before = _current_for_upgrade()
    if 0 < before < ROW_BOUND_VERSION:
        bind_person_ids(rebind_person_id, batch_size=batch_size)
    if 0 < before < NARROW_MASK_VERSION:
        narrow_person_id_masks(batch_size=batch_size)
    with write_transaction():
        # Read inside the transaction: two upgrades at once never run a step twice.
        found = _current_for_upgrade()
        if found == 0:
            database_proxy.obj.create_tables(ALL_MODELS, safe=True)
        else:
            for step in range(max(found, NARROW_MASK_VERSION) + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[step](database_proxy.obj)
        _stamp(SCHEMA_VERSION)
        seed_reference_data()
    if 0 < before < GRAM_NAMES_VERSION:
        refresh_statistics()
    return before, SCHEMA_VERSION


def _current_for_upgrade() -> int:
    found = current_version()
    if found > SCHEMA_VERSION:
        raise SchemaMismatch(
            f"資料庫結構版本 {found} 比本程式支援的版本 {SCHEMA_VERSION} 新，請更新 smis-tui。"
        )
    return found


def bind_person_ids(rebind: PersonIdRebinder | None, *, batch_size: int = 500) -> int:
    """Rewrite every encrypted person ID bound to its row, one transaction per batch;
    returns how many were rewritten. Values already bound are checked and left as they
    are, so running it again after an interruption finishes the job."""
    rewritten = 0
    last_id = 0
    while True:
        with write_transaction():
            rows = list(
                Account.select(Account.id, Account.person_id_cipher)
                .where((Account.id > last_id) & Account.person_id_cipher.is_null(False))
                .order_by(Account.id)
                .limit(batch_size)
            )
            for row in rows:
                if rebind is None:
                    raise SchemaMismatch(
                        "升級資料庫需要資料加密金鑰：請確認 SMIS_KEY_FILE 指向此資料庫的金鑰檔。"
                    )
                bound = rebind(int(row.id), bytes(row.person_id_cipher))
                if bound is not None:
                    Account.update(person_id_cipher=bound).where(Account.id == row.id).execute()
                    rewritten += 1
        if not rows:
            return rewritten
        last_id = int(rows[-1].id)


def narrow_person_id_masks(*, batch_size: int = 500) -> int:
    """Bring every stored masked person ID to today's mask, one transaction per batch;
    returns how many were rewritten. A mask already narrow is left as it is, so running
    it again after an interruption finishes the job."""
    rewritten = 0
    last_id = 0
    while True:
        with write_transaction():
            rows = list(
                Account.select(Account.id, Account.person_id_masked)
                .where(Account.id > last_id)
                .order_by(Account.id)
                .limit(batch_size)
            )
            for row in rows:
                narrowed = narrower_mask(row.person_id_masked)
                if narrowed != row.person_id_masked:
                    Account.update(person_id_masked=narrowed).where(Account.id == row.id).execute()
                    rewritten += 1
        if not rows:
            return rewritten
        last_id = int(rows[-1].id)


def narrower_mask(stored: str) -> str:
    """The mask of today's rule for a mask stored by an earlier version.

    An earlier mask kept the value's length and showed at least as many characters at
    each end as today's (``A12****789`` shows positions 0–2 and 7–9, today's
    ``A1******89`` positions 0, 1, 8 and 9), so masking the stored mask shows only
    characters of the ID that were already shown, and never more than today's rule."""
    return mask_person_id(stored)


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
