"""The search index behind 單位查詢: county ranks and the unit gram table.

A query is folded (models.textfold) and matched as a substring of the folded unit
name. Every substring of length one or two is itself a gram; a longer one contains
all of its character pairs, so the units holding its rarest pair are the only
candidates, and they come out of the gram index already in page order.
"""

from __future__ import annotations

from collections.abc import Iterable

from models.db import bulk_insert, database_proxy, is_postgres
from models.schema import Unit, UnitGram

GRAM_BATCH = 500


def grams_of(folded: str) -> set[str]:
    """The distinct characters and character pairs of a folded name."""
    text = folded.strip()
    return set(text) | {text[i : i + 2] for i in range(len(text) - 1)}


def query_grams(folded: str) -> list[str]:
    """The grams a query must match: itself when short, else its character pairs."""
    if len(folded) <= 2:
        return [folded]
    return sorted({folded[i : i + 2] for i in range(len(folded) - 1)})


def refresh_unit_grams(unit_ids: Iterable[int] | None = None) -> int:
    """Rewrite the grams of the given units (all units when None) from their current
    name and active flag; inactive units get none. Runs in the caller's transaction."""
    query = Unit.select(Unit.id, Unit.search_key, Unit.county_rank, Unit.code).where(Unit.active)
    if unit_ids is None:
        UnitGram.delete().execute()
    else:
        ids = list(unit_ids)
        for start in range(0, len(ids), GRAM_BATCH):
            UnitGram.delete().where(UnitGram.unit.in_(ids[start : start + GRAM_BATCH])).execute()
        if not ids:
            return 0
        query = query.where(Unit.id.in_(ids))
    rows: list[tuple[object, ...]] = []
    written = 0
    for unit_id, key, rank, code in query.tuples().iterator():
        rows.extend((gram, rank, code, unit_id) for gram in grams_of(key))
        if len(rows) >= GRAM_BATCH:
            bulk_insert("unit_gram", ("gram", "county_rank", "code", "unit_id"), rows)
            written += len(rows)
            rows = []
    bulk_insert("unit_gram", ("gram", "county_rank", "code", "unit_id"), rows)
    written += len(rows)
    return written


def refresh_statistics() -> None:
    """After a bulk load, outside any transaction: fresh planner statistics, and on
    PostgreSQL a vacuum so that counts are answered from the indexes alone."""
    db = database_proxy.obj
    if db.in_transaction():
        raise RuntimeError("refresh_statistics runs after the load's transaction")
    if is_postgres(db):
        db.execute_sql("VACUUM ANALYZE unit")
        db.execute_sql("VACUUM ANALYZE unit_gram")
    else:
        db.execute_sql("ANALYZE")
