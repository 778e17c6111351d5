"""帳號管理 by superior units and the 軌跡紀錄 search, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest

from models.db import write_transaction
from models.schema import Account, AuditEvent, Category, Unit, UnitCategory, utcnow
from smis_tui.core.clock import taiwan_date
from smis_tui.core.domain import AccountStatus, DisabledReason, RequestStatus, Role, UnitKind
from smis_tui.core.rocdate import to_roc
from smis_tui.services import Services
from smis_tui.services.accounts import RoleChoice, StartKind
from smis_tui.services.auth import LoginState
from smis_tui.services.control import StatusFilter
from smis_tui.services.errors import ConflictError, NotAllowed, NotFound, ValidationFailed
from smis_tui.services.scope import UnitTree
from tests.helpers import (
    approved_applicant,
    card_proof,
    execute_sql,
    form,
    make_admin,
    new_person_id,
    set_idle,
)


@pytest.fixture
def tree(tree: dict[str, Unit]) -> dict[str, Unit]:
    """The branch of tests/conftest.py, and a clinic of another bureau."""
    return {**tree, "elsewhere": _clinic_outside(tree["bureau"])}


def _clinic_outside(bureau: Unit) -> Unit:
    """A clinic handling ppe whose bureau is not ``bureau``."""
    tree = UnitTree()
    for unit in (
        Unit.select()
        .join(UnitCategory)
        .join(Category)
        .where((Unit.kind == UnitKind.CLINIC) & Unit.active & (Category.code == "ppe"))
        .order_by(Unit.code.desc())
    ):
        if bureau.id not in tree.ancestors(unit.id):
            return unit
    raise LookupError("no clinic outside the bureau")


def _count_audit() -> int:
    return AuditEvent.select().count()


@pytest.fixture
def people(services: Services, tree: dict[str, Unit]) -> dict[str, int]:
    """A CDC admin, a bureau admin, and active accounts around them."""
    cdc = make_admin(services, tree["cdc"])
    bureau_admin = make_admin(services, tree["bureau"])
    ids = {"cdc": cdc.id, "bureau_admin": bureau_admin.id}
    ids["clinic"] = approved_applicant(
        services,
        tree["clinic"],
        cdc.id,
        {"ppe": RoleChoice(Role.OFFICER), "flu_antiviral": RoleChoice(Role.VIEWER)},
        name="林診所",
    )
    for key, unit, name in (
        ("centre", "centre", "陳衛生所"),
        ("bureau_peer", "bureau", "張同局"),
        ("region", "region", "李區管"),
        ("elsewhere", "elsewhere", "吳他縣"),
    ):
        ids[key] = approved_applicant(services, tree[unit], cdc.id, name=name)
    return ids


def _disable(services: Services, actor: int, target: int, reason: str) -> None:
    """``actor`` disables ``target`` at its current version (the one a screen shows)."""
    services.control.disable_account(actor, target, Account.get_by_id(target).version, reason)


def _names(page: object) -> set[str]:
    return {row.name for row in page.rows}  # type: ignore[attr-defined]


# ----------------------------------------------------------------------- the list


def test_a_bureau_admin_sees_only_the_units_below(
    services: Services, people: dict[str, int]
) -> None:
    page = services.control.accounts_below(people["bureau_admin"])
    assert _names(page) == {"林診所", "陳衛生所"}
    assert page.total == 2 and page.pages == 1 and page.page_size == 20
    clinic = next(r for r in page.rows if r.name == "林診所")
    assert clinic.masked_id.count("*") == 6
    assert [(p.category_code, p.role) for p in clinic.permissions] == [
        ("ppe", Role.OFFICER),
        ("flu_antiviral", Role.VIEWER),
    ]
    assert clinic.status == AccountStatus.ACTIVE and clinic.idle_days == 0
    assert not clinic.inactive


def test_the_cdc_admin_sees_everyone_below_but_not_itself(
    services: Services, people: dict[str, int]
) -> None:
    page = services.control.accounts_below(people["cdc"])
    ids = {row.account_id for row in page.rows}
    assert people["cdc"] not in ids
    assert {people[k] for k in ("clinic", "centre", "bureau_peer", "region", "elsewhere")} <= ids


def test_a_non_admin_cannot_list(services: Services, people: dict[str, int]) -> None:
    with pytest.raises(NotAllowed) as caught:
        services.control.accounts_below(people["clinic"])
    assert caught.value.key == "control.error_not_admin"
    assert not services.control.can_control(people["clinic"])
    assert services.control.can_control(people["bureau_admin"])


def test_filters_by_name_id_unit_and_status(
    services: Services, people: dict[str, int], tree: dict[str, Unit]
) -> None:
    control = services.control
    admin = people["cdc"]
    assert _names(control.accounts_below(admin, name="診所")) == {"林診所"}
    person_id = services.accounts.person_id_for(people["centre"])
    assert _names(control.accounts_below(admin, name=person_id)) == {"陳衛生所"}
    assert _names(control.accounts_below(admin, name="%")) == set()
    by_code = control.accounts_below(admin, unit=tree["clinic"].code)
    assert _names(by_code) == {"林診所"}
    by_name = control.accounts_below(admin, unit=tree["bureau"].name)
    assert "張同局" in _names(by_name)
    person = new_person_id()
    pending_id = services.accounts.apply(
        form(person, tree["clinic"], name="周申請"), card_proof(services, person)
    )
    assert _names(control.accounts_below(admin, status=StatusFilter.PENDING)) == {"周申請"}
    assert "周申請" not in _names(control.accounts_below(admin, status=StatusFilter.ACTIVE))
    assert pending_id in {r.account_id for r in control.accounts_below(admin).rows}
    with pytest.raises(ValidationFailed):
        control.accounts_below(admin, status="bogus")


def test_inactive_over_150_days_is_marked_and_listed(
    services: Services, people: dict[str, int]
) -> None:
    assert services.settings.inactive_warning_days == 150
    set_idle(people["clinic"], 160)
    set_idle(people["centre"], 140)
    page = services.control.accounts_below(people["bureau_admin"])
    rows = {row.name: row for row in page.rows}
    assert rows["林診所"].inactive and rows["林診所"].idle_days == 160
    assert not rows["陳衛生所"].inactive and rows["陳衛生所"].idle_days == 140
    inactive = services.control.accounts_below(people["bureau_admin"], status=StatusFilter.INACTIVE)
    assert _names(inactive) == {"林診所"}
    # The same accounts as the warning list of the account service.
    assert {a.id for a in services.accounts.inactive_below(people["bureau_admin"])} == {
        people["clinic"]
    }


def test_pages_of_twenty(services: Services, people: dict[str, int], tree: dict[str, Unit]) -> None:
    for n in range(21):
        person = new_person_id()
        services.accounts.apply(
            form(person, tree["clinic"], name=f"申請人{n:02d}"), card_proof(services, person)
        )
    first = services.control.accounts_below(people["bureau_admin"])
    assert (first.total, first.pages, len(first.rows)) == (23, 2, 20)
    second = services.control.accounts_below(people["bureau_admin"], page=2)
    assert len(second.rows) == 3
    assert not {r.account_id for r in first.rows} & {r.account_id for r in second.rows}
    assert services.control.accounts_below(people["bureau_admin"], page=9).page == 2


# ----------------------------------------------------------------------- disabling


def test_disable_an_account_below(services: Services, people: dict[str, int]) -> None:
    target = people["clinic"]
    version = Account.get_by_id(target).version
    services.control.disable_account(people["bureau_admin"], target, version, "  已離職  ")
    account = Account.get_by_id(target)
    assert account.status == AccountStatus.DISABLED
    assert account.disabled_reason == DisabledReason.SUPERIOR
    assert account.version == version + 1
    view = services.accounts.view(target)
    assert not view.granted()
    assert {r.status for r in view.requests} == {RequestStatus.REVOKED}
    person_id = services.accounts.person_id_for(target)
    outcome = services.login.outcome_for_person(person_id)
    assert outcome.state == LoginState.DISABLED
    # The login says which unit disabled it and why (the unit of the acting 管理者).
    assert outcome.disabled_reason == DisabledReason.SUPERIOR
    assert (outcome.disabled_by_unit, outcome.disabled_note) == (
        Account.get_by_id(people["bureau_admin"]).unit.name,
        "已離職",
    )
    # The person may apply again: the ID gets every ID's answer, the card the account.
    start = services.accounts.begin_application(person_id, view.unit_code)
    assert start.kind == StartKind.NEW
    event = AuditEvent.select().where(AuditEvent.action == "disable_account").get()
    assert event.actor_id == people["bureau_admin"] and event.target_id == str(target)
    assert "已離職" in event.details
    again = form(person_id, Unit.get(Unit.code == view.unit_code))
    assert services.accounts.apply(again, card_proof(services, person_id)) == target
    assert Account.get_by_id(target).status == AccountStatus.PENDING
    assert services.audit.verify().ok


def test_disable_one_permission_then_the_last(services: Services, people: dict[str, int]) -> None:
    target = people["clinic"]
    view = services.accounts.view(target)
    ppe, flu = view.granted()
    assert (
        services.control.disable_permission(
            people["bureau_admin"], target, ppe.id, view.version, "不再負責防護裝備"
        )
        is False
    )
    after = services.accounts.view(target)
    assert after.status == AccountStatus.ACTIVE and after.version == view.version + 1
    assert [g.id for g in after.granted()] == [flu.id]
    event = AuditEvent.select().where(AuditEvent.action == "disable_permission").get()
    assert event.actor_id == people["bureau_admin"]
    assert (event.target_type, event.target_id) == ("account", str(target))
    # Disabling it twice: the permission is no longer granted.
    with pytest.raises(NotFound):
        services.control.disable_permission(
            people["bureau_admin"], target, ppe.id, after.version, "再一次"
        )
    assert (
        services.control.disable_permission(
            people["bureau_admin"], target, flu.id, after.version, "最後一項"
        )
        is True
    )
    final = Account.get_by_id(target)
    assert final.status == AccountStatus.DISABLED
    assert final.disabled_reason == DisabledReason.SUPERIOR
    assert services.audit.verify().ok


def test_a_reason_is_required(services: Services, people: dict[str, int]) -> None:
    target = people["clinic"]
    view = services.accounts.view(target)
    before = _count_audit()
    for reason in ("", "   ", "a\x1b[31m"):
        with pytest.raises(ValidationFailed) as caught:
            services.control.disable_account(people["bureau_admin"], target, view.version, reason)
        assert "reason" in caught.value.errors
        with pytest.raises(ValidationFailed):
            services.control.disable_permission(
                people["bureau_admin"], target, view.granted()[0].id, view.version, reason
            )
    assert _count_audit() == before
    assert services.accounts.view(target) == view


@pytest.mark.parametrize(
    ("actor", "target", "key"),
    [
        ("bureau_admin", "bureau_admin", "control.error_self"),
        ("bureau_admin", "region", "control.error_superior"),
        ("bureau_admin", "cdc", "control.error_superior"),
        ("bureau_admin", "bureau_peer", "control.error_out_of_scope"),
        ("bureau_admin", "elsewhere", "control.error_out_of_scope"),
        ("clinic", "centre", "control.error_not_admin"),
    ],
)
def test_refused_targets_change_nothing(
    services: Services, people: dict[str, int], actor: str, target: str, key: str
) -> None:
    view = services.accounts.view(people[target])
    before = _count_audit()
    with pytest.raises(NotAllowed) as caught:
        services.control.disable_account(people[actor], people[target], view.version, "理由")
    assert caught.value.key == key
    if view.granted():
        with pytest.raises(NotAllowed) as caught:
            services.control.disable_permission(
                people[actor], people[target], view.granted()[0].id, view.version, "理由"
            )
        assert caught.value.key == key
    assert services.accounts.view(people[target]) == view
    assert _count_audit() == before


def test_a_superior_of_a_centre_admin_is_refused(
    services: Services, people: dict[str, int], tree: dict[str, Unit]
) -> None:
    centre_admin = make_admin(services, tree["centre"])
    for target, key in (
        (people["bureau_admin"], "control.error_superior"),
        (people["clinic"], None),
    ):
        version = Account.get_by_id(target).version
        if key is None:
            services.control.disable_account(centre_admin.id, target, version, "理由")
        else:
            with pytest.raises(NotAllowed) as caught:
                services.control.disable_account(centre_admin.id, target, version, "理由")
            assert caught.value.key == key


def test_a_permission_of_another_account_is_not_found(
    services: Services, people: dict[str, int]
) -> None:
    other = services.accounts.view(people["centre"]).granted()[0]
    view = services.accounts.view(people["clinic"])
    with pytest.raises(NotFound):
        services.control.disable_permission(
            people["bureau_admin"], people["clinic"], other.id, view.version, "理由"
        )
    assert services.accounts.view(people["centre"]).granted()[0] == other


def test_disabled_pending_and_stale_versions_are_refused(
    services: Services, people: dict[str, int], tree: dict[str, Unit]
) -> None:
    target = people["clinic"]
    version = Account.get_by_id(target).version
    with pytest.raises(ConflictError):
        services.control.disable_account(people["bureau_admin"], target, version - 1, "理由")
    with pytest.raises(ConflictError):
        services.control.disable_permission(
            people["bureau_admin"],
            target,
            services.accounts.view(target).granted()[0].id,
            version - 1,
            "理由",
        )
    assert Account.get_by_id(target).status == AccountStatus.ACTIVE
    services.control.disable_account(people["bureau_admin"], target, version, "理由")
    with pytest.raises(NotAllowed) as caught:
        services.control.disable_account(people["bureau_admin"], target, version + 1, "理由")
    assert caught.value.key == "control.error_already_disabled"
    person = new_person_id()
    pending = services.accounts.apply(form(person, tree["clinic"]), card_proof(services, person))
    with pytest.raises(NotAllowed) as caught:
        services.control.disable_account(
            people["bureau_admin"], pending, Account.get_by_id(pending).version, "理由"
        )
    assert caught.value.key == "control.error_not_active"


def test_a_disabled_admin_can_no_longer_disable(services: Services, people: dict[str, int]) -> None:
    _disable(services, people["cdc"], people["bureau_admin"], "調職")
    with pytest.raises(NotAllowed):
        _disable(services, people["bureau_admin"], people["clinic"], "x")
    with pytest.raises(NotAllowed):
        services.control.accounts_below(people["bureau_admin"])


# ----------------------------------------------------------------------- the trail


def test_own_trail_shows_what_was_done_to_and_by_the_user(
    services: Services, people: dict[str, int]
) -> None:
    target = people["clinic"]
    _disable(services, people["bureau_admin"], target, "已離職")
    trail = services.control.own_trail(target)
    actions = [row.action for row in trail.rows]
    assert actions[0] == "disable_account"  # newest first
    assert actions.count("approve_request") == 2 and "apply" in actions
    assert trail.rows[0].note == "已離職"
    # People are named by name and account number, never by any part of their ID.
    target_account = Account.get_by_id(target)
    admin = Account.get_by_id(people["bureau_admin"])
    assert trail.rows[0].target_label == f"{target_account.name} #{target}"
    assert trail.rows[0].actor_label == f"{admin.name} #{admin.id}"
    # Another person's rows are not in it.
    assert all(
        row.target_label != f"{Account.get_by_id(people['centre']).name} #{people['centre']}"
        for row in trail.rows
    )


def test_cdc_search_by_person_unit_action_and_date(
    services: Services, people: dict[str, int], tree: dict[str, Unit]
) -> None:
    control, cdc = services.control, people["cdc"]
    everything = control.search_trail(cdc)
    assert everything.total == _count_audit()
    person_id = services.accounts.person_id_for(people["centre"])
    by_person = control.search_trail(cdc, person_id=person_id)
    assert by_person.total == control.own_trail(people["centre"]).total > 0
    unknown = control.search_trail(cdc, person_id=new_person_id())
    assert unknown.total == 0
    by_unit = control.search_trail(cdc, unit=tree["clinic"].code)
    assert by_unit.total and {r.unit_code for r in by_unit.rows} == {tree["clinic"].code}
    by_name = control.search_trail(cdc, unit=tree["clinic"].name)
    assert by_name.total == by_unit.total
    approvals = control.search_trail(cdc, action="approve_request")
    assert approvals.total and {r.action for r in approvals.rows} == {"approve_request"}
    today = taiwan_date(utcnow())
    roc = to_roc(today)
    assert control.search_trail(cdc, since=roc, until=roc).total == everything.total
    yesterday = today - dt.timedelta(days=1)
    assert control.search_trail(cdc, until=to_roc(yesterday)).total == 0
    combined = control.search_trail(
        cdc, person_id=person_id, action="approve_request", since=roc, unit=tree["centre"].code
    )
    assert combined.total == 1


def test_trail_search_input_errors(services: Services, people: dict[str, int]) -> None:
    with pytest.raises(ValidationFailed) as caught:
        services.control.search_trail(
            people["cdc"], person_id="A123456788", since="2024/01/01", until="113/13/01"
        )
    assert set(caught.value.errors) == {"person_id", "since", "until"}
    with pytest.raises(ValidationFailed) as caught:
        services.control.search_trail(people["cdc"], since="113/07/02", until="113/07/01")
    assert set(caught.value.errors) == {"until"}


@pytest.mark.parametrize("who", ["bureau_admin", "clinic"])
def test_only_a_cdc_admin_searches_and_verifies(
    services: Services, people: dict[str, int], who: str
) -> None:
    assert not services.control.is_cdc_admin(people[who])
    with pytest.raises(NotAllowed) as caught:
        services.control.search_trail(people[who])
    assert caught.value.key == "trail.error_not_cdc"
    with pytest.raises(NotAllowed):
        services.control.search_trail(
            people[who], person_id=services.accounts.person_id_for(people["centre"])
        )
    with pytest.raises(NotAllowed):
        services.control.verify_trail(people[who])
    assert services.control.own_trail(people[who]).total > 0


def test_a_disabled_cdc_admin_cannot_search(services: Services, people: dict[str, int]) -> None:
    assert services.control.is_cdc_admin(people["cdc"])
    with write_transaction():
        Account.update(status=AccountStatus.DISABLED).where(Account.id == people["cdc"]).execute()
    with pytest.raises(NotAllowed):
        services.control.search_trail(people["cdc"])


def test_verify_for_the_cdc_admin_reports_a_tampered_row(
    services: Services, people: dict[str, int]
) -> None:
    result = services.control.verify_trail(people["cdc"])
    assert result.ok and result.checked == _count_audit()
    victim = AuditEvent.select().order_by(AuditEvent.id).offset(2).first()
    execute_sql("UPDATE audit_event SET details = ? WHERE id = ?", ('{"x": 1}', victim.id))
    result = services.control.verify_trail(people["cdc"])
    assert not result.ok and result.first_bad_id == victim.id and result.code == "row_hash"
    assert result.checked == 2


# ------------------------------------------------- authority per category (issue 20)


def _ppe_only_admin(services: Services, tree: dict[str, Unit]) -> int:
    """A 管理者 of 個人防護裝備 alone at the bureau (no 流感抗病毒藥劑 role)."""
    return make_admin(services, tree["bureau"], ["ppe"]).id


def test_a_permission_of_a_category_one_does_not_administer_is_refused(
    services: Services, people: dict[str, int], tree: dict[str, Unit]
) -> None:
    """The bureau's 個人防護裝備 管理者 may not disable the clinic's 流感抗病毒藥劑
    permission: each category's own administrators decide its permissions."""
    actor = _ppe_only_admin(services, tree)
    target = people["clinic"]
    view = services.accounts.view(target)
    ppe, flu = view.granted()
    before = _count_audit()
    with pytest.raises(NotAllowed) as refused:
        services.control.disable_permission(actor, target, flu.id, view.version, "越權")
    assert refused.value.key == "control.error_not_category_admin"
    assert "流感抗病毒藥劑" in str(refused.value)
    assert [g.id for g in services.accounts.view(target).granted()] == [ppe.id, flu.id]
    assert _count_audit() == before
    # Its own category it may.
    services.control.disable_permission(actor, target, ppe.id, view.version, "不再負責")
    assert [g.id for g in services.accounts.view(target).granted()] == [flu.id]


