"""Logging in from an SSH session: the PIN is typed at the staff computer, in the card
agent, and the kiosk gets only a login proof (card.agent.proof), on SQLite and
PostgreSQL.

The staff side here is a fake RemoteCards that holds the test PKI user's key: it signs
whatever its ``forge`` says, so the hostile agents below – a signature over the bare
nonce, for another server, for another session, replayed – are one line each, and each
must be refused by the kiosk.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from card.agent.proof import NONCE_BYTES, LoginProof, login_message
from card.errors import (
    CardError,
    CardRemoved,
    CertificateProblem,
    PinBlocked,
    ProofCancelled,
    ProofTimedOut,
    SignatureInvalid,
    WrongPin,
)
from card.identity import CardKind
from card.readers.profiles import CardProfile, CardRead
from card.sim.inprocess import InProcessBackend
from card.sim.testpki import PkiUser, TestPki, make_test_pki
from card.sim.virtual import VirtualPivCard
from card.validation import CertificateValidator
from models.schema import Role, UnitKind
from smis_tui.core.config import ConfigError, load_settings
from smis_tui.services import Services
from smis_tui.services.accounts import RoleChoice
from smis_tui.services.auth import LoginState
from smis_tui.services.card_login import CardLoginService, PinNotHere, ProofForOtherServer
from smis_tui.services.errors import NotAllowed
from smis_tui.text import render_error
from tests.helpers import form, make_admin, send_application, unit_of_kind

READER = "Staff reader 0"
SERVER = "kiosk.example.org"
SESSION = "31337-5eed5eed"
PIN = "135790"

# (server name, session id, nonce) -> (the server name the proof claims, bytes signed)
Forge = Callable[[str, str, bytes], tuple[str, bytes]]


def honest(server: str, session: str, nonce: bytes) -> tuple[str, bytes]:
    return server, login_message(server, session, nonce)


def sign(user: PkiUser, data: bytes) -> bytes:
    key = user.key
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


@dataclass
class FakeAgent:
    """The staff member's card agent as the kiosk sees it (RemoteCards)."""

    user: PkiUser
    signer: PkiUser | None = None  # whose key signs (another card's, for an attack)
    server_name: str = SERVER
    session_id: str = SESSION
    forge: Forge = honest
    failure: CardError | None = None  # what the staff side answers instead of a proof
    asked: list[tuple[str, str, bytes, float]] = field(default_factory=list)
    proofs: list[LoginProof] = field(default_factory=list)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def read_card(self, reader: str) -> CardRead:
        assert reader == READER
        return CardRead(CardProfile.PIV, self.user.cert_der, reader, b"\x3b\x00")

    def prove(self, reader: str, cert_sha256: str, nonce: bytes, timeout: float) -> LoginProof:
        self.asked.append((reader, cert_sha256, nonce, timeout))
        if self.failure is not None:
            raise self.failure
        claimed, data = self.forge(self.server_name, self.session_id, nonce)
        proof = LoginProof(claimed, sign(self.signer or self.user, data))
        self.proofs.append(proof)
        return proof

    def cancel(self) -> None:
        self.cancelled.set()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


def kiosk(
    services: Services, pki: TestPki, agent: FakeAgent, names: tuple[str, ...] = (SERVER,)
) -> CardLoginService:
    validator = CertificateValidator(pki.ca_dir, pki.crl_dir)
    return CardLoginService(
        InProcessBackend([READER]),
        validator,
        services.login,
        services.accounts,
        remote=agent,
        server_names=names,
        remote_pin_timeout=42,
    )


def approved_account(services: Services, person_id: str) -> int:
    clinic = unit_of_kind(UnitKind.CLINIC, with_category="ppe")
    admin = make_admin(services, unit_of_kind(UnitKind.CDC))
    account_id = send_application(
        services, form(person_id, clinic, {"ppe": RoleChoice(Role.OFFICER)})
    )
    services.review.approve(admin.id, services.accounts.view(account_id).pending()[0].id)
    return account_id


# ---------------------------------------------------------------------- logging in


