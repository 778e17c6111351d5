"""smis-tui: the SMIS account-lifecycle kiosk (docs/architecture.md).

Importing the package does nothing: ``card`` and ``models`` import its bottom layer
(:mod:`smis_tui.core`, :mod:`smis_tui.text`) without side effects.
"""
