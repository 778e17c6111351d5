"""The card agent's wire protocol: framing, strict decoding, errors on the wire."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from card.agent import protocol as wire
from card.agent.protocol import (
    AgentBusy,
    CommandRefused,
    DirectAccessRefused,
    ProtocolError,
    TooManyProofs,
)
from card.errors import (
    CardError,
    CardRemoved,
    CardReset,
    CardUnresponsive,
    NoCard,
    NotPersonalCard,
    NotTheCardShown,
    PinBlocked,
    ProofCancelled,
    ProofTimedOut,
    ReaderBusy,
    WrongPin,
    WrongPinTriesUnknown,
)

MESSAGES = [
    wire.Hello(
        wire.PROTOCOL_VERSION,
        "kiosk@server pid 42, SSH_CONNECTION 10.0.0.1 5555 10.0.0.2 22",
        "42-0badcafe",
    ),
    wire.ListReaders(),
    wire.Subscribe(),
    wire.ReadCard("Virtual PCD 00 00"),
    wire.LoginProof("Virtual PCD 00 00", b"\x11" * 32, b"\x22" * 32),
    wire.CancelProof(7),
    wire.Ok(),
    wire.Welcome(wire.PROTOCOL_VERSION, "staff@laptop", "smis.example.tw"),
    wire.Readers(("讀卡機 A", "Virtual PCD 00 01")),
    wire.CardInfo("hicos", b"\x30\x82" + b"\x00" * 100, bytes.fromhex("3B8080010101"), 1),
    wire.ProofSignature("smis.example.tw", b"\x30" * 72),
    wire.CardEvent("Virtual PCD 00 00", True),
    wire.Failure("WrongPin", "卡片密碼錯誤，尚可嘗試 2 次", "", 2),
]


def payload_of(frame: bytes) -> bytes:
    (size,) = struct.unpack(">I", frame[:4])
    assert size == len(frame) - 4
    return frame[4:]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(message: object) -> None:
    frame = wire.encode_frame(1234, message)  # type: ignore[arg-type]
    assert wire.decode_payload(payload_of(frame)) == (1234, message)


def test_frames_split_anywhere_are_put_back_together() -> None:
    stream = b"".join(wire.encode_frame(i, m) for i, m in enumerate(MESSAGES))
    decoder = wire.FrameDecoder()
    out = []
    for byte in stream:
        out += decoder.feed(bytes([byte]))
    assert [wire.decode_payload(p) for p in out] == list(enumerate(MESSAGES))
    assert decoder.pending == 0


def test_an_oversized_frame_is_refused_from_its_header() -> None:
    decoder = wire.FrameDecoder()
    with pytest.raises(ProtocolError, match="訊框過大"):
        decoder.feed(struct.pack(">I", wire.MAX_FRAME + 1))
    with pytest.raises(ProtocolError, match="空的訊框"):
        wire.FrameDecoder().feed(b"\x00\x00\x00\x00")


def test_encoding_refuses_what_the_other_side_would_refuse() -> None:
    with pytest.raises(ValueError):
        wire.encode_frame(1, wire.ReadCard("x" * (wire.MAX_FRAME + 10)))
    with pytest.raises(ValueError):
        wire.encode_frame(1, wire.ReadCard("a\x00b"))
    with pytest.raises(ValueError):
        wire.encode_frame(1, wire.CancelProof(-1))
    with pytest.raises(ValueError):
        wire.encode_frame(1, wire.LoginProof("A", b"\x00" * 31, b"\x00" * 32))
    with pytest.raises(ValueError):
        wire.encode_frame(1, wire.Hello(wire.PROTOCOL_VERSION, "k", "a\nb"))


def hello_payload(session_id: bytes) -> bytes:
    return (
        b"\x01\x00\x00\x00\x01"
        + struct.pack(">H", wire.PROTOCOL_VERSION)
        + b"\x00\x00\x00\x01k"
        + struct.pack(">I", len(session_id))
        + session_id
    )


def proof_payload(digest: bytes, nonce: bytes) -> bytes:
    return (
        b"\x09\x00\x00\x00\x02\x00\x00\x00\x01A"
        + struct.pack(">I", len(digest))
        + digest
        + struct.pack(">I", len(nonce))
        + nonce
    )


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        (hello_payload(b""), "不可為空"),
        (hello_payload(b"x" * 65), "超過上限"),
        (hello_payload(b"a\x1b[2Jb"), "控制字元"),
        (hello_payload(b"a\nb"), "控制字元"),
        (hello_payload("a\u0085b".encode()), "控制字元"),
        (hello_payload(b"\xff\xfe"), "UTF-8"),
        (proof_payload(b"\x00" * 31, b"\x00" * 32), "應為 32 位元組"),
        (proof_payload(b"\x00" * 32, b"\x00" * 33), "超過上限"),
        (proof_payload(b"\x00" * 32, b"\x00" * 16), "應為 32 位元組"),
        (proof_payload(b"\x00" * 32, b""), "應為 32 位元組"),
    ],
)
def test_session_ids_nonces_and_digests_are_exactly_what_a_proof_takes(
    payload: bytes, detail: str
) -> None:
    with pytest.raises(ProtocolError) as error:
        wire.decode_payload(payload)
    assert detail in error.value.detail


def test_the_version_2_card_commands_are_unknown_messages() -> None:
    # Connect, Transmit, Disconnect, Pkcs11Sign of version 2.
    for kind in (0x04, 0x05, 0x06, 0x07):
        with pytest.raises(ProtocolError, match=f"未知的訊息類型 0x{kind:02X}"):
            wire.decode_payload(bytes([kind]) + b"\x00\x00\x00\x01" + b"\x00" * 16)
    names = {cls.__name__ for cls in wire.REQUESTS}
    assert names == {"ListReaders", "Subscribe", "ReadCard", "LoginProof", "CancelProof"}


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        (b"\x42\x00\x00\x00\x01", "未知的訊息類型 0x42"),
        (b"\x01\x00\x00", "訊息編號"),
        (b"\x01\x00\x00\x00\x01\x00\x01", "Hello"),  # label missing
        (b"\x02\x00\x00\x00\x01\x00", "多出 1 位元組"),
        (b"\x01\x00\x00\x00\x01\x00\x01\x00\x00\x00\x02\xff\xfe", "UTF-8"),
        (b"\x01\x00\x00\x00\x01\x00\x01\x00\x00\x00\x01\x00", "NUL"),
        (b"\xc0\x00\x00\x00\x00\x00\x00\x00\x01a\x02", "應為 0 或 1"),
        (b"\x08\x00\x00\x00\x01\x7f\xff\xff\xff", "超過上限"),
        (b"\x82\x00\x00\x00\x01\xff\xff", "項目數"),
    ],
)
def test_malformed_payloads_get_a_clear_protocol_error(payload: bytes, detail: str) -> None:
    with pytest.raises(ProtocolError) as error:
        wire.decode_payload(payload)
    assert detail in error.value.detail
    assert "格式錯誤" in str(error.value)


@settings(max_examples=400, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_payloads_never_crash_the_decoder(data: bytes) -> None:
    try:
        wire.decode_payload(data)
    except ProtocolError:
        pass


@settings(max_examples=200, deadline=1000)
@given(st.sampled_from(MESSAGES), st.integers(0, 60), st.integers(0, 255))
def test_one_flipped_byte_decodes_or_is_refused(message: object, index: int, value: int) -> None:
    payload = bytearray(payload_of(wire.encode_frame(9, message)))  # type: ignore[arg-type]
    payload[index % len(payload)] = value
    try:
        wire.decode_payload(payload)
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=1000)
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_random_streams_never_crash_or_hang_the_frame_decoder(chunks: list[bytes]) -> None:
    decoder = wire.FrameDecoder(max_frame=1024)
    try:
        for chunk in chunks:
            for payload in decoder.feed(chunk):
                assert 0 < len(payload) <= 1024
                try:
                    wire.decode_payload(payload)
                except ProtocolError:
                    pass
    except ProtocolError:
        pass
    assert decoder.pending < 4 + 1024


@pytest.mark.parametrize(
    "error",
    [
        WrongPin(2),
        WrongPinTriesUnknown(),
        PinBlocked("自然人憑證管理中心"),
        NoCard("Virtual PCD 00 00"),
        CardRemoved(),
        CardUnresponsive(2.5),
        ReaderBusy("讀卡機"),
        CommandRefused(0x24),
        CommandRefused(0x87, 0x80),
        AgentBusy("16 個指令等候中"),
        ProofCancelled(),
        ProofTimedOut(120.0),
        NotTheCardShown(),
        TooManyProofs(3, 60),
        DirectAccessRefused(),
        NotPersonalCard("機關"),
        CardReset(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_card_errors_cross_the_wire_as_themselves(error: CardError) -> None:
    failure = wire.error_to_failure(error)
    _, decoded = wire.decode_payload(payload_of(wire.encode_frame(5, failure)))
    assert isinstance(decoded, wire.Failure)
    back = wire.failure_to_error(decoded)
    assert type(back) is type(error)
    assert str(back) == str(error)
    assert back.params == error.params


def test_unknown_failures_become_a_plain_card_error_without_control_characters() -> None:
    error = wire.failure_to_error(wire.Failure("SomethingNew", "壞\x1b[31m訊息\n", "", 0))
    assert type(error) is CardError
    assert "\x1b" not in str(error) and "\n" not in str(error)
    assert wire.failure_to_error(wire.Failure("X", "", "", 0)).args[0] == "讀卡代理程式回報錯誤"


def test_other_exceptions_never_leak_their_text() -> None:
    failure = wire.error_to_failure(ValueError("PIN 123456 leaked"))
    assert "123456" not in failure.message and failure.name == "CardError"


def test_refused_commands_are_named_for_the_staff_member() -> None:
    assert "CHANGE REFERENCE DATA" in wire.command_name(0x24)
    assert "RESET RETRY COUNTER" in str(CommandRefused(0x2C))
    assert "VERIFY" in str(CommandRefused(0x20)) and "CLA 00 INS 20" in str(CommandRefused(0x20))
    assert "INS 77" in wire.command_name(0x77)


def test_clean_text_strips_controls_and_cuts() -> None:
    assert wire.clean_text("a\x00b\x1bc\u2028d") == "a b c d"
    assert wire.clean_text("x" * 300, 10) == "x" * 9 + "…"


def test_no_message_has_a_field_for_a_pin_an_apdu_or_data_to_sign() -> None:
    from dataclasses import fields

    assert {type(m) for m in MESSAGES} == set(wire._TYPES.values())
    for message in MESSAGES:
        names = {f.name for f in fields(message)}  # type: ignore[arg-type]
        assert not names & {"pin", "apdu", "data", "challenge", "handle"}, type(message)
