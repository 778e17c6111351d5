"""Which readers the kiosk uses: pcscd through pyscard, the card agent of a remote
staff member (``SMIS_CARD_AGENT``, forwarded by ``ssh -R``), or in-process demo cards.

Built once at start-up and handed to the app; no Textual here. ``subscribe`` delivers
(reader, inserted) events from a background thread; the app turns them into messages.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from smis_tui.core.config import ConfigError, Settings

# The card layer (and cryptography under it) is imported when a runtime is built, not
# with this module: the app's screens only need the names below to start.
if TYPE_CHECKING:
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


@dataclass
class CardRuntime:
    backend: ReaderBackend
    login: CardLoginService
    demo_backend: InProcessBackend | None = None
    demo_pki: Path | None = None
    stops: list[Callable[[], None]] = field(default_factory=list)

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
    from card.readers.pkcs11 import Pkcs11Signer
    from card.signing import signer_for_kind

    return signer_for_kind(lambda unblock_at: Pkcs11Signer(module, unblock_at=unblock_at))


def demo_runtime(services: Services, pki_dir: Path) -> CardRuntime:
    from card.sim.inprocess import InProcessBackend
    from card.validation import CertificateValidator
    from smis_tui.services.card_login import CardLoginService

    backend = InProcessBackend([DEMO_READER])
    validator = CertificateValidator(pki_dir / "ca", pki_dir / "crl")
    login = CardLoginService(backend, validator, services.login, services.accounts)
    return CardRuntime(backend, login, demo_backend=backend, demo_pki=pki_dir)


def _validator(settings: Settings) -> CertificateValidator:
    from card.validation import CertificateValidator

    if settings.ca_dir is None:
        raise ConfigError(
            "未設定信任的憑證機構目錄：請設定 SMIS_CA_DIR（或 config.toml 的 ca_dir）"
        )
    crl_dir = settings.ca_dir.parent / "crl"
    return CertificateValidator(settings.ca_dir, crl_dir if crl_dir.is_dir() else None)


def pcsc_runtime(services: Services, settings: Settings) -> CardRuntime:
    from card.readers.pcsc import PcscBackend
    from smis_tui.services.card_login import CardLoginService

    validator = _validator(settings)
    backend = PcscBackend()
    login = CardLoginService(
        backend, validator, services.login, services.accounts, _pkcs11_factory()
    )
    runtime = CardRuntime(backend, login, stops=[backend.close])
    backend.monitor.start()
    return runtime


def agent_runtime(services: Services, settings: Settings, socket_path: Path) -> CardRuntime:
    """Cards in the readers of a remote staff member, through the card agent at
    ``socket_path``. HiCOS cards sign with the PKCS#11 module on the staff side (the
    card is there, not here); the PIN only travels inside the SSH channel."""
    from card.agent.client import AgentBackend
    from card.signing import signer_for_kind
    from smis_tui.services.card_login import CardLoginService

    if not socket_path.is_absolute():
        raise ConfigError(f"{AGENT_ENV} 應為讀卡代理程式 socket 的絕對路徑：{socket_path}")
    validator = _validator(settings)
    backend = AgentBackend(socket_path)
    signer = signer_for_kind(backend.pkcs11_signer)
    login = CardLoginService(backend, validator, services.login, services.accounts, signer)
    return CardRuntime(backend, login, stops=[backend.close])


def runtime_for(services: Services, settings: Settings) -> CardRuntime:
    """The card agent's readers when ``SMIS_CARD_AGENT`` is set (an SSH session of a
    remote staff member), else this machine's readers through pcscd."""
    path = os.environ.get(AGENT_ENV, "").strip()
    if path:
        return agent_runtime(services, settings, Path(path))
    return pcsc_runtime(services, settings)