def test_a_remote_login_takes_no_pin_and_binds_then_logs_in(
    services: Services, pki: TestPki
) -> None:
    user = pki.user("moica")
    account_id = approved_account(services, user.person_id)
    agent = FakeAgent(user)
    cards = kiosk(services, pki, agent)
    assert cards.remote_session == SESSION
    preview = cards.read(READER)
    assert preview.identity.name == user.cn and preview.problem is None
    assert preview.identity.kind == CardKind.MOICA

    first = cards.authenticate(READER, expected_cert_sha256=preview.identity.cert_sha256)
    assert first.outcome is None and first.needs_person_id is not None
    outcome = cards.bind(first.needs_person_id, user.person_id)
    assert (outcome.state, outcome.account_id) == (LoginState.ACTIVE, account_id)
    second = cards.authenticate(READER)
    assert second.outcome is not None and second.outcome.state == LoginState.ACTIVE

    # Each login asked the card in the reader for a fresh nonce, with the configured wait.
    (reader, sha, nonce_1, timeout), (_, _, nonce_2, _) = agent.asked
    assert (reader, sha, timeout) == (READER, preview.identity.cert_sha256, 42.0)
    assert len(nonce_1) == NONCE_BYTES and nonce_1 != nonce_2
    assert len(cards.challenges) == 0  # both nonces used up


def test_the_holder_check_of_a_pending_application_is_proven_remotely(
    services: Services, pki: TestPki
) -> None:
    user, other = pki.user("moica"), pki.user("hpc")
    clinic = unit_of_kind(UnitKind.CLINIC)
    account_id = send_application(services, form(user.person_id, clinic))
    send_application(services, form(other.person_id, clinic, name=other.cn))
    cards = kiosk(services, pki, FakeAgent(user))
    proof = cards.prove_holder(READER, None)
    assert proof.identity.name == user.cn
    assert services.accounts.pending_application(proof, user.person_id).id == account_id
    with pytest.raises(NotAllowed) as caught:
        services.accounts.pending_application(proof, other.person_id)
    assert caught.value.key == "error.card_id_mismatch"
    bad = kiosk(services, pki, FakeAgent(user, forge=lambda s, i, nonce: (s, nonce)))
    with pytest.raises(SignatureInvalid):
        bad.prove_holder(READER, None)


# ---------------------------------------------------------------------- hostile agents

HOSTILE: dict[str, Forge] = {
    # A PIV card signs any 32 bytes: the old protocol's signature over the nonce alone.
    "bare nonce": lambda server, session, nonce: (server, nonce),
    # Our name is claimed, but the card signed a login to another server.
    "signed for another server": lambda server, session, nonce: (
        server,
        login_message("evil.example.org", session, nonce),
    ),
    "another session": lambda server, session, nonce: (
        server,
        login_message(server, "1-other", nonce),
    ),
    "another nonce": lambda server, session, nonce: (
        server,
        login_message(server, session, bytes(NONCE_BYTES)),
    ),
    "no domain prefix": lambda server, session, nonce: (
        server,
        login_message(server, session, nonce).removeprefix(b"smis-tui remote login proof v1\x00"),
    ),
}


@pytest.mark.parametrize("attack", sorted(HOSTILE))
def test_a_proof_over_other_bytes_is_refused(services: Services, pki: TestPki, attack: str) -> None:
    user = pki.user("moica")
    approved_account(services, user.person_id)
    cards = kiosk(services, pki, FakeAgent(user, forge=HOSTILE[attack]))
    with pytest.raises(SignatureInvalid):
        cards.authenticate(READER)
    assert len(cards.challenges) == 0


def test_a_proof_made_for_another_server_name_is_refused_by_name(
    services: Services, pki: TestPki
) -> None:
    """The agent put the name the person typed into the proof: if it is not one of
    ours, the person believes they log in somewhere else. Refused, and said so."""
    user = pki.user("moica")
    agent = FakeAgent(user, server_name="evil.example.org")
    cards = kiosk(services, pki, agent)
    with pytest.raises(ProofForOtherServer) as caught:
        cards.authenticate(READER)
    assert str(caught.value) == "此登入證明是為其他伺服器（evil.example.org）產生的，未登入"
    assert "another server (evil.example.org)" in render_error(caught.value, "en")
    assert len(cards.challenges) == 0
    # The same proof is good once the name is one of ours.
    assert kiosk(services, pki, agent, ("other", "evil.example.org")).authenticate(READER)


