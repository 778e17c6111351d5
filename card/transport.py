"""How APDUs reach a card: pyscard through pcscd, or an in-process virtual card.

Profiles (card.piv, card.hicos) only see a :class:`CardConnection`; they never know
which transport is underneath.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# Every card operation gives up after this long: a silent card never hangs the kiosk.
DEFAULT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Response:
    data: bytes
    sw1: int
    sw2: int

    @property
    def sw(self) -> int:
        return (self.sw1 << 8) | self.sw2

    @property
    def ok(self) -> bool:
        return self.sw == 0x9000


class CardConnection(Protocol):
    """One open connection to the card in one reader."""

    reader: str

    def atr(self) -> bytes: ...

    def transmit(self, apdu: bytes, timeout: float = DEFAULT_TIMEOUT_S) -> Response:
        """Send one command APDU; raises card.errors.CardRemoved / CardUnresponsive."""
        ...

    def close(self) -> None: ...


class ReaderBackend(Protocol):
    def readers(self) -> list[str]:
        """Reader names; raises card.errors.PcscUnavailable when the service is down."""
        ...

    def connect(self, reader: str) -> CardConnection:
        """Raises card.errors.NoCard when the reader is empty."""
        ...
