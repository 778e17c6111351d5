"""Revocation fails closed (card/validation.py) and CRLs are checked before they are
installed (card/revocation.py)."""

from __future__ import annotations

import datetime as dt
import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from card.errors import CertificateProblem
from card.revocation import (
    CrlRefused,
    check_crl,
    distribution_point_urls,
    install_crl,
    load_crl_bytes,
    refresh,
)
from card.sim.testpki import PkiCa, PrivateKey, TestPki, der_tlv, make_test_pki
from card.validation import CertificateValidator
from smis_tui.core.rocdate import to_roc

NOW = dt.datetime(2025, 3, 14, 4, 0, 0, tzinfo=dt.UTC)
TW = dt.timezone(dt.timedelta(hours=8))
DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)


def roc(when: dt.datetime) -> str:
    return to_roc(when.astimezone(TW).date())


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_test_pki(tmp_path_factory.mktemp("pki"), now=NOW)


def build_crl(
    ca: PkiCa,
    *,
    revoked: tuple[int, ...] = (),
    this_update: dt.datetime = NOW - DAY,
    next_update: dt.datetime | None = NOW + 7 * DAY,
    number: int = 1,
    signer: PrivateKey | None = None,
    idp: x509.IssuingDistributionPoint | None = None,
) -> x509.CertificateRevocationList:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(this_update)
        .add_extension(x509.CRLNumber(number), False)
    )
    if idp is not None:
        builder = builder.add_extension(idp, True)
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(NOW - 2 * DAY)
            .build()
        )
    if next_update is None:
        # cryptography's builder insists on nextUpdate; RFC 5280 5.1.2.5 allows none.
        with_one = builder.next_update(this_update + DAY).sign(signer or ca.key, hashes.SHA256())
        return without_next_update(with_one, signer or ca.key)
    return builder.next_update(next_update).sign(signer or ca.key, hashes.SHA256())


def _tlv(data: bytes, offset: int) -> tuple[int, int, int]:
    """(tag, where the value starts, where the TLV ends) of the DER TLV at ``offset``."""
    length = data[offset + 1]
    start = offset + 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    return data[offset], start, start + length


def without_next_update(
    crl: x509.CertificateRevocationList, key: PrivateKey
) -> x509.CertificateRevocationList:
    """``crl`` with its nextUpdate taken out of TBSCertList (RFC 5280 5.1), signed again."""
    tbs = crl.tbs_certlist_bytes
    _, body, end = _tlv(tbs, 0)
    fields: list[bytes] = []
    offset = body
    while offset < end:
        _, _, field_end = _tlv(tbs, offset)
        fields.append(tbs[offset:field_end])
        offset = field_end
    times = [i for i, item in enumerate(fields) if item[0] in (0x17, 0x18)]  # UTC/Generalized
    del fields[times[1]]  # thisUpdate stays, nextUpdate goes
    new_tbs = der_tlv(0x30, b"".join(fields))
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(new_tbs, padding.PKCS1v15(), hashes.SHA256())
    else:
        signature = key.sign(new_tbs, ec.ECDSA(hashes.SHA256()))
    outer = crl.public_bytes(serialization.Encoding.DER)
    _, outer_body, _ = _tlv(outer, 0)
    _, _, tbs_end = _tlv(outer, outer_body)
    _, _, algorithm_end = _tlv(outer, tbs_end)
    algorithm = outer[tbs_end:algorithm_end]
    return x509.load_der_x509_crl(
        der_tlv(0x30, new_tbs + algorithm + der_tlv(0x03, b"\x00" + signature))
    )


def der(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.DER)


def crl_dir_with(
    tmp_path: Path, pki: TestPki, **crls: x509.CertificateRevocationList | None
) -> Path:
    """A CRL directory holding the test PKI's CRLs (the root's ARL and the issuing CAs'
    CRLs), ``crls`` replacing some of them by CA name; a name given as None is left
    out."""
    directory = tmp_path / "crl"
    directory.mkdir()
    current: dict[str, x509.CertificateRevocationList | None] = dict(pki.crls)
    current.update(crls)
    for name, crl in current.items():
        if crl is not None:
            (directory / f"{name}.crl").write_bytes(der(crl))
    return directory


def problem(
    validator: CertificateValidator, cert: x509.Certificate, **kw: object
) -> CertificateProblem:
    with pytest.raises(CertificateProblem) as info:
        validator.validate(cert, **kw)  # type: ignore[arg-type]
    return info.value


# --------------------------------------------------------------------------- fail closed


