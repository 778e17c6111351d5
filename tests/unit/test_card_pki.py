"""Test PKI, card identities, certificate validation and challenge signatures (card/)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature
from cryptography.x509.oid import ExtensionOID, NameOID

from card.challenge import (
    SHA256_DIGEST_INFO_PREFIX,
    ChallengeBook,
    new_challenge,
    piv_ec_digest,
    piv_rsa_block,
    verify_signature,
)
from card.errors import (
    CardProtocolError,
    CertificateProblem,
    NotPersonalCard,
    SignatureInvalid,
    TrustStoreError,
)
from card.identity import (
    HPC_SUBJECT_TYPE,
    ID_LAST4_ATTRIBUTE_OID,
    MOICA_SUBJECT_TYPE,
    SUBJECT_TYPE_ATTRIBUTE_OID,
    CardIdentity,
    CardKind,
    identity_from_certificate,
    matches_person_id,
    parse_subject_directory_attributes,
)
from card.sim.testpki import (
    PkiUser,
    TestPki,
    der_oid,
    der_tlv,
    encode_subject_directory_attributes,
    make_test_pki,
)
from card.validation import CertificateValidator
from models.schema import CardKind as SchemaCardKind
from smis_tui.cli import card as cli_card
from smis_tui.core.identifiers import is_valid_checksum
from smis_tui.core.rocdate import to_roc
from smis_tui.services.card_inspect import inspect_certificate

NOW = dt.datetime(2025, 3, 14, 4, 0, 0, tzinfo=dt.UTC)
TW = dt.timezone(dt.timedelta(hours=8))


def roc(when: dt.datetime) -> str:
    return to_roc(when.astimezone(TW).date())


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_test_pki(tmp_path_factory.mktemp("pki"), now=NOW)


@pytest.fixture(scope="session")
def validator(pki: TestPki) -> CertificateValidator:
    return CertificateValidator(pki.ca_dir, pki.crl_dir)


def sign(user: PkiUser, data: bytes) -> bytes:
    key = user.key
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def problem(
    validator: CertificateValidator, cert: x509.Certificate, **kw: object
) -> CertificateProblem:
    with pytest.raises(CertificateProblem) as info:
        validator.validate(cert, **kw)  # type: ignore[arg-type]
    return info.value


# --------------------------------------------------------------------------- test PKI


def test_layout_and_manifest(pki: TestPki) -> None:
    d = pki.directory
    assert sorted(p.name for p in (d / "ca").iterdir()) == [
        "hca-ca.pem",
        "moica-ca.pem",
        "root.pem",
    ]
    assert sorted(p.name for p in (d / "crl").iterdir()) == [
        "hca-ca.crl",
        "moica-ca.crl",
        "root.crl",
    ]
    assert (d / "untrusted" / "untrusted-root.pem").exists()
    assert (d / "untrusted" / "untrusted-ca.pem").exists()
    manifest = json.loads(pki.manifest_path.read_text("utf-8"))
    by_name = {u["name"]: u for u in manifest["users"]}
    assert set(by_name) == {
        "moica", "hpc", "piv", "expired", "not_yet_valid", "revoked", "untrusted", "key_usage",
        "moica2", "hpc2", "expiring", "org", "newcomer",
    }  # fmt: skip
    for name, entry in by_name.items():
        assert (d / entry["cert"]).exists() and (d / entry["key"]).exists()
        assert entry["expected"] == pki.user(name).expected
        assert name == "org" or is_valid_checksum(entry["person_id"])
    assert by_name["org"]["kind"] == "organisation"
    assert by_name["piv"]["key_type"] == "P-256"
    assert by_name["moica"]["key_type"] == "RSA-2048"
    # PEM files round-trip.
    user = pki.user("moica")
    assert x509.load_pem_x509_certificate(user.cert_path.read_bytes()) == user.certificate
    key = serialization.load_pem_private_key(user.key_path.read_bytes(), password=None)
    assert key.public_key() == user.certificate.public_key()


def test_ca_extensions(pki: TestPki) -> None:
    for ca in pki.cas.values():
        cert = ca.certificate
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        assert bc.critical and bc.value.ca
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        assert ku.key_cert_sign and ku.crl_sign
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        if ca.name.endswith("root"):
            assert aki.key_identifier == ski.digest
    # The untrusted issuer impersonates the MOICA-like CA by name only.
    assert pki.cas["untrusted-ca"].certificate.subject == pki.moica_ca.certificate.subject
    assert not pki.cas["untrusted-ca"].trusted


def test_crls(pki: TestPki) -> None:
    crl = pki.crls["moica-ca"]
    assert crl.is_signature_valid(pki.moica_ca.certificate.public_key())  # type: ignore[arg-type]
    assert crl.next_update_utc is not None and crl.next_update_utc > NOW
    revoked = pki.user("revoked").certificate.serial_number
    assert crl.get_revoked_certificate_by_serial_number(revoked) is not None
    assert len(pki.crls["hca-ca"]) == 0
    loaded = x509.load_der_x509_crl(pki.crl_paths["moica-ca"].read_bytes())
    assert loaded == crl


def key_cache_of(pki: TestPki, cache: Path) -> Path:
    """``cache``, made a key cache that holds the keys of ``pki``."""
    cache.mkdir()
    for name, ca in pki.cas.items():
        shutil.copy(ca.key_path, cache / f"{name}.key.pem")
    for name, user in pki.users.items():
        shutil.copy(user.key_path, cache / f"user-{name}.key.pem")
    return cache


def test_key_cache_reuses_keys(tmp_path: Path, pki: TestPki) -> None:
    cache = key_cache_of(pki, tmp_path / "keys")
    again = make_test_pki(tmp_path / "again", now=NOW, key_cache=cache)
    assert again.root.certificate.public_key() == pki.root.certificate.public_key()
    assert again.user("piv").certificate.public_key() == pki.user("piv").certificate.public_key()
    CertificateValidator(again.ca_dir, again.crl_dir).validate(
        again.user("moica").certificate, at=NOW
    )


def test_sda_round_trip() -> None:
    der = encode_subject_directory_attributes(
        {"2.16.886.1.100.2.51": "1234", "1.2.3": "x", "2.16.886.1.100.2.1": MOICA_SUBJECT_TYPE}
    )
    assert parse_subject_directory_attributes(der) == {
        "2.16.886.1.100.2.51": ["1234"],
        "1.2.3": ["x"],
        "2.16.886.1.100.2.1": [MOICA_SUBJECT_TYPE],
    }
    # UTF8String values are read too.
    utf8 = bytes.fromhex("3014301206092a864886f70d0109013105") + bytes([0x0C, 0x03]) + b"567"
    assert parse_subject_directory_attributes(utf8) == {"1.2.840.113549.1.9.1": ["567"]}


# --------------------------------------------------------------------------- identity


def test_card_kind_matches_schema() -> None:
    assert {k.value for k in CardKind} == {k.value for k in SchemaCardKind}


def test_identity_moica(pki: TestPki) -> None:
    user = pki.user("moica")
    ident = identity_from_certificate(user.cert_der)
    assert ident.kind is CardKind.MOICA
    assert ident.name == "王小明"
    assert ident.id_hint == user.person_id[-4:]
    assert ident.cert_sha256 == user.certificate.fingerprint(hashes.SHA256()).hex()
    assert ident.not_before == user.certificate.not_valid_before_utc
    assert ident.not_after.tzinfo is not None
    assert ident.certificate == user.certificate
    assert matches_person_id(ident, user.person_id)
    assert matches_person_id(ident, user.person_id.lower())
    assert not matches_person_id(ident, pki.user("hpc").person_id)
    assert not matches_person_id(ident, user.person_id[-4:])  # not a whole ID


def test_identity_hpc(pki: TestPki) -> None:
    user = pki.user("hpc")
    ident = identity_from_certificate(user.certificate)
    assert ident.kind is CardKind.HPC
    assert ident.name == "陳美玲"
    assert ident.id_hint == user.person_id
    assert matches_person_id(ident, f" {user.person_id.lower()} ")
    # Same last 4 digits is not enough when the full ID is known.
    other = user.person_id[:1] + ("1" if user.person_id[1] == "2" else "2") + user.person_id[2:]
    assert not matches_person_id(ident, other)


def test_identity_piv(pki: TestPki) -> None:
    user = pki.user("piv")
    ident = identity_from_certificate(user.certificate.public_bytes(serialization.Encoding.PEM))
    assert ident.kind is CardKind.PIV
    assert ident.name == "林志豪"
    assert ident.id_hint is None
    assert not matches_person_id(ident, user.person_id)


def real_shaped(
    pki: TestPki,
    attributes: dict[str, str | x509.ObjectIdentifier] | None,
    *,
    policies: tuple[str, ...] = ("2.16.886.101.0.3.3",),
    serial_number: str | None = None,
) -> x509.Certificate:
    """A certificate shaped as public code written against real MOICA/HPC certificates
    shows them: the kind in subjectDirectoryAttributes, assurance-level policies."""
    names = [x509.NameAttribute(NameOID.COMMON_NAME, "測試持卡人")]
    if serial_number is not None:
        names.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial_number))
    issuer = pki.moica_ca
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(names))
        .issuer_name(issuer.certificate.subject)
        .public_key(pki.user("moica").certificate.public_key())
        .serial_number(0x7777)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(
            x509.CertificatePolicies(
                [x509.PolicyInformation(x509.ObjectIdentifier(oid), None) for oid in policies]
            ),
            False,
        )
    )
    if attributes is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(
                ExtensionOID.SUBJECT_DIRECTORY_ATTRIBUTES,
                encode_subject_directory_attributes(attributes),
            ),
            False,
        )
    return builder.sign(issuer.key, hashes.SHA256())


def test_kind_is_the_subject_type_not_the_policy(pki: TestPki) -> None:
    """The shape of a real 自然人憑證: policy 2.16.886.101.0.3.3, subject type
    2.16.886.1.100.3.1.1 and the last 4 ID digits in subjectDirectoryAttributes."""
    citizen = real_shaped(
        pki,
        {
            SUBJECT_TYPE_ATTRIBUTE_OID.dotted_string: MOICA_SUBJECT_TYPE,
            ID_LAST4_ATTRIBUTE_OID.dotted_string: "6789",
        },
    )
    ident = identity_from_certificate(citizen)
    assert ident.kind is CardKind.MOICA
    assert ident.id_hint == "6789"
    health = real_shaped(
        pki,
        {SUBJECT_TYPE_ATTRIBUTE_OID.dotted_string: HPC_SUBJECT_TYPE},
        serial_number=pki.user("hpc").person_id,
    )
    assert identity_from_certificate(health).kind is CardKind.HPC
    assert identity_from_certificate(health).id_hint == pki.user("hpc").person_id


def test_a_policy_oid_alone_makes_no_moica(pki: TestPki) -> None:
    """The old assumption: the subject-type OID as a certificate policy. No real
    certificate is shaped so, and it must not make a 自然人憑證."""
    cert = real_shaped(pki, None, policies=(MOICA_SUBJECT_TYPE.dotted_string,))
    assert identity_from_certificate(cert).kind is CardKind.PIV


def test_a_string_that_looks_like_the_subject_type_is_not_one(pki: TestPki) -> None:
    cert = real_shaped(pki, {SUBJECT_TYPE_ATTRIBUTE_OID.dotted_string: "2.16.886.1.100.3.1.1"})
    with pytest.raises(CardProtocolError, match="憑證無法解析"):
        identity_from_certificate(cert)


def test_an_organisation_card_is_refused(pki: TestPki) -> None:
    with pytest.raises(NotPersonalCard) as info:
        identity_from_certificate(pki.user("org").certificate)
    assert info.value.subject_type == "2.16.886.1.100.3.2.21"
    assert "不是個人憑證" in str(info.value) and "自然人憑證" in str(info.value)
    server = real_shaped(
        pki, {SUBJECT_TYPE_ATTRIBUTE_OID.dotted_string: x509.ObjectIdentifier("1.2.3.4")}
    )
    with pytest.raises(NotPersonalCard):
        identity_from_certificate(server)


def test_moica_never_takes_its_serial_number_for_an_id(pki: TestPki) -> None:
    """MOICA's subject serialNumber is a card serial: even one that happens to be a
    valid ID is not the holder's, only the 4 digits in the attributes are."""
    cert = real_shaped(
        pki,
        {
            SUBJECT_TYPE_ATTRIBUTE_OID.dotted_string: MOICA_SUBJECT_TYPE,
            ID_LAST4_ATTRIBUTE_OID.dotted_string: "6789",
        },
        serial_number=pki.user("hpc").person_id,
    )
    assert identity_from_certificate(cert).id_hint == "6789"


