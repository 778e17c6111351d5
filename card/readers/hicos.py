"""The HiCOS profile: real MOICA (自然人憑證) and HPC (醫事人員卡) cards by Chunghwa Telecom.

Only reading is done with APDUs, following the sequence published in the open-source
Taiwan_CDC_RI reader (CDCScript.c): every command uses CLA 0x80 (these cards answer
CLA 0x00 with 6E00). The PIN and signing go through the vendor's PKCS#11 module
(card.readers.pkcs11), because the HiCOS PIN APDUs are not public.

Two generations are told apart here. The first answers the CLA-0x80 sequence with a
version string the vendor's library knows (``CHT V21N``, ``V22N``, ``V31N``, ``V32N``).
The second-generation 自然人憑證 answers SELECT of the GPPKI applet
(:data:`GPPKI_AID`) and keeps its files, PIN and signature behind GlobalPlatform secure
messaging with the vendor's keys: the kiosk only learns that it is one, and everything
else goes through the PKCS#11 module.

File layout read here::

    MF 3F00 / DF 0900 / EF 0905   version string, starts with ASCII "CHT V32N" (or V21N …)
    MF 3F00 / DF 5030 / EF 08F2   certificate store: DER certificates at fixed offsets
"""

from __future__ import annotations

from card.apdu import Deadline, command, parse_single_tlv, sw_hex, transmit
from card.errors import CardProtocolError, CertificateProblem, UnsupportedHicosVersion
from card.transport import DEFAULT_TIMEOUT_S, CardConnection, Response

__all__ = [
    "CERT_OFFSETS",
    "CHUNK_SIZE",
    "GPPKI_AID",
    "HICOS_VERSIONS",
    "HICOS_VERSION_MARK",
    "HicosCard",
    "gppki_present",
    "select_apdu",
    "select_gppki_apdu",
]

HICOS_CLA = 0x80
HICOS_VERSION_MARK = b"CHT V32N"  # what cards issued today answer
# Every first-generation version the vendor's library knows; any other "CHT " answer is
# a HiCOS card this kiosk was not built for, and is named as such.
HICOS_VERSIONS = (b"CHT V21N", b"CHT V22N", b"CHT V31N", HICOS_VERSION_MARK)
_HICOS_PREFIX = b"CHT "
# The second-generation 自然人憑證's GPPKI applet.
GPPKI_AID = bytes.fromhex("A0000002830000062201696400010101")
# Where each certificate starts in EF 08F2 (CDCScript.c: GetRootCALength … GetCert2Length).
CERT_OFFSETS: dict[str, int] = {
    "root_ca": 0x0000,
    "issuing_ca": 0x0700,
    "encryption": 0x0E00,
    "signature": 0x1500,
}
# A certificate never runs into the next slot; the last slot gets a generous bound.
SLOT_SIZE = 0x0700
LAST_SLOT_MAX = 0x1000
CHUNK_SIZE = 200
VERSION_LENGTH = 0x14
_EMPTY_HEADERS = (b"\x00\x00\x00\x00", b"\xff\xff\xff\xff")


def select_apdu(fid: int) -> bytes:
    """``80 A4 00 00 02 <FID>``: select a file by its identifier."""
    return command(HICOS_CLA, 0xA4, 0x00, 0x00, fid.to_bytes(2, "big"))


def read_binary_apdu(offset: int, length: int) -> bytes:
    """``80 B0 <offset hi> <offset lo> <Le>``."""
    if not 0 <= offset <= 0x7FFF:
        raise ValueError(f"READ BINARY offset out of range: {offset:#x}")
    return command(HICOS_CLA, 0xB0, offset >> 8, offset & 0xFF, le=length)


def select_gppki_apdu() -> bytes:
    """``00 A4 04 00 10 <GPPKI AID>``: SELECT the second-generation applet by name."""
    return command(0x00, 0xA4, 0x04, 0x00, GPPKI_AID)


def gppki_present(conn: CardConnection, *, timeout: float = DEFAULT_TIMEOUT_S) -> bool:
    """True when the card answers SELECT of the GPPKI applet with 9000: a
    second-generation 自然人憑證. Harmless on other cards (6A82)."""
    return transmit(conn, select_gppki_apdu(), Deadline(timeout)).sw == 0x9000


DETECT_PATH = (0x3F00, 0x0900, 0x0905)
CERT_STORE_PATH = (0x3F00, 0x5030, 0x08F2)


def _selected(answer: Response) -> bool:
    # 61xx: selected, with a file control answer we do not need.
    return answer.ok or answer.sw1 == 0x61


