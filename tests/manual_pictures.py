"""The pictures of the user manuals (docs/manual.zh-TW.md, docs/manual.en.md), drawn
by the app itself: each step is played on a fresh demo, as tests/tui/test_every_screen.py
plays its scenes, and the screen is saved to docs/manual/ (`make docs`).

The clock is stopped at one moment for the whole run and the demo's keys are drawn
from seeds, so that the dates on the screens (申請日期, review and audit times) and the
card fingerprints in 審核 are the same at every run: a picture changes only when its
screen does, and tests/tui/test_manual.py draws one again and compares it byte for
byte.

    python -m tests.manual_pictures [STEM ...]   # all pictures, or only these
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import hashlib
import itertools
import random
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import time_machine
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from textual.pilot import Pilot
from textual.widgets import Checkbox, DataTable, Input, RadioButton

from card.sim import testpki
from models import template
from models.db import close_database, open_database
from models.purpose import mark_demo_database
from smis_tui.core.config import Settings
from smis_tui.demo import create_demo
from smis_tui.screens.application_form import ApplicationFormScreen
from smis_tui.screens.card_auth import CardAuthScreen
from smis_tui.screens.new_account import NewAccountScreen
from smis_tui.services import build_services
from smis_tui.services.card_runtime import demo_runtime
from smis_tui.services.crypto import create_key_file
from tests.conftest import UNLIMITED
from tests.tui import test_every_screen as screens
from tests.tui.conftest import Demo, card, insert, log_in, settle
from tests.tui.test_application_form import VALID, fill
from tests.tui.test_new_account import _newcomer, _person_id_of

MANUAL = Path(__file__).resolve().parents[1] / "docs" / "manual"
SIZE = (100, 30)
# 115/11/27 09:30 in Taipei: any fixed moment would do; this one is a weekday morning.
MOMENT = dt.datetime(2026, 11, 27, 1, 30, tzinfo=dt.UTC)
LANGUAGES = ("zh_TW", "en")


# ----------------------------------------------------- steps test_every_screen lacks


async def new_account_filled(pilot: Pilot[None], demo: Demo) -> None:
    """Steps 3–4: the unit taken from 單位查詢 and the newcomer's ID typed, before 確定."""
    _, person_id = _newcomer(demo)
    await screens.new_account(pilot, demo)
    await screens.choose_unit_in_search(pilot, "金門縣衛生局")
    pilot.app.screen.query_one("#person-id", Input).value = person_id


async def application_form_filled(pilot: Pilot[None], demo: Demo) -> None:
    """Step 5: the form filled in, 承辦人 of 個人防護裝備 chosen, the statement agreed."""
    newcomer, _ = _newcomer(demo)
    await screens.application_form(pilot, demo)
    form = pilot.app.screen
    fill(form, **{**VALID, "name": newcomer.holder})  # type: ignore[arg-type]
    form.query_one("#role-ppe-officer", RadioButton).value = True
    form.query_one("#consent-agree", Checkbox).value = True


async def update_id(pilot: Pilot[None], demo: Demo) -> None:
    """Step 9: 新帳號申請 again with the ID of an application under review."""
    services, _, cards = demo
    await screens.new_account(pilot, demo)
    await screens.choose_unit_in_search(pilot, "金門縣衛生局")
    pilot.app.screen.query_one("#person-id", Input).value = _person_id_of(
        services, card(cards, "moica2")
    )
    assert isinstance(pilot.app.screen, NewAccountScreen)


async def update_card(pilot: Pilot[None], demo: Demo) -> None:
    """Step 11: 確定 on the question, and the card is asked for."""
    await screens.update_question(pilot, demo)
    await pilot.press("enter")
    await settle(pilot)
    assert isinstance(pilot.app.screen, CardAuthScreen)


async def login_pin(pilot: Pilot[None], demo: Demo) -> None:
    """Login: the card is in, its PIN typed, Enter not yet pressed."""
    insert(demo[1], card(demo[2], "moica"))
    await settle(pilot)
    await pilot.press(*card(demo[2], "moica").pin)


async def login_wrong_pin(pilot: Pilot[None], demo: Demo) -> None:
    await log_in(pilot, "moica", "000000")