def test_conflicting_subject_types_are_refused(pki: TestPki) -> None:
    # Two values in the one SET: 自然人 and 醫事人員 at once.
    values = der_tlv(
        0x31, der_oid(MOICA_SUBJECT_TYPE.dotted_string) + der_oid(HPC_SUBJECT_TYPE.dotted_string)
    )
    both = der_tlv(0x30, der_tlv(0x30, der_oid(SUBJECT_TYPE_ATTRIBUTE_OID.dotted_string) + values))
    assert parse_subject_directory_attributes(both) == {
        SUBJECT_TYPE_ATTRIBUTE_OID.dotted_string: [MOICA_SUBJECT_TYPE, HPC_SUBJECT_TYPE]
    }
    issuer = pki.moica_ca
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "雙重身分")]))
        .issuer_name(issuer.certificate.subject)
        .public_key(pki.user("moica").certificate.public_key())
        .serial_number(0x7778)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(
            x509.UnrecognizedExtension(ExtensionOID.SUBJECT_DIRECTORY_ATTRIBUTES, both), False
        )
        .sign(issuer.key, hashes.SHA256())
    )
    with pytest.raises(CardProtocolError, match="不只一種"):
        identity_from_certificate(cert)


def test_test_pki_certificates_are_real_shaped(pki: TestPki) -> None:
    for name in ("moica", "hpc"):
        cert = pki.user(name).certificate
        policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
        assert [p.policy_identifier.dotted_string for p in policies] == ["2.16.886.101.0.3.3"]
        cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        issuer = pki.user(name).issuer
        assert [n.value for p in cdp for n in p.full_name or []] == [
            f"{pki.crl_base_url}{issuer}.crl"
        ]
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
        assert [d.access_location.value for d in aia] == [
            f"http://repository.smis-test.invalid/ca/{issuer}.pem"
        ]
    piv = pki.user("piv").certificate
    with pytest.raises(x509.ExtensionNotFound):
        piv.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_DIRECTORY_ATTRIBUTES)
    moica_ca = pki.moica_ca.certificate
    cdp = moica_ca.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert [n.value for p in cdp for n in p.full_name or []] == [f"{pki.crl_base_url}root.crl"]