def test_a_server_name_with_control_characters_is_not_shown_as_it_is(
    services: Services, pki: TestPki
) -> None:
    agent = FakeAgent(pki.user("moica"), forge=lambda s, i, n: ("\x1b[2Jevil" + "x" * 300, b""))
    with pytest.raises(ProofForOtherServer) as caught:
        kiosk(services, pki, agent).authenticate(READER)
    assert "\x1b" not in str(caught.value) and "x" * 65 not in str(caught.value)


def test_a_replayed_proof_is_refused(services: Services, pki: TestPki) -> None:
    user = pki.user("moica")
    agent = FakeAgent(user)
    cards = kiosk(services, pki, agent)
    cards.authenticate(READER)
    recorded = agent.proofs[-1]
    replaying = FakeAgent(user)
    replaying.prove = lambda *args: recorded  # type: ignore[method-assign]
    with pytest.raises(SignatureInvalid):
        kiosk(services, pki, replaying).authenticate(READER)
    # ... in the same kiosk too: its nonces are used once.
    agent.prove = lambda *args: recorded  # type: ignore[method-assign]
    with pytest.raises(SignatureInvalid):
        cards.authenticate(READER)


def test_a_proof_signed_by_another_card_is_refused(services: Services, pki: TestPki) -> None:
    agent = FakeAgent(pki.user("moica"), signer=pki.user("moica2"))
    with pytest.raises(SignatureInvalid):
        kiosk(services, pki, agent).authenticate(READER)


def test_a_kiosk_without_server_names_accepts_no_proof(services: Services, pki: TestPki) -> None:
    with pytest.raises(ProofForOtherServer):
        kiosk(services, pki, FakeAgent(pki.user("moica")), names=()).authenticate(READER)


# ---------------------------------------------------------------------- outcomes


@pytest.mark.parametrize(
    "failure",
    [
        WrongPin(tries_left=2),
        PinBlocked(unblock_at="自然人憑證管理中心"),
        CardRemoved(),
        ProofCancelled(),
        ProofTimedOut(42.0),
    ],
    ids=lambda error: type(error).__name__,
)
def test_what_the_staff_side_answers_is_what_the_kiosk_reports(
    services: Services, pki: TestPki, failure: CardError
) -> None:
    cards = kiosk(services, pki, FakeAgent(pki.user("moica"), failure=failure))
    with pytest.raises(type(failure)) as caught:
        cards.authenticate(READER)
    assert caught.value is failure
    assert len(cards.challenges) == 0  # the nonce of a failed proof is gone


@pytest.mark.parametrize("name", ["expired", "revoked", "untrusted"])
def test_a_card_that_cannot_log_in_is_never_asked_for_the_pin(
    services: Services, pki: TestPki, name: str
) -> None:
    agent = FakeAgent(pki.user(name))
    with pytest.raises(CertificateProblem):
        kiosk(services, pki, agent).authenticate(READER)
    assert agent.asked == []


def test_a_card_swapped_in_after_the_preview_is_not_asked(services: Services, pki: TestPki) -> None:
    agent = FakeAgent(pki.user("moica"))
    cards = kiosk(services, pki, agent)
    shown = cards.read(READER).identity.cert_sha256
    agent.user = pki.user("hpc")
    with pytest.raises(CardRemoved):
        cards.authenticate(READER, None, shown)
    assert agent.asked == []


