"""Security checks as tests.

(a) the PIN of a full card login is in no log, database file, audit row or error;
(b) no national ID is in plaintext in the SQLite file, its WAL, `sqlite3 .dump` or
    pg_dump; (c) the audit chain names the first bad row after an edit, a deletion,
    an insertion or a reordering; (d) `smis-tui db init` creates private files;
(e) a 管理者 of one unit cannot reach another unit's data through the services the
    screens use; (f) the review rule (docs/architecture.md, "Lifecycle"), recomputed
    here independently, matches every (reviewer, pending request) decision over the
    demo data and a generated CDC → bureau → clinic tree with every role in every
    category.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import sqlite3
import stat
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

from card.errors import CardError, WrongPin
from card.sim.virtual import VirtualPivCard
from models.db import close_database, database_proxy, open_database, write_transaction
from models.purpose import mark_demo_database
from models.schema import Account, AuditEvent, PermissionRequest, Unit
from smis_tui.core.config import Settings
from smis_tui.core.domain import AccountStatus, RequestStatus, Role, UnitKind
from smis_tui.demo import DemoCard, create_demo, virtual_card
from smis_tui.services import Services, build_services
from smis_tui.services.audit import _row_hash
from smis_tui.services.auth import LoginState
from smis_tui.services.card_runtime import DEMO_READER, CardRuntime, demo_runtime
from smis_tui.services.errors import NotAllowed, ServiceError
from tests.helpers import (
    approved_applicant,
    audited_applications,
    bare_account,
    categories_of,
    execute_sql,
    form,
    grant,
    make_admin,
    new_person_id,
    send_application,
    unit_of_kind,
)
from tests.hostile import STRESS

REPO = Path(__file__).resolve().parents[2]
# Not a demo PIN (the demo keeps its PINs in the database on purpose, to show them):
# a PIN that exists nowhere but in this test and on the card.
SECRET_PIN = "80613579"
WRONG_PIN = "97531086"


def _forms(secret: str) -> list[bytes]:
    """The byte forms a PIN could take in a file: ASCII, UTF-16 both ways, hex text."""
    return [
        secret.encode("ascii"),
        secret.encode("utf-16-le"),
        secret.encode("utf-16-be"),
        secret.encode("ascii").hex().encode("ascii"),
        secret.encode("ascii").hex().upper().encode("ascii"),
    ]


def _found(blob: bytes, secret: str) -> list[str]:
    return [repr(form) for form in _forms(secret) if form in blob]


def _sqlite_files(settings: Settings) -> bytes:
    path = settings.sqlite_path
    return b"".join(
        p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()
    )


@pytest.fixture
def demo(sqlite_settings: Settings, tmp_path: Path) -> Iterator[tuple[Services, CardRuntime]]:
    open_database(sqlite_settings.database_url, sqlite_settings.sqlite_path)
    services = build_services(sqlite_settings)
    mark_demo_database()
    create_demo(services, tmp_path / "demo-pki")
    yield services, demo_runtime(services, tmp_path / "demo-pki")


def _demo_card(services: Services, runtime: CardRuntime, user: str, pin: str) -> VirtualPivCard:
    from smis_tui.demo import load_demo_cards

    card: DemoCard = next(c for c in load_demo_cards() if c.user == user)
    assert runtime.demo_pki is not None
    return virtual_card(runtime.demo_pki, dataclasses.replace(card, pin=pin))


# --------------------------------------------------------------------------- (a) the PIN


def test_the_pin_leaves_no_trace(
    demo: tuple[Services, CardRuntime],
    sqlite_settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    services, runtime = demo
    caplog.set_level(logging.DEBUG)
    assert not _found(_sqlite_files(sqlite_settings), SECRET_PIN)  # not there by chance
    assert runtime.demo_backend is not None
    runtime.demo_backend.insert(DEMO_READER, _demo_card(services, runtime, "moica", SECRET_PIN))

    # A failed login first (wrong PIN), then the full login with the right one.
    with pytest.raises(WrongPin) as failed:
        runtime.login.authenticate(DEMO_READER, WRONG_PIN)
    errors: list[BaseException] = [failed.value]
    result = runtime.login.authenticate(DEMO_READER, bytearray(SECRET_PIN.encode()))
    assert result.outcome is not None and result.outcome.state == LoginState.ACTIVE
    # A PIN typed into the wrong place (format check) and a card pulled mid-login.
    for bad in ("12", SECRET_PIN + "x"):
        with pytest.raises(CardError) as caught:
            runtime.login.authenticate(DEMO_READER, bad)
        errors.append(caught.value)
    runtime.demo_backend.remove(DEMO_READER)
    with pytest.raises(CardError) as gone:
        runtime.login.authenticate(DEMO_READER, SECRET_PIN)
    errors.append(gone.value)

    for pin in (SECRET_PIN, WRONG_PIN):
        for error in errors:
            text = "".join(traceback.format_exception(error)) + repr(error) + repr(vars(error))
            assert pin not in text, type(error).__name__
        logged = "\n".join(
            f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records
        )
        assert not _found(logged.encode("utf-8"), pin)
        for event in AuditEvent.select():
            row = f"{event.actor_label}|{event.action}|{event.target_id}|{event.details}"
            assert pin not in row
        assert not _found(_sqlite_files(sqlite_settings), pin)
    assert AuditEvent.select().where(AuditEvent.action == "login").count() >= 1
    close_database()  # checkpoints the WAL into the file: look again
    for pin in (SECRET_PIN, WRONG_PIN):
        assert not _found(_sqlite_files(sqlite_settings), pin)


# --------------------------------------------------------------------------- (b) national IDs


def _demo_person_ids(tmp_path: Path) -> list[str]:
    from card.sim.testpki import make_test_pki

    # create_demo wrote the PKI there; re-reading it gives the users' person IDs.
    pki = make_test_pki(tmp_path / "demo-pki")
    return sorted({u.person_id for u in pki.users.values() if u.person_id})


def _id_forms(person_id: str) -> list[bytes]:
    return [
        person_id.encode("ascii"),
        person_id.lower().encode("ascii"),
        person_id.encode("utf-16-le"),
        person_id.encode("utf-16-be"),
    ]


def _seed_people(services: Services) -> list[str]:
    """Applicants beside the demo ones, with and without a decision and a trail."""
    clinic = unit_of_kind(UnitKind.CLINIC, with_category="ppe")
    admin = make_admin(services, unit_of_kind(UnitKind.CDC))
    people = [new_person_id() for _ in range(3)]
    for person in people:
        approved_applicant(services, clinic, admin.id, person_id=person)
    services.control.search_trail(admin.id, person_id=people[0])  # a look-up by ID
    return people


def test_no_national_id_in_the_sqlite_file_or_its_dump(
    demo: tuple[Services, CardRuntime], sqlite_settings: Settings, tmp_path: Path
) -> None:
    services, _ = demo
    people = _demo_person_ids(tmp_path) + _seed_people(services)
    assert len(people) >= 6
    live = _sqlite_files(sqlite_settings)
    close_database()
    path = sqlite_settings.sqlite_path
    dump = subprocess.run(
        ["sqlite3", str(path), ".dump"], capture_output=True, check=True, timeout=120
    ).stdout
    with sqlite3.connect(path) as conn:
        iterdump = "\n".join(conn.iterdump()).encode("utf-8")
    assert b"INSERT INTO" in dump and b"person_id_cipher" in dump
    for blob in (live, _sqlite_files(sqlite_settings), dump, iterdump):
        for person in people:
            assert not [f for f in _id_forms(person) if f in blob], person[:3]


@pytest.mark.postgres
def test_no_national_id_in_pg_dump(postgres_settings: Settings, tmp_path: Path) -> None:
    open_database(postgres_settings.database_url, postgres_settings.sqlite_path)
    services = build_services(postgres_settings)
    mark_demo_database()
    create_demo(services, tmp_path / "demo-pki")
    people = _demo_person_ids(tmp_path) + _seed_people(services)
    close_database()
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"), key=lambda p: p.parts[-3])
    pg_dump = str(bins[-1]) if bins else "pg_dump"
    assert postgres_settings.database_url is not None
    dump = subprocess.run(
        [pg_dump, "--no-owner", postgres_settings.database_url],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    assert b"COPY public.account" in dump
    for person in people:
        assert not [f for f in _id_forms(person) if f in dump], person[:3]


# --------------------------------------------------------------------------- (c) audit chain


@pytest.fixture
def chain(services: Services) -> list[int]:
    return audited_applications(services, "甲乙丙丁戊")


def _forge(after: AuditEvent, **fields: object) -> None:
    """A row written by a forger who knows the algorithm: linked to ``after`` and with
    a correct hash of its own."""
    values = {
        "at": after.at,
        "actor": None,
        "actor_label": "forger",
        "action": "approve_request",
        "target_type": "permission",
        "target_id": "1",
        "details": "{}",
        "prev_hash": after.row_hash,
        "row_hash": "",
    }
    forged = AuditEvent(**{**values, **fields})
    forged.row_hash = _row_hash(forged)
    forged.save(force_insert=True)


# Every column of a row, edited one at a time (a new value of the column's type).
EDITS = {
    "at": "at = at + INTERVAL '1 second'",
    "actor_label": "actor_label = 'A12****000'",
    "action": "action = 'reject_request'",
    "target_type": "target_type = 'permission'",
    "target_id": "target_id = '999'",
    "unit_id": "unit_id = NULL",
    "details": "details = '{}'",
    "prev_hash": "prev_hash = '" + "0" * 64 + "'",
    "row_hash": "row_hash = '" + "f" * 64 + "'",
}


@pytest.mark.parametrize("column", sorted(EDITS))
def test_an_edit_of_any_column_names_that_row(
    services: Services, chain: list[int], column: str
) -> None:
    edit = EDITS[column]
    if column == "at" and "Postgres" not in type(database_proxy.obj).__name__:
        edit = "at = '2001-01-01 00:00:00'"
    execute_sql(f"UPDATE audit_event SET {edit} WHERE id = ?", (chain[2],))  # noqa: S608
    result = services.audit.verify()
    assert (result.ok, result.first_bad_id, result.checked) == (False, chain[2], 2)


def test_a_deleted_middle_row_names_the_next_one(services: Services, chain: list[int]) -> None:
    execute_sql("DELETE FROM audit_event WHERE id = ?", (chain[2],))
    result = services.audit.verify()
    assert (result.ok, result.first_bad_id, result.code) == (False, chain[3], "prev_hash")


def test_a_forged_row_with_a_correct_hash_is_still_found(
    services: Services, chain: list[int]
) -> None:
    """A forger who knows the algorithm replaces row 3 by a row whose own hash is
    right: the next row's link no longer matches."""
    original = AuditEvent.get_by_id(chain[2])
    execute_sql("DELETE FROM audit_event WHERE id = ?", (chain[2],))
    _forge(AuditEvent.get_by_id(chain[1]), id=chain[2], at=original.at)
    result = services.audit.verify()
    assert (result.ok, result.first_bad_id, result.code) == (False, chain[3], "prev_hash")


