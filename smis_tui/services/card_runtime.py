"""Which readers the kiosk uses: pcscd through pyscard, or in-process demo cards.

Built once at start-up and handed to the app; no Textual here. ``subscribe`` delivers
(reader, inserted) events from a background thread; the app turns them into messages.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from smis_tui.config import ConfigError, Settings

# The card layer (and cryptography under it) is imported when a runtime is built, not
# with this module: the app's screens only need the names below to start.
if TYPE_CHECKING:
    from card.identity import CardKind
    from card.inprocess import InProcessBackend
    from card.pkcs11 import Pkcs11Signer
    from card.transport import ReaderBackend
    from smis_tui.services import Services
    from smis_tui.services.card_login import CardLoginService

CardListener = Callable[[str, bool], None]
DEMO_READER = "示範讀卡機"


@dataclass
class CardRuntime:
    backend: ReaderBackend
    login: CardLoginService
    subscribe: Callable[[CardListener], Callable[[], None]]
    demo_backend: InProcessBackend | None = None
    demo_pki: Path | None = None
    _stop: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for stop in self._stop:
            stop()


def _pkcs11_factory() -> Callable[[CardKind], Pkcs11Signer] | None:
    module = os.environ.get("SMIS_PKCS11_MODULE")
    if not module:
        return None
    from card.pkcs11 import Pkcs11Signer
    from smis_tui.services.card_login import UNBLOCK_AT

    def factory(kind: CardKind) -> Pkcs11Signer:
        return Pkcs11Signer(module, unblock_at=UNBLOCK_AT[kind])

    return factory


def demo_runtime(services: Services, pki_dir: Path) -> CardRuntime:
    from card.inprocess import InProcessBackend
    from card.validation import CertificateValidator
    from smis_tui.services.card_login import CardLoginService

    backend = InProcessBackend([DEMO_READER])
    validator = CertificateValidator(pki_dir / "ca", pki_dir / "crl")
    login = CardLoginService(backend, validator, services.login, services.accounts)

    def subscribe(listener: CardListener) -> Callable[[], None]:
        return backend.subscribe(listener)

    return CardRuntime(backend, login, subscribe, demo_backend=backend, demo_pki=pki_dir)


def pcsc_runtime(services: Services, settings: Settings) -> CardRuntime:
    from card.pcsc import PcscBackend, ReaderMonitor
    from card.validation import CertificateValidator
    from smis_tui.services.card_login import CardLoginService

    if settings.ca_dir is None:
        raise ConfigError(
            "未設定信任的憑證機構目錄：請設定 SMIS_CA_DIR（或 config.toml 的 ca_dir）"
        )
    crl_dir = settings.ca_dir.parent / "crl"
    validator = CertificateValidator(settings.ca_dir, crl_dir if crl_dir.is_dir() else None)
    backend = PcscBackend()
    login = CardLoginService(
        backend, validator, services.login, services.accounts, _pkcs11_factory()
    )
    monitor = ReaderMonitor()

    def subscribe(listener: CardListener) -> Callable[[], None]:
        return monitor.subscribe(lambda reader, inserted, atr: listener(reader, inserted))

    runtime = CardRuntime(backend, login, subscribe)
    monitor.start()
    runtime._stop.append(monitor.stop)
    return runtime
