"""Fetching CRLs for the CRL directory (``smis-tui crl refresh``); no Textual here.

Where CRLs come from: the CRL distribution points (RFC 5280 4.2.1.13, ``fullName``
URIs over http) of the CA certificates in the CA directory – each names its *issuer's*
CRL, so the issuing CAs' certificates name the root's ARL – plus the URLs an operator
configures (the issuing CAs' own CRLs are named only in the card certificates).

A downloaded CRL is installed only when it names a CA of the CA directory as its
issuer, its signature verifies with that CA's key, it is a full CRL (not a delta), it
is not past its nextUpdate (beyond the grace the kiosk allows) and it is not older
than the CRL already in place for that CA. It then replaces that file atomically
(temporary file in the same directory, fsync, rename), so the validator never reads a
half-written CRL and a refused download never touches a good file.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from card.errors import CardError, TrustStoreError
from card.validation import (
    CA_SUFFIXES,
    CRL_SUFFIXES,
    ca_label,
    crl_signed_by,
    is_delta_crl,
    load_crl_file,
)
from smis_tui.core.clock import taiwan_date
from smis_tui.core.rocdate import to_roc

__all__ = [
    "DOWNLOAD_TIMEOUT_SECONDS",
    "MAX_CRL_BYTES",
    "CaCertificate",
    "CrlDownloadFailed",
    "CrlForged",
    "CrlOlder",
    "CrlRefused",
    "CrlStale",
    "CrlUnknownIssuer",
    "CrlUnreadable",
    "CrlUnusable",
    "RefreshOutcome",
    "check_crl",
    "collect_urls",
    "distribution_point_urls",
    "download",
    "install_crl",
    "load_ca_directory",
    "load_crl_bytes",
    "missing_or_stale",
    "refresh",
]

DOWNLOAD_TIMEOUT_SECONDS = 30.0
# Real CRLs of Taiwan's CAs are a few MB at most; anything far larger is not one.
MAX_CRL_BYTES = 10 * 1024 * 1024
DOWNLOAD_SCHEMES = ("http", "https")
# RFC 5280 4.2.1.13 also allows ldap; the kiosk fetches over http only, as the
# public CAs publish.
DISTRIBUTION_POINT_SCHEMES = ("http",)


def _roc(when: dt.datetime) -> str:
    return to_roc(taiwan_date(when))


# --------------------------------------------------------------------------- errors


class CrlRefused(CardError):
    """A CRL that must not go into the CRL directory; the message says why."""

    key = "card.crl"
    template = "憑證廢止清冊（CRL）無法使用"


class CrlDownloadFailed(CrlRefused):
    key = "card.crl.download"
    template = "無法下載憑證廢止清冊：{detail}"

    def __init__(self, detail: str) -> None:
        super().__init__(detail=detail)


class CrlUnreadable(CrlRefused):
    key = "card.crl.unreadable"
    template = "下載的內容不是憑證廢止清冊（CRL）"


class CrlUnknownIssuer(CrlRefused):
    key = "card.crl.unknown_issuer"
    template = "憑證廢止清冊的簽發者「{issuer}」不在信任的 CA 憑證目錄中"

    def __init__(self, issuer: str) -> None:
        super().__init__(issuer=issuer)


class CrlForged(CrlRefused):
    key = "card.crl.forged"
    template = "憑證廢止清冊的簽章不是「{ca}」所簽，已拒絕（可能遭偽造）"

    def __init__(self, ca: str) -> None:
        super().__init__(ca=ca)


class CrlUnusable(CrlRefused):
    """A CRL of a known CA that cannot serve as its whole list."""

    key = "card.crl.unusable"
    template = "「{ca}」的憑證廢止清冊無法使用：{detail}"

    def __init__(self, ca: str, detail: str) -> None:
        super().__init__(ca=ca, detail=detail)


class CrlStale(CrlRefused):
    key = "card.crl.stale"
    template = "「{ca}」的憑證廢止清冊已於 {date} 過期，已拒絕"

    def __init__(self, ca: str, next_update: dt.datetime) -> None:
        super().__init__(ca=ca, date=_roc(next_update))
        self.next_update = next_update


class CrlOlder(CrlRefused):
    key = "card.crl.older"
    template = "「{ca}」的憑證廢止清冊比現有的舊（{new} 早於 {old}），已保留現有檔案"

    def __init__(self, ca: str, new: str, old: str) -> None:
        super().__init__(ca=ca, new=new, old=old)


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class CaCertificate:
    certificate: x509.Certificate
    path: Path  # the CA directory's file that holds it
    alone: bool  # the only certificate in that file


def load_ca_directory(ca_dir: Path) -> list[CaCertificate]:
    """Every certificate of the CA directory (trust anchors and intermediates)."""
    if not ca_dir.is_dir():
        raise TrustStoreError(f"找不到 CA 憑證目錄 {ca_dir}")
    found: list[CaCertificate] = []
    for path in sorted(p for p in ca_dir.iterdir() if p.is_file()):
        if path.suffix.lower() not in CA_SUFFIXES:
            continue
        try:
            data = path.read_bytes()
            certs = (
                x509.load_pem_x509_certificates(data)
                if b"-----BEGIN" in data
                else [x509.load_der_x509_certificate(data)]
            )
        except (OSError, ValueError) as exc:
            raise TrustStoreError(f"無法讀取 CA 憑證檔 {path.name}") from exc
        found.extend(CaCertificate(cert, path, len(certs) == 1) for cert in certs)
    return found


def distribution_point_urls(cert: x509.Certificate) -> list[str]:
    """The http ``fullName`` URIs of ``cert``'s CRL distribution points (RFC 5280
    4.2.1.13): where ``cert``'s issuer publishes the CRL that would revoke it."""
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return []
    urls: list[str] = []
    for point in points:
        for name in point.full_name or ():
            if not isinstance(name, x509.UniformResourceIdentifier):
                continue
            scheme = urllib.parse.urlsplit(name.value).scheme.lower()
            if scheme in DISTRIBUTION_POINT_SCHEMES and name.value not in urls:
                urls.append(name.value)
    return urls