def test_complete_crl_directory_lets_valid_cards_in(tmp_path: Path, pki: TestPki) -> None:
    validator = CertificateValidator(pki.ca_dir, crl_dir_with(tmp_path, pki))
    for name in ("moica", "hpc", "piv"):
        validator.validate(pki.user(name).certificate, at=NOW)
    assert problem(validator, pki.user("revoked").certificate, at=NOW).reason == "revoked"


def test_missing_crl_directory_refuses_login_naming_it(tmp_path: Path, pki: TestPki) -> None:
    missing = tmp_path / "no-such-crl-dir"
    validator = CertificateValidator(pki.ca_dir, missing)  # the kiosk still starts
    exc = problem(validator, pki.user("moica").certificate, at=NOW)
    assert exc.reason == "crl_missing"
    assert str(missing) in str(exc)
    # The revoked card is refused too, whatever the reason.
    assert problem(validator, pki.user("revoked").certificate, at=NOW).reason == "crl_missing"
    # Once the directory is there (crl refresh), logins work without a restart.
    shutil.copytree(crl_dir_with(tmp_path, pki), missing)
    validator.validate(pki.user("moica").certificate, at=NOW)


def test_missing_crl_of_the_root_refuses_login_naming_the_root(
    tmp_path: Path, pki: TestPki
) -> None:
    """The issuing CA's own certificate is checked against the root's ARL."""
    validator = CertificateValidator(pki.ca_dir, crl_dir_with(tmp_path, pki, root=None))
    exc = problem(validator, pki.user("moica").certificate, at=NOW)
    assert exc.reason == "crl_missing"
    assert pki.root.cn in str(exc)


def test_missing_crl_of_the_issuing_ca_names_it(tmp_path: Path, pki: TestPki) -> None:
    validator = CertificateValidator(pki.ca_dir, crl_dir_with(tmp_path, pki, **{"hca-ca": None}))
    exc = problem(validator, pki.user("hpc").certificate, at=NOW)
    assert exc.reason == "crl_missing"
    assert pki.hca_ca.cn in str(exc)
    validator.validate(pki.user("moica").certificate, at=NOW)


def test_forged_root_arl_counts_as_missing(tmp_path: Path, pki: TestPki) -> None:
    forged = build_crl(pki.root, signer=pki.cas["untrusted-root"].key)
    validator = CertificateValidator(pki.ca_dir, crl_dir_with(tmp_path, pki, root=forged))
    exc = problem(validator, pki.user("moica").certificate, at=NOW)
    assert exc.reason == "crl_missing" and pki.root.cn in str(exc)


def test_stale_root_arl_names_the_root_and_the_date(tmp_path: Path, pki: TestPki) -> None:
    next_update = NOW - 3 * DAY
    stale = build_crl(pki.root, this_update=NOW - 10 * DAY, next_update=next_update)
    validator = CertificateValidator(pki.ca_dir, crl_dir_with(tmp_path, pki, root=stale))
    exc = problem(validator, pki.user("hpc").certificate, at=NOW)
    assert exc.reason == "crl_stale"
    assert pki.root.cn in str(exc) and roc(next_update) in str(exc)
    assert exc.when == next_update


def test_stale_issuing_ca_crl_names_the_ca_and_the_date(tmp_path: Path, pki: TestPki) -> None:
    validator = CertificateValidator(pki.ca_dir, crl_dir_with(tmp_path, pki))
    next_update = pki.crls["moica-ca"].next_update_utc
    assert next_update is not None
    exc = problem(validator, pki.user("moica").certificate, at=next_update + HOUR)
    assert exc.reason == "crl_stale"
    assert pki.moica_ca.cn in str(exc) and roc(next_update) in str(exc)


def test_grace_accepts_within_the_hours_and_refuses_after(tmp_path: Path, pki: TestPki) -> None:
    next_update = NOW - 5 * HOUR
    stale = build_crl(pki.moica_ca, this_update=NOW - 8 * DAY, next_update=next_update)
    crl_dir = crl_dir_with(tmp_path, pki, **{"moica-ca": stale})
    cert = pki.user("moica").certificate
    assert problem(CertificateValidator(pki.ca_dir, crl_dir), cert, at=NOW).reason == "crl_stale"
    CertificateValidator(pki.ca_dir, crl_dir, crl_grace=dt.timedelta(hours=6)).validate(
        cert, at=NOW
    )
    exc = problem(
        CertificateValidator(pki.ca_dir, crl_dir, crl_grace=dt.timedelta(hours=4)), cert, at=NOW
    )
    assert exc.reason == "crl_stale" and roc(next_update) in str(exc)


