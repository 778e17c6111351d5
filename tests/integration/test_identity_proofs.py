"""A proven card behind every change to an account, and nothing about a person learnable
without one: the attacks a person at a kiosk can try, with genuine virtual cards signing
through the card login service, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from card.identity import CardKind
from card.sim.inprocess import InProcessBackend
from card.sim.testpki import PkiUser, TestPki, make_test_pki
from card.sim.virtual import VirtualPivCard
from card.validation import CertificateValidator
from models.db import open_database
from models.schema import Account, AuditEvent, CardBinding, PermissionRequest, UnitKind
from smis_tui.core.domain import AccountStatus, RequestStatus, Role
from smis_tui.core.identifiers import generate_national_id
from smis_tui.services import Services, build_services
from smis_tui.services.accounts import PersonalData, RoleChoice, StartKind
from smis_tui.services.audit import TrailQuery
from smis_tui.services.auth import LoginState
from smis_tui.services.card_login import CardLoginService
from smis_tui.services.card_proof import CardProof, CardProofs
from smis_tui.services.errors import NotAllowed
from tests.helpers import (
    card_identity,
    card_proof,
    form,
    make_admin,
    new_person_id,
    owner_proof,
    unit_of_kind,
)

READER = "Virtual PCD 00 00"
PIN = "135790"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def backend() -> InProcessBackend:
    return InProcessBackend([READER])


def card_login(services: Services, pki: TestPki, backend: InProcessBackend) -> CardLoginService:
    validator = CertificateValidator(pki.ca_dir, pki.crl_dir)
    return CardLoginService(backend, validator, services.login, services.accounts, timeout=5.0)


@pytest.fixture
def cards(services: Services, pki: TestPki, backend: InProcessBackend) -> CardLoginService:
    return card_login(services, pki, backend)


def prove(backend: InProcessBackend, cards: CardLoginService, user: PkiUser) -> CardProof:
    """``user`` inserts their genuine card and types its PIN."""
    backend.insert(READER, VirtualPivCard(user.cert_der, user.key, PIN))
    return cards.prove_holder(READER, PIN)


def id_sharing_last4(person_id: str) -> str:
    """Another valid national ID ending in the same 4 characters (a 自然人憑證 carries
    only these)."""
    serial_tail = int(person_id[-4:-1])
    for prefix in range(1000, 10000):
        candidate = generate_national_id("Q", 1, prefix * 1000 + serial_tail)
        if candidate[-4:] == person_id[-4:] and candidate != person_id:
            return candidate
    raise AssertionError("no ID shares those digits")


def victim_account(services: Services, person_id: str, status: AccountStatus) -> int:
    """The victim's own account, applied for with the victim's own card."""
    clinic = unit_of_kind(UnitKind.CLINIC, with_category="ppe")
    proof = card_proof(services, person_id, name="受害人")
    account_id = services.accounts.apply(
        form(person_id, clinic, {"ppe": RoleChoice(Role.OFFICER)}, name="受害人"), proof
    )
    if status == AccountStatus.PENDING:
        return account_id
    admin = make_admin(services, unit_of_kind(UnitKind.CDC))
    services.review.approve(admin.id, services.accounts.view(account_id).pending()[0].id)
    if status == AccountStatus.DISABLED:
        view = services.accounts.view(account_id)
        services.accounts.disable_self(account_id, view.version, owner_proof(services, account_id))
    assert Account.get_by_id(account_id).status == status
    return account_id


def snapshot(account_id: int) -> tuple[object, ...]:
    account = Account.get_by_id(account_id)
    requests = tuple(
        (r.category_id, r.role, r.status)
        for r in PermissionRequest.select()
        .where(PermissionRequest.account == account_id)
        .order_by(PermissionRequest.id)
    )
    cards = tuple(
        b.cert_sha256 for b in CardBinding.select().where(CardBinding.account == account_id)
    )
    return (account.version, account.name, account.unit_id, account.status, requests, cards)


# ----- the takeover by reapplying -----------------------------------------------------


def test_reapplying_for_a_disabled_account_without_a_card_changes_nothing(
    services: Services,
) -> None:
    victim = new_person_id()
    account_id = victim_account(services, victim, AccountStatus.DISABLED)
    before = snapshot(account_id)
    bureau = unit_of_kind(UnitKind.HEALTH_BUREAU, with_category="ppe")
    attack = form(victim, bureau, {"ppe": RoleChoice(Role.ADMIN)}, name="攻擊者")
    with pytest.raises(NotAllowed) as caught:
        services.accounts.apply(attack, None)
    assert caught.value.key == "error.card_proof_required"
    forged = CardProof(card_proof(services, victim).identity, "made-up-token")
    with pytest.raises(NotAllowed) as caught:
        services.accounts.apply(attack, forged)
    assert caught.value.key == "error.card_proof_expired"
    assert snapshot(account_id) == before


def test_a_citizen_card_sharing_the_last_4_digits_cannot_take_over_a_disabled_account(
    services: Services, cards: CardLoginService, backend: InProcessBackend, pki: TestPki
) -> None:
    """The attacker's own genuine 自然人憑證 shares the victim ID's last 4 digits; they
    type the name on their card into the form. Before, the reapplication overwrote the
    victim's data and the attacker's card then bound to the account and logged in."""
    attacker = pki.user("moica")
    victim = id_sharing_last4(attacker.person_id)
    account_id = victim_account(services, victim, AccountStatus.DISABLED)
    before = snapshot(account_id)
    proof = prove(backend, cards, attacker)
    bureau = unit_of_kind(UnitKind.HEALTH_BUREAU, with_category="ppe")
    attack = form(victim, bureau, {"ppe": RoleChoice(Role.ADMIN)}, name=attacker.cn)
    with pytest.raises(NotAllowed) as caught:
        services.accounts.apply(attack, proof)
    assert caught.value.key == "error.card_name_mismatch"
    assert snapshot(account_id) == before

    login = cards.authenticate(READER, PIN)
    assert login.needs_person_id is not None
    with pytest.raises(NotAllowed):
        cards.bind(login.needs_person_id, victim)
    assert services.accounts.find_by_certificate(login.needs_person_id.identity.cert_sha256) is None


def test_the_holder_reapplies_with_their_own_card(
    services: Services, cards: CardLoginService, backend: InProcessBackend, pki: TestPki
) -> None:
    holder = pki.user("hpc")
    clinic = unit_of_kind(UnitKind.CLINIC, with_category="ppe")
    first = prove(backend, cards, holder)
    account_id = services.accounts.apply(form(holder.person_id, clinic, name=holder.cn), first)
    admin = make_admin(services, unit_of_kind(UnitKind.CDC))
    services.review.approve(admin.id, services.accounts.view(account_id).pending()[0].id)
    login = cards.authenticate(READER, PIN)
    assert login.outcome is not None and login.outcome.state == LoginState.ACTIVE
    view = services.accounts.view(account_id)
    services.accounts.disable_self(account_id, view.version, login.proof)

    again = cards.authenticate(READER, PIN)
    assert again.outcome is not None and again.outcome.state == LoginState.DISABLED
    reapplied = services.accounts.apply(
        form(holder.person_id, clinic, name=holder.cn, phone="02-27208889"), again.proof
    )
    assert reapplied == account_id
    assert Account.get_by_id(account_id).status == AccountStatus.PENDING
    assert Account.get_by_id(account_id).phone == "02-27208889"


# ----- someone else's pending application --------------------------------------------


def test_a_pending_application_is_shown_and_updated_only_for_the_holders_card(
    services: Services, cards: CardLoginService, backend: InProcessBackend, pki: TestPki
) -> None:
    attacker = pki.user("moica")
    victim = id_sharing_last4(attacker.person_id)
    account_id = victim_account(services, victim, AccountStatus.PENDING)
    before = snapshot(account_id)
    version = services.accounts.view(account_id).version
    proof = prove(backend, cards, attacker)
    with pytest.raises(NotAllowed) as caught:
        services.accounts.pending_application(proof, victim)
    assert caught.value.key == "error.card_name_mismatch"
    clinic = unit_of_kind(UnitKind.CLINIC, with_category="ppe")
    attack = form(victim, clinic, {"ppe": RoleChoice(Role.ADMIN)}, name=attacker.cn)
    for stolen in (proof, None):
        with pytest.raises(NotAllowed):
            services.accounts.update_pending(attack, version, stolen)
    assert snapshot(account_id) == before

    own = card_proof(services, victim, name="受害人", kind=CardKind.MOICA)
    assert services.accounts.pending_application(own, victim).id == account_id
    services.accounts.update_pending(
        form(victim, clinic, {"ppe": RoleChoice(Role.VIEWER)}, name="受害人"), version, own
    )
    assert [r.role for r in services.accounts.view(account_id).pending()] == [Role.VIEWER]


# ----- new applications --------------------------------------------------------------


def test_a_new_application_binds_the_card_and_tells_the_reviewer_how_it_matched(
    services: Services, cards: CardLoginService, backend: InProcessBackend, pki: TestPki
) -> None:
    holder = pki.user("moica")
    clinic = unit_of_kind(UnitKind.CLINIC, with_category="ppe")
    proof = prove(backend, cards, holder)
    wrong_name = form(holder.person_id, clinic, name="王大明")
    with pytest.raises(NotAllowed) as caught:
        services.accounts.apply(wrong_name, proof)
    assert caught.value.key == "error.card_name_mismatch"
    # The certificate's name written with a full-width space is still the same name.
    spaced = holder.cn[0] + "\u3000" + holder.cn[1:]
    account_id = services.accounts.apply(form(holder.person_id, clinic, name=spaced), proof)
    assert services.accounts.find_by_certificate(proof.identity.cert_sha256).id == account_id

    admin = make_admin(services, unit_of_kind(UnitKind.CDC))
    items = [i for i in services.review.queue(admin.id).items if i.account_id == account_id]
    assert items and items[0].card is not None
    assert (items[0].card.kind, items[0].card.match) == ("moica", "name_and_last4")
    assert items[0].card.cert_sha256 == proof.identity.cert_sha256


def test_no_card_a_card_without_an_id_or_one_bound_elsewhere_cannot_apply(
    services: Services, cards: CardLoginService, backend: InProcessBackend, pki: TestPki
) -> None:
    clinic = unit_of_kind(UnitKind.CLINIC, with_category="ppe")
    stranger = new_person_id()
    with pytest.raises(NotAllowed) as caught:
        services.accounts.apply(form(stranger, clinic), None)
    assert caught.value.key == "error.card_proof_required"
    assert services.accounts.find_by_person_id(stranger) is None
    piv = prove(backend, cards, pki.user("piv"))
    with pytest.raises(NotAllowed) as caught:
        services.accounts.apply(form(new_person_id(), clinic, name=pki.user("piv").cn), piv)
    assert caught.value.key == "error.card_cannot_bind"

    holder = pki.user("hpc")
    proof = prove(backend, cards, holder)
    services.accounts.apply(form(holder.person_id, clinic, name=holder.cn), proof)
    again = prove(backend, cards, holder)
    with pytest.raises(NotAllowed) as caught:
        services.accounts.apply(form(new_person_id(), clinic, name=holder.cn), again)
    assert caught.value.key == "error.card_bound_elsewhere"


def test_an_hpc_card_must_carry_the_full_id(
    services: Services, cards: CardLoginService, backend: InProcessBackend, pki: TestPki
) -> None:
    holder = pki.user("hpc")
    clinic = unit_of_kind(UnitKind.CLINIC, with_category="ppe")
    proof = prove(backend, cards, holder)
    with pytest.raises(NotAllowed) as caught:
        services.accounts.apply(form(id_sharing_last4(holder.person_id), clinic), proof)
    assert caught.value.key == "error.card_id_mismatch"
    assert Account.select().where(Account.name == "王小明").count() == 0


def test_a_proof_stands_only_while_it_lasts() -> None:
    now = [1000.0]
    proofs = CardProofs(ttl=60.0, clock=lambda: now[0])
    identity = card_identity("A123456789")
    proof = proofs.issue(identity)
    assert proofs.identity(proof) is identity
    now[0] += 61.0
    with pytest.raises(NotAllowed) as caught:
        proofs.identity(proof)
    assert caught.value.key == "error.card_proof_expired"


# ----- 個人資料維護 -----------------------------------------------------------------


def test_every_change_in_personal_data_needs_the_owners_card(
    services: Services, cards: CardLoginService, backend: InProcessBackend, pki: TestPki
) -> None:
    victim = new_person_id()
    account_id = victim_account(services, victim, AccountStatus.ACTIVE)
    before = snapshot(account_id)
    view = services.accounts.view(account_id)
    data = PersonalData("攻擊者", "02-27208889", "evil@example.tw", "", "", "")
    someone = prove(backend, cards, pki.user("hpc"))
    changes = {
        "personal": lambda p: services.accounts.update_personal_data(
            account_id, view.version, data, p
        ),
        "roles": lambda p: services.accounts.request_changes(
            account_id, {"ppe": RoleChoice(Role.ADMIN)}, view.version, p
        ),
        "give_up": lambda p: services.accounts.give_up_permission(
            account_id, view.granted()[0].id, view.version, p
        ),
        "disable": lambda p: services.accounts.disable_self(account_id, view.version, p),
        "delete": lambda p: services.accounts.delete_account(account_id, view.version, p),
    }
    for name, change in changes.items():
        for proof in (None, someone):
            with pytest.raises(NotAllowed):
                change(proof)
        assert snapshot(account_id) == before, name
    changes["personal"](owner_proof(services, account_id))
    assert Account.get_by_id(account_id).name == "攻擊者"


# ----- nothing about a person without a card ----------------------------------------


def test_an_id_gets_the_same_answer_whatever_its_account(services: Services) -> None:
    clinic = unit_of_kind(UnitKind.CLINIC, with_category="ppe")
    answers = {}
    for status in (None, AccountStatus.ACTIVE, AccountStatus.DISABLED):
        person = new_person_id()
        if status is not None:
            victim_account(services, person, status)
        start = services.accounts.begin_application(person, clinic.code)
        answers[status] = (start.kind, start.unit_code, start.person_id == person)
    assert len(set(answers.values())) == 1
    assert answers[None][0] == StartKind.NEW

    pending = new_person_id()
    account_id = victim_account(services, pending, AccountStatus.PENDING)
    start = services.accounts.begin_application(pending, clinic.code)
    assert start.kind == StartKind.UPDATE_PENDING
    looked_up = AuditEvent.select().where(
        (AuditEvent.action == "pending_lookup") & (AuditEvent.target_id == str(account_id))
    )
    assert looked_up.count() == 1
    assert pending[2:8] not in looked_up.get().actor_label


def limited_services(services: Services, **limits: int) -> Services:
    settings = services.settings.with_overrides(**limits)
    open_database(settings.database_url, settings.sqlite_path)
    return build_services(settings)


def test_step_10_look_ups_are_limited_per_session_whatever_the_answer(
    services: Services,
) -> None:
    limited = limited_services(services, pending_lookups_per_session=3)
    clinic = unit_of_kind(UnitKind.CLINIC, with_category="ppe")
    for _ in range(3):
        limited.accounts.begin_application(new_person_id(), clinic.code)
    with pytest.raises(NotAllowed) as caught:
        limited.accounts.begin_application(new_person_id(), clinic.code)
    assert caught.value.key == "error.lookup_too_often"
    assert "分鐘後再試" in str(caught.value)
    assert AuditEvent.select().where(AuditEvent.action == "pending_lookup_limited").count() == 1


def test_a_flood_of_applications_is_refused_and_shown_in_the_trail(
    services: Services,
) -> None:
    limited = limited_services(
        services, applications_per_session_hour=3, applications_per_card_hour=2
    )
    clinic = unit_of_kind(UnitKind.CLINIC, with_category="ppe")
    person = new_person_id()
    proof = card_proof(limited, person)
    account_id = limited.accounts.apply(form(person, clinic), proof)
    version = limited.accounts.view(account_id).version
    limited.accounts.update_pending(form(person, clinic), version, card_proof(limited, person))
    version = limited.accounts.view(account_id).version
    with pytest.raises(NotAllowed) as caught:
        limited.accounts.update_pending(form(person, clinic), version, card_proof(limited, person))
    assert caught.value.key == "error.apply_too_often_card"

    other = new_person_id()
    with pytest.raises(NotAllowed) as caught:
        limited.accounts.apply(form(other, clinic), card_proof(limited, other))
    assert caught.value.key == "error.apply_too_often_session"
    assert limited.accounts.find_by_person_id(other) is None

    cdc_admin = make_admin(services, unit_of_kind(UnitKind.CDC))
    trail = services.audit.search(cdc_admin.id, TrailQuery(action="apply_limited"))
    assert trail.total == 2
    assert (
        PermissionRequest.select()
        .where(
            (PermissionRequest.account == account_id)
            & (PermissionRequest.status == RequestStatus.PENDING)
        )
        .count()
        == 1
    )


def test_the_last_data_fills_a_reapplication_only_for_the_holders_card(
    services: Services, cards: CardLoginService, backend: InProcessBackend, pki: TestPki
) -> None:
    holder = pki.user("moica")
    victim = id_sharing_last4(holder.person_id)
    account_id = victim_account(services, victim, AccountStatus.DISABLED)
    own = card_proof(services, victim, name="受害人", kind=CardKind.MOICA)
    data = services.accounts.previous_data(own, victim)
    assert data is not None and data.name == "受害人"
    assert data.email == Account.get_by_id(account_id).email

    # Another card, an ID with no account, an active account: the same empty answer.
    attacker = prove(backend, cards, holder)
    assert services.accounts.previous_data(attacker, victim) is None
    assert services.accounts.previous_data(own, new_person_id()) is None
    active = new_person_id()
    active_id = victim_account(services, active, AccountStatus.ACTIVE)
    assert services.accounts.previous_data(owner_proof(services, active_id), active) is None
    with pytest.raises(NotAllowed):
        services.accounts.previous_data(None, victim)
