"""The audit hash chain notices edited, deleted and inserted rows."""

from __future__ import annotations

import pytest

from models.db import database_proxy
from models.schema import AuditEvent, UnitKind
from smis_tui.services import Services
from tests.helpers import form, new_person_id, unit_of_kind


@pytest.fixture
def trail(services: Services) -> list[int]:
    clinic = unit_of_kind(UnitKind.CLINIC, with_category="ppe")
    for name in ("甲", "乙", "丙", "丁"):
        services.accounts.apply(form(new_person_id(), clinic, name=name))
    ids = [e.id for e in AuditEvent.select().order_by(AuditEvent.id)]
    assert len(ids) == 4 and services.audit.verify().ok
    return ids


def _sql(statement: str, params: tuple[object, ...] = ()) -> None:
    db = database_proxy.obj
    placeholder = "%s" if "Postgres" in type(db).__name__ else "?"
    db.execute_sql(statement.replace("?", placeholder), params)


def test_intact_chain_verifies(services: Services, trail: list[int]) -> None:
    result = services.audit.verify()
    assert (result.ok, result.checked, result.first_bad_id) == (True, 4, None)


def test_edited_row_is_named(services: Services, trail: list[int]) -> None:
    _sql("UPDATE audit_event SET details = ? WHERE id = ?", ('{"roles": []}', trail[1]))
    result = services.audit.verify()
    assert not result.ok and result.first_bad_id == trail[1] and "修改" in result.reason


def test_deleted_row_breaks_the_next_link(services: Services, trail: list[int]) -> None:
    _sql("DELETE FROM audit_event WHERE id = ?", (trail[2],))
    result = services.audit.verify()
    assert not result.ok and result.first_bad_id == trail[3]


def test_deleted_last_row_is_noticed(services: Services, trail: list[int]) -> None:
    _sql("DELETE FROM audit_event WHERE id = ?", (trail[3],))
    result = services.audit.verify()
    assert not result.ok and "末端" in result.reason


def test_inserted_row_is_noticed(services: Services, trail: list[int]) -> None:
    forged = AuditEvent.get_by_id(trail[1])
    _sql(
        "INSERT INTO audit_event (at, actor_label, action, target_type, target_id, details, "
        "prev_hash, row_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (forged.at, "forger", "apply", "account", "1", "{}", forged.row_hash, "f" * 64),
    )
    assert not services.audit.verify().ok


def test_rows_are_only_written_inside_a_state_change(services: Services) -> None:
    with pytest.raises(RuntimeError):
        services.audit.record("login", actor=None)
