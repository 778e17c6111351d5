"""權限定期檢閱 (periodic access reviews), on SQLite and PostgreSQL: who may start one
and over which units, who decides each item, one decision per item, the deadline's
default applied by maintenance exactly once, the audit rows and the upgrade."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest

from models.db import database_proxy, open_database, write_transaction
from models.migrate import REVIEW_VERSION, SCHEMA_VERSION, current_version, upgrade
from models.schema import (
    AccessReview,
    AccessReviewItem,
    Account,
    AuditEvent,
    Category,
    Meta,
    PermissionRequest,
    Unit,
    UnitCategory,
    utcnow,
)
from smis_tui.cli import main
from smis_tui.core.config import Settings
from smis_tui.core.domain import AccountStatus, DecisionBy, RequestStatus, Role, UnitKind
from smis_tui.services import Services, build_services
from smis_tui.services.access_review import (
    AccessReviewService,
    DecideResult,
    ItemDecision,
    ItemFilter,
    Outcome,
    ReviewState,
)
from smis_tui.services.accounts import RoleChoice
from smis_tui.services.errors import NotAllowed, NotFound, ValidationFailed
from smis_tui.services.key_rotation import rotate_key
from smis_tui.services.scope import UnitTree
from smis_tui.services.trail_words import trail_words
from tests.helpers import approved_applicant, make_admin, other_bureau, set_idle, unit_of_kind


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


@pytest.fixture
def people(services: Services, tree: dict[str, Unit]) -> dict[str, int]:
    """管理者 of the CDC and of a bureau (every category), a 管理者 of the bureau for
    個人防護裝備 only, and people holding permissions around them."""
    cdc = make_admin(services, tree["cdc"])
    ids = {
        "cdc": cdc.id,
        "bureau_admin": make_admin(services, tree["bureau"]).id,
        "ppe_admin": make_admin(services, tree["bureau"], ["ppe"]).id,
    }
    ids["clinic"] = approved_applicant(
        services,
        tree["clinic"],
        cdc.id,
        {"ppe": RoleChoice(Role.OFFICER), "flu_antiviral": RoleChoice(Role.VIEWER)},
        name="林診所",
    )
    for key, unit, name in (
        ("centre", tree["centre"], "陳衛生所"),
        ("bureau_peer", tree["bureau"], "張同局"),
        ("elsewhere", _clinic_outside(tree["bureau"]), "吳他縣"),
    ):
        ids[key] = approved_applicant(services, unit, cdc.id, name=name)
    return ids


def _items(review_id: int) -> dict[tuple[int, str], AccessReviewItem]:
    """The review's items by (holder, category code)."""
    return {
        (item.account_id, item.category.code): item
        for item in AccessReviewItem.select().where(AccessReviewItem.review == review_id)
    }


def _actions() -> list[str]:
    return [e.action for e in AuditEvent.select().order_by(AuditEvent.id)]


# ----------------------------------------------------------------------- starting


def test_a_bureau_admin_reviews_the_permissions_below_their_bureau(
    services: Services, people: dict[str, int], tree: dict[str, Unit]
) -> None:
    reviews = services.access_reviews
    assert [c.code for c in reviews.start_choices(people["bureau_admin"])] == [tree["bureau"].code]
    now = utcnow()
    review_id = reviews.start(people["bureau_admin"], "  113 年上半年  ", days=14, now=now)
    review = AccessReview.get_by_id(review_id)
    assert review.name == "113 年上半年" and review.root_unit_id == tree["bureau"].id
    assert review.default_decision == "keep" and review.inactive_days == 90
    # Decisions until the end of the 14th day after today, Taiwan time.
    last_day = (now + dt.timedelta(hours=8)).date() + dt.timedelta(days=14)
    assert review.deadline == dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time.min) - (
        dt.timedelta(hours=8)
    )
    # Strictly below the bureau: not the bureau's own people, not another county.
    assert set(_items(review_id)) == {
        (people["clinic"], "ppe"),
        (people["clinic"], "flu_antiviral"),
        (people["centre"], "ppe"),
    }
    start = AuditEvent.get(AuditEvent.action == "access_review_start")
    assert start.actor_id == people["bureau_admin"] and start.target_id == str(review_id)
    details = json.loads(start.details)
    assert (details["items"], details["note"], details["due"]) == (
        3,
        "113 年上半年",
        last_day.isoformat(),
    )


def test_the_items_are_the_permissions_at_the_start(
    services: Services, people: dict[str, int], tree: dict[str, Unit]
) -> None:
    review_id = services.access_reviews.start(people["bureau_admin"], "快照")
    later = approved_applicant(services, tree["clinic"], people["cdc"], name="晚到者")
    assert later not in {account for account, _ in _items(review_id)}
    page = services.access_reviews.items(people["bureau_admin"], review_id, show=ItemFilter.ALL)
    assert "晚到者" not in {item.holder_name for item in page.items}


def test_the_cdc_admin_reviews_everyone_below_the_cdc(
    services: Services, people: dict[str, int]
) -> None:
    review_id = services.access_reviews.start(people["cdc"], "全國")
    holders = {account for account, _ in _items(review_id)}
    assert {people[k] for k in ("clinic", "centre", "bureau_peer", "elsewhere")} <= holders
    assert {people["bureau_admin"], people["ppe_admin"]} <= holders
    assert people["cdc"] not in holders


