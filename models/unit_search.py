"""The search index behind 單位查詢: county ranks, the unit gram table and its counts.

A query is folded (models.textfold) and matched as a substring of the folded unit
name. Every substring of length one or two is itself a gram; a longer one contains
all of its character pairs, so the units holding its rarest pair are the only
candidates, and they come out of the gram index already in page order, each with its
name to check the whole query against. Every active unit also holds the empty gram
(:data:`EVERY_UNIT`), which is the listing without a query.

``unit_gram_count`` holds how many units hold each gram in each county, so the total
of a one- or two-character query (or of no query) and the county its page N starts in
are read from a few rows instead of counting thousands of index entries.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import peewee

from models.db import bulk_insert, database_proxy, is_postgres
from models.schema import Unit, UnitGram, UnitGramCount

GRAM_BATCH = 500
EVERY_UNIT = ""
GRAM_COLUMNS = ("gram", "county_rank", "code", "unit_id", "search_key")


def grams_of(folded: str) -> set[str]:
    """The distinct characters and character pairs of a folded name."""
    text = folded.strip()
    return set(text) | {text[i : i + 2] for i in range(len(text) - 1)}


def query_grams(folded: str) -> list[str]:
    """The grams a query must match: itself when short (the empty gram for no query),
    else its character pairs."""
    if len(folded) <= 2:
        return [folded]
    return sorted({folded[i : i + 2] for i in range(len(folded) - 1)})


def refresh_unit_grams(unit_ids: Iterable[int] | None = None) -> int:
    """Rewrite the grams of the given units (all units when None) from their current
    name and active flag, and their counts; inactive units get none. Runs in the
    caller's transaction; returns how many gram rows were written."""
    db = database_proxy.obj
    query = Unit.select(Unit.id, Unit.search_key, Unit.county_rank, Unit.code).where(Unit.active)
    # (gram, county rank) → units gained (+) or lost (−), for a partial refresh.
    change: Counter[tuple[str, int]] = Counter()
    if unit_ids is None:
        UnitGram.delete().execute()
        UnitGramCount.delete().execute()
    else:
        ids = list(unit_ids)
        for start in range(0, len(ids), GRAM_BATCH):
            batch = ids[start : start + GRAM_BATCH]
            marks = ", ".join([db.param] * len(batch))
            # RETURNING: exactly the rows this statement removed are taken off the counts.
            removed = db.execute_sql(
                f"DELETE FROM unit_gram WHERE unit_id IN ({marks}) RETURNING gram, county_rank",  # noqa: S608
                batch,
            )
            change.subtract((str(gram), int(rank)) for gram, rank in removed.fetchall())
        if not ids:
            return 0
        query = query.where(Unit.id.in_(ids))
    rows: list[tuple[object, ...]] = []
    written = 0
    for unit_id, key, rank, code in query.tuples().iterator():
        grams = grams_of(key) | {EVERY_UNIT}
        rows.extend((gram, rank, code, unit_id, key) for gram in grams)
        if unit_ids is not None:
            change.update((gram, rank) for gram in grams)
        if len(rows) >= GRAM_BATCH:
            bulk_insert("unit_gram", GRAM_COLUMNS, rows)
            written += len(rows)
            rows = []
    bulk_insert("unit_gram", GRAM_COLUMNS, rows)
    written += len(rows)
    if unit_ids is None:
        db.execute_sql(
            "INSERT INTO unit_gram_count (gram, county_rank, units)"
            " SELECT gram, county_rank, COUNT(*) FROM unit_gram GROUP BY gram, county_rank"
        )
    else:
        _add_counts(db, change)
    return written


def _add_counts(db: peewee.Database, change: Counter[tuple[str, int]]) -> None:
    """Add ``change`` to the counts. One atomic upsert per row, in key order, so that
    concurrent refreshes on PostgreSQL neither lose an update nor deadlock. A count
    that falls to zero stays as a row of zero, which every reader skips."""
    deltas = sorted((key, delta) for key, delta in change.items() if delta)
    for start in range(0, len(deltas), GRAM_BATCH):
        batch = deltas[start : start + GRAM_BATCH]
        values = ", ".join([f"({db.param}, {db.param}, {db.param})"] * len(batch))
        db.execute_sql(
            f"INSERT INTO unit_gram_count (gram, county_rank, units) VALUES {values}"  # noqa: S608
            " ON CONFLICT (gram, county_rank)"
            " DO UPDATE SET units = unit_gram_count.units + excluded.units",
            [value for (gram, rank), delta in batch for value in (gram, rank, delta)],
        )


def rebuild_gram_index(db: peewee.Database) -> None:
    """Schema step 4: the gram table carries each unit's folded name and the empty gram,
    with counts beside it; the unit (id, search_key) index it replaces goes. Does
    nothing on a database that already has them (a fresh one, or a second run)."""
    has_names = any(c.name == "search_key" for c in db.get_columns("unit_gram"))
    if has_names and db.table_exists("unit_gram_count"):
        return
    db.drop_tables([UnitGramCount, UnitGram], safe=True)
    db.execute_sql("DROP INDEX IF EXISTS unit_id_search_key")
    db.create_tables([UnitGram, UnitGramCount], safe=True)
    refresh_unit_grams()


def refresh_statistics() -> None:
    """After a bulk load, outside any transaction: fresh planner statistics, and on
    PostgreSQL a vacuum so that counts are answered from the indexes alone."""
    db = database_proxy.obj
    if db.in_transaction():
        raise RuntimeError("refresh_statistics runs after the load's transaction")
    if is_postgres(db):
        db.execute_sql("VACUUM ANALYZE unit")
        db.execute_sql("VACUUM ANALYZE unit_gram")
        db.execute_sql("VACUUM ANALYZE unit_gram_count")
    else:
        db.execute_sql("ANALYZE")
