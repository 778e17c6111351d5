"""The card agent's wire protocol (``smis-tui card-agent`` ↔ the kiosk over ``ssh -R``).

Framing: a 4-byte big-endian length, then that many payload bytes; a frame is at
most :data:`MAX_FRAME` bytes and never empty. Payload: 1 byte message type, a 4-byte
big-endian request id (0 for events), then the type's fields in a fixed order:

* ``u8`` / ``u16`` / ``u32`` / ``i32``: big-endian integers;
* ``bytes``: a 4-byte length and the bytes (each field has its own maximum);
* ``str``: like ``bytes``, UTF-8, no NUL;
* ``strs``: a 2-byte count, then that many ``str``.

Decoding is strict: an unknown type, a short or overlong field, bytes left over, bad
UTF-8 or an out-of-range value raise :class:`ProtocolError` with a clear detail (and
nothing else: the decoder never raises IndexError, struct.error or UnicodeError).

Conversation: the kiosk (client) sends :class:`Hello` with the protocol version and a
label naming its session (``user@host pid N, SSH_CONNECTION …``), which the agent shows
to the staff member; the agent answers :class:`Welcome` or :class:`Failure`. Then
requests (ListReaders, Subscribe, Connect, Transmit, Disconnect, Pkcs11Sign), each
answered by one response with the same id (Readers, Ok, Connected, Answer, Signature,
or Failure). After Subscribe the agent also sends :class:`CardEvent` frames (id 0),
first one for every card already present.

A :class:`Failure` carries a card.errors class name with its message and parameters;
:func:`error_to_failure` and :func:`failure_to_error` turn card errors into frames and
back, so the kiosk raises the same errors as with a local reader.
"""

from __future__ import annotations

import enum
import getpass
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from card import errors
from card.errors import CardError, CardErrorWithDetail, PcscUnavailable, aside

__all__ = [
    "FORBIDDEN_INS",
    "HEADER",
    "MAX_FRAME",
    "PROTOCOL_VERSION",
    "AgentBusy",
    "AgentProtocolError",
    "AgentUnavailable",
    "Answer",
    "CardEvent",
    "CommandRefused",
    "Connect",
    "Connected",
    "Disconnect",
    "Failure",
    "FrameDecoder",
    "Hello",
    "InsecureSocket",
    "ListReaders",
    "Message",
    "Ok",
    "Pkcs11Sign",
    "ProtocolError",
    "Readers",
    "Signature",
    "Subscribe",
    "Transmit",
    "Welcome",
    "clean_text",
    "decode_payload",
    "encode_frame",
    "error_to_failure",
    "failure_to_error",
    "forbidden_command",
    "peer_uid",
    "user_at_host",
]

PROTOCOL_VERSION = 2  # 2: Pkcs11Sign names the certificate whose token signs
HEADER = 4
# An extended-length APDU (7-byte header, 65535 data bytes, 3-byte Le) or answer
# (65536 data bytes and SW1 SW2) fits, with room for the other fields; nothing bigger.
MAX_APDU = 4 + 3 + 65535 + 3
MAX_ANSWER = 65536 + 2
MAX_FRAME = 66 * 1024
MAX_TEXT = 1024
MAX_READERS = 64
MAX_ATR = 64
MAX_SIGN_DATA = 4096
MAX_PIN = 16
MAX_SIGNATURE = 4096
MAX_CERTIFICATE = 8192


# ---------------------------------------------------------------------- errors


class ProtocolError(ValueError):
    """A frame that does not follow this protocol (``detail`` says how)."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"讀卡代理程式訊息格式錯誤：{detail}")
        self.detail = detail


class AgentProtocolError(CardErrorWithDetail):
    """The other side broke the protocol: a card error for the kiosk's screens."""

    key = "card.agent_protocol"
    template = "讀卡代理程式訊息格式錯誤：{detail}"


