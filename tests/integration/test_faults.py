"""Faults a kiosk meets in real life, on the real stack:
pyscard → the private pcscd of `make test` → vsmartcard-vpcd → virtual cards, and the
private PostgreSQL of `make test` (restarted with its pg_ctl, SMIS_TEST_PG_CTL).

* pcscd killed (SIGKILL) while the card signs, and restarted: the login fails with a
  clear message at once, the monitor reports the card out and in again, and the next
  login works; pcscd restarted between reading the card and the PIN: the login works.
* The card pulled out during PIN entry, during VERIFY and during signing: a clear
  message, nothing written (no login, no audit event), the PIN counter untouched by a
  card that was not there; the card put back logs in.
* PostgreSQL restarted in the middle of an application's transaction: the transaction
  is retried and written exactly once; PostgreSQL down: a clear 中文 error and nothing
  written, and once it is back the same connection thread works again.
* A read-only SQLite file (immutable, so even root cannot write it): a clear error at
  start (boot) and at submit, nothing half-written.
* The clock far in the past or future: the validator and the kiosk's own login path
  name the right reason (not yet valid / expired) and the right 民國 date.

Every test is bounded in time (the autouse ``time_limit``) and every wait has a deadline.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import peewee
import pytest

from card.errors import CardError, CardRemoved, CertificateProblem, NoCard, PcscUnavailable
from card.readers.pcsc import PcscBackend, ReaderMonitor
from card.sim.testpki import TestPki, make_test_pki
from card.sim.virtual import VirtualPivCard
from card.sim.vpcd import VpcdCard
from card.validation import CertificateValidator
from models.db import DatabaseUnavailable, close_database, open_database
from models.schema import Account, AuditEvent, ConsentRecord, PermissionRequest, Role, UnitKind
from smis_tui.cli import main
from smis_tui.core.clock import taiwan_date
from smis_tui.core.config import Settings
from smis_tui.core.rocdate import to_roc
from smis_tui.services import Services, build_services
from smis_tui.services.accounts import RoleChoice
from smis_tui.services.calls import run_call
from smis_tui.services.card_login import CardLoginService
from tests.conftest import postgres_admin_url, through_pgbouncer
from tests.helpers import card_proof, form, new_person_id, time_limit, unit_of_kind
from tests.integration.test_card_login_pcsc import PIN, PulledOutWhileSigning, approved
from tests.integration.test_pcsc import (
    READER_0,
    Events,
    pcscd_ctl,
    plug,
    present,
    unplug,
    wait_until,
)

TIME_LIMIT_S = 90


@pytest.fixture(autouse=True)
def limited() -> Iterator[None]:
    """No fault may hang a test: fail it after TIME_LIMIT_S."""
    with time_limit(TIME_LIMIT_S):
        yield


# ---------------------------------------------------------------------- helpers


def pg_ctl(*args: str) -> None:
    """Run scripts/test-services.sh's control script of the test PostgreSQL."""
    ctl = os.environ.get("SMIS_TEST_PG_CTL")
    if not ctl:
        postgres_admin_url()  # fails under CI, skips elsewhere
        if os.environ.get("CI") or os.environ.get("SMIS_REQUIRE_POSTGRES"):
            pytest.fail("SMIS_TEST_PG_CTL is not set: run the tests with `make test`")
        pytest.skip("SMIS_TEST_PG_CTL unset; `make test` runs these")
    subprocess.run([ctl, *args], check=True, timeout=60, capture_output=True)


def pg_running() -> bool:
    ctl = os.environ["SMIS_TEST_PG_CTL"]
    return subprocess.run([ctl, "status"], timeout=30, check=False).returncode == 0


@pytest.fixture
def pg_services(postgres_settings: Settings) -> Iterator[Services]:
    """Services on a fresh PostgreSQL database; PostgreSQL is running again afterwards
    (before the database is dropped), whatever the test did to it."""
    pg_ctl("status")
    open_database(postgres_settings.database_url, postgres_settings.sqlite_path)
    try:
        yield build_services(postgres_settings)
    finally:
        if not pg_running():
            pg_ctl("start")


