"""Domain services, built once at start-up and handed to the app (no Textual here).

The package itself imports nothing: importing one small module of it (the errors, the
card runtime's names) must not pull in the database driver and cryptography, which the
kiosk loads behind its first frame (smis_tui.boot). The names below come from
:mod:`smis_tui.services.registry` on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from smis_tui.services.registry import (
        KEY_CHECK,
        Services,
        build_services,
        check_key,
        open_services,
    )

__all__ = ["KEY_CHECK", "Services", "build_services", "check_key", "open_services"]


def __getattr__(name: str) -> object:
    if name in __all__:
        from smis_tui.services import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