def test_identity_equality_and_repr(pki: TestPki) -> None:
    user = pki.user("hpc")
    a = identity_from_certificate(user.certificate)
    b = identity_from_certificate(user.cert_der)
    assert a == b and isinstance(a, CardIdentity)
    assert user.person_id not in repr(a)
    assert "certificate" not in repr(a)


@pytest.mark.parametrize(
    "data", [b"", b"\x00" * 10, b"garbage", b"\x30\x82\x01\x00" + b"\x00" * 20]
)
def test_garbage_der(data: bytes) -> None:
    with pytest.raises(CardProtocolError) as info:
        identity_from_certificate(data)
    assert "憑證無法解析" in str(info.value)


def test_malformed_sda(pki: TestPki) -> None:
    user = pki.user("moica")
    issuer = pki.moica_ca
    cert = (
        x509.CertificateBuilder()
        .subject_name(user.certificate.subject)
        .issuer_name(issuer.certificate.subject)
        .public_key(user.certificate.public_key())
        .serial_number(0x9999)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(
            x509.UnrecognizedExtension(ExtensionOID.SUBJECT_DIRECTORY_ATTRIBUTES, b"\x30\x05\x30"),
            False,
        )
        .sign(issuer.key, hashes.SHA256())
    )
    with pytest.raises(CardProtocolError, match="憑證無法解析"):
        identity_from_certificate(cert)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("name", ["moica", "hpc", "piv"])