def test_revoked_issuing_ca_refuses_its_cards(tmp_path: Path, pki: TestPki) -> None:
    arl = build_crl(pki.root, revoked=(pki.moica_ca.certificate.serial_number,))
    validator = CertificateValidator(pki.ca_dir, crl_dir_with(tmp_path, pki, root=arl))
    exc = problem(validator, pki.user("moica").certificate, at=NOW)
    assert exc.reason == "revoked"
    assert pki.moica_ca.cn in str(exc) and roc(NOW - 2 * DAY) in str(exc)
    validator.validate(pki.user("hpc").certificate, at=NOW)


def test_delta_crl_is_not_a_full_crl(tmp_path: Path, pki: TestPki) -> None:
    """A delta CRL lists only what changed: taken for the whole list, it would let a
    certificate revoked earlier in."""
    delta = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(pki.moica_ca.certificate.subject)
        .last_update(NOW - HOUR)
        .next_update(NOW + DAY)
        .add_extension(x509.CRLNumber(9), False)
        .add_extension(x509.DeltaCRLIndicator(1), True)
        .sign(pki.moica_ca.key, hashes.SHA256())
    )
    validator = CertificateValidator(pki.ca_dir, crl_dir_with(tmp_path, pki, **{"moica-ca": delta}))
    assert problem(validator, pki.user("revoked").certificate, at=NOW).reason == "crl_missing"


# --------------------------------------------------------------------------- CRL scope

#: A distribution point no test certificate names: a partition of some other cards.
OTHER_POINT = "http://repository.smis-test.invalid/crl/moica-ca-part2.crl"


def scope(
    url: str | None = None,
    *,
    user_only: bool = False,
    ca_only: bool = False,
    reasons: frozenset[x509.ReasonFlags] | None = None,
    indirect: bool = False,
    attributes: bool = False,
) -> x509.IssuingDistributionPoint:
    return x509.IssuingDistributionPoint(
        full_name=[x509.UniformResourceIdentifier(url)] if url else None,
        relative_name=None,
        only_contains_user_certs=user_only,
        only_contains_ca_certs=ca_only,
        only_some_reasons=reasons,
        indirect_crl=indirect,
        only_contains_attribute_certs=attributes,
    )


#: CRLs that never speak for a whole certificate: some reasons only, another issuer's
#: certificates, attribute certificates.
NEVER_COVERING = {
    "reasons": (scope(reasons=frozenset({x509.ReasonFlags.ca_compromise})), "廢止原因"),
    "indirect": (scope(indirect=True), "間接"),
    "attributes": (scope(attributes=True), "屬性憑證"),
}


def own_point(pki: TestPki, ca: str) -> str:
    """The distribution point the test PKI writes in the certificates ``ca`` issues."""
    return f"{pki.crl_base_url}{ca}.crl"


def with_extra(directory: Path, **crls: x509.CertificateRevocationList) -> Path:
    for name, crl in crls.items():
        (directory / f"{name}.crl").write_bytes(der(crl))
    return directory


