"""A test PKI shaped like Taiwan's: a GRCA-like root, MOICA-like and HCA-like issuing
CAs, CRLs, an untrusted chain and users whose certificates carry what real MOICA and
HPC certificates carry (docs/architecture.md, "Cards"): the subject type in
subjectDirectoryAttributes (2.16.886.1.100.2.1), MOICA's last 4 ID digits there too
(2.16.886.1.100.2.51), a GPKI assurance-level policy (2.16.886.101.0.3.x), CRL
distribution points and authority information access. PIV users carry none of the
Taiwanese attributes; the ``org`` user carries a 醫事機構 subject type.

TEST ONLY: every private key is written unencrypted. Layout of ``make_test_pki(DIR)``::

    DIR/ca/*.pem            trust anchor + issuing CAs (the validator's CA directory)
    DIR/ca-keys/*.key.pem   their private keys (to issue more test certificates)
    DIR/crl/*.crl           one DER CRL per CA (the root's is its ARL)
    DIR/users/<name>.pem    user certificate; <name>.key.pem its private key
    DIR/untrusted/*.pem     a separate root + issuer that is NOT in DIR/ca (+ keys)
    DIR/manifest.json       every user: files, kind, CN, person ID, expected outcome

Keys are random unless ``key_cache`` names a directory to keep them in (RSA key
generation is the slow part); serial numbers, names and dates (relative to ``now``)
are fixed, so the files are "deterministic enough" for tests and demos.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from card.identity import (
    HPC_SUBJECT_TYPE,
    ID_LAST4_ATTRIBUTE_OID,
    MOICA_SUBJECT_TYPE,
    SUBJECT_TYPE_ATTRIBUTE_OID,
    CardKind,
)
from smis_tui.core.identifiers import generate_national_id

__all__ = [
    "CA_NAMES",
    "USER_NAMES",
    "PkiCa",
    "PkiUser",
    "PrivateKey",
    "TestPki",
    "der_oid",
    "der_tlv",
    "encode_subject_directory_attributes",
    "make_test_pki",
    "self_signed_certificate",
]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

DAY = dt.timedelta(days=1)
SMARTCARD_LOGON_OID = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.2")
#: GPKI certificate policy, assurance level 3 (what MOICA and HCA certificates carry).
GPKI_ASSURANCE_LEVEL_3 = x509.ObjectIdentifier("2.16.886.101.0.3.3")
#: The subject type of a 醫事機構 (healthcare institution) card: not a person.
INSTITUTION_SUBJECT_TYPE = x509.ObjectIdentifier("2.16.886.1.100.3.2.21")
#: Where the test PKI says its CRLs and CA certificates are published; tests that
#: serve them over HTTP pass their own address.
DEFAULT_CRL_BASE_URL = "http://repository.smis-test.invalid/crl/"
DEFAULT_CA_BASE_URL = "http://repository.smis-test.invalid/ca/"

# --------------------------------------------------------------------------- DER


def der_tlv(tag: int, body: bytes) -> bytes:
    """One DER TLV (definite length)."""
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def der_oid(dotted: str) -> bytes:
    """A DER OBJECT IDENTIFIER from its dotted form."""
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return der_tlv(0x06, bytes(out))


def encode_subject_directory_attributes(
    attributes: dict[str, str | x509.ObjectIdentifier],
) -> bytes:
    """``SEQUENCE OF Attribute {type OID, SET OF value}`` (extnValue of 2.5.29.9): a
    string value as PrintableString, an OID value as OBJECT IDENTIFIER – as the
    subject type (2.16.886.1.100.2.1) is encoded in real MOICA and HPC certificates."""

    def value_der(value: str | x509.ObjectIdentifier) -> bytes:
        if isinstance(value, x509.ObjectIdentifier):
            return der_oid(value.dotted_string)
        return der_tlv(0x13, value.encode("ascii"))

    body = b"".join(
        der_tlv(0x30, der_oid(oid) + der_tlv(0x31, value_der(value)))
        for oid, value in attributes.items()
    )
    return der_tlv(0x30, body)


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class PkiCa:
    name: str
    cn: str
    certificate: x509.Certificate = field(repr=False)
    key: PrivateKey = field(repr=False)
    cert_path: Path
    key_path: Path
    trusted: bool


@dataclass(frozen=True)
class PkiUser:
    name: str
    #: None for the organisation's card, which is no person's.
    kind: CardKind | None
    cn: str
    person_id: str
    id_hint: str | None
    #: "ok" or the CertificateProblem.reason the validator must give at ``TestPki.now``.
    expected: str
    description: str
    issuer: str
    certificate: x509.Certificate = field(repr=False)
    key: PrivateKey = field(repr=False)
    cert_path: Path
    key_path: Path

    @property
    def cert_der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True)
class TestPki:
    __test__ = False  # not a pytest test class

    directory: Path
    now: dt.datetime
    cas: dict[str, PkiCa]
    users: dict[str, PkiUser]
    crls: dict[str, x509.CertificateRevocationList] = field(repr=False)
    crl_paths: dict[str, Path]
    crl_base_url: str = DEFAULT_CRL_BASE_URL

    @property
    def ca_dir(self) -> Path:
        return self.directory / "ca"

    @property
    def crl_dir(self) -> Path:
        return self.directory / "crl"

    @property
    def users_dir(self) -> Path:
        return self.directory / "users"

    @property
    def untrusted_dir(self) -> Path:
        return self.directory / "untrusted"

    @property
    def manifest_path(self) -> Path:
        return self.directory / "manifest.json"

    @property
    def root(self) -> PkiCa:
        return self.cas["root"]

    @property
    def moica_ca(self) -> PkiCa:
        return self.cas["moica-ca"]

    @property
    def hca_ca(self) -> PkiCa:
        return self.cas["hca-ca"]

    def user(self, name: str) -> PkiUser:
        return self.users[name]

    def intermediates(self) -> list[x509.Certificate]:
        """The trusted issuing CAs (what a card would carry next to its certificate)."""
        return [ca.certificate for ca in self.cas.values() if ca.trusted and ca.name != "root"]


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class _CaSpec:
    name: str
    cn: str
    org: str
    parent: str | None  # None = self-signed root
    serial: int
    trusted: bool


_CAS: tuple[_CaSpec, ...] = (
    _CaSpec("root", "政府憑證總管理中心 測試根憑證", "行政院（測試）", None, 0x1001, True),
    _CaSpec("moica-ca", "內政部憑證管理中心 測試", "內政部（測試）", "root", 0x1002, True),
    _CaSpec(
        "hca-ca", "衛生福利部醫事憑證管理中心 測試", "衛生福利部（測試）", "root", 0x1003, True
    ),
    _CaSpec("untrusted-root", "不受信任測試根憑證", "不明單位（測試）", None, 0x1F01, False),
    # Same subject as the trusted MOICA-like CA, different key: a name alone must never
    # be enough to chain to a trust anchor.
    _CaSpec(
        "untrusted-ca",
        "內政部憑證管理中心 測試",
        "內政部（測試）",
        "untrusted-root",
        0x1F02,
        False,
    ),
)
CA_NAMES = tuple(spec.name for spec in _CAS)


@dataclass(frozen=True)
class _UserSpec:
    name: str
    kind: CardKind | None
    cn: str
    person_id: str
    issuer: str
    serial: int
    expected: str
    description: str
    ec_key: bool = False
    not_before: dt.timedelta = -30 * DAY  # relative to now
    not_after: dt.timedelta = 730 * DAY
    key_usage: str = "sign"  # "sign" | "encrypt"
    revoked: bool = False


_USERS: tuple[_UserSpec, ...] = (
    _UserSpec(
        "moica",
        CardKind.MOICA,
        "王小明",
        generate_national_id("A", 1, 2345678),
        "moica-ca",
        0x2001,
        "ok",
        "自然人憑證（RSA-2048），有效",
    ),
    _UserSpec(
        "hpc",
        CardKind.HPC,
        "陳美玲",
        generate_national_id("F", 2, 1357924),
        "hca-ca",
        0x3001,
        "ok",
        "醫事人員卡（RSA-2048），有效",
    ),
    _UserSpec(
        "piv",
        CardKind.PIV,
        "林志豪",
        generate_national_id("B", 1, 8642097),
        "hca-ca",
        0x3002,
        "ok",
        "PIV 卡（P-256），有效；憑證不含身分證號",
        ec_key=True,
    ),
    _UserSpec(
        "expired",
        CardKind.MOICA,
        "張雅婷",
        generate_national_id("H", 2, 1122334),
        "moica-ca",
        0x2002,
        "expired",
        "自然人憑證，已過期",
        not_before=-800 * DAY,
        not_after=-30 * DAY,
    ),
    _UserSpec(
        "not_yet_valid",
        CardKind.HPC,
        "李建宏",
        generate_national_id("E", 1, 5566778),
        "hca-ca",
        0x3003,
        "not_yet_valid",
        "醫事人員卡，尚未生效",
        not_before=30 * DAY,
        not_after=760 * DAY,
    ),
    _UserSpec(
        "revoked",
        CardKind.MOICA,
        "黃淑芬",
        generate_national_id("D", 2, 9988776),
        "moica-ca",
        0x2003,
        "revoked",
        "自然人憑證，已列入廢止清冊",
        revoked=True,
    ),
    _UserSpec(
        "untrusted",
        CardKind.MOICA,
        "吳宗翰",
        generate_national_id("K", 1, 4433221),
        "untrusted-ca",
        0x2F01,
        "untrusted",
        "自然人憑證格式，但由不受信任的簽發單位簽發",
    ),
    _UserSpec(
        "key_usage",
        CardKind.MOICA,
        "蔡佩君",
        generate_national_id("N", 2, 7654321),
        "moica-ca",
        0x2004,
        "key_usage",
        "自然人憑證的加密用憑證（無 digitalSignature）",
        key_usage="encrypt",
    ),
    # Two more valid cards, so the demo has an applicant under review and a disabled
    # account besides the active ones.
    _UserSpec(
        "moica2",
        CardKind.MOICA,
        "周怡君",
        generate_national_id("A", 2, 3141592),
        "moica-ca",
        0x2005,
        "ok",
        "自然人憑證（RSA-2048），有效",
    ),
    _UserSpec(
        "hpc2",
        CardKind.HPC,
        "鄭家豪",
        generate_national_id("F", 1, 2718281),
        "hca-ca",
        0x3004,
        "ok",
        "醫事人員卡（RSA-2048），有效",
    ),
    # A valid card whose certificate runs out within 30 days: logs in, and home says
    # when it expires.
    _UserSpec(
        "expiring",
        CardKind.MOICA,
        "許雅雯",
        generate_national_id("P", 2, 2468013),
        "moica-ca",
        0x2006,
        "ok",
        "自然人憑證，有效但 20 天後到期",
        not_before=-710 * DAY,
        not_after=20 * DAY,
    ),
    # A 醫事機構 card: a trusted, valid certificate of a place, not of a person.
    _UserSpec(
        "org",
        None,
        "測試醫院",
        "",
        "hca-ca",
        0x3005,
        "not_personal",
        "醫事機構憑證（持有人類別 2.16.886.1.100.3.2.21），不是個人憑證",
    ),
    # A person with a valid card and no account yet: who applies for a new one.
    _UserSpec(
        "newcomer",
        CardKind.HPC,
        "林怡君",
        generate_national_id("B", 2, 3141592),
        "hca-ca",
        0x3006,
        "ok",
        "醫事人員卡，有效，尚無帳號",
    ),
)
USER_NAMES = tuple(spec.name for spec in _USERS)

REVOCATION_AGE = 10 * DAY
CRL_LAST_UPDATE_AGE = 1 * DAY
CRL_VALIDITY = 7 * DAY


# --------------------------------------------------------------------------- keys


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _new_key(ec_key: bool) -> PrivateKey:
    if ec_key:
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _key(name: str, ec_key: bool, cache: Path | None) -> PrivateKey:
    if cache is not None:
        path = cache / f"{name}.key.pem"
        if path.exists():
            # Checking an RSA key on load costs as much as generating it: these are our
            # own test keys, so skip that check (the whole point of the cache is speed).
            loaded = serialization.load_pem_private_key(
                path.read_bytes(), password=None, unsafe_skip_rsa_key_validation=True
            )
            if ec_key and isinstance(loaded, ec.EllipticCurvePrivateKey):
                return loaded
            if not ec_key and isinstance(loaded, rsa.RSAPrivateKey):
                return loaded
    key = _new_key(ec_key)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        (cache / f"{name}.key.pem").write_bytes(_key_pem(key))
    return key


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


# --------------------------------------------------------------------------- builders


def _ca_name(spec: _CaSpec) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "TW"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, spec.org),
            x509.NameAttribute(NameOID.COMMON_NAME, spec.cn),
        ]
    )


@dataclass(frozen=True)
class _Repository:
    """Where the CAs publish their CRLs and certificates (RFC 5280 4.2.1.13, 4.2.2.1)."""

    crl_base_url: str
    ca_base_url: str

    def extensions_for(self, issuer: str) -> list[x509.ExtensionType]:
        """CRL distribution point and caIssuers of a certificate issued by ``issuer``."""
        return [
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        [x509.UniformResourceIdentifier(f"{self.crl_base_url}{issuer}.crl")],
                        None,
                        None,
                        None,
                    )
                ]
            ),
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        x509.AuthorityInformationAccessOID.CA_ISSUERS,
                        x509.UniformResourceIdentifier(f"{self.ca_base_url}{issuer}.pem"),
                    )
                ]
            ),
        ]


def _build_ca(
    spec: _CaSpec,
    key: PrivateKey,
    parent: tuple[x509.Certificate, PrivateKey] | None,
    now: dt.datetime,
    repository: _Repository,
) -> x509.Certificate:
    subject = _ca_name(spec)
    issuer_name = parent[0].subject if parent else subject
    issuer_key = parent[1] if parent else key
    root = parent is None
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(spec.serial)
        .not_valid_before(now - (3650 if root else 1825) * DAY)
        .not_valid_after(now + (7300 if root else 3650) * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None if root else 0), True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
    )
    if spec.parent is not None:
        for extension in repository.extensions_for(spec.parent):
            builder = builder.add_extension(extension, False)
    return builder.sign(issuer_key, hashes.SHA256())


def self_signed_certificate(
    key: PrivateKey,
    common_name: str,
    *,
    days: int = 365,
    extensions: Iterable[tuple[x509.ExtensionType, bool]] = (),
) -> x509.Certificate:
    """A certificate for ``common_name`` signed with its own ``key``, valid from a day
    ago for ``days`` days, with ``extensions`` as (extension, critical) pairs: for
    tests that need a certificate outside the test PKI."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - DAY)
        .not_valid_after(now + days * DAY)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical)
    return builder.sign(key, hashes.SHA256())


