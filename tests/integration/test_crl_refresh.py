"""`smis-tui crl refresh` as an operator runs it: the real command, CRLs served over
HTTP on 127.0.0.1, the test PKI's CA directory, and a kiosk CRL directory."""

from __future__ import annotations

import contextlib
import datetime as dt
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from card.errors import CertificateProblem
from card.sim.testpki import PkiCa, PrivateKey, TestPki, make_test_pki
from card.validation import CertificateValidator
from smis_tui.cli.crl import EXIT_CA_WITHOUT_CRL, EXIT_DOWNLOAD_FAILED
from smis_tui.core.clock import taiwan_date
from smis_tui.core.rocdate import to_roc

SMIS_TUI = Path(sys.executable).parent / "smis-tui"
DAY = dt.timedelta(days=1)


class _Repository(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` (path → bytes); anything else is a 404."""

    server: _RepositoryServer

    def do_GET(self) -> None:
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/pkix-crl")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _RepositoryServer(http.server.ThreadingHTTPServer):
    files: dict[str, bytes]


@dataclass
class Setup:
    pki: TestPki
    files: dict[str, bytes]
    base_url: str
    data_dir: Path
    crl_dir: Path

    def serve(self, name: str, crl: x509.CertificateRevocationList) -> None:
        self.files[f"/crl/{name}"] = crl.public_bytes(serialization.Encoding.DER)

    def refresh(self) -> subprocess.CompletedProcess[str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k != "DATABASE_URL" and not k.lower().endswith("_proxy")
        }
        env.update(
            SMIS_DATA_DIR=str(self.data_dir),
            SMIS_CA_DIR=str(self.pki.ca_dir),
            SMIS_CRL_DIR=str(self.crl_dir),
        )
        env.pop("SMIS_CONFIG", None)
        return subprocess.run(
            [str(SMIS_TUI), "crl", "refresh"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    server = _RepositoryServer(("127.0.0.1", 0), _Repository)
    server.files = {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{server.server_address[1]}/crl/"
    try:
        pki = make_test_pki(tmp_path / "pki", crl_base_url=base_url)
        for name, path in pki.crl_paths.items():
            server.files[f"/crl/{name}.crl"] = path.read_bytes()
        data_dir = tmp_path / "data"
        data_dir.mkdir()
        # The root's ARL is named by the issuing CAs' certificates; the issuing CAs'
        # own CRLs only by the card certificates, so the operator lists them.
        (data_dir / "config.toml").write_text(
            f'crl_urls = ["{base_url}moica-ca.crl", "{base_url}hca-ca.crl"]\n',
            encoding="utf-8",
        )
        yield Setup(pki, server.files, base_url, data_dir, tmp_path / "kiosk" / "crl")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def build_crl(
    ca: PkiCa,
    signer: PrivateKey,
    *,
    number: int,
    this_update: dt.datetime,
    next_update: dt.datetime,
) -> x509.CertificateRevocationList:
    return (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(number), False)
        .sign(signer, hashes.SHA256())
    )


def roc(when: dt.datetime) -> str:
    return to_roc(taiwan_date(when))


def test_refresh_installs_good_crls_and_logins_work(setup: Setup) -> None:
    pki = setup.pki
    result = setup.refresh()
    assert result.returncode == 0, result.stdout + result.stderr
    installed = {p.name: p.read_bytes() for p in setup.crl_dir.iterdir()}
    assert installed == {
        "root.crl": pki.crl_paths["root"].read_bytes(),
        "moica-ca.crl": pki.crl_paths["moica-ca"].read_bytes(),
        "hca-ca.crl": pki.crl_paths["hca-ca"].read_bytes(),
    }
    lines = result.stdout.splitlines()
    for ca in (pki.root, pki.moica_ca, pki.hca_ca):
        assert sum(ca.cn in line and line.startswith("已更新") for line in lines) == 1
    # The root's ARL came from the distribution point of the issuing CAs' certificates.
    assert f"{setup.base_url}root.crl" in result.stdout

    validator = CertificateValidator(pki.ca_dir, setup.crl_dir)
    validator.validate(pki.user("moica").certificate, intermediates=pki.intermediates())
    with pytest.raises(CertificateProblem) as info:
        validator.validate(pki.user("revoked").certificate)
    assert info.value.reason == "revoked"

    again = setup.refresh()
    assert again.returncode == 0, again.stdout + again.stderr
    assert sum(line.startswith("未變更") for line in again.stdout.splitlines()) == 3


def test_forged_crl_is_refused_and_the_good_file_kept(setup: Setup) -> None:
    pki = setup.pki
    assert setup.refresh().returncode == 0
    good = (setup.crl_dir / "moica-ca.crl").read_bytes()
    now = dt.datetime.now(dt.UTC)
    # Newer, fresh, the MOICA-like CA's name – but signed by the impostor's key. It
    # would "unrevoke" the revoked card if it were installed.
    forged = build_crl(
        pki.moica_ca,
        pki.cas["untrusted-ca"].key,
        number=99,
        this_update=now,
        next_update=now + 7 * DAY,
    )
    setup.serve("moica-ca.crl", forged)
    result = setup.refresh()
    assert result.returncode == EXIT_DOWNLOAD_FAILED
    assert pki.moica_ca.cn in result.stderr and "憑證廢止清冊更新失敗" in result.stderr
    failed = [line for line in result.stdout.splitlines() if line.startswith("失敗")]
    assert len(failed) == 1 and pki.moica_ca.cn in failed[0] and "偽造" in failed[0]
    assert (setup.crl_dir / "moica-ca.crl").read_bytes() == good
    assert sorted(p.name for p in setup.crl_dir.iterdir()) == [
        "hca-ca.crl",
        "moica-ca.crl",
        "root.crl",
    ]
    with pytest.raises(CertificateProblem) as info:
        CertificateValidator(pki.ca_dir, setup.crl_dir).validate(pki.user("revoked").certificate)
    assert info.value.reason == "revoked"


def test_stale_crl_is_refused(setup: Setup) -> None:
    pki = setup.pki
    assert setup.refresh().returncode == 0
    good = (setup.crl_dir / "hca-ca.crl").read_bytes()
    now = dt.datetime.now(dt.UTC)
    next_update = now - 2 * DAY
    stale = build_crl(
        pki.hca_ca, pki.hca_ca.key, number=99, this_update=now - 9 * DAY, next_update=next_update
    )
    setup.serve("hca-ca.crl", stale)
    result = setup.refresh()
    assert result.returncode == EXIT_DOWNLOAD_FAILED
    failed = [line for line in result.stdout.splitlines() if line.startswith("失敗")]
    assert len(failed) == 1 and pki.hca_ca.cn in failed[0]
    assert "過期" in failed[0] and roc(next_update) in failed[0]
    assert (setup.crl_dir / "hca-ca.crl").read_bytes() == good


def test_older_crl_is_refused(setup: Setup) -> None:
    pki = setup.pki
    assert setup.refresh().returncode == 0
    now = dt.datetime.now(dt.UTC)
    newer = build_crl(
        pki.root, pki.root.key, number=50, this_update=now - dt.timedelta(hours=1),
        next_update=now + 7 * DAY,
    )  # fmt: skip
    setup.serve("root.crl", newer)
    assert setup.refresh().returncode == 0
    assert (setup.crl_dir / "root.crl").read_bytes() == newer.public_bytes(
        serialization.Encoding.DER
    )
    setup.files["/crl/root.crl"] = pki.crl_paths["root"].read_bytes()  # a lagging mirror
    result = setup.refresh()
    assert result.returncode == EXIT_DOWNLOAD_FAILED
    assert pki.root.cn in result.stderr and "比現有的舊" in result.stdout
    assert (setup.crl_dir / "root.crl").read_bytes() == newer.public_bytes(
        serialization.Encoding.DER
    )


def test_unreachable_and_missing_urls_are_reported(setup: Setup) -> None:
    unreachable = f"http://127.0.0.1:{_closed_port()}/crl/gone.crl"
    missing = f"{setup.base_url}nothing-here.crl"
    (setup.data_dir / "config.toml").write_text(
        f'crl_urls = ["{setup.base_url}moica-ca.crl", "{setup.base_url}hca-ca.crl", '
        f'"{unreachable}", "{missing}"]\n',
        encoding="utf-8",
    )
    result = setup.refresh()
    assert result.returncode == EXIT_DOWNLOAD_FAILED
    failed = [line for line in result.stdout.splitlines() if line.startswith("失敗")]
    assert len(failed) == 2
    assert any(unreachable in line and "無法連線" in line for line in failed)
    assert any(missing in line and "HTTP 404" in line for line in failed)
    assert unreachable in result.stderr and missing in result.stderr
    # The good ones were installed all the same.
    assert sorted(p.name for p in setup.crl_dir.iterdir()) == [
        "hca-ca.crl",
        "moica-ca.crl",
        "root.crl",
    ]


def test_a_ca_left_without_crl_is_named(setup: Setup) -> None:
    """Without the issuing CA's own CRL URL, every download succeeds but logins through
    that CA would be refused: the command says so and does not exit 0."""
    (setup.data_dir / "config.toml").write_text(
        f'crl_urls = ["{setup.base_url}moica-ca.crl"]\n', encoding="utf-8"
    )
    result = setup.refresh()
    assert result.returncode == EXIT_CA_WITHOUT_CRL, result.stdout + result.stderr
    notes = [line for line in result.stdout.splitlines() if line.startswith("注意")]
    assert len(notes) == 1 and setup.pki.hca_ca.cn in notes[0] and "crl_urls" in notes[0]


def test_download_takes_http_only_and_caps_the_size(setup: Setup) -> None:
    from card.revocation import CrlDownloadFailed, download

    url = f"{setup.base_url}moica-ca.crl"
    body = download(url)
    assert body == setup.pki.crl_paths["moica-ca"].read_bytes()
    with pytest.raises(CrlDownloadFailed, match="MiB"):
        download(url, max_bytes=len(body) - 1)
    for other in ("file:///etc/passwd", "ftp://127.0.0.1/x.crl", "ldap://127.0.0.1/cn=x"):
        with pytest.raises(CrlDownloadFailed, match="http"):
            download(other)


class _Trickle:
    """A server on 127.0.0.1 that answers each connection with ``head`` then, until
    told to stop, one byte every 0.2 s: every read finishes well within any per-read
    timeout, yet the answer never ends."""

    def __init__(self, head: bytes) -> None:
        self.head = head
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/crl/slow.crl"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            connection, _ = self.listener.accept()
            with connection:
                connection.recv(4096)
                connection.sendall(self.head)
                while not self.stop.wait(0.2):
                    connection.sendall(b"x")

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        self.thread.join(timeout=5)


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.0 200 OK\r\nContent-Length: 100000\r\n\r\n",  # a body that never ends
        b"HTTP/1.0 200 OK\r\nX-Slow: ",  # a header that never ends
    ],
    ids=["body", "headers"],
)
def test_a_trickling_server_times_out_as_a_whole(head: bytes) -> None:
    from card.revocation import CrlRefused, download

    server = _Trickle(head)
    try:
        started = time.monotonic()
        with pytest.raises(CrlRefused) as info:
            download(server.url, timeout=1.0, deadline=2.0)
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert info.value.key == "card.crl.timeout" and "2 秒" in str(info.value)
    assert elapsed < 5.0


def test_a_server_that_does_not_speak_http_is_a_failed_download() -> None:
    from card.revocation import CrlDownloadFailed, download

    server = _Trickle(b"SSH-2.0-OpenSSH_9.6\r\n")
    try:
        with pytest.raises(CrlDownloadFailed):
            download(server.url, timeout=1.0, deadline=5.0)
    finally:
        server.close()


def test_a_crl_directory_that_cannot_be_written_is_reported_without_traceback(
    setup: Setup, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    setup.crl_dir = blocker / "crl"
    result = setup.refresh()
    assert result.returncode == EXIT_DOWNLOAD_FAILED, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    failed = [line for line in result.stdout.splitlines() if line.startswith("失敗")]
    assert len(failed) == 3
    assert all(str(setup.crl_dir) in line and "Not a directory" in line for line in failed)


def test_a_partition_is_installed_beside_the_complete_crl(setup: Setup) -> None:
    """A newer CRL of another distribution point, signed by the CA, must not take the
    place of the complete CRL: the revoked card stays out."""
    pki = setup.pki
    now = dt.datetime.now(dt.UTC)
    partition = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(pki.moica_ca.certificate.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + 7 * DAY)
        .add_extension(x509.CRLNumber(99), False)
        .add_extension(
            x509.IssuingDistributionPoint(
                full_name=[x509.UniformResourceIdentifier(f"{setup.base_url}part2.crl")],
                relative_name=None,
                only_contains_user_certs=True,
                only_contains_ca_certs=False,
                only_some_reasons=None,
                indirect_crl=False,
                only_contains_attribute_certs=False,
            ),
            True,
        )
        .sign(pki.moica_ca.key, hashes.SHA256())
    )
    setup.serve("part2.crl", partition)
    (setup.data_dir / "config.toml").write_text(
        f'crl_urls = ["{setup.base_url}moica-ca.crl", "{setup.base_url}hca-ca.crl", '
        f'"{setup.base_url}part2.crl"]\n',
        encoding="utf-8",
    )
    result = setup.refresh()
    assert result.returncode == 0, result.stdout + result.stderr
    assert (setup.crl_dir / "moica-ca.crl").read_bytes() == pki.crl_paths["moica-ca"].read_bytes()
    assert len(list(setup.crl_dir.iterdir())) == 4
    with pytest.raises(CertificateProblem) as info:
        CertificateValidator(pki.ca_dir, setup.crl_dir).validate(pki.user("revoked").certificate)
    assert info.value.reason == "revoked"