def test_a_pin_handed_to_a_remote_login_is_a_programming_error(
    services: Services, pki: TestPki
) -> None:
    agent = FakeAgent(pki.user("moica"))
    cards = kiosk(services, pki, agent)
    pin = bytearray(PIN.encode())
    with pytest.raises(PinNotHere) as caught:
        cards.authenticate(READER, pin)
    assert PIN not in str(caught.value) and pin == bytearray(len(PIN))  # wiped
    with pytest.raises(PinNotHere):
        cards.prove_holder(READER, PIN)
    assert agent.asked == []
    local = CardLoginService(
        InProcessBackend([READER]),
        CertificateValidator(pki.ca_dir, pki.crl_dir),
        services.login,
        services.accounts,
    )
    with pytest.raises(PinNotHere):
        local.authenticate(READER)  # a kiosk's own reader: the PIN is typed here
    assert local.remote_session is None
    local.cancel_proof()  # nothing under way, nothing to do


def test_cancel_reaches_the_agent(services: Services, pki: TestPki) -> None:
    agent = FakeAgent(pki.user("moica"))
    kiosk(services, pki, agent).cancel_proof()
    assert agent.cancelled.is_set()


# ---------------------------------------------------------------------- settings


def test_server_names_come_from_the_environment_or_the_config_file(tmp_path: Path) -> None:
    base = {"SMIS_DATA_DIR": str(tmp_path)}
    settings = load_settings(base | {"SMIS_SERVER_NAMES": " kiosk.example.org , kiosk ,"})
    assert settings.resolved_server_names == ("kiosk.example.org", "kiosk")
    (tmp_path / "config.toml").write_text(
        'server_names = ["smis.example.org"]\nremote_pin_timeout_seconds = 30\n'
    )
    settings = load_settings(base)
    assert settings.resolved_server_names == ("smis.example.org",)
    assert settings.remote_pin_timeout_seconds == 30
    assert (
        load_settings(base | {"SMIS_REMOTE_PIN_TIMEOUT_SECONDS": "5"}).remote_pin_timeout_seconds
        == 5
    )


def test_without_server_names_the_hosts_own_names_are_used(tmp_path: Path) -> None:
    settings = load_settings({"SMIS_DATA_DIR": str(tmp_path)})
    assert settings.remote_pin_timeout_seconds == 120
    assert socket.gethostname() in settings.resolved_server_names
    assert socket.getfqdn() in settings.resolved_server_names


@pytest.mark.parametrize("names", ["bad\x1bname", "x" * 256])
def test_an_unusable_server_name_is_a_config_error(tmp_path: Path, names: str) -> None:
    with pytest.raises(ConfigError):
        load_settings({"SMIS_DATA_DIR": str(tmp_path), "SMIS_SERVER_NAMES": names})


# ---------------------------------------------------------------------- a real agent


