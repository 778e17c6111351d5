"""How a card signs the login challenge (docs/architecture.md, "Cards").

A PIV card verifies the PIN and signs on the card itself (VERIFY, then GENERAL
AUTHENTICATE); a HiCOS card (MOICA, HPC) logs in and signs through the vendor's
PKCS#11 module, here or at the remote card agent. Whichever it is, a blocked card is
sent where it can be unblocked (:data:`UNBLOCK_AT`): the kiosk never changes or
unblocks a PIN.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from card.challenge import piv_ec_digest, piv_rsa_block
from card.errors import CardError
from card.identity import CardIdentity, CardKind
from card.readers.piv import ALG_ECC_P256, PIV_UNBLOCK_AT, PivCard, algorithm_for_public_key
from card.readers.profiles import CardProfile, CardRead
from card.transport import DEFAULT_TIMEOUT_S, CardConnection

__all__ = [
    "UNBLOCK_AT",
    "Pkcs11Signing",
    "SignerFactory",
    "SignerForKind",
    "sign_challenge",
    "signer_for_kind",
]

# Where a blocked card is unblocked, by the kind of card. card.readers.pkcs11 has its own
# defaults for HiCOS cards: importing it here would load the PKCS#11 library for PIV too.
UNBLOCK_AT = {
    CardKind.HPC: "醫事憑證管理中心",
    CardKind.MOICA: "自然人憑證管理中心",
    CardKind.PIV: PIV_UNBLOCK_AT,
}


class Pkcs11Signing(Protocol):
    """A PKCS#11 module's login and signature: card.readers.pkcs11.Pkcs11Signer here,
    card.agent.client.AgentPkcs11Signer at the remote card agent. ``sign`` logs in only
    to the token holding ``certificate`` (DER) that is the card in ``reader``: the card
    the person was shown, where they are."""

    def sign(
        self,
        pin: str | bytes | bytearray,
        data: bytes,
        *,
        certificate: bytes,
        reader: str,
        key_label: str = "SIGN",
    ) -> bytes: ...

    def reader_certificate(self, reader: str, key_label: str = "SIGN") -> bytes:
        """The login certificate of the card in ``reader``, read by the module without
        a PIN (a second-generation 自然人憑證 shows it no other way)."""
        ...


SignerFactory = Callable[[str], Pkcs11Signing]
"""``factory(unblock_at)``: a PKCS#11 signer whose PinBlocked names ``unblock_at``."""
SignerForKind = Callable[[CardKind], Pkcs11Signing]
"""``signer(kind)``: the PKCS#11 signer for a card of that kind."""


def signer_for_kind(factory: SignerFactory) -> SignerForKind:
    """Signers from ``factory``, each sending a blocked card to where its kind is
    unblocked."""

    def signer(kind: CardKind) -> Pkcs11Signing:
        return factory(UNBLOCK_AT[kind])

    return signer


def sign_challenge(
    conn: CardConnection,
    read: CardRead,
    identity: CardIdentity,
    pin: bytearray,
    challenge: bytes,
    *,
    pkcs11: SignerForKind | None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> bytes:
    """The card's signature over ``challenge`` after ``pin`` (which the caller wipes):
    on the card for PIV, else through ``pkcs11`` (CardError when there is none)."""
    if read.profile == CardProfile.PIV:
        piv = PivCard(conn, timeout=timeout, unblock_at=UNBLOCK_AT[identity.kind])
        algorithm = algorithm_for_public_key(identity.certificate.public_key())
        data = piv_ec_digest(challenge) if algorithm == ALG_ECC_P256 else piv_rsa_block(challenge)
        # One transaction: another program's SELECT between VERIFY and GENERAL
        # AUTHENTICATE would drop the verified PIN. A reset by another program
        # (card.errors.CardReset) is not retried: the person types the PIN again.
        with conn.transaction(timeout):
            piv.select()
            piv.verify_pin(pin)
            return piv.sign(data, algorithm)
    if pkcs11 is None:
        raise CardError("此卡片需要 PKCS#11 模組（SMIS_PKCS11_MODULE）才能驗證密碼")
    # The token of the card read in this reader, and no other, gets the PIN.
    return pkcs11(identity.kind).sign(
        pin, challenge, certificate=read.certificate, reader=read.reader
    )
