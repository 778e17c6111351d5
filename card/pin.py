"""Card PIN handling: format check, PIV padding, wiping.

A PIN lives in a ``bytearray`` that its user wipes right after the card has seen it
(:func:`wipe`, or the :func:`pin_buffer` context manager). Nothing here ever puts a
PIN into a message, an exception or a repr: a bad PIN raises
:class:`card.errors.PinFormatError`, whose text never contains it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from card.errors import PinFormatError

__all__ = [
    "PIN_MAX",
    "PIN_MIN",
    "PIV_PIN_LENGTH",
    "check_pin_format",
    "pad_piv",
    "pin_buffer",
    "wipe",
]

PIN_MIN = 6
PIN_MAX = 8
PIV_PIN_LENGTH = 8
# Visible ASCII: digits, letters and punctuation; no space, no control characters.
_FIRST, _LAST = 0x21, 0x7E


def check_pin_format(pin: str | bytes | bytearray) -> bytearray:
    """The PIN as a new bytearray if it is 6–8 visible ASCII characters.

    The caller wipes the result after use. A ``str`` is checked character by character
    (never ``.encode()``d: a UnicodeEncodeError would carry the whole PIN).
    """
    if not PIN_MIN <= len(pin) <= PIN_MAX:
        raise PinFormatError()
    codes = (ord(char) for char in pin) if isinstance(pin, str) else iter(pin)
    out = bytearray(len(pin))
    ok = True
    for index, code in enumerate(codes):
        good = _FIRST <= code <= _LAST
        ok &= good
        out[index] = code if good else 0
    if not ok:
        wipe(out)
        raise PinFormatError()
    return out


def pad_piv(pin: bytearray) -> bytearray:
    """A new 8-byte bytearray: the PIN padded with 0xFF (NIST SP 800-73-4 §2.4.3)."""
    if len(pin) > PIV_PIN_LENGTH:
        raise PinFormatError()
    out = bytearray(b"\xff" * PIV_PIN_LENGTH)
    out[: len(pin)] = pin
    return out


def wipe(buffer: bytearray) -> None:
    """Overwrite a secret in place."""
    buffer[:] = bytes(len(buffer))


@contextmanager
def pin_buffer(pin: str | bytes | bytearray) -> Iterator[bytearray]:
    """``with pin_buffer(pin) as buf:`` — checked PIN bytes, wiped on the way out."""
    buf = check_pin_format(pin)
    try:
        yield buf
    finally:
        wipe(buf)
