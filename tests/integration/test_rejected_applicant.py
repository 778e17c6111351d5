"""An applicant whose every request was rejected (issue 20, item 6), on SQLite and
PostgreSQL: 帳號管理 no longer lists them 「審核中」 forever, and re-entering their ID
starts a fresh application that says why."""

from __future__ import annotations

from models.schema import AuditEvent, Role, Unit
from smis_tui.core.domain import AccountStatus
from smis_tui.services import Services
from smis_tui.services.accounts import RoleChoice, StartKind
from smis_tui.services.control import StatusFilter
from tests.helpers import apply_for, form, make_admin, new_person_id, send_application


def test_an_applicant_rejected_in_full_is_not_listed_under_review(
    services: Services, tree: dict[str, Unit]
) -> None:
    clinic = tree["clinic"]
    bureau_admin = make_admin(services, tree["bureau"])
    person_id = new_person_id()
    account_id = send_application(
        services, form(person_id, clinic, {"ppe": RoleChoice(Role.OFFICER)})
    )
    waiting, _ = apply_for(services, clinic, Role.VIEWER)
    for request in services.accounts.view(account_id).pending():
        services.review.reject(bureau_admin.id, request.id, "非本單位人員")
    listed = {r.account_id: r for r in services.control.accounts_below(bureau_admin.id).rows}
    assert listed[account_id].rejected and listed[account_id].status == AccountStatus.PENDING
    assert not listed[waiting].rejected
    pending = {
        r.account_id
        for r in services.control.accounts_below(bureau_admin.id, status=StatusFilter.PENDING).rows
    }
    rejected = {
        r.account_id
        for r in services.control.accounts_below(bureau_admin.id, status=StatusFilter.REJECTED).rows
    }
    assert account_id in rejected and account_id not in pending
    assert waiting in pending and waiting not in rejected
    # Re-entering the ID: a fresh application, told why (and the look-up audited).
    start = services.accounts.begin_application(person_id, clinic.code)
    assert (start.kind, start.rejected) == (StartKind.NEW, True)
    looked = AuditEvent.select().order_by(AuditEvent.id.desc()).get()
    assert looked.action == "rejected_lookup" and looked.target_id == str(account_id)
    send_application(services, form(person_id, clinic, {"ppe": RoleChoice(Role.VIEWER)}))
    again = {r.account_id: r for r in services.control.accounts_below(bureau_admin.id).rows}
    assert not again[account_id].rejected
    other = services.accounts.begin_application(new_person_id(), clinic.code)
    assert (other.kind, other.rejected) == (StartKind.NEW, False)
