"""What happens when the app itself fails (an exception in a screen's handler, outside
any service call): Textual ends the app and prints a traceback *with the local
variables of every frame* to stderr – on a kiosk, onto the screen the next person sees,
and a local may be what someone typed. Here the traceback goes to the operator's log
instead, without the local variables, and the terminal gets one line."""

from __future__ import annotations

import io
import logging
import sys
from typing import Any

from rich.console import Console

from smis_tui.text import t

log = logging.getLogger("smis_tui.app")


def without_locals(traceback_text: str) -> str:
    """Rich's traceback text minus its "locals" panels."""
    kept: list[str] = []
    skipping = False
    for line in traceback_text.splitlines():
        if not skipping and "╭" in line and " locals " in line:
            skipping = True
            continue
        if skipping:
            if "╰" in line:
                skipping = False
            continue
        kept.append(line.rstrip())
    return "\n".join(kept)


def run_logging_crashes(app: Any, language: str, **run_options: Any) -> int:
    """``app.run(**run_options)``; an unexpected failure is logged and named in one line
    on stderr. The app's return code (1 after a failure)."""
    captured = io.StringIO()
    # error_console is where Textual prints what ended the app (public attribute).
    app.error_console = Console(
        file=captured, width=120, no_color=True, markup=False, highlight=False, emoji=False
    )
    app.run(**run_options)
    text = captured.getvalue()
    if text.strip():
        log.error("the app ended with an unexpected error:\n%s", without_locals(text))
        print(t("app.crashed", language), file=sys.stderr)
    # A start-up the operator can fix (no key file, a read-only database): its one line.
    exit_line = getattr(app, "exit_line", None)
    if exit_line:
        print(exit_line, file=sys.stderr)
    return int(app.return_code or 0)