def subdir(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    return path


def without_distribution_points(pki: TestPki, name: str) -> x509.Certificate:
    """User ``name``'s certificate as its CA would issue it with no CRL distribution
    point (same serial number)."""
    original = pki.user(name).certificate
    builder = (
        x509.CertificateBuilder()
        .subject_name(original.subject)
        .issuer_name(original.issuer)
        .public_key(original.public_key())  # type: ignore[arg-type]
        .serial_number(original.serial_number)
        .not_valid_before(original.not_valid_before_utc)
        .not_valid_after(original.not_valid_after_utc)
    )
    for extension in original.extensions:
        if not isinstance(extension.value, x509.CRLDistributionPoints):
            builder = builder.add_extension(extension.value, extension.critical)
    return builder.sign(pki.moica_ca.key, hashes.SHA256())


def test_newer_crl_of_another_partition_does_not_unrevoke(tmp_path: Path, pki: TestPki) -> None:
    """Signed by the CA and newer than its complete CRL, but it speaks only for the
    certificates naming another distribution point (RFC 5280 5.2.5): taken for the
    whole list it would let the revoked card in."""
    other = build_crl(pki.moica_ca, this_update=NOW - HOUR, number=99, idp=scope(OTHER_POINT))
    crl_dir = with_extra(crl_dir_with(tmp_path, pki), part2=other)
    validator = CertificateValidator(pki.ca_dir, crl_dir)
    assert problem(validator, pki.user("revoked").certificate, at=NOW).reason == "revoked"
    alone = crl_dir_with(subdir(tmp_path, "alone"), pki, **{"moica-ca": other})
    exc = problem(CertificateValidator(pki.ca_dir, alone), pki.user("moica").certificate, at=NOW)
    assert exc.reason == "crl_missing" and pki.moica_ca.cn in str(exc)


def test_crl_of_the_certificates_own_partition_counts(tmp_path: Path, pki: TestPki) -> None:
    moica = pki.user("moica").certificate
    own = scope(own_point(pki, "moica-ca"))
    revoking = build_crl(
        pki.moica_ca, this_update=NOW - HOUR, number=99, revoked=(moica.serial_number,), idp=own
    )
    crl_dir = with_extra(crl_dir_with(tmp_path, pki), part=revoking)
    validator = CertificateValidator(pki.ca_dir, crl_dir)
    assert problem(validator, moica, at=NOW).reason == "revoked"  # the newest that covers it
    validator.validate(pki.user("hpc").certificate, at=NOW)
    alone = crl_dir_with(
        subdir(tmp_path, "alone"), pki, **{"moica-ca": build_crl(pki.moica_ca, idp=own)}
    )
    CertificateValidator(pki.ca_dir, alone).validate(moica, at=NOW)


@pytest.mark.parametrize("kind", sorted(NEVER_COVERING))
def test_crl_of_some_reasons_another_issuer_or_attribute_certificates_never_counts(
    tmp_path: Path, pki: TestPki, kind: str
) -> None:
    idp, _ = NEVER_COVERING[kind]
    odd = build_crl(pki.moica_ca, this_update=NOW - HOUR, number=99, idp=idp)
    crl_dir = with_extra(crl_dir_with(tmp_path, pki), odd=odd)
    validator = CertificateValidator(pki.ca_dir, crl_dir)
    assert problem(validator, pki.user("revoked").certificate, at=NOW).reason == "revoked"
    alone = crl_dir_with(subdir(tmp_path, "alone"), pki, **{"moica-ca": odd})
    exc = problem(CertificateValidator(pki.ca_dir, alone), pki.user("moica").certificate, at=NOW)
    assert exc.reason == "crl_missing" and pki.moica_ca.cn in str(exc)


def test_user_only_and_ca_only_crls_cover_their_kind_only(tmp_path: Path, pki: TestPki) -> None:
    moica = pki.user("moica").certificate
    # The root's ARL revokes the MOICA-like CA; a newer root CRL of end-entity
    # certificates only says nothing about that CA's certificate.
    arl = build_crl(pki.root, revoked=(pki.moica_ca.certificate.serial_number,))
    users_only = build_crl(pki.root, this_update=NOW - HOUR, number=9, idp=scope(user_only=True))
    crl_dir = with_extra(crl_dir_with(tmp_path, pki, root=arl), **{"root-users": users_only})
    assert problem(CertificateValidator(pki.ca_dir, crl_dir), moica, at=NOW).reason == "revoked"
    alone = crl_dir_with(subdir(tmp_path, "users"), pki, root=users_only)
    exc = problem(CertificateValidator(pki.ca_dir, alone), moica, at=NOW)
    assert exc.reason == "crl_missing" and pki.root.cn in str(exc)
    # A CRL of CA certificates only covers the CA certificate, not the cards.
    cas_only = build_crl(pki.root, this_update=NOW - HOUR, number=9, idp=scope(ca_only=True))
    arl_of_cas = crl_dir_with(subdir(tmp_path, "cas"), pki, root=cas_only)
    CertificateValidator(pki.ca_dir, arl_of_cas).validate(moica, at=NOW)
    issuing_cas_only = build_crl(
        pki.moica_ca, this_update=NOW - HOUR, number=9, idp=scope(ca_only=True)
    )
    both = with_extra(crl_dir_with(subdir(tmp_path, "both"), pki), cas=issuing_cas_only)
    revoked = pki.user("revoked").certificate
    assert problem(CertificateValidator(pki.ca_dir, both), revoked, at=NOW).reason == "revoked"
    only = crl_dir_with(subdir(tmp_path, "only"), pki, **{"moica-ca": issuing_cas_only})
    exc = problem(CertificateValidator(pki.ca_dir, only), moica, at=NOW)
    assert exc.reason == "crl_missing" and pki.moica_ca.cn in str(exc)


def test_certificate_without_distribution_point_needs_a_crl_of_no_partition(
    tmp_path: Path, pki: TestPki
) -> None:
    revoked = without_distribution_points(pki, "revoked")
    partition = build_crl(
        pki.moica_ca, this_update=NOW - HOUR, number=99, idp=scope(own_point(pki, "moica-ca"))
    )
    crl_dir = with_extra(crl_dir_with(tmp_path, pki), part=partition)
    assert problem(CertificateValidator(pki.ca_dir, crl_dir), revoked, at=NOW).reason == "revoked"
    alone = crl_dir_with(subdir(tmp_path, "alone"), pki, **{"moica-ca": partition})
    exc = problem(CertificateValidator(pki.ca_dir, alone), revoked, at=NOW)
    assert exc.reason == "crl_missing" and pki.moica_ca.cn in str(exc)


def test_crl_dated_after_the_validation_time_is_ignored(tmp_path: Path, pki: TestPki) -> None:
    future = build_crl(
        pki.moica_ca, this_update=NOW + 300 * DAY, next_update=NOW + 400 * DAY, number=1000
    )
    crl_dir = with_extra(crl_dir_with(tmp_path, pki), future=future)
    validator = CertificateValidator(pki.ca_dir, crl_dir)
    assert problem(validator, pki.user("revoked").certificate, at=NOW).reason == "revoked"
    alone = crl_dir_with(subdir(tmp_path, "alone"), pki, **{"moica-ca": future})
    exc = problem(CertificateValidator(pki.ca_dir, alone), pki.user("moica").certificate, at=NOW)
    assert exc.reason == "crl_missing" and pki.moica_ca.cn in str(exc)


def test_crl_without_next_update_is_stale(tmp_path: Path, pki: TestPki) -> None:
    """Without nextUpdate a CRL would be current forever: refused like an expired one."""
    undated = build_crl(pki.moica_ca, next_update=None, number=5)
    assert undated.next_update_utc is None
    assert undated.is_signature_valid(pki.moica_ca.key.public_key())
    validator = CertificateValidator(
        pki.ca_dir, crl_dir_with(tmp_path, pki, **{"moica-ca": undated})
    )
    exc = problem(validator, pki.user("moica").certificate, at=NOW)
    assert exc.reason == "crl_stale"
    assert pki.moica_ca.cn in str(exc) and "nextUpdate" in str(exc)


def test_far_next_update_and_a_large_grace_do_not_overflow(tmp_path: Path, pki: TestPki) -> None:
    far = build_crl(
        pki.moica_ca,
        next_update=dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC),
        revoked=(pki.user("revoked").certificate.serial_number,),
    )
    crl_dir = crl_dir_with(tmp_path, pki, **{"moica-ca": far})
    for hours in (168, 10**8):
        validator = CertificateValidator(pki.ca_dir, crl_dir, crl_grace=dt.timedelta(hours=hours))
        validator.validate(pki.user("moica").certificate, at=NOW)
        assert problem(validator, pki.user("revoked").certificate, at=NOW).reason == "revoked"
    cas = [pki.root.certificate, pki.moica_ca.certificate]
    assert check_crl(far, cas, now=NOW, grace=dt.timedelta(hours=168)) == cas[1]