def test_valid_users(validator: CertificateValidator, pki: TestPki, name: str) -> None:
    validator.validate(pki.user(name).certificate, at=NOW)
    validator.validate(pki.user(name).cert_der, at=NOW)


def test_every_expected_outcome(validator: CertificateValidator, pki: TestPki) -> None:
    for user in pki.users.values():
        if user.expected == "ok":
            validator.validate(user.certificate, at=NOW)
        elif user.expected == "not_personal":
            validator.validate(user.certificate, at=NOW)  # a good certificate, of a place
            with pytest.raises(NotPersonalCard):
                identity_from_certificate(user.certificate)
        else:
            assert problem(validator, user.certificate, at=NOW).reason == user.expected


def test_expired(validator: CertificateValidator, pki: TestPki) -> None:
    cert = pki.user("expired").certificate
    exc = problem(validator, cert, at=NOW)
    assert exc.reason == "expired"
    assert str(exc) == f"憑證已於 {roc(cert.not_valid_after_utc)} 到期"
    assert exc.when == cert.not_valid_after_utc
    assert exc.key == "card.certificate"


def test_not_yet_valid(validator: CertificateValidator, pki: TestPki) -> None:
    cert = pki.user("not_yet_valid").certificate
    exc = problem(validator, cert, at=NOW)
    assert exc.reason == "not_yet_valid"
    assert str(exc) == f"憑證自 {roc(cert.not_valid_before_utc)} 起才生效"


