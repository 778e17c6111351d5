"""Card proofs (docs/architecture.md, "Identity at each step"): a card that has just
signed a fresh challenge of ours, and the one rule by which such a card stands for an
ID or an account. Every change to an account asks the account service for a proof,
so no screen or script can skip the card.

The rule, the same everywhere:

- a card already bound to the account stands for it;
- a card bound to another account stands for nothing else;
- 醫事人員卡: the full ID in the certificate equals the ID;
- 自然人憑證: the certificate carries only the ID's last 4 digits, so the last 4
  digits *and* the holder's name must equal — the account's stored name when the
  account exists (a name typed into the form would let anyone sharing those digits in),
  the application's name for a new account, where the reviewer is shown that the
  name and the digits matched, so approving confirms the identity;
- a card with no ID in its certificate (PIV) never binds itself to an ID.
"""

from __future__ import annotations

import enum
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from card.identity import CardIdentity, CardKind, matches_person_id
from models.schema import Account, CardBinding
from models.textfold import fold
from smis_tui.services import prepared
from smis_tui.services.errors import NotAllowed
from smis_tui.services.prepared import slot

# How long a card proof stands for its holder: long enough to fill in the form the
# proof opened, short enough that a kiosk left alone does not keep it.
PROOF_TTL_S = 600.0
# The refusals that mean the card has to be asked (again) before the change.
PROOF_GONE = frozenset({"error.card_proof_expired", "error.card_proof_required"})


class CardMatch(enum.StrEnum):
    """How the card was found to stand for the ID (shown to the reviewer)."""

    BOUND = "bound"
    FULL_ID = "full_id"
    NAME_AND_LAST4 = "name_and_last4"


@dataclass(frozen=True)
class CardProof:
    """A card that has just signed our challenge. Only :class:`CardProofs` makes
    them, and only card login code that checked the signature asks it to."""

    identity: CardIdentity
    token: str = field(repr=False)


@dataclass(frozen=True)
class ProvenCard:
    """The card behind a change, as the account's audit row and the reviewer see it."""

    kind: str
    cert_sha256: str
    match: CardMatch

    def detail(self) -> dict[str, str]:
        return {"kind": self.kind, "cert_sha256": self.cert_sha256, "match": str(self.match)}


class CardProofs:
    """The proofs made in this process, each standing for its card until it expires.
    Thread-safe: screens redeem them from worker threads."""

    def __init__(
        self, ttl: float = PROOF_TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self._proofs: dict[str, tuple[CardIdentity, float]] = {}
        self._lock = threading.Lock()

    def issue(self, identity: CardIdentity) -> CardProof:
        """Called by the card login service once ``identity``'s card signed a fresh
        challenge and its certificate validated."""
        token = secrets.token_urlsafe(24)
        with self._lock:
            now = self.clock()
            # Every proof lives as long, so the oldest ones (first in the dict) expire
            # first: dropping them costs nothing per login however many are kept.
            while self._proofs:
                oldest = next(iter(self._proofs))
                if self._proofs[oldest][1] > now:
                    break
                del self._proofs[oldest]
            self._proofs[token] = (identity, now + self.ttl)
        return CardProof(identity, token)

    def identity(self, proof: CardProof | None) -> CardIdentity:
        """The card ``proof`` stands for, or NotAllowed: none, expired or not ours (a
        proof made up by its holder is not in the book)."""
        if proof is None:
            raise NotAllowed("error.card_proof_required")
        with self._lock:
            entry = self._proofs.get(proof.token)
        if entry is None or entry[1] <= self.clock():
            raise NotAllowed("error.card_proof_expired")
        return entry[0]

    def consume(self, proof: CardProof) -> CardIdentity:
        """Like :meth:`identity`, and the proof stands for nothing afterwards."""
        identity = self.identity(proof)
        with self._lock:
            self._proofs.pop(proof.token, None)
        return identity

    def forget(self, proof: CardProof | None) -> None:
        if proof is not None:
            with self._lock:
                self._proofs.pop(proof.token, None)


def fold_name(name: str) -> str:
    """A holder's name compared across writings: full/half width, 臺/台, case and every
    space (certificates write 王 小明 as often as 王小明)."""
    return "".join(fold(name).split())


def _bound_account_id(identity: CardIdentity) -> int | None:
    row = prepared.first(
        "card_binding_account",
        CardBinding.select(CardBinding.account)
        .where(CardBinding.cert_sha256 == slot(0))
        .limit(1)
        .tuples(),
        (identity.cert_sha256,),
    )
    return int(row[0]) if row is not None else None


def _id_match(identity: CardIdentity, person_id: str, name: str) -> CardMatch:
    if not identity.id_hint:
        # Nothing on the card to check the ID against: it would stand for any ID its
        # holder merely knows.
        raise NotAllowed("error.card_cannot_bind")
    if not matches_person_id(identity, person_id):
        raise NotAllowed("error.card_id_mismatch")
    if identity.kind == CardKind.MOICA or len(identity.id_hint) < len(person_id):
        if fold_name(identity.name) != fold_name(name) or not fold_name(name):
            raise NotAllowed("error.card_name_mismatch")
        return CardMatch.NAME_AND_LAST4
    return CardMatch.FULL_ID


def card_for_new_account(identity: CardIdentity, person_id: str, name: str) -> ProvenCard:
    """The card stands for a new application of ``person_id`` under ``name``."""
    if _bound_account_id(identity) is not None:
        raise NotAllowed("error.card_bound_elsewhere")
    match = _id_match(identity, person_id, name)
    return ProvenCard(str(identity.kind), identity.cert_sha256, match)


def card_for_account(identity: CardIdentity, account: Account, person_id: str) -> ProvenCard:
    """The card stands for the existing ``account``, whose ID is ``person_id``: bound
    to it, or matching its ID and its *stored* name."""
    bound = _bound_account_id(identity)
    if bound is not None:
        if bound != account.id:
            raise NotAllowed("error.card_bound_elsewhere")
        return ProvenCard(str(identity.kind), identity.cert_sha256, CardMatch.BOUND)
    match = _id_match(identity, person_id, account.name)
    return ProvenCard(str(identity.kind), identity.cert_sha256, match)
