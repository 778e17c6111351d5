"""Every user-visible string, in zh-TW (default) and English.

Code refers to strings by key; :func:`t` renders one in a language. Texts quoted
from the source manual are kept verbatim in zh-TW. Each screen family keeps its
strings in its own module here (``ZH_TW`` and ``EN`` dicts), merged below.
"""

from __future__ import annotations

from types import ModuleType

from smis_tui.text import control, en, form, login, profile, review, unit_search, zh_TW

DEFAULT_LANGUAGE = "zh_TW"
_AREAS: tuple[ModuleType, ...] = (login, unit_search, form, review, profile, control)


def _merge(base: dict[str, str], attribute: str) -> dict[str, str]:
    merged = dict(base)
    for area in _AREAS:
        for key, value in getattr(area, attribute).items():
            if key in merged:
                raise KeyError(f"text key {key!r} defined twice")
            merged[key] = value
    return merged


CATALOGS: dict[str, dict[str, str]] = {
    "zh_TW": _merge(zh_TW.TEXT, "ZH_TW"),
    "en": _merge(en.TEXT, "EN"),
}


def t(key: str, language: str = DEFAULT_LANGUAGE, /, **params: object) -> str:
    catalog = CATALOGS.get(language, CATALOGS[DEFAULT_LANGUAGE])
    template = catalog.get(key) or CATALOGS[DEFAULT_LANGUAGE][key]
    return template.format(**params) if params else template