def test_a_bureau_admin_cannot_start_a_review_beyond_their_county(
    services: Services, people: dict[str, int], tree: dict[str, Unit]
) -> None:
    reviews = services.access_reviews
    hospital_admin = make_admin(services, unit_of_kind(UnitKind.HOSPITAL, with_category="ppe"))
    before = (AccessReview.select().count(), _actions())
    for unit in (tree["cdc"], tree["region"], other_bureau(tree["bureau"]), tree["centre"]):
        with pytest.raises(NotAllowed) as caught:
            reviews.start(people["bureau_admin"], "越權", unit_code=unit.code)
        assert caught.value.key == "access_review.error_scope"
    # A 管理者 of a hospital, or no 管理者 at all, starts nothing.
    for who in (hospital_admin.id, people["clinic"]):
        with pytest.raises(NotAllowed) as caught:
            reviews.start(who, "越權")
        assert caught.value.key == "access_review.error_not_starter"
        assert reviews.start_choices(who) == ()
    assert (AccessReview.select().count(), _actions()) == before


def test_a_start_is_refused_when_it_names_nothing_or_runs_already(
    services: Services, people: dict[str, int], tree: dict[str, Unit]
) -> None:
    reviews = services.access_reviews
    for name in ("", "   ", "名稱\u200b隱藏", "長" * 61):
        with pytest.raises(ValidationFailed) as invalid:
            reviews.start(people["bureau_admin"], name)
        assert "name" in invalid.value.messages
    for days in (0, 366):
        with pytest.raises(ValidationFailed) as invalid:
            reviews.start(people["bureau_admin"], "天數", days=days)
        assert "days" in invalid.value.messages
    first = reviews.start(people["bureau_admin"], "第一次")
    with pytest.raises(NotAllowed) as caught:
        reviews.start(people["bureau_admin"], "第二次")
    assert caught.value.key == "access_review.error_running"
    assert caught.value.params["name"] == "第一次"
    # Past its deadline, the same units may be reviewed again.
    later = AccessReview.get_by_id(first).deadline + dt.timedelta(seconds=1)
    assert reviews.start(people["bureau_admin"], "第二次", now=later) != first
    # A bureau with no granted permission below it.
    lonely = other_bureau(tree["bureau"])
    lonely_admin = make_admin(services, lonely)
    with pytest.raises(NotAllowed) as caught:
        reviews.start(lonely_admin.id, "空")
    assert caught.value.key == "access_review.error_nothing"
    assert AccessReview.select().where(AccessReview.root_unit == lonely.id).count() == 0


# ----------------------------------------------------------------------- reading


def test_a_reviewer_lists_only_the_items_they_may_decide(
    services: Services, people: dict[str, int]
) -> None:
    reviews = services.access_reviews
    review_id = reviews.start(people["cdc"], "全國")
    ppe = reviews.items(people["ppe_admin"], review_id)
    assert {(i.holder_name, i.category_name) for i in ppe.items} == {
        ("林診所", "個人防護裝備"),
        ("陳衛生所", "個人防護裝備"),
    }
    bureau = reviews.items(people["bureau_admin"], review_id)
    assert {i.holder_name for i in bureau.items} == {"林診所", "陳衛生所"}
    assert bureau.mine == bureau.mine_open == 3 and bureau.review.total == len(_items(review_id))
    # Their own permissions are the CDC's to decide, not theirs.
    everything = reviews.items(people["cdc"], review_id, page_size=100)
    assert {"林診所", "陳衛生所", "張同局", "吳他縣"} <= {i.holder_name for i in everything.items}
    assert people["cdc"] not in {i.account_id for i in everything.items}
    clinic = next(i for i in bureau.items if i.category_name == "流感抗病毒藥劑")
    assert clinic.granted and clinic.permissions_left == 2 and clinic.last_login_at is None
    assert clinic.recommendation == ItemDecision.KEEP and clinic.decision is None
    with pytest.raises(NotAllowed):
        reviews.items(people["clinic"], review_id)
    with pytest.raises(NotFound):
        reviews.items(people["cdc"], review_id + 100)


def test_the_recommendation_follows_the_last_login(
    services: Services, people: dict[str, int]
) -> None:
    set_idle(people["clinic"], 91)
    set_idle(people["centre"], 89)
    reviews = services.access_reviews
    review_id = reviews.start(people["bureau_admin"], "建議")
    advice = {
        (i.holder_name, i.category_name): i.recommendation
        for i in reviews.items(people["bureau_admin"], review_id).items
    }
    assert advice == {
        ("林診所", "個人防護裝備"): ItemDecision.REMOVE,
        ("林診所", "流感抗病毒藥劑"): ItemDecision.REMOVE,
        ("陳衛生所", "個人防護裝備"): ItemDecision.KEEP,
    }


