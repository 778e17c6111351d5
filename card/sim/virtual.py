"""Virtual cards that answer APDUs like the real ones, for tests and the demo.

* :class:`VirtualPivCard` — a PIV application (NIST SP 800-73-4) with one key in slot 9A
  next to a GlobalPlatform security domain: SELECT, GET DATA answering at most Le bytes
  and ``61xx`` for the rest, VERIFY with a retry counter, GENERAL AUTHENTICATE with
  command chaining (RSA-2048 raw or P-256 ECDSA).
* :class:`VirtualHicosCard` — the CLA-0x80 file system of a MOICA/HPC card read by
  card.readers.hicos (version string in EF 0905, certificates in EF 08F2).
* :class:`GarbageCard` and :class:`FaultyCard` — scripted, random, truncated or
  wrong answers, a slow card and a card pulled out mid-command, for bad-input tests.

Every card has ``atr``, ``process(apdu) -> data + SW1 SW2``, ``power_off()`` and
``reset()`` (:class:`SimulatedCard`), which is all card.sim.inprocess and the vpcd
bridge need.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.hashes import SHA256

from card.apdu import describe_apdu, encode_tlv, parse_single_tlv, parse_template
from card.errors import CardProtocolError, CardRemoved
from card.pin import PIV_PIN_LENGTH, check_pin_format, pad_piv, wipe
from card.readers.hicos import CERT_OFFSETS, HICOS_VERSION_MARK, LAST_SLOT_MAX, SLOT_SIZE
from card.readers.piv import ALG_ECC_P256, ALG_RSA_2048, SLOT_AUTHENTICATION

__all__ = [
    "HICOS_ATR",
    "ISD_AID",
    "PIV_ATR",
    "YUBIKEY_ATR",
    "FaultyCard",
    "GarbageCard",
    "CardWrapper",
    "SimulatedCard",
    "VirtualHicosCard",
    "VirtualPivCard",
]

# YubiKey 5 NFC (historical bytes end in ASCII "YubiKey@"): only for a card that also
# answers the YubiKey extensions, which VirtualPivCard does not.
YUBIKEY_ATR = bytes.fromhex("3B FD 13 00 00 81 31 FE 15 80 73 C0 21 C0 57 59 75 62 69 4B 65 79 40")
# An ATR seen on a Chunghwa Telecom HiCOS card; the reader never relies on ATRs.
HICOS_ATR = bytes.fromhex("3B BE 96 00 00 41 03 00 00 00 00 00 00 00 00 00 02 90 00")

PIV_FULL_AID = bytes.fromhex("A0 00 00 03 08 00 00 10 00 01 00")
# Application Property Template answered to SELECT (SP 800-73-4 Part 2 §3.1.1).
PIV_APT = encode_tlv(
    0x61, encode_tlv(0x4F, PIV_FULL_AID[5:]) + encode_tlv(0x79, encode_tlv(0x4F, PIV_FULL_AID[:5]))
)
AUTH_CERT_TAG = bytes.fromhex("5F C1 05")


class SimulatedCard(Protocol):
    @property
    def atr(self) -> bytes: ...

    def process(self, apdu: bytes) -> bytes: ...

    def power_off(self) -> None: ...

    def reset(self) -> None: ...


class CardWrapper:
    """A card that hands everything to ``inner``: tests override :meth:`process` to
    make it slow, stuck or vanish at the moment they need."""

    def __init__(self, inner: SimulatedCard) -> None:
        self.inner = inner

    @property
    def atr(self) -> bytes:
        return self.inner.atr

    def process(self, apdu: bytes) -> bytes:
        return self.inner.process(apdu)

    def power_off(self) -> None:
        self.inner.power_off()

    def reset(self) -> None:
        self.inner.reset()


def _sw(sw: int, data: bytes = b"") -> bytes:
    return data + sw.to_bytes(2, "big")


@dataclass(frozen=True)
class _Command:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes
    le: int | None  # None: no Le byte; 256 for an Le byte of 00


def _parse_command(apdu: bytes) -> _Command | None:
    """A short command APDU, or None when its length bytes do not add up."""
    if len(apdu) < 4:
        return None
    cla, ins, p1, p2 = apdu[0], apdu[1], apdu[2], apdu[3]
    if len(apdu) == 4:
        return _Command(cla, ins, p1, p2, b"", None)
    if len(apdu) == 5:
        return _Command(cla, ins, p1, p2, b"", apdu[4] or 256)
    lc = apdu[4]
    if lc == 0:
        return None
    rest = len(apdu) - 5 - lc
    if rest == 0:
        return _Command(cla, ins, p1, p2, bytes(apdu[5:]), None)
    if rest == 1:
        return _Command(cla, ins, p1, p2, bytes(apdu[5:-1]), apdu[-1] or 256)
    return None


class _ChunkedAnswers:
    """Answers handed out as ISO 7816-4 says for short APDUs: at most Ne bytes (the
    command's Le; 256 when it has none, as cards answer case-3 commands under T=1),
    then ``61xx`` (xx: bytes still available, 00 for 256 or more) until GET RESPONSE
    has fetched the rest."""

    def __init__(self) -> None:
        self.pending = b""

    def start(self, data: bytes, le: int | None) -> bytes:
        self.pending = data
        return self.next(le)

    def next(self, le: int | None) -> bytes:
        size = 256 if le is None else le
        part, self.pending = self.pending[:size], self.pending[size:]
        if self.pending:
            return _sw(0x6100 | (min(len(self.pending), 256) & 0xFF), part)
        return _sw(0x9000, part)


def _atr_with_check_byte(atr: bytes) -> bytes:
    """``atr`` and its TCK (ISO 7816-3 8.2.5: T0 to TCK XOR to zero)."""
    check = 0
    for byte in atr[1:]:
        check ^= byte
    return atr + bytes((check,))


# A generic ATR: T=1 (PC/SC part 3's layout: TD1 80, TD2 01) and historical bytes that
# name no product. The virtual card implements SP 800-73-4 and none of the YubiKey
# extensions (GET VERSION, GET SERIAL), so it does not claim to be one.
PIV_ATR = _atr_with_check_byte(bytes.fromhex("3B 8A 80 01") + b"VirtualPIV")
# GlobalPlatform's Issuer Security Domain, present on every GlobalPlatform card and the
# application selected after a reset: another program selecting it deselects PIV.
ISD_AID = bytes.fromhex("A0 00 00 01 51 00 00 00")
ISD_FCI = encode_tlv(0x6F, encode_tlv(0x84, ISD_AID) + encode_tlv(0xA5, b""))
CHUID_TAG = bytes.fromhex("5F C1 02")
DISCOVERY_TAG = bytes.fromhex("7E")
# The FASC-N of a card issued outside the US federal government (agency code 9999,
# system code 9999, credential number 999999), in its 5-bit BCD-with-parity encoding.
NON_FEDERAL_FASC_N = bytes.fromhex(
    "D4 E7 39 DA 73 9C ED 39 CE 73 9D 83 68 58 21 08 42 10 84 21 C8 42 10 C3 EB"
)
# Discovery Object PIN Usage Policy (SP 800-73-4 Part 1): the PIV Card Application PIN
# only, no global PIN.
PIN_USAGE_POLICY = bytes.fromhex("40 00")
_INS_SELECT = 0xA4
_INS_GET_DATA = 0xCB
_INS_VERIFY = 0x20
_INS_GENERAL_AUTHENTICATE = 0x87
_INS_GET_RESPONSE = 0xC0
# Card management (PUT DATA, GENERATE ASYMMETRIC KEY PAIR) needs the card management
# key, which this card never authenticates.
_INS_CARD_MANAGEMENT = frozenset({0xDB, 0x47})


class VirtualPivCard:
    """A card holding a PIV application (NIST SP 800-73-4) with an RSA-2048 or P-256 key
    and its certificate in slot 9A, next to a GlobalPlatform Issuer Security Domain.

    The PIV application holds the CHUID, the Discovery Object and the 9A certificate;
    GET DATA of any other object answers 6A82. A SELECT that fails leaves the current
    application and its security status as they are (Part 2 §3.1.1); selecting another
    application drops the verified PIN, re-selecting PIV does not. Answers honour Le.
    """

    def __init__(
        self,
        certificate_der: bytes,
        private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
        pin: str,
        tries: int = 3,
        *,
        compress_certificate: bool = False,
        atr: bytes = PIV_ATR,
    ) -> None:
        if isinstance(private_key, rsa.RSAPrivateKey) and private_key.key_size == 2048:
            self.algorithm = ALG_RSA_2048
        elif isinstance(private_key, ec.EllipticCurvePrivateKey) and isinstance(
            private_key.curve, ec.SECP256R1
        ):
            self.algorithm = ALG_ECC_P256
        else:
            raise ValueError("VirtualPivCard supports RSA-2048 and P-256 keys")
        if not 1 <= tries <= 15:
            raise ValueError("tries must be 1..15")
        self._key = private_key
        checked = check_pin_format(pin)
        self._pin = pad_piv(checked)
        wipe(checked)
        self.max_tries = tries
        self.tries_left = tries
        self._atr = atr
        if compress_certificate:
            import gzip

            stored, info = gzip.compress(certificate_der, mtime=0), b"\x01"
        else:
            stored, info = certificate_der, b"\x00"
        guid = hashlib.sha256(certificate_der).digest()[:16]
        self._objects: dict[bytes, bytes] = {
            AUTH_CERT_TAG: encode_tlv(
                0x53, encode_tlv(0x70, stored) + encode_tlv(0x71, info) + encode_tlv(0xFE, b"")
            ),
            # CHUID (SP 800-73-4 Part 1): FASC-N, GUID, expiration date, issuer signature
            # (empty: no content signing key here), error detection code.
            CHUID_TAG: encode_tlv(
                0x53,
                encode_tlv(0x30, NON_FEDERAL_FASC_N)
                + encode_tlv(0x34, guid)
                + encode_tlv(0x35, b"20991231")
                + encode_tlv(0x3E, b"")
                + encode_tlv(0xFE, b""),
            ),
            DISCOVERY_TAG: encode_tlv(
                0x7E, encode_tlv(0x4F, PIV_FULL_AID) + encode_tlv(0x5F2F, PIN_USAGE_POLICY)
            ),
        }
        self.application: Literal["piv", "isd"] = "isd"
        self.verified = False
        self._answers = _ChunkedAnswers()
        self._chain: bytearray | None = None
        self._chain_head = (0, 0, 0)
        self.signatures = 0

    def __repr__(self) -> str:
        return (
            f"VirtualPivCard(algorithm={self.algorithm:#04x}, application={self.application}, "
            f"verified={self.verified}, tries_left={self.tries_left})"
        )

    @property
    def atr(self) -> bytes:
        return self._atr

    @property
    def selected(self) -> bool:
        """Whether the PIV application is the current one."""
        return self.application == "piv"

    @property
    def blocked(self) -> bool:
        return self.tries_left == 0

    def power_off(self) -> None:
        self.application = "isd"
        self.verified = False
        self._answers.pending = b""
        self._chain = None

    def reset(self) -> None:
        self.power_off()

    def process(self, apdu: bytes) -> bytes:
        cmd = _parse_command(apdu)
        if cmd is None:
            self._chain = None
            return _sw(0x6700)
        if cmd.cla & ~0x10 != 0x00:
            return _sw(0x6E00)
        if cmd.ins == _INS_GET_RESPONSE and cmd.cla == 0x00:
            if not self._answers.pending:
                return _sw(0x6985)
            return self._answers.next(cmd.le)
        self._answers.pending = b""
        head = (cmd.ins, cmd.p1, cmd.p2)
        if self._chain is not None and head != self._chain_head:
            self._chain = None
            return _sw(0x6883)  # last command of the chain expected
        if cmd.cla & 0x10:
            if cmd.ins != _INS_GENERAL_AUTHENTICATE or not self.selected:
                return _sw(0x6884)  # chaining not supported here
            if self._chain is None:
                self._chain = bytearray()
                self._chain_head = head
            self._chain += cmd.data
            if len(self._chain) > 4096:
                self._chain = None
                return _sw(0x6700)
            return _sw(0x9000)
        data = cmd.data
        if self._chain is not None:
            data = bytes(self._chain) + data
            self._chain = None
        if cmd.ins == _INS_SELECT:
            return self._select(cmd)
        if not self.selected:
            # The Issuer Security Domain: it holds no data object a PIV command could
            # name, and its other commands (GlobalPlatform card content management)
            # are not modelled.
            return _sw(0x6A88 if cmd.ins in (0xCA, 0xCB) else 0x6D00)
        if cmd.ins == _INS_GET_DATA:
            return self._get_data(cmd)
        if cmd.ins == _INS_VERIFY:
            return self._verify(cmd)
        if cmd.ins == _INS_GENERAL_AUTHENTICATE:
            return self._general_authenticate(cmd, data)
        if cmd.ins in _INS_CARD_MANAGEMENT:
            return _sw(0x6982)
        return _sw(0x6D00)

    def _select(self, cmd: _Command) -> bytes:
        """SELECT by DF name (P1 04; P2 00 answers the FCI, 0C nothing). Whatever fails
        leaves the current application selected and its PIN state as it was."""
        if cmd.p1 != 0x04 or cmd.p2 not in (0x00, 0x0C):
            return _sw(0x6A86)
        if len(cmd.data) >= 5 and PIV_FULL_AID.startswith(cmd.data):
            application: Literal["piv", "isd"] = "piv"
            answer = PIV_APT
        elif len(cmd.data) >= 5 and ISD_AID.startswith(cmd.data):
            application, answer = "isd", ISD_FCI
        else:
            return _sw(0x6A82)
        if cmd.p2 == 0x0C:
            answer = b""
        elif cmd.le is not None and cmd.le < len(answer):
            # The FCI is one fixed answer, not a data object to fetch in parts: the
            # command is refused with the exact length (ISO 7816-4 SW 6Cxx), to be
            # sent again with that Le.
            return _sw(0x6C00 | len(answer))
        if application != self.application:
            self.verified = False  # the PIN is verified for PIV while PIV stays selected
        self.application = application
        return _sw(0x9000, answer)

    def _get_data(self, cmd: _Command) -> bytes:
        if (cmd.p1, cmd.p2) != (0x3F, 0xFF):
            return _sw(0x6A86)
        try:
            tag = parse_single_tlv(cmd.data, 0x5C)
        except CardProtocolError:
            return _sw(0x6A80)
        found = self._objects.get(tag)
        if found is None:
            return _sw(0x6A82)
        return self._answers.start(found, cmd.le)

    def _verify(self, cmd: _Command) -> bytes:
        if cmd.p2 != 0x80:
            return _sw(0x6A88)
        if cmd.p1 == 0xFF and not cmd.data:
            self.verified = False
            return _sw(0x9000)
        if cmd.p1 != 0x00:
            return _sw(0x6A86)
        if not cmd.data:
            if self.blocked:
                return _sw(0x6983)
            if self.verified:
                return _sw(0x9000)
            return _sw(0x63C0 | self.tries_left)
        if len(cmd.data) != PIV_PIN_LENGTH:
            return _sw(0x6A80)
        if self.blocked:
            return _sw(0x6983)
        if hmac.compare_digest(cmd.data, self._pin):
            self.tries_left = self.max_tries
            self.verified = True
            return _sw(0x9000)
        self.tries_left -= 1
        self.verified = False
        return _sw(0x63C0 | self.tries_left)

    def _general_authenticate(self, cmd: _Command, data: bytes) -> bytes:
        if cmd.p2 != SLOT_AUTHENTICATION:
            return _sw(0x6A88)
        if cmd.p1 != self.algorithm:
            return _sw(0x6A86)
        if not self.verified:
            return _sw(0x6982)
        try:
            body = parse_template(parse_single_tlv(data, 0x7C))
        except CardProtocolError:
            return _sw(0x6A80)
        challenge = body.get(0x81)
        if body.get(0x82) != b"" or challenge is None:
            return _sw(0x6A80)
        signature = self._sign(challenge)
        if signature is None:
            return _sw(0x6A80)
        self.signatures += 1
        return self._answers.start(encode_tlv(0x7C, encode_tlv(0x82, signature)), cmd.le)

    def _sign(self, challenge: bytes) -> bytes | None:
        key = self._key
        if isinstance(key, rsa.RSAPrivateKey):
            if len(challenge) != 256:
                return None
            numbers = key.private_numbers()
            n = numbers.public_numbers.n
            m = int.from_bytes(challenge, "big")
            if m >= n:
                return None
            return pow(m, numbers.d, n).to_bytes(256, "big")
        if len(challenge) != 32:
            return None
        return key.sign(challenge, ec.ECDSA(Prehashed(SHA256())))


class VirtualHicosCard:
    """The CLA-0x80 read side of a MOICA/HPC card: version EF and certificate store.

    ``certificates`` maps a slot name (``root_ca``, ``issuing_ca``, ``encryption``,
    ``signature``) or an offset in EF 08F2 to a DER certificate. ``version`` is what
    EF 0905 starts with: ``CHT V32N`` for cards issued today, the older ``CHT V21N``,
    ``V22N`` or ``V31N``, or anything else to stand for a version the kiosk refuses.
    (A second-generation card is card.sim.hicos_gen2.VirtualHicosGen2Card.)
    """

    def __init__(
        self,
        certificates: Mapping[str | int, bytes],
        kind: Literal["moica", "hpc"] = "moica",
        *,
        version: bytes = HICOS_VERSION_MARK,
        card_number: bytes = b"TP03000000000001",
        atr: bytes = HICOS_ATR,
    ) -> None:
        self.kind = kind
        self._atr = atr
        last = max(CERT_OFFSETS.values())
        store = bytearray(last + SLOT_SIZE)
        for where, der in certificates.items():
            offset = CERT_OFFSETS[where] if isinstance(where, str) else where
            if offset not in CERT_OFFSETS.values():
                raise ValueError(f"no certificate slot at {offset:#06x}")
            limit = LAST_SLOT_MAX if offset == last else SLOT_SIZE
            if len(der) > limit:
                raise ValueError(f"certificate of {len(der)} bytes does not fit at {offset:#06x}")
            if offset + len(der) > len(store):
                store.extend(bytes(offset + len(der) - len(store)))
            store[offset : offset + len(der)] = der
        # MF -> {DF: {EF: content}}; the store and the version string as the card has them.
        self._files: dict[int, dict[int, bytes]] = {
            0x0900: {0x0903: card_number, 0x0905: version.ljust(0x14, b"\x00")},
            0x5030: {0x08F2: bytes(store)},
        }
        self._df: int | None = None  # None: MF
        self._ef: bytes | None = None

    def __repr__(self) -> str:
        return f"VirtualHicosCard(kind={self.kind!r})"

    @property
    def atr(self) -> bytes:
        return self._atr

    def power_off(self) -> None:
        self._df = None
        self._ef = None

    def reset(self) -> None:
        self.power_off()

    def process(self, apdu: bytes) -> bytes:
        cmd = _parse_command(apdu)
        if cmd is None:
            return _sw(0x6700)
        if cmd.cla != 0x80:
            return _sw(0x6E00)
        if cmd.ins == 0xA4:
            return self._select(cmd)
        if cmd.ins == 0xB0:
            return self._read_binary(cmd)
        return _sw(0x6D00)

    def _select(self, cmd: _Command) -> bytes:
        if (cmd.p1, cmd.p2) != (0x00, 0x00):
            return _sw(0x6A86)
        if len(cmd.data) != 2:
            return _sw(0x6700)
        fid = int.from_bytes(cmd.data, "big")
        if fid == 0x3F00:
            self._df, self._ef = None, None
            return _sw(0x9000)
        if self._df is None and fid in self._files:
            self._df, self._ef = fid, None
            return _sw(0x9000)
        if self._df is not None and fid in self._files[self._df]:
            self._ef = self._files[self._df][fid]
            return _sw(0x9000)
        return _sw(0x6A82)

    def _read_binary(self, cmd: _Command) -> bytes:
        if self._ef is None:
            return _sw(0x6986)
        if cmd.p1 & 0x80:
            return _sw(0x6A86)
        if cmd.le is None:
            return _sw(0x6700)
        offset = (cmd.p1 << 8) | cmd.p2
        if offset >= len(self._ef):
            return _sw(0x6B00)
        part = self._ef[offset : offset + cmd.le]
        return _sw(0x9000 if len(part) == cmd.le else 0x6282, part)


class GarbageCard:
    """Answers from a script, a function, or random bytes.

    ``answers`` is a sequence (the last one repeats once it runs out) or a function of
    the command; without it every answer is 0–``max_length`` random bytes.
    """

    def __init__(
        self,
        answers: Sequence[bytes] | Callable[[bytes], bytes] | None = None,
        *,
        seed: int = 0,
        max_length: int = 300,
        atr: bytes = b"\x3b\x00",
    ) -> None:
        self._answers = answers
        self._rng = random.Random(seed)
        self._max_length = max_length
        self._atr = atr
        self.count = 0

    def __repr__(self) -> str:
        return f"GarbageCard(count={self.count})"

    @property
    def atr(self) -> bytes:
        return self._atr

    def power_off(self) -> None:
        pass

    def reset(self) -> None:
        pass

    def process(self, apdu: bytes) -> bytes:
        index = self.count
        self.count += 1
        if self._answers is None:
            return self._rng.randbytes(self._rng.randint(0, self._max_length))
        if callable(self._answers):
            return self._answers(apdu)
        if not self._answers:
            return b""
        return self._answers[min(index, len(self._answers) - 1)]


Fault = Literal["slow", "vanish", "truncate", "garbage", "sw"]


class FaultyCard:
    """Wraps a card and spoils its answers from command number ``after`` (0-based) on.

    * ``slow``: answer only after ``seconds`` (woken early by power off / reset);
    * ``vanish``: raise CardRemoved, as if pulled out mid-command;
    * ``truncate``: keep the status word, cut the data in half;
    * ``garbage``: keep the status word, replace the data with random bytes;
    * ``sw``: keep the data, replace the status word with ``sw``.

    ``times`` limits how many commands are spoiled (None: all). ``seen`` lists the
    commands received, as hex with PIN data masked.
    """

    def __init__(
        self,
        inner: SimulatedCard,
        fault: Fault,
        *,
        after: int = 0,
        times: int | None = None,
        seconds: float = 30.0,
        sw: int = 0x6F00,
        seed: int = 0,
    ) -> None:
        self.inner = inner
        self.fault = fault
        self.after = after
        self.times = times
        self.seconds = seconds
        self.sw = sw
        self._rng = random.Random(seed)
        self._wake = threading.Event()
        self.count = 0
        self.spoiled = 0
        self.seen: list[str] = []

    def __repr__(self) -> str:
        return f"FaultyCard({self.inner!r}, fault={self.fault!r}, after={self.after})"

    @property
    def atr(self) -> bytes:
        return self.inner.atr

    def power_off(self) -> None:
        self._wake.set()
        self.inner.power_off()

    def reset(self) -> None:
        self._wake.set()
        self.inner.reset()
        self._wake = threading.Event()

    def process(self, apdu: bytes) -> bytes:
        self.seen.append(describe_apdu(apdu))
        index = self.count
        self.count += 1
        if index < self.after or (self.times is not None and self.spoiled >= self.times):
            return self.inner.process(apdu)
        self.spoiled += 1
        if self.fault == "vanish":
            raise CardRemoved()
        if self.fault == "slow":
            self._wake.wait(self.seconds)
            return self.inner.process(apdu)
        answer = self.inner.process(apdu)
        data, sw = answer[:-2], answer[-2:]
        if self.fault == "truncate":
            return data[: len(data) // 2] + sw
        if self.fault == "garbage":
            return self._rng.randbytes(len(data)) + sw
        return data + self.sw.to_bytes(2, "big")
