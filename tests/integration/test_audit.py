"""The audit hash chain notices edited, deleted and inserted rows."""

from __future__ import annotations

import pytest

from models.schema import AuditEvent
from smis_tui.services import Services
from tests.helpers import audited_applications, execute_sql


@pytest.fixture
def trail(services: Services) -> list[int]:
    return audited_applications(services, "甲乙丙丁")


def test_intact_chain_verifies(services: Services, trail: list[int]) -> None:
    result = services.audit.verify()
    assert (result.ok, result.checked, result.first_bad_id) == (True, 4, None)


def test_edited_row_is_named(services: Services, trail: list[int]) -> None:
    execute_sql("UPDATE audit_event SET details = ? WHERE id = ?", ('{"roles": []}', trail[1]))
    result = services.audit.verify()
    assert not result.ok and result.first_bad_id == trail[1] and "修改" in result.reason


def test_deleted_row_breaks_the_next_link(services: Services, trail: list[int]) -> None:
    execute_sql("DELETE FROM audit_event WHERE id = ?", (trail[2],))
    result = services.audit.verify()
    assert not result.ok and result.first_bad_id == trail[3]


def test_deleted_last_row_is_noticed(services: Services, trail: list[int]) -> None:
    execute_sql("DELETE FROM audit_event WHERE id = ?", (trail[3],))
    result = services.audit.verify()
    assert not result.ok and "末端" in result.reason


def test_inserted_row_is_noticed(services: Services, trail: list[int]) -> None:
    forged = AuditEvent.get_by_id(trail[1])
    execute_sql(
        "INSERT INTO audit_event (at, actor_label, action, target_type, target_id, details, "
        "prev_hash, row_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (forged.at, "forger", "apply", "account", "1", "{}", forged.row_hash, "f" * 64),
    )
    assert not services.audit.verify().ok


def test_rows_are_only_written_inside_a_state_change(services: Services) -> None:
    with pytest.raises(RuntimeError):
        services.audit.record("login", actor=None)
