"""The PIN field: masked, at most 8 characters, and nothing in it can be copied or
cut into a clipboard the next person at the kiosk could paste from."""

from __future__ import annotations

from smis_tui.widgets.safe_input import SafeInput


class PinInput(SafeInput):
    def __init__(self, *, placeholder: str = "", id: str | None = None) -> None:
        super().__init__(placeholder=placeholder, password=True, max_length=8, id=id)

    def action_copy(self) -> None:
        return None

    def action_cut(self) -> None:
        return None