def test_the_list_of_reviews_shows_progress(services: Services, people: dict[str, int]) -> None:
    reviews = services.access_reviews
    review_id = reviews.start(people["bureau_admin"], "進度")
    item = _items(review_id)[(people["centre"], "ppe")]
    reviews.decide(people["ppe_admin"], [item.id], ItemDecision.KEEP)
    for viewer, mine in (("bureau_admin", 2), ("ppe_admin", 1), ("cdc", 2)):
        (summary,) = reviews.reviews(people[viewer]).reviews
        assert (summary.name, summary.state, summary.total, summary.decided) == (
            "進度",
            ReviewState.OPEN,
            3,
            1,
        )
        assert summary.mine_open == mine, viewer
    # A review of another county is not theirs to see.
    other = make_admin(services, other_bureau(AccessReview.get_by_id(review_id).root_unit))
    assert reviews.reviews(other.id).reviews == ()


# ----------------------------------------------------------------------- deciding


def test_a_category_admin_cannot_decide_another_category(
    services: Services, people: dict[str, int]
) -> None:
    reviews = services.access_reviews
    review_id = reviews.start(people["bureau_admin"], "類別")
    flu = _items(review_id)[(people["clinic"], "flu_antiviral")]
    before = _actions()
    result = reviews.decide(people["ppe_admin"], [flu.id], ItemDecision.REMOVE, "不需要")
    assert result.outcomes == {flu.id: Outcome.OUT_OF_SCOPE}
    assert result.failed[flu.id].key == "control.error_not_category_admin"
    assert AccessReviewItem.get_by_id(flu.id).decision is None
    assert PermissionRequest.get_by_id(flu.request_id).status == RequestStatus.APPROVED
    assert _actions() == before
    # Nor their own, nor anyone's without a 管理者 grant.
    cdc_review = reviews.start(people["cdc"], "全國")
    own = _items(cdc_review)[(people["ppe_admin"], "ppe")]
    mine = reviews.decide(people["ppe_admin"], [own.id], ItemDecision.KEEP)
    assert mine.failed[own.id].key == "access_review.error_own"
    stranger = reviews.decide(people["clinic"], [flu.id], ItemDecision.KEEP)
    assert stranger.outcomes == {flu.id: Outcome.OUT_OF_SCOPE}


def test_remove_withdraws_the_permission_as_account_control_does(
    services: Services, people: dict[str, int], tree: dict[str, Unit]
) -> None:
    reviews = services.access_reviews
    review_id = reviews.start(people["bureau_admin"], "移除")
    flu = _items(review_id)[(people["clinic"], "flu_antiviral")]
    with pytest.raises(ValidationFailed):
        reviews.decide(people["bureau_admin"], [flu.id], ItemDecision.REMOVE, "  ")
    result = reviews.decide(people["bureau_admin"], [flu.id], ItemDecision.REMOVE, "已調職")
    assert result.decided == [flu.id] and result.disabled == []
    item = AccessReviewItem.get_by_id(flu.id)
    assert (item.decision, item.decided_by_id, item.reason, item.by_default) == (
        "remove",
        people["bureau_admin"],
        "已調職",
        False,
    )
    request = PermissionRequest.get_by_id(flu.request_id)
    assert (request.status, request.reviewer_id, request.reason) == (
        RequestStatus.REVOKED,
        people["bureau_admin"],
        "已調職",
    )
    assert Account.get_by_id(people["clinic"]).status == AccountStatus.ACTIVE
    # The holder reads it among their decisions, with the bureau that removed it.
    (told,) = [
        d
        for d in services.accounts.view(people["clinic"]).decisions
        if d.request_id == flu.request_id
    ]
    assert told.status == RequestStatus.REVOKED and told.by == DecisionBy.ADMIN
    assert (told.reason, told.deciding_unit_name) == ("已調職", tree["bureau"].name)
    removed = AuditEvent.get(AuditEvent.action == "access_review_remove")
    assert removed.actor_id == people["bureau_admin"]
    assert (removed.target_type, removed.target_id) == ("permission", str(flu.request_id))
    disabled = AuditEvent.get(AuditEvent.action == "disable_permission")
    assert json.loads(disabled.details)["review"] == review_id


def test_removing_the_last_permission_disables_the_account(
    services: Services, people: dict[str, int]
) -> None:
    reviews = services.access_reviews
    review_id = reviews.start(people["bureau_admin"], "最後一項")
    (listed,) = [
        i
        for i in reviews.items(people["bureau_admin"], review_id).items
        if i.holder_name == "陳衛生所"
    ]
    assert listed.permissions_left == 1
    result = reviews.decide(people["bureau_admin"], [listed.item_id], ItemDecision.REMOVE, "離職")
    assert result.disabled == [people["centre"]]
    account = Account.get_by_id(people["centre"])
    assert (account.status, account.disabled_reason) == (AccountStatus.DISABLED, "superior")
    assert "disable_account" in _actions()


