"""The kiosk as a person meets it: `python -m bench.bench_tui`.

Three figures, side by side in one run, all headless, against a temporary SQLite
database prepared once like `smis-tui db init` + `smis-tui demo init` (5165 units,
the demo accounts and the demo PKI):

1. Start-up: wall time from just before the parent spawns a fresh process to the
   login screen mounted, its pending messages processed and a frame painted, i.e. it
   includes the interpreter's start and every import. The kiosk child goes through the
   real `smis-tui run --kiosk --demo` path (``smis_tui.cli.main``; only ``App.run`` is
   made headless); the bare child is a Textual App showing one Static. Each is run
   ``--runs`` times (after one unmeasured warm-up each, which fills the bytecode
   caches, as any start after a kiosk's first one finds them), interleaved; median of each and the ratio kiosk / bare. Target
   ≤ 1.5 ×. The kiosk's own start-up work (smis_tui.boot: the garbage collector held
   off until boot, TEXTUAL_FPS) is part of what is measured; the bare App is
   plain Textual, as the target defines it.
2. Peak memory (``ru_maxrss``) of those same processes: the kiosk after the login
   screen is up and a unit search (F2 → 選擇單位 → typing 診所) has run; the bare App
   after its screen is up. Median over the runs. Target ≤ 80 MiB for the kiosk.
3. Keystroke to updated results in 單位查詢 at 5165 units (in this process, with
   ``run_test``): for each query the keys are pressed into 單位名稱, and the time runs
   from just before the last key press until the screen is first painted after the
   table received the new page (timestamps taken inside the screen: Pilot's press
   itself returns only after the app has been idle for a while). The screen has no
   typing timer: a key starts a search at once unless one is running, and then the
   newest query goes next. The column "search started → results painted" is the same
   end point measured from the start of the search that answered (its worker thread,
   the answer message, the table refill and the paint). Target ≤ 50 ms median.

Internal use: ``--child kiosk|bare`` is the entry point of the spawned processes.
Options: ``--runs 15`` (the machines are noisy: ±10 % between batches).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Only the standard library up here: the bare child imports this module too.

if TYPE_CHECKING:
    from textual.pilot import Pilot

    from smis_tui.screens.unit_search import UnitSearchScreen

SIZE = (100, 40)
TARGET_RATIO = 1.5
TARGET_MIB = 80.0
TARGET_KEY_MS = 50.0
CHILD_TIMEOUT = 60.0
QUERIES = (
    "診所",
    "衛生局",
    "台北",
    "醫院",
    "3501",
    "金門",
    "牙醫",
    "中醫",
    "藥局",
    "衛生所",
    "新北",
    "高雄",
    "台中",
    "臺南",
    "桃園",
    "礁溪",
    "澎湖",
    "花蓮",
    "宜蘭",
    "基隆",
    "嘉義",
    "屏東",
    "金門縣衛生局",
    "牙醫診所",
    "3601",
    "59",
    "23",
    "36",
    "仁愛",
    "沒有這個單位",
)
# Environment that would point a child elsewhere than the prepared database.
_SCRUBBED = ("DATABASE_URL", "SMIS_")


# ------------------------------------------------------------------ children


def _wall() -> float:
    # time.time(): one clock shared by the parent and its children.
    return time.time()


async def _first_screen_up(pilot: Pilot[Any], is_first: Callable[[], bool]) -> None:
    """Wait until the first screen is mounted, its (and the app's) pending messages
    are processed and a frame has been painted. ``pilot.pause(0)`` processes the
    pending messages and paints without Textual's ≥ 20 ms idle detection."""
    deadline = time.monotonic() + CHILD_TIMEOUT
    while not is_first():
        if time.monotonic() > deadline:
            raise TimeoutError("the first screen never came up")
        await pilot.pause(0)
    await pilot.pause(0)


def _maxrss_mib() -> float:
    # Linux reports KiB (macOS bytes; this bench runs on the Debian kiosk image).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _settle(pilot: Pilot[Any], screen: UnitSearchScreen) -> None:
    deadline = time.monotonic() + CHILD_TIMEOUT
    await pilot.pause(0)
    while screen.is_searching:
        if time.monotonic() > deadline:
            raise TimeoutError("the unit search never answered")
        await pilot.pause(0.005)
    await pilot.pause(0)


def child_kiosk(report: dict[str, float]) -> None:
    # What the `smis-tui` script imports before it runs a command; the rest is the
    # command's own business (cmd_run imports the app).
    from smis_tui import cli

    async def autopilot(pilot: Pilot[Any]) -> None:
        from smis_tui.screens.login import LoginScreen

        app = pilot.app
        await _first_screen_up(
            pilot, lambda: isinstance(app.screen, LoginScreen) and app.screen.is_mounted
        )
        report["ready"] = _wall()
        # Then the database, the key and the card readers, opened in a worker thread
        # behind the first frame (smis_tui.boot): until then a card is not yet seen.
        deadline = time.monotonic() + CHILD_TIMEOUT
        while not app.is_ready:  # type: ignore[attr-defined]
            if time.monotonic() > deadline:
                raise TimeoutError("the kiosk never finished booting")
            await pilot.pause(0.001)
        report["booted"] = _wall()
        from smis_tui.screens.new_account import NewAccountScreen
        from smis_tui.screens.unit_search import UnitSearchScreen

        # A unit search, the way a person gets there: F2, then 選擇單位, then typing.
        await pilot.press("f2")
        while not (isinstance(app.screen, NewAccountScreen) and app.screen.is_mounted):
            await pilot.pause(0.005)
        await pilot.pause(0)
        app.screen.query_one("#choose-unit").press()  # type: ignore[attr-defined]
        while not isinstance(app.screen, UnitSearchScreen):
            await pilot.pause(0.005)
        screen = app.screen
        await _settle(pilot, screen)
        await pilot.press(*"診所")
        await _settle(pilot, screen)
        assert screen.result is not None and screen.result.total > 0
        report["maxrss_mib"] = _maxrss_mib()
        app.exit()

    # cmd_run holds the garbage collector off before it imports the app; importing
    # Textual here to make it headless must not escape that (see smis_tui.boot).
    from smis_tui.boot import hold_collector, prepare_textual

    hold_collector()
    prepare_textual()
    from textual.app import App

    run = App.run

    def headless_run(self: App[Any], **_: object) -> Any:
        report["app_run"] = _wall()
        return run(self, headless=True, size=SIZE, auto_pilot=autopilot)

    App.run = headless_run  # type: ignore[method-assign]  # this child only
    code = cli.main(["run", "--kiosk", "--demo"])
    if code != 0:
        raise SystemExit(f"smis-tui run exited with {code}")


def child_bare(report: dict[str, float]) -> None:
    from textual.app import App, ComposeResult
    from textual.widgets import Static

    class Bare(App[None]):
        def compose(self) -> ComposeResult:
            yield Static("智慧防疫物資管理資訊系統", id="hello")

    async def autopilot(pilot: Pilot[Any]) -> None:
        app = pilot.app
        await _first_screen_up(pilot, lambda: bool(app.screen.query("#hello")))
        report["ready"] = _wall()
        report["maxrss_mib"] = _maxrss_mib()
        app.exit()

    app = Bare()
    report["app_run"] = _wall()
    app.run(headless=True, size=SIZE, auto_pilot=autopilot)


def child(kind: str) -> int:
    report: dict[str, float] = {"main": _wall()}
    (child_kiosk if kind == "kiosk" else child_bare)(report)
    if "ready" not in report or "maxrss_mib" not in report:
        raise SystemExit(f"{kind}: the app exited before its first screen was up")
    print(json.dumps(report))
    return 0


# ------------------------------------------------------------------ parent


def prepare(data_dir: Path) -> None:
    """`smis-tui db init` + `smis-tui demo init` against ``data_dir``.

    Runs in a child of its own (``--prepare``): Linux carries a process's peak RSS over
    ``exec`` into the new program's ``ru_maxrss``, so the parent stays small (standard
    library only) until every measured child has run."""
    from models.db import open_database
    from models.migrate import upgrade
    from models.purpose import mark_demo_database
    from models.unit_data import load_generated_units
    from smis_tui.core.config import Settings
    from smis_tui.demo import create_demo
    from smis_tui.services import build_services
    from smis_tui.services.crypto import create_key_file

    settings = Settings(data_dir=data_dir)
    data_dir.mkdir(parents=True)
    create_key_file(settings.resolved_key_file)
    open_database(None, settings.sqlite_path)
    upgrade()
    load_generated_units()
    mark_demo_database()
    create_demo(build_services(settings), data_dir / "demo-pki")


def _run_child(args: list[str], data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED)}
    env["SMIS_DATA_DIR"] = str(data_dir)
    done = subprocess.run(
        [sys.executable, "-m", "bench.bench_tui", *args],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT * 3,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done


def spawn(kind: str, data_dir: Path) -> dict[str, float]:
    started = _wall()
    done = _run_child(["--child", kind], data_dir)
    report: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "startup": report["ready"] - started,
        "interpreter": report["main"] - started,
        "before_app": report["app_run"] - report["main"],
        "app": report["ready"] - report["app_run"],
        "boot": report.get("booted", report["ready"]) - report["ready"],
        "maxrss_mib": report["maxrss_mib"],
    }