@pytest.fixture
def sqlite_services(sqlite_settings: Settings) -> Services:
    open_database(sqlite_settings.database_url, sqlite_settings.sqlite_path)
    return build_services(sqlite_settings)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


def logins_over_pcscd(services: Services, pki: TestPki) -> CardLoginService:
    pcscd_ctl()
    return CardLoginService(
        PcscBackend(),
        CertificateValidator(pki.ca_dir, pki.crl_dir),
        services.login,
        services.accounts,
    )


def pcscd_pid() -> int:
    pid = int(subprocess.run([pcscd_ctl(), "pid"], capture_output=True, text=True).stdout)
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "pcscd"
    return pid


def logins_recorded() -> int:
    return AuditEvent.select().where(AuditEvent.action == "login").count()


class Interrupting:
    """A virtual PIV card that runs ``fault`` (on a thread of its own) when the command
    with instruction byte ``ins`` arrives, then answers late, after ``stall`` s (into a
    connection that is gone by then)."""

    def __init__(self, inner: VirtualPivCard, ins: int, fault: Callable[[], None]) -> None:
        self.inner = inner
        self.ins = ins
        self.fault = fault
        self.fired = threading.Event()
        self.stall = 1.0

    @property
    def atr(self) -> bytes:
        return self.inner.atr

    def power_off(self) -> None:
        self.inner.power_off()

    def reset(self) -> None:
        self.inner.reset()

    def process(self, apdu: bytes) -> bytes:
        if apdu[1] == self.ins and not self.fired.is_set():
            self.fired.set()
            threading.Thread(target=self.fault, daemon=True).start()
            time.sleep(self.stall)
        return self.inner.process(apdu)


def timed(fn: Callable[[], object], limit: float) -> float:
    started = time.monotonic()
    try:
        fn()
    finally:
        elapsed = time.monotonic() - started
        assert elapsed < limit, f"took {elapsed:.1f} s"
    return elapsed


# ---------------------------------------------------------------------- pcscd


def test_pcscd_killed_while_the_card_signs_then_restarted(
    sqlite_services: Services, pki: TestPki
) -> None:
    """SIGKILL, not a polite stop: the login in progress fails at once with a clear
    message; the monitor reports the card out (the app goes back to a cleared login
    screen) and in again when pcscd is back; then the login works."""
    ctl = pcscd_ctl()
    user = pki.user("moica")
    approved(sqlite_services, user)
    logins = logins_over_pcscd(sqlite_services, pki)
    pid = pcscd_pid()
    card = Interrupting(
        VirtualPivCard(user.cert_der, user.key, PIN), 0x87, lambda: os.kill(pid, signal.SIGKILL)
    )
    vcard = VpcdCard(card)
    events = Events()
    monitor = ReaderMonitor(poll_timeout=0.5, backoff_initial=0.05, backoff_max=0.5)
    monitor.subscribe(events)
    monitor.subscribe_service(events.service.put)
    monitor.start()
    plug(vcard)
    try:
        events.expect(READER_0, True)
        assert logins.read(READER_0).identity.name == user.cn
        with pytest.raises((PcscUnavailable, CardRemoved)) as lost:
            timed(lambda: logins.authenticate(READER_0, PIN), limit=15)
        assert card.fired.is_set()
        assert str(lost.value).startswith(("讀卡機服務（pcscd）", "卡片已被移除"))
        events.expect(READER_0, False, timeout=10)
        events.expect_service(False, timeout=10)
        assert logins_recorded() == 0
    finally:
        subprocess.run([ctl, "start"], check=True, timeout=30)
    try:
        # The card is still in the reader: vpcd reconnects, the monitor sees it again.
        events.expect_service(True, timeout=15)
        events.expect(READER_0, True, timeout=15)
        wait_until(lambda: present(READER_0), timeout=10, what="the card seen again")
        result = logins.authenticate(READER_0, PIN)
        assert result.needs_person_id is not None  # the card signed: a first login
        assert logins_recorded() == 0  # nothing is recorded before the ID is bound
    finally:
        monitor.stop()
        unplug(vcard)