def test_an_item_is_decided_once(services: Services, people: dict[str, int]) -> None:
    reviews = services.access_reviews
    review_id = reviews.start(people["cdc"], "一次")
    ppe = _items(review_id)[(people["clinic"], "ppe")]
    first = reviews.decide(people["ppe_admin"], [ppe.id], ItemDecision.KEEP)
    assert first.outcomes == {ppe.id: Outcome.DECIDED}
    second = reviews.decide(people["cdc"], [ppe.id], ItemDecision.REMOVE, "重複")
    assert second.outcomes == {ppe.id: Outcome.CONFLICT}
    error = second.failed[ppe.id]
    assert error.key == "access_review.error_decided_keep"
    assert error.params == {"name": "林診所", "by": Account.get_by_id(people["ppe_admin"]).name}
    assert PermissionRequest.get_by_id(ppe.request_id).status == RequestStatus.APPROVED
    assert _actions().count("access_review_keep") == 1
    assert "access_review_remove" not in _actions()
    # The undecided list no longer has it; the whole list shows who kept it.
    assert ppe.id not in {i.item_id for i in reviews.items(people["cdc"], review_id).items}
    shown = {
        i.item_id: i for i in reviews.items(people["cdc"], review_id, show=ItemFilter.ALL).items
    }
    assert shown[ppe.id].decision == ItemDecision.KEEP
    assert shown[ppe.id].decided_by == Account.get_by_id(people["ppe_admin"]).name


def test_two_reviewers_at_once_decide_an_item_once(
    services: Services, people: dict[str, int]
) -> None:
    """Two kiosks, one keeping and one removing the same item at the same moment (on
    PostgreSQL both transactions run at once): one decides, the other is told; one
    audit row, one withdrawal at most."""
    reviews = services.access_reviews
    review_id = reviews.start(people["cdc"], "同時")
    items = _items(review_id)
    for holder in ("clinic", "centre"):
        item = items[(people[holder], "ppe")]
        start = threading.Barrier(2, timeout=10)
        results: dict[str, DecideResult] = {}

        def decide(
            who: str,
            decision: ItemDecision,
            item_id: int = item.id,
            start: threading.Barrier = start,
            results: dict[str, DecideResult] = results,
        ) -> None:
            with database_proxy.obj.connection_context():
                start.wait()
                results[who] = reviews.decide(people[who], [item_id], decision, "同時決定")

        kiosks = [
            threading.Thread(target=decide, args=("cdc", ItemDecision.KEEP)),
            threading.Thread(target=decide, args=("bureau_admin", ItemDecision.REMOVE)),
        ]
        for kiosk in kiosks:
            kiosk.start()
        for kiosk in kiosks:
            kiosk.join(20)
        outcomes = sorted(str(r.outcomes[item.id]) for r in results.values())
        assert outcomes == ["conflict", "decided"], results
        decided = AuditEvent.select().where(
            AuditEvent.action.in_(["access_review_keep", "access_review_remove"])
            & (AuditEvent.target_id == str(item.request_id))
        )
        assert decided.count() == 1
        removed = decided.get().action == "access_review_remove"
        status = PermissionRequest.get_by_id(item.request_id).status
        assert status == (RequestStatus.REVOKED if removed else RequestStatus.APPROVED)
    assert services.audit.verify().ok


def test_a_permission_withdrawn_meanwhile_is_gone(
    services: Services, people: dict[str, int]
) -> None:
    reviews = services.access_reviews
    review_id = reviews.start(people["bureau_admin"], "已不在")
    ppe = _items(review_id)[(people["clinic"], "ppe")]
    services.control.disable_permission(
        people["cdc"],
        people["clinic"],
        ppe.request_id,
        Account.get_by_id(people["clinic"]).version,
        "先停用",
    )
    result = reviews.decide(people["bureau_admin"], [ppe.id], ItemDecision.KEEP)
    assert result.outcomes == {ppe.id: Outcome.GONE} and result.decided == []
    assert AccessReviewItem.get_by_id(ppe.id).decision == "gone"
    assert "access_review_keep" not in _actions()


def test_no_decision_after_the_deadline(services: Services, people: dict[str, int]) -> None:
    reviews = services.access_reviews
    review_id = reviews.start(people["bureau_admin"], "截止", days=1)
    item = _items(review_id)[(people["centre"], "ppe")]
    late = AccessReview.get_by_id(review_id).deadline
    result = reviews.decide(people["bureau_admin"], [item.id], ItemDecision.KEEP, now=late)
    assert result.outcomes == {item.id: Outcome.CLOSED}
    assert AccessReviewItem.get_by_id(item.id).decision is None
    (summary,) = reviews.reviews(people["bureau_admin"], now=late).reviews
    assert summary.state == ReviewState.ENDED and summary.mine_open is None


# ----------------------------------------------------------------------- the deadline


