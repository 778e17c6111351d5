"""Fetching CRLs for the CRL directory (``smis-tui crl refresh``); no Textual here.

Where CRLs come from: the CRL distribution points (RFC 5280 4.2.1.13, ``fullName``
URIs over http) of the CA certificates in the CA directory – each names its *issuer's*
CRL, so the issuing CAs' certificates name the root's ARL – plus the URLs an operator
configures (the issuing CAs' own CRLs are named only in the card certificates).

A downloaded CRL is installed only when it names a CA of the CA directory as its
issuer, its signature verifies with that CA's key, the validator can use it (not a
delta CRL, nor one of some revocation reasons, an indirect or an attribute-certificate
CRL: card.validation.crl_unusable_reason), it is dated no later than now and not past
its nextUpdate (beyond the grace the kiosk allows), and it is not older than the CRL
already in place for the same scope. Each file holds one scope (RFC 5280 5.2.5): the
CA's complete CRL, or one partition (a distribution point, or end-entity / CA
certificates only), so a partition never takes the place of the complete CRL or of
another partition. The file is replaced atomically (temporary file in the same
directory, fsync, rename), so the validator never reads a half-written CRL and a
refused download never touches a good file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import os
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from card.errors import CardError, TrustStoreError
from card.validation import (
    CA_SUFFIXES,
    CRL_SUFFIXES,
    CrlScope,
    ca_label,
    crl_scope,
    crl_signed_by,
    crl_unusable_reason,
    load_crl_file,
)
from smis_tui.core.clock import taiwan_date
from smis_tui.core.rocdate import to_roc

__all__ = [
    "DOWNLOAD_DEADLINE_SECONDS",
    "DOWNLOAD_TIMEOUT_SECONDS",
    "MAX_CRL_BYTES",
    "CaCertificate",
    "CrlDownloadFailed",
    "CrlDownloadTimedOut",
    "CrlForged",
    "CrlOlder",
    "CrlRefused",
    "CrlStale",
    "CrlUnknownIssuer",
    "CrlUnreadable",
    "CrlUnusable",
    "CrlWriteFailed",
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

#: How long one read (or the connection) may wait for the server.
DOWNLOAD_TIMEOUT_SECONDS = 30.0
#: How long one URL may take in all: a server sending a byte now and then would
#: otherwise keep every read within the timeout and the refresh running for ever.
DOWNLOAD_DEADLINE_SECONDS = 60.0
#: How much of the body one read asks for.
_CHUNK_BYTES = 64 * 1024
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


class CrlDownloadTimedOut(CrlRefused):
    key = "card.crl.timeout"
    template = "下載憑證廢止清冊逾時（超過 {seconds:g} 秒）"

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds=seconds)


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


class CrlWriteFailed(CrlRefused):
    """The CRL passed every check but could not be written (permissions, a full disk, a
    file where the directory should be); ``detail`` is the system's reason."""

    key = "card.crl.write"
    template = "無法寫入憑證廢止清冊檔 {file}：{detail}"

    def __init__(self, file: Path, detail: str) -> None:
        super().__init__(file=str(file), detail=detail)


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


class _Deadline:
    """The end of one download: past it, the connections it watches are shut down, so
    that a read blocked on a server that keeps sending a byte now and then returns."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            self._shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        # socket.socket's own shutdown, also for a TLS socket: it only wakes the reader.
        try:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass  # already closed


def _watched(
    http_class: type[http.client.HTTPConnection], deadline: _Deadline
) -> type[http.client.HTTPConnection]:
    """``http_class`` whose sockets ``deadline`` shuts down when it passes."""

    class Watched(http_class):  # type: ignore[misc, valid-type]
        timeout: float

        def connect(self) -> None:
            # The deadline cannot wake a connect, which has no socket to watch yet.
            self.timeout = max(0.001, min(self.timeout, deadline.remaining()))
            super().connect()
            deadline.watch(self.sock)

    return Watched


def _deadline_handlers(deadline: _Deadline) -> list[urllib.request.BaseHandler]:
    """urllib's http and https handlers, their connections watched by ``deadline``."""

    class Http(urllib.request.HTTPHandler):
        def do_open(self, http_class: Any, req: Any, **kwargs: Any) -> Any:
            return super().do_open(_watched(http_class, deadline), req, **kwargs)

    class Https(urllib.request.HTTPSHandler):
        def do_open(self, http_class: Any, req: Any, **kwargs: Any) -> Any:
            return super().do_open(_watched(http_class, deadline), req, **kwargs)

    return [Http(), Https()]


def download(
    url: str,
    *,
    timeout: float = DOWNLOAD_TIMEOUT_SECONDS,
    deadline: float = DOWNLOAD_DEADLINE_SECONDS,
    max_bytes: int = MAX_CRL_BYTES,
) -> bytes:
    """The body at ``url`` (http or https only), at most ``max_bytes`` of it, within
    ``deadline`` seconds in all (CrlDownloadTimedOut otherwise); ``timeout`` bounds
    the connection and each read."""
    if urllib.parse.urlsplit(url).scheme.lower() not in DOWNLOAD_SCHEMES:
        raise CrlDownloadFailed("只支援 http 或 https 網址")
    request = urllib.request.Request(url, headers={"User-Agent": "smis-tui crl refresh"})
    with _Deadline(deadline) as watch:
        opener = urllib.request.build_opener(_HttpOnlyRedirects(), *_deadline_handlers(watch))
        try:
            body = _read(opener, request, timeout, watch, max_bytes)
        except CrlRefused:
            raise
        except (OSError, ValueError, http.client.HTTPException) as exc:
            if watch.expired or watch.remaining() <= 0:
                raise CrlDownloadTimedOut(deadline) from exc
            if isinstance(exc, urllib.error.HTTPError):
                raise CrlDownloadFailed(f"伺服器回應 HTTP {exc.code}") from exc
            if isinstance(exc, urllib.error.URLError):
                raise CrlDownloadFailed(f"無法連線（{exc.reason}）") from exc
            raise CrlDownloadFailed(f"連線失敗（{exc}）") from exc
    if len(body) > max_bytes:
        raise CrlDownloadFailed(f"檔案超過 {max_bytes // (1024 * 1024)} MiB 上限")
    return body


