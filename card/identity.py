"""Who a card's certificate says its holder is (docs/architecture.md, "Cards").

* CN = the holder's name (never key an account by name alone);
* the card kind is the certificate's *subject type*: the attribute 2.16.886.1.100.2.1
  in subjectDirectoryAttributes (RFC 5280 4.2.1.8, extension 2.5.29.9), whose value is
  an OID – 2.16.886.1.100.3.1.1 a natural person (自然人憑證, MOICA),
  2.16.886.1.100.3.1.7 a health professional (醫事人員卡, HPC); any other subject type
  names an organisation, a unit or a server, whose card is refused here. The
  certificatePolicies of GPKI certificates carry assurance levels (2.16.886.101.0.3.x)
  and say nothing about the kind. A certificate without a subject type is PIV;
* MOICA: only the last 4 digits of the 身分證號, in subjectDirectoryAttributes
  attribute 2.16.886.1.100.2.51 (MOICA's subject serialNumber is a card serial);
* HPC and PIV: the full ID, where the certificate carries one, is the subject
  serialNumber when it is a valid checksummed 身分證號/統一證號.

Pure code: no Textual, no card I/O.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtensionOID, NameOID

from card.errors import CardProtocolError, NotPersonalCard
from smis_tui.core.domain import CardKind
from smis_tui.core.identifiers import (
    PersonIdError,
    mask_person_id,
    normalise_person_id,
    parse_person_id,
)

__all__ = [
    "HPC_SUBJECT_TYPE",
    "ID_LAST4_ATTRIBUTE_OID",
    "MOICA_SUBJECT_TYPE",
    "SUBJECT_TYPE_ATTRIBUTE_OID",
    "CardIdentity",
    "CardKind",
    "DerError",
    "identity_from_certificate",
    "load_certificate",
    "masked_id_hint",
    "matches_person_id",
    "parse_subject_directory_attributes",
]

SUBJECT_TYPE_ATTRIBUTE_OID = x509.ObjectIdentifier("2.16.886.1.100.2.1")
MOICA_SUBJECT_TYPE = x509.ObjectIdentifier("2.16.886.1.100.3.1.1")
HPC_SUBJECT_TYPE = x509.ObjectIdentifier("2.16.886.1.100.3.1.7")
#: Subject types under 2.16.886.1.100.3.2 name organisations and units (e.g. .21 for
#: 醫事機構 cards): a card of the place, not of a person.
ORGANISATION_SUBJECT_TYPES = "2.16.886.1.100.3.2."
ID_LAST4_ATTRIBUTE_OID = x509.ObjectIdentifier("2.16.886.1.100.2.51")

_KIND_BY_SUBJECT_TYPE = {MOICA_SUBJECT_TYPE: CardKind.MOICA, HPC_SUBJECT_TYPE: CardKind.HPC}

UNPARSEABLE = "憑證無法解析"


@dataclass(frozen=True)
class CardIdentity:
    kind: CardKind
    name: str
    #: MOICA: the last 4 digits of the ID; the full ID where the certificate carries it.
    id_hint: str | None
    cert_sha256: str
    not_before: dt.datetime
    not_after: dt.datetime
    certificate: x509.Certificate = field(repr=False, compare=False)

    def __repr__(self) -> str:  # keep raw IDs out of logs and tracebacks
        return (
            f"CardIdentity(kind={self.kind!r}, name={self.name!r}, "
            f"id_hint={masked_id_hint(self.id_hint)!r}, cert_sha256={self.cert_sha256!r}, "
            f"not_before={self.not_before!r}, not_after={self.not_after!r})"
        )


def masked_id_hint(hint: str | None) -> str | None:
    """The ID hint fit for a log or an operator's screen: a whole ID masked as a stored
    one is (``A1******89``), anything shorter (MOICA's last four digits) all stars."""
    if hint is None:
        return None
    if len(hint) >= 10:
        return mask_person_id(hint)
    return "*" * len(hint)


# --------------------------------------------------------------------------- DER


class DerError(ValueError):
    """Malformed DER in an extension this module parses by hand."""


_TAG_SEQUENCE = 0x30
_TAG_SET = 0x31
_TAG_OID = 0x06
_STRING_TAGS = {
    0x0C: "utf-8",  # UTF8String
    0x13: "ascii",  # PrintableString
    0x16: "ascii",  # IA5String
    0x1E: "utf-16-be",  # BMPString
}


def _read_tlv(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """One DER TLV at ``pos``: (tag, value, position after it). Single-byte tags only."""
    if pos + 2 > len(data):
        raise DerError("truncated")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise DerError("multi-byte tag")
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise DerError("bad length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    end = pos + length
    if end > len(data):
        raise DerError("truncated")
    return tag, data[pos:end], end


def _children(data: bytes) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        tag, value, pos = _read_tlv(data, pos)
        out.append((tag, value))
    return out


def _decode_oid(body: bytes) -> str:
    if not body or body[-1] & 0x80:
        raise DerError("bad OID")
    # X.690 8.19.2: a subidentifier never starts with 0x80 (no padding): two encodings
    # of one OID would let a certificate say one thing to us and another to others.
    starts = [0] + [i + 1 for i, byte in enumerate(body[:-1]) if not byte & 0x80]
    if any(body[i] == 0x80 for i in starts):
        raise DerError("non-minimal OID")
    arcs: list[int] = []
    value = 0
    for byte in body:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(a) for a in head + arcs[1:])


AttributeValue = str | x509.ObjectIdentifier


def parse_subject_directory_attributes(der: bytes) -> dict[str, list[AttributeValue]]:
    """``SEQUENCE OF Attribute {type OID, values SET OF ANY}`` → {oid: [values]}.

    String values (UTF8String, PrintableString, IA5String, BMPString) are decoded to
    ``str``, OBJECT IDENTIFIER values to :class:`x509.ObjectIdentifier` (so a string
    that merely looks like an OID is never taken for one); other value types are
    skipped. Raises :class:`DerError` on malformed DER.
    """
    tag, body, end = _read_tlv(der, 0)
    if tag != _TAG_SEQUENCE or end != len(der):
        raise DerError("not a SEQUENCE")
    if not body:  # RFC 5280 4.2.1.8: SEQUENCE SIZE (1..MAX) OF Attribute
        raise DerError("no attributes")
    result: dict[str, list[AttributeValue]] = {}
    for attr_tag, attr in _children(body):
        if attr_tag != _TAG_SEQUENCE:
            raise DerError("Attribute is not a SEQUENCE")
        parts = _children(attr)
        if len(parts) != 2 or parts[0][0] != _TAG_OID or parts[1][0] != _TAG_SET:
            raise DerError("bad Attribute")
        values = result.setdefault(_decode_oid(parts[0][1]), [])
        for value_tag, value in _children(parts[1][1]):
            if value_tag == _TAG_OID:
                values.append(x509.ObjectIdentifier(_decode_oid(value)))
                continue
            encoding = _STRING_TAGS.get(value_tag)
            if encoding is None:
                continue
            try:
                values.append(value.decode(encoding))
            except UnicodeDecodeError as exc:
                raise DerError("bad string") from exc
    return result


# --------------------------------------------------------------------------- identity


def load_certificate(cert_or_der: x509.Certificate | bytes) -> x509.Certificate:
    """A certificate object from itself, DER or PEM bytes; CardProtocolError otherwise."""
    if isinstance(cert_or_der, x509.Certificate):
        return cert_or_der
    data = bytes(cert_or_der)
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            cert = x509.load_pem_x509_certificate(data)
        else:
            cert = x509.load_der_x509_certificate(data)
    except (ValueError, x509.InvalidVersion) as exc:  # InvalidVersion is no ValueError
        raise CardProtocolError(UNPARSEABLE) from exc
    # RFC 5280 4.1.2.2: a serial number is a positive integer. cryptography still
    # parses a zero or negative one (with a warning; a later release will refuse it):
    # the kiosk refuses it now, as the damaged certificate it is.
    if cert.serial_number <= 0:
        raise CardProtocolError(f"{UNPARSEABLE}（憑證序號不是正整數）")
    return cert


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        raise CardProtocolError(f"{UNPARSEABLE}（缺少持卡人姓名）")
    value = names[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _full_id(cert: x509.Certificate) -> str | None:
    for attr in cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER):
        value = attr.value if isinstance(attr.value, str) else ""
        try:
            return parse_person_id(value, allow_other=False).value
        except PersonIdError:
            continue
    return None


def _directory_attributes(cert: x509.Certificate) -> dict[str, list[AttributeValue]]:
    try:
        ext = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_DIRECTORY_ATTRIBUTES)
    except x509.ExtensionNotFound:
        return {}
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):  # pragma: no cover - future versions
        return {}
    try:
        return parse_subject_directory_attributes(value.value)
    except DerError as exc:
        raise CardProtocolError(f"{UNPARSEABLE}（subjectDirectoryAttributes）") from exc