async def application_form_bottom(pilot: Pilot[None], demo: Demo) -> None:
    """Step 5, further down: the statement, its 我同意 box and 送出申請."""
    await application_form_filled(pilot, demo)
    form = pilot.app.screen
    assert isinstance(form, ApplicationFormScreen)
    form.query_one("#consent-agree", Checkbox).focus()
    await settle(pilot)


@dataclass(frozen=True)
class Picture:
    stem: str  # docs/manual/<stem>.svg, and <stem>.en.svg in English
    scene: screens.Scene


PICTURES = (
    Picture("01-login", screens.login),
    Picture("01-login-disabled", screens.login_disabled),
    Picture("02-new-account", screens.new_account),
    Picture("03-unit-search", screens.unit_search),
    Picture("04-new-account-filled", new_account_filled),
    Picture("05-application-form", application_form_filled),
    Picture("05-application-consent", application_form_bottom),
    Picture("05-card-check", screens.card_check),
    Picture("06-application-sent", screens.application_sent),
    Picture("07-login-pending", screens.login_pending),
    Picture("09-update-id", update_id),
    Picture("10-update-question", screens.update_question),
    Picture("11-update-card", update_card),
    Picture("12-update-form", screens.update_form),
    Picture("13-login-pin", login_pin),
    Picture("14-home", screens.home_user),
    Picture("15-wrong-pin", login_wrong_pin),
    Picture("15-no-account", screens.login_refused),
    Picture("15-expired-card", screens.login_expired_card),
    Picture("16-profile", screens.profile),
    Picture("16-profile-permissions", screens.profile_permissions),
    Picture("16-profile-disable", screens.profile_disable),
    Picture("20-home-admin", screens.home_admin),
    Picture("21-review", screens.review),
    Picture("21-review-reason", screens.review_reason),
    Picture("22-account-control", screens.account_control),
    Picture("23-audit-trail", screens.audit_trail),
    Picture("24-access-reviews", screens.access_reviews),
    Picture("24-access-review-items", screens.access_review_items),
    Picture("30-remote-login", screens.remote_login),
)
BY_STEM = {picture.stem: picture for picture in PICTURES}


def file_name(stem: str, language: str) -> str:
    return f"{stem}.svg" if language == "zh_TW" else f"{stem}.{language.replace('_', '-')}.svg"


@contextlib.contextmanager
def stopped_clock() -> Iterator[None]:
    # Only the wall clock stops: Textual's timers and asyncio run on the monotonic one.
    with time_machine.travel(MOMENT, tick=False):
        yield


# ------------------------------------------------- a demo PKI the same at every run
# 審核 shows the applicant's card fingerprint, which is the hash of a certificate of the
# demo's test PKI: its keys and serial numbers are drawn from seeds here, so that the
# certificates (signed with RSA PKCS#1 v1.5, which draws nothing) are the same each time.

_SMALL_PRIMES = [p for p in range(3, 2000, 2) if all(p % d for d in range(3, int(p**0.5) + 1, 2))]