class AgentUnavailable(PcscUnavailable):
    """The card agent cannot be reached: the kiosk's 'pcscd is not running'."""

    key = "card.agent_unavailable"
    template = (
        "無法連線到讀卡代理程式（smis-tui card-agent）：請在您的電腦上啟動讀卡代理程式，"
        "並以其顯示的 ssh 指令重新連線"
    )

    def __init__(self, detail: str = "") -> None:
        CardError.__init__(self, self.template + aside(detail), detail=detail)
        self.detail = detail


class InsecureSocket(AgentUnavailable):
    """The agent socket is not private to this user (another owner, or open mode)."""

    key = "card.agent_insecure"
    template = "讀卡代理程式的通道不安全，已拒絕使用：{detail}"

    def __init__(self, detail: str) -> None:
        CardError.__init__(self, detail=detail)
        self.detail = detail


class CommandRefused(CardError):
    """The agent refuses commands that change or unblock a PIN or write to the card."""

    key = "card.agent_refused"

    def __init__(self, ins: int) -> None:
        name = forbidden_command(ins) or f"INS {ins:02X}"
        super().__init__(
            f"讀卡代理程式拒絕此卡片指令：{name}（本系統不變更、不解鎖密碼，也不寫入卡片）",
            ins=ins,
        )
        self.ins = ins


class AgentBusy(CardError):
    """Too many commands waiting for the card: the agent answers at once instead."""

    key = "card.agent_busy"
    template = "讀卡代理程式忙碌中：卡片尚未回應先前的指令，請稍後再試"

    def __init__(self, detail: str = "") -> None:
        super().__init__(self.template + aside(detail), detail=detail)
        self.detail = detail


# ---------------------------------------------------------------------- forbidden commands

# INS codes the agent never sends to the card, whatever the class byte (the odd INS of
# each pair is the BER-TLV variant). Login needs only SELECT A4, GET DATA CB, READ
# BINARY B0, VERIFY 20, GENERAL AUTHENTICATE 87 and GET RESPONSE C0 (card.readers.piv,
# card.readers.hicos); MSE 22 and PSO 2A stay allowed for cards that sign that way.
FORBIDDEN_INS: dict[int, str] = {
    0x04: "停用檔案（DEACTIVATE FILE）",
    0x0E: "抹除資料（ERASE BINARY）",
    0x0F: "抹除資料（ERASE BINARY）",
    0x24: "變更卡片密碼（CHANGE REFERENCE DATA）",
    0x25: "變更卡片密碼（CHANGE REFERENCE DATA）",
    0x26: "停用密碼驗證（DISABLE VERIFICATION REQUIREMENT）",
    0x27: "停用密碼驗證（DISABLE VERIFICATION REQUIREMENT）",
    0x28: "啟用密碼驗證（ENABLE VERIFICATION REQUIREMENT）",
    0x29: "啟用密碼驗證（ENABLE VERIFICATION REQUIREMENT）",
    0x2C: "解鎖卡片密碼（RESET RETRY COUNTER）",
    0x2D: "解鎖卡片密碼（RESET RETRY COUNTER）",
    0x44: "啟用檔案（ACTIVATE FILE）",
    0x46: "產生金鑰對（GENERATE ASYMMETRIC KEY PAIR）",
    0x47: "產生金鑰對（GENERATE ASYMMETRIC KEY PAIR）",
    0xC2: "封裝指令（ENVELOPE）",
    0xC3: "封裝指令（ENVELOPE）",
    0xD0: "寫入資料（WRITE BINARY）",
    0xD1: "寫入資料（WRITE BINARY）",
    0xD2: "寫入紀錄（WRITE RECORD）",
    0xD6: "更新資料（UPDATE BINARY）",
    0xD7: "更新資料（UPDATE BINARY）",
    0xDA: "寫入資料物件（PUT DATA）",
    0xDB: "寫入資料物件（PUT DATA）",
    0xDC: "更新紀錄（UPDATE RECORD）",
    0xDD: "更新紀錄（UPDATE RECORD）",
    0xE0: "建立檔案（CREATE FILE）",
    0xE2: "附加紀錄（APPEND RECORD）",
    0xE4: "刪除檔案（DELETE FILE）",
    0xE6: "終止卡片（TERMINATE DF）",
    0xE8: "終止卡片（TERMINATE CARD USAGE）",
    # YubiKey PIV extensions that change the card: set PIN retries, reset the PIV
    # application, import a key, set the management key.
    0xFA: "設定密碼次數（SET PIN RETRIES）",
    0xFB: "重設卡片（RESET）",
    0xFE: "匯入金鑰（IMPORT KEY／TERMINATE EF）",
    0xFF: "設定管理金鑰（SET MANAGEMENT KEY）",
}