def _kind(attributes: dict[str, list[AttributeValue]]) -> CardKind:
    """The card kind from the subject type; NotPersonalCard for an organisation's."""
    if SUBJECT_TYPE_ATTRIBUTE_OID.dotted_string not in attributes:
        return CardKind.PIV
    subject_types = set(attributes[SUBJECT_TYPE_ATTRIBUTE_OID.dotted_string])
    if not subject_types:  # there, but as nothing this parser reads: never "no kind"
        raise CardProtocolError(f"{UNPARSEABLE}（持有人類別無法解析）")
    if len(subject_types) > 1:
        raise CardProtocolError(f"{UNPARSEABLE}（憑證的持有人類別不只一種）")
    (subject_type,) = subject_types
    if not isinstance(subject_type, x509.ObjectIdentifier):
        raise CardProtocolError(f"{UNPARSEABLE}（持有人類別不是物件識別碼）")
    kind = _KIND_BY_SUBJECT_TYPE.get(subject_type)
    if kind is None:
        raise NotPersonalCard(subject_type.dotted_string)
    return kind


def _id_last4(attributes: dict[str, list[AttributeValue]]) -> str | None:
    for value in attributes.get(ID_LAST4_ATTRIBUTE_OID.dotted_string, []):
        hint = normalise_person_id(value) if isinstance(value, str) else ""
        if len(hint) == 4 and hint.isdigit():
            return hint
    return None


