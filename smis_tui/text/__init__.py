"""Every user-visible string, in zh-TW (default) and English.

Code refers to strings by key; :func:`t` renders one in a language. Texts quoted
from the source manual are kept verbatim in zh-TW.
"""

from __future__ import annotations

from smis_tui.text import en, zh_TW

DEFAULT_LANGUAGE = "zh_TW"
CATALOGS: dict[str, dict[str, str]] = {"zh_TW": zh_TW.TEXT, "en": en.TEXT}


def t(key: str, language: str = DEFAULT_LANGUAGE, /, **params: object) -> str:
    catalog = CATALOGS.get(language, zh_TW.TEXT)
    template = catalog.get(key) or zh_TW.TEXT[key]
    return template.format(**params) if params else template
