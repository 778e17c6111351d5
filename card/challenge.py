"""Proof that the card holds the certificate's key: it signs a fresh random challenge.

What is signed: the challenge itself (32 random bytes), with SHA-256 and
RSA PKCS#1 v1.5 or ECDSA – i.e. the standard ``sha256WithRSAEncryption`` /
``ecdsa-with-SHA256`` signature *of the challenge*. No domain separation is added:
the kiosk picks the challenge, and a PIV GENERAL AUTHENTICATE signs whatever block it
is given anyway.

* PKCS#11 (HiCOS): ``CKM_SHA256_RSA_PKCS`` / ``CKM_ECDSA_SHA256`` over the challenge,
  or ``CKM_RSA_PKCS`` over the DigestInfo / ``CKM_ECDSA`` over :func:`piv_ec_digest`.
* PIV: the card applies the raw private-key operation, so RSA gets the fully padded
  block from :func:`piv_rsa_block` and ECDSA gets :func:`piv_ec_digest`.

:func:`verify_signature` accepts ECDSA signatures both DER-encoded (PIV) and as raw
``r || s`` (PKCS#11).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from card.errors import CertificateProblem, SignatureInvalid

__all__ = [
    "CHALLENGE_BYTES",
    "DEFAULT_TTL_S",
    "SHA256_DIGEST_INFO_PREFIX",
    "ChallengeBook",
    "new_challenge",
    "piv_ec_digest",
    "piv_rsa_block",
    "verify_signature",
]

CHALLENGE_BYTES = 32
DEFAULT_TTL_S = 120.0
#: DER of DigestInfo { AlgorithmIdentifier sha256 NULL, OCTET STRING (32) } up to the hash.
SHA256_DIGEST_INFO_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")


def new_challenge() -> bytes:
    return secrets.token_bytes(CHALLENGE_BYTES)


def piv_ec_digest(challenge: bytes) -> bytes:
    """The 32-byte SHA-256 digest a PIV card signs with ECDSA P-256."""
    return hashlib.sha256(challenge).digest()


def piv_rsa_block(challenge: bytes, key_bytes: int = 256) -> bytes:
    """EMSA-PKCS1-v1_5 block ``00 01 FF…FF 00 DigestInfo(SHA-256(challenge))``.

    A PIV card's RSA GENERAL AUTHENTICATE applies the raw private-key operation to
    this block; the result is an ordinary PKCS#1 v1.5 SHA-256 signature.
    """
    digest_info = SHA256_DIGEST_INFO_PREFIX + piv_ec_digest(challenge)
    padding_len = key_bytes - len(digest_info) - 3
    if padding_len < 8:
        raise ValueError("RSA key too short for a SHA-256 PKCS#1 v1.5 signature")
    return b"\x00\x01" + b"\xff" * padding_len + b"\x00" + digest_info


def _ecdsa_candidates(curve: ec.EllipticCurve, signature: bytes) -> list[bytes]:
    """DER forms to try: the signature itself if it is DER (PIV), and its reading as
    raw ``r || s`` (PKCS#11) when the length fits – a 64-byte string could be either."""
    candidates: list[bytes] = []
    try:
        r, s = decode_dss_signature(signature)
    except ValueError:
        pass
    else:
        candidates.append(encode_dss_signature(r, s))
    size = (curve.key_size + 7) // 8
    if len(signature) == 2 * size:
        r = int.from_bytes(signature[:size], "big")
        s = int.from_bytes(signature[size:], "big")
        candidates.append(encode_dss_signature(r, s))
    return candidates


def verify_signature(cert: x509.Certificate, challenge: bytes, signature: bytes) -> None:
    """SignatureInvalid unless ``signature`` is the certificate key's signature of ``challenge``.

    RSA: PKCS#1 v1.5 with SHA-256; EC: ECDSA with SHA-256 (DER or raw ``r || s``).
    Other key types raise CertificateProblem("key_type").
    """
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        try:
            key.verify(signature, challenge, padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError) as exc:
            raise SignatureInvalid() from exc
        return
    if isinstance(key, ec.EllipticCurvePublicKey):
        for candidate in _ecdsa_candidates(key.curve, signature):
            try:
                key.verify(candidate, challenge, ec.ECDSA(hashes.SHA256()))
            except (InvalidSignature, ValueError):
                continue
            return
        raise SignatureInvalid()
    raise CertificateProblem("key_type", "憑證金鑰類型不支援（僅支援 RSA 與 ECDSA）")


class ChallengeBook:
    """Issues challenges and accepts each one exactly once, within ``ttl`` seconds.

    Thread-safe (the card monitor runs in a thread). An unknown, already used or
    expired challenge fails like a bad signature: SignatureInvalid.
    """

    def __init__(
        self,
        ttl: float = DEFAULT_TTL_S,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_outstanding: int = 64,
    ) -> None:
        self.ttl = ttl
        self._clock = clock
        self._max = max_outstanding
        self._issued: dict[bytes, float] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            self._prune(self._clock())
            return len(self._issued)

    def _prune(self, now: float) -> None:
        for challenge in [c for c, expires in self._issued.items() if expires <= now]:
            del self._issued[challenge]

    def issue(self) -> bytes:
        challenge = new_challenge()
        with self._lock:
            now = self._clock()
            self._prune(now)
            while len(self._issued) >= self._max:  # oldest first (dicts keep order)
                del self._issued[next(iter(self._issued))]
            self._issued[challenge] = now + self.ttl
        return challenge

    def consume(self, challenge: bytes) -> None:
        """Mark ``challenge`` used; SignatureInvalid if unknown, used or expired."""
        with self._lock:
            now = self._clock()
            match = next((c for c in self._issued if hmac.compare_digest(c, challenge)), None)
            expires = self._issued.pop(match) if match is not None else None
            self._prune(now)
        if expires is None or expires <= now:
            raise SignatureInvalid()

    def verify(self, cert: x509.Certificate, challenge: bytes, signature: bytes) -> None:
        """Consume ``challenge`` (one attempt only), then verify the signature."""
        self.consume(challenge)
        verify_signature(cert, challenge, signature)