def test_an_inserted_row_at_the_end_is_named(services: Services, chain: list[int]) -> None:
    _forge(AuditEvent.get_by_id(chain[-1]))
    result = services.audit.verify()
    # Every row links, but the head kept by the database still names the old last row.
    assert not result.ok and result.code == "head_mismatch"


def test_an_inserted_row_in_the_middle_is_named(services: Services, chain: list[int]) -> None:
    """Rows 3.. are moved up one id to make room for a forged row 3 linked to row 2."""
    for row_id in reversed(chain[2:]):
        execute_sql("UPDATE audit_event SET id = ? WHERE id = ?", (row_id + 100, row_id))
    _forge(AuditEvent.get_by_id(chain[1]), id=chain[2])
    result = services.audit.verify()
    assert (result.ok, result.first_bad_id, result.code) == (False, chain[2] + 100, "prev_hash")


def test_reordered_rows_are_named(services: Services, chain: list[int]) -> None:
    a, b = chain[1], chain[3]
    execute_sql("UPDATE audit_event SET id = ? WHERE id = ?", (-1, a))
    execute_sql("UPDATE audit_event SET id = ? WHERE id = ?", (a, b))
    execute_sql("UPDATE audit_event SET id = ? WHERE id = ?", (b, -1))
    result = services.audit.verify()
    assert (result.ok, result.first_bad_id) == (False, a)


