"""軌跡紀錄 as a CSV file for a CDC 管理者: UTF-8 with a BOM and CRLF lines, so that
Excel opens it with the Chinese intact.

Where it goes: ``<data_dir>/exports/``, under a name the program makes up, never a
path typed at the kiosk. The kiosk runs as the service account, so a typed path would
let whoever sits there write (and overwrite) any file that account can; the data
directory is where the operator already collects the kiosk's files. The directory is
made 0700; it must belong to this account, be writable by nobody else and not be a
link, and the file is created new (``O_EXCL``), 0600, without following a link at its
name, inside the directory opened without following one either.

A cell that a spreadsheet would read as a formula (starting with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return: CSV injection) gets a leading ``'``; names, units
and reasons are typed by people.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from smis_tui.core.clock import to_taiwan
from smis_tui.services.audit import TrailRow
from smis_tui.services.errors import ServiceError
from smis_tui.services.trail_words import trail_words
from smis_tui.text import t

EXPORT_DIR = "exports"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Tries at a free file name within the same second before giving up.
_NAME_TRIES = 100


class ExportPlaceUnsafe(ServiceError):
    """The export directory is a link, someone else's or writable by others."""

    def __init__(self, path: Path) -> None:
        super().__init__("trail.error_export_place", path=str(path))


def neutralise(cell: str) -> str:
    """A cell a spreadsheet shows as text, never runs as a formula."""
    return f"'{cell}" if cell.startswith(_FORMULA_START) else cell


def _header(language: str) -> list[str]:
    keys = (
        "trail.col_time",
        "trail.col_actor",
        "trail.col_actor_unit",
        "trail.action",
        "trail.col_target",
        "trail.col_target_unit",
        "trail.col_change",
        "trail.col_unit_code",
        "common.unit",
        "trail.col_note",
    )
    return [t(key, language) for key in keys]


def write_rows(out: TextIO, rows: Iterable[TrailRow], language: str) -> int:
    """The file's text (BOM first) to ``out``, a row at a time; how many rows."""
    out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(_header(language))
    count = 0
    for row in rows:
        words = trail_words(row, language, whole=True)
        writer.writerow(
            neutralise(cell)
            for cell in (
                words.time,
                words.actor,
                words.actor_unit,
                words.action,
                words.target,
                words.target_unit,
                words.change,
                words.unit_code,
                words.unit_name,
                words.note,
            )
        )
        count += 1
    return count


def _open_directory(directory: Path) -> int:
    """The export directory, made 0700 if missing, opened without following a link;
    refused unless it is ours and nobody else may write in it."""
    try:
        directory.mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        raise ExportPlaceUnsafe(directory) from exc
    try:
        descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        raise ExportPlaceUnsafe(directory) from exc
    info = os.fstat(descriptor)
    if info.st_uid != os.geteuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        os.close(descriptor)
        raise ExportPlaceUnsafe(directory)
    return descriptor


def write_export(
    data_dir: Path, rows: Iterable[TrailRow], language: str, viewer_id: int, now: dt.datetime
) -> tuple[Path, int]:
    """Write ``rows`` to a new 0600 file in ``data_dir``/exports, streamed (a long trail
    never sits in memory whole); its path and how many rows. A file left half-written
    by an error is removed."""
    directory = data_dir / EXPORT_DIR
    folder = _open_directory(directory)
    try:
        stamp = to_taiwan(now).strftime("%Y%m%d-%H%M%S")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        for attempt in range(_NAME_TRIES):
            suffix = f"-{attempt + 1}" if attempt else ""
            name = f"trail-{stamp}-{viewer_id}{suffix}.csv"
            try:
                descriptor = os.open(name, flags, 0o600, dir_fd=folder)
            except FileExistsError:
                continue  # a file (or a link someone placed) has this name: another one
            try:
                with open(descriptor, "w", encoding="utf-8", newline="") as out:
                    count = write_rows(out, rows, language)
                    out.flush()
                    os.fsync(out.fileno())
            except BaseException:
                os.unlink(name, dir_fd=folder)
                raise
            return directory / name, count
        raise ExportPlaceUnsafe(directory)
    finally:
        os.close(folder)