def identity_from_certificate(cert_or_der: x509.Certificate | bytes) -> CardIdentity:
    """Build the identity; garbage → CardProtocolError("…憑證無法解析…"), a card
    of an organisation rather than a person → NotPersonalCard."""
    cert = load_certificate(cert_or_der)
    try:
        der = cert.public_bytes(serialization.Encoding.DER)
        not_before = cert.not_valid_before_utc
        not_after = cert.not_valid_after_utc
        attributes = _directory_attributes(cert)
        kind = _kind(attributes)
        hint = _id_last4(attributes) if kind is CardKind.MOICA else _full_id(cert)
        name = _common_name(cert)
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        # Lazily-parsed extensions fail here; CardProtocolError is not a ValueError and
        # passes through.
        raise CardProtocolError(UNPARSEABLE) from exc
    return CardIdentity(
        kind=kind,
        name=name,
        id_hint=hint,
        cert_sha256=hashlib.sha256(der).hexdigest(),
        not_before=not_before,
        not_after=not_after,
        certificate=cert,
    )


def matches_person_id(identity: CardIdentity, person_id: str) -> bool:
    """Does the typed 身分證號 agree with the certificate?

    A 4-digit hint (MOICA) must equal the ID's last 4 characters; a full ID must be
    equal; no hint at all (typical PIV) never matches.
    """
    hint = identity.id_hint
    if not hint:
        return False
    typed = normalise_person_id(person_id)
    if len(hint) == 4 and hint.isdigit():
        return len(typed) >= 10 and typed[-4:] == hint
    return typed == normalise_person_id(hint)
