"""`smis-tui card inspect`: an operator checks a certificate file or the card in a
reader before go-live, and sees what the kiosk would conclude, by the kiosk's rules.
The real command in a subprocess; the reader case through pcscd and vpcd."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from card.sim.testpki import TestPki, make_test_pki
from card.sim.virtual import VirtualPivCard
from card.sim.vpcd import VpcdCard
from smis_tui.core.clock import taiwan_date
from smis_tui.core.rocdate import to_roc
from smis_tui.services.card_inspect import EXIT_CODES
from tests.integration.test_pcsc import READER_0, pcscd_ctl, plug, unplug

SMIS = [sys.executable, "-m", "smis_tui.cli"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


def inspect(pki: TestPki, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SMIS_CRL")}
    full_env.update({"SMIS_DATA_DIR": str(pki.directory / "data"), "SMIS_CA_DIR": str(pki.ca_dir)})
    full_env.update(env)
    return subprocess.run(
        [*SMIS, "card", "inspect", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        check=False,
    )


def field(output: str, label: str) -> str:
    for line in output.splitlines():
        if line.strip().startswith(f"{label}："):
            return line.split("：", 1)[1]
    raise AssertionError(f"no {label} in {output}")


def test_a_citizen_certificate_would_log_in(pki: TestPki) -> None:
    user = pki.user("moica")
    result = inspect(pki, str(user.cert_path))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert field(out, "結論").startswith("可登入")
    assert field(out, "卡別") == "自然人憑證（MOICA）"
    assert field(out, "持有人類別") == "2.16.886.1.100.3.1.1"
    assert field(out, "持卡人") == user.cn
    # Only the masked hint: the last 4 digits never appear whole, the ID never.
    assert field(out, "身分證號線索") == "****（憑證只載末 4 碼，此處遮蔽）"
    assert user.person_id not in out
    assert field(out, "簽發單位") == pki.moica_ca.cn
    cert = user.certificate
    start = to_roc(taiwan_date(cert.not_valid_before_utc))
    end = to_roc(taiwan_date(cert.not_valid_after_utc))
    assert field(out, "有效期間") == f"民國 {start} 至 民國 {end}（台灣時間）"
    assert field(out, "信任鏈") == f"{pki.moica_ca.cn} → {pki.root.cn}"
    assert field(out, "CRL 發布點") == f"{pki.crl_base_url}moica-ca.crl"


def test_der_and_a_health_professional_card(pki: TestPki) -> None:
    user = pki.user("hpc")
    der = pki.directory / "hpc.der"
    der.write_bytes(user.certificate.public_bytes(serialization.Encoding.DER))
    result = inspect(pki, str(der))
    assert result.returncode == 0, result.stdout
    assert field(result.stdout, "卡別") == "醫事人員卡（HPC）"
    masked = field(result.stdout, "身分證號線索")
    assert masked == f"{user.person_id[:2]}******{user.person_id[-2:]}（完整身分證號，此處遮蔽）"


@pytest.mark.parametrize(
    ("user", "verdict"),
    [
        ("expired", "expired"),
        ("not_yet_valid", "not_yet_valid"),
        ("revoked", "revoked"),
        ("untrusted", "untrusted"),
        ("key_usage", "key_usage"),
        ("org", "not_personal"),
    ],
)
def test_each_refusal_has_its_own_exit_code(pki: TestPki, user: str, verdict: str) -> None:
    result = inspect(pki, str(pki.user(user).cert_path))
    assert result.returncode == EXIT_CODES[verdict] != 0, result.stdout
    assert field(result.stdout, "結論").startswith("不可登入：")
    assert f"（{verdict}，結束代碼 {EXIT_CODES[verdict]}）" in result.stdout


def test_an_organisation_card_names_its_subject_type(pki: TestPki) -> None:
    out = inspect(pki, str(pki.user("org").cert_path)).stdout
    assert field(out, "持有人類別") == "2.16.886.1.100.3.2.21"
    assert "不是個人憑證" in field(out, "結論")


def test_a_missing_crl_directory_is_no_pass(pki: TestPki, tmp_path: Path) -> None:
    result = inspect(
        pki, str(pki.user("moica").cert_path), SMIS_CRL_DIR=str(tmp_path / "no-such-dir")
    )
    assert result.returncode != 0
    assert result.returncode in (EXIT_CODES["crl_missing"], EXIT_CODES["trust_store"])


def test_a_stale_crl_is_named(pki: TestPki, tmp_path: Path) -> None:
    old = make_test_pki(tmp_path / "old", now=dt.datetime.now(dt.UTC) - dt.timedelta(days=30))
    result = inspect(old, str(old.user("moica").cert_path))
    assert result.returncode == EXIT_CODES["crl_stale"], result.stdout


def test_an_expiring_card_logs_in_with_a_warning(pki: TestPki) -> None:
    result = inspect(pki, str(pki.user("expiring").cert_path))
    assert result.returncode == 0
    assert "天內到期" in result.stdout


def test_garbage_and_a_missing_file(pki: TestPki, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    result = inspect(pki, str(garbage))
    assert result.returncode == EXIT_CODES["unparseable"]
    assert "憑證無法解析" in result.stdout and "Traceback" not in result.stderr
    missing = inspect(pki, str(tmp_path / "nothing.pem"))
    assert missing.returncode == EXIT_CODES["unparseable"] and "無法讀取憑證檔" in missing.stderr


def test_no_trust_settings_is_its_own_verdict(pki: TestPki, tmp_path: Path) -> None:
    result = inspect(pki, str(pki.user("moica").cert_path), SMIS_CA_DIR=str(tmp_path / "none"))
    assert result.returncode == EXIT_CODES["trust_store"], result.stdout
    assert field(result.stdout, "持卡人") == pki.user("moica").cn  # still said


def test_extreme_crl_dates_and_grace_give_a_verdict_not_a_traceback(
    pki: TestPki, tmp_path: Path
) -> None:
    """A CRL valid "for ever" (nextUpdate 99991231235959Z) with the largest grace, and
    graces beyond any date: a verdict or a configuration error, never a traceback."""
    crl_dir = tmp_path / "crl"
    shutil.copytree(pki.crl_dir, crl_dir)
    now = dt.datetime.now(dt.UTC)
    for_ever = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(pki.moica_ca.certificate.subject)
        .last_update(now - dt.timedelta(hours=1))
        .next_update(dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC))
        .add_extension(x509.CRLNumber(99), False)
        .add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(pki.user("revoked").certificate.serial_number)
            .revocation_date(now - dt.timedelta(days=1))
            .build()
        )
        .sign(pki.moica_ca.key, hashes.SHA256())
    )
    (crl_dir / "moica-ca.crl").write_bytes(for_ever.public_bytes(serialization.Encoding.DER))
    env = {"SMIS_CRL_DIR": str(crl_dir), "SMIS_CRL_GRACE_HOURS": "168"}
    good = inspect(pki, str(pki.user("moica").cert_path), **env)
    assert good.returncode == 0, good.stdout + good.stderr
    revoked = inspect(pki, str(pki.user("revoked").cert_path), **env)
    assert revoked.returncode == EXIT_CODES["revoked"], revoked.stdout + revoked.stderr
    for hours in ("100000000", "1000000000000"):
        result = inspect(pki, str(pki.user("moica").cert_path), SMIS_CRL_GRACE_HOURS=hours)
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
        assert "crl_grace_hours" in result.stderr and "168" in result.stderr


@pytest.mark.parametrize(
    "error", [OverflowError("date value out of range"), PermissionError(13, "x")]
)
def test_an_unforeseen_error_of_validation_is_no_pass(pki: TestPki, error: Exception) -> None:
    from card.validation import CertificateValidator
    from smis_tui.services.card_inspect import inspect_certificate

    class Failing(CertificateValidator):
        def validate(self, *args: object, **kwargs: object) -> None:
            raise error

    validator = Failing(pki.ca_dir, pki.crl_dir)
    inspection = inspect_certificate(pki.user("moica").cert_path.read_bytes(), validator)
    assert inspection.verdict == "trust_store" and inspection.exit_code != 0
    assert type(error).__name__ in inspection.message
    assert inspection.facts is not None and inspection.facts.holder == pki.user("moica").cn


def test_the_card_in_a_reader(pki: TestPki) -> None:
    pcscd_ctl()
    user = pki.user("piv")
    vcard = VpcdCard(VirtualPivCard(user.cert_der, user.key, "135790"))
    plug(vcard, READER_0)
    try:
        result = inspect(pki, "--reader", READER_0)
    finally:
        unplug(vcard, READER_0)
    assert result.returncode == 0, result.stdout + result.stderr
    assert field(result.stdout, "來源") == f"讀卡機 {READER_0}"
    assert field(result.stdout, "卡別") == "PIV 卡"
    assert field(result.stdout, "持卡人") == user.cn
    empty = inspect(pki, "--reader", READER_0)
    assert empty.returncode == EXIT_CODES["card_unreadable"]
    assert "請插入卡片" in empty.stdout