def forbidden_command(ins: int) -> str | None:
    """The name of a refused instruction, or None when the agent lets it through."""
    return FORBIDDEN_INS.get(ins)


# ---------------------------------------------------------------------- text hygiene


def clean_text(text: str, limit: int = 200) -> str:
    """Text from the other side, safe to print on a terminal or a screen: control
    characters become spaces, and it is cut to ``limit`` characters."""
    out = "".join(
        " " if (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c in "\u2028\u2029") else c
        for c in text[: limit + 1]
    )
    return out if len(out) <= limit else out[: limit - 1] + "…"


# ---------------------------------------------------------------------- field codecs


class _Reader:
    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def take(self, size: int, what: str) -> memoryview:
        if size > len(self.data) - self.pos:
            raise ProtocolError(f"{what}：資料不足（需要 {size} 位元組）")
        out = self.data[self.pos : self.pos + size]
        self.pos += size
        return out


@dataclass(frozen=True)
class _Codec:
    encode: Callable[[Any], bytes]
    decode: Callable[[_Reader, str], Any]


def _uint(size: int, fmt: str) -> _Codec:
    limit = 1 << (8 * size)

    def encode(value: Any) -> bytes:
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < limit:
            raise ValueError(f"value out of range for u{8 * size}: {value!r}")
        return struct.pack(fmt, value)

    def decode(reader: _Reader, what: str) -> Any:
        return struct.unpack(fmt, reader.take(size, what))[0]

    return _Codec(encode, decode)


def _i32() -> _Codec:
    def encode(value: Any) -> bytes:
        if not isinstance(value, int) or not -(1 << 31) <= value < (1 << 31):
            raise ValueError(f"value out of range for i32: {value!r}")
        return struct.pack(">i", value)

    def decode(reader: _Reader, what: str) -> Any:
        return struct.unpack(">i", reader.take(4, what))[0]

    return _Codec(encode, decode)


def _flag() -> _Codec:
    def encode(value: Any) -> bytes:
        return b"\x01" if value else b"\x00"

    def decode(reader: _Reader, what: str) -> Any:
        byte = reader.take(1, what)[0]
        if byte > 1:
            raise ProtocolError(f"{what}：應為 0 或 1，收到 {byte}")
        return bool(byte)

    return _Codec(encode, decode)


def _bytes(maximum: int) -> _Codec:
    def encode(value: Any) -> bytes:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise ValueError(f"bytes expected, got {type(value).__name__}")
        if len(value) > maximum:
            raise ValueError(f"{len(value)} bytes, at most {maximum}")
        return struct.pack(">I", len(value)) + bytes(value)

    def decode(reader: _Reader, what: str) -> Any:
        size = struct.unpack(">I", reader.take(4, what))[0]
        if size > maximum:
            raise ProtocolError(f"{what}：長度 {size} 超過上限 {maximum}")
        return bytes(reader.take(size, what))

    return _Codec(encode, decode)


