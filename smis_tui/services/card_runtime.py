"""Which readers the kiosk uses: pcscd through pyscard, the card agent of a remote
staff member (``SMIS_CARD_AGENT``, forwarded by ``ssh -R``), or in-process demo cards.

Built once at start-up and handed to the app; no Textual here. ``subscribe`` delivers
(reader, inserted) events from a background thread; the app turns them into messages.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from smis_tui.core.config import ConfigError, Settings

# The card layer (and cryptography under it) is imported when a runtime is built, not
# with this module: the app's screens only need the names below to start.
if TYPE_CHECKING:
    import socket

    from card.signing import SignerForKind
    from card.sim.inprocess import InProcessBackend
    from card.transport import ReaderBackend
    from card.validation import CertificateValidator
    from smis_tui.services import Services
    from smis_tui.services.card_login import CardLoginService

CardListener = Callable[[str, bool], None]
DEMO_READER = "示範讀卡機"
# The forwarded socket of the staff member's `smis-tui card-agent` (see cli_agent).
AGENT_ENV = "SMIS_CARD_AGENT"
# Set by `smis-tui ssh-session --agent-fd N` (run as the service account): the broker's
# channel to the staff member's agent (card.agent.broker).
AGENT_FD_ENV = "SMIS_CARD_AGENT_FD"
# The demo PKI's CRLs are re-issued when they would run out within this time.
DEMO_CRL_RENEW_BEFORE = dt.timedelta(days=1)
DEMO_CRL_VALIDITY = dt.timedelta(days=7)


@dataclass
class CardRuntime:
    backend: ReaderBackend
    login: CardLoginService
    demo_backend: InProcessBackend | None = None
    demo_pki: Path | None = None
    stops: list[Callable[[], None]] = field(default_factory=list)

    @property
    def remote_session(self) -> str | None:
        """The SSH session's id when the PIN is typed at the staff member's own computer
        (the screens then ask for none and show this id), else None."""
        return self.login.remote_session

    def subscribe(self, listener: CardListener) -> Callable[[], None]:
        """``listener(reader, inserted)`` for every card insert and removal, from a
        background thread; returns unsubscribe."""
        return self.backend.subscribe(listener)

    def close(self) -> None:
        for stop in self.stops:
            stop()


def _pkcs11_factory() -> SignerForKind | None:
    module = os.environ.get("SMIS_PKCS11_MODULE")
    if not module:
        return None
    from card.readers.pkcs11 import Pkcs11Signer, reader_tokens_from_env
    from card.signing import signer_for_kind

    reader_tokens = reader_tokens_from_env()
    return signer_for_kind(
        lambda unblock_at: Pkcs11Signer(module, unblock_at=unblock_at, reader_tokens=reader_tokens)
    )


def demo_runtime(services: Services, pki_dir: Path) -> CardRuntime:
    from card.sim.inprocess import InProcessBackend
    from card.validation import CertificateValidator
    from smis_tui.services.card_login import CardLoginService

    backend = InProcessBackend([DEMO_READER])
    renew_demo_crls(pki_dir)
    validator = CertificateValidator(pki_dir / "ca", pki_dir / "crl")
    login = CardLoginService(backend, validator, services.login, services.accounts)
    return CardRuntime(backend, login, demo_backend=backend, demo_pki=pki_dir)


def renew_demo_crls(pki_dir: Path, now: dt.datetime | None = None) -> list[Path]:
    """Re-issue the demo PKI's CRLs that are missing, stale or due within a day,
    signed with the demo CA keys kept next to it, with the same revoked entries and the
    next CRL number; returns the files written.

    The demo's CRLs run out 7 days after `smis-tui demo init` and the demo must keep
    logging in; a real CA directory has no keys next to it, and the kiosk never signs
    a CRL outside the demo.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    moment = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    written: list[Path] = []
    for cert_path in sorted((pki_dir / "ca").glob("*.pem")):
        key_path = pki_dir / "ca-keys" / f"{cert_path.stem}.key.pem"
        if not key_path.is_file():
            continue
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        crl_path = pki_dir / "crl" / f"{cert_path.stem}.crl"
        old = x509.load_der_x509_crl(crl_path.read_bytes()) if crl_path.is_file() else None
        if old is not None and old.next_update_utc is not None:
            if old.next_update_utc - moment > DEMO_CRL_RENEW_BEFORE:
                continue
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            continue
        number = 1
        if old is not None:
            try:
                number = old.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
                number += 1
            except x509.ExtensionNotFound:
                pass
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(cert.subject)
            .last_update(moment)
            .next_update(moment + DEMO_CRL_VALIDITY)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False
            )
            .add_extension(x509.CRLNumber(number), False)
        )
        for entry in old or ():
            builder = builder.add_revoked_certificate(entry)
        crl_path.parent.mkdir(parents=True, exist_ok=True)
        crl = builder.sign(key, hashes.SHA256())
        crl_path.write_bytes(crl.public_bytes(serialization.Encoding.DER))
        written.append(crl_path)
    return written


