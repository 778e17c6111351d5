"""Is a card's certificate good for logging in? (docs/architecture.md, "Cards")

Order of checks, each failing with :class:`card.errors.CertificateProblem` and its own
``reason``:

1. ``not_yet_valid`` / ``expired`` – explicit, so the message can name the date;
2. ``untrusted`` – path building with ``cryptography.x509.verification``'s
   ClientVerifier to a self-signed anchor from the CA directory;
3. ``revoked`` / ``crl_stale`` / ``crl_missing`` – offline CRLs from the CRL directory
   (each CRL's signature verified against the issuer found in step 2). Revocation
   fails closed: every CA that issued a certificate of the chain (the root for the
   issuing CA's certificate, through its ARL) must have a current CRL there that
   covers that certificate (RFC 5280 5.2.5, 6.3.3: a partitioned CRL only the
   certificates naming its distribution point, or only end-entity / CA certificates),
   else the login is refused naming that CA; so is a missing CRL directory;
4. ``key_usage`` – the certificate must allow digitalSignature.

Dates in messages are 民國 dates in Taiwan time (UTC+8, no DST).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID
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
    "CrlScope",
    "ca_label",
    "client_extension_policies",
    "crl_covers",
    "crl_recency",
    "crl_scope",
    "crl_signed_by",
    "crl_unusable_reason",
    "is_delta_crl",
    "load_crl_file",
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
    try:
        return sorted(
            p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in suffixes
        )
    except OSError as exc:
        raise TrustStoreError(f"無法讀取{what}目錄 {directory}（{exc.strerror}）") from exc


def _load_certificates(path: Path) -> list[x509.Certificate]:
    try:
        data = path.read_bytes()
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except (OSError, ValueError) as exc:
        raise TrustStoreError(f"無法讀取 CA 憑證檔 {path.name}") from exc


def load_crl_file(path: Path) -> x509.CertificateRevocationList:
    """A CRL file, DER or PEM; TrustStoreError naming the file otherwise."""
    try:
        data = path.read_bytes()
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except (OSError, ValueError) as exc:
        raise TrustStoreError(f"無法讀取憑證廢止清冊 {path.name}") from exc


def ca_label(cert: x509.Certificate) -> str:
    """How messages name a CA: its CN, else its whole subject."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else None
    return value if isinstance(value, str) and value else cert.subject.rfc4514_string()


def is_delta_crl(crl: x509.CertificateRevocationList) -> bool:
    """A delta CRL (RFC 5280 5.2.4) lists only the changes since a base CRL: taken for
    the whole list it would let in a certificate revoked before the base."""
    try:
        crl.extensions.get_extension_for_class(x509.DeltaCRLIndicator)
    except x509.ExtensionNotFound:
        return False
    return True


#: What reading a CRL's or certificate's extensions can raise on a damaged one.
_UNREADABLE_EXTENSIONS = (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType)


def crl_unusable_reason(crl: x509.CertificateRevocationList) -> str | None:
    """Why ``crl`` can never tell whether a certificate is revoked (zh-TW), or None.

    The kiosk reads complete CRLs and partitions by distribution point or certificate
    kind (RFC 5280 5.2.5). It never combines CRLs: one of some revocation reasons only
    would miss a certificate revoked for another reason, an indirect CRL speaks for
    other issuers' certificates, and one of attribute certificates for none of ours.
    """
    try:
        extensions = crl.extensions
        point = _issuing_distribution_point(crl)
    except _UNREADABLE_EXTENSIONS:
        return "延伸欄位無法解讀"
    if is_delta_crl(crl):
        return "這是差異清冊（delta CRL），不是完整清冊"
    if point is not None:
        if point.only_some_reasons is not None:
            return "只列出部分廢止原因（onlySomeReasons）"
        if point.indirect_crl:
            return "這是間接清冊（indirect CRL），可列其他簽發者的憑證"
        if point.only_contains_attribute_certs:
            return "只列出屬性憑證（onlyContainsAttributeCerts）"
    # RFC 5280 5.2: a CRL with a critical extension the reader does not know is unusable.
    if any(e.critical and isinstance(e.value, x509.UnrecognizedExtension) for e in extensions):
        return "含有無法辨識的關鍵延伸欄位"
    return None


def _issuing_distribution_point(
    crl: x509.CertificateRevocationList,
) -> x509.IssuingDistributionPoint | None:
    try:
        return crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint).value
    except x509.ExtensionNotFound:
        return None