def test_the_cli_reports_the_first_bad_row(sqlite_settings: Settings) -> None:
    open_database(None, sqlite_settings.sqlite_path)
    services = build_services(sqlite_settings)
    second = audited_applications(services, "甲乙丙")[1]
    execute_sql("UPDATE audit_event SET details = '{}' WHERE id = ?", (second,))
    close_database()
    env = {**os.environ, "SMIS_DATA_DIR": str(sqlite_settings.data_dir)}
    env.pop("DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "smis_tui.cli", "audit", "verify"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 3 and f"#{second}" in done.stderr
    assert "Traceback" not in done.stderr


# --------------------------------------------------------------------------- (d) file modes


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o000])
@pytest.mark.parametrize("via_url", [False, True], ids=["data-dir", "sqlite-url"])
def test_db_init_creates_private_files(tmp_path: Path, umask: int, via_url: bool) -> None:
    data = tmp_path / "new" / "data"
    env = {**os.environ, "SMIS_DATA_DIR": str(data)}
    env.pop("SMIS_KEY_FILE", None)
    db_file = data / "smis.sqlite3"
    if via_url:
        db_file = tmp_path / "elsewhere" / "db" / "smis.sqlite3"
        env["DATABASE_URL"] = f"sqlite:///{db_file}"
    else:
        env.pop("DATABASE_URL", None)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import os,sys; os.umask({umask}); "
            "from smis_tui.cli import main; sys.exit(main(['db', 'init', '--units', '30']))",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    key = data / "smis.key"
    assert _mode(key) == 0o600
    assert _mode(data) & 0o077 == 0, oct(_mode(data))
    for path in (db_file, Path(f"{db_file}-wal"), Path(f"{db_file}-shm")):
        if path.exists():
            assert _mode(path) & 0o077 == 0, (path.name, oct(_mode(path)))
    assert _mode(db_file.parent) & 0o022 == 0, oct(_mode(db_file.parent))