def startup(data_dir: Path, runs: int) -> dict[str, list[dict[str, float]]]:
    samples: dict[str, list[dict[str, float]]] = {"kiosk": [], "bare": []}
    for attempt in range(runs + 1):
        for kind in ("kiosk", "bare"):
            figures = spawn(kind, data_dir)
            if attempt:  # the first of each is the warm-up
                samples[kind].append(figures)
        print(f"… start-up run {attempt}/{runs}", file=sys.stderr, flush=True)
    return samples


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]


async def keystrokes(data_dir: Path) -> tuple[list[float], list[float]]:
    """(last key → results ms, search started → results ms) per query."""
    from textual.widgets import DataTable, Input

    from smis_tui.app import SmisApp
    from smis_tui.core.config import Settings
    from smis_tui.demo import load_demo_cards
    from smis_tui.screens.unit_search import UnitSearchScreen
    from smis_tui.services import build_services
    from smis_tui.services.card_runtime import demo_runtime

    class TimedUnitSearch(UnitSearchScreen):
        """The screen, noting when it starts a search, when a page of results is put in
        the table and when the screen is next painted (nothing else changed)."""

        started_at = 0.0
        filled_at = 0.0
        painted_at = 0.0

        def _start_newest(self) -> None:
            self.started_at = time.perf_counter()
            super()._start_newest()

        def _fill_table(self, units: list[Any]) -> None:
            super()._fill_table(units)
            self.filled_at = time.perf_counter()

        def _note_paint(self) -> None:
            if self.filled_at > self.painted_at:
                self.painted_at = time.perf_counter()

        def _compositor_refresh(self) -> None:
            super()._compositor_refresh()
            self._note_paint()

        def _refresh_layout(self, size: Any = None, scroll: bool = False) -> None:
            super()._refresh_layout(size, scroll)
            self._note_paint()

    services = build_services(Settings(data_dir=data_dir))
    app = SmisApp(
        services,
        demo_runtime(services, data_dir / "demo-pki"),
        kiosk=True,
        demo_cards=load_demo_cards(),
    )
    totals: list[float] = []
    after: list[float] = []
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = TimedUnitSearch(services.units, app.language)
        app.push_screen(screen)
        await _settle(pilot, screen)
        field = screen.query_one("#unit-search-query", Input)
        table = screen.query_one(DataTable)

        def shown(previous: object) -> bool:
            result = screen.result
            if screen.is_searching or result is None or result is previous:
                return False
            if table.row_count != len(result.rows):
                return False
            shown_keys = [row.key.value for row in table.ordered_rows]
            return shown_keys == [str(row.id) for row in result.rows]

        for query in QUERIES:
            field.focus()
            field.value = ""
            await _settle(pilot, screen)
            previous = screen.result
            if len(query) > 1:
                await pilot.press(*query[:-1])
            started = time.perf_counter()
            # Pilot's press returns only once the app has been idle for a while: the
            # end point is therefore read from the screen's own timestamps.
            await pilot.press(query[-1])
            deadline = time.monotonic() + CHILD_TIMEOUT
            while not shown(previous) or screen.painted_at < screen.filled_at:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no results for {query!r}")
                await pilot.pause(0.005)
            assert field.value == query, (field.value, query)
            assert screen.started_at >= started
            totals.append((screen.painted_at - started) * 1000)
            after.append((screen.painted_at - screen.started_at) * 1000)
    return totals, after


