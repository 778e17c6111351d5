"""APDU plumbing shared by the card profiles: commands, BER-TLV, 61xx / 6Cxx and command
chaining.

Everything that reads bytes from a card is strict: a truncated or malformed answer
raises :class:`card.errors.CardProtocolError` with a clear detail, never an
``IndexError`` or ``ValueError``. Every loop over card answers is bounded, and one
card operation shares one :class:`Deadline`, so a card that keeps answering slowly
or keeps saying "more data" cannot hang the kiosk.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from card.errors import CardProtocolError, CardUnresponsive
from card.transport import DEFAULT_TIMEOUT_S, CardConnection, Response

__all__ = [
    "MAX_BLOCK",
    "MAX_RESPONSE_BYTES",
    "MAX_RESPONSE_ROUNDS",
    "SW_OK",
    "Deadline",
    "Tlv",
    "chain_get_response",
    "chained_commands",
    "command",
    "describe_apdu",
    "encode_length",
    "encode_tlv",
    "exchange",
    "iter_tlvs",
    "parse_template",
    "parse_tlv",
    "parse_tlvs",
    "parse_single_tlv",
    "sw_hex",
    "transmit",
    "transmit_chained",
    "with_le",
]

SW_OK = 0x9000
# Short APDUs: at most 255 data bytes per command.
MAX_BLOCK = 255
# GET RESPONSE loop bounds: no real card needs more for one data object.
MAX_RESPONSE_ROUNDS = 64
MAX_RESPONSE_BYTES = 64 * 1024
# Commands whose data field is a secret (VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER).
_SECRET_INS = frozenset({0x20, 0x21, 0x24, 0x2C})


def sw_hex(sw: int) -> str:
    return f"{sw:04X}"


# --------------------------------------------------------------------------- commands


def command(
    cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = None
) -> bytes:
    """A short command APDU: header, then ``Lc data`` if there is data, then ``Le``.

    ``le`` is the number of bytes expected (1..256; 256 is encoded as ``00``), or
    ``None`` for no Le byte. Programming errors (out-of-range values) raise ValueError.
    """
    for name, value in (("CLA", cla), ("INS", ins), ("P1", p1), ("P2", p2)):
        if not 0 <= value <= 0xFF:
            raise ValueError(f"{name} out of range: {value}")
    if len(data) > MAX_BLOCK:
        raise ValueError(f"short APDU data is at most {MAX_BLOCK} bytes, got {len(data)}")
    out = bytearray((cla, ins, p1, p2))
    if data:
        out.append(len(data))
        out += data
    if le is not None:
        if not 1 <= le <= 256:
            raise ValueError(f"Le out of range: {le}")
        out.append(le & 0xFF)
    return bytes(out)


def chained_commands(
    cla: int, ins: int, p1: int, p2: int, data: bytes, le: int | None = None
) -> list[bytes]:
    """ISO 7816-4 command chaining: blocks of at most 255 bytes.

    Every block but the last has bit 0x10 set in CLA; only the last carries Le.
    Data of 255 bytes or less gives a single, unchained command.
    """
    if not data:
        return [command(cla, ins, p1, p2, b"", le)]
    blocks = [data[i : i + MAX_BLOCK] for i in range(0, len(data), MAX_BLOCK)]
    out = [command(cla | 0x10, ins, p1, p2, block) for block in blocks[:-1]]
    out.append(command(cla, ins, p1, p2, blocks[-1], le))
    return out


def with_le(apdu: bytes, le: int) -> bytes:
    """The short command ``apdu`` asking for ``le`` bytes (1..256): its Le byte replaced,
    or added when it had none. ValueError when its length bytes do not add up."""
    if not 1 <= le <= 256:
        raise ValueError(f"Le out of range: {le}")
    if len(apdu) < 4:
        raise ValueError("a command APDU has at least 4 bytes")
    if len(apdu) == 4:  # case 1
        return apdu + bytes((le & 0xFF,))
    if len(apdu) == 5:  # case 2
        return apdu[:4] + bytes((le & 0xFF,))
    lc = apdu[4]
    if lc and len(apdu) == 5 + lc:  # case 3
        return apdu + bytes((le & 0xFF,))
    if lc and len(apdu) == 6 + lc:  # case 4
        return apdu[:-1] + bytes((le & 0xFF,))
    raise ValueError("not a short command APDU")


def describe_apdu(apdu: bytes) -> str:
    """Hex of a command APDU for logs, with the data of PIN commands masked."""
    if len(apdu) > 5 and apdu[1] in _SECRET_INS:
        return apdu[:5].hex(" ").upper() + " <" + str(len(apdu) - 5) + " bytes hidden>"
    return apdu.hex(" ").upper()


# --------------------------------------------------------------------------- transmit


class Deadline:
    """One time budget for a whole card operation (several APDUs)."""

    def __init__(self, seconds: float = DEFAULT_TIMEOUT_S) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        left = self._end - time.monotonic()
        if left <= 0:
            raise CardUnresponsive(self.seconds)
        return left


def transmit(conn: CardConnection, apdu: bytes, deadline: Deadline) -> Response:
    """One APDU within the operation's deadline; a timeout names the whole budget."""
    try:
        return conn.transmit(apdu, deadline.remaining())
    except CardUnresponsive:
        raise CardUnresponsive(deadline.seconds) from None