def test_revoked(validator: CertificateValidator, pki: TestPki) -> None:
    exc = problem(validator, pki.user("revoked").certificate, at=NOW)
    assert exc.reason == "revoked"
    entry = next(iter(pki.crls["moica-ca"]))
    assert str(exc) == f"憑證已於 {roc(entry.revocation_date_utc)} 廢止"
    assert exc.when == entry.revocation_date_utc


def test_untrusted(validator: CertificateValidator, pki: TestPki) -> None:
    cert = pki.user("untrusted").certificate
    exc = problem(validator, cert, at=NOW)
    assert (exc.reason, str(exc)) == ("untrusted", "憑證簽發單位不受信任")
    # Handing over the untrusted chain (as a card would) does not help.
    chain = [pki.cas["untrusted-ca"].certificate, pki.cas["untrusted-root"].certificate]
    assert problem(validator, cert, at=NOW, intermediates=chain).reason == "untrusted"


def test_untrusted_anchor_in_ca_dir_only(tmp_path: Path, pki: TestPki) -> None:
    """An intermediate alone in the CA directory is not a trust anchor."""
    ca_dir = tmp_path / "ca"
    ca_dir.mkdir()
    shutil.copy(pki.root.cert_path, ca_dir / "root.crt")
    v = CertificateValidator(ca_dir, pki.crl_dir)
    assert problem(v, pki.user("moica").certificate, at=NOW).reason == "untrusted"
    v.validate(pki.user("moica").certificate, at=NOW, intermediates=[pki.moica_ca.certificate])


def test_key_usage(validator: CertificateValidator, pki: TestPki) -> None:
    exc = problem(validator, pki.user("key_usage").certificate, at=NOW)
    assert (exc.reason, str(exc)) == ("key_usage", "憑證用途不符（不可用於簽章登入）")


def test_crl_stale(validator: CertificateValidator, pki: TestPki) -> None:
    next_update = pki.crls["moica-ca"].next_update_utc
    assert next_update is not None
    exc = problem(validator, pki.user("moica").certificate, at=next_update + dt.timedelta(hours=1))
    assert exc.reason == "crl_stale"
    assert roc(next_update) in str(exc) and "過期" in str(exc)
    assert exc.when == next_update