def test_pcscd_restarted_between_reading_the_card_and_the_pin(
    sqlite_services: Services, pki: TestPki
) -> None:
    ctl = pcscd_ctl()
    user = pki.user("moica")
    logins = logins_over_pcscd(sqlite_services, pki)
    vcard = VpcdCard(VirtualPivCard(user.cert_der, user.key, PIN))
    plug(vcard)
    try:
        assert logins.read(READER_0).identity.name == user.cn
        subprocess.run([ctl, "restart"], check=True, timeout=30)
        wait_until(lambda: present(READER_0), timeout=10, what="the card seen again")
        assert logins.authenticate(READER_0, PIN).needs_person_id is not None
    finally:
        unplug(vcard)


def test_pcscd_down_is_a_clear_message_not_a_hang(sqlite_services: Services, pki: TestPki) -> None:
    ctl = pcscd_ctl()
    logins = logins_over_pcscd(sqlite_services, pki)
    subprocess.run([ctl, "stop"], check=True, timeout=30)
    try:
        for attempt in (lambda: logins.read(READER_0), lambda: logins.authenticate(READER_0, PIN)):
            with pytest.raises(PcscUnavailable) as down:
                timed(attempt, limit=5)
            assert str(down.value).startswith("讀卡機服務（pcscd）未啟動或無法連線")
    finally:
        subprocess.run([ctl, "start"], check=True, timeout=30)


# ---------------------------------------------------------------------- the card pulled out


def test_card_removed_during_pin_entry(sqlite_services: Services, pki: TestPki) -> None:
    """Read, then pulled out while the PIN is typed: the PIN goes nowhere."""
    user = pki.user("moica")
    approved(sqlite_services, user)
    logins = logins_over_pcscd(sqlite_services, pki)
    inner = VirtualPivCard(user.cert_der, user.key, PIN)
    vcard = VpcdCard(inner)
    plug(vcard)
    assert logins.read(READER_0).identity.name == user.cn
    unplug(vcard)
    with pytest.raises(NoCard) as gone:
        timed(lambda: logins.authenticate(READER_0, PIN), limit=5)
    assert str(gone.value).startswith("請插入卡片")
    assert inner.tries_left == inner.max_tries and logins_recorded() == 0
    plug(vcard)  # put back: it logs in
    try:
        assert logins.authenticate(READER_0, PIN).needs_person_id is not None
    finally:
        unplug(vcard)


def test_card_removed_while_the_pin_is_verified(sqlite_services: Services, pki: TestPki) -> None:
    user = pki.user("moica")
    logins = logins_over_pcscd(sqlite_services, pki)
    inner = VirtualPivCard(user.cert_der, user.key, PIN)
    card = Interrupting(inner, 0x20, lambda: vcard.remove())
    vcard = VpcdCard(card)
    plug(vcard)
    with pytest.raises(CardRemoved) as gone:
        timed(lambda: logins.authenticate(READER_0, PIN), limit=10)
    assert str(gone.value) == "卡片已被移除，請重新插入卡片"
    assert card.fired.is_set() and logins_recorded() == 0
    wait_until(lambda: not present(READER_0), what="pcscd to see the reader empty")


def test_card_removed_during_signing_logs_nobody_in(
    sqlite_services: Services, pki: TestPki
) -> None:
    user = pki.user("moica")
    account_id = approved(sqlite_services, user)
    logins = logins_over_pcscd(sqlite_services, pki)
    # Bound already, so a signature would log straight in.
    proof_card = VpcdCard(VirtualPivCard(user.cert_der, user.key, PIN))
    plug(proof_card)
    try:
        proof = logins.authenticate(READER_0, PIN).needs_person_id
        assert proof is not None
        logins.bind(proof, user.person_id)
    finally:
        unplug(proof_card)
    before = logins_recorded()
    last_login = Account.get_by_id(account_id).last_login_at
    card = PulledOutWhileSigning(VirtualPivCard(user.cert_der, user.key, PIN))
    vcard = VpcdCard(card)
    card.vcard = vcard
    plug(vcard)
    with pytest.raises(CardRemoved):
        timed(lambda: logins.authenticate(READER_0, PIN), limit=10)
    assert card.pulled.is_set()
    wait_until(lambda: not present(READER_0), what="pcscd to see the reader empty")
    assert logins_recorded() == before
    assert Account.get_by_id(account_id).last_login_at == last_login


