"""The screens. Their stylesheets are the files in STYLES (smis_tui/styles/)."""

from importlib.resources import files
from pathlib import Path

# Package data, so an installed wheel carries them (docs/architecture.md, "The house").
# Textual reads a stylesheet from a file-system path; an installed package is a
# directory, where files() is that path (a zipped package has none and would fail here).
STYLES = Path(str(files("smis_tui") / "styles"))
