"""Faults as the kiosk's user meets them, driven through Pilot and
`smis-tui run`:

* the card pulled out while the PIN is typed → back to a cleared login screen;
* the card pulled out while it signs → back to the login screen, nobody logged in;
* PostgreSQL down at 送出申請 → one clear dialog, nothing written, every value kept,
  and the same form submits once it is back;
* a read-only SQLite file → one line at start (`smis-tui run` exits 1) and the same
  clear dialog at submit;
* the key file missing or wrong at start → `smis-tui run` exits 1 with one 中文 line
  and writes nothing (no new key, no byte of the database changed).

The card tests use the real pcscd + vpcd of `make test`; every wait has a deadline.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Button, Input, Label

from card.sim.testpki import TestPki, make_test_pki
from card.sim.virtual import VirtualPivCard
from card.sim.vpcd import VpcdCard
from models.db import close_database, database_proxy, open_database
from models.schema import Account, AuditEvent, UnitKind
from smis_tui.app import SmisApp
from smis_tui.core.config import Settings
from smis_tui.screens.application_form import ApplicationFormScreen
from smis_tui.screens.home import HomeScreen
from smis_tui.services import Services, build_services
from smis_tui.services.card_runtime import CardRuntime, pcsc_runtime
from smis_tui.services.crypto import create_key_file
from smis_tui.widgets.dialogs import MessageDialog
from tests.helpers import card_proof, new_person_id, unit_of_kind
from tests.integration.test_card_login_pcsc import PIN, PulledOutWhileSigning, approved
from tests.integration.test_faults import immutable, pg_ctl, pg_running, time_limit
from tests.integration.test_pcsc import READER_0, pcscd_ctl, plug, present, unplug, wait_until
from tests.tui.conftest import settle
from tests.tui.test_application_form import TODAY, VALID, FormHost, choose, fill, form_screen

__all__ = ["immutable", "time_limit"]  # fixtures shared with the integration tests

SIZE = (100, 40)
SMIS = [sys.executable, "-m", "smis_tui.cli"]


async def until(pilot: Pilot[None], predicate: Callable[[], bool], what: str, limit=10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {limit} s waiting for {what}")
        await pilot.pause(0.05)


# ---------------------------------------------------------------------- cards over pcscd


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def kiosk(sqlite_settings: Settings, pki: TestPki) -> Iterator[tuple[Services, CardRuntime]]:
    """Services on SQLite and the kiosk's own pcscd card runtime over the test PKI."""
    pcscd_ctl()
    settings = dataclasses.replace(sqlite_settings, ca_dir=pki.ca_dir)
    open_database(settings.database_url, settings.sqlite_path)
    services = build_services(settings)
    runtime = pcsc_runtime(services, settings)
    try:
        yield services, runtime
    finally:
        runtime.close()


def status(app: SmisApp) -> str:
    return str(app.login_screen.query_one("#card-status", Label).render())


def cleared(app: SmisApp) -> bool:
    screen = app.login_screen
    return (
        app.screen is screen
        and len(app.screen_stack) == 2  # the default screen and the login screen
        and status(app) == "請插入卡片"
        and screen.query_one("#pin", Input).value == ""
        and screen.query_one("#login", Button).disabled
        and screen.reader is None
        and screen.preview is None
    )


async def test_card_removed_during_pin_entry_clears_the_login_screen(kiosk, pki) -> None:  # type: ignore[no-untyped-def]
    services, runtime = kiosk
    user = pki.user("moica")
    vcard = VpcdCard(VirtualPivCard(user.cert_der, user.key, PIN))
    app = SmisApp(services, runtime)
    async with app.run_test(size=SIZE) as pilot:
        plug(vcard)
        try:
            await until(pilot, lambda: user.cn in status(app), "the card's holder on screen")
            await until(pilot, lambda: app.login_screen.query_one("#pin", Input).has_focus, "focus")
            await pilot.press(*PIN[:4])
            assert app.login_screen.query_one("#pin", Input).value == PIN[:4]
        finally:
            unplug(vcard)
        await until(pilot, lambda: cleared(app), "a cleared login screen")
        assert app.clipboard == ""