def _key_usage(kind: str) -> x509.KeyUsage:
    sign = kind == "sign"
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=sign,
        key_encipherment=not sign,
        data_encipherment=not sign,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


_SUBJECT_TYPES = {CardKind.MOICA: MOICA_SUBJECT_TYPE, CardKind.HPC: HPC_SUBJECT_TYPE}


def _directory_attributes(spec: _UserSpec) -> dict[str, str | x509.ObjectIdentifier]:
    """What a real certificate of this kind carries in subjectDirectoryAttributes."""
    if spec.kind is CardKind.PIV:
        return {}
    subject_type = _SUBJECT_TYPES.get(spec.kind) if spec.kind else INSTITUTION_SUBJECT_TYPE
    assert subject_type is not None
    attributes: dict[str, str | x509.ObjectIdentifier] = {
        SUBJECT_TYPE_ATTRIBUTE_OID.dotted_string: subject_type
    }
    if spec.kind is CardKind.MOICA:
        attributes[ID_LAST4_ATTRIBUTE_OID.dotted_string] = spec.person_id[-4:]
    return attributes


def _build_user(
    spec: _UserSpec,
    key: PrivateKey,
    issuer: tuple[x509.Certificate, PrivateKey],
    now: dt.datetime,
    repository: _Repository,
) -> x509.Certificate:
    attrs = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "TW"),
        x509.NameAttribute(NameOID.COMMON_NAME, spec.cn),
    ]
    if spec.kind is CardKind.MOICA:
        # Real MOICA subjects carry a 16-digit card serial here, not the ID.
        attrs.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, f"{spec.serial:016d}"))
    elif spec.kind is CardKind.HPC:
        attrs.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, spec.person_id))
    issuer_cert, issuer_key = issuer
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attrs))
        .issuer_name(issuer_cert.subject)
        .public_key(key.public_key())
        .serial_number(spec.serial)
        .not_valid_before(now + spec.not_before)
        .not_valid_after(now + spec.not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(_key_usage(spec.key_usage), True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
    )
    for extension in repository.extensions_for(spec.issuer):
        builder = builder.add_extension(extension, False)
    attributes = _directory_attributes(spec)
    if attributes:
        builder = builder.add_extension(
            x509.CertificatePolicies([x509.PolicyInformation(GPKI_ASSURANCE_LEVEL_3, None)]),
            False,
        )
        sda = encode_subject_directory_attributes(attributes)
        builder = builder.add_extension(
            x509.UnrecognizedExtension(ExtensionOID.SUBJECT_DIRECTORY_ATTRIBUTES, sda), False
        )
    if spec.kind is CardKind.PIV:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, SMARTCARD_LOGON_OID]), False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _build_crl(
    issuer: tuple[x509.Certificate, PrivateKey],
    revoked: list[int],
    now: dt.datetime,
    number: int,
) -> x509.CertificateRevocationList:
    cert, key = issuer
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(cert.subject)
        .last_update(now - CRL_LAST_UPDATE_AGE)
        .next_update(now + CRL_VALIDITY)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False)
        .add_extension(x509.CRLNumber(number), False)
    )
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(now - REVOCATION_AGE)
            .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), False)
            .build()
        )
    return builder.sign(key, hashes.SHA256())