class HicosCard:
    """The CLA-0x80 read sequence of a HiCOS card on one connection."""

    def __init__(self, conn: CardConnection, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.conn = conn
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"HicosCard(reader={getattr(self.conn, 'reader', '?')!r})"

    def _select_path(self, path: tuple[int, ...], deadline: Deadline) -> bool:
        return all(_selected(transmit(self.conn, select_apdu(fid), deadline)) for fid in path)

    def _read_binary(self, offset: int, length: int, deadline: Deadline) -> Response:
        answer = transmit(self.conn, read_binary_apdu(offset, length), deadline)
        if answer.sw1 == 0x6C and answer.sw2:
            # Wrong Le: the card tells the exact length; ask once more with it.
            answer = transmit(self.conn, read_binary_apdu(offset, answer.sw2), deadline)
        return answer

    def detect_version(self) -> bytes | None:
        """The version string (one of :data:`HICOS_VERSIONS`) of a first-generation
        HiCOS card, or None for any other card. UnsupportedHicosVersion for a HiCOS
        card with a version the vendor's library does not list.

        Harmless on other cards: a PIV card answers the CLA-0x80 commands with
        6E00/6D00, and this returns None.
        """
        deadline = Deadline(self.timeout)
        if not self._select_path(DETECT_PATH, deadline):
            return None
        answer = self._read_binary(0, VERSION_LENGTH, deadline)
        if answer.sw not in (0x9000, 0x6282):
            return None
        version = answer.data[: len(HICOS_VERSION_MARK)]
        if version in HICOS_VERSIONS:
            return version
        if version.startswith(_HICOS_PREFIX):
            shown = bytes(b if 0x20 <= b < 0x7F else 0x3F for b in version)
            raise UnsupportedHicosVersion(shown.decode("ascii"))
        return None

    def detect(self) -> bool:
        """True when the card is a first-generation HiCOS card of a known version."""
        return self.detect_version() is not None

    def _open_store(self, deadline: Deadline) -> None:
        if not self._select_path(CERT_STORE_PATH, deadline):
            raise CardProtocolError("找不到卡片的憑證檔（5030/08F2）")

    def _read_exact(self, offset: int, length: int, deadline: Deadline) -> bytes:
        answer = self._read_binary(offset, length, deadline)
        if not answer.ok:
            raise CardProtocolError(f"讀取憑證失敗（位址 {offset:04X}，SW {sw_hex(answer.sw)}）")
        if len(answer.data) != length:
            raise CardProtocolError(
                f"讀取憑證失敗（位址 {offset:04X}：要求 {length} 位元組，收到 {len(answer.data)}）"
            )
        return answer.data

    def _read_slot(self, name: str, deadline: Deadline) -> bytes | None:
        offset = CERT_OFFSETS[name]
        header = self._read_exact(offset, 4, deadline)
        if header in _EMPTY_HEADERS:
            return None
        if header[:2] != b"\x30\x82":
            raise CardProtocolError(
                f"憑證（位址 {offset:04X}）開頭應為 30 82，收到 {header[:2].hex(' ').upper()}"
            )
        total = 4 + int.from_bytes(header[2:4], "big")
        limit = LAST_SLOT_MAX if offset == max(CERT_OFFSETS.values()) else SLOT_SIZE
        if total > limit:
            raise CardProtocolError(f"憑證（位址 {offset:04X}）長度 {total} 超過上限 {limit}")
        cert = bytearray(header)
        while len(cert) < total:
            size = min(CHUNK_SIZE, total - len(cert))
            cert += self._read_exact(offset + len(cert), size, deadline)
        der = bytes(cert)
        parse_single_tlv(der, 0x30, what=f"憑證（位址 {offset:04X}）")
        return der

    def read_signature_certificate(self) -> bytes:
        """DER of the signature certificate (offset 0x1500), the one used to log in."""
        deadline = Deadline(self.timeout)
        self._open_store(deadline)
        cert = self._read_slot("signature", deadline)
        if cert is None:
            raise CertificateProblem("missing", "卡片中沒有可用於登入的憑證")
        return cert

    def read_certificates(self) -> dict[str, bytes]:
        """Every certificate present, by slot name (root_ca, issuing_ca, encryption, signature)."""
        deadline = Deadline(self.timeout)
        self._open_store(deadline)
        found: dict[str, bytes] = {}
        for name in CERT_OFFSETS:
            cert = self._read_slot(name, deadline)
            if cert is not None:
                found[name] = cert
        return found
