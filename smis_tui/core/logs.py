"""Where the program writes what went wrong: a rotating log file in the data directory,
or the journal when systemd runs it. What a person typed or a card holds never gets
there: person IDs are masked and a PIN never leaves the agent, and every line passes
through :func:`redact` on its way out, tracebacks included."""

from __future__ import annotations

import io
import logging
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from smis_tui.core.identifiers import mask_person_id

LOG_FILE = "smis-tui.log"
LOG_BYTES = 2_000_000
LOG_BACKUPS = 5
# Our loggers: everything else (asyncio, Textual's own) stays out of the operator's log.
LOGGER_NAMES = ("smis_tui", "models", "card")

# A Taiwan national ID or resident certificate number (old and new style), standing
# alone: masked as the screens mask it.
_PERSON_ID = re.compile(r"(?<![0-9A-Za-z])[A-Z][0-9A-D][0-9]{8}(?![0-9A-Za-z])")
# ISO 7816 VERIFY (CLA 00, INS 20) with its data: the data is the PIN.
_VERIFY_APDU = re.compile(r"(?i)\b00 ?20 ?00 ?[0-9a-f]{2}(?: ?[0-9a-f]{2})+")
# "pin=1234", "PIN: 1234", "'pin': '1234'", "PIN 123456": a PIN is digits.
_PIN_VALUE = re.compile(r"(?i)(\bpin\w*['\"]?\s*[:=]?\s*['\"]?)[0-9]{4,12}\b")


def redact(text: str) -> str:
    text = _VERIFY_APDU.sub("0020 <VERIFY 已遮蔽>", text)
    text = _PIN_VALUE.sub(r"\g<1><已遮蔽>", text)
    return _PERSON_ID.sub(lambda found: mask_person_id(found.group(0)), text)


def _private_file_handler(path: Path) -> logging.Handler:
    from logging.handlers import RotatingFileHandler

    class PrivateRotatingFileHandler(RotatingFileHandler):
        """Every file it opens (the first and each after a rollover) is 0600: the log
        may name units and accounts."""

        def _open(self) -> io.TextIOWrapper:
            descriptor = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            return open(descriptor, "a", encoding=self.encoding, errors=self.errors)

    return PrivateRotatingFileHandler(
        path, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8", delay=True
    )


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def _stderr_is_the_journal(journal_stream: str) -> bool:
    """Whether stderr is the journal stream systemd names in JOURNAL_STREAM
    ("device:inode"). The variable is inherited: the kiosk seat's unit starts cage,
    foot and then the app, whose stderr is the terminal it draws on (systemd.exec(5)
    says to compare, not to trust the variable alone)."""
    device, _, inode = journal_stream.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        info = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (info.st_dev, info.st_ino) == (int(device), int(inode))


def setup_logging(data_dir: Path, env: Mapping[str, str] | None = None) -> Path | None:
    """Send our loggers to the journal (systemd sets JOURNAL_STREAM) or to
    ``data_dir``/smis-tui.log (0600, rotated at 2 MB, 5 kept). Returns the file, or None
    for the journal or when there is no data directory yet (`db init` makes it)."""
    env = os.environ if env is None else env
    log_file: Path | None = None
    handler: logging.Handler
    if _stderr_is_the_journal(env.get("JOURNAL_STREAM", "")):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    elif data_dir.is_dir():
        log_file = data_dir / LOG_FILE
        handler = _private_file_handler(log_file)
        handler.setFormatter(
            RedactingFormatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
        )
    else:
        return None
    handler.setLevel(logging.INFO)
    for name in LOGGER_NAMES:
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        for old in [h for h in logger.handlers if getattr(h, "smis_handler", False)]:
            logger.removeHandler(old)
            old.close()
        handler.smis_handler = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    return log_file