# ---------------------------------------------------------------------- PostgreSQL


def application(person_id: str) -> object:
    unit = unit_of_kind(UnitKind.CLINIC, with_category="emerging")
    roles = {"ppe": RoleChoice(Role.OFFICER), "emerging": RoleChoice(Role.VIEWER, ("COVID-19",))}
    return form(person_id, unit, roles)


def stored(services: Services, person_id: str) -> tuple[int, int, int, int]:
    """(accounts, requests, consents, audit events) stored for ``person_id``: an
    application writes two audit events, its card's binding and itself."""
    account = services.accounts.find_by_person_id(person_id)
    if account is None:
        return (0, 0, 0, 0)
    return (
        1,
        PermissionRequest.select().where(PermissionRequest.account == account.id).count(),
        ConsentRecord.select().where(ConsentRecord.account == account.id).count(),
        AuditEvent.select().where(AuditEvent.target_id == account.id).count(),
    )


def test_postgres_restarted_during_a_submit_is_retried_and_written_once(
    pg_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The account, its requests and its consent are in the transaction when the
    server restarts (before the audit event is appended): the whole transaction runs
    again on a new connection, and everything is there exactly once."""
    services = pg_services
    person_id = new_person_id()
    audit = services.accounts._audit
    restarts: list[float] = []

    def restart_then_audit(*args: object, **kwargs: object) -> object:
        if not restarts:
            restarts.append(timed(lambda: pg_ctl("restart"), limit=30))
        return audit(*args, **kwargs)  # type: ignore[operator]

    monkeypatch.setattr(services.accounts, "_audit", restart_then_audit)
    proof = card_proof(services, person_id)
    account_id = services.accounts.apply(application(person_id), proof)  # type: ignore[arg-type]
    assert restarts
    assert stored(services, person_id) == (1, 2, 1, 2)
    assert services.accounts.view(account_id).pending()
    assert services.audit.verify().ok


def test_postgres_down_during_a_submit_is_a_clear_error_then_works_again(
    pg_services: Services,
) -> None:
    services = pg_services
    person_id = new_person_id()
    app_form = application(person_id)
    proof = card_proof(services, person_id)
    services.units.get(unit_of_kind(UnitKind.CLINIC).code)  # this thread has a connection
    pg_ctl("stop")
    with pytest.raises(DatabaseUnavailable) as down:
        timed(lambda: services.accounts.apply(app_form, proof), limit=20)  # type: ignore[arg-type]
    message = str(down.value)
    assert message.startswith("無法連線資料庫") and "\n" not in message
    pg_ctl("start")
    # The same thread (a kiosk's worker threads are reused) works again at once.
    account_id = services.accounts.apply(app_form, proof)  # type: ignore[arg-type]
    assert stored(services, person_id) == (1, 2, 1, 2)
    assert services.accounts.view(account_id).data.name == "王小明"
    assert services.audit.verify().ok


def test_reads_after_a_postgres_restart_reconnect(pg_services: Services) -> None:
    """A connection the server dropped is replaced at its next use (outside a
    transaction), not kept failing for the life of the thread."""
    services = pg_services
    code = unit_of_kind(UnitKind.CLINIC).code
    assert services.units.get(code) is not None
    pg_ctl("restart")
    # The first use may learn of the restart (the server's goodbye is only read then).
    try:
        services.units.get(code)
    except (peewee.OperationalError, peewee.InterfaceError, DatabaseUnavailable):
        pass
    assert services.units.get(code) is not None
    assert services.units.get(code) is not None


def test_postgresql_down_behind_pgbouncer_is_one_line_for_kiosk_and_command(
    pg_services: Services,
    postgres_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Through PgBouncer the connection opens whatever the server's state: the read
    itself fails, after PgBouncer's query_wait_timeout (or at once while it retries
    the server login). The kiosk says the database is unreachable, and so does a
    command, in one line without a traceback."""
    assert postgres_settings.database_url is not None
    settings = postgres_settings.with_overrides(
        database_url=through_pgbouncer(postgres_settings.database_url)
    )
    open_database(settings.database_url, settings.sqlite_path)
    services = build_services(settings)
    code = unit_of_kind(UnitKind.CLINIC).code
    assert services.units.get(code) is not None
    pg_ctl("stop")
    read = run_call(lambda: services.units.get(code))
    assert isinstance(read.error, DatabaseUnavailable) and not read.unexpected
    assert str(read.error) == "資料庫暫時無法連線，請稍後再試"
    close_database()
    monkeypatch.setenv("SMIS_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("DATABASE_URL", str(settings.database_url))
    capsys.readouterr()
    assert main(["audit", "verify"]) == 1
    said = capsys.readouterr().err
    assert said.startswith("smis-tui: ") and "資料庫" in said and "無法連線" in said, said
    assert said.count("\n") == 1 and "Traceback" not in said
    pg_ctl("start")
    # PgBouncer refuses clients for server_login_retry after a failed server login.
    deadline = time.monotonic() + 30
    while True:
        try:
            open_database(settings.database_url, settings.sqlite_path)
            break
        except DatabaseUnavailable:
            assert time.monotonic() < deadline, "PgBouncer never reached the server again"
            time.sleep(0.5)
    assert services.units.get(code) is not None


# ---------------------------------------------------------------------- read-only SQLite


@pytest.fixture
def immutable() -> Iterator[Callable[[Path], None]]:
    """chattr +i: not even root may write the file (root ignores mode bits)."""
    done: list[Path] = []

    def make(path: Path) -> None:
        result = subprocess.run(["chattr", "+i", str(path)], capture_output=True, timeout=10)
        if result.returncode != 0:
            reason = f"chattr +i failed here: {result.stderr.decode(errors='replace').strip()}"
            if os.environ.get("CI") or os.environ.get("SMIS_REQUIRE_POSTGRES"):
                pytest.fail(reason)
            pytest.skip(reason)
        done.append(path)

    yield make
    for path in done:
        subprocess.run(["chattr", "-i", str(path)], check=False, timeout=10)


def test_read_only_sqlite_at_start_is_refused_clearly(
    sqlite_settings: Settings, immutable: Callable[[Path], None]
) -> None:
    from smis_tui.boot import boot, operator_errors

    immutable(sqlite_settings.sqlite_path)
    with pytest.raises(DatabaseUnavailable) as refused:
        boot(sqlite_settings, demo=False)
    assert isinstance(refused.value, operator_errors())
    message = str(refused.value)
    assert "唯讀" in message and "\n" not in message and "readonly" not in message


def test_read_only_sqlite_at_submit_is_a_clear_error_and_nothing_is_written(
    sqlite_services: Services, sqlite_settings: Settings, immutable: Callable[[Path], None]
) -> None:
    person_id = new_person_id()
    app_form = application(person_id)
    proof = card_proof(sqlite_services, person_id)
    immutable(sqlite_settings.sqlite_path)
    # The file is opened again (a write permission is checked when a file is opened).
    close_database()
    with pytest.raises(DatabaseUnavailable) as refused:
        timed(
            lambda: sqlite_services.accounts.apply(app_form, proof),  # type: ignore[arg-type]
            limit=15,
        )
    assert "唯讀" in str(refused.value)
    assert stored(sqlite_services, person_id) == (0, 0, 0, 0)


# ---------------------------------------------------------------------- the clock


@pytest.fixture(scope="module")
def evening_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    """A PKI made at 20:00 UTC: every date falls on the next day in Taiwan, so a date
    shown in UTC instead of Taiwan time would be caught."""
    now = dt.datetime.now(dt.UTC).replace(hour=20, minute=0, second=0, microsecond=0)
    return make_test_pki(tmp_path_factory.mktemp("evening-pki"), now=now)


def taiwan_roc(when: dt.datetime) -> str:
    return to_roc(taiwan_date(when))


@pytest.mark.parametrize(
    ("shift", "reason"),
    [(-dt.timedelta(days=365 * 30), "not_yet_valid"), (dt.timedelta(days=365 * 30), "expired")],
)
def test_clock_far_off_names_the_right_reason_and_date(
    evening_pki: TestPki, shift: dt.timedelta, reason: str
) -> None:
    validator = CertificateValidator(evening_pki.ca_dir, evening_pki.crl_dir)
    cert = evening_pki.user("moica").certificate
    validator.validate(cert, at=dt.datetime.now(dt.UTC))  # good today
    with pytest.raises(CertificateProblem) as problem:
        validator.validate(cert, at=dt.datetime.now(dt.UTC) + shift)
    assert problem.value.reason == reason
    if reason == "not_yet_valid":
        date = taiwan_roc(cert.not_valid_before_utc)
        assert str(problem.value) == f"憑證自 {date} 起才生效"
    else:
        date = taiwan_roc(cert.not_valid_after_utc)
        assert str(problem.value) == f"憑證已於 {date} 到期"
    assert date != to_roc(cert.not_valid_after_utc.date())  # Taiwan's day, not UTC's
    # A naive time is taken as UTC, not as the machine's local time.
    naive = (dt.datetime.now(dt.UTC) + shift).replace(tzinfo=None)
    with pytest.raises(CertificateProblem) as again:
        validator.validate(cert, at=naive)
    assert again.value.reason == reason


class _FrozenDatetime(dt.datetime):
    moment = dt.datetime.now(dt.UTC)

    @classmethod
    def now(cls, tz: dt.tzinfo | None = None) -> dt.datetime:  # type: ignore[override]
        return cls.moment if tz is None else cls.moment.astimezone(tz)


@pytest.mark.parametrize(("years", "reason"), [(-30, "not_yet_valid"), (30, "expired")])
def test_the_kiosk_login_path_checks_at_the_machines_clock(
    sqlite_services: Services,
    sqlite_settings: Settings,
    evening_pki: TestPki,
    monkeypatch: pytest.MonkeyPatch,
    years: int,
    reason: str,
) -> None:
    """The kiosk's own card runtime (pcsc_runtime, as `smis-tui run` builds it) asks
    the validator about *now*: with the machine's clock set decades off, a good card is
    named not yet valid / expired before the PIN, and the PIN never reaches the card."""
    import dataclasses

    from smis_tui.services import card_login
    from smis_tui.services.card_runtime import pcsc_runtime

    pcscd_ctl()
    frozen = type("Frozen", (_FrozenDatetime,), {})
    frozen.moment = dt.datetime.now(dt.UTC) + dt.timedelta(days=365 * years)
    monkeypatch.setattr(card_login, "dt", types.SimpleNamespace(datetime=frozen, UTC=dt.UTC))
    settings = dataclasses.replace(sqlite_settings, ca_dir=evening_pki.ca_dir)
    runtime = pcsc_runtime(sqlite_services, settings)
    user = evening_pki.user("moica")
    inner = VirtualPivCard(user.cert_der, user.key, PIN)
    vcard = VpcdCard(inner)
    plug(vcard)
    try:
        preview = runtime.login.read(READER_0)
        assert preview.problem is not None and preview.problem.reason == reason
        expected = taiwan_roc(
            user.certificate.not_valid_before_utc
            if reason == "not_yet_valid"
            else user.certificate.not_valid_after_utc
        )
        assert expected in str(preview.problem)
        with pytest.raises(CertificateProblem) as refused:
            runtime.login.authenticate(READER_0, PIN)
        assert refused.value.reason == reason
        assert inner.tries_left == inner.max_tries  # no VERIFY was sent
    finally:
        runtime.close()
        unplug(vcard)


def test_card_errors_are_chinese_one_liners() -> None:
    for error in (PcscUnavailable(), CardRemoved(), NoCard("Virtual PCD 00 00")):
        assert isinstance(error, CardError) and "\n" not in str(error)
