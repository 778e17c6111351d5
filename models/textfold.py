"""Text folding for unit search (docs/architecture.md, "Data walk").

Stored names keep their official spelling (臺北市政府衛生局); the search key and every
query are folded the same way, so 台北 finds 臺北 and full-width ＡＢＣ finds abc.
"""

from __future__ import annotations

import unicodedata

# Variant characters people type interchangeably in unit names.
_VARIANTS = str.maketrans({"臺": "台"})


def fold(text: str) -> str:
    """NFKC (full-width → half-width), 臺 → 台, case-folded, surrounding space stripped."""
    return unicodedata.normalize("NFKC", text).translate(_VARIANTS).casefold().strip()
