"""The card agent's wire protocol (``smis-tui card-agent`` ↔ the kiosk over ``ssh -R``).

Framing: a 4-byte big-endian length, then that many payload bytes; a frame is at
most :data:`MAX_FRAME` bytes and never empty. Payload: 1 byte message type, a 4-byte
big-endian request id (0 for events), then the type's fields in a fixed order:

* ``u8`` / ``u16`` / ``u32`` / ``i32``: big-endian integers;
* ``bytes``: a 4-byte length and the bytes (each field has its own maximum; a nonce
  and a certificate digest exactly 32);
* ``str``: like ``bytes``, UTF-8, no NUL (a session id: 1–64 bytes, no control
  character);
* ``strs``: a 2-byte count, then that many ``str``.

Decoding is strict: an unknown type, a short or overlong field, bytes left over, bad
UTF-8 or an out-of-range value raise :class:`ProtocolError` with a clear detail (and
nothing else: the decoder never raises IndexError, struct.error or UnicodeError).

Conversation (version 3): the kiosk (client) sends :class:`Hello` with the protocol
version, a label naming its session (``user@host pid N, SSH_CONNECTION …``) and its
session id, which the agent shows to the staff member; the agent answers
:class:`Welcome` with the server name the staff member connected to, or
:class:`Failure`. Then the only requests there are: ListReaders → Readers,
Subscribe → Ok (then :class:`CardEvent` frames, id 0, first one for every card
already present), ReadCard → CardInfo (the certificate the agent itself read), and
LoginProof → ProofSignature (a signature over card.agent.proof.login_message, which
the agent builds; the PIN is typed at the agent), with CancelProof → Ok to abandon a
pending LoginProof. No message carries an APDU, a PIN or bytes to be signed.

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
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from card import errors
from card.errors import CardError, CardErrorWithDetail, PcscUnavailable, aside
from smis_tui.core.chars import is_hidden

__all__ = [
    "HEADER",
    "MAX_FRAME",
    "PROTOCOL_VERSION",
    "REQUESTS",
    "AgentBusy",
    "AgentProtocolError",
    "AgentUnavailable",
    "CancelProof",
    "CardEvent",
    "CardInfo",
    "CommandRefused",
    "DirectAccessRefused",
    "Failure",
    "FrameDecoder",
    "Hello",
    "InsecureSocket",
    "ListReaders",
    "LoginProof",
    "Message",
    "Ok",
    "ProofSignature",
    "ProtocolError",
    "ReadCard",
    "Readers",
    "Subscribe",
    "TooManyProofs",
    "Welcome",
    "clean_text",
    "command_name",
    "decode_payload",
    "encode_frame",
    "error_to_failure",
    "failure_to_error",
    "peer_uid",
    "user_at_host",
]

PROTOCOL_VERSION = 3  # 3: no APDU, PIN or data to sign on the wire; login proofs
HEADER = 4
MAX_FRAME = 64 * 1024
MAX_TEXT = 1024
MAX_READERS = 64
MAX_ATR = 64
MAX_SIGNATURE = 4096
MAX_CERTIFICATE = 16384
MAX_SESSION_ID = 64
MAX_SERVER_NAME = 255
DIGEST_BYTES = 32
NONCE_BYTES = 32


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
    """A command the agent's allow-list does not let reach the card: only the reads
    of a certificate do (card.agent.allowlist)."""

    key = "card.agent_refused"

    def __init__(self, ins: int, cla: int = 0x00) -> None:
        name = command_name(ins)
        super().__init__(
            f"讀卡代理程式拒絕此卡片指令：{name}（CLA {cla:02X} INS {ins:02X}；"
            "只允許讀取憑證，本系統不變更、不解鎖密碼，也不寫入卡片）",
            ins=ins,
        )
        self.ins = ins
        self.cla = cla


class DirectAccessRefused(CardError):
    """The kiosk asked for a raw connection to a card at the agent: there is none."""

    key = "card.agent_no_direct_access"
    template = "讀卡代理程式不提供直接存取卡片的連線：伺服器只能讀取憑證並請您在電腦上登入"


class AgentBusy(CardError):
    """Too many requests waiting, or another login already asks for a PIN."""

    key = "card.agent_busy"
    template = "讀卡代理程式忙碌中：卡片尚未回應先前的指令，請稍後再試"

    def __init__(self, detail: str = "") -> None:
        super().__init__(self.template + aside(detail), detail=detail)
        self.detail = detail


class TooManyProofs(CardError):
    """More login proofs than the agent allows one server session in a while."""

    key = "card.agent_too_many_proofs"
    template = "登入要求過於頻繁：讀卡代理程式 {seconds} 秒內最多接受 {limit} 次，請稍後再試"

    def __init__(self, limit: int, seconds: int) -> None:
        super().__init__(limit=limit, seconds=seconds)
        self.limit = limit
        self.seconds = seconds


# ---------------------------------------------------------------------- command names

# Names of the instructions the staff member may see refused (the allow-list itself
# is card.agent.allowlist). The odd INS of each pair is the BER-TLV variant.
COMMAND_NAMES: dict[int, str] = {
    0x04: "停用檔案（DEACTIVATE FILE）",
    0x06: "停用紀錄（DEACTIVATE RECORD）",
    0x08: "啟用紀錄（ACTIVATE RECORD）",
    0x0C: "抹除紀錄（ERASE RECORD）",
    0x0E: "抹除資料（ERASE BINARY）",
    0x0F: "抹除資料（ERASE BINARY）",
    0x20: "驗證卡片密碼（VERIFY）",
    0x21: "驗證卡片密碼（VERIFY）",
    0x22: "設定安全環境（MANAGE SECURITY ENVIRONMENT）",
    0x24: "變更卡片密碼（CHANGE REFERENCE DATA）",
    0x25: "變更卡片密碼（CHANGE REFERENCE DATA）",
    0x26: "停用密碼驗證（DISABLE VERIFICATION REQUIREMENT）",
    0x27: "停用密碼驗證（DISABLE VERIFICATION REQUIREMENT）",
    0x28: "啟用密碼驗證（ENABLE VERIFICATION REQUIREMENT）",
    0x29: "啟用密碼驗證（ENABLE VERIFICATION REQUIREMENT）",
    0x2A: "卡片簽章（PERFORM SECURITY OPERATION）",
    0x2C: "解鎖卡片密碼（RESET RETRY COUNTER）",
    0x2D: "解鎖卡片密碼（RESET RETRY COUNTER）",
    0x44: "啟用檔案（ACTIVATE FILE）",
    0x46: "產生金鑰對（GENERATE ASYMMETRIC KEY PAIR）",
    0x47: "產生金鑰對（GENERATE ASYMMETRIC KEY PAIR）",
    0x86: "卡片簽章（GENERAL AUTHENTICATE）",
    0x87: "卡片簽章（GENERAL AUTHENTICATE）",
    0x88: "卡片簽章（INTERNAL AUTHENTICATE）",
    0xC2: "封裝指令（ENVELOPE）",
    0xC3: "封裝指令（ENVELOPE）",
    0xD0: "寫入資料（WRITE BINARY）",
    0xD1: "寫入資料（WRITE BINARY）",
    0xD2: "寫入紀錄（WRITE RECORD）",
    0xD6: "更新資料（UPDATE BINARY）",
    0xD7: "更新資料（UPDATE BINARY）",
    0xD8: "匯入金鑰（PUT KEY）",
    0xDA: "寫入資料物件（PUT DATA）",
    0xDB: "寫入資料物件（PUT DATA）",
    0xDC: "更新紀錄（UPDATE RECORD）",
    0xDD: "更新紀錄（UPDATE RECORD）",
    0xE0: "建立檔案（CREATE FILE）",
    0xE2: "附加紀錄（APPEND RECORD）",
    0xE4: "刪除檔案（DELETE FILE）",
    0xE6: "終止卡片（TERMINATE DF）",
    0xE8: "終止卡片（TERMINATE CARD USAGE）",
    0xF0: "設定卡片狀態（SET STATUS）",
    0xF6: "廠商指令（F6）",
    # YubiKey PIV extensions that change the card: set PIN retries, reset the PIV
    # application, import a key, set the management key.
    0xFA: "設定密碼次數（SET PIN RETRIES）",
    0xFB: "重設卡片（RESET）",
    0xFE: "匯入金鑰（IMPORT KEY／TERMINATE EF）",
    0xFF: "設定管理金鑰（SET MANAGEMENT KEY）",
}


def command_name(ins: int) -> str:
    """What the staff member is told a refused instruction is."""
    return COMMAND_NAMES.get(ins, f"INS {ins:02X}")


# ---------------------------------------------------------------------- text hygiene


def _unprintable(char: str) -> bool:
    """Control characters, and the hidden format characters (Unicode Cf: bidi
    overrides and isolates, zero-width marks) that would let one text look like
    another on the staff member's screen, e.g. a session id like the kiosk's."""
    return is_hidden(char) or char in "\u2028\u2029"


def clean_text(text: str, limit: int = 200) -> str:
    """Text from the other side, safe to print on a terminal or a screen: control
    characters become spaces, and it is cut to ``limit`` characters."""
    out = "".join(" " if _unprintable(c) else c for c in text[: limit + 1])
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


def _exact(size: int) -> _Codec:
    """``bytes`` of exactly ``size`` bytes (a nonce, a digest)."""
    raw = _bytes(size)

    def encode(value: Any) -> bytes:
        if not isinstance(value, bytes | bytearray) or len(value) != size:
            raise ValueError(f"exactly {size} bytes expected")
        return raw.encode(value)

    def decode(reader: _Reader, what: str) -> Any:
        data = raw.decode(reader, what)
        if len(data) != size:
            raise ProtocolError(f"{what}：應為 {size} 位元組，收到 {len(data)}")
        return data

    return _Codec(encode, decode)


def _name(maximum: int) -> _Codec:
    """``str`` of 1–``maximum`` UTF-8 bytes without control characters: a session id
    or a server name, which go into the message a card signs and onto screens."""
    raw = _bytes(maximum)

    def check(data: bytes) -> str | None:
        if not data:
            return "不可為空"
        if any(byte < 0x20 or byte == 0x7F for byte in data):
            return "含有控制字元"
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return "不是有效的 UTF-8 文字"
        if any(_unprintable(char) for char in text):
            return "含有控制字元或隱藏的格式字元"
        return None

    def encode(value: Any) -> bytes:
        if not isinstance(value, str):
            raise ValueError(f"str expected, got {type(value).__name__}")
        data = value.encode("utf-8")
        problem = check(data) if len(data) <= maximum else "too long"
        if problem is not None:
            raise ValueError(f"{value!r}: {problem}")
        return raw.encode(data)

    def decode(reader: _Reader, what: str) -> Any:
        data = raw.decode(reader, what)
        problem = check(data)
        if problem is not None:
            raise ProtocolError(f"{what}：{problem}")
        return data.decode("utf-8")

    return _Codec(encode, decode)


U8 = _uint(1, ">B")
U16 = _uint(2, ">H")
U32 = _uint(4, ">I")


# ---------------------------------------------------------------------- messages


class MessageType(enum.IntEnum):
    HELLO = 0x01
    LIST_READERS = 0x02
    SUBSCRIBE = 0x03
    # 0x04–0x07 were Connect, Transmit, Disconnect and Pkcs11Sign (version 2): unknown
    # types now, so a kiosk of version 2 is cut off at its first such frame.
    READ_CARD = 0x08
    LOGIN_PROOF = 0x09
    CANCEL_PROOF = 0x0A
    OK = 0x80
    WELCOME = 0x81
    READERS = 0x82
    CARD_INFO = 0x88
    PROOF_SIGNATURE = 0x89
    CARD_EVENT = 0xC0
    FAILURE = 0xFF


class Message:
    """Base of every message: ``TYPE`` and one codec per dataclass field, in order."""

    TYPE: ClassVar[MessageType]
    CODECS: ClassVar[tuple[_Codec, ...]] = ()


@dataclass(frozen=True)
class Hello(Message):
    """``label``: who the server session is, as the staff member is shown it;
    ``session_id``: the id the server session shows on its screen, in every proof."""

    TYPE = MessageType.HELLO
    CODECS = (U16, _text(), _name(MAX_SESSION_ID))
    version: int
    label: str
    session_id: str


@dataclass(frozen=True)
class ListReaders(Message):
    TYPE = MessageType.LIST_READERS


@dataclass(frozen=True)
class Subscribe(Message):
    TYPE = MessageType.SUBSCRIBE


@dataclass(frozen=True)
class ReadCard(Message):
    """The card in ``reader``: the agent reads its certificate itself."""

    TYPE = MessageType.READ_CARD
    CODECS = (_text(),)
    reader: str


@dataclass(frozen=True)
class LoginProof(Message):
    """Ask the staff member to log in with the card in ``reader`` whose certificate has
    SHA-256 ``cert_sha256``: the card signs login_message(server name, session id,
    ``nonce``)."""

    TYPE = MessageType.LOGIN_PROOF
    CODECS = (_text(), _exact(DIGEST_BYTES), _exact(NONCE_BYTES))
    reader: str
    cert_sha256: bytes
    nonce: bytes


@dataclass(frozen=True)
class CancelProof(Message):
    """Abandon the LoginProof sent with request id ``request``."""

    TYPE = MessageType.CANCEL_PROOF
    CODECS = (U32,)
    request: int


@dataclass(frozen=True)
class Ok(Message):
    TYPE = MessageType.OK


@dataclass(frozen=True)
class Welcome(Message):
    """``server_name``: the host the staff member connected to, as the agent puts it in
    every proof."""

    TYPE = MessageType.WELCOME
    CODECS = (U16, _text(), _name(MAX_SERVER_NAME))
    version: int
    label: str
    server_name: str


@dataclass(frozen=True)
class Readers(Message):
    TYPE = MessageType.READERS
    CODECS = (_texts(),)
    names: tuple[str, ...]


@dataclass(frozen=True)
class CardInfo(Message):
    """card.readers.profiles.CardRead of the card (``hicos_generation`` 0: none)."""

    TYPE = MessageType.CARD_INFO
    CODECS = (_text(16), _bytes(MAX_CERTIFICATE), _bytes(MAX_ATR), U8)
    profile: str
    certificate: bytes
    atr: bytes
    hicos_generation: int = 0


@dataclass(frozen=True)
class ProofSignature(Message):
    """The card's signature over login_message(``server_name``, session id, nonce)."""

    TYPE = MessageType.PROOF_SIGNATURE
    CODECS = (_name(MAX_SERVER_NAME), _bytes(MAX_SIGNATURE))
    server_name: str
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
        ReadCard,
        LoginProof,
        CancelProof,
        Ok,
        Welcome,
        Readers,
        CardInfo,
        ProofSignature,
        CardEvent,
        Failure,
    )
}
#: What a server session may send after Hello.
REQUESTS = (ListReaders, Subscribe, ReadCard, LoginProof, CancelProof)


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
    for key in ("detail", "reader", "unblock_at", "reason", "subject_type", "version"):
        value = params.get(key)
        if isinstance(value, str) and value:
            detail = value
            break
    number = 0
    if isinstance(exc, errors.WrongPin):
        number = exc.tries_left
    elif isinstance(exc, errors.CardUnresponsive | errors.ProofTimedOut):
        seconds = params.get("seconds")
        number = int(float(seconds) * 1000) if isinstance(seconds, int | float) else 0
    elif isinstance(exc, CommandRefused):
        number = exc.cla << 8 | exc.ins
    elif isinstance(exc, TooManyProofs):
        number = exc.seconds << 8 | exc.limit
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
    "NotPersonalCard": lambda f: errors.NotPersonalCard(clean_text(f.detail)),
    "UnsupportedHicosVersion": lambda f: errors.UnsupportedHicosVersion(clean_text(f.detail)),
    "CardMiddlewareNeeded": lambda f: errors.CardMiddlewareNeeded(),
    "ReaderTokenUnknown": lambda f: errors.ReaderTokenUnknown(clean_text(f.detail)),
    "ProofCancelled": lambda f: errors.ProofCancelled(),
    "ProofTimedOut": lambda f: errors.ProofTimedOut(max(f.number, 0) / 1000),
    "NotTheCardShown": lambda f: errors.NotTheCardShown(),
    "CommandRefused": lambda f: CommandRefused(f.number & 0xFF, (f.number >> 8) & 0xFF),
    "DirectAccessRefused": lambda f: DirectAccessRefused(),
    "TooManyProofs": lambda f: TooManyProofs(f.number & 0xFF, (f.number >> 8) & 0xFFFF),
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