async def test_card_removed_during_signing_leaves_nobody_logged_in(kiosk, pki) -> None:  # type: ignore[no-untyped-def]
    services, runtime = kiosk
    user = pki.user("moica")
    account_id = approved(services, user)
    # Bound already: a signature would log straight in.
    first = VpcdCard(VirtualPivCard(user.cert_der, user.key, PIN))
    plug(first)
    try:
        proof = runtime.login.authenticate(READER_0, PIN).needs_person_id
        assert proof is not None
        runtime.login.bind(proof, user.person_id)
    finally:
        unplug(first)
    logins = AuditEvent.select().where(AuditEvent.action == "login").count()
    last_login = Account.get_by_id(account_id).last_login_at

    card = PulledOutWhileSigning(VirtualPivCard(user.cert_der, user.key, PIN))
    vcard = VpcdCard(card)
    card.vcard = vcard
    app = SmisApp(services, runtime)
    async with app.run_test(size=SIZE) as pilot:
        plug(vcard)
        await until(pilot, lambda: user.cn in status(app), "the card's holder on screen")
        await until(pilot, lambda: app.login_screen.query_one("#pin", Input).has_focus, "focus")
        await pilot.press(*PIN, "enter")
        await until(pilot, card.pulled.is_set, "the card pulled out while signing")
        await until(pilot, lambda: not present(READER_0), "pcscd to see the reader empty")
        await until(pilot, lambda: cleared(app), "a cleared login screen")
        await settle(pilot)
        assert cleared(app)
        assert not any(isinstance(s, HomeScreen) for s in app.screen_stack)
    assert AuditEvent.select().where(AuditEvent.action == "login").count() == logins
    assert Account.get_by_id(account_id).last_login_at == last_login
    wait_until(lambda: not present(READER_0))


# ---------------------------------------------------------------------- the database at submit


def form_app(services: Services, person_id: str) -> FormHost:
    """新帳號申請 of ``person_id``, whose card was proved before the form (no card reader)."""
    unit = unit_of_kind(UnitKind.CLINIC, with_category="ppe", without="antivenom")
    row = services.units.get(unit.code)
    assert row is not None
    proof = card_proof(services, person_id)
    return FormHost(
        lambda: ApplicationFormScreen(
            services, None, person_id, row, "zh_TW", proof=proof, today=TODAY
        )
    )


def values(screen: ApplicationFormScreen) -> dict[str, str]:
    return {key: screen.query_one(f"#input-{key}", Input).value for key in VALID}


async def filled_form(pilot: Pilot[None]) -> tuple[ApplicationFormScreen, dict[str, str]]:
    """The form, once loaded, filled in as a ppe 承辦人 with consent: (screen, the values)."""
    await settle(pilot)
    screen = form_screen(pilot.app)
    fill(screen, **VALID)
    choose(screen, "#role-ppe-officer", "#consent-agree")
    return screen, values(screen)


async def submit(pilot: Pilot[None], screen: ApplicationFormScreen) -> None:
    await pilot.pause()
    screen.query_one("#form-submit", Button).press()
    await pilot.pause()
    await until(pilot, lambda: not screen._busy, "the submit to finish", limit=30)
    await settle(pilot)


DATABASE_ERROR = (
    "資料庫暫時無法使用，申請未送出；已填寫的資料仍保留，請稍後再按「送出」，或洽櫃台人員。"
)


async def test_postgres_down_at_submit_one_dialog_nothing_written_values_kept(
    postgres_settings: Settings,
) -> None:
    pg_ctl("status")
    open_database(postgres_settings.database_url, postgres_settings.sqlite_path)
    services = build_services(postgres_settings)
    person_id = new_person_id()
    app = form_app(services, person_id)
    try:
        async with app.run_test(size=SIZE) as pilot:
            screen, typed = await filled_form(pilot)
            pg_ctl("stop")
            await submit(pilot, screen)
            dialogs = [s for s in app.screen_stack if isinstance(s, MessageDialog)]
            assert len(dialogs) == 1 and app.screen is dialogs[0]
            assert dialogs[0].message == DATABASE_ERROR
            await pilot.press("enter")
            await pilot.pause()
            assert app.screen is screen and not app.results
            assert values(screen) == typed
            assert not screen.query_one("#form-submit", Button).disabled
            pg_ctl("start")
            await submit(pilot, screen)  # the same form, once the database is back
            assert isinstance(app.screen, MessageDialog)
            assert app.screen.message == "已送出申請，請等待審核通過。"
            await pilot.press("enter")
            await pilot.pause()
            assert app.results == [True]
    finally:
        if not pg_running():
            pg_ctl("start")
    account = services.accounts.find_by_person_id(person_id)
    assert account is not None
    assert len(services.accounts.view(account.id).pending()) == 1
    # Written once: the application and the binding of the applicant's card.
    actions = AuditEvent.select(AuditEvent.action).where(AuditEvent.target_id == account.id)
    assert sorted(e.action for e in actions) == ["apply", "bind_card"]


