"""Every CLI command with hostile arguments, and `units import` with malformed files.

A refused argument ends with exit code 1 or 2 and one clear last line on stderr; never
a traceback, and nothing of the argument reaches the terminal as an escape sequence
or another control character. A refused file changes nothing (all or nothing).
"""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.db import close_database, open_database, write_transaction
from models.schema import AuditEvent, Unit
from models.unit_import import HOSPITAL_COLUMNS
from smis_tui import cli
from tests.hostile import NASTY, RAW_ESCAPE, STRESS, examples, hidden_chars, hostile_text

REPO = Path(__file__).resolve().parents[2]
# NUL cannot be passed in argv; everything else can.
ARGV_NASTY = [s for s in NASTY if "\x00" not in s]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("cli") / "data"
    env = {**_env(data)}
    done = subprocess.run(
        [sys.executable, "-m", "smis_tui.cli", "db", "init", "--units", "60"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return data


def _env(data: Path) -> dict[str, str]:
    env = {**os.environ, "SMIS_DATA_DIR": str(data), "PYTHONIOENCODING": "utf-8"}
    for name in ("DATABASE_URL", "SMIS_KEY_FILE", "SMIS_CONFIG", "SMIS_CARD_AGENT"):
        env.pop(name, None)
    return env


def _check_output(
    stdout: str, stderr: str, code: int, allowed: set[int], *, allow: str = "\n"
) -> None:
    assert code in allowed, (code, stderr[-500:])
    assert "Traceback" not in stderr, stderr[-2000:]
    for stream in (stdout, stderr):
        assert not RAW_ESCAPE.search(stream), stream[-500:]
        assert not hidden_chars(stream, allow=allow), stream[-500:]
    if code in (1, 2):
        last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        assert last, "no message"
        assert len(last) < 20_000


def _run(data: Path, *argv: str, allowed: set[int], timeout: float = 60, allow: str = "\n") -> str:
    done = subprocess.run(
        [sys.executable, "-m", "smis_tui.cli", *argv],
        env=_env(data),
        cwd=data.parent,
        capture_output=True,
        timeout=timeout,
    )
    stdout = done.stdout.decode("utf-8", "replace")
    stderr = done.stderr.decode("utf-8", "replace")
    _check_output(stdout, stderr, done.returncode, allowed, allow=allow)
    return stderr


def _is_integer(value: str) -> bool:
    try:
        int(value)
    except ValueError:
        return False
    return True


def _is_page(value: str) -> bool:
    """A page number as the command reads it: any integer of 1 or more ("1", " 2 ")."""
    return _is_integer(value) and int(value) >= 1


def _names_an_option(value: str) -> bool:
    """`units search --page` (or --county=…): the value is an option, not a query."""
    return value.split("=", 1)[0] in ("--county", "--page")


def _argparse_reads_as_option(value: str) -> bool:
    """argparse's rule: a value that begins with "-" is taken for an option, unless it
    is "-" alone, a negative number, or holds a space. Given where a value belongs,
    such a value ends the command with argparse's usage line (exit 2); after "--" it
    is a value again."""
    if len(value) < 2 or not value.startswith("-") or " " in value:
        return False
    return re.fullmatch(r"-\d+|-\d*\.\d+", value) is None


def _commands(value: str) -> list[tuple[list[str], set[int]]]:
    """(argv, allowed exit codes) of every command with ``value`` in each argument."""
    commands = _expected_exits(value)
    if _argparse_reads_as_option(value):
        return [(argv, allowed | {2}) for argv, allowed in commands]
    return commands


def _expected_exits(value: str) -> list[tuple[list[str], set[int]]]:
    return [
        ([value], {2}),  # an unknown command
        (["units", "search", value], {0, 2} if _names_an_option(value) else {0}),
        (["units", "search", "--county", value], {2}),
        (["units", "search", "--page", value], {0} if _is_page(value) else {2}),
        (["units", "search", "x", value], {2}),  # an extra argument
        (["units", "import", value], {1}),
        (["db", value], {2}),
        (["db", "init", "--units", value], {0, 1} if _is_integer(value) else {2}),
        # A name of a directory that exists ("", ".", "/") is refused, any other is
        # written (a name too long or in no directory: 1).
        (["db", "backup", value], {0, 1, 2}),
        # No such file (1), or the backup just written under that name, refused
        # because the database holds data and --force was not given (2).
        (["db", "restore", value], {1, 2}),
        (["db", "copy", "--to", value], {2}),
        (["audit", "verify", value], {2}),
        (["maintenance", value], {2}),
        (["run", "--kiosk", value], {2}),
        (["demo", value], {2}),
        (["card", "make-test-pki"], {2}),
        (["card-agent", "--server", "kiosk@x", "--socket", f"rel/{value}"], {1, 2}),
        (["ssh-session", value], {1, 2}),
        (
            ["admin", "bootstrap", "--cert", value, "--person-id", value]
            + ["--phone", value, "--email", value, "--name", value],
            {1},
        ),
    ]


# A few through real processes under `make test` (each command starts Python), all
# of them under stress; the in-process test below takes many more.
SUBPROCESS_VALUES = [
    "[bold red]x[/] \x1b]52;c;aGVsbG8=\x07 \x1b[2J \u202eexe.txt \u200b\u0301",
    "\x1b]8;;https://evil.example/\x1b\\link\x1b]8;;\x1b\\" + "\x9b31m" + "x" * 3000,
] + (ARGV_NASTY if STRESS else [])


@pytest.mark.parametrize("value", SUBPROCESS_VALUES, ids=lambda v: repr(v)[:20])
def test_every_command_with_a_hostile_argument(data_dir: Path, value: str) -> None:
    for argv, allowed in _commands(value):
        _run(data_dir, *argv, allowed=allowed, timeout=30)


# In process (fast, many examples): the same checks on main() with captured output.


@pytest.fixture
def in_process(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name, value in _env(data_dir).items():
        monkeypatch.setenv(name, value)
    for name in ("DATABASE_URL", "SMIS_KEY_FILE", "SMIS_CONFIG", "SMIS_CARD_AGENT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(data_dir.parent)
    yield monkeypatch
    close_database()


@examples(40)
@given(value=hostile_text, which=st.integers(0, 18))
def test_hostile_arguments_in_process(
    in_process: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str, which: int
) -> None:
    value = value.replace("\x00", "")  # argv from the OS never holds a NUL
    argv, allowed = _commands(value)[which]
    if argv[0] in ("card-agent", "ssh-session", "run"):
        return  # long-running commands: covered by the subprocess test above
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    _check_output(out.out, out.err, code, allowed)


def test_a_pasted_screenful_as_command_is_one_short_line(
    in_process: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["[on red]" * 2500])
    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines[-1]) <= 450
    assert lines[-1].startswith("smis-tui: error: argument COMMAND: invalid choice: '[on red]")
    assert lines[-1].endswith("'ssh-session')")  # the commands it could have been


# --------------------------------------------------------------------------- units import

# The NHI file's header row (these tests break the rows, not the header).
HEADER = list(HOSPITAL_COLUMNS)


def _row(code: str = "1234567890", name: str = "好心診所", county: str = "63") -> list[str]:
    return [
        code,
        name,
        "診所",
        "02-12345678",
        "臺北市",
        "臺北業務組",
        "4",
        "",
        "",
        "",
        "",
        "",
        county,
        "20050101",
    ]


def _csv(rows: list[list[str]], newline: str = "\n") -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=newline)
    writer.writerows(rows)
    return buffer.getvalue()


def _good_then(bad: bytes) -> bytes:
    """Two good rows first, so that a half-done import would show."""
    head = _csv([HEADER, _row("A000000001"), _row("A000000002")]).encode("utf-8")
    return head + bad


MALFORMED: dict[str, bytes] = {
    "empty": b"",
    "big5": _csv([HEADER, _row()]).encode("big5"),
    "utf16": _csv([HEADER, _row()]).encode("utf-16"),
    "binary": bytes(range(256)) * 40,
    # No 地址 (nor 縣市別代碼): nothing says where the unit is.
    "missing_columns": _csv([HEADER[:4], _row()[:4]]).encode(),
    "header_only_markup": _csv([["[bold]x[/]", "\x1b[31m"]]).encode(),
    "short_row": _good_then(_csv([_row()[:4]]).encode()),
    "long_row": _good_then(_csv([[*_row(), "extra"]]).encode()),
    "huge_name": _good_then(_csv([_row(name="衛" * 100_000)]).encode()),
    "huge_field": _good_then(_csv([_row(county="6" * 1_000_000)]).encode()),
    "nul": _good_then(_csv([_row(name="好\x00診所")]).encode()),
    "nul_in_code": _good_then(_csv([_row(code="123456789\x00")]).encode()),
    "escape_in_code": _good_then(_csv([_row(code="\x1b[31m\x1b]52;c;eA==\x07")]).encode()),
    "bidi_county": _good_then(_csv([_row(county="\u202e36\u200b")]).encode()),
    "markup_date": _good_then(
        _csv([[*_row()[:9], "[link=https://evil.example/]x[/link]", *_row()[10:]]]).encode()
    ),
    "crlf_mix": _csv([HEADER], "\r\n").encode()
    + _csv([_row("A000000001")], "\n").encode()
    + _csv([_row("A000000002")], "\r").encode()
    + b'"unterminated,\r\n',
    "quote_garbage": _good_then(b'"a"b,c\n'),
    "bad_utf8_late": _good_then(b"\xff\xfe\xfd,\n"),
    "duplicate": _good_then(_csv([_row("A000000001")]).encode()),
    "bad_date": _good_then(_csv([[*_row()[:9], "1139999", *_row()[10:]]]).encode()),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_csv_is_refused_whole(data_dir: Path, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.csv"
    path.write_bytes(MALFORMED[name])
    open_database(None, data_dir / "smis.sqlite3")
    audited_before = AuditEvent.select().where(AuditEvent.action == "units_import").count()
    close_database()
    stderr = _run(data_dir, "units", "import", str(path), allowed={1})
    assert "匯入失敗" in stderr and "整個檔案未匯入" in stderr
    open_database(None, data_dir / "smis.sqlite3")
    try:
        kept = Unit.select().where(Unit.code.in_(["A000000001", "A000000002"])).count()
        audited = AuditEvent.select().where(AuditEvent.action == "units_import").count()
        with write_transaction():  # so that one failure does not spoil the next case
            Unit.delete().where(Unit.code.in_(["A000000001", "A000000002"])).execute()
        assert (kept, audited) == (0, audited_before)
    finally:
        close_database()


def test_a_hundred_thousand_rows_of_junk(data_dir: Path, tmp_path: Path) -> None:
    """100 000 rows, the last one bad: refused with its line number, nothing kept,
    in reasonable time and memory."""
    path = tmp_path / "junk.csv"
    rows = [HEADER] + [_row(f"B{n:09d}", name=f"診所{n}") for n in range(100_000)]
    rows.append(_row("B000000000"))  # a duplicate of the first
    path.write_text(_csv(rows), encoding="utf-8")
    # The progress bar redraws itself with carriage returns.
    stderr = _run(data_dir, "units", "import", str(path), allowed={1}, timeout=150, allow="\n\r")
    assert "第 100002 行" in stderr and "重複" in stderr
    open_database(None, data_dir / "smis.sqlite3")
    try:
        assert not Unit.select().where(Unit.code.startswith("B0000")).exists()
    finally:
        close_database()