def test_crl_missing_and_forged(tmp_path: Path, pki: TestPki) -> None:
    crl_dir = tmp_path / "crl"
    crl_dir.mkdir()
    shutil.copy(pki.crl_paths["root"], crl_dir / "root.crl")
    v = CertificateValidator(pki.ca_dir, crl_dir)
    assert problem(v, pki.user("moica").certificate, at=NOW).reason == "crl_missing"
    # A CRL with the right issuer name but signed by another key is ignored.
    forged = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(pki.moica_ca.certificate.subject)
        .last_update(NOW - dt.timedelta(days=1))
        .next_update(NOW + dt.timedelta(days=7))
        .sign(pki.cas["untrusted-ca"].key, hashes.SHA256())
    )
    (crl_dir / "forged.crl").write_bytes(forged.public_bytes(serialization.Encoding.PEM))
    assert problem(v, pki.user("moica").certificate, at=NOW).reason == "crl_missing"
    # Dropping the real CRL in (PEM this time) is picked up without a restart.
    real = pki.crls["moica-ca"].public_bytes(serialization.Encoding.PEM)
    (crl_dir / "moica.pem").write_bytes(real)
    v.validate(pki.user("moica").certificate, at=NOW)
    assert problem(v, pki.user("revoked").certificate, at=NOW).reason == "revoked"


@pytest.mark.parametrize(
    ("at", "reason"),
    [
        (dt.datetime(1990, 1, 1, tzinfo=dt.UTC), "not_yet_valid"),
        (dt.datetime(2099, 1, 1, tzinfo=dt.UTC), "expired"),
        (NOW + dt.timedelta(days=3650), "expired"),
    ],
)
def test_wrong_clock(
    validator: CertificateValidator, pki: TestPki, at: dt.datetime, reason: str
) -> None:
    assert problem(validator, pki.user("moica").certificate, at=at).reason == reason


def test_naive_at_is_utc(validator: CertificateValidator, pki: TestPki) -> None:
    validator.validate(pki.user("hpc").certificate, at=NOW.replace(tzinfo=None))


def test_validate_garbage(validator: CertificateValidator) -> None:
    with pytest.raises(CardProtocolError):
        validator.validate(b"not a certificate")


def test_trust_store_errors(tmp_path: Path, pki: TestPki) -> None:
    with pytest.raises(TrustStoreError):
        CertificateValidator(tmp_path / "missing", pki.crl_dir)
    only_intermediate = tmp_path / "ca"
    only_intermediate.mkdir()
    shutil.copy(pki.moica_ca.cert_path, only_intermediate / "moica.pem")
    with pytest.raises(TrustStoreError, match="根憑證"):
        CertificateValidator(only_intermediate, pki.crl_dir)
    (only_intermediate / "bad.der").write_bytes(b"junk")
    with pytest.raises(TrustStoreError, match="bad.der"):
        CertificateValidator(only_intermediate, pki.crl_dir)
    # A missing CRL directory does not stop the kiosk: it refuses every login instead
    # (tests/unit/test_revocation.py).
    no_crls = CertificateValidator(pki.ca_dir, tmp_path / "no-crls")
    assert problem(no_crls, pki.user("moica").certificate, at=NOW).reason == "crl_missing"
    (tmp_path / "crl-junk").mkdir()
    (tmp_path / "crl-junk" / "bad.crl").write_bytes(b"junk")
    with pytest.raises(TrustStoreError, match="bad.crl"):
        CertificateValidator(pki.ca_dir, tmp_path / "crl-junk")


# --------------------------------------------------------------------------- challenge


def test_piv_blocks(pki: TestPki) -> None:
    challenge = new_challenge()
    assert len(challenge) == 32 and new_challenge() != challenge
    block = piv_rsa_block(challenge)
    assert len(block) == 256 and block.startswith(b"\x00\x01\xff")
    assert block.endswith(b"\x00" + SHA256_DIGEST_INFO_PREFIX + piv_ec_digest(challenge))
    # The raw RSA operation on the block is a standard PKCS#1 v1.5 SHA-256 signature.
    user = pki.user("moica")
    key = user.key
    assert isinstance(key, rsa.RSAPrivateKey)
    n = key.private_numbers().public_numbers.n
    raw = pow(int.from_bytes(block, "big"), key.private_numbers().d, n).to_bytes(256, "big")
    verify_signature(user.certificate, challenge, raw)
    with pytest.raises(ValueError):
        piv_rsa_block(challenge, key_bytes=32)