# --------------------------------------------------------------------------- refresh checks


def test_distribution_points_are_http_full_names_only(pki: TestPki) -> None:
    dp = x509.CRLDistributionPoints(
        [
            x509.DistributionPoint(
                [
                    x509.UniformResourceIdentifier("http://crl.example.tw/a.crl"),
                    x509.UniformResourceIdentifier("ldap://ldap.example.tw/cn=x"),
                    x509.UniformResourceIdentifier("file:///etc/passwd"),
                ],
                None,
                None,
                None,
            ),
            x509.DistributionPoint(
                [x509.UniformResourceIdentifier("HTTP://crl.example.tw/b.crl")], None, None, None
            ),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(pki.moica_ca.certificate.subject)
        .issuer_name(pki.root.certificate.subject)
        .public_key(pki.moica_ca.key.public_key())
        .serial_number(77)
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + DAY)
        .add_extension(dp, False)
        .sign(pki.root.key, hashes.SHA256())
    )
    assert distribution_point_urls(cert) == [
        "http://crl.example.tw/a.crl",
        "HTTP://crl.example.tw/b.crl",
    ]
    assert distribution_point_urls(pki.cas["untrusted-root"].certificate) == []


def test_check_crl_finds_the_issuer_by_name_and_key(pki: TestPki) -> None:
    cas = [pki.root.certificate, pki.moica_ca.certificate, pki.hca_ca.certificate]
    good = build_crl(pki.moica_ca)
    assert check_crl(good, cas, now=NOW) == pki.moica_ca.certificate
    # Same issuer name, another key (the untrusted CA impersonates MOICA by name).
    forged = build_crl(pki.moica_ca, signer=pki.cas["untrusted-ca"].key)
    with pytest.raises(CrlRefused) as info:
        check_crl(forged, cas, now=NOW)
    assert info.value.key == "card.crl.forged" and pki.moica_ca.cn in str(info.value)
    stale = build_crl(pki.moica_ca, next_update=NOW - HOUR)
    with pytest.raises(CrlRefused) as info:
        check_crl(stale, cas, now=NOW)
    assert info.value.key == "card.crl.stale" and roc(NOW - HOUR) in str(info.value)
    assert check_crl(stale, cas, now=NOW, grace=2 * HOUR) == pki.moica_ca.certificate
    stranger = build_crl(pki.cas["untrusted-root"])
    with pytest.raises(CrlRefused) as info:
        check_crl(stranger, cas, now=NOW)
    assert info.value.key == "card.crl.unknown_issuer"