# --------------------------------------------------------------------------- (e) other units


def _bureaus() -> tuple[Unit, Unit]:
    bureaus = list(
        Unit.select().where((Unit.kind == UnitKind.HEALTH_BUREAU) & Unit.active).order_by(Unit.code)
    )
    first = bureaus[0]
    # Another county in another region: nothing above the clinics is shared but the CDC.
    second = next(b for b in bureaus if b.county != first.county and b.parent != first.parent)
    return first, second


def _clinic_under(bureau: Unit) -> Unit:
    for unit in Unit.select().where((Unit.parent == bureau) & Unit.active).order_by(Unit.code):
        if "ppe" in categories_of(unit) and unit.kind != UnitKind.HEALTH_BUREAU:
            return unit
    raise LookupError(bureau.name)


def test_an_admin_cannot_reach_another_units_data(services: Services) -> None:
    bureau_a, bureau_b = _bureaus()
    clinic_a, clinic_b = _clinic_under(bureau_a), _clinic_under(bureau_b)
    admin_a = make_admin(services, bureau_a)
    cdc = make_admin(services, unit_of_kind(UnitKind.CDC))
    mine, theirs = new_person_id(), new_person_id()
    acc_a = send_application(services, form(mine, clinic_a, name="甲方人員"))
    acc_b = send_application(services, form(theirs, clinic_b, name="乙方人員"))
    pending_b = services.accounts.view(acc_b).pending()[0].id

    # 審核: the queue, its filters, and a decision by id.
    queue = services.review.queue(admin_a.id, page_size=500)
    assert {i.account_id for i in queue.items} == {acc_a}
    assert services.review.queue(admin_a.id, unit=clinic_b.code).total == 0
    assert services.review.queue(admin_a.id, unit_code=clinic_b.code).total == 0
    assert services.review.queue(admin_a.id, county=bureau_b.county).total == 0
    assert bureau_b.county not in services.review.filters(admin_a.id).counties
    for decide in (
        lambda: services.review.approve(admin_a.id, pending_b),
        lambda: services.review.reject(admin_a.id, pending_b, "不同單位"),
    ):
        with pytest.raises(NotAllowed):
            decide()
    batch = services.review.decide_many(admin_a.id, [pending_b], approve=True)
    assert batch.decided == [] and pending_b in batch.failed

    # 帳號管理: listing, search by name / ID / unit, and every action by id.
    services.review.approve(cdc.id, pending_b)
    services.review.approve(admin_a.id, services.accounts.view(acc_a).pending()[0].id)
    listed = services.control.accounts_below(admin_a.id, page_size=500)
    assert acc_b not in {r.account_id for r in listed.rows}
    for query in ({"name": "乙方人員"}, {"name": theirs}, {"unit": clinic_b.code}):
        assert services.control.accounts_below(admin_a.id, **query).total == 0  # type: ignore[arg-type]
    version = Account.get_by_id(acc_b).version
    granted_b = services.accounts.view(acc_b).granted()[0].id
    for act in (
        lambda: services.control.disable_account(admin_a.id, acc_b, version, "越權"),
        lambda: services.control.disable_permission(admin_a.id, acc_b, granted_b, version, "越權"),
    ):
        with pytest.raises(ServiceError):
            act()
    assert Account.get_by_id(acc_b).status == AccountStatus.ACTIVE

    # 軌跡紀錄: only a CDC 管理者 searches; anyone else sees only their own trail.
    with pytest.raises(NotAllowed):
        services.control.search_trail(admin_a.id, person_id=theirs)
    with pytest.raises(NotAllowed):
        services.control.verify_trail(admin_a.id)
    own = services.control.own_trail(acc_a)
    assert own.rows and all(
        r.target_label != f"#{acc_b}" and r.unit_code != clinic_b.code for r in own.rows
    )
    # Nor through the officer's own account: a non-admin sees no queue and no control.
    assert services.review.queue(acc_a).total == 0
    with pytest.raises(NotAllowed):
        services.control.accounts_below(acc_a)


