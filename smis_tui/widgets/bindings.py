"""Footer key descriptions in the screen's language.

``BINDINGS`` are class attributes, written with the zh-TW text (``t(key)``); a screen
built for English puts its own bindings' descriptions in English by looking each
zh-TW description up in the catalogue.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from textual.dom import DOMNode

from smis_tui.text import CATALOGS, DEFAULT_LANGUAGE, t

_KEY_OF_ZH: dict[str, str] = {}


def _key_of(description: str) -> str | None:
    if not _KEY_OF_ZH:
        for key, text in CATALOGS[DEFAULT_LANGUAGE].items():
            _KEY_OF_ZH.setdefault(text, key)
    return _KEY_OF_ZH.get(description)


def localise_bindings(
    node: DOMNode, language: str, descriptions: Mapping[str, str] | None = None
) -> None:
    """``descriptions`` maps actions to text keys where a screen names them; any other
    binding's key is found from its zh-TW description."""
    if language == DEFAULT_LANGUAGE:
        return
    bindings = node._bindings.key_to_bindings
    for key, entries in list(bindings.items()):
        localised = []
        for binding in entries:
            text_key = (descriptions or {}).get(binding.action) or (
                _key_of(binding.description) if binding.description else None
            )
            if text_key is not None:
                binding = replace(binding, description=t(text_key, language))
            localised.append(binding)
        bindings[key] = localised
