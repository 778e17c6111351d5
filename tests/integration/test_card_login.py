"""The card login pipeline end to end, in-process: virtual card → certificate →
PIN → signed challenge → validation → account, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import peewee
import pytest

from card.errors import CardError, CardRemoved, CertificateProblem, PinBlocked, WrongPin
from card.sim.inprocess import InProcessBackend
from card.sim.testpki import PkiUser, TestPki, make_test_pki
from card.sim.virtual import FaultyCard, VirtualPivCard
from card.validation import CertificateValidator
from models.db import database_proxy
from models.schema import AuditEvent, Role, UnitKind
from smis_tui.services import Services
from smis_tui.services.accounts import RoleChoice
from smis_tui.services.auth import LoginState
from smis_tui.services.card_login import CardLoginService
from smis_tui.services.errors import NotAllowed
from tests.helpers import form, make_admin, send_application, unit_of_kind

READER = "Virtual PCD 00 00"
PIN = "135790"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def backend() -> InProcessBackend:
    return InProcessBackend([READER])


@pytest.fixture
def cards(services: Services, pki: TestPki, backend: InProcessBackend) -> CardLoginService:
    validator = CertificateValidator(pki.ca_dir, pki.crl_dir)
    return CardLoginService(backend, validator, services.login, services.accounts, timeout=5.0)


def insert(backend: InProcessBackend, user: PkiUser, pin: str = PIN) -> VirtualPivCard:
    card = VirtualPivCard(user.cert_der, user.key, pin)
    backend.insert(READER, card)
    return card


def approved_account(services: Services, person_id: str) -> int:
    clinic = unit_of_kind(UnitKind.CLINIC, with_category="ppe")
    admin = make_admin(services, unit_of_kind(UnitKind.CDC))
    account_id = send_application(
        services, form(person_id, clinic, {"ppe": RoleChoice(Role.OFFICER)})
    )
    services.review.approve(admin.id, services.accounts.view(account_id).pending()[0].id)
    return account_id


def test_first_login_binds_the_card_then_logs_in_directly(
    services: Services, cards: CardLoginService, backend: InProcessBackend, pki: TestPki
) -> None:
    user = pki.user("moica")
    account_id = approved_account(services, user.person_id)
    insert(backend, user)
    preview = cards.read(READER)
    assert preview.identity.name == user.cn and preview.problem is None

    first = cards.authenticate(READER, PIN)
    assert first.outcome is None and first.needs_person_id is not None
    outcome = cards.bind(first.needs_person_id, user.person_id)
    assert (outcome.state, outcome.account_id) == (LoginState.ACTIVE, account_id)

    second = cards.authenticate(READER, PIN)
    assert second.outcome is not None and second.outcome.state == LoginState.ACTIVE
    assert second.needs_person_id is None


def test_binding_refuses_an_id_the_certificate_does_not_carry(
    services: Services, cards: CardLoginService, backend: InProcessBackend, pki: TestPki
) -> None:
    user = pki.user("moica")
    other = pki.user("hpc")
    approved_account(services, other.person_id)
    insert(backend, user)
    proof = cards.authenticate(READER, PIN).needs_person_id
    assert proof is not None
    with pytest.raises(NotAllowed) as caught:
        cards.bind(proof, other.person_id)
    assert "卡片與身分證號不符" in str(caught.value)
    with pytest.raises(NotAllowed):  # a proof is good for one try only
        cards.bind(proof, user.person_id)


def test_unknown_person_gets_the_seed_message(
    services: Services, cards: CardLoginService, backend: InProcessBackend, pki: TestPki
) -> None:
    user = pki.user("hpc")
    insert(backend, user)
    proof = cards.authenticate(READER, PIN).needs_person_id
    assert proof is not None
    outcome = cards.bind(proof, user.person_id)
    assert outcome.state == LoginState.NO_ACCOUNT and outcome.message_key == "login.no_account"


def test_wrong_pin_counts_down_then_blocks_with_where_to_unblock(
    cards: CardLoginService, backend: InProcessBackend, pki: TestPki
) -> None:
    insert(backend, pki.user("moica"))
    raised: list[CardError] = []
    for expected in (2, 1):
        with pytest.raises(WrongPin) as caught:
            cards.authenticate(READER, "000000")
        assert caught.value.tries_left == expected
        raised.append(caught.value)
    with pytest.raises(PinBlocked) as blocked:
        cards.authenticate(READER, "000000")
    assert "自然人憑證管理中心" in str(blocked.value)
    with pytest.raises(PinBlocked):
        cards.authenticate(READER, PIN)  # the right PIN no longer helps
    for error in [*raised, blocked.value]:
        assert "000000" not in str(error) and "000000" not in repr(error.params)


@pytest.mark.parametrize("name", ["expired", "not_yet_valid", "revoked", "untrusted", "key_usage"])
def test_certificate_problems_are_named_before_and_after_the_pin(
    cards: CardLoginService, backend: InProcessBackend, pki: TestPki, name: str
) -> None:
    user = pki.user(name)
    insert(backend, user)
    preview = cards.read(READER)
    assert preview.identity.name == user.cn
    assert preview.problem is not None and preview.problem.reason == user.expected
    with pytest.raises(CertificateProblem) as caught:
        cards.authenticate(READER, PIN)
    assert caught.value.reason == user.expected


def test_expired_message_gives_the_date(
    cards: CardLoginService, backend: InProcessBackend, pki: TestPki
) -> None:
    user = pki.user("expired")
    insert(backend, user)
    problem = cards.read(READER).problem
    assert problem is not None
    after = user.certificate.not_valid_after_utc + dt.timedelta(hours=8)
    assert f"{after.year - 1911}/{after.month:02d}/{after.day:02d}" in str(problem)


def test_card_pulled_out_while_signing_is_a_clear_error(
    cards: CardLoginService, backend: InProcessBackend, pki: TestPki
) -> None:
    user = pki.user("moica")
    inner = VirtualPivCard(user.cert_der, user.key, PIN)
    backend.insert(READER, FaultyCard(inner, "vanish", after=6))
    with pytest.raises(CardRemoved):
        cards.authenticate(READER, PIN)


def test_pin_of_the_wrong_length_never_reaches_the_card(
    cards: CardLoginService, backend: InProcessBackend, pki: TestPki
) -> None:
    card = insert(backend, pki.user("moica"))
    for pin in ("12345", "123456789", ""):
        with pytest.raises(CardError) as caught:
            cards.authenticate(READER, pin)
        assert "6 至 8 碼" in str(caught.value)
    assert card.tries_left == 3


def test_updating_a_pending_application_needs_the_applicants_own_card(
    services: Services, cards: CardLoginService, backend: InProcessBackend, pki: TestPki
) -> None:
    user, other = pki.user("moica"), pki.user("hpc")
    clinic = unit_of_kind(UnitKind.CLINIC, with_category="ppe")
    account_id = send_application(services, form(user.person_id, clinic))
    send_application(services, form(other.person_id, clinic, name=other.cn))
    insert(backend, user)
    proof = cards.prove_holder(READER, PIN)
    assert proof.identity.name == user.cn
    assert services.accounts.pending_application(proof, user.person_id).id == account_id
    with pytest.raises(NotAllowed) as caught:
        services.accounts.pending_application(proof, other.person_id)
    assert "卡片與身分證號不符" in str(caught.value)


def test_a_citizen_card_binds_only_to_the_holders_own_name(
    services: Services, cards: CardLoginService, backend: InProcessBackend, pki: TestPki
) -> None:
    user = pki.user("moica")  # its certificate carries only the last 4 ID digits
    clinic = unit_of_kind(UnitKind.CLINIC, with_category="ppe")
    admin = make_admin(services, unit_of_kind(UnitKind.CDC))
    account_id = send_application(services, form(user.person_id, clinic, name="別人"))
    services.review.approve(admin.id, services.accounts.view(account_id).pending()[0].id)
    insert(backend, user)
    proof = cards.authenticate(READER, PIN).needs_person_id
    assert proof is not None
    with pytest.raises(NotAllowed):
        cards.bind(proof, user.person_id)
    assert services.accounts.find_by_certificate(cards.read(READER).identity.cert_sha256) is None


def test_a_card_swapped_in_after_the_preview_gets_no_pin(
    cards: CardLoginService, backend: InProcessBackend, pki: TestPki
) -> None:
    """The person saw card A named on the screen; if card B is in the reader by the
    time the PIN is sent, B never sees the PIN (no try is used up) and nobody logs in."""
    insert(backend, pki.user("moica"))
    preview = cards.read(READER)
    backend.remove(READER)
    swapped = insert(backend, pki.user("hpc"))
    with pytest.raises(CardRemoved):
        cards.authenticate(READER, PIN, preview.identity.cert_sha256)
    assert swapped.tries_left == 3 and not swapped.verified
    # The card named on the screen itself logs in as before.
    backend.remove(READER)
    insert(backend, pki.user("moica"))
    result = cards.authenticate(READER, PIN, preview.identity.cert_sha256)
    assert result.needs_person_id is not None or result.outcome is not None


def test_a_login_whose_commit_answer_was_lost_is_recorded_once(
    services: Services,
    cards: CardLoginService,
    backend: InProcessBackend,
    pki: TestPki,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server committed the login, then the connection broke before its answer
    came (a failover, a network cut): the client sees an error and runs the login's
    transaction again. The trail must hold one login, not two."""
    user = pki.user("moica")
    account_id = approved_account(services, user.person_id)
    insert(backend, user)
    proof = cards.authenticate(READER, PIN).needs_person_id
    assert proof is not None
    cards.bind(proof, user.person_id)  # the first login (binding the card)
    logins_before = _logins(account_id)
    db = database_proxy.obj
    commit = db.commit
    lost = []

    def commit_then_lose_the_answer() -> None:
        commit()
        if not lost and db.transaction_depth() == 1:
            lost.append(True)
            raise peewee.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(db, "commit", commit_then_lose_the_answer)
    result = cards.authenticate(READER, PIN)
    monkeypatch.undo()
    assert lost, "no commit's answer was lost: the test did not test anything"
    assert result.outcome is not None and result.outcome.state == LoginState.ACTIVE
    assert _logins(account_id) == logins_before + 1
    assert services.audit.verify().ok


def _logins(account_id: int) -> int:
    return int(
        AuditEvent.select()
        .where((AuditEvent.action == "login") & (AuditEvent.actor == account_id))
        .count()
    )
