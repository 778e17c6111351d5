"""Recognise the card in a reader and read its login certificate."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from card.readers.hicos import HicosCard
from card.readers.piv import PivCard
from card.transport import DEFAULT_TIMEOUT_S, CardConnection

__all__ = ["CardProfile", "CardRead", "read_card"]


class CardProfile(enum.StrEnum):
    HICOS = "hicos"  # MOICA / HPC: PIN and signing through PKCS#11 (card.readers.pkcs11)
    PIV = "piv"  # PIV card / YubiKey: PIN and signing with APDUs (card.readers.piv)


@dataclass(frozen=True)
class CardRead:
    profile: CardProfile
    certificate: bytes  # DER: PIV authentication cert (9A) or HiCOS signature cert (0x1500)
    reader: str
    atr: bytes

    def __repr__(self) -> str:
        return (
            f"CardRead(profile={self.profile.value!r}, reader={self.reader!r}, "
            f"certificate=<{len(self.certificate)} bytes>)"
        )


def read_card(conn: CardConnection, *, timeout: float = DEFAULT_TIMEOUT_S) -> CardRead:
    """Detect the profile and read the certificate used to log in.

    HiCOS first: its CLA-0x80 commands are harmless on a PIV card (6E00/6D00). Then
    PIV SELECT. Neither → card.errors.UnknownCard. Each step has its own ``timeout``.
    """
    atr = conn.atr()
    hicos = HicosCard(conn, timeout=timeout)
    if hicos.detect():
        return CardRead(CardProfile.HICOS, hicos.read_signature_certificate(), conn.reader, atr)
    piv = PivCard(conn, timeout=timeout)
    piv.select()
    return CardRead(CardProfile.PIV, piv.read_auth_certificate(), conn.reader, atr)