@pytest.mark.parametrize(
    ("default", "kept", "removed"),
    [("keep", 3, 0), ("remove", 0, 3), ("recommendation", 1, 2)],
)
def test_maintenance_applies_the_default_once(
    services: Services, people: dict[str, int], default: str, kept: int, removed: int
) -> None:
    set_idle(people["clinic"], 100)  # recommended for removal; the centre is not
    reviews = AccessReviewService(
        services.settings.with_overrides(access_review_default=default),
        services.audit,
        services.control,
    )
    review_id = reviews.start(people["bureau_admin"], "預設")
    deadline = AccessReview.get_by_id(review_id).deadline
    assert reviews.apply_defaults(now=deadline - dt.timedelta(seconds=1)).applied == 0
    done = reviews.apply_defaults(now=deadline)
    assert (done.reviews, done.kept, done.removed, done.gone) == (1, kept, removed, 0)
    again = reviews.apply_defaults(now=deadline + dt.timedelta(days=1))
    assert (again.reviews, again.applied, again.gone) == (0, 0, 0)
    assert AccessReview.get_by_id(review_id).closed_at == deadline
    items = _items(review_id)
    assert all(item.by_default and item.decided_by_id is None for item in items.values())
    defaults = AuditEvent.select().where(AuditEvent.action.startswith("access_review_default"))
    assert defaults.count() == 3
    assert {(e.actor_id, e.actor_label) for e in defaults} == {(None, "system")}
    assert _actions().count("access_review_complete") == 1
    complete = AuditEvent.get(AuditEvent.action == "access_review_complete")
    tally = json.loads(complete.details)
    assert tally.get("keep_by_default", 0) == kept and tally.get("remove_by_default", 0) == removed
    revoked = [
        item
        for item in items.values()
        if PermissionRequest.get_by_id(item.request_id).status == RequestStatus.REVOKED
    ]
    assert len(revoked) == removed
    for item in revoked:
        (told,) = [
            d
            for d in services.accounts.view(item.account_id).decisions
            if d.request_id == item.request_id
        ]
        assert told.by == DecisionBy.REVIEW and told.reason == ""
    if default == "remove":
        # The centre's only permission went with its account, as the system.
        account = Account.get_by_id(people["centre"])
        assert account.status == AccountStatus.DISABLED
        disabled = AuditEvent.get(
            (AuditEvent.action == "disable_account")
            & (AuditEvent.target_id == str(people["centre"]))
        )
        assert disabled.actor_id is None and disabled.actor_label == "system"


def test_the_default_leaves_decided_and_gone_items_alone(
    services: Services, people: dict[str, int]
) -> None:
    reviews = AccessReviewService(
        services.settings.with_overrides(access_review_default="remove"),
        services.audit,
        services.control,
    )
    review_id = reviews.start(people["bureau_admin"], "已決定")
    items = _items(review_id)
    kept = items[(people["clinic"], "ppe")]
    reviews.decide(people["bureau_admin"], [kept.id], ItemDecision.KEEP)
    gone = items[(people["clinic"], "flu_antiviral")]
    with database_proxy.obj.atomic():
        PermissionRequest.update(status=RequestStatus.REVOKED).where(
            PermissionRequest.id == gone.request_id
        ).execute()
    done = reviews.apply_defaults(now=AccessReview.get_by_id(review_id).deadline)
    assert (done.kept, done.removed, done.gone) == (0, 1, 1)
    assert AccessReviewItem.get_by_id(kept.id).decision == "keep"
    assert PermissionRequest.get_by_id(kept.request_id).status == RequestStatus.APPROVED
    assert AccessReviewItem.get_by_id(gone.id).decision == "gone"