def _resend_with_exact_le(
    conn: CardConnection, apdu: bytes, answer: Response, deadline: Deadline
) -> Response:
    """ISO 7816-3 / 7816-4: ``6Cxx`` means "wrong Le, xx bytes are available": the
    same command once more with Le = xx (a card that says 6Cxx again is broken)."""
    if answer.sw1 != 0x6C:
        return answer
    again = transmit(conn, with_le(apdu, answer.sw2 or 256), deadline)
    if again.sw1 == 0x6C:
        raise CardProtocolError(f"卡片連續要求更改預期長度（SW {sw_hex(again.sw)}）")
    return again


def exchange(conn: CardConnection, apdu: bytes, deadline: Deadline, *, cla: int = 0x00) -> Response:
    """One command and its whole answer: ``6Cxx`` re-sent with the exact Le, ``61xx``
    followed with GET RESPONSE (:func:`chain_get_response`)."""
    answer = _resend_with_exact_le(conn, apdu, transmit(conn, apdu, deadline), deadline)
    return chain_get_response(conn, answer, deadline, cla=cla)


def chain_get_response(
    conn: CardConnection,
    first: Response,
    deadline: Deadline | None = None,
    *,
    cla: int = 0x00,
) -> Response:
    """Follow ``61xx`` with GET RESPONSE ``00 C0 00 00 xx`` and join the data (a GET
    RESPONSE answered ``6Cxx`` is asked again with Le = xx).

    Returns the joined data with the status word of the last answer. Bounded by
    :data:`MAX_RESPONSE_ROUNDS` answers and :data:`MAX_RESPONSE_BYTES` bytes.
    """
    deadline = deadline or Deadline()
    data = bytearray(first.data)
    current = first
    rounds = 0
    while current.sw1 == 0x61:
        rounds += 1
        if rounds > MAX_RESPONSE_ROUNDS:
            raise CardProtocolError(f"卡片要求讀取剩餘資料超過 {MAX_RESPONSE_ROUNDS} 次")
        get_response = command(cla, 0xC0, 0x00, 0x00, le=current.sw2 or 256)
        current = transmit(conn, get_response, deadline)
        current = _resend_with_exact_le(conn, get_response, current, deadline)
        data += current.data
        if len(data) > MAX_RESPONSE_BYTES:
            raise CardProtocolError(f"卡片回應超過 {MAX_RESPONSE_BYTES // 1024} KiB")
    return Response(bytes(data), current.sw1, current.sw2)


def transmit_chained(
    conn: CardConnection,
    cla: int,
    ins: int,
    p1: int,
    p2: int,
    data: bytes,
    le: int | None,
    deadline: Deadline,
) -> Response:
    """Send ``data`` with command chaining, then collect a ``61xx`` answer.

    If the card refuses an intermediate block (anything but 9000), that answer is
    returned at once so the caller maps the status word.
    """
    blocks = chained_commands(cla, ins, p1, p2, data, le)
    for block in blocks[:-1]:
        answer = transmit(conn, block, deadline)
        if answer.sw != SW_OK:
            return answer
    return exchange(conn, blocks[-1], deadline, cla=cla & ~0x10)