def _probable_prime(n: int, rng: random.Random) -> bool:
    """Miller–Rabin, after trial division and one Fermat test: these keys sign demo
    certificates only."""
    if any(n % p == 0 for p in _SMALL_PRIMES) or pow(2, n - 1, n) != 1:
        return False
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(8):
        x = pow(rng.randrange(2, n - 1), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(bits: int, rng: random.Random, e: int) -> int:
    while True:
        # The two top bits set, so that the product of two has all its bits.
        n = rng.getrandbits(bits) | (3 << (bits - 2)) | 1
        if (n - 1) % e and _probable_prime(n, rng):
            return n


@functools.cache
def _seeded_key(name: str, ec_key: bool) -> testpki.PrivateKey:
    seed = hashlib.sha256(f"smis-tui manual {name}".encode()).digest()
    if ec_key:
        return ec.derive_private_key(int.from_bytes(seed) % (2**255), ec.SECP256R1())
    rng = random.Random(seed)
    e = 65537
    p, q = _prime(1024, rng, e), _prime(1024, rng, e)
    d = pow(e, -1, (p - 1) * (q - 1))
    return rsa.RSAPrivateNumbers(
        p,
        q,
        d,
        rsa.rsa_crt_dmp1(d, p),
        rsa.rsa_crt_dmq1(d, q),
        rsa.rsa_crt_iqmp(p, q),
        rsa.RSAPublicNumbers(e, p * q),
    ).private_key()


def _seeded_key_for(name: str, ec_key: bool, cache: Path | None) -> testpki.PrivateKey:
    return _seeded_key(name, ec_key)


@contextlib.contextmanager
def seeded_pki() -> Iterator[None]:
    serials = itertools.count(0x5EED0001)
    with (
        mock.patch.object(testpki, "_key", _seeded_key_for),
        mock.patch.object(x509, "random_serial_number", lambda: next(serials)),
    ):
        yield


@contextlib.contextmanager
def fresh_demo(template_db: Path, directory: Path, seeded: bool = True) -> Iterator[Demo]:
    """The demo of `make run` on a copy of ``template_db``, in ``directory``; its PKI
    drawn from seeds (:func:`seeded_pki`) unless not ``seeded``."""
    settings = Settings(
        data_dir=directory / "data",
        database_url=None,
        applications_per_session_hour=UNLIMITED,
        applications_per_card_hour=UNLIMITED,
        pending_lookups_per_session=UNLIMITED,
    )
    create_key_file(settings.resolved_key_file)
    settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template_db, settings.sqlite_path)
    open_database(settings.database_url, settings.sqlite_path)
    try:
        services = build_services(settings)
        mark_demo_database()
        with seeded_pki() if seeded else contextlib.nullcontext():
            cards = create_demo(services, directory / "demo-pki")
        yield services, demo_runtime(services, directory / "demo-pki"), cards
    finally:
        close_database()


async def draw(picture: Picture, language: str, demo: Demo) -> str:
    """The SVG of ``picture``'s step in ``language``, played on ``demo``."""

    async def play(pilot: Pilot[None], demo: Demo) -> None:
        await picture.scene(pilot, demo)
        await settle(pilot)
        for screen in pilot.app.screen_stack:
            # test_every_screen stops the cursor blinking on the top screen only; the
            # field under a dialog would be caught on or off by chance.
            for field in screen.query(Input):
                field.cursor_blink = False
            # A table filled by a worker right after its columns were added now and
            # then keeps its header at the old column widths (更新申請權限's 審核中的權限,
            # a flaw of the app's): drawn anew, it looks as meant, and the same each run.
            for table in screen.query(DataTable):
                table.notify_style_update()

    app = screens.scene_app(demo, picture.scene.__name__)
    async with app.run_test(size=SIZE) as pilot:
        await screens._before(play, demo, language)(pilot)
        return pilot.app.export_screenshot(title=file_name(picture.stem, language))


def draw_all(
    pictures: tuple[Picture, ...],
    languages: tuple[str, ...],
    work: Path,
    template_db: Path | None = None,
    seeded: bool = True,
) -> dict[str, str]:
    """Each picture in each language: the SVGs by file name. ``template_db``: a
    database with the schema and the default units (made in ``work`` if not given).
    ``seeded``: the demo PKI drawn from seeds, which costs some 20 s the first time;
    only a picture showing a certificate fingerprint (審核) needs it."""
    drawn: dict[str, str] = {}
    with stopped_clock():
        template_db = template_db or template.sqlite_template(work)
        for n, picture in enumerate(pictures):
            for language in languages:
                directory = work / f"{n}-{language}"
                with fresh_demo(template_db, directory, seeded) as demo:
                    drawn[file_name(picture.stem, language)] = asyncio.run(
                        draw(picture, language, demo)
                    )
    return drawn


def main(argv: list[str]) -> int:
    unknown = [stem for stem in argv if stem not in BY_STEM]
    if unknown:
        print(f"no such picture: {' '.join(unknown)}", file=sys.stderr)
        return 2
    pictures = tuple(BY_STEM[stem] for stem in argv) or PICTURES
    MANUAL.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="smis-manual-") as work:
        drawn = draw_all(pictures, LANGUAGES, Path(work))
    for name, svg in drawn.items():
        (MANUAL / name).write_text(svg, encoding="utf-8")
    if not argv:
        # A step taken out of the manual takes its pictures with it.
        for old in MANUAL.glob("*.svg"):
            if old.name not in drawn:
                old.unlink()
    print(f"{len(drawn)} pictures in {MANUAL}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