def test_load_crl_bytes_reads_der_and_pem_and_refuses_junk(pki: TestPki) -> None:
    crl = pki.crls["moica-ca"]
    assert load_crl_bytes(der(crl)) == crl
    assert load_crl_bytes(crl.public_bytes(serialization.Encoding.PEM)) == crl
    with pytest.raises(CrlRefused) as info:
        load_crl_bytes(b"<html>404</html>")
    assert info.value.key == "card.crl.unreadable"


def test_install_replaces_the_file_holding_that_issuer(tmp_path: Path, pki: TestPki) -> None:
    crl_dir = crl_dir_with(tmp_path, pki)
    newer = build_crl(pki.moica_ca, this_update=NOW, number=5)
    path, changed = install_crl(newer, pki.moica_ca.certificate, crl_dir, pki.ca_dir)
    assert (path, changed) == (crl_dir / "moica-ca.crl", True)
    assert path.read_bytes() == der(newer)
    assert not [p for p in crl_dir.iterdir() if p.name.startswith(".")]  # no temp file left
    # The same CRL again changes nothing; an older one is refused and the file kept.
    assert install_crl(newer, pki.moica_ca.certificate, crl_dir, pki.ca_dir) == (path, False)
    with pytest.raises(CrlRefused) as info:
        install_crl(pki.crls["moica-ca"], pki.moica_ca.certificate, crl_dir, pki.ca_dir)
    assert info.value.key == "card.crl.older"
    assert path.read_bytes() == der(newer)


def test_install_names_a_new_file_after_the_ca_certificate(tmp_path: Path, pki: TestPki) -> None:
    crl_dir = tmp_path / "crl"
    path, changed = install_crl(build_crl(pki.root), pki.root.certificate, crl_dir, pki.ca_dir)
    assert changed and path == crl_dir / "root.crl"
    assert x509.load_der_x509_crl(path.read_bytes()).issuer == pki.root.certificate.subject


def test_a_partition_gets_a_file_of_its_own(tmp_path: Path, pki: TestPki) -> None:
    """A partition never replaces the complete CRL (nor another partition); "older"
    compares CRLs of the same scope only."""
    crl_dir = crl_dir_with(tmp_path, pki)
    issuer = pki.moica_ca.certificate
    complete = build_crl(pki.moica_ca, this_update=NOW - HOUR, number=50, revoked=(
        pki.user("revoked").certificate.serial_number,
    ))  # fmt: skip
    assert install_crl(complete, issuer, crl_dir, pki.ca_dir) == (crl_dir / "moica-ca.crl", True)
    part2 = build_crl(pki.moica_ca, this_update=NOW - HOUR, number=2, idp=scope(OTHER_POINT))
    path2, changed = install_crl(part2, issuer, crl_dir, pki.ca_dir)
    assert changed and path2.name.startswith("moica-ca-") and path2.suffix == ".crl"
    assert (crl_dir / "moica-ca.crl").read_bytes() == der(complete)
    part3 = build_crl(pki.moica_ca, number=7, idp=scope(OTHER_POINT.replace("2", "3")))
    path3, changed = install_crl(part3, issuer, crl_dir, pki.ca_dir)
    assert changed and path3 not in (path2, crl_dir / "moica-ca.crl")
    assert path2.read_bytes() == der(part2)
    with pytest.raises(CrlRefused) as info:
        install_crl(
            build_crl(pki.moica_ca, number=1, idp=scope(OTHER_POINT)), issuer, crl_dir, pki.ca_dir
        )
    assert info.value.key == "card.crl.older" and path2.read_bytes() == der(part2)
    newer_complete = build_crl(pki.moica_ca, this_update=NOW, number=51, revoked=(
        pki.user("revoked").certificate.serial_number,
    ))  # fmt: skip
    assert install_crl(newer_complete, issuer, crl_dir, pki.ca_dir)[0] == crl_dir / "moica-ca.crl"
    assert (path2.read_bytes(), path3.read_bytes()) == (der(part2), der(part3))
    validator = CertificateValidator(pki.ca_dir, crl_dir)
    assert problem(validator, pki.user("revoked").certificate, at=NOW).reason == "revoked"