def test_a_whole_account_needs_authority_over_every_permission_it_holds(
    services: Services, people: dict[str, int], tree: dict[str, Unit]
) -> None:
    actor = _ppe_only_admin(services, tree)
    target = people["clinic"]  # 個人防護裝備 and 流感抗病毒藥劑
    before = _count_audit()
    with pytest.raises(NotAllowed) as refused:
        _disable(services, actor, target, "越權停用")
    assert refused.value.key == "control.error_not_every_category"
    assert "流感抗病毒藥劑" in str(refused.value)
    assert Account.get_by_id(target).status == AccountStatus.ACTIVE
    assert _count_audit() == before
    # An account holding only 個人防護裝備 permissions it may disable.
    only_ppe = people["centre"]
    assert {g.category_code for g in services.accounts.view(only_ppe).granted()} == {"ppe"}
    _disable(services, actor, only_ppe, "已離職")
    assert Account.get_by_id(only_ppe).status == AccountStatus.DISABLED


def test_a_cdc_admin_of_one_category_may_disable_a_whole_account(
    services: Services, people: dict[str, int], tree: dict[str, Unit]
) -> None:
    """Disabling a whole account is also the 疾管署 管理者's act, whatever its
    categories."""
    cdc_ppe = make_admin(services, tree["cdc"], ["ppe"]).id
    target = people["clinic"]
    _disable(services, cdc_ppe, target, "疾管署停用")
    assert Account.get_by_id(target).status == AccountStatus.DISABLED
    # A single permission still belongs to its category's administrators.
    other = approved_applicant(
        services,
        tree["clinic"],
        people["cdc"],
        {"ppe": RoleChoice(Role.OFFICER), "flu_antiviral": RoleChoice(Role.VIEWER)},
    )
    view = services.accounts.view(other)
    flu = next(g for g in view.granted() if g.category_code == "flu_antiviral")
    with pytest.raises(NotAllowed):
        services.control.disable_permission(cdc_ppe, other, flu.id, view.version, "越權")