# --------------------------------------------------------------------------- (f) exhaustive


ROLES = (Role.ADMIN, Role.OFFICER, Role.VIEWER)


def _build_tree(services: Services) -> tuple[list[Unit], list[str]]:
    """CDC → two regional centres → a bureau each → a health centre each → clinics
    (units of the generated directory), and two categories all of them handle."""
    cdc = unit_of_kind(UnitKind.CDC)
    units = [cdc]
    bureau_a, bureau_b = _bureaus()
    for bureau, clinics_wanted in ((bureau_a, 2), (bureau_b, 1)):
        region = Unit.get_by_id(bureau.parent_id)
        assert region.kind == UnitKind.REGIONAL_CENTRE and region.parent_id == cdc.id
        centre = (
            Unit.select()
            .where((Unit.parent == bureau) & (Unit.kind == UnitKind.HEALTH_CENTRE))
            .order_by(Unit.code)
            .first()
        )
        units += [region, bureau, centre]
        clinics = [
            u
            for u in Unit.select().where(Unit.parent == centre).order_by(Unit.code)
            if u.kind == UnitKind.CLINIC
        ][:clinics_wanted]
        assert len(clinics) == clinics_wanted
        units.extend(clinics)
    shared = set.intersection(*(categories_of(u) for u in units))
    categories = sorted(shared)[:2]
    assert len(categories) == 2, shared
    return units, categories


class Rule:
    """The review rule, from the rows themselves (not smis_tui.services.scope): a 管理者 of
    the category at the request's unit or above decides 承辦人/瀏覽者 requests, only one
    strictly above decides 管理者 requests; the reviewer is active and not the applicant."""

    def __init__(self) -> None:
        self.parents = dict(Unit.select(Unit.id, Unit.parent).tuples())
        self.status = dict(Account.select(Account.id, Account.status).tuples())
        self.admin_at: dict[int, set[tuple[int, int]]] = {}
        for account, unit, category in (
            PermissionRequest.select(
                PermissionRequest.account, PermissionRequest.unit, PermissionRequest.category
            )
            .where(
                (PermissionRequest.status == RequestStatus.APPROVED)
                & (PermissionRequest.role == Role.ADMIN)
            )
            .tuples()
        ):
            self.admin_at.setdefault(account, set()).add((unit, category))

    def above(self, unit: int) -> list[int]:
        found: list[int] = []
        parent = self.parents.get(unit)
        while parent is not None:
            found.append(parent)
            parent = self.parents.get(parent)
        return found

    def allows(self, reviewer: int, request: PermissionRequest) -> bool:
        if self.status[reviewer] != AccountStatus.ACTIVE or request.account_id == reviewer:
            return False
        above = self.above(request.unit_id)
        units = above if request.role == Role.ADMIN else [request.unit_id, *above]
        grants = self.admin_at.get(reviewer, set())
        return any((unit, request.category_id) in grants for unit in units)


