"""The login pipeline without the person: `python -m bench.bench_login`.

Read the certificate, verify the PIN, have the card sign a fresh challenge, verify the
signature and the chain, look up the card binding and record the login — with an
RSA-2048 virtual PIV card, in-process and (when `make bench` has started pcscd with
vsmartcard-vpcd, SMIS_TEST_PCSCD=1) through real pcscd. Side by side in one run.

"card" is the time spent in card I/O and the card's own signing; "own" is everything
else, the project's share. Target: own ≤ 10 ms median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from card.identity import identity_from_certificate
from card.sim.inprocess import InProcessBackend
from card.sim.testpki import TestPki, make_test_pki
from card.sim.virtual import VirtualPivCard
from card.transport import ReaderBackend
from card.validation import CertificateValidator
from models.db import close_database, open_database
from models.migrate import upgrade
from models.unit_data import load_generated_units
from smis_tui.core.config import Settings
from smis_tui.services import Services, build_services
from smis_tui.services.accounts import PersonalData
from smis_tui.services.auth import LoginState
from smis_tui.services.bootstrap import bootstrap_admin
from smis_tui.services.card_login import CardLoginService
from smis_tui.services.crypto import create_key_file

READER = "Virtual PCD 00 00"
PIN = "246810"
TARGET_OWN_MS = 10.0


@contextmanager
def prepared() -> Iterator[tuple[Services, TestPki]]:
    with tempfile.TemporaryDirectory(prefix="bench-login-") as tmp:
        settings = Settings(data_dir=Path(tmp) / "data")
        create_key_file(settings.resolved_key_file)
        open_database(None, settings.sqlite_path)
        try:
            upgrade()
            load_generated_units()
            services = build_services(settings)
            pki = make_test_pki(Path(tmp) / "pki")
            user = pki.user("moica")
            facts = identity_from_certificate(user.certificate)
            data = PersonalData(user.cn, "02-23959825", "bench@example.tw", "", "", "")
            bootstrap_admin(services.accounts, facts, user.person_id, data)
            yield services, pki
        finally:
            close_database()


def run(
    label: str, services: Services, pki: TestPki, backend: ReaderBackend, repeat: int
) -> dict[str, float | str]:
    validator = CertificateValidator(pki.ca_dir, pki.crl_dir)
    logins = CardLoginService(backend, validator, services.login, services.accounts)
    totals: list[float] = []
    cards: list[float] = []
    for attempt in range(repeat + 3):
        result = logins.authenticate(READER, PIN)
        assert result.outcome is not None and result.outcome.state == LoginState.ACTIVE
        if attempt >= 3:  # warm-up
            totals.append(result.total_seconds * 1000)
            cards.append(result.card_seconds * 1000)
    own = [t - c for t, c in zip(totals, cards, strict=True)]
    return {
        "path": label,
        "total": statistics.median(totals),
        "card": statistics.median(cards),
        "own": statistics.median(own),
        "own_p95": sorted(own)[max(0, round(0.95 * len(own)) - 1)],
        "share": statistics.median(o / t for o, t in zip(own, totals, strict=True)),
    }


def in_process(services: Services, pki: TestPki, repeat: int) -> dict[str, float | str]:
    user = pki.user("moica")
    backend = InProcessBackend([READER])
    backend.insert(READER, VirtualPivCard(user.cert_der, user.key, PIN))
    return run("in-process", services, pki, backend, repeat)


def through_pcscd(services: Services, pki: TestPki, repeat: int) -> dict[str, float | str]:
    from card.readers.pcsc import PcscBackend
    from card.sim.vpcd import VpcdCard

    user = pki.user("moica")
    with VpcdCard(VirtualPivCard(user.cert_der, user.key, PIN)) as card:
        card.wait_until_seen(10)
        backend = PcscBackend()
        deadline = time.monotonic() + 10
        while True:
            try:
                backend.connect(READER).close()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        return run("pcscd + vpcd", services, pki, backend, repeat)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="login pipeline benchmark")
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args(argv)
    paths: list[Callable[[Services, TestPki, int], dict[str, float | str]]] = [in_process]
    if os.environ.get("SMIS_TEST_PCSCD"):
        paths.append(through_pcscd)
    else:
        print(
            "(pcscd not started: run through `make bench` for the pcscd figures)", file=sys.stderr
        )
    rows = []
    with prepared() as (services, pki):
        for path in paths:
            rows.append(path(services, pki, args.repeat))
    print(f"Login pipeline, RSA-2048 virtual PIV card, median of {args.repeat} logins")
    print()
    print("| path | total ms | card ms | own ms | own p95 ms | own share | target |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        own = float(r["own"])
        mark = "✓" if own <= TARGET_OWN_MS else "✗"
        print(
            f"| {r['path']} | {float(r['total']):.2f} | {float(r['card']):.2f} | {own:.2f} | "
            f"{float(r['own_p95']):.2f} | {float(r['share']):.0%} | {mark} own ≤ {TARGET_OWN_MS:g} ms |"
        )
    print()
    print("card: card I/O and the card's signing; own: certificate parsing, chain and CRL")
    print("validation, challenge and signature check, binding look-up, login record.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