# --------------------------------------------------------------------------- BER-TLV


@dataclass(frozen=True)
class Tlv:
    tag: int
    value: bytes


def parse_tlv(data: bytes, offset: int = 0, *, what: str = "TLV") -> tuple[Tlv, int]:
    """Parse one BER-TLV at ``offset``; return it and the offset just past it.

    Tags of 1–3 bytes; lengths in the short form or ``81 xx`` / ``82 xxxx`` /
    ``83 xxxxxx``. Indefinite lengths and anything running past the end raise
    CardProtocolError naming ``what``.
    """
    end = len(data)
    pos = offset
    if pos >= end:
        raise CardProtocolError(f"{what}：資料不完整（缺少標籤）")
    first = data[pos]
    pos += 1
    tag = first
    if first & 0x1F == 0x1F:
        for count in range(1, 3):
            if pos >= end:
                raise CardProtocolError(f"{what}：資料不完整（標籤被截斷）")
            byte = data[pos]
            pos += 1
            tag = (tag << 8) | byte
            if not byte & 0x80:
                break
            if count == 2:
                raise CardProtocolError(f"{what}：標籤過長")
    if pos >= end:
        raise CardProtocolError(f"{what}：資料不完整（缺少長度，標籤 {tag:X}）")
    length_byte = data[pos]
    pos += 1
    if length_byte < 0x80:
        length = length_byte
    elif 0x81 <= length_byte <= 0x83:
        count = length_byte & 0x7F
        if pos + count > end:
            raise CardProtocolError(f"{what}：資料不完整（長度被截斷，標籤 {tag:X}）")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    else:
        raise CardProtocolError(f"{what}：不支援的長度格式 {length_byte:02X}（標籤 {tag:X}）")
    if pos + length > end:
        raise CardProtocolError(
            f"{what}：資料不完整（標籤 {tag:X} 需要 {length} 位元組，只剩 {end - pos}）"
        )
    return Tlv(tag, bytes(data[pos : pos + length])), pos + length


def iter_tlvs(data: bytes, *, what: str = "TLV") -> Iterator[Tlv]:
    pos = 0
    while pos < len(data):
        tlv, pos = parse_tlv(data, pos, what=what)
        yield tlv


def parse_tlvs(data: bytes, *, what: str = "TLV") -> list[Tlv]:
    """All TLVs that exactly fill ``data``."""
    return list(iter_tlvs(data, what=what))


def parse_single_tlv(data: bytes, tag: int, *, what: str = "TLV") -> bytes:
    """``data`` must be exactly one TLV with ``tag``; return its value."""
    tlv, end = parse_tlv(data, 0, what=what)
    if tlv.tag != tag:
        raise CardProtocolError(f"{what}：預期標籤 {tag:X}，收到 {tlv.tag:X}")
    if end != len(data):
        raise CardProtocolError(f"{what}：標籤 {tag:X} 之後有 {len(data) - end} 位元組多餘資料")
    return tlv.value


def parse_template(data: bytes, *, what: str = "TLV") -> dict[int, bytes]:
    """The TLVs inside a constructed value, by tag; a repeated tag is an error."""
    out: dict[int, bytes] = {}
    for tlv in iter_tlvs(data, what=what):
        if tlv.tag in out:
            raise CardProtocolError(f"{what}：標籤 {tlv.tag:X} 重複出現")
        out[tlv.tag] = tlv.value
    return out


def encode_length(length: int) -> bytes:
    if length < 0:
        raise ValueError("negative length")
    if length < 0x80:
        return bytes((length,))
    if length <= 0xFF:
        return bytes((0x81, length))
    if length <= 0xFFFF:
        return b"\x82" + length.to_bytes(2, "big")
    if length <= 0xFFFFFF:
        return b"\x83" + length.to_bytes(3, "big")
    raise ValueError(f"length too large: {length}")


def encode_tlv(tag: int, value: bytes) -> bytes:
    if tag < 0:
        raise ValueError("negative tag")
    tag_bytes = tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")
    return tag_bytes + encode_length(len(value)) + value