async def test_read_only_sqlite_at_submit_is_one_clear_dialog(
    sqlite_settings: Settings, immutable: Callable[[Path], None]
) -> None:
    open_database(sqlite_settings.database_url, sqlite_settings.sqlite_path)
    services = build_services(sqlite_settings)
    person_id = new_person_id()
    app = form_app(services, person_id)
    immutable(sqlite_settings.sqlite_path)
    close_database()  # every connection from now on opens a read-only file
    async with app.run_test(size=SIZE) as pilot:
        screen, typed = await filled_form(pilot)
        await submit(pilot, screen)
        dialogs = [s for s in app.screen_stack if isinstance(s, MessageDialog)]
        assert len(dialogs) == 1 and dialogs[0].message == DATABASE_ERROR
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is screen and values(screen) == typed and not app.results
    assert services.accounts.find_by_person_id(person_id) is None


# ---------------------------------------------------------------------- `smis-tui run`


def smis_run(data_dir: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SMIS_KEY_FILE")}
    full_env.update({"SMIS_DATA_DIR": str(data_dir), "TERM": "xterm-256color"})
    full_env.update(env or {})
    return subprocess.run(
        [*SMIS, "run"], capture_output=True, text=True, env=full_env, timeout=60, check=False
    )


def one_chinese_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line the kiosk ended with. (Textual draws the login screen on stderr
    before boot fails; the message comes after it has left the alternate screen.)"""
    assert result.returncode == 1, (result.returncode, result.stderr[-500:])
    assert "Traceback" not in result.stderr
    _, marker, message = result.stderr.rpartition("smis-tui: ")
    assert marker and "smis-tui: " not in _[-2000:].split("\x1b[?1049l")[-1]
    lines = message.strip().splitlines()
    assert len(lines) == 1, message
    assert "\x1b" not in lines[0]
    return lines[0]


def fingerprint(directory: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        if p.is_file()
    }


@pytest.fixture
def kiosk_data(sqlite_settings: Settings, tmp_path: Path) -> Path:
    """A data directory as `smis-tui db init` leaves it, with one application whose
    person ID must never appear in plaintext anywhere in it."""
    open_database(sqlite_settings.database_url, sqlite_settings.sqlite_path)
    services = build_services(sqlite_settings)
    person_id = new_person_id()
    from tests.helpers import form

    services.accounts.apply(
        form(person_id, unit_of_kind(UnitKind.CLINIC, with_category="ppe")),
        card_proof(services, person_id),
    )
    database_proxy.obj.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    close_database()
    (tmp_path / "person_id").write_text(person_id)
    return sqlite_settings.data_dir


def assert_no_plaintext(data_dir: Path, person_id: str) -> None:
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert person_id.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("fault", ["missing", "other key", "garbage", "too open"])
def test_key_file_missing_or_wrong_at_start(kiosk_data: Path, tmp_path: Path, fault: str) -> None:
    person_id = (tmp_path / "person_id").read_text()
    key = kiosk_data / "smis.key"
    env: dict[str, str] = {}
    if fault == "missing":
        key.rename(tmp_path / "moved.key")
    elif fault == "other key":
        other = tmp_path / "other" / "smis.key"
        create_key_file(other)
        env["SMIS_KEY_FILE"] = str(other)
    elif fault == "garbage":
        key.write_text("not a key\n")
    else:
        key.chmod(0o644)
    before = fingerprint(kiosk_data)
    line = one_chinese_line(smis_run(kiosk_data, env))
    expected = {
        "missing": "找不到資料加密金鑰檔",
        "other key": "金鑰與資料庫不符",
        "garbage": "格式錯誤",
        "too open": "權限過寬",
    }[fault]
    assert expected in line
    # Nothing written: no key made up in its place, not a byte of the database changed.
    after = fingerprint(kiosk_data)
    for name in ("smis.sqlite3", "smis.key"):
        assert after.get(name) == before.get(name), name
    assert not (kiosk_data / "smis.key").exists() or fault != "missing"
    assert_no_plaintext(kiosk_data, person_id)


def test_read_only_sqlite_at_start_is_one_line(
    kiosk_data: Path, immutable: Callable[[Path], None]
) -> None:
    immutable(kiosk_data / "smis.sqlite3")
    line = one_chinese_line(smis_run(kiosk_data))
    assert "無法寫入" in line and "唯讀" in line and "readonly" not in line
