"""The NHI clinic file's import, as an operator runs it: `python -m bench.bench_import`.

Writes a file in the published 14-column layout (docs/nhi-data.md: BOM, CRLF, quoted
multi-value cells, full-width digits in addresses, "-" placeholders, 內政部 county
codes, some termination dates past and some ahead) at two sizes, 3 000 rows and the
clinic file's ~30 000, and runs `smis-tui units import` on each as its own process
against a new SQLite database made by `smis-tui db init`. Reported per size: the wall
time, the peak memory of the process (its maximum resident set), and side by side in
the same run the time Python's csv module takes only to read the same file.

Targets: 30 000 rows in ≤ 60 s; peak memory ≤ 250 MB; and the import streams (the
peak at 30 000 rows ≤ 1.5 × the peak at 3 000): memory does not grow with the file.
When ``DATABASE_URL_BENCH`` names a PostgreSQL database the 30 000-row import runs
there too — **its tables are dropped and recreated**, so give it a scratch database.

Options: ``--sizes 3000,30000``.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from models.unit_data import COUNTIES
from models.unit_import import HOSPITAL_COLUMNS

FULL_WIDTH_DIGITS = str.maketrans("0123456789", "０１２３４５６７８９")
TARGET_SECONDS = 60.0
TARGET_PEAK_MB = 250.0
TARGET_GROWTH = 1.5
LARGE = 30000


def write_clinic_file(path: Path, rows: int) -> None:
    """``rows`` clinics in the published layout; the same file for the same ``rows``."""
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(HOSPITAL_COLUMNS)
        for n in range(rows):
            county = COUNTIES[n % len(COUNTIES)]
            district = county.townships[n % len(county.townships)]
            number = str(n % 300 + 1).translate(FULL_WIDTH_DIGITS)
            ended = ("20200131", "20301231")[n % 2] if n % 50 == 0 else ""
            writer.writerow(
                (
                    f"36{n:08d}",
                    f"{district}測試{n}診所",
                    "西醫診所",
                    f"0{n % 9 + 2}-2{n % 1000:03d}{n % 10000:04d}",
                    f"{county.name}{district}中正路{number}號",
                    "臺北業務組",
                    "4",
                    "門診,預防保健,成人預防保健",
                    "家醫科,內科,小兒科",
                    ended,
                    "星期一上午看診、星期一下午看診、星期一晚上休診",
                    "-",
                    county.moi_code,
                    "20050101",
                )
            )


@dataclass(frozen=True)
class Figure:
    backend: str
    rows: int
    seconds: float
    peak_mb: float
    read_seconds: float


def read_only_seconds(path: Path) -> float:
    start = time.perf_counter()
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for _row in csv.reader(handle):
            pass
    return time.perf_counter() - start


def smis(env: dict[str, str], *args: str) -> tuple[float, float]:
    """Run `smis-tui ARGS`; (seconds, peak resident MB) of that one process."""
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "smis_tui.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # wait4 gives this child's own resource usage (not every child's so far).
    _pid, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    out, err = process.communicate()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"smis-tui {' '.join(args)}: {err.decode(errors='replace')}")
    return seconds, usage.ru_maxrss / 1024  # kB on Linux


def run(backend: str, rows: int, workdir: Path, database_url: str | None) -> Figure:
    data_dir = workdir / f"{backend}-{rows}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMIS_")}
    env.pop("DATABASE_URL", None)
    env["SMIS_DATA_DIR"] = str(data_dir)
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    file = workdir / f"clinics-{rows}.csv"
    if not file.exists():
        write_clinic_file(file, rows)
    smis(env, "db", "init")
    seconds, peak = smis(env, "units", "import", str(file))
    return Figure(backend, rows, seconds, peak, read_only_seconds(file))


def _drop_all(url: str) -> None:
    from models.db import close_database, database_proxy, open_database
    from models.schema import ALL_MODELS

    open_database(url)
    database_proxy.obj.drop_tables(ALL_MODELS, safe=True, cascade=True)
    close_database()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=f"3000,{LARGE}")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    postgres = os.environ.get("DATABASE_URL_BENCH")
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="smis-bench-import-") as temp:
        workdir = Path(temp)
        for rows in sizes:
            print(f"… SQLite {rows} rows", file=sys.stderr, flush=True)
            figures.append(run("SQLite", rows, workdir, None))
        if postgres:
            print(f"… PostgreSQL {max(sizes)} rows", file=sys.stderr, flush=True)
            _drop_all(postgres)
            figures.append(run("PostgreSQL", max(sizes), workdir, postgres))
    print("NHI clinic file import (`smis-tui units import`, one process per run)")
    print()
    print(
        f"{'backend':<11} {'rows':>6} {'import s':>9} {'read-only s':>12} {'× read':>7} {'peak MB':>8}"
    )
    for figure in figures:
        ratio = figure.seconds / figure.read_seconds if figure.read_seconds else 0.0
        print(
            f"{figure.backend:<11} {figure.rows:>6} {figure.seconds:>9.1f} "
            f"{figure.read_seconds:>12.2f} {ratio:>7.0f} {figure.peak_mb:>8.0f}"
        )
    print()
    failures = 0
    sqlite = {figure.rows: figure for figure in figures if figure.backend == "SQLite"}
    for figure in figures:
        if figure.rows == max(sizes):
            ok = figure.seconds <= TARGET_SECONDS
            failures += not ok
            print(
                f"{'✓' if ok else '✗'} {figure.backend} {figure.rows} rows in "
                f"{figure.seconds:.1f} s (target ≤ {TARGET_SECONDS:.0f} s)"
            )
        ok = figure.peak_mb <= TARGET_PEAK_MB
        failures += not ok
        print(
            f"{'✓' if ok else '✗'} {figure.backend} {figure.rows} rows peak "
            f"{figure.peak_mb:.0f} MB (target ≤ {TARGET_PEAK_MB:.0f} MB)"
        )
    if len(sqlite) >= 2:
        small, large = sqlite[min(sqlite)], sqlite[max(sqlite)]
        growth = large.peak_mb / small.peak_mb
        ok = growth <= TARGET_GROWTH
        failures += not ok
        print(
            f"{'✓' if ok else '✗'} peak memory at {large.rows} rows is {growth:.2f} × "
            f"that at {small.rows} (target ≤ {TARGET_GROWTH}: the import streams)"
        )
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
