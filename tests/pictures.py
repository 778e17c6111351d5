"""Pictures of the screens, kept in docs/screens/ (the README shows them) and compared
with the screen as it is drawn now.

What differs from run to run is left out of the comparison: the digits and the
certificate fingerprints in the text shown (today's date, the demo's fresh keys), and
the SVG's id, which is a checksum of that text. Everything else must match: every
character, its style and where it is drawn. ``SMIS_UPDATE_PICTURES=1`` writes the
pictures anew (``make pictures``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from textual.app import App

PICTURES = Path(__file__).resolve().parents[1] / "docs" / "screens"

_TEXT = re.compile(r">([^<>]*)<")
_FINGERPRINT = re.compile(r"(?:[0-9A-F]{2}:){3,}[0-9A-F]{2}")
_DIGIT = re.compile(r"\d")
_SVG_ID = re.compile(r"terminal-\d+")


def comparable(svg: str) -> str:
    def text(match: re.Match[str]) -> str:
        shown = _DIGIT.sub("0", _FINGERPRINT.sub("XX", match.group(1)))
        return f">{shown}<"

    return _TEXT.sub(text, _SVG_ID.sub("terminal", svg))


def check_picture(app: App[object], name: str) -> None:
    """``app``'s screen looks as docs/screens/``name``.svg shows it."""
    svg = app.export_screenshot(title=name)
    path = PICTURES / f"{name}.svg"
    if os.environ.get("SMIS_UPDATE_PICTURES") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(svg, encoding="utf-8")
        return
    assert path.exists(), f"no picture of {name}: make pictures"
    if comparable(path.read_text(encoding="utf-8")) != comparable(svg):
        failed = path.with_name(f"{name}.now.svg")
        failed.write_text(svg, encoding="utf-8")
        raise AssertionError(f"{name} looks different from {path.name}: see {failed.name}")