@pytest.mark.parametrize("name", ["moica", "hpc", "piv"])
def test_signature_ok_and_wrong_key(pki: TestPki, name: str) -> None:
    user = pki.user(name)
    challenge = new_challenge()
    signature = sign(user, challenge)
    verify_signature(user.certificate, challenge, signature)
    other = pki.user("hpc" if name != "hpc" else "moica")
    with pytest.raises(SignatureInvalid):
        verify_signature(other.certificate, challenge, signature)
    with pytest.raises(SignatureInvalid):
        verify_signature(user.certificate, challenge, sign(other, challenge))


@pytest.mark.parametrize("name", ["moica", "piv"])
def test_signature_tampered(pki: TestPki, name: str) -> None:
    user = pki.user(name)
    challenge = new_challenge()
    signature = sign(user, challenge)
    flipped = bytes([challenge[0] ^ 1]) + challenge[1:]
    with pytest.raises(SignatureInvalid):
        verify_signature(user.certificate, flipped, signature)
    bad = bytearray(signature)
    bad[len(bad) // 2] ^= 0x40
    with pytest.raises(SignatureInvalid):
        verify_signature(user.certificate, challenge, bytes(bad))
    with pytest.raises(SignatureInvalid):
        verify_signature(user.certificate, challenge, b"")


def test_ecdsa_raw_signature(pki: TestPki) -> None:
    """PKCS#11 returns ECDSA as raw r || s; PIV as DER. Both verify."""
    user = pki.user("piv")
    challenge = new_challenge()
    r, s = decode_dss_signature(sign(user, challenge))
    verify_signature(user.certificate, challenge, r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    key = user.key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    # What a PIV card does: ECDSA over the digest it is given.
    digest_sig = key.sign(piv_ec_digest(challenge), ec.ECDSA(Prehashed(hashes.SHA256())))
    verify_signature(user.certificate, challenge, digest_sig)


def test_challenge_book_once_only(pki: TestPki) -> None:
    user = pki.user("hpc")
    book = ChallengeBook()
    challenge = book.issue()
    signature = sign(user, challenge)
    book.verify(user.certificate, challenge, signature)
    with pytest.raises(SignatureInvalid):  # replay
        book.verify(user.certificate, challenge, signature)
    with pytest.raises(SignatureInvalid):  # never issued
        other = new_challenge()
        book.verify(user.certificate, other, sign(user, other))


def test_challenge_book_bad_signature_burns_challenge(pki: TestPki) -> None:
    user = pki.user("moica")
    book = ChallengeBook()
    challenge = book.issue()
    with pytest.raises(SignatureInvalid):
        book.verify(user.certificate, challenge, sign(pki.user("hpc"), challenge))
    with pytest.raises(SignatureInvalid):
        book.verify(user.certificate, challenge, sign(user, challenge))


def test_challenge_book_ttl_and_limit(pki: TestPki) -> None:
    now = [1000.0]
    book = ChallengeBook(ttl=60, clock=lambda: now[0], max_outstanding=3)
    user = pki.user("piv")
    old = book.issue()
    now[0] += 61
    with pytest.raises(SignatureInvalid):
        book.verify(user.certificate, old, sign(user, old))
    issued = [book.issue() for _ in range(4)]
    assert len(book) == 3
    with pytest.raises(SignatureInvalid):  # the oldest was dropped
        book.consume(issued[0])
    book.consume(issued[3])
    now[0] += 59.9
    book.consume(issued[2])


# --------------------------------------------------------------------------- CLI


def test_cli_make_test_pki(
    tmp_path: Path, pki: TestPki, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    cli_card.register(parser.add_subparsers(dest="command"))
    cache = key_cache_of(pki, tmp_path / "keys")
    args = parser.parse_args(
        ["card", "make-test-pki", str(tmp_path / "out"), "--key-cache", str(cache)]
    )
    assert args.handler(None, args) == 0
    out = capsys.readouterr().out
    assert "已產生測試用 PKI" in out
    for user in pki.users.values():
        assert user.cn in out and f"users/{user.name}.pem" in out
    assert "預期：憑證已廢止（revoked）" in out
    assert (tmp_path / "out" / "manifest.json").exists()


def _with_raw_sda(pki: TestPki, extension_value: bytes) -> x509.Certificate:
    """A certificate signed by the MOICA-like CA with ``extension_value`` as its
    subjectDirectoryAttributes extension."""
    issuer = pki.moica_ca
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "測試持卡人")]))
        .issuer_name(issuer.certificate.subject)
        .public_key(pki.user("moica").certificate.public_key())
        .serial_number(0x7779)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
    )
    builder = builder.add_extension(
        x509.UnrecognizedExtension(ExtensionOID.SUBJECT_DIRECTORY_ATTRIBUTES, extension_value),
        False,
    )
    return builder.sign(issuer.key, hashes.SHA256())


