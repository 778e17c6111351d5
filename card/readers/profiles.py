"""Recognise the card in a reader and read its login certificate."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from dataclasses import dataclass

from card.errors import CardMiddlewareNeeded, CardReset, UnknownCard
from card.readers.hicos import HicosCard, gppki_present
from card.readers.piv import PivCard
from card.transport import DEFAULT_TIMEOUT_S, CardConnection

__all__ = ["CardProfile", "CardRead", "ReaderCertificate", "read_card"]


class CardProfile(enum.StrEnum):
    HICOS = "hicos"  # MOICA / HPC: PIN and signing through PKCS#11 (card.readers.pkcs11)
    PIV = "piv"  # PIV card / YubiKey: PIN and signing with APDUs (card.readers.piv)


ReaderCertificate = Callable[[str], bytes]
"""``certificate(reader)``: the login certificate of the card in ``reader`` as the
PKCS#11 module holds it (card.readers.pkcs11.Pkcs11Signer.reader_certificate)."""


@dataclass(frozen=True)
class CardRead:
    profile: CardProfile
    certificate: bytes  # DER: PIV authentication cert (9A) or HiCOS signature cert (0x1500)
    reader: str
    atr: bytes
    # HiCOS only: 1 (CLA-0x80 files, read here) or 2 (GPPKI applet, read by the module).
    hicos_generation: int | None = None

    def __repr__(self) -> str:
        return (
            f"CardRead(profile={self.profile.value!r}, reader={self.reader!r}, "
            f"hicos_generation={self.hicos_generation!r}, "
            f"certificate=<{len(self.certificate)} bytes>)"
        )


def read_card(
    conn: CardConnection,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    module_certificate: ReaderCertificate | None = None,
) -> CardRead:
    """:func:`_read_card_once` inside one PC/SC transaction, so no other program's
    SELECT comes between our commands; a card reset by another program meanwhile
    (card.errors.CardReset) is read once more from the start.

    ``module_certificate`` runs after the transaction: the PKCS#11 module opens its own
    connection to the card, whose transaction would wait for ours."""
    module_asked: list[str] = []

    def module_later(reader: str) -> bytes:
        module_asked.append(reader)
        return b""

    def read_in_transaction() -> CardRead:
        module_asked.clear()
        with conn.transaction(timeout):
            return _read_card_once(
                conn,
                timeout=timeout,
                module_certificate=module_later if module_certificate else None,
            )

    try:
        read = read_in_transaction()
    except CardReset:
        read = read_in_transaction()
    if module_asked and module_certificate is not None:
        return dataclasses.replace(read, certificate=module_certificate(conn.reader))
    return read


def _read_card_once(
    conn: CardConnection,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    module_certificate: ReaderCertificate | None = None,
) -> CardRead:
    """Detect the profile and read the certificate used to log in.

    HiCOS first: its CLA-0x80 commands are harmless on a PIV card (6E00/6D00). Then
    PIV SELECT, then SELECT of the second-generation 自然人憑證's GPPKI applet, whose
    certificate only ``module_certificate`` (the PKCS#11 module) can read:
    CardMiddlewareNeeded without it. None of them → card.errors.UnknownCard. Each step
    has its own ``timeout``.
    """
    atr = conn.atr()
    hicos = HicosCard(conn, timeout=timeout)
    if hicos.detect_version() is not None:
        return CardRead(CardProfile.HICOS, hicos.read_signature_certificate(), conn.reader, atr, 1)
    piv = PivCard(conn, timeout=timeout)
    try:
        piv.select()
    except UnknownCard:
        if not gppki_present(conn, timeout=timeout):
            raise
        if module_certificate is None:
            raise CardMiddlewareNeeded() from None
        return CardRead(CardProfile.HICOS, module_certificate(conn.reader), conn.reader, atr, 2)
    return CardRead(CardProfile.PIV, piv.read_auth_certificate(), conn.reader, atr)
