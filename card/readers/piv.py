"""The PIV profile (NIST SP 800-73-4), byte for byte, so real PIV cards and YubiKeys work.

Used for the PIV authentication key and certificate (slot 9A). The caller selects
the application once per connection (:meth:`PivCard.select`), then reads the
certificate, verifies the PIN and asks the card to sign. ``PivCard`` keeps no PIN.
"""

from __future__ import annotations

import zlib

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from card.apdu import (
    Deadline,
    encode_tlv,
    exchange,
    parse_single_tlv,
    parse_template,
    sw_hex,
    transmit,
    transmit_chained,
)
from card.errors import (
    CardProtocolError,
    CertificateProblem,
    PinBlocked,
    PinFormatError,
    PinNotVerified,
    UnknownCard,
    WrongPin,
)
from card.pin import check_pin_format, pad_piv, wipe
from card.transport import DEFAULT_TIMEOUT_S, CardConnection, Response

__all__ = [
    "ALG_ECC_P256",
    "ALG_RSA_2048",
    "GET_AUTH_CERT_APDU",
    "PIV_AID",
    "PIV_UNBLOCK_AT",
    "SELECT_PIV_APDU",
    "SLOT_AUTHENTICATION",
    "PivCard",
    "algorithm_for_public_key",
    "parse_certificate_object",
]

# SP 800-73-4 Part 1 §2.2: the PIV application identifier (right-truncated form).
PIV_AID = bytes.fromhex("A0 00 00 03 08 00 00 10 00")
SELECT_PIV_APDU = bytes.fromhex("00 A4 04 00 09") + PIV_AID + b"\x00"
# GET DATA for the X.509 Certificate for PIV Authentication (tag 5FC105, key 9A).
GET_AUTH_CERT_APDU = bytes.fromhex("00 CB 3F FF 05 5C 03 5F C1 05 00")
# VERIFY with no data field: the card answers with the retry counter.
VERIFY_STATUS_APDU = bytes.fromhex("00 20 00 80")
SLOT_AUTHENTICATION = 0x9A
ALG_RSA_2048 = 0x07
ALG_ECC_P256 = 0x11
# What each algorithm signs: the 256-byte padded block, or the 32-byte digest.
_INPUT_LENGTH = {ALG_RSA_2048: 256, ALG_ECC_P256: 32}
# Who unblocks a PIV card's PIN: the kiosk never does.
PIV_UNBLOCK_AT = "發卡單位"
MAX_CERT_BYTES = 16 * 1024


def algorithm_for_public_key(public_key: object) -> int:
    """The PIV algorithm byte for a certificate's public key (RSA-2048 or P-256)."""
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size == 2048:
        return ALG_RSA_2048
    if isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(
        public_key.curve, ec.SECP256R1
    ):
        return ALG_ECC_P256
    raise CertificateProblem("key_type", "憑證金鑰類型不支援（PIV 卡僅支援 RSA-2048 與 P-256）")


def parse_certificate_object(data: bytes) -> bytes:
    """The DER certificate inside a PIV certificate data object ``53 {70, 71, FE}``.

    Decompresses a gzip-compressed certificate (CertInfo bit 0 set).
    """
    what = "PIV 憑證物件"
    body = parse_template(parse_single_tlv(data, 0x53, what=what), what=what)
    cert = body.get(0x70, b"")
    if not cert:
        raise CertificateProblem("missing", "卡片中沒有可用於登入的憑證")
    info = body.get(0x71, b"\x00")
    if len(info) != 1:
        raise CardProtocolError(f"{what}：CertInfo 長度應為 1，收到 {len(info)}")
    if info[0] & 0x01:  # CertInfo b0 CompressionType: 1 = gzip
        cert = _gunzip(cert)
    # The certificate must be exactly one DER SEQUENCE.
    parse_single_tlv(cert, 0x30, what="PIV 憑證")
    return cert


def _gunzip(data: bytes) -> bytes:
    inflater = zlib.decompressobj(wbits=47)  # gzip or zlib header, detected
    try:
        out = inflater.decompress(data, MAX_CERT_BYTES + 1)
    except zlib.error:
        raise CardProtocolError("壓縮的憑證無法解壓縮") from None
    if len(out) > MAX_CERT_BYTES:
        raise CardProtocolError(f"解壓縮後的憑證超過 {MAX_CERT_BYTES // 1024} KiB")
    if not inflater.eof:
        raise CardProtocolError("壓縮的憑證不完整")
    return out