def _point_names(
    point: x509.DistributionPoint | x509.IssuingDistributionPoint, issuer: x509.Name
) -> frozenset[x509.GeneralName]:
    """The names of a distribution point: its fullName, or its nameRelativeToCRLIssuer
    appended to the name of the CRL's issuer (RFC 5280 4.2.1.13, 5.2.5)."""
    if point.full_name is not None:
        return frozenset(point.full_name)
    if point.relative_name is not None:
        return frozenset({x509.DirectoryName(x509.Name([*issuer.rdns, point.relative_name]))})
    return frozenset()


@dataclass(frozen=True)
class CrlScope:
    """Which of its issuer's certificates a CRL speaks for (RFC 5280 5.2.5): all of
    them (the complete CRL: no IssuingDistributionPoint), or only those naming one of
    ``distribution_point`` in their CRL distribution points, only end-entity or only
    CA certificates."""

    distribution_point: frozenset[x509.GeneralName] = frozenset()
    only_user_certs: bool = False
    only_ca_certs: bool = False

    @property
    def complete(self) -> bool:
        return self == CrlScope()

    @property
    def key(self) -> str:
        """The scope as text, the same for the same scope (names in any order)."""
        names = sorted(
            f"{type(n).__name__}:{_general_name_text(n)}" for n in self.distribution_point
        )
        kinds = ["users"] * self.only_user_certs + ["cas"] * self.only_ca_certs
        return "\n".join([*names, *kinds])


def _general_name_text(name: x509.GeneralName) -> str:
    value = name.value
    return value.rfc4514_string() if isinstance(value, x509.Name) else str(value)


def crl_scope(crl: x509.CertificateRevocationList) -> CrlScope:
    """The scope of a CRL that :func:`crl_unusable_reason` accepts."""
    point = _issuing_distribution_point(crl)
    if point is None:
        return CrlScope()
    return CrlScope(
        _point_names(point, crl.issuer),
        point.only_contains_user_certs,
        point.only_contains_ca_certs,
    )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _certificate_points(cert: x509.Certificate) -> frozenset[x509.GeneralName]:
    """The names of ``cert``'s CRL distribution points that its issuer's own CRLs
    serve (a point with a cRLIssuer names another issuer's, indirect, CRL)."""
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return frozenset()
    return frozenset().union(
        *(_point_names(p, cert.issuer) for p in points if p.crl_issuer is None)
    )


def crl_covers(scope: CrlScope, cert: x509.Certificate) -> bool:
    """Whether a CRL of ``scope`` from ``cert``'s issuer speaks for ``cert``
    (RFC 5280 6.3.3 b): a certificate without a matching distribution point, of the
    wrong kind, or whose extensions cannot be read, is not covered."""
    try:
        if scope.only_user_certs and _is_ca(cert):
            return False
        if scope.only_ca_certs and not _is_ca(cert):
            return False
        if scope.distribution_point:
            return bool(scope.distribution_point & _certificate_points(cert))
    except _UNREADABLE_EXTENSIONS:
        return False
    return True


def crl_recency(crl: x509.CertificateRevocationList) -> tuple[dt.datetime, int]:
    """Orders CRLs oldest to newest: by thisUpdate, then CRL number (RFC 5280 5.2.3)."""
    try:
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except (x509.ExtensionNotFound, *_UNREADABLE_EXTENSIONS):
        number = -1
    return crl.last_update_utc, number


def crl_signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    """``crl`` names ``issuer`` and carries a signature that verifies with its key."""
    if crl.issuer != issuer.subject:
        return False
    try:
        return crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _self_signed(cert: x509.Certificate) -> bool:
    if cert.subject != cert.issuer:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