def collect_urls(cas: Iterable[CaCertificate], configured: Iterable[str]) -> list[str]:
    """The distribution points of every CA certificate, then the configured URLs;
    each once, in that order."""
    urls: list[str] = []
    for ca in cas:
        urls.extend(u for u in distribution_point_urls(ca.certificate) if u not in urls)
    urls.extend(u for u in configured if u not in urls)
    return urls


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects to http(s) only (urllib would also follow one to ftp)."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: object,
        code: int,
        msg: str,
        headers: object,
        newurl: str,
    ) -> urllib.request.Request | None:
        if urllib.parse.urlsplit(newurl).scheme.lower() not in DOWNLOAD_SCHEMES:
            raise CrlDownloadFailed(f"轉址到不支援的網址 {newurl}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)  # type: ignore[arg-type]


def download(
    url: str, *, timeout: float = DOWNLOAD_TIMEOUT_SECONDS, max_bytes: int = MAX_CRL_BYTES
) -> bytes:
    """The body at ``url`` (http or https only), at most ``max_bytes`` of it."""
    if urllib.parse.urlsplit(url).scheme.lower() not in DOWNLOAD_SCHEMES:
        raise CrlDownloadFailed("只支援 http 或 https 網址")
    opener = urllib.request.build_opener(_HttpOnlyRedirects())
    request = urllib.request.Request(url, headers={"User-Agent": "smis-tui crl refresh"})
    try:
        with opener.open(request, timeout=timeout) as response:
            status = getattr(response, "status", 200)
            if status != 200:
                raise CrlDownloadFailed(f"伺服器回應 HTTP {status}")
            body = response.read(max_bytes + 1)
    except CrlDownloadFailed:
        raise
    except urllib.error.HTTPError as exc:
        raise CrlDownloadFailed(f"伺服器回應 HTTP {exc.code}") from exc
    except urllib.error.URLError as exc:
        raise CrlDownloadFailed(f"無法連線（{exc.reason}）") from exc
    except (OSError, ValueError) as exc:
        raise CrlDownloadFailed(f"連線失敗（{exc}）") from exc
    if len(body) > max_bytes:
        raise CrlDownloadFailed(f"檔案超過 {max_bytes // (1024 * 1024)} MiB 上限")
    return body


# --------------------------------------------------------------------------- checks


def load_crl_bytes(data: bytes) -> x509.CertificateRevocationList:
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError as exc:
        raise CrlUnreadable() from exc


def check_crl(
    crl: x509.CertificateRevocationList,
    cas: Sequence[x509.Certificate],
    *,
    now: dt.datetime,
    grace: dt.timedelta = dt.timedelta(0),
) -> x509.Certificate:
    """The CA of ``cas`` that issued ``crl``, or CrlRefused saying why there is none
    or why the CRL must not be used."""
    named = [ca for ca in cas if ca.subject == crl.issuer]
    if not named:
        raise CrlUnknownIssuer(crl.issuer.rfc4514_string())
    issuer = next((ca for ca in named if crl_signed_by(crl, ca)), None)
    if issuer is None:
        raise CrlForged(ca_label(named[0]))
    label = ca_label(issuer)
    if is_delta_crl(crl):
        raise CrlUnusable(label, "這是差異清冊（delta CRL），不是完整清冊")
    next_update = crl.next_update_utc
    if next_update is None:
        raise CrlUnusable(label, "沒有下次更新日期（nextUpdate）")
    if now > next_update + grace:
        raise CrlStale(label, next_update)
    return issuer


def _crl_number(crl: x509.CertificateRevocationList) -> int | None:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return None


def _newer(
    crl: x509.CertificateRevocationList, current: x509.CertificateRevocationList
) -> tuple[int, str, str]:
    """-1, 0 or 1 as ``crl`` is older than, the same as or newer than ``current``, and
    how each is described: by CRL number (RFC 5280 5.2.3, increasing) when both carry
    one, else by thisUpdate."""
    new_number, old_number = _crl_number(crl), _crl_number(current)
    if new_number is not None and old_number is not None:
        order = (new_number > old_number) - (new_number < old_number)
        return order, f"CRL 編號 {new_number}", f"CRL 編號 {old_number}"
    new_time, old_time = crl.last_update_utc, current.last_update_utc
    order = (new_time > old_time) - (new_time < old_time)
    return order, f"發布於 {_roc(new_time)}", f"發布於 {_roc(old_time)}"


def _existing_crl(
    issuer: x509.Certificate, crl_dir: Path
) -> tuple[Path, x509.CertificateRevocationList] | None:
    """The newest file of ``crl_dir`` that holds a full CRL of ``issuer``."""
    if not crl_dir.is_dir():
        return None
    best: tuple[Path, x509.CertificateRevocationList] | None = None
    for path in sorted(crl_dir.iterdir()):
        if not path.is_file() or path.suffix.lower() not in CRL_SUFFIXES:
            continue
        try:
            crl = load_crl_file(path)
        except TrustStoreError:
            continue  # not ours to judge here; the validator reports it
        if is_delta_crl(crl) or not crl_signed_by(crl, issuer):
            continue
        if best is None or crl.last_update_utc > best[1].last_update_utc:
            best = (path, crl)
    return best


def _new_file_name(issuer: x509.Certificate, ca_dir: Path, crl_dir: Path) -> str:
    """After the CA's certificate file (``moica-ca.pem`` → ``moica-ca.crl``) when it
    holds that certificate alone and the name is free, else after its fingerprint."""
    for ca in load_ca_directory(ca_dir):
        if ca.certificate == issuer and ca.alone:
            candidate = f"{ca.path.stem}.crl"
            if not (crl_dir / candidate).exists():
                return candidate
    return f"ca-{issuer.fingerprint(hashes.SHA256()).hex()[:16]}.crl"


def _write_atomically(path: Path, data: bytes) -> None:
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power cut
    finally:
        os.close(directory)


def install_crl(
    crl: x509.CertificateRevocationList,
    issuer: x509.Certificate,
    crl_dir: Path,
    ca_dir: Path,
) -> tuple[Path, bool]:
    """Put ``crl`` (already checked: :func:`check_crl`) in place of ``issuer``'s CRL;
    ``(path, changed)``. CrlOlder, file untouched, when the one in place is newer."""
    existing = _existing_crl(issuer, crl_dir)
    if existing is not None:
        path, current = existing
        order, new, old = _newer(crl, current)
        if order == 0:
            return path, False
        if order < 0:
            raise CrlOlder(ca_label(issuer), new, old)
    else:
        crl_dir.mkdir(parents=True, exist_ok=True)
        path = crl_dir / _new_file_name(issuer, ca_dir, crl_dir)
    _write_atomically(path, crl.public_bytes(serialization.Encoding.DER))
    return path, True


# --------------------------------------------------------------------------- refresh


@dataclass(frozen=True)
class RefreshOutcome:
    url: str
    #: "updated", "unchanged" or "failed"
    status: str
    ca: str | None = None  # the CA's CN, when known
    path: Path | None = None
    next_update: dt.datetime | None = None
    error: CrlRefused | None = None

    @property
    def ok(self) -> bool:
        return self.status != "failed"


def refresh(
    ca_dir: Path,
    crl_dir: Path,
    urls: Sequence[str],
    *,
    now: dt.datetime | None = None,
    grace: dt.timedelta = dt.timedelta(0),
    fetch: Callable[[str], bytes] = download,
) -> list[RefreshOutcome]:
    """Download, check and install the CRL at each of ``urls``; one outcome per URL."""
    moment = now or dt.datetime.now(dt.UTC)
    cas = [ca.certificate for ca in load_ca_directory(ca_dir)]
    outcomes: list[RefreshOutcome] = []
    for url in urls:
        issuer: x509.Certificate | None = None
        try:
            crl = load_crl_bytes(fetch(url))
            issuer = check_crl(crl, cas, now=moment, grace=grace)
            path, changed = install_crl(crl, issuer, crl_dir, ca_dir)
        except CrlRefused as exc:
            ca = ca_label(issuer) if issuer is not None else _ca_of(exc)
            outcomes.append(RefreshOutcome(url, "failed", ca, error=exc))
            continue
        outcomes.append(
            RefreshOutcome(
                url,
                "updated" if changed else "unchanged",
                ca_label(issuer),
                path,
                crl.next_update_utc,
            )
        )
    return outcomes


def _ca_of(error: CrlRefused) -> str | None:
    ca = error.params.get("ca")
    return ca if isinstance(ca, str) else None


def missing_or_stale(
    ca_dir: Path, crl_dir: Path, *, now: dt.datetime, grace: dt.timedelta = dt.timedelta(0)
) -> list[str]:
    """The CAs of the CA directory with no current CRL in ``crl_dir`` (their CN): a
    login through any certificate they issued is refused."""
    labels: list[str] = []
    for ca in load_ca_directory(ca_dir):
        existing = _existing_crl(ca.certificate, crl_dir)
        next_update = existing[1].next_update_utc if existing is not None else None
        if next_update is None or now > next_update + grace:
            labels.append(ca_label(ca.certificate))
    return labels
