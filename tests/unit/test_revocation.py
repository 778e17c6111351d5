"""Revocation fails closed (card/validation.py) and CRLs are checked before they are
installed (card/revocation.py)."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from card.errors import CertificateProblem
from card.revocation import (
    CrlRefused,
    check_crl,
    distribution_point_urls,
    install_crl,
    load_crl_bytes,
)
from card.sim.testpki import PkiCa, PrivateKey, TestPki, make_test_pki
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
    next_update: dt.datetime = NOW + 7 * DAY,
    number: int = 1,
    signer: PrivateKey | None = None,
) -> x509.CertificateRevocationList:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(number), False)
    )
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(NOW - 2 * DAY)
            .build()
        )
    return builder.sign(signer or ca.key, hashes.SHA256())


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
    for bad in ("-1", "a day"):
        with pytest.raises(ConfigError, match="crl_grace_hours"):
            load_settings({**base, "SMIS_CRL_GRACE_HOURS": bad})
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