# --------------------------------------------------------------------------- main


def _utc_now(now: dt.datetime | None) -> dt.datetime:
    value = now or dt.datetime.now(dt.UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).replace(microsecond=0)


def make_test_pki(
    directory: Path,
    *,
    now: dt.datetime | None = None,
    key_cache: Path | None = None,
    crl_base_url: str = DEFAULT_CRL_BASE_URL,
    ca_base_url: str = DEFAULT_CA_BASE_URL,
) -> TestPki:
    """Write the test PKI into ``directory`` (created if needed) and return it.

    Dates are relative to ``now`` (default: the current time, UTC): valid users from
    30 days ago for 2 years, CRLs issued a day ago and due again in 7 days, the revoked
    user revoked 10 days ago. ``key_cache``: directory in which to keep and reuse keys.
    Every certificate names its issuer's CRL as ``{crl_base_url}{issuer}.crl`` and its
    issuer's certificate as ``{ca_base_url}{issuer}.pem`` (issuer: ``root``,
    ``moica-ca``, ``hca-ca``…), the names the files have in ``crl/`` and ``ca/``.
    """
    directory = Path(directory)
    moment = _utc_now(now)
    repository = _Repository(crl_base_url, ca_base_url)
    dirs = {
        "ca": directory / "ca",
        "ca-keys": directory / "ca-keys",
        "crl": directory / "crl",
        "users": directory / "users",
        "untrusted": directory / "untrusted",
    }
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)

    cas: dict[str, PkiCa] = {}
    for spec in _CAS:
        key = _key(spec.name, False, key_cache)
        parent = None
        if spec.parent is not None:
            parent = (cas[spec.parent].certificate, cas[spec.parent].key)
        cert = _build_ca(spec, key, parent, moment, repository)
        if spec.trusted:
            cert_path = dirs["ca"] / f"{spec.name}.pem"
            key_path = dirs["ca-keys"] / f"{spec.name}.key.pem"
        else:
            cert_path = dirs["untrusted"] / f"{spec.name}.pem"
            key_path = dirs["untrusted"] / f"{spec.name}.key.pem"
        _write(cert_path, _cert_pem(cert))
        _write(key_path, _key_pem(key))
        cas[spec.name] = PkiCa(spec.name, spec.cn, cert, key, cert_path, key_path, spec.trusted)

    users: dict[str, PkiUser] = {}
    for uspec in _USERS:
        key = _key(f"user-{uspec.name}", uspec.ec_key, key_cache)
        issuer = cas[uspec.issuer]
        cert = _build_user(uspec, key, (issuer.certificate, issuer.key), moment, repository)
        cert_path = dirs["users"] / f"{uspec.name}.pem"
        key_path = dirs["users"] / f"{uspec.name}.key.pem"
        _write(cert_path, _cert_pem(cert))
        _write(key_path, _key_pem(key))
        hints: dict[CardKind | None, str] = {
            CardKind.MOICA: uspec.person_id[-4:],
            CardKind.HPC: uspec.person_id,
        }
        hint = hints.get(uspec.kind)
        users[uspec.name] = PkiUser(
            name=uspec.name,
            kind=uspec.kind,
            cn=uspec.cn,
            person_id=uspec.person_id,
            id_hint=hint,
            expected=uspec.expected,
            description=uspec.description,
            issuer=uspec.issuer,
            certificate=cert,
            key=key,
            cert_path=cert_path,
            key_path=key_path,
        )

    crls: dict[str, x509.CertificateRevocationList] = {}
    crl_paths: dict[str, Path] = {}
    for number, name in enumerate(("root", "moica-ca", "hca-ca"), start=1):
        revoked = [u.serial for u in _USERS if u.issuer == name and u.revoked]
        crl = _build_crl((cas[name].certificate, cas[name].key), revoked, moment, number)
        path = dirs["crl"] / f"{name}.crl"
        _write(path, crl.public_bytes(serialization.Encoding.DER))
        crls[name] = crl
        crl_paths[name] = path

    pki = TestPki(
        directory=directory,
        now=moment,
        cas=cas,
        users=users,
        crls=crls,
        crl_paths=crl_paths,
        crl_base_url=crl_base_url,
    )
    _write(
        pki.manifest_path,
        (json.dumps(_manifest(pki), ensure_ascii=False, indent=2) + "\n").encode("utf-8"),
    )
    return pki


