"""The screens. Their stylesheets are the files in STYLES (the repository's styles/)."""

from pathlib import Path

STYLES = Path(__file__).resolve().parents[2] / "styles"
