"""Failover: the primary dies under load and its streaming standby is promoted.

Self-contained (docs/failover.md): the test starts its own two PostgreSQL servers on
127.0.0.1 (as user postgres when run as root) — a primary and a standby made from it
with ``pg_basebackup -R``, named in the primary's ``synchronous_standby_names`` — and
points the kiosk at both with one libpq multi-host URL and
``target_session_attrs=read-write``. Simulated kiosk sessions (bench/load.py) apply
with a card proof, update, review, log in and search from several threads; mid-run the
primary is stopped with ``pg_ctl stop -m immediate`` (a crash: no shutdown checkpoint,
connections cut) and the standby promoted. Then:

* the sessions reconnect to the new primary by themselves and keep writing;
* every user-visible failure during the switch is the database-unavailable message
  (or a ServiceError a user is meant to see), nothing else;
* the load's invariants hold on the new primary: nothing a session was told was
  written is lost, nothing is written twice, the audit chain verifies.

Synchronous replication is what makes "told it succeeded" mean "on the standby": with
asynchronous replication a commit acknowledged by the dying primary may never reach
the standby, and a submitted application would vanish in the failover.

One thing no database setting removes: an operation whose COMMIT was in flight when
the primary died. Its outcome is unknown to the session (the connection broke before
the answer); it may be on the standby. Such an operation was told "database
unavailable" or, when ``retrying`` ran it again on the new primary, what its own
first attempt left behind ("already pending", a conflict, "already decided"). For
operations cut off by the switch only, the checker therefore accepts that their
effect is there — once (:func:`settle_interrupted`); a login written twice that way
is reported, not failed.

Bounded: servers on free ports 54451.., sessions for ~12 s, the whole test fails
after TIME_LIMIT_S; both servers are stopped and their directories removed at the end
whatever happens. Without the PostgreSQL server binaries it fails under CI /
SMIS_REQUIRE_POSTGRES and skips elsewhere.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from bench.load import (
    DECISION_ACTIONS,
    LOAD_LIMITS,
    Known,
    Session,
    World,
    _kind,
    _roles_json,
    check_invariants,
    prepare_world,
)
from models.db import (
    close_database,
    database_failure,
    database_proxy,
    open_database,
    server_execute,
)
from models.schema import Account, AuditEvent
from models.template import fill_template
from smis_tui.core.config import Settings
from smis_tui.services import Services, build_services
from smis_tui.services.crypto import create_key_file
from smis_tui.services.errors import ServiceError
from tests.helpers import time_limit

pytestmark = pytest.mark.postgres

SESSIONS = 6
BEFORE_S = 4.0  # load on the first primary
TOTAL_S = 13.0  # the sessions' whole run, the switch included
MAX_OPS = 5_000
PORTS = range(54451, 54460)
STANDBY_NAME = "smis_standby"
TIME_LIMIT_S = 120
# A session reconnects by itself: after the promotion, a database-unavailable message
# may still end an operation begun during the switch (its retries back off), no later.
SETTLE_S = 3.0


def _missing(message: str) -> None:
    if os.environ.get("CI") or os.environ.get("SMIS_REQUIRE_POSTGRES"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(autouse=True)
def limited() -> Iterator[None]:
    """No fault may hang a test: fail it after TIME_LIMIT_S."""
    with time_limit(TIME_LIMIT_S):
        yield


# ------------------------------------------------------------------ two servers


def _pg_bin() -> Path:
    """The newest PostgreSQL server binaries, as scripts/test-services.sh finds them."""
    found = sorted(
        (Path(d) for d in glob.glob("/usr/lib/postgresql/*/bin")),
        key=lambda d: [int(p) if p.isdigit() else 0 for p in d.parent.name.split(".")],
    )
    for directory in reversed(found):
        if os.access(directory / "initdb", os.X_OK):
            return directory
    _missing("PostgreSQL server binaries not found (apt-get install postgresql)")
    raise AssertionError("unreachable")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ports() -> tuple[int, int]:
    free = [p for p in PORTS if _free(p)]
    if len(free) < 2:
        pytest.fail(f"no two free ports in {PORTS.start}..{PORTS.stop - 1}")
    return free[0], free[1]


class Servers:
    """A primary and its streaming standby in one private directory."""

    def __init__(self, work: Path, ports: tuple[int, int]) -> None:
        self.bin = _pg_bin()
        self.work = work
        self.ports = ports
        self.dirs = (work / "primary", work / "standby")
        self.as_root = os.geteuid() == 0
        if self.as_root:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                _missing("running as root without a 'postgres' user to run PostgreSQL as")
            os.chown(work, account.pw_uid, account.pw_gid)
        work.chmod(0o700)

    def run(self, *cmd: str | Path, timeout: float = 60) -> str:
        args = [str(c) for c in cmd]
        if self.as_root:
            args = ["runuser", "-u", "postgres", "--", *args]
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            logs = "".join(
                f"\n--- {log.name}\n{log.read_text(errors='replace')[-2000:]}"
                for log in sorted(self.work.glob("*.log"))
            )
            raise AssertionError(f"{' '.join(args)}: {done.stdout}{done.stderr}{logs}")
        return done.stdout

    def options(self, n: int, *extra: str) -> str:
        settings = [
            f"-p {self.ports[n]}",
            f"-k {self.work}",
            "-c listen_addresses=127.0.0.1",
            "-c wal_level=replica",
            "-c max_wal_senders=5",
            "-c fsync=off",
            *extra,
        ]
        return " ".join(settings)

    def start(self, n: int, *extra: str) -> None:
        name = ("primary", "standby")[n]
        self.run(
            self.bin / "pg_ctl",
            *("-D", self.dirs[n], "-l", self.work / f"{name}.log", "-w", "-t", "30"),
            *("-o", self.options(n, *extra), "start"),
        )

    def init_primary(self) -> None:
        self.run(
            self.bin / "initdb",
            *("-D", self.dirs[0], "-A", "trust", "-U", "postgres", "-E", "UTF8"),
            "--locale=C.UTF-8",
        )
        # Loopback only, replication included (the standby connects as postgres).
        (self.dirs[0] / "pg_hba.conf").write_text(
            "local all all trust\n"
            "host all all 127.0.0.1/32 trust\n"
            "local replication all trust\n"
            "host replication all 127.0.0.1/32 trust\n"
        )
        self.start(0)

    def make_standby(self) -> None:
        """A copy of the primary streaming from it (``-R`` writes primary_conninfo and
        standby.signal); its cluster_name is the application_name the primary's
        synchronous_standby_names names. The primary waits for it from then on; the
        standby's own configuration names no synchronous standby, so once promoted
        (alone) it does not wait for one that is not there."""
        self.run(
            self.bin / "pg_basebackup",
            *("-h", "127.0.0.1", "-p", str(self.ports[0]), "-U", "postgres"),
            *("-D", self.dirs[1], "-R", "-X", "stream", "-c", "fast"),
        )
        self.start(1, f"-c cluster_name={STANDBY_NAME}", "-c hot_standby=on")
        server_execute(
            f"postgresql://postgres@127.0.0.1:{self.ports[0]}/postgres",
            f"ALTER SYSTEM SET synchronous_standby_names = '{STANDBY_NAME}'",
            "SELECT pg_reload_conf()",
        )
        deadline = time.monotonic() + 20
        while True:
            with contextlib.closing(_connect(self.ports[0])) as conn, conn.cursor() as cur:
                cur.execute(
                    "SELECT sync_state FROM pg_stat_replication WHERE application_name = %s",
                    (STANDBY_NAME,),
                )
                row = cur.fetchone()
            if row is not None and row[0] == "sync":
                return
            assert time.monotonic() < deadline, f"standby not synchronous: {row}"
            time.sleep(0.1)

    def crash_primary(self) -> None:
        self.run(self.bin / "pg_ctl", "-D", self.dirs[0], "-m", "immediate", "-w", "stop")

    def promote_standby(self) -> None:
        self.run(self.bin / "pg_ctl", "-D", self.dirs[1], "-w", "-t", "30", "promote")

    def stop_all(self) -> None:
        for data in self.dirs:
            if (data / "postmaster.pid").exists():
                with contextlib.suppress(Exception):
                    self.run(self.bin / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
            _kill_leftover(data)


def _kill_leftover(data: Path) -> None:
    """The postmaster this test started, should pg_ctl not have stopped it."""
    pid_file = data / "postmaster.pid"
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int(pid_file.read_text().splitlines()[0])
        if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"postgres"):
            os.kill(pid, signal.SIGKILL)


def _connect(port: int) -> Any:
    return psycopg2.connect(
        host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=5
    )


@pytest.fixture
def servers() -> Iterator[Servers]:
    work = Path(tempfile.mkdtemp(prefix="smis-failover-"))
    cluster = Servers(work, _ports())
    try:
        yield cluster
    finally:
        close_database()
        cluster.stop_all()
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------ the sessions


class _Recording:
    """The services as a session sees them, noting the write each call attempts (the
    session's ``intent``) before it runs."""

    def __init__(self, real: Any, session: FailoverSession) -> None:
        self._real = real
        self._session = session

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _Accounts(_Recording):
    def apply(self, form: Any, proof: Any) -> Any:
        self._session.intent = ("apply", form)
        return self._real.apply(form, proof)

    def update_pending(self, form: Any, version: int, proof: Any) -> Any:
        self._session.intent = ("update", form, version)
        return self._real.update_pending(form, version, proof)


class _Review(_Recording):
    def approve(self, reviewer: int, request: int) -> Any:
        self._session.intent = ("decide", reviewer, (request,), True)
        return self._real.approve(reviewer, request)

    def reject(self, reviewer: int, request: int, reason: str) -> Any:
        self._session.intent = ("decide", reviewer, (request,), False)
        return self._real.reject(reviewer, request, reason)

    def decide_many(self, reviewer: int, requests: list[int], approve: bool, reason: str) -> Any:
        self._session.intent = ("decide", reviewer, tuple(requests), approve)
        return self._real.decide_many(reviewer, requests, approve, reason)


class _Login(_Recording):
    def outcome_for_person(self, person: str, *args: Any) -> Any:
        self._session.intent = ("login", person)
        return self._real.outcome_for_person(person, *args)


class _Services(_Recording):
    def __init__(self, real: Services, session: FailoverSession) -> None:
        super().__init__(real, session)
        self.accounts = _Accounts(real.accounts, session)
        self.review = _Review(real.review, session)
        self.login = _Login(real.login, session)


@dataclass
class Step:
    started: float
    ended: float
    label: str
    outcome: str
    wrote: int  # applications, updates and decisions it was told it made
    intent: tuple[Any, ...] | None


class FailoverSession(Session):
    """A load session that tells apart what a kiosk shows for a database failure
    (``database_failure``: the one-line DatabaseUnavailable dialog, as
    smis_tui.services.calls does) from anything unexpected, and times each step."""

    def __init__(self, services: Services, world: World, known: Known, index: int) -> None:
        super().__init__(_Services(services, self), world, known, index)  # type: ignore[arg-type]
        self.intent: tuple[Any, ...] | None = None
        self.steps: list[Step] = []

    def _told(self) -> int:
        return len(self.applies) + len(self.updates) + len(self.decisions)

    def _timed(self, op: str, fn: Callable[[], str | None]) -> None:
        self.intent = None
        before = self._told()
        started = time.monotonic()
        label, outcome = op, "ok"
        try:
            label = fn() or op
        except ServiceError as exc:
            outcome = _kind(exc)
            self.shown[op][outcome] += 1
        except Exception as exc:
            if database_failure(exc) is not None:
                outcome = "DatabaseUnavailable"
                self.shown[op][outcome] += 1
            else:
                outcome = f"UNEXPECTED {type(exc).__name__}: {str(exc).strip()[:160]}"
                self.unexpected.append(f"session {self.index} {op}: {traceback.format_exc()}")
        ended = time.monotonic()
        self.events.append((label, (ended - started) * 1000, outcome))
        self.steps.append(Step(started, ended, label, outcome, self._told() - before, self.intent))


@dataclass
class Switch:
    stopping: float = 0.0  # pg_ctl stop -m immediate called
    promoted: float = 0.0  # pg_ctl promote returned: the standby takes writes

    def overlaps(self, step: Step) -> bool:
        return step.started < self.promoted and step.ended > self.stopping


@dataclass
class Settled:
    """Operations cut off by the switch whose effect the checker found, by kind."""

    found: Counter[str] = field(default_factory=Counter)
    doubled_logins: int = 0


def settle_interrupted(
    services: Services, sessions: list[FailoverSession], switch: Switch
) -> Settled:
    """Add to the sessions' logs the effect of each operation cut off by the switch
    that the database shows happened (its COMMIT reached the standby, its answer never
    reached the session), at most once per operation: the checker then verifies that
    it is there exactly once, like any told success."""
    settled = Settled()
    told_applies = Counter(a["account"] for s in sessions for a in s.applies)
    told_updates = {(u["account"], u["expected"]) for s in sessions for u in s.updates}
    told_decisions = {d["request"] for s in sessions for d in s.decisions}
    told_logins = Counter(a for s in sessions for a in s.logins)

    def account_of(person: str) -> Account | None:
        index = services.keys.blind_index(person)
        return Account.get_or_none(Account.person_id_index == index)

    def rows(account: int, *actions: str) -> list[AuditEvent]:
        return list(
            AuditEvent.select().where(
                (AuditEvent.target_type == "account")
                & (AuditEvent.target_id == str(account))
                & AuditEvent.action.in_(actions)
            )
        )

    for session in sessions:
        for step in session.steps:
            if step.intent is None or not switch.overlaps(step):
                continue
            kind = step.intent[0]
            if kind == "apply":
                form = step.intent[1]
                account = account_of(form.person_id)
                if account is None:
                    continue
                if len(rows(account.id, "apply", "reapply")) > told_applies[account.id]:
                    told_applies[account.id] += 1
                    session.applies.append(
                        {
                            "person": form.person_id,
                            "account": account.id,
                            "token": form.name,
                            "roles": _roles_json(form.roles),
                        }
                    )
                    settled.found[kind] += 1
            elif kind == "update":
                form, version = step.intent[1], step.intent[2]
                account = account_of(form.person_id)
                if account is None or (account.id, version) in told_updates:
                    continue
                revisions = {
                    json.loads(e.details)["revision"]
                    for e in rows(account.id, "update_application")
                }
                if version + 1 in revisions:
                    told_updates.add((account.id, version))
                    session.updates.append(
                        {
                            "person": form.person_id,
                            "account": account.id,
                            "expected": version,
                            "token": form.name,
                            "roles": _roles_json(form.roles),
                        }
                    )
                    session.conflicts = [c for c in session.conflicts if c["token"] != form.name]
                    settled.found[kind] += 1
            elif kind == "decide":
                reviewer, requests, approve = step.intent[1:]
                action = "approve_request" if approve else "reject_request"
                for request in requests:
                    if request in told_decisions:
                        continue
                    decided = AuditEvent.select().where(
                        (AuditEvent.target_id == str(request))
                        & AuditEvent.action.in_(DECISION_ACTIONS)
                    )
                    if any(e.action == action and e.actor_id == reviewer for e in decided):
                        told_decisions.add(request)
                        session.decisions.append(
                            {"reviewer": reviewer, "request": request, "approve": approve}
                        )
                        settled.found[kind] += 1
            elif kind == "login":
                account = account_of(step.intent[1])
                if account is None:
                    continue
                if len(rows(account.id, "login")) > told_logins[account.id]:
                    told_logins[account.id] += 1
                    session.logins.append(account.id)
                    settled.found[kind] += 1
                    settled.doubled_logins += step.outcome == "ok"
    return settled


def run_with_failover(
    services: Services, world: World, servers: Servers
) -> tuple[list[FailoverSession], Switch, int]:
    known = Known()
    sessions = [FailoverSession(services, world, known, i) for i in range(SESSIONS)]
    started = time.monotonic()
    deadline = started + TOTAL_S
    threads = [
        threading.Thread(target=s.run, args=(deadline, MAX_OPS), daemon=True, name=f"s{s.index}")
        for s in sessions
    ]
    for thread in threads:
        thread.start()
    switch = Switch()
    try:
        time.sleep(max(0.0, started + BEFORE_S - time.monotonic()))
        switch.stopping = time.monotonic()
        servers.crash_primary()
        servers.promote_standby()
        switch.promoted = time.monotonic()
    finally:
        stuck = 0
        for thread in threads:
            thread.join(timeout=max(0.0, deadline + 30 - time.monotonic()))
            stuck += thread.is_alive()
    return sessions, switch, stuck


# ------------------------------------------------------------------ the test


def test_sessions_survive_a_failover_with_nothing_lost_or_doubled(
    servers: Servers, tmp_path: Path
) -> None:
    primary, standby = servers.ports
    servers.init_primary()
    server_execute(f"postgresql://postgres@127.0.0.1:{primary}/postgres", "CREATE DATABASE smis")
    fill_template(f"postgresql://postgres@127.0.0.1:{primary}/smis")
    servers.make_standby()

    url = (
        f"postgresql://postgres@127.0.0.1:{primary},127.0.0.1:{standby}/smis"
        "?target_session_attrs=read-write&connect_timeout=3"
    )
    settings = Settings(data_dir=tmp_path / "data", database_url=url).with_overrides(**LOAD_LIMITS)
    create_key_file(settings.resolved_key_file)
    open_database(url, settings.sqlite_path)
    services = build_services(settings)
    world = prepare_world(services, SESSIONS)
    close_database()

    sessions, switch, stuck = run_with_failover(services, world, servers)

    with database_proxy.obj.connection_context():
        # The URL now reaches the promoted standby, which takes writes.
        server = database_proxy.obj.execute_sql(
            "SELECT inet_server_port(), pg_is_in_recovery()"
        ).fetchone()
        settled = settle_interrupted(services, sessions, switch)
        checks = check_invariants(services, world, [s.log() for s in sessions])

    steps = [step for s in sessions for step in s.steps]
    shown = Counter(step.outcome for step in steps if step.outcome != "ok")
    summary = (
        f"switch {switch.promoted - switch.stopping:.2f} s; {len(steps)} operations; "
        f"shown: {dict(shown)}; cut off and found written: {dict(settled.found)}; "
        f"logins written twice by a retry: {settled.doubled_logins}\n"
        + "\n".join(f"{'✓' if c.ok else '✗'} {c.name}: {c.detail} {c.problems[:5]}" for c in checks)
    )
    print(summary)
    unexpected = [u for s in sessions for u in s.unexpected]
    assert not unexpected, summary + "\n" + "\n".join(unexpected[:5])
    assert not stuck, summary
    assert server == (standby, False), summary

    # Before the crash the sessions wrote on the first primary ...
    assert all(any(st.wrote and st.ended < switch.stopping for st in s.steps) for s in sessions), (
        summary
    )
    # ... and every one of them wrote on the new primary after the promotion, having
    # reconnected by itself.
    assert all(
        any(st.wrote and st.started > switch.promoted for st in s.steps) for s in sessions
    ), summary
    # A database-unavailable message only while the primary was gone.
    late = [
        st
        for st in steps
        if st.outcome == "DatabaseUnavailable"
        and not (switch.stopping < st.ended < switch.promoted + SETTLE_S)
    ]
    assert not late, summary + f"\nunavailable outside the switch: {late[:5]}"
    # Nothing lost, nothing twice, the audit chain whole.
    assert all(check.ok for check in checks), summary
    # At most one operation per session can have been cut off mid-commit.
    assert sum(settled.found.values()) <= SESSIONS, summary