def _manifest(pki: TestPki) -> dict[str, Any]:
    def rel(path: Path) -> str:
        return path.relative_to(pki.directory).as_posix()

    return {
        "note": "測試用 PKI：私鑰未加密，僅供測試與展示，切勿用於正式環境",
        "generated_at": pki.now.isoformat(),
        "ca_dir": rel(pki.ca_dir),
        "crl_dir": rel(pki.crl_dir),
        "cas": [
            {
                "name": ca.name,
                "cn": ca.cn,
                "trusted": ca.trusted,
                "cert": rel(ca.cert_path),
                "key": rel(ca.key_path),
                "sha256": ca.certificate.fingerprint(hashes.SHA256()).hex(),
            }
            for ca in pki.cas.values()
        ],
        "crls": [
            {
                "issuer": name,
                "file": rel(path),
                "next_update": _iso(pki.crls[name].next_update_utc),
                "revoked_serials": [f"{r.serial_number:x}" for r in pki.crls[name]],
            }
            for name, path in pki.crl_paths.items()
        ],
        "users": [
            {
                "name": u.name,
                "kind": str(u.kind) if u.kind else "organisation",
                "cn": u.cn,
                "person_id": u.person_id,
                "id_hint": u.id_hint,
                "key_type": "P-256"
                if isinstance(u.key, ec.EllipticCurvePrivateKey)
                else "RSA-2048",
                "issuer": u.issuer,
                "serial": f"{u.certificate.serial_number:x}",
                "not_before": _iso(u.certificate.not_valid_before_utc),
                "not_after": _iso(u.certificate.not_valid_after_utc),
                "expected": u.expected,
                "description": u.description,
                "cert": rel(u.cert_path),
                "key": rel(u.key_path),
            }
            for u in pki.users.values()
        ],
    }


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
