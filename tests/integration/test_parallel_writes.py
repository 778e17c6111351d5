"""Writes in parallel on PostgreSQL: one change does not wait for another's whole
transaction, and the races that parallel writers open are answered as a person expects.

PostgreSQL only: SQLite takes its write lock at BEGIN (one writer at a time), so none
of these interleavings can happen there. Each test forces its interleaving with a
barrier or an event inside the first writer's transaction, so it does not depend on
the machine's speed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from models.db import database_proxy, open_database, write_transaction
from models.schema import Account, AuditEvent, PermissionRequest, Unit
from smis_tui.core.config import Settings
from smis_tui.core.domain import RequestStatus, Role
from smis_tui.services import Services, build_services
from smis_tui.services import accounts as accounts_module
from smis_tui.services.errors import ConflictError, NotAllowed
from tests.helpers import apply_for, branch, card_proof, form, make_admin, new_person_id

# Long enough for a loaded machine; the forced interleavings never wait this long
# unless the code under test serialises what it should not.
WAIT_S = 10.0


@pytest.fixture
def services(postgres_settings: Settings) -> Services:
    open_database(postgres_settings.database_url, postgres_settings.sqlite_path)
    return build_services(postgres_settings)


@pytest.fixture
def tree(services: Services) -> dict[str, Unit]:
    return branch()


class Outcome:
    """What a thread's call returned or raised."""

    def __init__(self) -> None:
        self.value: Any = None
        self.error: BaseException | None = None


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, Outcome]:
    """Run ``fn`` on its own connection in a new thread, as another kiosk would."""
    outcome = Outcome()

    def run() -> None:
        try:
            with database_proxy.obj.connection_context():
                outcome.value = fn()
        except BaseException as exc:  # handed to the test
            outcome.error = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def finished(thread: threading.Thread, outcome: Outcome) -> Outcome:
    thread.join(WAIT_S * 2)
    assert not thread.is_alive(), "a writer never finished"
    return outcome


@pytest.fixture
def audited_write_open(services: Services) -> Iterator[threading.Event]:
    """Another kiosk's write transaction, open and already holding an audit row; set
    the event to let it commit."""
    release = threading.Event()
    recorded = threading.Event()

    def slow_change() -> None:
        with write_transaction():
            services.audit.record("set_language", actor=None, actor_label="slow kiosk")
            recorded.set()
            assert release.wait(WAIT_S * 2)

    thread, outcome = in_thread(slow_change)
    assert recorded.wait(WAIT_S)
    yield release
    release.set()
    assert finished(thread, outcome).error is None


def test_a_change_does_not_wait_for_another_kiosks_open_transaction(
    services: Services, tree: dict[str, Unit], audited_write_open: threading.Event
) -> None:
    """A new application commits while another kiosk's audited change is still open:
    the chain's lock is taken only for the append at commit, not for the whole
    transaction (which made every kiosk wait for the slowest one)."""
    thread, outcome = in_thread(lambda: apply_for(services, tree["clinic"]))
    thread.join(WAIT_S)
    assert not thread.is_alive(), "the application waited for the other transaction"
    assert outcome.error is None
    account_id, _ = outcome.value
    # Read while the other is still open (released, it may commit before any read):
    # the application's rows are in the chain, the other's not yet.
    rows = list(AuditEvent.select().order_by(AuditEvent.id))
    assert account_id in {row.actor_id for row in rows}
    assert "slow kiosk" not in {row.actor_label for row in rows}
    audited_write_open.set()


def test_the_chain_is_in_commit_order_and_whole(
    services: Services, audited_write_open: threading.Event, tree: dict[str, Unit]
) -> None:
    apply_for(services, tree["clinic"])
    audited_write_open.set()
    for _ in range(50):
        if AuditEvent.select().where(AuditEvent.actor_label == "slow kiosk").exists():
            break
        threading.Event().wait(0.1)
    rows = list(AuditEvent.select().order_by(AuditEvent.id))
    assert rows[-1].actor_label == "slow kiosk"
    result = services.audit.verify()
    assert result.ok, result.reason


