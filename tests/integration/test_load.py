"""The load suite, short setting (bench/load.py; `make stress` runs the full one).

Simulated kiosk sessions apply, update pending applications, review, log in and search
for a few seconds on PostgreSQL (threads, one connection each) and on SQLite (kiosk
processes on one file); then every invariant must hold and no error other than the
ones a user is meant to see may have happened. The PostgreSQL test fails, not skips,
without PostgreSQL under CI / `make test` (tests/conftest.py).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from bench.load import RunResult, recheck, report, run_postgres, run_sqlite
from models.db import close_database, open_database, write_transaction
from models.schema import AuditEvent
from smis_tui.core.config import Settings

SECONDS = 5
MAX_OPS = 2_000


def _assert_clean(run: RunResult) -> None:
    text = report(run)
    print(text)
    assert not run.unexpected, text
    assert not run.stuck, text
    assert all(check.ok for check in run.checks), text
    ops = {label for log in run.logs for label, _, _ in log["events"]}
    assert {"apply", "review", "login", "search"} <= ops, text
    # The mix really raced: something was written and decided.
    assert any(log["applies"] for log in run.logs), text
    assert any(log["decisions"] for log in run.logs), text


def test_load_postgres(postgres_settings: Settings, tmp_path: Path) -> None:
    assert postgres_settings.database_url is not None
    run = run_postgres(postgres_settings.database_url, 8, SECONDS, MAX_OPS, tmp_path)
    _assert_clean(run)


@pytest.fixture(scope="module")
def sqlite_run(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    run = run_sqlite(
        sqlite_template, 8, 4, SECONDS, MAX_OPS, tmp_path_factory.mktemp("load-sqlite")
    )
    close_database()
    return run


def test_load_sqlite_processes(sqlite_run: RunResult) -> None:
    _assert_clean(sqlite_run)
    assert sqlite_run.processes == 4
    assert len({log["index"] for log in sqlite_run.logs}) == 8


def _failed(run: RunResult, logs: list[dict[str, object]] | None = None) -> set[str]:
    return {check.name for check in recheck(run, logs) if not check.ok}


def test_checker_sees_broken_invariants(sqlite_run: RunResult) -> None:
    """The checker is not vacuous: claims that disagree with the database fail it."""
    assert _failed(sqlite_run) == set()
    logs = sqlite_run.logs

    def without(key: str) -> list[dict[str, object]]:
        changed = copy.deepcopy(logs)
        for log in changed:
            if log[key]:
                log[key].pop()
                return changed
        pytest.skip(f"the short run produced no {key}")

    # An application a session was not told about / an update nobody was told of.
    assert "applications exactly once" in _failed(sqlite_run, without("applies"))
    if any(log["updates"] for log in logs):
        assert "no lost update" in _failed(sqlite_run, without("updates"))
    # A decision two reviewers were told they made.
    doubled = copy.deepcopy(logs)
    first = next(log for log in doubled if log["decisions"])
    first["decisions"].append(dict(first["decisions"][0], reviewer=-1))
    assert "no request decided twice" in _failed(sqlite_run, doubled)
    # A conflict that the database says was written.
    lying = copy.deepcopy(logs)
    first_apply = next(log for log in lying if log["applies"])
    claim = first_apply["applies"][0]
    first_apply["conflicts"].append(dict(claim, expected=10_000))
    assert "no lost update" in _failed(sqlite_run, lying)
    # An edited audit row.
    open_database(None, sqlite_run.settings.sqlite_path)
    try:
        with write_transaction():
            first = AuditEvent.select().order_by(AuditEvent.id).first()
            AuditEvent.update(actor_label="someone else").where(AuditEvent.id == first.id).execute()
    finally:
        close_database()
    assert "audit chain verifies" in _failed(sqlite_run)
