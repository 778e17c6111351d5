"""The card agent's allow-list: what may reach a card while the agent reads it.

The agent reads a card's certificate for the server with card.readers.profiles.read_card
over :class:`ReadOnlyConnection`, which lets through only the (CLA, INS) pairs the
PIV, first-generation HiCOS and GPPKI read sequences use:

* CLA 00 (ISO/IEC 7816-4 interindustry, no chaining, no secure messaging, basic
  logical channel): SELECT A4, READ BINARY B0, GET DATA CB (NIST SP 800-73-4 part 2,
  3.1.2), GET RESPONSE C0;
* CLA 80 (HiCOS proprietary): SELECT A4, READ BINARY B0, GET RESPONSE C0.

Anything else – VERIFY, GENERAL AUTHENTICATE, PERFORM SECURITY OPERATION, every write,
every other class byte – raises CommandRefused before the card sees it. A signature is
made only by the agent itself (card.agent.server), over the message it built.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from card.agent.protocol import CommandRefused
from card.transport import DEFAULT_TIMEOUT_S, CardConnection, Response

__all__ = ["ALLOWED", "ReadOnlyConnection", "allowed"]

SELECT = 0xA4
READ_BINARY = 0xB0
GET_DATA = 0xCB
GET_RESPONSE = 0xC0
INTERINDUSTRY = 0x00
HICOS = 0x80

ALLOWED: frozenset[tuple[int, int]] = frozenset(
    {
        (INTERINDUSTRY, SELECT),
        (INTERINDUSTRY, READ_BINARY),
        (INTERINDUSTRY, GET_DATA),
        (INTERINDUSTRY, GET_RESPONSE),
        (HICOS, SELECT),
        (HICOS, READ_BINARY),
        (HICOS, GET_RESPONSE),
    }
)


def allowed(apdu: bytes | bytearray) -> bool:
    """True when ``apdu`` is a whole command header whose (CLA, INS) is allowed."""
    return len(apdu) >= 4 and (apdu[0], apdu[1]) in ALLOWED


class ReadOnlyConnection:
    """A card.transport.CardConnection that lets only :data:`ALLOWED` commands through;
    ``on_refused(cla, ins)`` is told of each refusal (the agent prints a line)."""

    def __init__(
        self,
        inner: CardConnection,
        on_refused: Callable[[int, int], None] | None = None,
    ) -> None:
        self._inner = inner
        self._on_refused = on_refused
        self.reader = inner.reader

    def __repr__(self) -> str:
        return f"ReadOnlyConnection({self._inner!r})"

    def atr(self) -> bytes:
        return self._inner.atr()

    def transmit(self, apdu: bytes, timeout: float = DEFAULT_TIMEOUT_S) -> Response:
        if not allowed(apdu):
            cla = apdu[0] if apdu else 0
            ins = apdu[1] if len(apdu) > 1 else 0
            if self._on_refused is not None:
                self._on_refused(cla, ins)
            raise CommandRefused(ins, cla)
        return self._inner.transmit(bytes(apdu), timeout)

    def transaction(self, timeout: float = DEFAULT_TIMEOUT_S) -> AbstractContextManager[None]:
        return self._inner.transaction(timeout)

    def close(self) -> None:
        self._inner.close()


if TYPE_CHECKING:  # mypy checks that it keeps to the protocol it stands in for
    _connection: type[CardConnection] = ReadOnlyConnection