def _read(
    opener: urllib.request.OpenerDirector,
    request: urllib.request.Request,
    timeout: float,
    deadline: _Deadline,
    max_bytes: int,
) -> bytes:
    """The body, in chunks, at most ``max_bytes + 1`` bytes of it."""
    with opener.open(request, timeout=timeout) as response:
        status = getattr(response, "status", 200)
        if status != 200:
            raise CrlDownloadFailed(f"伺服器回應 HTTP {status}")
        chunks: list[bytes] = []
        size = 0
        while size <= max_bytes:
            if deadline.expired or deadline.remaining() <= 0:
                raise CrlDownloadTimedOut(deadline.seconds)
            chunk = response.read(min(_CHUNK_BYTES, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if deadline.expired:  # the end came from the watchdog, not from the server
            raise CrlDownloadTimedOut(deadline.seconds)
        return b"".join(chunks)


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
    unusable = crl_unusable_reason(crl)
    if unusable is not None:
        raise CrlUnusable(label, unusable)
    if crl.last_update_utc > now:
        # The validator ignores it until then: in place of the current CRL it would
        # refuse logins through this CA.
        raise CrlUnusable(
            label, f"發布時間（thisUpdate）{_roc(crl.last_update_utc)} 晚於現在，請確認時鐘"
        )
    next_update = crl.next_update_utc
    if next_update is None:
        raise CrlUnusable(label, "沒有下次更新日期（nextUpdate）")
    if now - next_update > grace:  # a difference: next_update + grace could pass year 9999
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


def _crls_of(
    issuer: x509.Certificate, crl_dir: Path
) -> list[tuple[Path, x509.CertificateRevocationList]]:
    """The files of ``crl_dir`` that hold a CRL of ``issuer`` the validator can use."""
    try:
        paths = sorted(crl_dir.iterdir()) if crl_dir.is_dir() else []
    except OSError:
        return []  # what cannot be read counts as absent; writing says why
    found: list[tuple[Path, x509.CertificateRevocationList]] = []
    for path in paths:
        if not path.is_file() or path.suffix.lower() not in CRL_SUFFIXES:
            continue
        try:
            crl = load_crl_file(path)
        except TrustStoreError:
            continue  # not ours to judge here; the validator reports it
        if crl_unusable_reason(crl) is None and crl_signed_by(crl, issuer):
            found.append((path, crl))
    return found


def _existing_crl(
    issuer: x509.Certificate, crl_dir: Path, scope: CrlScope
) -> tuple[Path, x509.CertificateRevocationList] | None:
    """The newest file of ``crl_dir`` that holds a CRL of ``issuer`` for ``scope``."""
    best: tuple[Path, x509.CertificateRevocationList] | None = None
    for path, crl in _crls_of(issuer, crl_dir):
        if crl_scope(crl) != scope:
            continue
        if best is None or crl.last_update_utc > best[1].last_update_utc:
            best = (path, crl)
    return best


def _new_file_name(issuer: x509.Certificate, scope: CrlScope, ca_dir: Path, crl_dir: Path) -> str:
    """After the CA's certificate file (``moica-ca.pem`` → ``moica-ca.crl``) when it
    holds that certificate alone and the name is free, else after its fingerprint; a
    partition's name adds a digest of its scope (``moica-ca-<12 hex>.crl``)."""
    suffix = "" if scope.complete else f"-{hashlib.sha256(scope.key.encode()).hexdigest()[:12]}"
    for ca in load_ca_directory(ca_dir):
        if ca.certificate == issuer and ca.alone:
            candidate = f"{ca.path.stem}{suffix}.crl"
            if not (crl_dir / candidate).exists():
                return candidate
    return f"ca-{issuer.fingerprint(hashes.SHA256()).hex()[:16]}{suffix}.crl"


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
    """Put ``crl`` (already checked: :func:`check_crl`) in place of ``issuer``'s CRL of
    the same scope; ``(path, changed)``. CrlOlder, file untouched, when the one in place
    is newer; CrlWriteFailed, naming the file, when it cannot be written."""
    scope = crl_scope(crl)
    existing = _existing_crl(issuer, crl_dir, scope)
    if existing is not None:
        path, current = existing
        order, new, old = _newer(crl, current)
        if order == 0:
            return path, False
        if order < 0:
            raise CrlOlder(ca_label(issuer), new, old)
    else:
        try:
            crl_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CrlWriteFailed(crl_dir, exc.strerror or str(exc)) from exc
        path = crl_dir / _new_file_name(issuer, scope, ca_dir, crl_dir)
    try:
        _write_atomically(path, crl.public_bytes(serialization.Encoding.DER))
    except OSError as exc:
        raise CrlWriteFailed(path, exc.strerror or str(exc)) from exc
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
    """The CAs of the CA directory with no current CRL in ``crl_dir``, of any scope
    (their CN): a login through any certificate they issued is refused."""
    labels: list[str] = []
    for ca in load_ca_directory(ca_dir):
        current = [
            crl
            for _, crl in _crls_of(ca.certificate, crl_dir)
            if crl.last_update_utc <= now
            and crl.next_update_utc is not None
            and now - crl.next_update_utc <= grace
        ]
        if not current:
            labels.append(ca_label(ca.certificate))
    return labels