def _text(maximum: int = MAX_TEXT) -> _Codec:
    raw = _bytes(maximum)

    def encode(value: Any) -> bytes:
        if not isinstance(value, str):
            raise ValueError(f"str expected, got {type(value).__name__}")
        if "\x00" in value:
            raise ValueError("NUL in text")
        return raw.encode(value.encode("utf-8"))

    def decode(reader: _Reader, what: str) -> Any:
        data = raw.decode(reader, what)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(f"{what}：不是有效的 UTF-8 文字") from None
        if "\x00" in text:
            raise ProtocolError(f"{what}：文字含有 NUL 字元")
        return text

    return _Codec(encode, decode)


def _texts(max_items: int = MAX_READERS) -> _Codec:
    item = _text()

    def encode(value: Any) -> bytes:
        values = list(value)
        if len(values) > max_items:
            raise ValueError(f"{len(values)} items, at most {max_items}")
        return struct.pack(">H", len(values)) + b"".join(item.encode(v) for v in values)

    def decode(reader: _Reader, what: str) -> Any:
        count = struct.unpack(">H", reader.take(2, what))[0]
        if count > max_items:
            raise ProtocolError(f"{what}：項目數 {count} 超過上限 {max_items}")
        return tuple(item.decode(reader, what) for _ in range(count))

    return _Codec(encode, decode)


U16 = _uint(2, ">H")
U32 = _uint(4, ">I")


# ---------------------------------------------------------------------- messages


class MessageType(enum.IntEnum):
    HELLO = 0x01
    LIST_READERS = 0x02
    SUBSCRIBE = 0x03
    CONNECT = 0x04
    TRANSMIT = 0x05
    DISCONNECT = 0x06
    PKCS11_SIGN = 0x07
    OK = 0x80
    WELCOME = 0x81
    READERS = 0x82
    CONNECTED = 0x84
    ANSWER = 0x85
    SIGNATURE = 0x87
    CARD_EVENT = 0xC0
    FAILURE = 0xFF


class Message:
    """Base of every message: ``TYPE`` and one codec per dataclass field, in order."""

    TYPE: ClassVar[MessageType]
    CODECS: ClassVar[tuple[_Codec, ...]] = ()


@dataclass(frozen=True)
class Hello(Message):
    TYPE = MessageType.HELLO
    CODECS = (U16, _text())
    version: int
    label: str


@dataclass(frozen=True)
class ListReaders(Message):
    TYPE = MessageType.LIST_READERS


@dataclass(frozen=True)
class Subscribe(Message):
    TYPE = MessageType.SUBSCRIBE


@dataclass(frozen=True)
class Connect(Message):
    TYPE = MessageType.CONNECT
    CODECS = (_text(), U32)
    reader: str
    timeout_ms: int


@dataclass(frozen=True)
class Transmit(Message):
    TYPE = MessageType.TRANSMIT
    CODECS = (U32, U32, _bytes(MAX_APDU))
    handle: int
    timeout_ms: int
    apdu: bytes = field(repr=False)  # a VERIFY carries the PIN


@dataclass(frozen=True)
class Disconnect(Message):
    TYPE = MessageType.DISCONNECT
    CODECS = (U32,)
    handle: int


@dataclass(frozen=True)
class Pkcs11Sign(Message):
    """Log in with ``pin`` to the agent's PKCS#11 token holding ``certificate`` (the
    DER the person was shown; no other token gets the PIN) and sign ``data`` (the
    kiosk's fresh challenge) with its key; nothing is kept on either side."""

    TYPE = MessageType.PKCS11_SIGN
    CODECS = (
        _text(),
        _text(),
        U32,
        _bytes(MAX_PIN),
        _bytes(MAX_SIGN_DATA),
        _bytes(MAX_CERTIFICATE),
    )
    unblock_at: str
    key_label: str
    timeout_ms: int
    pin: bytes = field(repr=False)
    data: bytes
    certificate: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class Ok(Message):
    TYPE = MessageType.OK


@dataclass(frozen=True)
class Welcome(Message):
    TYPE = MessageType.WELCOME
    CODECS = (U16, _text(), _flag())
    version: int
    label: str
    pkcs11: bool


