"""Load: simulated kiosk sessions against the services, then invariant checks.

    python -m bench.load --backend postgresql --sessions 10,50,200 --seconds 45
    python -m bench.load --backend sqlite --sessions 16 --processes 8 --seconds 45

Each session loops for a fixed time over the real mix of a kiosk — apply (ID + unit,
then the form, sent with the applicant's card), update a pending application
(begin_application says there is one; the card opens it, pending_application giving the
version the form was filled from; then update_pending with it), review (queue, then
approve / reject one request or decide a selection), login look-ups and unit search — and
writes down what it did and what it was told: the applications it submitted, the
version and field values of every update it was told succeeded, every update it was
told was a conflict, every decision it was told it made, every login that entered.

Then the checker reads the database and verifies:

* applications exactly once — one account per person ID that some session was told
  was submitted, as many apply/reapply audit rows as sessions were told succeeded,
  and no account nobody applied for;
* no lost update — every update a session was told succeeded is in the history (its
  audit row with revision = expected + 1, its permission requests with that
  revision and exactly the roles it wrote, a consent record for every write), no
  write in the history that no session was told succeeded, the account's version is
  1 + reapplies + updates + decisions, its personal data is that of the last write,
  and an update told "conflict" wrote nothing and really was behind;
* the audit chain verifies (``AuditLog.verify``) over every row;
* no request decided twice — at most one decision row per request, matching its
  status and reviewer, and one for each decision a reviewer was told it made.

A :class:`~smis_tui.services.errors.ServiceError` is what a user would see (a
conflict, "already pending" …): counted per kind, an expected outcome. Any other
exception (``database is locked``, an ``IntegrityError`` …) is a failure.

PostgreSQL: the sessions are threads of this process, each with its own connection
(``connection_context``); the database is a scratch one created on the server of
``--url`` / ``SMIS_TEST_POSTGRES_URL`` (loopback only) and dropped afterwards.
SQLite: ``--processes`` kiosk processes on one database file, the sessions spread
over them as threads. Bounded: sessions ≤ 500, seconds ≤ 600, ``--max-ops`` per
session, and a session still running 60 s after its time is reported, not awaited.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import hashlib
import json
import multiprocessing
import os
import queue
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from psycopg2.extensions import parse_dsn

from card.identity import CardIdentity, CardKind
from card.sim.testpki import self_signed_certificate
from models.db import (
    close_database,
    database_named,
    database_proxy,
    open_database,
    server_execute,
)
from models.schema import (
    Account,
    AuditEvent,
    Category,
    CategoryOption,
    ConsentRecord,
    PermissionRequest,
    RequestStatus,
    Role,
    Unit,
    UnitCategory,
    UnitKind,
)
from models.template import fill_template, sqlite_template
from smis_tui.core.config import Settings
from smis_tui.core.identifiers import generate_national_id
from smis_tui.services import Services, build_services
from smis_tui.services.accounts import ApplicationForm, PersonalData, RoleChoice, StartKind
from smis_tui.services.auth import LoginState
from smis_tui.services.bootstrap import bootstrap_admin
from smis_tui.services.card_proof import CardProof
from smis_tui.services.crypto import create_key_file
from smis_tui.services.errors import ConflictError, ServiceError, ValidationFailed
from smis_tui.services.review import Outcome
from smis_tui.text.consent import CURRENT_STATEMENT_SHA256

OPS = ("apply", "update", "review", "login", "search")
WRITE_OPS = ("apply", "update", "review")
WEIGHTS = (2, 3, 2, 3, 4)
MAX_SESSIONS = 500
MAX_SECONDS = 600
GRACE_SECONDS = 60
REGIONAL_REVIEWERS = 3
UNIT_POOL = 300
SEARCHES = (
    "診所",
    "醫院",
    "衛生所",
    "台北",
    "臺中",
    "牙醫診所",
    "藥局",
    "礁溪",
    "",
    "不存在的單位",
)
COUNTIES = (None, None, None, "新北市", "臺中市", "高雄市")
DECISION_ACTIONS = ("approve_request", "reject_request")
WRITE_ACTIONS = ("apply", "reapply", "update_application")
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
# The flood limits of one kiosk session (smis_tui.services.limits) would refuse almost
# every application of a session that applies many times a second: the load measures
# the database, not the limiter, so they are lifted for it.
UNLIMITED = 1_000_000
LOAD_LIMITS = {
    "applications_per_session_hour": UNLIMITED,
    "applications_per_card_hour": UNLIMITED,
    "pending_lookups_per_session": UNLIMITED,
}


# ----- the world the sessions share ---------------------------------------------------


@dataclass(frozen=True)
class World:
    """What every session knows before it starts (picklable, for SQLite processes)."""

    units: list[tuple[str, list[str]]]  # (unit code, category codes it handles)
    options: dict[str, list[str]]  # category code -> sub-option names
    reviewers: list[int]
    hot: int  # person IDs B1000000.. are "hot": any session may apply for them
    seed: int = 20240607

    def hot_person(self, i: int) -> tuple[str, str]:
        """A hot person ID and the unit every session applies for it at."""
        return generate_national_id("B", 1, i), self.units[i % len(self.units)][0]


@dataclass(frozen=True)
class _Cert:
    """What bootstrap_admin reads of a card certificate."""

    kind: str
    cert_sha256: str


@functools.cache
def _card_certificate() -> x509.Certificate:
    """The certificate object every simulated card carries (the account service reads
    only the identity's kind, name, ID and fingerprint)."""
    return self_signed_certificate(ec.generate_private_key(ec.SECP256R1()), "負載測試卡")


def card_proof(services: Services, person_id: str) -> CardProof:
    """The applicant's own 醫事人員卡 (one per person ID, the same in every session and
    process) just proved, as card login hands it to the account service: applying
    and updating each ask for one, and a proof is used up by the write it allows."""
    now = dt.datetime.now(dt.UTC)
    identity = CardIdentity(
        kind=CardKind.HPC,
        name="負載申請人",
        id_hint=person_id,
        cert_sha256=hashlib.sha256(f"load card {person_id}".encode()).hexdigest(),
        not_before=now - dt.timedelta(days=1),
        not_after=now + dt.timedelta(days=365),
        certificate=_card_certificate(),
    )
    return services.accounts.proofs.issue(identity)


def prepare_world(services: Services, sessions: int) -> World:
    """Reviewers (the CDC 管理者 of every category, and regional-centre 管理者 approved
    by it, all through the services) and the units applications go to."""
    admin = bootstrap_admin(
        services.accounts,
        _Cert("hpc", uuid.uuid4().hex * 2),  # type: ignore[arg-type]
        generate_national_id("C", 1, 1),
        PersonalData("負載審核者", "02-23959825", "cdc@load.example.tw", "", "", ""),
    )
    options = {
        c.code: [o.name for o in CategoryOption.select().where(CategoryOption.category == c)]
        for c in Category.select()
    }
    reviewers = [admin]
    centres = list(Unit.select().where(Unit.kind == UnitKind.REGIONAL_CENTRE).order_by(Unit.code))
    for n, centre in enumerate(centres[:REGIONAL_REVIEWERS], start=2):
        cats = _categories_of(centre.id)
        person = generate_national_id("C", 1, n)
        account = services.accounts.apply(
            _form(
                person,
                centre.code,
                {c: RoleChoice(Role.ADMIN, tuple(options[c][:1])) for c in cats},
                f"區管理者{n}",
                f"centre{n}",
            ),
            card_proof(services, person),
        )
        for request in services.accounts.view(account).pending():
            services.review.approve(admin, request.id)
        reviewers.append(account)
    rng = random.Random(7)
    candidates = [
        u.id
        for u in Unit.select(Unit.id).where(
            Unit.active
            & Unit.kind.in_(
                [
                    UnitKind.HOSPITAL,
                    UnitKind.CLINIC,
                    UnitKind.HEALTH_CENTRE,
                    UnitKind.PHARMACY,
                    UnitKind.HEALTH_BUREAU,
                ]
            )
        )
    ]
    units = []
    for unit_id in sorted(rng.sample(candidates, min(UNIT_POOL, len(candidates)))):
        cats = _categories_of(unit_id)
        if cats:
            units.append((Unit.get_by_id(unit_id).code, cats))
    return World(units, options, reviewers, hot=max(8, sessions // 2))


def _categories_of(unit_id: int) -> list[str]:
    return sorted(
        c.code for c in Category.select().join(UnitCategory).where(UnitCategory.unit == unit_id)
    )


def _form(
    person_id: str, unit_code: str, roles: dict[str, RoleChoice], name: str, mail: str
) -> ApplicationForm:
    return ApplicationForm(
        person_id=person_id,
        unit_code=unit_code,
        name=name,
        phone="02-23959825#1234",
        email=f"{mail}@load.example.tw",
        mobile="0912-345-678",
        roles=roles,
        consent_sha256=CURRENT_STATEMENT_SHA256,
    )


# ----- one session --------------------------------------------------------------------


class Known:
    """Applicants the sessions of one process have heard of (shared by its threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._people: list[tuple[str, str]] = []

    def add(self, person: str, unit: str) -> None:
        with self._lock:
            self._people.append((person, unit))

    def pick(self, rng: random.Random) -> tuple[str, str] | None:
        with self._lock:
            return rng.choice(self._people) if self._people else None


def _kind(exc: ServiceError) -> str:
    if isinstance(exc, ValidationFailed):
        return f"ValidationFailed({','.join(sorted(exc.errors))})"
    return f"{type(exc).__name__}({exc.key.removeprefix('error.')})"


class Session:
    """One kiosk: loops over the mix until its deadline, writing down what it was told."""

    def __init__(self, services: Services, world: World, known: Known, index: int) -> None:
        self.s = services
        self.world = world
        self.known = known
        self.index = index
        self.rng = random.Random(world.seed * 1000 + index)
        self.seq = 0
        self.cats = dict(world.units)
        self.events: list[tuple[str, float, str]] = []
        self.shown: dict[str, Counter[str]] = defaultdict(Counter)
        self.unexpected: list[str] = []
        self.attempted: set[str] = set()
        self.applies: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []
        self.conflicts: list[dict[str, Any]] = []
        self.decisions: list[dict[str, Any]] = []
        self.logins: list[int] = []

    # -- driving ---------------------------------------------------------------------

    def run(self, deadline: float, max_ops: int) -> None:
        db = database_proxy.obj
        with db.connection_context():
            for _ in range(max_ops):
                if time.monotonic() >= deadline:
                    break
                op = self.rng.choices(OPS, WEIGHTS)[0]
                self._timed(op, getattr(self, f"_{op}"))

    def _timed(self, op: str, fn: Callable[[], str | None]) -> None:
        started = time.perf_counter()
        label = op
        outcome = "ok"
        try:
            label = fn() or op
        except ServiceError as exc:
            outcome = _kind(exc)
            self.shown[op][outcome] += 1
        except Exception as exc:
            outcome = f"UNEXPECTED {type(exc).__name__}: {str(exc).strip()[:120]}"
            if len(self.unexpected) < 20:
                self.unexpected.append(f"session {self.index} {op}: {traceback.format_exc()}")
            else:
                self.unexpected.append(outcome)
        self.events.append((label, (time.perf_counter() - started) * 1000, outcome))

    def _token(self) -> tuple[str, str]:
        self.seq += 1
        return f"負載{self.index}-{self.seq}", f"s{self.index}.{self.seq}"

    def _roles(self, unit_code: str) -> dict[str, RoleChoice]:
        cats = self.cats[unit_code]
        chosen = self.rng.sample(cats, self.rng.randint(1, min(2, len(cats))))
        roles = {}
        for code in chosen:
            role = self.rng.choices((Role.OFFICER, Role.VIEWER, Role.ADMIN), (5, 4, 1))[0]
            options = self.world.options.get(code) or []
            roles[code] = RoleChoice(role, (self.rng.choice(options),) if options else ())
        return roles

    def _person(self, hot_share: float) -> tuple[str, str]:
        if self.rng.random() < hot_share:
            return self.world.hot_person(self.rng.randrange(self.world.hot))
        self.seq += 1
        serial = 1_000_000 + self.index * 15_000 + self.seq
        unit = self.rng.choice(self.world.units)[0]
        return generate_national_id("A", 1, serial), unit

    # -- the operations -----------------------------------------------------------------

    def _apply(self) -> str | None:
        person, unit = self._person(hot_share=0.25)
        self.attempted.add(person)
        start = self.s.accounts.begin_application(person, unit)
        if start.kind == StartKind.UPDATE_PENDING:
            # 您有申請中的權限，是否確定更新申請？ → 確定, the card: this becomes an update.
            proof = card_proof(self.s, person)
            opened = self.s.accounts.pending_application(proof, person)
            self._write_update(person, unit, opened.id, opened.version, proof)
            return "update"
        name, mail = self._token()
        roles = self._roles(unit)
        proof = card_proof(self.s, person)
        account = self.s.accounts.apply(_form(person, unit, roles, name, mail), proof)
        self.applies.append(
            {"person": person, "account": account, "token": name, "roles": _roles_json(roles)}
        )
        self.known.add(person, unit)
        return None

    def _update(self) -> str | None:
        picked = self.known.pick(self.rng) if self.rng.random() < 0.7 else None
        person, unit = picked or self.world.hot_person(self.rng.randrange(self.world.hot))
        start = self.s.accounts.begin_application(person, unit)
        if start.kind != StartKind.UPDATE_PENDING:
            return "update (nothing pending)"
        proof = card_proof(self.s, person)
        opened = self.s.accounts.pending_application(proof, person)
        time.sleep(self.rng.uniform(0, 0.01))  # the applicant edits the form
        self._write_update(person, unit, opened.id, opened.version, proof)
        return None

    def _write_update(
        self, person: str, unit: str, account: int, version: int, proof: CardProof
    ) -> None:
        name, mail = self._token()
        roles = self._roles(unit)
        claim = {
            "person": person,
            "account": account,
            "expected": version,
            "token": name,
            "roles": _roles_json(roles),
        }
        try:
            self.s.accounts.update_pending(_form(person, unit, roles, name, mail), version, proof)
        except ConflictError:
            self.conflicts.append(claim)
            raise
        self.updates.append(claim)

    def _review(self) -> str | None:
        reviewer = self.rng.choice(self.world.reviewers)
        page = self.s.review.queue(reviewer, page=self.rng.randint(1, 2))
        if not page.items:
            return "review (empty queue)"
        picked = self.rng.sample(page.items[:6], self.rng.randint(1, min(3, len(page.items[:6]))))
        approve = self.rng.random() < 0.7
        reason = "" if approve else "負載測試：資料不符"
        time.sleep(self.rng.uniform(0, 0.005))  # the reviewer reads the request
        if len(picked) == 1 and self.rng.random() < 0.5:
            request = picked[0].request_id
            if approve:
                self.s.review.approve(reviewer, request)
            else:
                self.s.review.reject(reviewer, request, reason)
            self._decided(reviewer, request, approve)
            return None
        result = self.s.review.decide_many(
            reviewer, [item.request_id for item in picked], approve, reason
        )
        for request in result.with_outcome(Outcome.DECIDED):
            self._decided(reviewer, request, approve)
        for error in result.failed.values():
            self.shown["review"][_kind(error)] += 1
        return None

    def _decided(self, reviewer: int, request: int, approve: bool) -> None:
        self.decisions.append({"reviewer": reviewer, "request": request, "approve": approve})

    def _login(self) -> str | None:
        if self.rng.random() < 0.1:
            self.s.login.outcome_for_certificate(f"{self.rng.getrandbits(256):064x}")
            return None
        picked = self.known.pick(self.rng) if self.rng.random() < 0.7 else None
        person, _ = picked or self.world.hot_person(self.rng.randrange(self.world.hot))
        outcome = self.s.login.outcome_for_person(person)
        if outcome.state == LoginState.ACTIVE:
            assert outcome.account_id is not None
            self.logins.append(outcome.account_id)
        return None

    def _search(self) -> str | None:
        query = self.rng.choice(SEARCHES)
        if self.rng.random() < 0.2:
            query = self.rng.choice(self.world.units)[0][:4]
        self.s.units.search(query, county=self.rng.choice(COUNTIES), page=self.rng.randint(1, 4))
        return None

    def log(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "events": self.events,
            "shown": {op: dict(c) for op, c in self.shown.items()},
            "unexpected": self.unexpected,
            "attempted": sorted(self.attempted),
            "applies": self.applies,
            "updates": self.updates,
            "conflicts": self.conflicts,
            "decisions": self.decisions,
            "logins": self.logins,
        }


def _roles_json(roles: dict[str, RoleChoice]) -> list[list[Any]]:
    return sorted([code, str(c.role), list(c.options)] for code, c in roles.items())


def run_sessions(
    services: Services, world: World, indices: list[int], seconds: float, max_ops: int
) -> tuple[list[dict[str, Any]], int]:
    """Run the sessions as threads of this process; returns their logs and how many
    were still running ``GRACE_SECONDS`` after their time (not awaited further)."""
    known = Known()
    sessions = [Session(services, world, known, i) for i in indices]
    deadline = time.monotonic() + seconds
    threads = [
        threading.Thread(target=s.run, args=(deadline, max_ops), daemon=True, name=f"s{s.index}")
        for s in sessions
    ]
    for thread in threads:
        thread.start()
    stuck = 0
    for thread in threads:
        thread.join(timeout=max(0.0, deadline + GRACE_SECONDS - time.monotonic()))
        stuck += thread.is_alive()
    return [s.log() for s in sessions], stuck


# ----- the checker ----------------------------------------------------------------------


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    problems: list[str] = field(default_factory=list)


def check_invariants(services: Services, world: World, logs: list[dict[str, Any]]) -> list[Check]:
    applies = [a for log in logs for a in log["applies"]]
    updates = [u for log in logs for u in log["updates"]]
    conflicts = [c for log in logs for c in log["conflicts"]]
    decisions = [d for log in logs for d in log["decisions"]]
    logins = Counter(a for log in logs for a in log["logins"])
    attempted = {p for log in logs for p in log["attempted"]}
    reviewers = set(world.reviewers)
    keys = services.keys

    accounts = {a.id: a for a in Account.select() if a.id not in reviewers}
    audit: dict[int, list[AuditEvent]] = defaultdict(list)
    decision_rows: dict[int, list[AuditEvent]] = defaultdict(list)
    login_rows: Counter[int] = Counter()
    for event in AuditEvent.select().order_by(AuditEvent.id):
        if event.target_type == "account" and event.action in WRITE_ACTIONS:
            audit[int(event.target_id)].append(event)
        elif event.action in DECISION_ACTIONS:
            decision_rows[int(event.target_id)].append(event)
        elif event.action == "login":
            login_rows[int(event.target_id)] += 1
    requests: dict[int, dict[int, set[tuple[str, str, str]]]] = defaultdict(
        lambda: defaultdict(set)
    )
    codes = dict(Category.select(Category.id, Category.code).tuples())
    option_ids = {(codes[o.category_id], o.name): o.id for o in CategoryOption.select()}
    all_requests = list(PermissionRequest.select())
    for r in all_requests:
        requests[r.account_id][r.revision].add((codes[r.category_id], r.role, r.option_ids))
    consents = Counter(c.account_id for c in ConsentRecord.select(ConsentRecord.account))

    def as_rows(roles: list[list[Any]]) -> set[tuple[str, str, str]]:
        return {
            (code, role, ",".join(str(i) for i in sorted(option_ids[(code, o)] for o in opts)))
            for code, role, opts in roles
        }

    def detail_rows(event: AuditEvent) -> set[tuple[str, str, str]]:
        roles = json.loads(event.details)["roles"]
        return {(c, r, ",".join(str(i) for i in ids)) for c, r, ids in roles}

    # 1. applications exactly once
    problems: list[str] = []
    by_person: dict[str, set[int]] = defaultdict(set)
    for claim in applies:
        by_person[claim["person"]].add(claim["account"])
    index_of = {p: keys.blind_index(p) for p in attempted}
    found = {a.person_id_index: a.id for a in accounts.values()}
    for person, ids in by_person.items():
        account = found.get(index_of[person])
        if len(ids) != 1 or account not in ids:
            problems.append(f"person …{person[-4:]}: told accounts {sorted(ids)}, found {account}")
    known_indexes = {index_of[p] for p in by_person}
    for index, account_id in found.items():
        if index not in known_indexes:
            problems.append(f"account {account_id} exists but no session was told it applied")
    claims_per_account = Counter(c["account"] for c in applies)
    for account_id in accounts:
        written = sum(e.action in ("apply", "reapply") for e in audit[account_id])
        if written != claims_per_account[account_id]:
            problems.append(
                f"account {account_id}: {written} apply rows, {claims_per_account[account_id]} told"
            )
    checks = [
        Check(
            "applications exactly once",
            not problems,
            f"{len(applies)} submitted, {len(accounts)} accounts",
            problems,
        )
    ]

    # 2. no lost update
    problems = []
    updates_of: dict[int, dict[int, dict[str, Any]]] = defaultdict(dict)
    for claim in updates:
        revision = claim["expected"] + 1
        if revision in updates_of[claim["account"]]:
            problems.append(f"account {claim['account']}: two sessions told they wrote {revision}")
        updates_of[claim["account"]][revision] = claim
    decided_per_account = Counter(
        json.loads(e.details)["account"] for rows in decision_rows.values() for e in rows
    )
    for account_id, account in accounts.items():
        rows = audit[account_id]
        revisions = [json.loads(e.details)["revision"] for e in rows]
        if revisions != sorted(set(revisions)):
            problems.append(f"account {account_id}: write revisions {revisions} not increasing")
        told = updates_of.get(account_id, {})
        logged = {
            json.loads(e.details)["revision"]: e for e in rows if e.action == "update_application"
        }
        for revision in sorted(set(told) - set(logged)):
            problems.append(f"account {account_id}: update to {revision} told ok, not in history")
        for revision in sorted(set(logged) - set(told)):
            problems.append(f"account {account_id}: update to {revision} written, nobody told")
        for revision, claim in told.items():
            wanted = as_rows(claim["roles"])
            if revision in logged and detail_rows(logged[revision]) != wanted:
                problems.append(f"account {account_id}: audit roles of {revision} differ")
            if requests[account_id].get(revision, set()) != wanted:
                problems.append(f"account {account_id}: requests of revision {revision} differ")
        for event in rows:
            revision = json.loads(event.details)["revision"]
            if requests[account_id].get(revision, set()) != detail_rows(event):
                problems.append(f"account {account_id}: requests of {revision} ≠ its audit row")
        if set(requests[account_id]) != set(revisions):
            problems.append(f"account {account_id}: request revisions ≠ write history")
        reapplies = sum(e.action == "reapply" for e in rows)
        expected_version = 1 + reapplies + len(logged) + decided_per_account[account_id]
        if account.version != expected_version:
            problems.append(
                f"account {account_id}: version {account.version}, history says {expected_version}"
            )
        writes = claims_per_account[account_id] + len(told)
        if consents[account_id] != writes:
            problems.append(f"account {account_id}: {consents[account_id]} consents, {writes} told")
        if rows:
            last = rows[-1]
            if last.action == "update_application":
                claim = told.get(json.loads(last.details)["revision"])
                if claim is not None and account.name != claim["token"]:
                    problems.append(f"account {account_id}: name is not the last update's")
            elif account.name not in {c["token"] for c in applies if c["account"] == account_id}:
                problems.append(f"account {account_id}: name is not the last application's")
    for claim in conflicts:
        account = accounts.get(claim["account"])
        if account is None:
            problems.append(f"conflict on unknown account {claim['account']}")
            continue
        if account.name == claim["token"]:
            problems.append(f"account {account.id}: a write told 'conflict' is the current data")
        if account.version <= claim["expected"]:
            problems.append(f"account {account.id}: conflict at {claim['expected']} but not behind")
    checks.append(
        Check(
            "no lost update",
            not problems,
            f"{len(updates)} updates told ok, {len(conflicts)} told conflict",
            problems,
        )
    )

    # 3. the audit chain
    result = services.audit.verify()
    total = AuditEvent.select().count()
    ok = result.ok and result.checked == total
    checks.append(
        Check(
            "audit chain verifies",
            ok,
            f"{result.checked}/{total} rows",
            [] if ok else [f"{result.code} at row {result.first_bad_id}: {result.reason}"],
        )
    )

    # 4. no request decided twice
    problems = []
    told_decided: dict[int, dict[str, Any]] = {}
    for claim in decisions:
        if claim["request"] in told_decided:
            problems.append(f"request {claim['request']}: two reviewers told they decided it")
        told_decided[claim["request"]] = claim
    for r in all_requests:
        rows = decision_rows.get(r.id, [])
        actions = [e.action for e in rows]
        if len(rows) > 1:
            problems.append(f"request {r.id}: decided {len(rows)} times {actions}")
        status = RequestStatus(r.status)
        want = {
            RequestStatus.APPROVED: [["approve_request"]],
            RequestStatus.REJECTED: [["reject_request"]],
            RequestStatus.PENDING: [[]],
            RequestStatus.SUPERSEDED: [[], ["approve_request"]],
        }.get(status, [[]])
        if r.account_id in reviewers and r.reason == "bootstrap":
            continue
        if actions not in want:
            problems.append(f"request {r.id}: status {status} with decision rows {actions}")
        if rows and r.reviewer_id != rows[0].actor_id and status != RequestStatus.SUPERSEDED:
            problems.append(f"request {r.id}: reviewer {r.reviewer_id} ≠ row {rows[0].actor_id}")
        claim = told_decided.pop(r.id, None)
        if claim is not None:
            action = "approve_request" if claim["approve"] else "reject_request"
            if len(rows) != 1 or rows[0].action != action or rows[0].actor_id != claim["reviewer"]:
                problems.append(f"request {r.id}: told decided ({action}), rows {actions}")
        elif rows and r.account_id not in reviewers:
            problems.append(f"request {r.id}: decided but no reviewer was told so")
    problems += [f"request {rid}: told decided, no such request" for rid in told_decided]
    checks.append(
        Check(
            "no request decided twice",
            not problems,
            f"{len(decisions)} decisions, {sum(len(v) for v in decision_rows.values())} rows",
            problems,
        )
    )

    # 5. logins: one row per login that entered, none that changed a version (above)
    problems = [
        f"account {a}: {login_rows[a]} login rows, {logins[a]} told"
        for a in set(logins) | set(login_rows)
        if login_rows[a] != logins[a]
    ]
    checks.append(
        Check("logins recorded once", not problems, f"{sum(logins.values())} entered", problems)
    )
    return checks


# ----- backends -------------------------------------------------------------------------


def _require_loopback(url: str) -> None:
    """Every host of ``url`` (libpq's comma-separated list, as a failover URL names
    them) is this machine: the load run creates and drops databases."""
    params = parse_dsn(url)
    hosts = str(params.get("host") or params.get("hostaddr") or "").split(",")
    outside = [host for host in hosts if host and host not in LOOPBACK and host[0] != "/"]
    if outside:
        raise SystemExit(f"bench.load: refusing a non-loopback PostgreSQL ({','.join(outside)})")


@contextlib.contextmanager
def postgres_template(
    admin_url: str,
) -> Iterator[Callable[[], contextlib.AbstractContextManager[str]]]:
    """A template database with the schema and the units; yields a factory of fresh
    scratch databases copied from it. Everything is dropped at the end."""
    _require_loopback(admin_url)
    template = f"smis_load_tpl_{uuid.uuid4().hex[:8]}"
    server_execute(admin_url, f"CREATE DATABASE {template}")
    try:
        fill_template(database_named(admin_url, template))

        @contextlib.contextmanager
        def fresh() -> Iterator[str]:
            name = f"smis_load_{uuid.uuid4().hex[:8]}"
            server_execute(admin_url, f"CREATE DATABASE {name} TEMPLATE {template}")
            try:
                yield database_named(admin_url, name)
            finally:
                close_database()
                server_execute(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

        yield fresh
    finally:
        close_database()
        server_execute(admin_url, f"DROP DATABASE IF EXISTS {template} WITH (FORCE)")


def _settings(data_dir: Path, url: str | None) -> Settings:
    settings = Settings(data_dir=data_dir, database_url=url).with_overrides(**LOAD_LIMITS)
    create_key_file(settings.resolved_key_file)
    return settings


def _kiosk_worker(
    data_dir: str,
    url: str | None,
    world: World,
    indices: list[int],
    seconds: float,
    max_ops: int,
    ready: Any,
    go: Any,
    out: str,
) -> None:
    """One kiosk process (or SSH session): its sessions as threads, on the shared
    SQLite file (``url`` None) or PostgreSQL database."""
    settings = Settings(data_dir=Path(data_dir), database_url=url).with_overrides(**LOAD_LIMITS)
    open_database(url, settings.sqlite_path)
    services = build_services(settings)
    ready.put(os.getpid())
    go.wait(120)
    logs, stuck = run_sessions(services, world, indices, seconds, max_ops)
    Path(out).write_text(json.dumps({"logs": logs, "stuck": stuck}), encoding="utf-8")
    close_database()
    os._exit(0)  # stuck daemon threads must not keep the process alive


def run_processes(
    settings: Settings, world: World, sessions: int, processes: int, seconds: float, max_ops: int
) -> tuple[float, list[dict[str, Any]], int]:
    """Run ``sessions`` spread over ``processes`` kiosk processes, started together
    once every one has opened its database: (elapsed s, logs, stuck sessions)."""
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Queue()
    go = ctx.Event()
    children = []
    outs = []
    for p in range(processes):
        out = settings.data_dir / f"log-{p}.json"
        outs.append(out)
        indices = list(range(p, sessions, processes))
        child = ctx.Process(
            target=_kiosk_worker,
            args=(
                str(settings.data_dir),
                settings.database_url,
                world,
                indices,
                seconds,
                max_ops,
                ready,
                go,
                str(out),
            ),
            name=f"kiosk-{p}",
        )
        child.start()
        children.append(child)
    waiting = len(children)
    give_up = time.monotonic() + 120 + len(children)
    while waiting and time.monotonic() < give_up:
        try:
            ready.get(timeout=1)
            waiting -= 1
        except queue.Empty:
            # A child that died before it was ready is reported below.
            if not any(child.is_alive() for child in children):
                break
    started = time.monotonic()
    go.set()
    for child in children:
        child.join(timeout=max(0.0, started + seconds + GRACE_SECONDS + 30 - time.monotonic()))
    elapsed = time.monotonic() - started
    logs: list[dict[str, Any]] = []
    stuck = 0
    for child, out in zip(children, outs, strict=True):
        if child.is_alive():
            child.kill()
            child.join()
        if out.exists():
            data = json.loads(out.read_text(encoding="utf-8"))
            logs += data["logs"]
            stuck += data["stuck"]
        else:
            stuck += 1
            logs.append(_lost_log(f"process {child.name} exited {child.exitcode} without a log"))
    return elapsed, logs, stuck


# ----- one run, the report ------------------------------------------------------------------


@dataclass
class RunResult:
    backend: str
    sessions: int
    processes: int
    seconds: float
    elapsed: float
    logs: list[dict[str, Any]]
    checks: list[Check]
    stuck: int
    settings: Settings
    world: World
    via: str = ""
    """What stands between the sessions and the server (``PgBouncer``), if anything."""

    @property
    def unexpected(self) -> list[str]:
        return [u for log in self.logs for u in log["unexpected"]]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks) and not self.unexpected and not self.stuck


def run_postgres(
    url: str, sessions: int, seconds: float, max_ops: int, workdir: Path, processes: int = 1
) -> RunResult:
    """``processes`` 1: the sessions as threads of this process, each with its own
    connection; more: spread over that many processes, as SSH sessions and kiosks are
    (``processes == sessions``: one process each)."""
    settings = _settings(workdir / f"pg-{uuid.uuid4().hex[:6]}", url)
    open_database(url, settings.sqlite_path)
    services = build_services(settings)
    world = prepare_world(services, sessions)
    close_database()
    processes = max(1, min(processes, sessions))
    if processes == 1:
        started = time.monotonic()
        logs, stuck = run_sessions(services, world, list(range(sessions)), seconds, max_ops)
        elapsed = time.monotonic() - started
    else:
        elapsed, logs, stuck = run_processes(settings, world, sessions, processes, seconds, max_ops)
    with database_proxy.obj.connection_context():
        checks = check_invariants(services, world, logs)
    return RunResult(
        "PostgreSQL", sessions, processes, seconds, elapsed, logs, checks, stuck, settings, world
    )


def run_sqlite(
    template: Path, sessions: int, processes: int, seconds: float, max_ops: int, workdir: Path
) -> RunResult:
    data_dir = workdir / f"sqlite-{uuid.uuid4().hex[:6]}"
    settings = _settings(data_dir, None)
    shutil.copyfile(template, settings.sqlite_path)
    open_database(None, settings.sqlite_path)
    services = build_services(settings)
    world = prepare_world(services, sessions)
    close_database()
    processes = max(1, min(processes, sessions))
    elapsed, logs, stuck = run_processes(settings, world, sessions, processes, seconds, max_ops)
    open_database(None, settings.sqlite_path)
    checks = check_invariants(services, world, logs)
    close_database()
    return RunResult(
        "SQLite", sessions, processes, seconds, elapsed, logs, checks, stuck, settings, world
    )


def recheck(run: RunResult, logs: list[dict[str, Any]] | None = None) -> list[Check]:
    """The checks again over the run's database (still there), e.g. with other logs."""
    open_database(run.settings.database_url, run.settings.sqlite_path)
    try:
        return check_invariants(build_services(run.settings), run.world, logs or run.logs)
    finally:
        close_database()


def _lost_log(message: str) -> dict[str, Any]:
    return {
        "index": -1,
        "events": [],
        "shown": {},
        "unexpected": [message],
        "attempted": [],
        "applies": [],
        "updates": [],
        "conflicts": [],
        "decisions": [],
        "logins": [],
    }


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def report(run: RunResult) -> str:
    if run.processes == 1 and run.backend == "PostgreSQL":
        where = f"{run.sessions} sessions (threads of one process, own connections)"
    elif run.processes == run.sessions:
        where = f"{run.sessions} sessions, each its own process"
    else:
        where = f"{run.sessions} sessions in {run.processes} processes"
    if run.backend == "SQLite":
        where += " on one file"
    elif run.via:
        where += f", through {run.via}"
    lines = [
        f"### {run.backend}, {where}, {run.seconds:g} s",
        "",
        "| operation | count | per s | p50 ms | p95 ms | shown to users | unexpected |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    samples: dict[str, list[float]] = defaultdict(list)
    unexpected: Counter[str] = Counter()
    for log in run.logs:
        for label, ms, outcome in log["events"]:
            samples[label].append(ms)
            if outcome.startswith("UNEXPECTED"):
                unexpected[label] += 1
    shown: dict[str, Counter[str]] = defaultdict(Counter)
    for log in run.logs:
        for op, kinds in log["shown"].items():
            shown[op].update(kinds)
    order = [*OPS, *sorted(set(samples) - set(OPS))]
    for label in order:
        if label not in samples:
            continue
        ms = samples[label]
        kinds = ", ".join(f"{k} ×{n}" for k, n in shown.get(label, Counter()).most_common())
        lines.append(
            f"| {label} | {len(ms)} | {len(ms) / run.elapsed:.1f} | "
            f"{statistics.median(ms):.1f} | {_percentile(ms, 0.95):.1f} | {kinds or '—'} | "
            f"{unexpected[label]} |"
        )
    total = sum(len(v) for v in samples.values())
    lines.append(
        f"| **all** | {total} | {total / run.elapsed:.1f} | | | | {sum(unexpected.values())} |"
    )
    lines.append("")
    for check in run.checks:
        mark = "✓" if check.ok else "✗"
        lines.append(f"- {mark} {check.name}: {check.detail}")
        lines += [f"    - {p}" for p in check.problems[:10]]
    n_unexpected = len(run.unexpected)
    lines.append(f"- {'✓' if not n_unexpected else '✗'} unexpected errors: {n_unexpected}")
    lines += [f"    - {u.strip().splitlines()[-1]}" for u in run.unexpected[:10]]
    if run.stuck:
        lines.append(f"- ✗ {run.stuck} sessions still running {GRACE_SECONDS} s after their time")
    return "\n".join(lines)


def summary(runs: list[RunResult]) -> str:
    lines = [
        "| backend | sessions | s | operations | per s | writes p95 ms | unexpected | invariants |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for run in runs:
        events = [e for log in run.logs for e in log["events"]]
        writes = [ms for label, ms, _ in events if label in WRITE_OPS]
        p95 = f"{_percentile(writes, 0.95):.0f}" if writes else "—"
        sessions = (
            f"{run.sessions} (threads)"
            if run.processes == 1
            else f"{run.sessions} ({run.processes} proc)"
        )
        backend = f"{run.backend} via {run.via}" if run.via else run.backend
        lines.append(
            f"| {backend} | {sessions} | {run.seconds:g} | {len(events)} | "
            f"{len(events) / run.elapsed:.1f} | {p95} | {len(run.unexpected)} | "
            f"{'all hold ✓' if run.ok else '✗ ' + ', '.join(c.name for c in run.checks if not c.ok)} |"
        )
    return "\n".join(lines)


# Targets of the shared server (make bench), each a ratio or limit within one run.
TARGET_WRITE_P95_MS = 250.0


def _ops_per_s(run: RunResult) -> float:
    return sum(len(log["events"]) for log in run.logs) / run.elapsed


def _write_p95(run: RunResult) -> float:
    writes = [ms for log in run.logs for label, ms, _ in log["events"] if label in WRITE_OPS]
    return _percentile(writes, 0.95) if writes else 0.0


def targets(runs: list[RunResult]) -> list[str]:
    """The shared server's targets, for the runs this invocation made: PostgreSQL at 8
    processes at least as fast as SQLite at 8, not slower at 32 than at 8, and its
    writes' p95 within 250 ms at 32."""

    def find(backend: str, processes: int) -> RunResult | None:
        for run in runs:
            if run.backend == backend and run.processes == processes and not run.via:
                return run
        return None

    lines = []
    pg8, pg32, lite8 = find("PostgreSQL", 8), find("PostgreSQL", 32), find("SQLite", 8)
    if pg8 and lite8:
        a, b = _ops_per_s(pg8), _ops_per_s(lite8)
        lines.append(
            f"- {'✓' if a >= b else '✗'} PostgreSQL at 8 processes {a:.1f} ops/s "
            f"≥ SQLite at 8 processes {b:.1f} ops/s ({a / b:.2f}×)"
        )
    if pg8 and pg32:
        a, b = _ops_per_s(pg32), _ops_per_s(pg8)
        lines.append(
            f"- {'✓' if a >= b else '✗'} PostgreSQL from 8 to 32 processes: "
            f"{b:.1f} → {a:.1f} ops/s, does not fall ({a / b:.2f}×)"
        )
    if pg32:
        p95 = _write_p95(pg32)
        lines.append(
            f"- {'✓' if p95 <= TARGET_WRITE_P95_MS else '✗'} PostgreSQL at 32 processes: "
            f"writes p95 {p95:.0f} ms ≤ {TARGET_WRITE_P95_MS:.0f} ms"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--backend",
        required=True,
        help="postgresql, sqlite, or both (postgresql,sqlite): the same --sessions on each",
    )
    parser.add_argument("--sessions", default="10", help="comma-separated: one run each")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument(
        "--processes",
        default="each",
        help="kiosk processes the sessions are spread over: a number, or 'each' (the "
        "default) for one process per session, as SSH sessions and kiosks are",
    )
    parser.add_argument(
        "--connect-url",
        default="",
        help="PostgreSQL: also run --via-sessions with the sessions connecting here (a "
        "PgBouncer in front of --url's server), to the same scratch database",
    )
    parser.add_argument("--via", default="PgBouncer", help="what --connect-url goes through")
    parser.add_argument("--via-sessions", default="", help="comma-separated, see --connect-url")
    parser.add_argument(
        "--sqlite-sessions", default="", help="SQLite's runs when not --sessions' (comma-separated)"
    )
    parser.add_argument("--max-ops", type=int, default=100_000, help="per session")
    parser.add_argument("--url", default=os.environ.get("SMIS_TEST_POSTGRES_URL"))
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backend.split(",") if b.strip()]
    if not backends or any(b not in ("postgresql", "sqlite") for b in backends):
        parser.error("--backend: postgresql, sqlite or postgresql,sqlite")
    counts = [int(n) for n in args.sessions.split(",") if n.strip()]
    via_counts = [int(n) for n in args.via_sessions.split(",") if n.strip()]
    sqlite_counts = [int(n) for n in args.sqlite_sessions.split(",") if n.strip()] or counts
    if not counts or any(not 1 <= n <= MAX_SESSIONS for n in counts + via_counts + sqlite_counts):
        parser.error(f"--sessions: 1..{MAX_SESSIONS}")
    if via_counts and not args.connect_url:
        parser.error("--via-sessions needs --connect-url")
    if not 0 < args.seconds <= MAX_SECONDS:
        parser.error(f"--seconds: up to {MAX_SECONDS}")
    spread = args.processes
    if spread != "each" and not (spread.isdigit() and int(spread) >= 1):
        parser.error("--processes: a number ≥ 1, or each")

    def processes_for(sessions: int) -> int:
        return sessions if spread == "each" else int(spread)

    runs: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="smis-load-") as tmp:
        workdir = Path(tmp)
        if "postgresql" in backends:
            if not args.url:
                parser.error(
                    "PostgreSQL: --url or SMIS_TEST_POSTGRES_URL (scripts/test-services.sh)"
                )
            plan = [(n, "") for n in counts] + [(n, args.connect_url) for n in via_counts]
            with postgres_template(args.url) as fresh:
                for n, connect_url in plan:
                    via = args.via if connect_url else ""
                    print(
                        f"… PostgreSQL{' via ' + via if via else ''}, {n} sessions in "
                        f"{processes_for(n)} processes, {args.seconds:g} s",
                        file=sys.stderr,
                        flush=True,
                    )
                    with fresh() as url:
                        if connect_url:
                            _require_loopback(connect_url)
                            url = database_named(connect_url, url.rsplit("/", 1)[1])
                        run = run_postgres(
                            url, n, args.seconds, args.max_ops, workdir, processes_for(n)
                        )
                        run.via = via
                        runs.append(run)
                    print(report(run) + "\n", flush=True)
        if "sqlite" in backends:
            template = sqlite_template(workdir)
            for n in sqlite_counts:
                print(f"… SQLite, {n} sessions, {args.seconds:g} s", file=sys.stderr, flush=True)
                runs.append(
                    run_sqlite(template, n, processes_for(n), args.seconds, args.max_ops, workdir)
                )
                print(report(runs[-1]) + "\n", flush=True)
    print(f"Load, Python {sys.version.split()[0]}: summary")
    print()
    print(summary(runs))
    lines = targets(runs)
    if lines:
        print()
        print("Targets (same run):")
        print("\n".join(lines))
    failed = [r for r in runs if not r.ok]
    print()
    print("all invariants hold, no unexpected errors" if not failed else "LOAD FAILED")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