@pytest.mark.parametrize(
    "value",
    [
        # the subject type attribute with an empty SET of values
        der_tlv(
            0x30,
            der_tlv(0x30, der_oid(SUBJECT_TYPE_ATTRIBUTE_OID.dotted_string) + der_tlv(0x31, b"")),
        ),
        # ... with the OID wrapped in an OCTET STRING
        der_tlv(
            0x30,
            der_tlv(
                0x30,
                der_oid(SUBJECT_TYPE_ATTRIBUTE_OID.dotted_string)
                + der_tlv(0x31, der_tlv(0x04, der_oid(MOICA_SUBJECT_TYPE.dotted_string))),
            ),
        ),
        # an empty SEQUENCE of attributes (RFC 5280 wants at least one)
        bytes.fromhex("3000"),
        # MOICA's subject type encoded with a padding byte (0x80) in a subidentifier
        der_tlv(
            0x30,
            der_tlv(
                0x30,
                der_oid(SUBJECT_TYPE_ATTRIBUTE_OID.dotted_string)
                + der_tlv(0x31, bytes.fromhex("0609608676016403018001")),
            ),
        ),
    ],
    ids=["empty-set", "octet-string", "no-attributes", "non-minimal-oid"],
)
def test_an_unreadable_subject_type_is_no_piv_card(pki: TestPki, value: bytes) -> None:
    """A subject type that is there but cannot be read must never fall back to "no
    subject type, so PIV": that would take the full ID from serialNumber."""
    with pytest.raises(CardProtocolError, match="憑證無法解析"):
        identity_from_certificate(_with_raw_sda(pki, value))


def test_a_duplicated_extension_is_unparseable_not_a_crash(pki: TestPki) -> None:
    """Two subjectDirectoryAttributes extensions (RFC 5280 4.2: at most one of each):
    "cannot be parsed", never an unexpected error. cryptography will not build such a
    certificate, so a second extension under a neighbouring OID (2.5.29.8) is renamed
    in the DER; the kiosk parses before it checks any signature."""
    sda = encode_subject_directory_attributes(
        {SUBJECT_TYPE_ATTRIBUTE_OID.dotted_string: MOICA_SUBJECT_TYPE}
    )
    issuer = pki.moica_ca
    neighbour = x509.ObjectIdentifier("2.5.29.8")
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "測試持卡人")]))
        .issuer_name(issuer.certificate.subject)
        .public_key(pki.user("moica").certificate.public_key())
        .serial_number(0x777A)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(
            x509.UnrecognizedExtension(ExtensionOID.SUBJECT_DIRECTORY_ATTRIBUTES, sda), False
        )
        .add_extension(x509.UnrecognizedExtension(neighbour, sda), False)
        .sign(issuer.key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    renamed = der.replace(der_oid("2.5.29.8"), der_oid("2.5.29.9"))
    assert renamed.count(der_oid("2.5.29.9")) == 2
    with pytest.raises(CardProtocolError, match="憑證無法解析"):
        identity_from_certificate(renamed)
    # `smis-tui card inspect` says so too, instead of ending in a traceback.
    assert inspect_certificate(renamed, None).verdict == "unparseable"