def certificate_validator(settings: Settings) -> CertificateValidator:
    """The validator of the configured CA directory and CRL directory (``crl_dir``,
    by default next to ``ca_dir``), with the configured grace for stale CRLs."""
    from card.validation import CertificateValidator

    crl_dir = settings.resolved_crl_dir
    if settings.ca_dir is None or crl_dir is None:
        raise ConfigError(
            "未設定信任的憑證機構目錄：請設定 SMIS_CA_DIR（或 config.toml 的 ca_dir）"
        )
    # A missing CRL directory refuses every login, naming it, until it is there.
    return CertificateValidator(
        settings.ca_dir, crl_dir, crl_grace=dt.timedelta(hours=settings.crl_grace_hours)
    )


def pcsc_runtime(services: Services, settings: Settings) -> CardRuntime:
    from card.readers.pcsc import PcscBackend
    from smis_tui.services.card_login import CardLoginService

    validator = certificate_validator(settings)
    backend = PcscBackend()
    login = CardLoginService(
        backend, validator, services.login, services.accounts, _pkcs11_factory()
    )
    runtime = CardRuntime(backend, login, stops=[backend.close])
    backend.monitor.start()
    return runtime


def agent_runtime(
    services: Services,
    settings: Settings,
    socket_path: Path,
    connector: Callable[[], socket.socket] | None = None,
) -> CardRuntime:
    """Cards in the readers of a remote staff member, through the card agent at
    ``socket_path`` (or the connections ``connector`` hands over: card.agent.broker):
    the agent reads their certificates, and for a login the person types the PIN on
    their own computer; only the card's login proof, made for one of
    ``settings.server_names``, comes here."""
    from card.agent.client import AgentBackend
    from smis_tui.services.card_login import CardLoginService

    if not socket_path.is_absolute():
        raise ConfigError(f"{AGENT_ENV} 應為讀卡代理程式 socket 的絕對路徑：{socket_path}")
    validator = certificate_validator(settings)
    backend = AgentBackend(socket_path, connector=connector)
    login = CardLoginService(
        backend,
        validator,
        services.login,
        services.accounts,
        remote=backend,
        server_names=settings.resolved_server_names,
        remote_pin_timeout=settings.remote_pin_timeout_seconds,
    )
    return CardRuntime(backend, login, stops=[backend.close])


def runtime_for(services: Services, settings: Settings) -> CardRuntime:
    """The card agent's readers when ``SMIS_CARD_AGENT`` is set (an SSH session of a
    remote staff member), else this machine's readers through pcscd."""
    fd = os.environ.get(AGENT_FD_ENV, "").strip()
    if fd:
        from card.agent.broker import BrokeredConnector

        if not fd.isdigit():
            raise ConfigError(f"{AGENT_FD_ENV} 應為檔案描述子編號：{fd}")
        connector = BrokeredConnector(int(fd))
        runtime = agent_runtime(services, settings, Path(f"/dev/fd/{fd}"), connector)
        runtime.stops.append(connector.close)
        return runtime
    path = os.environ.get(AGENT_ENV, "").strip()
    if path:
        return agent_runtime(services, settings, Path(path))
    return pcsc_runtime(services, settings)


def read_reader_certificate(reader: str) -> bytes:
    """The login certificate of the card in ``reader`` (through pcscd), read the way a
    login reads it – no PIN, the PKCS#11 module for cards only it can read – for an
    operator's `smis-tui card inspect --reader`."""
    from card.identity import CardKind
    from card.readers.pcsc import PcscBackend
    from card.readers.profiles import read_card

    signer_for = _pkcs11_factory()

    def module_certificate(name: str) -> bytes:
        assert signer_for is not None
        return signer_for(CardKind.MOICA).reader_certificate(name)

    with PcscBackend() as backend:
        conn = backend.connect(reader)
        try:
            return read_card(
                conn, module_certificate=module_certificate if signer_for else None
            ).certificate
        finally:
            conn.close()