@dataclass(frozen=True)
class Readers(Message):
    TYPE = MessageType.READERS
    CODECS = (_texts(),)
    names: tuple[str, ...]


@dataclass(frozen=True)
class Connected(Message):
    TYPE = MessageType.CONNECTED
    CODECS = (U32, _bytes(MAX_ATR))
    handle: int
    atr: bytes


@dataclass(frozen=True)
class Answer(Message):
    TYPE = MessageType.ANSWER
    CODECS = (_bytes(MAX_ANSWER),)
    rapdu: bytes  # data and SW1 SW2


@dataclass(frozen=True)
class Signature(Message):
    TYPE = MessageType.SIGNATURE
    CODECS = (_bytes(MAX_SIGNATURE),)
    signature: bytes


@dataclass(frozen=True)
class CardEvent(Message):
    TYPE = MessageType.CARD_EVENT
    CODECS = (_text(), _flag())
    reader: str
    inserted: bool


@dataclass(frozen=True)
class Failure(Message):
    """A card error: its class ``name``, ``message``, one text and one number parameter."""

    TYPE = MessageType.FAILURE
    CODECS = (_text(64), _text(), _text(), _i32())
    name: str
    message: str
    detail: str = ""
    number: int = 0


_TYPES: dict[int, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        Hello,
        ListReaders,
        Subscribe,
        Connect,
        Transmit,
        Disconnect,
        Pkcs11Sign,
        Ok,
        Welcome,
        Readers,
        Connected,
        Answer,
        Signature,
        CardEvent,
        Failure,
    )
}
REQUESTS = (Hello, ListReaders, Subscribe, Connect, Transmit, Disconnect, Pkcs11Sign)


def encode_payload(msg_id: int, message: Message) -> bytes:
    parts = [bytes((message.TYPE,)), U32.encode(msg_id)]
    for codec, spec in zip(message.CODECS, fields(message), strict=True):  # type: ignore[arg-type]
        parts.append(codec.encode(getattr(message, spec.name)))
    return b"".join(parts)


def encode_frame(msg_id: int, message: Message) -> bytes:
    """The whole frame (length prefix and payload); ValueError when it is too big."""
    payload = encode_payload(msg_id, message)
    if len(payload) > MAX_FRAME:
        raise ValueError(f"frame of {len(payload)} bytes, at most {MAX_FRAME}")
    return struct.pack(">I", len(payload)) + payload


def peek_id(payload: bytes | bytearray) -> int:
    """The request id of a payload that may not decode (0 when there is none)."""
    return int.from_bytes(payload[1:5], "big") if len(payload) >= 5 else 0


def decode_payload(payload: bytes | bytearray | memoryview) -> tuple[int, Message]:
    """``(request id, message)``; ProtocolError when the payload is not exactly one
    well-formed message."""
    reader = _Reader(payload)
    kind = reader.take(1, "訊息類型")[0]
    cls = _TYPES.get(kind)
    if cls is None:
        raise ProtocolError(f"未知的訊息類型 0x{kind:02X}")
    msg_id = struct.unpack(">I", reader.take(4, "訊息編號"))[0]
    what = cls.__name__
    values = [codec.decode(reader, what) for codec in cls.CODECS]
    if reader.pos != len(reader.data):
        raise ProtocolError(f"{what}：多出 {len(reader.data) - reader.pos} 位元組")
    return msg_id, cls(*values)


