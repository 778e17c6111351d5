"""How many statements the hot operations send, on SQLite and PostgreSQL.

On a busy kiosk network the client and the server share few cores, so every statement
costs throughput; the audit append runs under the chain's lock (one writer at a time),
so a statement there delays every other change (bench/load.py measures both).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from models.db import database_proxy
from models.schema import Account, Unit
from smis_tui.core.domain import Role
from smis_tui.services import Services
from smis_tui.services.accounts import RoleChoice
from tests.helpers import (
    apply_for,
    card_proof,
    form,
    make_admin,
    new_person_id,
    owner_proof,
    send_application,
)


@contextmanager
def statements(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The SQL text of every statement sent inside the block."""
    db = database_proxy.obj
    sent: list[str] = []
    original = db.execute_sql

    def counting(sql: str, params: object = None, *args: object, **kwargs: object) -> object:
        sent.append(sql)
        return original(sql, params, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(db, "execute_sql", counting)
        yield sent


def _append_part(sent: list[str]) -> list[str]:
    """The statements from the audit append's read of the chain's head on."""
    start = next(i for i, sql in enumerate(sent) if sql.startswith('SELECT "key", "value"'))
    return sent[start:]


def _selects_from(sent: list[str], table: str) -> list[str]:
    return [sql for sql in sent if sql.startswith("SELECT") and f'FROM "{table}"' in sql]


def test_audit_append_reads_nothing_but_the_head(
    services: Services, tree: dict[str, Unit], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under the chain's lock: the head, the rows, the new head. The row's actor and
    unit are stored by id, never read back (that was two more statements per row
    while every other writer waited)."""
    admin = make_admin(services, tree["bureau"])
    _, request_id = apply_for(services, tree["clinic"], Role.OFFICER)
    with statements(monkeypatch) as sent:
        services.review.approve(admin.id, request_id)
    append = _append_part(sent)
    assert [sql.split(" (")[0] for sql in append] == [
        'SELECT "key", "value" FROM "meta" WHERE "key" IN',
        'INSERT INTO "audit_event"',
        'INSERT INTO "meta"',
    ]


def test_decision_reads_the_unit_branch_with_the_grants(
    services: Services, tree: dict[str, Unit], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CDC 管理者 deciding a clinic's request: the clinic is four levels below, yet
    its superior units are read at once with the reviewer's grants, and the
    applicant's account once."""
    admin = make_admin(services, tree["cdc"])
    account_id, request_id = apply_for(services, tree["clinic"], Role.OFFICER)
    with statements(monkeypatch) as sent:
        services.review.approve(admin.id, request_id)
    assert len(_selects_from(sent, "unit")) == 0  # the branch comes with the grants
    # The reviewer (locked to share) and the applicant (locked first), nothing more.
    assert len(_selects_from(sent, "account")) == 2
    assert len(sent) <= 12, sent
    assert Account.get_by_id(account_id).status == "active"


def test_queue_page_statements(
    services: Services, tree: dict[str, Unit], monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = make_admin(services, tree["cdc"])
    for _ in range(3):
        apply_for(services, tree["clinic"], Role.OFFICER)
    services.review.queue(admin.id)  # the unit tree is read once per process
    with statements(monkeypatch) as sent:
        page = services.review.queue(admin.id)
    assert page.total == 3
    assert len(sent) <= 5, sent


def test_queue_page_statements_do_not_grow_with_its_applicants(
    services: Services, tree: dict[str, Unit], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page whose every applicant has a past (a role held, a refusal, a sub-option)
    and other requests someone else decides: what 審核 shows of each (issue 20, item
    8) is read for the whole page at once, never once per applicant."""
    reviewer = make_admin(services, tree["bureau"], ["ppe"])
    cdc = make_admin(services, tree["cdc"], ["ppe", "flu_antiviral", "emerging"])

    def applicant_with_a_past() -> None:
        roles = {"ppe": RoleChoice(Role.VIEWER), "flu_antiviral": RoleChoice(Role.OFFICER)}
        account_id = send_application(services, form(new_person_id(), tree["clinic"], roles))
        ppe, flu = (r.id for r in services.accounts.view(account_id).pending())
        services.review.approve(cdc.id, ppe)
        services.review.reject(cdc.id, flu, "請補附在職證明")
        services.accounts.request_changes(
            account_id,
            {
                "ppe": RoleChoice(Role.OFFICER),
                "flu_antiviral": RoleChoice(Role.VIEWER),
                "emerging": RoleChoice(Role.VIEWER, ("COVID-19",)),
            },
            services.accounts.view(account_id).version,
            owner_proof(services, account_id),
        )

    def page_statements() -> tuple[int, list[str]]:
        services.review.queue(reviewer.id)  # the unit tree is read once per process
        with statements(monkeypatch) as sent:
            page = services.review.queue(reviewer.id)
        for item in page.items:
            assert item.current and item.decisions and item.contact is not None
            assert all(other.decider is not None for other in item.other_pending)
        return len(page.items), sent

    for _ in range(2):
        applicant_with_a_past()
    few, few_sent = page_statements()
    for _ in range(6):
        applicant_with_a_past()
    many, many_sent = page_statements()
    assert (few, many) == (2, 8)
    assert len(many_sent) == len(few_sent), many_sent
    # The scope (grants, unit tree, candidates), the page's requests with their
    # applicants' past, the sub-options' names, the application cards, who decides the
    # others, and the deciding units of the past decisions with their names.
    assert len(many_sent) <= 9, many_sent


def test_application_statements(
    services: Services, tree: dict[str, Unit], monkeypatch: pytest.MonkeyPatch
) -> None:
    """新帳號申請: the unit, the roles (categories and their sub-options in two reads
    whatever their number), the write and its two audit rows."""
    person_id = new_person_id()
    roles = {"ppe": RoleChoice(Role.ADMIN), "emerging": RoleChoice(Role.OFFICER, ("COVID-19",))}
    application = form(person_id, tree["bureau"], roles)
    proof = card_proof(services, person_id)
    with statements(monkeypatch) as sent:
        account_id = services.accounts.apply(application, proof)
    assert len(sent) <= 14, sent
    assert len(services.accounts.view(account_id).pending()) == 2
