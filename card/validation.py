"""Is a card's certificate good for logging in? (docs/architecture.md, "Cards")

Order of checks, each failing with :class:`card.errors.CertificateProblem` and its own
``reason``:

1. ``not_yet_valid`` / ``expired`` – explicit, so the message can name the date;
2. ``untrusted`` – path building with ``cryptography.x509.verification``'s
   ClientVerifier to a self-signed anchor from the CA directory;
3. ``revoked`` / ``crl_stale`` / ``crl_missing`` – offline CRLs from the CRL directory
   (each CRL's signature verified against the issuer found in step 2);
4. ``key_usage`` – the certificate must allow digitalSignature.

Dates in messages are 民國 dates in Taiwan time (UTC+8, no DST).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from card.errors import CertificateProblem, TrustStoreError
from card.identity import load_certificate
from smis_tui.core.clock import taiwan_date
from smis_tui.core.rocdate import to_roc

__all__ = [
    "CA_SUFFIXES",
    "CRL_SUFFIXES",
    "CertificateValidator",
    "client_extension_policies",
]

CA_SUFFIXES = frozenset({".pem", ".crt", ".cer", ".der"})
CRL_SUFFIXES = frozenset({".crl", ".pem", ".der"})


def client_extension_policies() -> tuple[ExtensionPolicy, ExtensionPolicy]:
    """(CA policy, end-entity policy) for card certificates.

    CA certificates follow the Web PKI defaults (critical BasicConstraints, KeyUsage
    with keyCertSign, AKI…). For the card's own certificate two defaults are relaxed:
    subjectAltName is *required* by the default client policy but MOICA/HPC
    certificates carry none, and ExtendedKeyUsage must otherwise contain clientAuth,
    which MOICA/HPC signature certificates do not promise. Key usage is checked
    separately (digitalSignature), after the chain.
    """
    ee = (
        ExtensionPolicy.webpki_defaults_ee()
        .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
        .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None)
    )
    return ExtensionPolicy.webpki_defaults_ca(), ee


def _roc(when: dt.datetime) -> str:
    return to_roc(taiwan_date(when))


def _aware(when: dt.datetime | None) -> dt.datetime:
    if when is None:
        return dt.datetime.now(dt.UTC)
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _files(directory: Path, suffixes: frozenset[str], what: str) -> list[Path]:
    if not directory.is_dir():
        raise TrustStoreError(f"找不到{what}目錄 {directory}")
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in suffixes)


def _load_certificates(path: Path) -> list[x509.Certificate]:
    try:
        data = path.read_bytes()
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except (OSError, ValueError) as exc:
        raise TrustStoreError(f"無法讀取 CA 憑證檔 {path.name}") from exc


def _load_crl(path: Path) -> x509.CertificateRevocationList:
    try:
        data = path.read_bytes()
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except (OSError, ValueError) as exc:
        raise TrustStoreError(f"無法讀取憑證廢止清冊 {path.name}") from exc


def _self_signed(cert: x509.Certificate) -> bool:
    if cert.subject != cert.issuer:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


class CertificateValidator:
    """Validates card certificates against a CA directory and (optionally) CRLs.

    ``ca_dir``: every ``*.pem/*.crt/*.cer/*.der`` (PEM may hold several certificates);
    self-signed certificates are the trust anchors, the others intermediates.
    ``crl_dir``: ``*.crl/*.pem/*.der`` CRLs, DER or PEM; re-read automatically when
    the files change. With a CRL directory, the card certificate's issuer must have a
    CRL there (``crl_missing`` otherwise) – a kiosk never trusts a certificate it
    cannot check. Intermediate CAs are checked against their issuer's CRL when present.
    """

    def __init__(self, ca_dir: Path, crl_dir: Path | None = None) -> None:
        self.ca_dir = Path(ca_dir)
        self.crl_dir = Path(crl_dir) if crl_dir is not None else None
        self.anchors: list[x509.Certificate] = []
        self.intermediates: list[x509.Certificate] = []
        for path in _files(self.ca_dir, CA_SUFFIXES, " CA 憑證"):
            for cert in _load_certificates(path):
                (self.anchors if _self_signed(cert) else self.intermediates).append(cert)
        if not self.anchors:
            raise TrustStoreError(f"CA 憑證目錄 {self.ca_dir} 中沒有任何根憑證（自簽憑證）")
        self._store = Store(self.anchors)
        self._crls: list[x509.CertificateRevocationList] = []
        self._crl_stamp: tuple[tuple[str, int, int], ...] | None = None
        self._refresh_crls()

    # ----------------------------------------------------------------- CRLs

    def _crl_files(self) -> list[Path]:
        assert self.crl_dir is not None
        return _files(self.crl_dir, CRL_SUFFIXES, "憑證廢止清冊")

    def _refresh_crls(self) -> None:
        if self.crl_dir is None:
            return
        files = self._crl_files()
        stamp = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files)
        if stamp != self._crl_stamp:
            self._crls = [_load_crl(p) for p in files]
            self._crl_stamp = stamp

    def reload_crls(self) -> None:
        """Re-read the CRL directory now (validate() also does so when files change)."""
        self._crl_stamp = None
        self._refresh_crls()

    def _crl_for(self, issuer: x509.Certificate) -> x509.CertificateRevocationList | None:
        """The newest CRL for ``issuer`` whose signature verifies with the issuer's key."""
        best: x509.CertificateRevocationList | None = None
        key = issuer.public_key()
        for crl in self._crls:
            if crl.issuer != issuer.subject:
                continue
            try:
                valid = crl.is_signature_valid(key)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                valid = False
            if valid and (best is None or crl.last_update_utc > best.last_update_utc):
                best = crl
        return best

    def _check_crls(self, chain: Sequence[x509.Certificate], at: dt.datetime) -> None:
        for index, (cert, issuer) in enumerate(zip(chain, chain[1:], strict=False)):
            crl = self._crl_for(issuer)
            if crl is None:
                if index == 0:
                    raise CertificateProblem(
                        "crl_missing",
                        "找不到簽發單位的憑證廢止清冊（CRL），無法確認憑證是否已廢止，請更新 CRL",
                    )
                continue
            entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            if entry is not None:
                when = entry.revocation_date_utc
                what = "憑證" if index == 0 else "憑證的簽發單位憑證"
                raise CertificateProblem("revoked", f"{what}已於 {_roc(when)} 廢止", when)
            next_update = crl.next_update_utc
            if next_update is not None and at > next_update:
                raise CertificateProblem(
                    "crl_stale",
                    f"憑證廢止清冊（CRL）已於 {_roc(next_update)} 過期，無法確認憑證是否已廢止，請更新 CRL",
                    next_update,
                )

    # ----------------------------------------------------------------- main

    def validate(
        self,
        cert: x509.Certificate | bytes,
        *,
        at: dt.datetime | None = None,
        intermediates: Iterable[x509.Certificate] = (),
    ) -> None:
        """Raise CertificateProblem unless ``cert`` is good for logging in at ``at``.

        ``intermediates``: extra CA certificates, e.g. read from the card; they only
        help build a path, they are never trusted by themselves.
        Unparseable bytes raise card.errors.CardProtocolError.
        """
        leaf = load_certificate(cert)
        when = _aware(at)

        not_before = leaf.not_valid_before_utc
        not_after = leaf.not_valid_after_utc
        if when < not_before:
            raise CertificateProblem(
                "not_yet_valid", f"憑證自 {_roc(not_before)} 起才生效", not_before
            )
        if when > not_after:
            raise CertificateProblem("expired", f"憑證已於 {_roc(not_after)} 到期", not_after)

        ca_policy, ee_policy = client_extension_policies()
        verifier = (
            PolicyBuilder()
            .store(self._store)
            .time(when)
            .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
            .build_client_verifier()
        )
        try:
            verified = verifier.verify(leaf, [*self.intermediates, *intermediates])
        except VerificationError as exc:
            # The library's English detail stays on __cause__ for logs, never on screen.
            raise CertificateProblem("untrusted", "憑證簽發單位不受信任") from exc

        if self.crl_dir is not None:
            self._refresh_crls()
            self._check_crls(verified.chain, when)

        try:
            usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
            signing = usage.digital_signature
        except x509.ExtensionNotFound:
            signing = False
        if not signing:
            raise CertificateProblem("key_usage", "憑證用途不符（不可用於簽章登入）")
