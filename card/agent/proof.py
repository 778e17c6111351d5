"""The login proof of a remote staff member (docs/architecture.md, "Remote card agent").

In an SSH session the kiosk runs on the server, the card and its PIN stay on the staff
member's computer. The server may ask the card agent for exactly two things: the
certificates on the cards in its readers, and a *login proof*. For a proof the server
sends a fresh nonce; the agent itself builds the message the card signs –
:func:`login_message` of a fixed domain-separation prefix, the server name the staff
member connected to, the server session's id and the nonce – shows the person which
server and session ask, takes the PIN there, and returns only the signature. The
server verifies it against the certificate over the same message. No request can make
a card sign bytes the server chose, and no PIN byte ever leaves the staff computer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from card.readers.profiles import CardRead

__all__ = [
    "LOGIN_PROOF_DOMAIN",
    "MAX_SERVER_NAME",
    "MAX_SESSION_ID",
    "NONCE_BYTES",
    "LoginProof",
    "RemoteCards",
    "login_message",
]

#: Starts every message an agent has a card sign: no document, certificate request or
#: other protocol's signed data starts with these bytes, so a proof is good for
#: nothing but a smis-tui login.
LOGIN_PROOF_DOMAIN = b"smis-tui remote login proof v1\x00"
NONCE_BYTES = 32
MAX_SERVER_NAME = 255  # a DNS name
MAX_SESSION_ID = 64


def _field(text: str, maximum: int, what: str) -> bytes:
    data = text.encode("utf-8")
    if not data or len(data) > maximum or any(ch < 0x20 or ch == 0x7F for ch in data):
        raise ValueError(f"{what}: 1–{maximum} bytes of printable UTF-8")
    return len(data).to_bytes(2, "big") + data


def login_message(server_name: str, session_id: str, nonce: bytes) -> bytes:
    """The exact bytes a card signs for a remote login: the domain prefix, then the
    server name and the session id (each a 2-byte length and UTF-8), then the nonce.
    Length-prefixed fields keep two different (name, session) pairs from ever giving
    the same bytes. ValueError for a field out of range."""
    if len(nonce) != NONCE_BYTES:
        raise ValueError(f"nonce: exactly {NONCE_BYTES} bytes")
    return (
        LOGIN_PROOF_DOMAIN
        + _field(server_name, MAX_SERVER_NAME, "server name")
        + _field(session_id, MAX_SESSION_ID, "session id")
        + nonce
    )


@dataclass(frozen=True)
class LoginProof:
    """A card's signature over :func:`login_message` (``server_name`` is the name the
    agent put in it: the server checks it is one of its own before verifying)."""

    server_name: str
    signature: bytes


class RemoteCards(Protocol):
    """What the kiosk on the server can ask of a staff member's card agent."""

    #: This server session's id: in every proof and shown on both screens.
    session_id: str

    def read_card(self, reader: str) -> CardRead:
        """The card in ``reader`` and its login certificate (no PIN involved)."""
        ...

    def prove(self, reader: str, cert_sha256: str, nonce: bytes, timeout: float) -> LoginProof:
        """Ask the staff member to type the PIN on their own computer, and the card whose
        certificate has ``cert_sha256`` to sign :func:`login_message` over ``nonce``.
        Blocks until then. Raises the card's errors as a local card would (WrongPin with
        the tries left, PinBlocked, CardRemoved), ProofCancelled when the person
        cancels at the agent or :meth:`cancel` is called, ProofTimedOut after
        ``timeout`` seconds."""
        ...

    def cancel(self) -> None:
        """Abandon a :meth:`prove` under way (the kiosk's cancel key); thread-safe."""
        ...