def _run_cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, *args: str, **env: str) -> int:
    """``smis-tui ARGS`` in this process, on the test's database (reopened after)."""
    monkeypatch.setenv("SMIS_DATA_DIR", str(settings.data_dir))
    if settings.database_url:
        monkeypatch.setenv("DATABASE_URL", settings.database_url)
    else:
        monkeypatch.delenv("DATABASE_URL", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = main(list(args))
    open_database(settings.database_url, settings.sqlite_path)
    return code


def test_maintenance_says_how_many_defaults_it_applied(
    services: Services,
    settings: Settings,
    people: dict[str, int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    set_idle(people["centre"], 120)
    reviews = AccessReviewService(
        services.settings.with_overrides(access_review_default="recommendation"),
        services.audit,
        services.control,
    )
    # Started a month ago: its 14 days are over.
    reviews.start(people["bureau_admin"], "排程", now=utcnow() - dt.timedelta(days=30))
    capsys.readouterr()
    assert _run_cli(settings, monkeypatch, "maintenance") == 0
    out = capsys.readouterr().out
    assert "已依預設處理 3 個逾期未決定的權限檢閱項目（保留 2、移除 1），結束 1 次權限檢閱" in out
    assert _run_cli(settings, monkeypatch, "maintenance") == 0
    assert "已依預設處理 0 個逾期未決定的權限檢閱項目（保留 0、移除 0），結束 0 次權限檢閱" in (
        capsys.readouterr().out
    )
    assert Account.get_by_id(people["centre"]).status == AccountStatus.DISABLED


def test_config_check_names_the_review_settings(
    settings: Settings,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (
        _run_cli(settings, monkeypatch, "config", "check", SMIS_ACCESS_REVIEW_DEFAULT="remove") == 0
    )
    assert (
        "權限定期檢閱：預設 14 天；超過 90 天未登入建議移除；截止時未決定的項目移除"
        "（access_review_default = remove）"
    ) in capsys.readouterr().out
    assert (
        _run_cli(settings, monkeypatch, "config", "check", SMIS_ACCESS_REVIEW_DEFAULT="delete") == 1
    )
    assert "access_review_default" in capsys.readouterr().err


# ----------------------------------------------------------------------- the trail


def test_the_trail_names_every_step(services: Services, people: dict[str, int]) -> None:
    reviews = AccessReviewService(
        services.settings.with_overrides(access_review_default="remove"),
        services.audit,
        services.control,
    )
    review_id = reviews.start(people["bureau_admin"], "軌跡")
    items = _items(review_id)
    reviews.decide(people["bureau_admin"], [items[(people["clinic"], "ppe")].id], ItemDecision.KEEP)
    reviews.decide(
        people["bureau_admin"],
        [items[(people["clinic"], "flu_antiviral")].id],
        ItemDecision.REMOVE,
        "不再使用",
    )
    reviews.apply_defaults(now=AccessReview.get_by_id(review_id).deadline)
    trail = services.audit.trail_of(people["bureau_admin"]).rows
    words = {row.action: trail_words(row, "zh_TW") for row in trail}
    assert words["access_review_start"].action == "開始權限檢閱"
    assert words["access_review_start"].target == f"權限檢閱 #{review_id}"
    assert words["access_review_start"].note == "軌跡"
    assert words["access_review_keep"].target.endswith("個人防護裝備 承辦人")
    assert words["access_review_remove"].note == "不再使用"
    english = {row.action: trail_words(row, "en") for row in trail}
    assert english["access_review_remove"].action == "Access review: removed"
    # The system's rows are in the holders' trails.
    centre = {row.action: row for row in services.audit.trail_of(people["centre"]).rows}
    default = trail_words(centre["access_review_default_remove"], "en")
    assert default.actor == "System" and default.action == "Access review due: removed by default"
    assert services.audit.verify().ok


# ----------------------------------------------------------------------- the upgrade


def test_a_version_6_database_gets_the_review_tables(
    services: Services, people: dict[str, int]
) -> None:
    database = database_proxy.obj
    database.drop_tables([AccessReviewItem, AccessReview])
    Meta.update(value=str(REVIEW_VERSION - 1)).where(Meta.key == "schema_version").execute()
    assert upgrade() == (REVIEW_VERSION - 1, SCHEMA_VERSION)
    assert current_version() == SCHEMA_VERSION == REVIEW_VERSION
    review_id = services.access_reviews.start(people["bureau_admin"], "升級後")
    assert len(_items(review_id)) == 3
    assert upgrade() == (SCHEMA_VERSION, SCHEMA_VERSION)


# ----------------------------------------------------------------------- tampering
# Whoever can write the database can change any row, but must not get the system to
# act for them: maintenance applies a review's default, as the system and with a
# chain-valid audit row, only to a review exactly as its start sealed it.


def _removing(services: Services) -> AccessReviewService:
    return AccessReviewService(
        services.settings.with_overrides(access_review_default="remove"),
        services.audit,
        services.control,
    )


def _granted(account_id: int) -> set[int]:
    return {
        r.id
        for r in PermissionRequest.select().where(
            (PermissionRequest.account == account_id)
            & (PermissionRequest.status == RequestStatus.APPROVED)
        )
    }


def _nothing_applied(people: dict[str, int], before: dict[str, set[int]]) -> None:
    assert {key: _granted(account_id) for key, account_id in people.items()} == before
    assert not AuditEvent.select().where(AuditEvent.action.startswith("access_review_default"))
    assert not AuditEvent.select().where(AuditEvent.action == "access_review_complete")


def test_a_review_written_into_the_database_removes_nothing(
    services: Services,
    settings: Settings,
    people: dict[str, int],
    tree: dict[str, Unit],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The attack: a review nobody started, inserted with the default 移除 and a
    deadline already past, even with the seal of a genuine review copied onto it."""
    genuine = services.access_reviews.start(people["bureau_admin"], "真的")
    before = {key: _granted(account_id) for key, account_id in people.items()}
    past = utcnow() - dt.timedelta(days=1)
    with write_transaction():
        forged = AccessReview.create(
            name="假的",
            root_unit=tree["bureau"].id,
            started_by=people["bureau_admin"],
            started_at=past - dt.timedelta(days=14),
            deadline=past,
            default_decision="remove",
            inactive_days=90,
            seal=AccessReview.get_by_id(genuine).seal,
        )
        for item in AccessReviewItem.select().where(AccessReviewItem.review == genuine):
            AccessReviewItem.create(
                review=forged.id,
                request=item.request_id,
                account=item.account_id,
                category=item.category_id,
            )
    done = services.access_reviews.apply_defaults()
    assert done.refused == (forged.id,) and done.applied == 0 and done.reviews == 0
    _nothing_applied(people, before)
    assert AccessReview.get_by_id(forged.id).closed_at is None
    capsys.readouterr()
    assert _run_cli(settings, monkeypatch, "maintenance") == 3
    said = capsys.readouterr()
    assert f"權限檢閱 #{forged.id}「假的」與開始時的紀錄不符" in said.err
    assert "未依預設處理" in said.err
    _nothing_applied(people, before)


def _default_to_remove(review_id: int) -> None:
    AccessReview.update(default_decision="remove").where(AccessReview.id == review_id).execute()


def _recommend_after_a_day(review_id: int) -> None:
    AccessReview.update(default_decision="recommendation", inactive_days=1).where(
        AccessReview.id == review_id
    ).execute()


def _permission_outside(review_id: int) -> PermissionRequest:
    """A granted permission that none of the review's items is about."""
    return next(
        r
        for r in PermissionRequest.select().where(
            PermissionRequest.status == RequestStatus.APPROVED
        )
        if not AccessReviewItem.select()
        .where((AccessReviewItem.review == review_id) & (AccessReviewItem.request == r.id))
        .exists()
    )


def _another_request(review_id: int) -> None:
    """An item pointed at a permission outside the review's units."""
    item = AccessReviewItem.select().where(AccessReviewItem.review == review_id).first()
    outside = _permission_outside(review_id)
    AccessReviewItem.update(request=outside.id, account=outside.account_id).where(
        AccessReviewItem.id == item.id
    ).execute()


def _one_more_item(review_id: int) -> None:
    outside = _permission_outside(review_id)
    AccessReviewItem.create(
        review=review_id,
        request=outside.id,
        account=outside.account_id,
        category=outside.category_id,
    )


def _deadline_today(review_id: int) -> None:
    AccessReview.update(deadline=utcnow() - dt.timedelta(minutes=1)).where(
        AccessReview.id == review_id
    ).execute()


@pytest.mark.parametrize(
    "tamper",
    [_default_to_remove, _recommend_after_a_day, _another_request, _one_more_item, _deadline_today],
)
def test_a_started_review_changed_in_the_database_removes_nothing(
    services: Services, people: dict[str, int], tamper: object
) -> None:
    keeping = AccessReviewService(
        services.settings.with_overrides(access_review_default="keep"),
        services.audit,
        services.control,
    )
    review_id = keeping.start(people["cdc"], "原樣")
    deadline = AccessReview.get_by_id(review_id).deadline
    before = {key: _granted(account_id) for key, account_id in people.items()}
    with write_transaction():
        assert callable(tamper)
        tamper(review_id)
    done = keeping.apply_defaults(now=max(deadline, utcnow()))
    assert done.refused == (review_id,) and done.applied == 0
    _nothing_applied(people, before)
    assert not AccessReviewItem.select().where(
        (AccessReviewItem.review == review_id) & AccessReviewItem.decision.is_null(False)
    )


def test_a_review_started_before_a_key_rotation_is_applied_after_it(
    services: Services, settings: Settings, people: dict[str, int]
) -> None:
    review_id = _removing(services).start(people["bureau_admin"], "輪替前")
    rotate_key(settings.resolved_key_file)
    settings.resolved_key_file.with_name(settings.resolved_key_file.name + ".old").unlink()
    rotated = build_services(settings)
    reviews = AccessReviewService(
        rotated.settings.with_overrides(access_review_default="remove"),
        rotated.audit,
        rotated.control,
    )
    done = reviews.apply_defaults(now=AccessReview.get_by_id(review_id).deadline)
    assert done.refused == () and (done.reviews, done.removed) == (1, 3)


def test_a_key_rotation_does_not_seal_a_changed_review(
    services: Services, settings: Settings, people: dict[str, int]
) -> None:
    review_id = services.access_reviews.start(people["bureau_admin"], "輪替前已改")
    with write_transaction():
        _default_to_remove(review_id)
    rotate_key(settings.resolved_key_file)
    rotated = build_services(settings)
    done = rotated.access_reviews.apply_defaults(now=AccessReview.get_by_id(review_id).deadline)
    assert done.refused == (review_id,) and done.applied == 0


def test_a_changed_review_takes_no_decision(services: Services, people: dict[str, int]) -> None:
    """A review whose items were pointed elsewhere in the database asks nobody to
    decide them: a 管理者 would otherwise remove, in their own name, a permission the
    starter never put in the review."""
    review_id = services.access_reviews.start(people["cdc"], "被改過")
    genuine = services.access_reviews.start(people["bureau_admin"], "原樣的")
    with write_transaction():
        _another_request(review_id)
    before = {key: _granted(account_id) for key, account_id in people.items()}
    items = list(AccessReviewItem.select().where(AccessReviewItem.review == review_id))
    result = services.access_reviews.decide(
        people["cdc"], [item.id for item in items], ItemDecision.REMOVE, "不需要了"
    )
    assert result.decided == [] and set(result.failed) == {item.id for item in items}
    said = {error.render("zh_TW") for error in result.failed.values()}
    assert said == {
        "權限檢閱「被改過」與開始時的紀錄不符（資料庫內容遭修改），不能決定；請洽系統管理人員"
    }
    assert {key: _granted(account_id) for key, account_id in people.items()} == before
    assert not AuditEvent.select().where(AuditEvent.action == "access_review_remove")
    # Another review, as started, is decided as before.
    kept = next(iter(_items(genuine).values()))
    assert services.access_reviews.decide(
        people["bureau_admin"], [kept.id], ItemDecision.KEEP
    ).decided == [kept.id]


def test_a_decision_cleared_in_the_database_is_not_taken_by_the_default(
    services: Services, people: dict[str, int]
) -> None:
    """The attack: a 管理者 kept a permission; its decision is cleared in the database
    so that the default 移除 takes it. The trail still says it was kept."""
    reviews = _removing(services)
    review_id = reviews.start(people["bureau_admin"], "保留後被清除")
    kept = _items(review_id)[(people["clinic"], "ppe")]
    reviews.decide(people["bureau_admin"], [kept.id], ItemDecision.KEEP)
    before = {key: _granted(account_id) for key, account_id in people.items()}
    with write_transaction():
        AccessReviewItem.update(decision=None, decided_by=None, decided_at=None).where(
            AccessReviewItem.id == kept.id
        ).execute()
    done = reviews.apply_defaults(now=AccessReview.get_by_id(review_id).deadline)
    assert done.refused == (review_id,) and done.applied == 0
    _nothing_applied(people, before)


def test_a_closed_review_opened_again_in_the_database_is_not_applied_again(
    services: Services, people: dict[str, int]
) -> None:
    reviews = _removing(services)
    review_id = reviews.start(people["bureau_admin"], "重開")
    deadline = AccessReview.get_by_id(review_id).deadline
    assert reviews.apply_defaults(now=deadline).reviews == 1
    with write_transaction():
        AccessReview.update(closed_at=None).where(AccessReview.id == review_id).execute()
        AccessReviewItem.update(decision=None, by_default=False).where(
            AccessReviewItem.review == review_id
        ).execute()
    again = reviews.apply_defaults(now=deadline + dt.timedelta(days=365))
    assert again.refused == (review_id,) and again.applied == 0 and again.reviews == 0
    assert _actions().count("access_review_complete") == 1


def test_a_trail_that_fails_verification_stops_every_default(
    services: Services, people: dict[str, int]
) -> None:
    """The decision and its trail row both erased: the chain no longer verifies, and
    maintenance applies no default of any review until the trail is looked into."""
    reviews = _removing(services)
    review_id = reviews.start(people["bureau_admin"], "紀錄被刪")
    kept = _items(review_id)[(people["clinic"], "ppe")]
    reviews.decide(people["bureau_admin"], [kept.id], ItemDecision.KEEP)
    before = {key: _granted(account_id) for key, account_id in people.items()}
    with write_transaction():
        AuditEvent.delete().where(AuditEvent.action == "access_review_keep").execute()
        AccessReviewItem.update(decision=None, decided_by=None, decided_at=None).where(
            AccessReviewItem.id == kept.id
        ).execute()
    assert not services.audit.verify().ok
    done = reviews.apply_defaults(now=AccessReview.get_by_id(review_id).deadline)
    assert done.refused == (review_id,) and done.trail_broken and done.applied == 0
    _nothing_applied(people, before)


def _move_request_to_someone_else(review_id: int, people: dict[str, int]) -> None:
    """The permission behind an item given to a person the review never listed."""
    item = _items(review_id)[(people["clinic"], "ppe")]
    PermissionRequest.update(account=people["elsewhere"]).where(
        PermissionRequest.id == item.request_id
    ).execute()


def test_a_permission_moved_to_another_person_is_not_removed_by_the_review(
    services: Services, people: dict[str, int]
) -> None:
    reviews = _removing(services)
    review_id = reviews.start(people["bureau_admin"], "被移走")
    with write_transaction():
        _move_request_to_someone_else(review_id, people)
    before = {key: _granted(account_id) for key, account_id in people.items()}
    done = reviews.apply_defaults(now=AccessReview.get_by_id(review_id).deadline)
    assert done.refused == (review_id,) and done.applied == 0
    assert {key: _granted(account_id) for key, account_id in people.items()} == before
    second = reviews.start(people["cdc"], "也被移走")
    item = next(i for i in _items(second).values() if i.account_id == people["centre"])
    with write_transaction():
        PermissionRequest.update(account=people["elsewhere"]).where(
            PermissionRequest.id == item.request_id
        ).execute()
    result = reviews.decide(people["cdc"], [item.id], ItemDecision.REMOVE, "移走的")
    assert result.decided == [] and item.id in result.failed


def test_a_closed_review_says_closed_after_a_key_rotation(
    services: Services, settings: Settings, people: dict[str, int]
) -> None:
    """Rotation reseals only reviews still open: one already closed says so, never
    that it was tampered with."""
    review_id = services.access_reviews.start(people["bureau_admin"], "已結束")
    item = next(iter(_items(review_id).values()))
    services.access_reviews.apply_defaults(now=AccessReview.get_by_id(review_id).deadline)
    rotate_key(settings.resolved_key_file)
    settings.resolved_key_file.with_name(settings.resolved_key_file.name + ".old").unlink()
    rotated = build_services(settings)
    result = rotated.access_reviews.decide(people["bureau_admin"], [item.id], ItemDecision.KEEP)
    assert result.failed[item.id].key == "access_review.error_closed"


def test_maintenance_says_it_applied_nothing_while_the_trail_fails(
    services: Services,
    settings: Settings,
    people: dict[str, int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = {key: _granted(account_id) for key, account_id in people.items()}
    _removing(services).start(people["bureau_admin"], "逾期", now=utcnow() - dt.timedelta(days=30))
    with write_transaction():
        AuditEvent.delete().where(AuditEvent.action == "access_review_start").execute()
    capsys.readouterr()
    assert _run_cli(settings, monkeypatch, "maintenance") == 3
    said = capsys.readouterr().err
    assert (
        "軌跡紀錄驗證未通過：未依預設處理任何權限檢閱；請執行 smis-tui audit verify 並查明" in said
    )
    _nothing_applied(people, before)
