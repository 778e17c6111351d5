"""The user manuals and their pictures agree: every picture a manual shows is in
docs/manual/, every picture there is shown and is one `make docs` draws, and a
picture drawn now is the committed one byte for byte (a screen that changed makes
its manual picture stale: `make docs`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.manual_pictures import BY_STEM, LANGUAGES, MANUAL, draw_all, file_name

DOCS = MANUAL.parent
MANUALS = {"zh_TW": DOCS / "manual.zh-TW.md", "en": DOCS / "manual.en.md"}
_IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")
FINGERPRINT = re.compile(r"(?:[0-9A-F]{2}:){3,}[0-9A-F]{2}")


def shown(language: str) -> list[str]:
    """The pictures the manual in ``language`` shows, as paths under docs/."""
    return _IMAGE.findall(MANUALS[language].read_text(encoding="utf-8"))


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_picture_shown_is_there_in_its_language(language: str) -> None:
    pictures = shown(language)
    assert pictures, f"{MANUALS[language].name} shows no picture"
    missing = [p for p in pictures if not (DOCS / p).is_file()]
    assert missing == []
    stems = {Path(p).name.split(".")[0] for p in pictures}
    assert {f"manual/{file_name(stem, language)}" for stem in stems} == set(pictures)


def test_every_picture_is_shown_and_drawn_by_make_docs() -> None:
    on_disk = {path.name for path in MANUAL.glob("*.svg")}
    in_manuals = {Path(p).name for language in LANGUAGES for p in shown(language)}
    drawn = {file_name(stem, language) for stem in BY_STEM for language in LANGUAGES}
    assert on_disk - in_manuals == set(), "pictures no manual shows"
    assert on_disk == drawn


# One step early in the application (a form with today's date on it) and home, in one
# language each: drawing every picture takes minutes, one takes seconds. Neither shows
# a certificate fingerprint, so their demo PKI need not be drawn from seeds (which
# costs some 20 s the first time).
@pytest.mark.parametrize(
    ("stem", "language"), [("05-application-form", "zh_TW"), ("14-home", "en")]
)
def test_a_picture_drawn_now_is_the_committed_one(
    stem: str, language: str, tmp_path: Path, sqlite_template: Path
) -> None:
    name = file_name(stem, language)
    committed = (MANUAL / name).read_text(encoding="utf-8")
    assert not FINGERPRINT.search(committed)
    (svg,) = draw_all(
        (BY_STEM[stem],), (language,), tmp_path, sqlite_template, seeded=False
    ).values()
    if svg != committed:
        (tmp_path / name).write_text(svg, encoding="utf-8")
        pytest.fail(f"docs/manual/{name} is stale (now: {tmp_path / name}): make docs")
