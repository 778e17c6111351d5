"""The bottom layer: rules every other layer shares, with no import-time effects.

It imports nothing from the rest of the project but the text catalogue
(:mod:`smis_tui.text`), so ``card``, ``models``, the services and the screens can all
use it (docs/architecture.md, "Layers").
"""
