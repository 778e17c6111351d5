"""The HiCOS profile: real MOICA (自然人憑證) and HPC (醫事人員卡) cards by Chunghwa Telecom.

Only reading is done with APDUs, following the sequence published in the open-source
Taiwan_CDC_RI reader (CDCScript.c): every command uses CLA 0x80 (these cards answer
CLA 0x00 with 6E00). The PIN and signing go through the vendor's PKCS#11 module
(card.readers.pkcs11), because the HiCOS PIN APDUs are not public.

File layout read here::

    MF 3F00 / DF 0900 / EF 0905   version string, starts with ASCII "CHT V32N"
    MF 3F00 / DF 5030 / EF 08F2   certificate store: DER certificates at fixed offsets
"""

from __future__ import annotations

from card.apdu import Deadline, command, parse_single_tlv, sw_hex, transmit
from card.errors import CardProtocolError, CertificateProblem
from card.transport import DEFAULT_TIMEOUT_S, CardConnection, Response

__all__ = [
    "CERT_OFFSETS",
    "CHUNK_SIZE",
    "HICOS_VERSION_MARK",
    "HicosCard",
    "select_apdu",
]

HICOS_CLA = 0x80
HICOS_VERSION_MARK = b"CHT V32N"
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

    def detect(self) -> bool:
        """True when the card is a HiCOS card with the ``CHT V32N`` version string.

        Harmless on other cards: a PIV card answers the CLA-0x80 commands with
        6E00/6D00, and this returns False.
        """
        deadline = Deadline(self.timeout)
        if not self._select_path(DETECT_PATH, deadline):
            return False
        answer = self._read_binary(0, VERSION_LENGTH, deadline)
        return answer.sw in (0x9000, 0x6282) and answer.data.startswith(HICOS_VERSION_MARK)

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