class PivCard:
    """A PIV application on one card connection."""

    def __init__(
        self,
        conn: CardConnection,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        unblock_at: str = PIV_UNBLOCK_AT,
    ) -> None:
        self.conn = conn
        self.timeout = timeout
        self.unblock_at = unblock_at

    def __repr__(self) -> str:
        return f"PivCard(reader={getattr(self.conn, 'reader', '?')!r})"

    def _send(self, apdu: bytes, deadline: Deadline) -> Response:
        return exchange(self.conn, apdu, deadline)

    # ------------------------------------------------------------------ select / read

    def select(self) -> None:
        """SELECT the PIV application; a card without it raises UnknownCard."""
        answer = self._send(SELECT_PIV_APDU, Deadline(self.timeout))
        if not answer.ok:
            # 6A82 (not found), 6D00/6E00 (no such command/class) and friends.
            raise UnknownCard()

    def read_auth_certificate(self) -> bytes:
        """DER of the X.509 Certificate for PIV Authentication (slot 9A)."""
        answer = self._send(GET_AUTH_CERT_APDU, Deadline(self.timeout))
        if answer.sw == 0x6A82:
            raise CertificateProblem("missing", "卡片中沒有可用於登入的憑證")
        if not answer.ok:
            raise CardProtocolError(f"讀取憑證失敗（SW {sw_hex(answer.sw)}）")
        return parse_certificate_object(answer.data)

    # ------------------------------------------------------------------ PIN

    def pin_tries_left(self) -> int | None:
        """Tries left before the PIN blocks; ``None`` when it is already verified."""
        answer = transmit(self.conn, VERIFY_STATUS_APDU, Deadline(self.timeout))
        if answer.ok:
            return None
        if answer.sw1 == 0x63 and answer.sw2 & 0xF0 == 0xC0:
            return answer.sw2 & 0x0F
        if answer.sw == 0x6983:
            return 0
        raise CardProtocolError(f"查詢密碼剩餘次數失敗（SW {sw_hex(answer.sw)}）")

    def verify_pin(self, pin: str | bytes | bytearray) -> None:
        """VERIFY the PIV application PIN; the padded copy is wiped right after.

        Raises PinFormatError, WrongPin(tries_left) or PinBlocked(unblock_at).
        """
        checked = check_pin_format(pin)
        del pin  # only wipeable copies from here on
        padded = pad_piv(checked)
        wipe(checked)
        # Fixed size, filled in place: no reallocation leaves a stray copy behind.
        buffer = bytearray(5 + len(padded))
        buffer[:5] = b"\x00\x20\x00\x80\x08"
        buffer[5:] = padded
        wipe(padded)
        try:
            # The transport takes bytes, so one immutable copy exists for the call.
            answer = transmit(self.conn, bytes(buffer), Deadline(self.timeout))
        finally:
            wipe(buffer)
        if answer.ok:
            return
        if answer.sw1 == 0x63 and answer.sw2 & 0xF0 == 0xC0:
            left = answer.sw2 & 0x0F
            if left == 0:
                raise PinBlocked(self.unblock_at)
            raise WrongPin(left)
        if answer.sw == 0x6983:
            raise PinBlocked(self.unblock_at)
        if answer.sw == 0x6A80:
            raise PinFormatError()
        raise CardProtocolError(f"驗證密碼失敗（SW {sw_hex(answer.sw)}）")

    # ------------------------------------------------------------------ signing

    def sign(self, data: bytes, algorithm: int, key: int = SLOT_AUTHENTICATION) -> bytes:
        """GENERAL AUTHENTICATE: the card applies its private key to ``data``.

        RSA-2048 (``ALG_RSA_2048``): ``data`` is the 256-byte padded block (e.g.
        card.challenge.piv_rsa_block) and the answer is the raw 256-byte signature.
        P-256 (``ALG_ECC_P256``): ``data`` is the 32-byte digest (card.challenge.
        piv_ec_digest) and the answer is a DER ECDSA-Sig-Value. Needs a verified PIN
        (else PinNotVerified).
        """
        expected = _INPUT_LENGTH.get(algorithm)
        if expected is None:
            raise ValueError(f"unsupported PIV algorithm {algorithm:#04x}")
        if len(data) != expected:
            raise ValueError(f"algorithm {algorithm:#04x} signs {expected} bytes, got {len(data)}")
        template = encode_tlv(0x7C, encode_tlv(0x82, b"") + encode_tlv(0x81, data))
        answer = transmit_chained(
            self.conn, 0x00, 0x87, algorithm, key, template, 256, Deadline(self.timeout)
        )
        if answer.sw == 0x6982:
            raise PinNotVerified()
        if answer.sw == 0x6983:
            raise PinBlocked(self.unblock_at)
        if not answer.ok:
            raise CardProtocolError(f"卡片簽章失敗（SW {sw_hex(answer.sw)}）")
        what = "簽章回應"
        body = parse_template(parse_single_tlv(answer.data, 0x7C, what=what), what=what)
        signature = body.get(0x82)
        if not signature:
            raise CardProtocolError(f"{what}：缺少簽章（標籤 82）")
        if algorithm == ALG_RSA_2048:
            if len(signature) != 256:
                raise CardProtocolError(f"{what}：RSA 簽章應為 256 位元組，收到 {len(signature)}")
        else:
            parse_single_tlv(signature, 0x30, what="ECDSA 簽章")
        return signature
