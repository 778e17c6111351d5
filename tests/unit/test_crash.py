"""An exception in a screen's own handler ends the app: what the person at the kiosk
sees then, and what the operator's log gets (smis_tui.crash)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from textual.app import App

from smis_tui.core.logs import LOG_FILE, LOGGER_NAMES, setup_logging
from smis_tui.crash import run_logging_crashes


class FailingApp(App[None]):
    def on_mount(self) -> None:
        # What the person had typed, held in locals of the frame (made at run time: the
        # traceback quotes the source lines, which hold no one's input).
        typed_pin = str(400_000 + 82_913)
        note = "-".join(("secret", "note", "77"))
        raise RuntimeError(f"handler failed after {len(typed_pin) + len(note)} chars")


@pytest.fixture
def log_file(tmp_path: Path):
    path = setup_logging(tmp_path, env={})
    yield path
    for name in LOGGER_NAMES:
        logger = logging.getLogger(name)
        for handler in logger.handlers[:]:
            logger.removeHandler(handler)
            handler.close()


def test_a_crash_is_logged_without_locals_and_the_screen_gets_one_line(
    log_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_logging_crashes(FailingApp(), "zh_TW", headless=True)
    assert code == 1
    err = capsys.readouterr().err
    # The terminal: one line, no traceback, nothing typed.
    assert err.strip().splitlines() == [err.strip()]
    assert "未預期的錯誤" in err and "Traceback" not in err and "482913" not in err
    logged = log_file.read_text(encoding="utf-8")
    assert log_file.name == LOG_FILE
    # The log: what failed and where, but no local variable's value.
    assert "RuntimeError" in logged and "handler failed after 20 chars" in logged
    assert "on_mount" in logged
    assert "482913" not in logged and "secret-note-77" not in logged


def test_a_clean_exit_logs_nothing(log_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    class Quits(App[None]):
        def on_mount(self) -> None:
            self.exit()

    assert run_logging_crashes(Quits(), "en", headless=True) == 0
    assert capsys.readouterr().err == ""
    assert not log_file.exists() or "unexpected" not in log_file.read_text(encoding="utf-8")