def test_refresh_of_a_partition_keeps_the_complete_crl(tmp_path: Path, pki: TestPki) -> None:
    crl_dir = crl_dir_with(tmp_path, pki)
    part2 = build_crl(pki.moica_ca, this_update=NOW - HOUR, number=99, idp=scope(OTHER_POINT))
    outcomes = refresh(pki.ca_dir, crl_dir, [OTHER_POINT], now=NOW, fetch=lambda _: der(part2))
    assert [o.status for o in outcomes] == ["updated"]
    assert outcomes[0].path is not None and outcomes[0].path.name != "moica-ca.crl"
    assert (crl_dir / "moica-ca.crl").read_bytes() == der(pki.crls["moica-ca"])
    validator = CertificateValidator(pki.ca_dir, crl_dir)
    assert problem(validator, pki.user("revoked").certificate, at=NOW).reason == "revoked"


@pytest.mark.parametrize("kind", sorted(NEVER_COVERING))
def test_install_refuses_crls_of_some_reasons_another_issuer_or_attributes(
    tmp_path: Path, pki: TestPki, kind: str
) -> None:
    idp, words = NEVER_COVERING[kind]
    odd = build_crl(pki.moica_ca, this_update=NOW - HOUR, number=99, idp=idp)
    cas = [pki.root.certificate, pki.moica_ca.certificate]
    with pytest.raises(CrlRefused) as info:
        check_crl(odd, cas, now=NOW)
    assert info.value.key == "card.crl.unusable"
    assert pki.moica_ca.cn in str(info.value) and words in str(info.value)
    crl_dir = crl_dir_with(tmp_path, pki)
    before = {p.name: p.read_bytes() for p in crl_dir.iterdir()}
    outcomes = refresh(pki.ca_dir, crl_dir, ["http://x/odd.crl"], now=NOW, fetch=lambda _: der(odd))
    assert [o.status for o in outcomes] == ["failed"] and words in str(outcomes[0].error)
    assert {p.name: p.read_bytes() for p in crl_dir.iterdir()} == before


def test_install_refuses_a_crl_dated_in_the_future(pki: TestPki) -> None:
    """The validator would ignore it: in place of the current one it would refuse logins."""
    future = build_crl(pki.moica_ca, this_update=NOW + HOUR, next_update=NOW + DAY, number=9)
    with pytest.raises(CrlRefused) as info:
        check_crl(future, [pki.moica_ca.certificate], now=NOW)
    assert info.value.key == "card.crl.unusable" and "thisUpdate" in str(info.value)


def crl_by_name(pki: TestPki) -> Callable[[str], bytes]:
    return lambda url: der(pki.crls[url.rsplit("/", 1)[1].removesuffix(".crl")])


URLS = ["http://x/root.crl", "http://x/moica-ca.crl", "http://x/hca-ca.crl"]


def test_refresh_reports_a_directory_it_cannot_create(tmp_path: Path, pki: TestPki) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    crl_dir = blocker / "crl"
    outcomes = refresh(pki.ca_dir, crl_dir, URLS, now=NOW, fetch=crl_by_name(pki))
    assert [o.status for o in outcomes] == ["failed"] * 3
    for outcome in outcomes:
        assert outcome.error is not None and outcome.error.key == "card.crl.write"
        assert str(crl_dir) in str(outcome.error) and "Not a directory" in str(outcome.error)


def test_refresh_reports_a_full_disk_and_goes_on(
    tmp_path: Path, pki: TestPki, monkeypatch: pytest.MonkeyPatch
) -> None:
    import card.revocation

    real_mkstemp = tempfile.mkstemp

    def full_for_moica(*args: Any, **kwargs: Any) -> tuple[int, str]:
        if "moica" in str(kwargs.get("prefix", "")):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(card.revocation.tempfile, "mkstemp", full_for_moica)
    crl_dir = tmp_path / "crl"
    outcomes = refresh(pki.ca_dir, crl_dir, URLS, now=NOW, fetch=crl_by_name(pki))
    assert [o.status for o in outcomes] == ["updated", "failed", "updated"]
    error = str(outcomes[1].error)
    assert str(crl_dir / "moica-ca.crl") in error and os.strerror(errno.ENOSPC) in error
    assert sorted(p.name for p in crl_dir.iterdir()) == ["hca-ca.crl", "root.crl"]


# --------------------------------------------------------------------------- demo