# ------------------------------------------------------------------ report


def _mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="kiosk start-up, memory and search latency")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--child", choices=("kiosk", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child)
    if args.prepare:
        prepare(args.prepare)
        return 0

    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-tui-") as tmp:
        data_dir = Path(tmp) / "data"
        print("… preparing the database (db init + demo init)", file=sys.stderr, flush=True)
        _run_child(["--prepare", str(data_dir)], data_dir)
        parent_mib = _maxrss_mib()
        samples = startup(data_dir, args.runs)
        # Only now does this process import the application (see prepare()).
        import asyncio
        from importlib.metadata import version

        from models.db import close_database, open_database
        from smis_tui.boot import prepare_textual
        from smis_tui.core.config import Settings

        prepare_textual()  # as `smis-tui run` does, before Textual is imported

        print(f"… keystrokes, {len(QUERIES)} queries", file=sys.stderr, flush=True)
        open_database(None, Settings(data_dir=data_dir).sqlite_path)
        try:
            totals, after = asyncio.run(keystrokes(data_dir))
        finally:
            close_database()

    def median(kind: str, key: str) -> float:
        return statistics.median(s[key] for s in samples[kind])

    kiosk_s, bare_s = median("kiosk", "startup"), median("bare", "startup")
    kiosk_mib, bare_mib = median("kiosk", "maxrss_mib"), median("bare", "maxrss_mib")
    ratio = kiosk_s / bare_s
    key_median, key_p95 = statistics.median(totals), _p95(totals)
    after_median, after_p95 = statistics.median(after), _p95(after)

    print(f"Kiosk start-up, memory and unit-search latency ({args.runs} runs of each process)")
    print(
        f"{platform.machine()} {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, Textual {version('textual')}, "
        f"terminal {SIZE[0]}×{SIZE[1]} headless"
    )
    print()
    print("| measure | kiosk | bare | ratio or figure | target | ✓/✗ |")
    print("|---|---:|---:|---:|---|---|")
    print(
        f"| start-up to login screen, median s | {kiosk_s:.3f} | {bare_s:.3f} | "
        f"{ratio:.2f} × | ≤ {TARGET_RATIO:g} × | {_mark(ratio <= TARGET_RATIO)} |"
    )
    for key, label in (
        ("interpreter", "… interpreter start"),
        ("before_app", "… imports (+ services, runtime) until App.run"),
        ("app", "… App.run to first screen up"),
    ):
        kiosk_part, bare_part = median("kiosk", key), median("bare", key)
        print(
            f"| {label} | {kiosk_part:.3f} | {bare_part:.3f} | {kiosk_part / bare_part:.2f} × | | |"
        )
    boot_s = median("kiosk", "boot")
    print(
        f"| … then the database, key and readers opened behind it (boot), median s | "
        f"{boot_s:.3f} | | cards are seen from then on | | |"
    )
    print(
        f"| peak memory (ru_maxrss), median MiB | {kiosk_mib:.1f} | {bare_mib:.1f} | "
        f"{kiosk_mib / bare_mib:.2f} × | kiosk ≤ {TARGET_MIB:g} MiB | "
        f"{_mark(kiosk_mib <= TARGET_MIB)} |"
    )
    print(
        f"| last key → results at 5165 units, median ms (p95) | {key_median:.0f} "
        f"({key_p95:.0f}) | | no typing timer | "
        f"≤ {TARGET_KEY_MS:g} ms | {_mark(key_median <= TARGET_KEY_MS)} |"
    )
    print(
        f"| … search started → results painted, median ms (p95) | {after_median:.1f} "
        f"({after_p95:.1f}) | | search + table refill | | |"
    )
    print()
    print(
        "Start-up runs from spawning `python -m bench.bench_tui --child …` (interpreter start "
        "and all imports included) to the first screen mounted, idle and painted."
    )
    print(
        f"Keystroke figure: {len(QUERIES)} queries, from just before the last key press until "
        f"the screen's first paint after its table received the new page."
    )
    print(
        f"Peak memory is each child's own ru_maxrss once its screen is up (the kiosk's after "
        f"a unit search); the children are spawned from a parent of {parent_mib:.0f} MiB, "
        f"whose peak Linux would carry over exec."
    )
    print(f"(whole run {time.perf_counter() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
