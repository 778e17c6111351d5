"""What the kiosk would conclude about a certificate or a card, for an operator
checking a real card or a CA bundle before go-live (`smis-tui card inspect`).

Everything here runs the kiosk's own code: the identity rules of card.identity and the
chain and CRL checks of card.validation, so a verdict here is the verdict at the
counter (docs/architecture.md, "Cards"). No Textual here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtensionOID, NameOID

from card.errors import (
    CardError,
    CardProtocolError,
    CertificateProblem,
    NotPersonalCard,
    TrustStoreError,
)
from card.identity import (
    SUBJECT_TYPE_ATTRIBUTE_OID,
    DerError,
    identity_from_certificate,
    load_certificate,
    masked_id_hint,
    parse_subject_directory_attributes,
)
from smis_tui.core.domain import CardKind
from smis_tui.services.card_notice import certificate_expiry

if TYPE_CHECKING:
    from card.validation import CertificateValidator

__all__ = ["EXIT_CODES", "CertificateFacts", "Inspection", "inspect_certificate"]

#: Exit code of `smis-tui card inspect` per verdict: 0 only when a login is allowed.
EXIT_CODES = {
    "ok": 0,
    "unparseable": 3,
    "not_personal": 4,
    "trust_store": 5,
    "card_unreadable": 6,
    "expired": 10,
    "not_yet_valid": 11,
    "untrusted": 12,
    "revoked": 13,
    "crl_missing": 14,
    "crl_stale": 15,
    "key_usage": 16,
}
#: A verdict the table above does not know yet still never reads as success.
OTHER_REFUSAL = 19


@dataclass(frozen=True)
class CertificateFacts:
    """What the certificate itself says, whatever the verdict."""

    holder: str
    issuer: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    subject_type: str | None
    policies: tuple[str, ...]
    crl_urls: tuple[str, ...]
    ca_issuer_urls: tuple[str, ...]
    chain: tuple[str, ...] = ()  # common names from the card's issuer up to the root
    kind: CardKind | None = None
    masked_id: str | None = None
    sha256: str | None = None
    expiring_days: int | None = None  # set when it runs out within a month


@dataclass(frozen=True)
class Inspection:
    """One certificate as the kiosk sees it."""

    verdict: str  # "ok" or why a login would be refused (a key of EXIT_CODES)
    message: str  # the zh-TW message the kiosk would show, "" when ok
    facts: CertificateFacts | None = None  # None when the bytes are no certificate

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.verdict, OTHER_REFUSAL)


#: What reading one extension of a damaged certificate can raise; the verdict comes
#: from card.identity, these only leave a line of the report empty.
_UNREADABLE_EXTENSION = (
    x509.ExtensionNotFound,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
    ValueError,
)


def _common_name(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else name.rfc4514_string()


def _extension(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> object | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except _UNREADABLE_EXTENSION:
        return None


def _crl_urls(cert: x509.Certificate) -> tuple[str, ...]:
    points = _extension(cert, x509.CRLDistributionPoints)
    if not isinstance(points, x509.CRLDistributionPoints):
        return ()
    return tuple(
        name.value
        for point in points
        for name in point.full_name or []
        if isinstance(name, x509.UniformResourceIdentifier)
    )


def _ca_issuer_urls(cert: x509.Certificate) -> tuple[str, ...]:
    access = _extension(cert, x509.AuthorityInformationAccess)
    if not isinstance(access, x509.AuthorityInformationAccess):
        return ()
    return tuple(
        item.access_location.value
        for item in access
        if item.access_method == x509.AuthorityInformationAccessOID.CA_ISSUERS
        and isinstance(item.access_location, x509.UniformResourceIdentifier)
    )


def _policies(cert: x509.Certificate) -> tuple[str, ...]:
    policies = _extension(cert, x509.CertificatePolicies)
    if not isinstance(policies, x509.CertificatePolicies):
        return ()
    return tuple(policy.policy_identifier.dotted_string for policy in policies)


def _subject_type(cert: x509.Certificate) -> str | None:
    try:
        ext = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_DIRECTORY_ATTRIBUTES)
        if not isinstance(ext.value, x509.UnrecognizedExtension):  # pragma: no cover
            return None
        values = parse_subject_directory_attributes(ext.value.value)
    except (*_UNREADABLE_EXTENSION, DerError):
        return None
    found = values.get(SUBJECT_TYPE_ATTRIBUTE_OID.dotted_string, [])
    return (
        ", ".join(
            value.dotted_string if isinstance(value, x509.ObjectIdentifier) else repr(value)
            for value in found
        )
        or None
    )


def _issued(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _chain(cert: x509.Certificate, cas: list[x509.Certificate]) -> tuple[str, ...]:
    """Common names from ``cert``'s issuer up to a self-signed CA, each found among
    ``cas`` by name *and* signature."""
    names: list[str] = []
    current = cert
    for _ in cas:
        issuer = next((ca for ca in cas if _issued(current, ca)), None)
        if issuer is None:
            break
        names.append(_common_name(issuer.subject))
        if issuer.subject == issuer.issuer:
            break
        current = issuer
    return tuple(names)


def _facts(cert: x509.Certificate, validator: CertificateValidator | None) -> CertificateFacts:
    cas = [*validator.intermediates, *validator.anchors] if validator is not None else []
    return CertificateFacts(
        holder=_common_name(cert.subject),
        issuer=_common_name(cert.issuer),
        serial=f"{cert.serial_number:X}",
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        subject_type=_subject_type(cert),
        policies=_policies(cert),
        crl_urls=_crl_urls(cert),
        ca_issuer_urls=_ca_issuer_urls(cert),
        chain=_chain(cert, cas),
    )


def inspect_certificate(
    data: bytes,
    validator: CertificateValidator | None,
    *,
    at: dt.datetime | None = None,
    trust_problem: Exception | None = None,
) -> Inspection:
    """The kiosk's conclusion about the certificate in ``data`` (PEM or DER).

    ``validator`` None: the CA directory could not be used; ``trust_problem`` says why
    and is the verdict, after what the certificate itself says has been read.
    """
    moment = at or dt.datetime.now(dt.UTC)
    try:
        cert = load_certificate(data)
    except CardProtocolError as exc:
        return Inspection("unparseable", str(exc))
    facts = _facts(cert, validator)
    try:
        identity = identity_from_certificate(cert)
    except NotPersonalCard as exc:
        return Inspection("not_personal", str(exc), facts)
    except CardProtocolError as exc:
        return Inspection("unparseable", str(exc), facts)
    expiry = certificate_expiry(identity, moment)
    facts = replace(
        facts,
        kind=identity.kind,
        masked_id=masked_id_hint(identity.id_hint),
        sha256=identity.cert_sha256,
        expiring_days=expiry.days_left if expiry is not None else None,
    )
    if validator is None:
        return Inspection("trust_store", str(trust_problem or ""), facts)
    try:
        validator.validate(cert, at=moment)
    except CertificateProblem as exc:
        return Inspection(exc.reason, str(exc), facts)
    except CardError as exc:  # the CA or CRL directory itself is unusable
        return Inspection("trust_store", str(exc), facts)
    except (OSError, ValueError, OverflowError) as exc:
        # validate() reports what it knows as CardError; a file or date it did not
        # foresee still gets the operator a verdict that is no pass, not a traceback.
        return Inspection(
            "trust_store", str(TrustStoreError(f"{type(exc).__name__}: {exc}")), facts
        )
    return Inspection("ok", "", facts)