def test_review_scope_for_every_reviewer_and_request(services: Services, tmp_path: Path) -> None:
    mark_demo_database()
    create_demo(services, tmp_path / "demo-pki")
    units, categories = _build_tree(services)
    cdc, _, bureau_a, _, clinic_a1, _, _, bureau_b, _, clinic_b1 = units
    combos = list(itertools.product(units, categories, ROLES))
    for unit, category, role in combos:  # one reviewer holding each grant
        reviewer = bare_account(services, unit, AccountStatus.ACTIVE, category)
        with write_transaction():
            grant(reviewer, unit, category, role, RequestStatus.APPROVED)
    for unit, category, role in combos:  # one pending request of each kind
        applicant = bare_account(services, unit, AccountStatus.PENDING, category)
        with write_transaction():
            grant(applicant, unit, category, role, RequestStatus.PENDING)
    # Two grants at once; a disabled 管理者; 管理者 with a request of their own below.
    both = bare_account(services, clinic_a1, AccountStatus.ACTIVE, categories[0])
    disabled = bare_account(services, cdc, AccountStatus.DISABLED, categories[0])
    with write_transaction():
        grant(both, clinic_a1, categories[0], Role.ADMIN, RequestStatus.APPROVED)
        grant(both, bureau_b, categories[1], Role.ADMIN, RequestStatus.APPROVED)
        grant(disabled, cdc, categories[0], Role.ADMIN, RequestStatus.APPROVED)
        for bureau, clinic in ((bureau_a, clinic_a1), (bureau_b, clinic_b1)):
            for admin in PermissionRequest.select().where(
                (PermissionRequest.unit == bureau) & (PermissionRequest.role == Role.ADMIN)
            ):
                grant(
                    admin.account_id,
                    clinic,
                    admin.category.code,
                    Role.OFFICER,
                    RequestStatus.PENDING,
                )

    rule = Rule()
    reviewers = sorted(
        {
            r.account_id
            for r in PermissionRequest.select().where(
                PermissionRequest.status == RequestStatus.APPROVED
            )
        }
    )
    pending = list(
        PermissionRequest.select()
        .where(PermissionRequest.status == RequestStatus.PENDING)
        .order_by(PermissionRequest.id)
    )
    assert len(reviewers) >= 60 and len(pending) >= 60
    # The queue (what the 審核 screen lists) for every reviewer: every pair.
    allowed_count = 0
    for reviewer in reviewers:
        expected = {q.id for q in pending if rule.allows(reviewer, q)}
        allowed_count += len(expected)
        queued = {i.request_id for i in services.review.queue(reviewer, page_size=10_000).items}
        assert queued == expected, (reviewer, rule.status[reviewer])
    # The decision itself (approve, rolled back) for every pair — under `make test`
    # for the reviewers holding a 管理者 row plus one 承辦人 and one 瀏覽者 (the others
    # hold the same kind of grant at other units and are refused alike); under
    # HYPOTHESIS_PROFILE=stress for all of them.
    holders = [r for r in reviewers if r in rule.admin_at]
    others = [r for r in reviewers if r not in rule.admin_at]
    checked = reviewers if STRESS else holders + others[:1] + others[-1:]
    db = database_proxy.obj
    mismatches: list[tuple[int, int, bool]] = []
    for reviewer in checked:
        for request in pending:
            with db.atomic() as txn:
                try:
                    services.review.approve(reviewer, request.id)
                except NotAllowed:
                    allowed = False
                else:
                    allowed = True
                txn.rollback()
            if allowed != rule.allows(reviewer, request):
                mismatches.append((reviewer, request.id, allowed))
    assert not mismatches
    # The rule is neither "everyone" nor "nobody" over this data.
    assert 0 < allowed_count < len(reviewers) * len(pending) // 2
    assert PermissionRequest.select().where(
        PermissionRequest.status == RequestStatus.PENDING
    ).count() == len(pending)
