"""Keys typed ahead land where they were meant, through a real terminal.

A laggy SSH link or a paste hands the kiosk a whole run of keys in one read. Textual
handles a printable character in the focused field at once but runs a bound key (Tab)
only after it has bubbled up to the app (Textual issue #6605), so ``A12345`` Tab ``Z``
arriving together used to leave A12345Z in the first field. tests/tui/test_typed_ahead.py
checks the fix with Pilot; here the real kiosk runs as `make run` starts it
(`smis-tui run --kiosk --demo`, on a SQLite database and demo cards of its own) in an
80×24 tmux pane: keys go in with `tmux send-keys`, the screen comes back with
`tmux capture-pane`, the focused field is where the terminal's cursor is.

All the keys of one `send-keys` call are one write to the pane (tmux queues them in the
pane's input buffer and writes the buffer out once the command is done), so the kiosk
reads them together as it would a paste; test_one_send_keys_call_is_one_read checks
that with this machine's tmux. Every other key is sent on its own and waited for.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT = 80, 24
TIMEOUT = 20.0
SESSION = "kiosk"

LOGIN_MARK = "使用者登入"
APPLY_MARK = "新帳號申請"
ID_LABEL = "使用者身分證號※"
CHOOSE_UNIT = "選取"
CONFIRM = "確定"
UNIT_SEARCH_MARK = "單位查詢"
UNIT_NAME = "金門縣衛生局"
UNIT_ROW = re.compile(r"金門縣\s+\d{10}\s+" + UNIT_NAME)
NAME_LABEL = "使用者姓名※"
PHONE_LABEL = "主要連絡電話※"
BACKUP_PHONE_LABEL = "備用連絡電話"
# What fields and boxes are drawn with, besides their text.
BORDERS = str.maketrans(dict.fromkeys("▊▎▔▁│╭╮╰╯─┃┏┓┗┛━", " "))
SETTLE_SECONDS = 0.2


def require_tmux() -> None:
    if shutil.which("tmux"):
        return
    text = "tmux is not installed: `make test` installs it"
    if os.environ.get("CI") or os.environ.get("SMIS_REQUIRE_POSTGRES"):
        pytest.fail(text)
    pytest.skip(text)


def smis_tui(*args: str) -> list[str]:
    """`smis-tui ARGS` of this checkout (started from its root, so it is this one)."""
    return [sys.executable, "-m", "smis_tui.cli", *args]


@dataclass(frozen=True)
class KioskData:
    """A kiosk's own data directory: a new SQLite database, key and demo cards."""

    env: dict[str, str]
    # The PIN of the first demo card: the login screen lists the demo cards once the
    # kiosk has booted, and only then does F2 open 新帳號申請.
    first_demo_pin: str
    newcomer_id: str  # the ID on the card of the person with no account yet


