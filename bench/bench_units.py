"""Unit search at 5165 and 30 000 units: `python -m bench.bench_units`.

Builds a temporary SQLite database per size with the generated directory and times
``UnitDirectory.search`` (one page: the count and 20 rows) for the typical requests of
the 單位查詢 screen, 200 times each after a warm-up. When ``DATABASE_URL_BENCH`` (or
``DATABASE_URL``) names a PostgreSQL database, the same runs there too — **all tables
of that database are dropped and recreated**, so give it a scratch database.

Targets (median per page): SQLite ≤ 2 ms at 5165 units and ≤ 5 ms at 30 000;
PostgreSQL ≤ 5 ms at 30 000. Each case is marked ✓ or ✗ against its target.

The "× scan" column is the side-by-side ratio: each median divided by the time of
one plain substring scan of the unit table (``COUNT(*)`` of a substring that matches
nothing), which is what a search without the gram index (models.unit_search) would
cost at least, measured on the same database in the same run.

Options: ``--sizes 5165,30000``, ``--repeat 200``, ``--no-postgres``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from models import migrate
from models.db import close_database, database_proxy, is_postgres, open_database
from models.schema import ALL_MODELS
from models.unit_data import demo_unit_codes, load_generated_units
from smis_tui.services.units import UnitDirectory, UnitPage

# (backend, units) → the median a page may take, in ms.
TARGET_MS = {("SQLite", 5165): 2.0, ("SQLite", 30000): 5.0, ("PostgreSQL", 30000): 5.0}
WARM_UP = 20


@dataclass(frozen=True)
class Case:
    label: str
    run: Callable[[UnitDirectory], UnitPage]


@dataclass(frozen=True)
class Figure:
    backend: str
    size: int
    label: str
    total: int
    median_ms: float
    p95_ms: float
    scan_ms: float


def cases(size: int) -> list[Case]:
    middle = max(1, (size // 20) // 2)
    prefix = demo_unit_codes(size)["clinic"][:4]
    return [
        Case("no query, page 1", lambda d: d.search()),
        Case(f"no query, middle page ({middle})", lambda d: d.search(page=middle)),
        Case("name 診所", lambda d: d.search("診所")),
        Case(f"code prefix {prefix}", lambda d: d.search(prefix)),
        Case("county 新北市", lambda d: d.search(county="新北市")),
        Case("county 新北市 + 診所", lambda d: d.search("診所", county="新北市")),
        Case("rare name 礁溪", lambda d: d.search("礁溪")),
        Case("long name 牙醫診所", lambda d: d.search("牙醫診所")),
        Case("one character 台", lambda d: d.search("台")),
    ]


def _time(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    for _ in range(WARM_UP):
        fn()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    p95 = samples[min(len(samples) - 1, round(0.95 * len(samples)) - 1)]
    return statistics.median(samples), p95


def _scan_ms(repeat: int) -> float:
    """One bare pass over the search index: COUNT(*) of a substring found nowhere."""
    db = database_proxy.obj
    if is_postgres(db):
        sql = "SELECT COUNT(*) FROM unit WHERE active = %s AND search_key LIKE %s"
        params: list[object] = [True, "%~nowhere~%"]
    else:
        sql = "SELECT COUNT(*) FROM unit WHERE active = ? AND instr(search_key, ?) > 0"
        params = [True, "~nowhere~"]
    median, _ = _time(lambda: db.execute_sql(sql, params).fetchall(), repeat)
    return median


def _load_seconds(size: int) -> float:
    """Give the open database its schema and ``size`` units; the seconds the units took
    (load_generated_units also vacuums and analyses, see models.unit_search)."""
    migrate.upgrade()
    started = time.perf_counter()
    load_generated_units(total=size)
    return time.perf_counter() - started


@contextmanager
def sqlite_database(size: int) -> Iterator[float]:
    with tempfile.TemporaryDirectory(prefix="bench-units-") as tmp:
        open_database(None, Path(tmp) / "bench.sqlite3")
        try:
            yield _load_seconds(size)
        finally:
            close_database()


@contextmanager
def postgres_database(url: str, size: int) -> Iterator[float]:
    db = open_database(url, Path("/nonexistent"))
    try:
        db.drop_tables(list(reversed(ALL_MODELS)), safe=True, cascade=True)
        yield _load_seconds(size)
    finally:
        close_database()


def measure(backend: str, size: int, repeat: int) -> list[Figure]:
    directory = UnitDirectory()
    scan = _scan_ms(repeat)
    figures = []
    for case in cases(size):
        total = case.run(directory).total
        median, p95 = _time(partial(case.run, directory), repeat)
        figures.append(Figure(backend, size, case.label, total, median, p95, scan))
    return figures


def verdict(figure: Figure) -> str:
    target = TARGET_MS.get((figure.backend, figure.size))
    if target is None:
        return ""
    return f"{'✓' if figure.median_ms <= target else '✗'} ≤ {target:g} ms"


def table(figures: list[Figure]) -> str:
    head = "| backend | units | case | matches | median ms | p95 ms | × scan | target |"
    lines = [head, "|---|---:|---|---:|---:|---:|---:|---|"]
    for f in figures:
        lines.append(
            f"| {f.backend} | {f.size} | {f.label} | {f.total} | {f.median_ms:.2f} | "
            f"{f.p95_ms:.2f} | {f.median_ms / f.scan_ms:.2f} | {verdict(f)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="5165,30000")
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    url = os.environ.get("DATABASE_URL_BENCH") or os.environ.get("DATABASE_URL")
    if url and not url.startswith(("postgres://", "postgresql://")):
        url = None
    if args.no_postgres:
        url = None

    figures: list[Figure] = []
    loads: list[str] = []
    backends: list[tuple[str, Callable[[int], AbstractContextManager[float]]]] = [
        ("SQLite", sqlite_database)
    ]
    if url:
        backends.append(("PostgreSQL", partial(postgres_database, url)))
    for backend, open_for in backends:
        for size in sizes:
            print(f"… {backend} {size} units", file=sys.stderr, flush=True)
            with open_for(size) as load_seconds:
                loads.append(f"{backend} {size}: load {load_seconds:.2f} s")
                figures.extend(measure(backend, size, args.repeat))

    print(f"Unit search, one page of 20 (count + rows), {args.repeat} runs after warm-up")
    print(f"Python {sys.version.split()[0]}, SQLite {_sqlite_version()}")
    print()
    print(table(figures))
    print()
    print(
        "× scan: median / one plain substring scan of the unit table (a search without the gram index)."
    )
    for line in loads:
        print(line)
    missed = [
        f
        for f in figures
        if (f.backend, f.size) in TARGET_MS and f.median_ms > TARGET_MS[(f.backend, f.size)]
    ]
    print(
        "targets met"
        if not missed
        else "targets missed: " + ", ".join(f"{f.backend} {f.size} {f.label}" for f in missed)
    )
    return 0


def _sqlite_version() -> str:
    import sqlite3

    return sqlite3.sqlite_version


if __name__ == "__main__":
    sys.exit(main())
