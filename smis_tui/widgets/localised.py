"""The language a screen or dialog speaks, and how it looks its texts up."""

from __future__ import annotations

from textual.binding import Binding

from smis_tui.text import DEFAULT_LANGUAGE, describe_key, t


class Localised:
    """Mixed into a Screen. Bindings carry text keys as their descriptions; the key
    bar (smis_tui.widgets.bars.KeyBar) asks :meth:`key_description`."""

    language: str = DEFAULT_LANGUAGE

    def tr(self, key: str, **params: object) -> str:
        return t(key, self.language, **params)

    def key_description(self, binding: Binding) -> str:
        return describe_key(binding.description, self.language)