class CertificateValidator:
    """Validates card certificates against a CA directory and the CRLs of its CAs.

    ``ca_dir``: every ``*.pem/*.crt/*.cer/*.der`` (PEM may hold several certificates);
    self-signed certificates are the trust anchors, the others intermediates.
    ``crl_dir``: ``*.crl/*.pem/*.der`` CRLs, DER or PEM; re-read automatically when
    the files change (``smis-tui crl refresh`` replaces them). Every CA that issued a
    certificate of the verified chain must have a CRL there signed with its key that
    covers that certificate, the newest of which (dated no later than the validation
    time) has a nextUpdate not passed by more than ``crl_grace`` (``crl_missing`` /
    ``crl_stale`` otherwise, naming the CA): a kiosk never trusts a certificate it
    cannot check. A
    missing directory refuses every login (``crl_missing``, naming it) rather than
    stopping the kiosk from starting, so that a refresh can repair it.
    """

    def __init__(
        self, ca_dir: Path, crl_dir: Path, *, crl_grace: dt.timedelta = dt.timedelta(0)
    ) -> None:
        if crl_grace < dt.timedelta(0):
            raise ValueError("crl_grace must not be negative")
        self.ca_dir = Path(ca_dir)
        self.crl_dir = Path(crl_dir)
        self.crl_grace = crl_grace
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
        if self.crl_dir.is_dir():
            self._refresh_crls()

    # ----------------------------------------------------------------- CRLs

    def _refresh_crls(self) -> None:
        if not self.crl_dir.is_dir():
            self._crls, self._crl_stamp = [], None
            raise CertificateProblem(
                "crl_missing",
                f"找不到憑證廢止清冊（CRL）目錄 {self.crl_dir}，無法確認憑證是否已廢止，"
                "請執行 smis-tui crl refresh",
                crl_dir=str(self.crl_dir),
            )
        files = _files(self.crl_dir, CRL_SUFFIXES, "憑證廢止清冊")
        try:
            stamp = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files)
        except OSError as exc:  # replaced or removed since the directory was listed
            raise TrustStoreError(f"無法讀取憑證廢止清冊目錄 {self.crl_dir}") from exc
        if stamp != self._crl_stamp:
            self._crls = [load_crl_file(p) for p in files]
            self._crl_stamp = stamp

    def reload_crls(self) -> None:
        """Re-read the CRL directory now (validate() also does so when files change)."""
        self._crl_stamp = None
        self._refresh_crls()

    def _crl_for(
        self, cert: x509.Certificate, issuer: x509.Certificate, at: dt.datetime
    ) -> x509.CertificateRevocationList | None:
        """The newest CRL of ``issuer`` (its signature verifying with its key) that covers
        ``cert`` and was issued by ``at``: one dated later says nothing about ``at``."""
        best: x509.CertificateRevocationList | None = None
        for crl in self._crls:
            if crl.issuer != issuer.subject or crl.last_update_utc > at:
                continue
            if crl_unusable_reason(crl) is not None or not crl_covers(crl_scope(crl), cert):
                continue
            if best is not None and crl_recency(crl) <= crl_recency(best):
                continue
            if crl_signed_by(crl, issuer):
                best = crl
        return best

    def _check_crls(self, chain: Sequence[x509.Certificate], at: dt.datetime) -> None:
        for index, (cert, issuer) in enumerate(zip(chain, chain[1:], strict=False)):
            ca = ca_label(issuer)
            crl = self._crl_for(cert, issuer, at)
            if crl is None:
                raise CertificateProblem(
                    "crl_missing",
                    f"找不到「{ca}」的憑證廢止清冊（CRL），無法確認憑證是否已廢止，請更新 CRL",
                    ca=ca,
                )
            entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            if entry is not None:
                when = entry.revocation_date_utc
                if index == 0:
                    raise CertificateProblem("revoked", f"憑證已於 {_roc(when)} 廢止", when)
                revoked_ca = ca_label(cert)
                raise CertificateProblem(
                    "revoked",
                    f"簽發單位「{revoked_ca}」的憑證已於 {_roc(when)} 廢止",
                    when,
                    revoked_ca=revoked_ca,
                )
            next_update = crl.next_update_utc
            if next_update is None:  # RFC 5280 5.1.2.5 wants it; without, never "current"
                raise CertificateProblem(
                    "crl_stale",
                    f"「{ca}」的憑證廢止清冊（CRL）沒有下次更新日期（nextUpdate），"
                    "無法確認憑證是否已廢止，請更新 CRL",
                    ca=ca,
                    undated_ca=ca,
                )
            # A difference: next_update + grace could pass year 9999.
            if at - next_update > self.crl_grace:
                raise CertificateProblem(
                    "crl_stale",
                    f"「{ca}」的憑證廢止清冊（CRL）已於 {_roc(next_update)} 過期，"
                    "無法確認憑證是否已廢止，請更新 CRL",
                    next_update,
                    ca=ca,
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

        self._refresh_crls()
        self._check_crls(verified.chain, when)

        try:
            usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
            signing = usage.digital_signature
        except x509.ExtensionNotFound:
            signing = False
        if not signing:
            raise CertificateProblem("key_usage", "憑證用途不符（不可用於簽章登入）")