@dataclass
class ScriptedPins:
    """The staff member at the agent's PIN prompt (card.agent.pin_entry.PinSource):
    types each of ``typed`` in turn; None cancels there; "wait" waits to be cancelled
    by the kiosk."""

    typed: list[str | None]
    asked: list[object] = field(default_factory=list)

    def ask(self, request: object, cancel: threading.Event, timeout: float) -> bytearray:
        self.asked.append(request)
        answer = self.typed.pop(0)
        if answer == "wait":
            cancel.wait(timeout)
            raise ProofCancelled()
        if answer is None:
            raise ProofCancelled()
        return bytearray(answer.encode())


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory for the agent's socket (sun_path is at most 107 bytes)."""
    directory = Path(tempfile.mkdtemp(prefix="smis-rl-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def agent_and_kiosk(
    services: Services, pki: TestPki, directory: Path, pins: ScriptedPins, server: str = SERVER
) -> Iterator[tuple[CardLoginService, VirtualPivCard, list[str]]]:
    from card.agent.client import AgentBackend
    from card.agent.server import AgentServer

    readers = InProcessBackend([READER])
    user = pki.user("moica")
    virtual = VirtualPivCard(user.cert_der, user.key, PIN)
    readers.insert(READER, virtual)
    lines: list[str] = []
    agent = AgentServer(
        readers,
        server_name=server,
        socket_path=directory / "agent.sock",
        pin_source=pins,
        notify=lines.append,
    )
    with agent, AgentBackend(agent.socket_path) as client:
        cards = CardLoginService(
            client,
            CertificateValidator(pki.ca_dir, pki.crl_dir),
            services.login,
            services.accounts,
            remote=client,
            server_names=(SERVER,),
            remote_pin_timeout=10,
        )
        yield cards, virtual, lines


def test_a_login_through_a_real_card_agent(
    services: Services, pki: TestPki, short_dir: Path
) -> None:
    user = pki.user("moica")
    account_id = approved_account(services, user.person_id)
    pins = ScriptedPins(["000000", None, PIN])  # the agent allows 3 proofs a minute
    with agent_and_kiosk(services, pki, short_dir, pins) as (cards, virtual, lines):
        preview = cards.read(READER)
        assert preview.identity.name == user.cn
        shown = preview.identity.cert_sha256
        with pytest.raises(WrongPin) as wrong:
            cards.authenticate(READER, None, shown)
        assert wrong.value.tries_left == 2
        with pytest.raises(ProofCancelled):  # the person cancelled at the agent
            cards.authenticate(READER, None, shown)
        first = cards.authenticate(READER, None, shown)
        assert first.needs_person_id is not None
        outcome = cards.bind(first.needs_person_id, user.person_id)
        assert (outcome.state, outcome.account_id) == (LoginState.ACTIVE, account_id)
        assert virtual.tries_left == 3  # the right PIN reset the counter
        # The agent showed which server and session asked.
        request = pins.asked[0]
        assert getattr(request, "server_name") == SERVER  # noqa: B009
        assert getattr(request, "session_id") == cards.remote_session  # noqa: B009
    assert not any(PIN in line or "000000" in line for line in lines)


def test_the_kiosk_cancels_the_agents_prompt(
    services: Services, pki: TestPki, short_dir: Path
) -> None:
    pins = ScriptedPins(["wait"])
    with agent_and_kiosk(services, pki, short_dir, pins) as (cards, _, _):
        timer = threading.Timer(0.5, cards.cancel_proof)  # Esc at the kiosk
        timer.start()
        try:
            with pytest.raises(ProofCancelled):
                cards.authenticate(READER)
        finally:
            timer.cancel()


def test_a_real_agent_for_another_server_name_is_refused(
    services: Services, pki: TestPki, short_dir: Path
) -> None:
    pins = ScriptedPins([PIN])
    with agent_and_kiosk(services, pki, short_dir, pins, server="evil.example.org") as (
        cards,
        _,
        _,
    ):
        with pytest.raises(ProofForOtherServer):
            cards.authenticate(READER)


def test_an_ssh_sessions_runtime_takes_the_server_names_and_wait_from_the_settings(
    services: Services, pki: TestPki, short_dir: Path
) -> None:
    from card.agent.server import AgentServer
    from smis_tui.core.config import Settings
    from smis_tui.services.card_runtime import agent_runtime

    user = pki.user("moica")
    readers = InProcessBackend([READER])
    readers.insert(READER, VirtualPivCard(user.cert_der, user.key, PIN))
    pins = ScriptedPins([PIN, PIN])
    said: list[str] = []
    settings = Settings(
        data_dir=short_dir,
        ca_dir=pki.ca_dir,
        server_names=(SERVER,),
        remote_pin_timeout_seconds=7,
    )
    with AgentServer(
        readers,
        server_name=SERVER,
        socket_path=short_dir / "a.sock",
        pin_source=pins,
        notify=said.append,
    ) as agent:
        runtime = agent_runtime(services, settings, agent.socket_path)
        try:
            assert runtime.remote_session is not None
            assert runtime.remote_session == getattr(runtime.backend, "session_id")  # noqa: B009
            assert runtime.login.remote_pin_timeout == 7
            assert runtime.login.authenticate(READER).needs_person_id is not None
        finally:
            runtime.close()
    with AgentServer(
        readers,
        server_name="elsewhere",
        socket_path=short_dir / "b.sock",
        pin_source=pins,
        notify=said.append,
    ) as other:
        runtime = agent_runtime(services, settings, other.socket_path)
        try:
            with pytest.raises(ProofForOtherServer):
                runtime.login.authenticate(READER)
        finally:
            runtime.close()
