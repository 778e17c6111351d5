"""The few queries every kiosk operation sends, with their SQL built once per process.

peewee renders a query's SQL anew at every execution, field by field: about half of a
kiosk's CPU on the hot paths (an account row of 21 columns costs ~0.7 ms to render,
more than the server takes to answer it). A query here is still built with peewee,
with :func:`slot` in place of each value that varies; its SQL and constant parameters
are rendered at its first run and kept under the caller's name (with the database's
kind and the row lock, which :func:`models.db.locked` decides at run time), and the
query's own result wrapper reads the rows, so callers get the same objects as before.

A name must always stand for the same query shape: the slots may change value, never
the query around them.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import peewee

from models.db import bulk_insert, database_proxy


class _Slot:
    """Where the value numbered ``index`` goes in a query's parameters."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


def slot(index: int) -> peewee.Value:
    """The ``index``-th value of the run, passed as it is (already in the database's
    form: an id, a string), with no conversion by the field it is compared with."""
    return peewee.Value(_Slot(index), converter=False)


_LOCK = threading.Lock()
_SQL: dict[tuple[object, ...], tuple[str, tuple[object, ...]]] = {}


def _compiled(name: str | None, query: Any) -> tuple[str, tuple[object, ...]]:
    db = database_proxy.obj
    if name is None:
        sql, params = db.get_sql_context().sql(query).query()
        return sql, tuple(params)
    key = (name, type(db), db.param, getattr(query, "_for_update", None))
    found = _SQL.get(key)
    if found is None:
        sql, params = db.get_sql_context().sql(query).query()
        found = (sql, tuple(params))
        with _LOCK:
            _SQL[key] = found
    return found


def sql_of(name: str, query: Any) -> tuple[str, tuple[object, ...]]:
    """The SQL of ``query`` kept under ``name`` and its parameters with the slots in
    place (:func:`bind` fills them), for a statement that embeds it."""
    return _compiled(name, query)


def bind(template: Sequence[object], values: Sequence[object]) -> list[object]:
    """``template``'s parameters with ``values`` in its slots."""
    return [values[p.index] if isinstance(p, _Slot) else p for p in template]


def run(name: str | None, query: Any, values: Sequence[object] = ()) -> Any:
    """Execute ``query`` (its SQL kept under ``name``; rendered every time when None,
    for a shape that varies) with ``values`` in its slots; the query's own cursor
    wrapper over the rows (iterate it)."""
    sql, template = _compiled(name, query)
    cursor = database_proxy.obj.execute_sql(sql, bind(template, values))
    return query._get_cursor_wrapper(cursor)


def rows_changed(name: str, query: Any, values: Sequence[object] = ()) -> int:
    """Execute an UPDATE or DELETE ``query`` (its SQL kept under ``name``) with ``values``
    in its slots: how many rows it changed."""
    sql, template = _compiled(name, query)
    return int(database_proxy.obj.execute_sql(sql, bind(template, values)).rowcount)


def first(name: str | None, query: Any, values: Sequence[object] = ()) -> Any:
    """The first row of ``query`` (which must carry its own LIMIT), or None."""
    for row in run(name, query, values):
        return row
    return None


def get(name: str | None, query: Any, values: Sequence[object] = ()) -> Any:
    """Like :meth:`peewee.ModelSelect.get`: the first row, or the model's DoesNotExist."""
    row = first(name, query, values)
    if row is None:
        raise query.model.DoesNotExist(
            f"{query.model.__name__} instance matching query does not exist"
        )
    return row


def insert(model: Any, rows: Sequence[dict[str, object]]) -> list[Any]:
    """Insert ``rows`` of ``model`` in one plain statement (models.db.bulk_insert) and
    return them as instances with their ids, as ``model.create`` would: each row takes
    the model's defaults, and each value its field's conversion. Every row names the
    same fields."""
    if not rows:
        return []
    instances = [model(**row) for row in rows]
    meta = model._meta
    names = [
        f.name
        for f in meta.sorted_fields
        if f is not meta.primary_key and f.name in instances[0].__data__
    ]
    fields = [meta.fields[name] for name in names]
    ids = bulk_insert(
        meta.table_name,
        [f.column_name for f in fields],
        [[f.db_value(i.__data__.get(f.name)) for f in fields] for i in instances],
        returning=f'"{meta.primary_key.column_name}"',
    )
    if len(instances) == 1:
        instances[0].id = ids[0][0]
    else:
        # A multi-row RETURNING is in no promised order: ids ascend as rows were added.
        for instance, (row_id,) in zip(instances, sorted(ids), strict=True):
            instance.id = row_id
    return instances