class FrameDecoder:
    """Splits a byte stream into payloads. ``feed`` returns the complete payloads;
    a length of 0 or above ``max_frame`` raises ProtocolError (the stream cannot be
    resynchronised after that: close it)."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytearray]:
        self._buffer += data
        out: list[bytearray] = []
        while len(self._buffer) >= HEADER:
            size = int.from_bytes(self._buffer[:HEADER], "big")
            if size == 0:
                raise ProtocolError("空的訊框（長度 0）")
            if size > self.max_frame:
                raise ProtocolError(f"訊框過大：{size} 位元組（上限 {self.max_frame}）")
            if len(self._buffer) < HEADER + size:
                break
            out.append(self._buffer[HEADER : HEADER + size])
            del self._buffer[: HEADER + size]
        return out

    def wipe(self) -> None:
        self._buffer[:] = bytes(len(self._buffer))
        self._buffer.clear()


# ---------------------------------------------------------------------- errors on the wire


def error_to_failure(exc: BaseException) -> Failure:
    """A Failure frame for ``exc`` (card errors keep their class and parameters)."""
    if not isinstance(exc, CardError):
        return Failure("CardError", "讀卡代理程式發生內部錯誤，請重新插入卡片再試")
    params = exc.params
    detail = ""
    for key in ("detail", "reader", "unblock_at", "reason"):
        value = params.get(key)
        if isinstance(value, str) and value:
            detail = value
            break
    number = 0
    if isinstance(exc, errors.WrongPin):
        number = exc.tries_left
    elif isinstance(exc, errors.CardUnresponsive):
        seconds = params.get("seconds")
        number = int(float(seconds) * 1000) if isinstance(seconds, int | float) else 0
    elif isinstance(exc, CommandRefused):
        number = exc.ins
    number = max(-(1 << 31), min(number, (1 << 31) - 1))
    return Failure(type(exc).__name__, clean_text(str(exc), MAX_TEXT // 4), detail[:200], number)


_REBUILD: dict[str, Callable[[Failure], CardError]] = {
    "NoReader": lambda f: errors.NoReader(),
    "PcscUnavailable": lambda f: errors.PcscUnavailable(clean_text(f.detail)),
    "NoCard": lambda f: errors.NoCard(clean_text(f.detail)),
    "CardRemoved": lambda f: errors.CardRemoved(),
    "CardUnresponsive": lambda f: errors.CardUnresponsive(max(f.number, 0) / 1000),
    "UnknownCard": lambda f: errors.UnknownCard(),
    "CardProtocolError": lambda f: errors.CardProtocolError(clean_text(f.detail)),
    "PinFormatError": lambda f: errors.PinFormatError(),
    "WrongPinTriesUnknown": lambda f: errors.WrongPinTriesUnknown(),
    "WrongPin": lambda f: errors.WrongPin(max(f.number, 0)),
    "PinBlocked": lambda f: errors.PinBlocked(clean_text(f.detail)),
    "SignatureInvalid": lambda f: errors.SignatureInvalid(),
    "PinNotVerified": lambda f: errors.PinNotVerified(),
    "ReaderBusy": lambda f: errors.ReaderBusy(clean_text(f.detail)),
    "Pkcs11Unavailable": lambda f: errors.Pkcs11Unavailable(clean_text(f.detail)),
    "CardTokenNotFound": lambda f: errors.CardTokenNotFound(),
    "CardReset": lambda f: errors.CardReset(),
    "CertificateProblem": lambda f: errors.CertificateProblem(
        clean_text(f.detail), clean_text(f.message)
    ),
    "CommandRefused": lambda f: CommandRefused(f.number & 0xFF),
    "AgentBusy": lambda f: AgentBusy(clean_text(f.detail)),
    "AgentProtocolError": lambda f: AgentProtocolError(clean_text(f.detail)),
}


def failure_to_error(failure: Failure) -> CardError:
    """The card error a Failure stands for (unknown names: a CardError with the
    agent's message, cleaned of control characters)."""
    rebuild = _REBUILD.get(failure.name)
    if rebuild is not None:
        return rebuild(failure)
    return CardError(clean_text(failure.message) or "讀卡代理程式回報錯誤")


# ---------------------------------------------------------------------- both ends


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a UNIX socket (None if unknown)."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):
        return None
    _pid, uid, _gid = struct.unpack("3i", raw)
    return int(uid)


def user_at_host() -> str:
    """``user@host`` of this process, as the other end is shown it."""
    try:
        user = getpass.getuser()
    except Exception:
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"