@pytest.fixture(scope="module")
def kiosk_data(tmp_path_factory: pytest.TempPathFactory) -> KioskData:
    """Made by `smis-tui db init --demo` and `smis-tui demo init`, as `make run` does; the
    environment has nothing of the user's (no DATABASE_URL, no other SMIS_* setting)."""
    from card.identity import identity_from_certificate

    require_tmux()
    data_dir = tmp_path_factory.mktemp("typed-ahead") / "data"
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("SMIS_", "TMUX")) and name != "DATABASE_URL"
    }
    env |= {"SMIS_DATA_DIR": str(data_dir), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    for command in (("db", "init", "--demo"), ("demo", "init")):
        done = subprocess.run(
            smis_tui(*command), cwd=REPO, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"smis-tui {' '.join(command)}: {done.stderr}"
    first_card = re.search(r"^\s+(\d{6})\s", done.stdout, re.MULTILINE)
    assert first_card is not None, f"no demo card listed: {done.stdout}"
    newcomer = data_dir / "demo-pki" / "users" / "newcomer.pem"
    person_id = identity_from_certificate(newcomer.read_bytes()).id_hint
    assert person_id is not None  # a 醫事人員卡 carries the whole ID
    return KioskData(env, first_card.group(1), person_id)


class Terminal:
    """A private tmux server (its socket in a directory of its own, removed at the end)
    with one 80×24 pane."""

    def __init__(self, env: dict[str, str]) -> None:
        # Short, unlike pytest's tmp_path: a socket's path has at most 107 bytes.
        self.directory = Path(tempfile.mkdtemp(prefix="smis-tmux-"))
        config = self.directory / "tmux.conf"
        config.write_text(
            "set -g status off\n"
            "set -g remain-on-exit on\n"  # a crash's traceback stays on the screen
            "set -g default-terminal tmux-256color\n"
        )
        self.env = env
        self.command = ["tmux", "-u", "-S", str(self.directory / "socket"), "-f", str(config)]

    def tmux(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            [*self.command, *args],
            env=self.env,
            capture_output=True,
            encoding="utf-8",
            errors="replace",
            timeout=10,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def start(self, command: list[str]) -> None:
        self.tmux(
            "new-session", "-d", "-s", SESSION, "-x", str(WIDTH), "-y", str(HEIGHT),
            "-c", str(REPO), shlex.join(command),
        )  # fmt: skip

    def close(self) -> None:
        self.tmux("kill-server", check=False)
        shutil.rmtree(self.directory, ignore_errors=True)

    # ----- keys

    def type_at_once(self, *keys: str) -> None:
        """All of ``keys`` in one write: an argument that names a key (Tab) is that key,
        any other is typed as its characters."""
        self.tmux("send-keys", "-t", SESSION, *keys)

    def type_text(self, text: str) -> None:
        self.tmux("send-keys", "-t", SESSION, "-l", text)

    def press(self, key: str, until: Callable[[], bool], what: str) -> None:
        self.tmux("send-keys", "-t", SESSION, key)
        self.wait(what, until)

    # ----- screen

    def lines(self) -> list[str]:
        return self.tmux("capture-pane", "-p", "-t", SESSION).splitlines()

    def styled_line(self, row: int) -> str:
        """Line ``row`` with its colours and attributes (SGR sequences)."""
        styled = self.tmux("capture-pane", "-p", "-e", "-t", SESSION).splitlines()
        return styled[row] if row < len(styled) else ""

    def shows(self, *marks: str) -> bool:
        screen = "\n".join(self.lines())
        return all(mark in screen for mark in marks)

    def row_of(self, mark: str | re.Pattern[str]) -> int:
        """The first line that shows ``mark``."""
        for row, line in enumerate(self.lines()):
            if mark.search(line) if isinstance(mark, re.Pattern) else mark in line:
                return row
        raise AssertionError(f"{mark!r} is not on the screen:\n" + "\n".join(self.lines()))

    def screen_and_cursor(self) -> tuple[list[str], int]:
        """The screen and the cursor's line as one tmux command list: the server runs
        it whole, with no output from the kiosk drawn in between."""
        out = self.tmux(
            "capture-pane", "-p", "-t", SESSION, ";",
            "display-message", "-p", "-t", SESSION, "cursor:#{cursor_y}",
        )  # fmt: skip
        lines = out.splitlines()
        assert lines and lines[-1].startswith("cursor:"), out
        return lines[:-1], int(lines[-1].removeprefix("cursor:"))

    def cursor_row(self) -> int:
        """The terminal cursor's line: the kiosk puts it in the field that has the focus."""
        return int(self.tmux("display-message", "-p", "-t", SESSION, "#{cursor_y}"))

    def has_cursor(self, label: str) -> Callable[[], bool]:
        """Whether the field on the line of ``label`` has the focus (the line is looked
        up each time: a screen may lay itself out again once it is up)."""
        return lambda: self.shows(label) and self.cursor_row() == self.row_of(label)

    def text_below(self, label: str) -> str:
        """What the field under the line of ``label`` shows: the first line below it
        with more than borders on it."""
        lines = [bare(line) for line in self.lines()]
        start = self.row_of(label)
        return next((line for line in lines[start + 1 :] if line), "")

    def phone_on(self, label: str) -> tuple[str, str]:
        """The number and the extension (#分機) shown on the line of ``label``."""
        line = bare(self.lines()[self.row_of(label)].split(label, 1)[1])
        found = re.match(r"(.*?)\s*#\s*(\S*)", line)
        assert found is not None, f"no # between number and extension: {line!r}"
        return found.group(1), found.group(2)

    def wait(self, what: str, condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.05)
        pytest.fail(f"not within {timeout} s: {what}; screen:\n" + "\n".join(self.lines()))

    def settle(self) -> None:
        """Until the screen's text stays the same for a moment (a screen may lay itself
        out again just after it comes up)."""
        previous = self.lines()

        def unchanged() -> bool:
            nonlocal previous
            time.sleep(SETTLE_SECONDS)
            now, before = self.lines(), previous
            previous = now
            return now == before

        self.wait("the screen to stay still", unchanged)

    def restyled(self, mark: str | re.Pattern[str]) -> Callable[[], bool]:
        """Whether the line of ``mark`` is drawn otherwise than now: the focus came to
        what is on it (a button, a table's row)."""
        self.settle()
        row = self.row_of(mark)
        before = self.styled_line(row)
        return lambda: self.row_of(mark) == row and self.styled_line(row) != before


def bare(text: str) -> str:
    """``text`` without the borders drawn around fields and boxes."""
    return text.translate(BORDERS).strip()


@pytest.fixture
def kiosk(kiosk_data: KioskData) -> Iterator[Terminal]:
    """The kiosk at its login screen, booted, in a pane of its own tmux server."""
    terminal = Terminal(kiosk_data.env)
    try:
        terminal.start(smis_tui("run", "--kiosk", "--demo"))
        booted = (LOGIN_MARK, APPLY_MARK, kiosk_data.first_demo_pin)
        terminal.wait("the login screen, booted", lambda: terminal.shows(*booted))
        yield terminal
    finally:
        terminal.close()


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (("A12345", "Tab", "Z"), b"A12345\tZ"),
        (("02-23959825", "Tab", "99", "Tab"), b"02-23959825\t99\t"),
    ],
)
def test_one_send_keys_call_is_one_read(
    kiosk_data: KioskData, keys: tuple[str, ...], expected: bytes
) -> None:
    """What the tests below rely on: the program in the pane gets the keys of one
    `send-keys` call in its first read, all of them."""
    probe = (
        "import os, tty\n"
        "tty.setraw(0)\n"
        "print('ready', end='\\r\\n', flush=True)\n"
        "print('read', os.read(0, 4096).hex(), 'done', end='\\r\\n', flush=True)\n"
        "os.read(0, 1)\n"  # and stays, its screen as it is, until the server goes
    )
    terminal = Terminal(kiosk_data.env)
    try:
        terminal.start([sys.executable, "-c", probe])
        terminal.wait("the probe", lambda: terminal.shows("ready"))
        terminal.type_at_once(*keys)
        terminal.wait("the probe's first read", lambda: terminal.shows(" done"))
        shown = re.search(r"read ([0-9a-f]*) done", "\n".join(terminal.lines()))
        assert shown is not None
        first_read = bytes.fromhex(shown.group(1))
    finally:
        terminal.close()
    assert first_read == expected


def test_id_tab_and_a_key_typed_ahead_leave_the_id_as_typed(kiosk: Terminal) -> None:
    kiosk.press("F2", until=lambda: kiosk.shows(ID_LABEL), what="新帳號申請")
    choose_unit_focused = kiosk.restyled(CHOOSE_UNIT)

    kiosk.type_at_once("A12345", "Tab", "Z")

    kiosk.wait("Tab moved the focus to 選取", choose_unit_focused)
    assert kiosk.text_below(ID_LABEL) == "A12345"


def open_the_form(kiosk: Terminal, kiosk_data: KioskData) -> None:
    """新帳號申請 with the newcomer's ID and 金門縣衛生局, the focus on 確定."""
    newcomer_id = kiosk_data.newcomer_id
    kiosk.press("F2", until=lambda: kiosk.shows(ID_LABEL), what="新帳號申請")
    kiosk.type_text(newcomer_id)
    kiosk.wait("the ID typed", lambda: kiosk.text_below(ID_LABEL) == newcomer_id)
    kiosk.press("F3", until=lambda: kiosk.shows(UNIT_SEARCH_MARK), what="單位查詢")
    kiosk.type_text(UNIT_NAME)
    kiosk.wait(f"{UNIT_NAME} found", lambda: UNIT_ROW.search("\n".join(kiosk.lines())) is not None)
    kiosk.press("Down", until=kiosk.restyled(UNIT_ROW), what="the results' focus")
    kiosk.press(
        "Enter",
        until=lambda: kiosk.shows(ID_LABEL, UNIT_NAME) and not kiosk.shows(UNIT_SEARCH_MARK),
        what=f"{UNIT_NAME} chosen",
    )
    # The focus is back in the ID field: Tab to 選取, Tab to 確定.
    kiosk.press("Tab", until=kiosk.restyled(CHOOSE_UNIT), what="選取's focus")
    kiosk.press("Tab", until=kiosk.restyled(CONFIRM), what="確定's focus")


def test_the_terminal_cursor_stays_in_the_focused_field_as_the_form_lays_itself_out(
    kiosk: Terminal, kiosk_data: KioskData
) -> None:
    """An input method (注音, 倉頡) opens its candidate window at the terminal's cursor.
    The form is focused before its first layout, and the 80×24 layout then moves every
    field up: once the screen is still, the cursor must be in 使用者姓名 (the first
    field), and in the phone field after Tab, not where a field was before the move.
    (Screens looked at mid-frame, while the kiosk's output is still arriving, may show
    the new layout before the cursor's move: only a still screen is judged.)"""
    open_the_form(kiosk, kiosk_data)
    kiosk.type_at_once("Enter")
    kiosk.wait("the application form", lambda: kiosk.shows(NAME_LABEL))
    kiosk.settle()
    lines, cursor = kiosk.screen_and_cursor()
    assert cursor < len(lines) and NAME_LABEL in lines[cursor], (
        f"the cursor is on line {cursor}, not in 使用者姓名:\n" + "\n".join(lines)
    )
    kiosk.press("Tab", until=kiosk.has_cursor(PHONE_LABEL), what="the phone's focus")


def test_phone_and_extension_typed_ahead_each_land_in_their_own_field(
    kiosk: Terminal, kiosk_data: KioskData
) -> None:
    open_the_form(kiosk, kiosk_data)
    kiosk.press("Enter", until=lambda: kiosk.shows(PHONE_LABEL), what="the application form")
    # The focus is in 使用者姓名 first; the phone is the next field.
    kiosk.press("Tab", until=kiosk.has_cursor(PHONE_LABEL), what="the phone's focus")

    kiosk.type_at_once("02-23959825", "Tab", "99", "Tab")

    kiosk.wait("two Tabs on, in 備用連絡電話", kiosk.has_cursor(BACKUP_PHONE_LABEL))
    assert kiosk.phone_on(PHONE_LABEL) == ("02-23959825", "99")
