"""The operator's log: unexpected errors land there with their traceback and context,
and nothing a person typed or a card holds does."""

from __future__ import annotations

import logging
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from smis_tui.core.logs import LOG_FILE, LOGGER_NAMES, redact, setup_logging
from smis_tui.services.calls import run_call


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    path = setup_logging(tmp_path, env={})
    assert path == tmp_path / LOG_FILE
    yield path
    for name in LOGGER_NAMES:
        for handler in logging.getLogger(name).handlers[:]:
            logging.getLogger(name).removeHandler(handler)
            handler.close()


def flushed(path: Path) -> str:
    for handler in logging.getLogger("smis_tui").handlers:
        handler.flush()
    return path.read_text(encoding="utf-8")


def test_an_unexpected_service_error_is_logged_with_its_traceback(log_file: Path) -> None:
    def look_up_account() -> None:
        raise KeyError("account of A123456789 with PIN 123456")

    result = run_call(look_up_account)
    assert result.unexpected
    text = flushed(log_file)
    assert "Traceback" in text and "KeyError" in text
    assert "look_up_account" in text  # which call
    assert "A123456789" not in text and "A1******89" in text
    assert "123456" not in text
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("sent 00 20 00 81 08 31 32 33 34 35 36 FF FF", "31 32 33 34"),
        ("sent 0020008108313233343536FFFF", "313233343536"),
        ("{'pin': '123456', 'reader': 'r'}", "123456"),
        ("PIN=987654 refused", "987654"),
        ("wrong PIN 4321, 2 tries left", "4321"),
        ("person F231415928 not found", "F231415928"),
        ("resident A800000014 (new style)", "A800000014"),
    ],
)
def test_pins_and_ids_never_reach_the_log(line: str, secret: str) -> None:
    assert secret not in redact(line)


def test_under_systemd_the_journal_gets_it(tmp_path: Path) -> None:
    stderr = os.fstat(sys.stderr.fileno())
    try:
        journal = f"{stderr.st_dev}:{stderr.st_ino}"
        assert setup_logging(tmp_path, env={"JOURNAL_STREAM": journal}) is None
        assert not (tmp_path / LOG_FILE).exists()
        handlers = logging.getLogger("smis_tui").handlers
        assert [type(h).__name__ for h in handlers] == ["StreamHandler"]
    finally:
        for name in LOGGER_NAMES:
            for handler in logging.getLogger(name).handlers[:]:
                logging.getLogger(name).removeHandler(handler)


def test_an_inherited_journal_stream_is_not_the_kiosks_terminal(tmp_path: Path) -> None:
    """The kiosk seat's unit runs cage, foot, then the app: JOURNAL_STREAM is inherited
    but stderr is the screen; a log line there would be drawn over the kiosk."""
    try:
        assert setup_logging(tmp_path, env={"JOURNAL_STREAM": "8:1234"}) == tmp_path / LOG_FILE
        handlers = logging.getLogger("smis_tui").handlers
        assert [type(h).__name__ for h in handlers] != ["StreamHandler"]
    finally:
        for name in LOGGER_NAMES:
            for handler in logging.getLogger(name).handlers[:]:
                logging.getLogger(name).removeHandler(handler)
