"""What the kiosk needs before anyone can log in: the database, the key, the card
readers (and the demo cards with `--demo`). No Textual here.

`smis-tui run` hands :func:`boot` to the app, which shows the login screen first and
runs it in a worker thread: the database driver, ``cryptography`` and the card layer
are imported and opened while the first frame is already on the screen, instead of
before it. Errors an operator must fix end the app with one line on stderr, as before.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from smis_tui.core.config import ConfigError, Settings

if TYPE_CHECKING:
    from smis_tui.demo import DemoCard
    from smis_tui.services import Services
    from smis_tui.services.card_runtime import CardRuntime


def prepare_textual() -> None:
    """Called before Textual is first imported (its constants are read once).

    Textual paints at most TEXTUAL_FPS frames a second (60 unless set) and a change
    waits for the next frame. At 120 the results of a keystroke show about 15 ms
    sooner (bench/bench_tui.py); the kiosk's screens change only on input or a card,
    so the higher cap costs nothing while idle. An operator's own TEXTUAL_FPS wins.
    """
    os.environ.setdefault("TEXTUAL_FPS", "120")


@dataclass(frozen=True)
class Ready:
    services: Services
    cards: CardRuntime
    demo_cards: tuple[DemoCard, ...] = ()


def boot(settings: Settings, *, demo: bool) -> Ready:
    from models.db import check_writable, database_failure
    from smis_tui.services import open_services
    from smis_tui.services.card_runtime import demo_runtime, runtime_for

    try:
        services = open_services(settings)
        # A kiosk writes at every login and submit: a read-only database is refused
        # now, with one line, instead of failing the first person who uses it.
        check_writable()
    except Exception as exc:
        # open_services may already write (the key check of a new database): a
        # read-only file fails there, and is one line too.
        failure = database_failure(exc)
        if failure is None or failure is exc:
            raise
        raise failure from exc
    if not demo:
        return Ready(services, runtime_for(services, settings))
    from models.purpose import is_demo_database
    from smis_tui.demo import demo_pki_dir, load_demo_cards

    if not is_demo_database():
        raise ConfigError(
            "此資料庫不是示範資料庫：--demo 只用於 smis-tui db init --demo 建立的資料庫"
        )
    demo_cards = tuple(load_demo_cards())
    pki = demo_pki_dir()
    if pki is None or not demo_cards:
        raise ConfigError("尚未建立示範資料：請先執行 smis-tui demo init")
    return Ready(services, demo_runtime(services, pki), demo_cards)


def hold_collector() -> None:
    """Hold Python's cyclic garbage collector off while the kiosk starts.

    Start-up creates some hundred thousand long-lived objects (modules, classes,
    parsed CSS, widgets) and very little garbage (about 3000 objects in cycles). With
    the collector running, each of its passes walks all of them again: about 50 ms of
    the time to the first frame (bench/bench_tui.py)."""
    gc.disable()


def release_collector() -> None:
    """After boot: collect start-up's garbage once, then freeze what survives (it lives
    as long as the process), so that later passes only walk objects made since, and
    turn the collector back on."""
    gc.collect()
    gc.freeze()
    gc.enable()


def operator_errors() -> tuple[type[BaseException], ...]:
    """Errors an operator can act on: one line, no traceback (imported on demand, so
    that the start-up path does not pay for the database driver and crypto)."""
    from models.db import DatabaseUnavailable
    from models.migrate import SchemaMismatch
    from models.purpose import NotADemoDatabase
    from smis_tui.services.bootstrap import CertificateFileError
    from smis_tui.services.crypto import KeyFileError
    from smis_tui.services.errors import ServiceError

    return (
        DatabaseUnavailable,
        SchemaMismatch,
        KeyFileError,
        ConfigError,
        ServiceError,
        CertificateFileError,
        NotADemoDatabase,
    )