def test_the_same_person_applying_at_two_kiosks_at_once_gets_one_account(
    services: Services, tree: dict[str, Unit], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both kiosks find no account and both insert one: one application stands, the
    other person is told 「已有申請審核中」 (as when they come one after the other),
    not shown a database error."""
    person_id = new_person_id()
    both_looked = threading.Barrier(2, timeout=WAIT_S)
    check_card = accounts_module.card_for_new_account

    def after_both_looked(*args: Any, **kwargs: Any) -> Any:
        try:
            both_looked.wait()
        except threading.BrokenBarrierError:
            pass  # the other writer already finished: no race to force
        return check_card(*args, **kwargs)

    monkeypatch.setattr(accounts_module, "card_for_new_account", after_both_looked)

    def send() -> int:
        application = form(person_id, tree["clinic"])
        return services.accounts.apply(application, card_proof(services, person_id))

    kiosks = [in_thread(send) for _ in range(2)]
    outcomes = [finished(*kiosk) for kiosk in kiosks]
    sent = [o for o in outcomes if o.error is None]
    refused = [o for o in outcomes if o.error is not None]
    assert len(sent) == 1 and len(refused) == 1, [o.error for o in outcomes]
    error = refused[0].error
    assert isinstance(error, NotAllowed) and error.key == "error.account_pending", error
    index = services.accounts.keys.blind_index(person_id)
    account = Account.get(Account.person_id_index == index)
    assert account.id == sent[0].value
    applies = AuditEvent.select().where(
        (AuditEvent.actor == account.id) & (AuditEvent.action == "apply")
    )
    assert applies.count() == 1
    assert services.audit.verify().ok


def test_a_decision_never_lands_on_a_request_the_applicant_just_replaced(
    services: Services, tree: dict[str, Unit], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The applicant's update (which replaces the pending requests) is mid-transaction
    when a reviewer approves the old request: the reviewer is told the request is no
    longer pending, and the applicant's new requests stay undecided."""
    admin = make_admin(services, tree["bureau"])
    account_id, request_id = apply_for(services, tree["clinic"])
    person_id = services.accounts.person_id_for(account_id)
    version = services.accounts.view(account_id).version
    inserting = threading.Event()
    go_on = threading.Event()
    insert_requests = accounts_module.AccountService._insert_requests

    def paused(self: Any, *args: Any, **kwargs: Any) -> Any:
        inserting.set()
        assert go_on.wait(WAIT_S * 2)
        return insert_requests(self, *args, **kwargs)

    monkeypatch.setattr(accounts_module.AccountService, "_insert_requests", paused)
    update = form(person_id, tree["clinic"], phone="02-23959826")
    updater = in_thread(
        lambda: services.accounts.update_pending(update, version, card_proof(services, person_id))
    )
    assert inserting.wait(WAIT_S)
    reviewer = in_thread(lambda: services.review.approve(admin.id, request_id))
    reviewer[0].join(0.5)
    go_on.set()
    assert finished(*updater).error is None
    error = finished(*reviewer).error
    assert isinstance(error, ConflictError), error
    assert PermissionRequest.get_by_id(request_id).status == RequestStatus.SUPERSEDED
    pending = services.accounts.view(account_id).pending()
    assert [(r.role, r.status) for r in pending] == [(Role.OFFICER, RequestStatus.PENDING)]
    assert services.audit.verify().ok


def test_two_reviewers_deciding_one_request_at_once_decide_it_once(
    services: Services, tree: dict[str, Unit]
) -> None:
    first = make_admin(services, tree["bureau"])
    second = make_admin(services, tree["bureau"])
    for _ in range(5):
        _, request_id = apply_for(services, tree["clinic"])
        start = threading.Barrier(2, timeout=WAIT_S)

        def decide(
            reviewer: int,
            approve: bool,
            request_id: int = request_id,
            start: threading.Barrier = start,
        ) -> None:
            start.wait()
            if approve:
                services.review.approve(reviewer, request_id)
            else:
                services.review.reject(reviewer, request_id, "資料不符")

        kiosks = [
            in_thread(lambda: decide(first.id, True)),
            in_thread(lambda: decide(second.id, False)),
        ]
        outcomes = [finished(*kiosk) for kiosk in kiosks]
        errors = [o.error for o in outcomes if o.error is not None]
        assert len(errors) == 1 and isinstance(errors[0], ConflictError), errors
        decisions = AuditEvent.select().where(
            (AuditEvent.target_type == "permission")
            & (AuditEvent.target_id == str(request_id))
            & AuditEvent.action.in_(["approve_request", "reject_request"])
        )
        assert decisions.count() == 1
    assert services.audit.verify().ok