def test_demo_crls_are_reissued_when_the_demo_pki_is_older_than_them(tmp_path: Path) -> None:
    from smis_tui.services.card_runtime import renew_demo_crls

    demo = make_test_pki(tmp_path / "demo-pki", now=NOW)
    later = NOW + 40 * DAY  # `make run` weeks after `smis-tui demo init`
    validator = CertificateValidator(demo.ca_dir, demo.crl_dir)
    assert problem(validator, demo.user("moica").certificate, at=later).reason == "crl_stale"
    assert renew_demo_crls(demo.directory, now=NOW) == []  # fresh: left alone

    (demo.crl_dir / "root.crl").unlink()  # a demo PKI from before the root's ARL
    written = renew_demo_crls(demo.directory, now=later)
    assert sorted(p.name for p in written) == ["hca-ca.crl", "moica-ca.crl", "root.crl"]
    validator.validate(demo.user("moica").certificate, at=later)
    assert problem(validator, demo.user("revoked").certificate, at=later).reason == "revoked"
    renewed = x509.load_der_x509_crl((demo.crl_dir / "moica-ca.crl").read_bytes())
    old_number = demo.crls["moica-ca"].extensions.get_extension_for_class(x509.CRLNumber)
    new_number = renewed.extensions.get_extension_for_class(x509.CRLNumber)
    assert new_number.value.crl_number == old_number.value.crl_number + 1


# --------------------------------------------------------------------------- settings


def test_crl_settings(tmp_path: Path) -> None:
    from smis_tui.core.config import ConfigError, load_settings

    base = {"SMIS_DATA_DIR": str(tmp_path), "SMIS_CA_DIR": str(tmp_path / "trust" / "ca")}
    settings = load_settings(base)
    assert settings.resolved_crl_dir == tmp_path / "trust" / "crl"
    assert (settings.crl_grace_hours, settings.crl_urls) == (0, ())
    (tmp_path / "config.toml").write_text(
        'crl_dir = "/srv/crl"\ncrl_grace_hours = 12\n'
        'crl_urls = ["http://moica.nat.gov.tw/repository/MOICA/CRL/CRL_0001.crl"]\n',
        encoding="utf-8",
    )
    settings = load_settings(base)
    assert settings.resolved_crl_dir == Path("/srv/crl")
    assert settings.crl_grace_hours == 12
    assert settings.crl_urls == ("http://moica.nat.gov.tw/repository/MOICA/CRL/CRL_0001.crl",)
    env = {**base, "SMIS_CRL_DIR": str(tmp_path / "c"), "SMIS_CRL_GRACE_HOURS": "0"}
    assert load_settings(env).resolved_crl_dir == tmp_path / "c"
    assert load_settings(env).crl_grace_hours == 0
    for bad in ("-1", "a day", "169", str(10**8), str(10**12)):
        with pytest.raises(ConfigError, match="crl_grace_hours") as info:
            load_settings({**base, "SMIS_CRL_GRACE_HOURS": bad})
        if bad.isdigit():
            assert "168" in str(info.value)
    assert load_settings({**base, "SMIS_CRL_GRACE_HOURS": "168"}).crl_grace_hours == 168
    (tmp_path / "config.toml").write_text('crl_urls = "http://x/a.crl"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="crl_urls"):
        load_settings(base)


@pytest.mark.parametrize(
    ("hours", "demo", "shown"), [(6, False, True), (0, False, False), (6, True, False)]
)
def test_run_names_the_grace(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    hours: int,
    demo: bool,
    shown: bool,
) -> None:
    import smis_tui.app
    import smis_tui.cli as cli
    from smis_tui.core.config import Settings

    class NoApp:
        return_code = 0

        def __init__(self, **kwargs: object) -> None:
            pass

        def run(self) -> None:
            pass

    monkeypatch.setattr(smis_tui.app, "SmisApp", NoApp)
    monkeypatch.setattr(cli, "hold_collector", lambda: None)
    monkeypatch.setattr(cli, "prepare_textual", lambda: None)
    settings = Settings(data_dir=tmp_path, crl_grace_hours=hours)
    args = cli.build_parser().parse_args(["run", *(["--demo"] if demo else [])])
    assert args.handler(settings, args) == 0
    err = capsys.readouterr().err
    assert ("注意：憑證廢止清冊逾期寬限 6 小時" in err) is shown


def test_english_names_the_ca_and_the_directory(tmp_path: Path) -> None:
    from smis_tui.text import render_error

    pki = make_test_pki(tmp_path / "pki")
    (pki.crl_dir / "moica-ca.crl").unlink()
    validator = CertificateValidator(pki.ca_dir, pki.crl_dir)
    with pytest.raises(CertificateProblem) as missing:
        validator.validate(pki.user("moica").certificate)
    english = render_error(missing.value, "en")
    assert f'of "{pki.moica_ca.cn}" is missing' in english
    assert pki.moica_ca.cn in render_error(missing.value, "zh_TW")
    gone = CertificateValidator(pki.ca_dir, tmp_path / "no-crl")
    with pytest.raises(CertificateProblem) as no_dir:
        gone.validate(pki.user("moica").certificate)
    assert str(tmp_path / "no-crl") in render_error(no_dir.value, "en")
