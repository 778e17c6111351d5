"""A second-generation 自然人憑證 as the kiosk sees it from outside: it holds no secrets.

The real card answers SELECT of its GPPKI applet (``00 A4 04 00 10`` + :data:`GPPKI_AID`)
with 9000 and then keeps its files, PIN and signature behind GlobalPlatform secure
messaging keyed with the vendor's keys. This simulator does the first and refuses the
rest the way such a card does (ISO/IEC 7816-4, 5.6 status words):

* a command without secure messaging: ``6982`` (security status not satisfied), the
  answer GlobalPlatform cards give to a command the current secure channel level does
  not allow;
* a command marked as secure messaging (CLA bits b4–b3): ``6988`` (incorrect secure
  messaging data objects), as no MAC made without the card's keys verifies;
* SELECT of any other application: ``6A82`` (not found); other classes: ``6E00``.

Its certificate and key live in the PKCS#11 token that stands for the vendor's module
(SoftHSM2 in the tests), never here.
"""

from __future__ import annotations

from card.readers.hicos import GPPKI_AID
from card.sim.virtual import HICOS_ATR

__all__ = ["VirtualHicosGen2Card"]

_SELECT_BY_NAME = (0xA4, 0x04)
# ISO/IEC 7816-4 5.1.1: CLA b4-b3 = 10 or 11 (0x08, 0x0C) mark secure messaging.
_SM_BITS = 0x0C


def _sw(sw: int) -> bytes:
    return sw.to_bytes(2, "big")


class VirtualHicosGen2Card:
    """The outside of a second-generation 自然人憑證 (see the module's description)."""

    def __init__(self, atr: bytes = HICOS_ATR) -> None:
        self._atr = atr
        self.selected = False

    def __repr__(self) -> str:
        return "VirtualHicosGen2Card()"

    @property
    def atr(self) -> bytes:
        return self._atr

    def power_off(self) -> None:
        self.selected = False

    def reset(self) -> None:
        self.power_off()

    def process(self, apdu: bytes) -> bytes:
        if len(apdu) < 4:
            return _sw(0x6700)
        cla, ins, p1 = apdu[0], apdu[1], apdu[2]
        if cla & 0xF0 not in (0x00, 0x80):
            return _sw(0x6E00)
        if cla & _SM_BITS:
            return _sw(0x6988)
        if (ins, p1) == _SELECT_BY_NAME and cla == 0x00:
            if apdu[4:5] == bytes((len(GPPKI_AID),)) and apdu[5 : 5 + len(GPPKI_AID)] == GPPKI_AID:
                self.selected = True
                return _sw(0x9000)
            return _sw(0x6A82)
        return _sw(0x6982)
