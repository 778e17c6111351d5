"""Logging in with a card (docs/architecture.md, "Cards"): reader → certificate →
CardIdentity → PIN → the card signs a fresh challenge (card.signing) → signature checked
with the certificate's key → chain validated → account looked up by its card binding.

No Textual here; the screens call these methods from thread workers. The PIN is
checked for format, handed to the card (PIV) or the PKCS#11 module (HiCOS), and
wiped; it is never stored, logged or put into an exception.

In an SSH session (``remote``: the staff member's card agent) no PIN reaches this
process at all: the person types it on their own computer and the agent returns a
login proof, the card's signature over card.agent.proof.login_message of a name of
this server, this session's id and a fresh nonce of ours, which is checked here with
the certificate like a local signature.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Collection
from contextlib import suppress
from dataclasses import dataclass

import peewee
from cryptography import x509

from card.agent.proof import LoginProof, RemoteCards, login_message
from card.challenge import DEFAULT_TTL_S, ChallengeBook, verify_signature
from card.errors import (
    CardError,
    CardRemoved,
    CertificateProblem,
    PinBlocked,
    SignatureInvalid,
    WrongPin,
)
from card.identity import CardIdentity, CardKind, identity_from_certificate, matches_person_id
from card.pin import check_pin_format, wipe
from card.readers.profiles import CardProfile, ReaderCertificate, read_card
from card.signing import SignerForKind, sign_challenge
from card.transport import DEFAULT_TIMEOUT_S, ReaderBackend
from card.validation import CertificateValidator
from models.db import DatabaseUnavailable
from models.schema import AccountStatus
from smis_tui.services.accounts import AccountService, clean_person_id
from smis_tui.services.auth import LoginOutcome, LoginService, LoginState, RefusedWhy
from smis_tui.services.card_proof import CardProof, card_for_account
from smis_tui.services.errors import NotAllowed, ServiceError

log = logging.getLogger(__name__)

# How long a remote login waits for the PIN at the staff computer unless told.
REMOTE_PIN_TIMEOUT_S = 120.0
# A nonce outlives the wait for the PIN by this much: the proof still has to travel.
NONCE_MARGIN_S = 30.0
# Of a server name a proof claims, this much is shown (the agent chose it).
SHOWN_NAME_CHARS = 64


class ProofForOtherServer(CardError):
    """The staff member's agent made the login proof for a server name that is not one
    of ours: the person may think they are logging in somewhere else."""

    key = "card.proof_other_server"
    template = "此登入證明是為其他伺服器（{name}）產生的，未登入"

    def __init__(self, name: str) -> None:
        shown = "".join(ch if ch.isprintable() else "?" for ch in name[:SHOWN_NAME_CHARS])
        super().__init__(name=shown)


class PinNotHere(TypeError):
    """A PIN was handed to a login whose PIN is typed at the staff computer, or none to
    one whose PIN is typed here: a programming error, never shown to a person."""


@dataclass(frozen=True)
class CardPreview:
    """What the login screen shows before the PIN: whose card it is, and whether its
    certificate can log in at all (an expired card is told so before any PIN)."""

    reader: str
    profile: CardProfile
    identity: CardIdentity
    problem: CertificateProblem | None


@dataclass(frozen=True)
class CardLoginResult:
    outcome: LoginOutcome | None
    # Set when the card is new to the system: ask the 身分證號 once, then bind().
    needs_person_id: CardProof | None = None
    # Share of the time spent talking to the card (for the benchmark).
    card_seconds: float = 0.0
    total_seconds: float = 0.0
    # The card just proved, for what the person does next without asking it again
    # (applying again after 您的帳號已停用, a change in 個人資料維護) while it lasts.
    proof: CardProof | None = None


class _Stopwatch:
    """Adds up the time spent inside its ``with`` blocks."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._entered = 0.0

    def __enter__(self) -> None:
        self._entered = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.seconds += time.perf_counter() - self._entered


class CardLoginService:
    def __init__(
        self,
        backend: ReaderBackend,
        validator: CertificateValidator,
        login: LoginService,
        accounts: AccountService,
        pkcs11: SignerForKind | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        clock: Callable[[], dt.datetime] | None = None,
        remote: RemoteCards | None = None,
        server_names: Collection[str] = (),
        remote_pin_timeout: float = REMOTE_PIN_TIMEOUT_S,
    ) -> None:
        """``remote``: the cards are a staff member's, behind their card agent; a login
        proof is accepted only when made for one of ``server_names``, and waits at most
        ``remote_pin_timeout`` seconds for the PIN."""
        self.backend = backend
        self.validator = validator
        self.login = login
        self.accounts = accounts
        self.pkcs11 = pkcs11
        self.timeout = timeout
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.remote = remote
        self.server_names = frozenset(server_names)
        self.remote_pin_timeout = remote_pin_timeout
        ttl = DEFAULT_TTL_S if remote is None else max(DEFAULT_TTL_S, remote_pin_timeout)
        self.challenges = ChallengeBook(ttl + (NONCE_MARGIN_S if remote is not None else 0.0))

    # ----- before the PIN ---------------------------------------------------------

    @property
    def remote_session(self) -> str | None:
        """The SSH session's id when the PIN is typed at the staff computer (shown on
        both screens), else None."""
        return self.remote.session_id if self.remote is not None else None

    def cancel_proof(self) -> None:
        """Abandon a remote login waiting for the PIN (thread-safe; nothing to do
        locally, where the PIN is typed before anything starts)."""
        if self.remote is not None:
            self.remote.cancel()

    def read(self, reader: str) -> CardPreview:
        if self.remote is not None:
            read = self.remote.read_card(reader)
        else:
            conn = self.backend.connect(reader)
            try:
                read = read_card(
                    conn, timeout=self.timeout, module_certificate=self._module_certificate()
                )
            finally:
                conn.close()
        identity = identity_from_certificate(read.certificate)
        return CardPreview(reader, read.profile, identity, self._problem(identity.certificate))

    def _module_certificate(self) -> ReaderCertificate | None:
        """How a card only the PKCS#11 module can read shows its certificate: such
        cards (second-generation, GPPKI) are all 自然人憑證."""
        signer_for = self.pkcs11
        if signer_for is None:
            return None
        return lambda reader: signer_for(CardKind.MOICA).reader_certificate(reader)

    def _problem(self, cert: x509.Certificate) -> CertificateProblem | None:
        try:
            self.validator.validate(cert, at=self.clock())
        except CertificateProblem as problem:
            return problem
        return None

    # ----- PIN, signature, account ------------------------------------------------

    def authenticate(
        self,
        reader: str,
        pin: str | bytes | bytearray | None = None,
        expected_cert_sha256: str | None = None,
    ) -> CardLoginResult:
        """The whole login after the PIN is typed – here, or with ``remote`` at the
        staff computer (then ``pin`` is None). Raises the card's domain errors (wrong
        PIN with tries left, blocked, removed, certificate problems; remote: cancelled,
        timed out, a proof for another server).

        ``expected_cert_sha256`` is the card the person saw named on the screen: if
        another card is in the reader by now, the PIN is not sent to it (it would cost
        that card a try) and the login fails as if the card had been pulled out."""
        started = time.perf_counter()
        if pin is None:
            identity, card_seconds = self._prove_remote(reader, expected_cert_sha256)
        else:
            buffer = self._local_pin(pin)
            del pin  # only the wipeable copy lives on, so no traceback frame holds the PIN
            identity, card_seconds = self._prove_card(reader, buffer, expected_cert_sha256)
        outcome = self.login.outcome_for_certificate(identity.cert_sha256)
        total = time.perf_counter() - started
        proof = self.accounts.proofs.issue(identity)
        if outcome.state == LoginState.NO_ACCOUNT and outcome.account_id is None:
            # A proof of its own for binding, used up by one try: an ID typed wrong
            # costs a new PIN, so nobody tries IDs against one card at leisure. Not
            # refused yet: bind() records how it ends.
            binding = self.accounts.proofs.issue(identity)
            return CardLoginResult(None, binding, card_seconds, total, proof=proof)
        self.login.record_outcome(outcome, str(identity.kind), identity.cert_sha256)
        return CardLoginResult(outcome, None, card_seconds, total, proof=proof)

    def prove_holder(self, reader: str, pin: str | bytes | bytearray | None) -> CardProof:
        """The card in ``reader`` signs a fresh challenge: a proof of its holder for the
        account service, which decides what the card stands for (step 11 before a
        pending application is shown, 送出申請, changes in 個人資料維護). ``pin`` is
        None with ``remote``: the PIN is typed at the staff computer."""
        if pin is None:
            identity, _ = self._prove_remote(reader)
        else:
            buffer = self._local_pin(pin)
            del pin
            identity, _ = self._prove_card(reader, buffer)
        return self.accounts.proofs.issue(identity)

    def _local_pin(self, pin: str | bytes | bytearray) -> bytearray:
        """The PIN typed at this kiosk, as a buffer the caller wipes."""
        if self.remote is not None:
            if isinstance(pin, bytearray):
                wipe(pin)
            # Never formatted into the message: it may be the PIN itself.
            raise PinNotHere("the PIN of a remote login is typed at the staff computer")
        return check_pin_format(pin)

    def _prove_remote(
        self, reader: str, expected_cert_sha256: str | None = None
    ) -> tuple[CardIdentity, float]:
        """The staff member types the PIN on their own computer; their agent returns
        the card's signature over a message naming this server, this session and a
        fresh nonce of ours, checked here against the certificate the card shows."""
        remote = self.remote
        if remote is None:
            raise PinNotHere("a login on this kiosk's own readers needs the PIN typed here")
        card = _Stopwatch()
        with card:
            read = remote.read_card(reader)
        identity = identity_from_certificate(read.certificate)
        if expected_cert_sha256 not in (None, identity.cert_sha256):
            raise CardRemoved()  # another card now: its holder was not asked
        problem = self._problem(identity.certificate)
        if problem is not None:
            raise problem
        nonce = self.challenges.issue()
        try:
            with card:
                proof = remote.prove(
                    reader, identity.cert_sha256, nonce, float(self.remote_pin_timeout)
                )
        except (WrongPin, PinBlocked) as refused:
            self._burn(nonce)
            self._pin_refused(identity, refused)
            raise
        except BaseException:
            self._burn(nonce)
            raise
        self._check_proof(identity, nonce, proof)
        return identity, card.seconds

    def _check_proof(self, identity: CardIdentity, nonce: bytes, proof: LoginProof) -> None:
        remote = self.remote
        assert remote is not None
        if proof.server_name not in self.server_names:
            self._burn(nonce)
            raise ProofForOtherServer(proof.server_name)
        self.challenges.consume(nonce)  # one answer per nonce, whatever it is
        try:
            message = login_message(proof.server_name, remote.session_id, nonce)
        except ValueError:
            raise SignatureInvalid() from None
        verify_signature(identity.certificate, message, proof.signature)

    def _burn(self, nonce: bytes) -> None:
        """No later answer may use ``nonce``."""
        with suppress(SignatureInvalid):
            self.challenges.consume(nonce)

    def _prove_card(
        self,
        reader: str,
        pin: str | bytes | bytearray,
        expected_cert_sha256: str | None = None,
    ) -> tuple[CardIdentity, float]:
        """PIN, a fresh challenge signed by the card, signature and chain checked."""
        buffer = check_pin_format(pin)
        # Connecting (power-up, ATR) and closing (card reset) are card I/O too.
        card = _Stopwatch()
        refused: tuple[CardIdentity, WrongPin | PinBlocked] | None = None
        try:
            with card:
                conn = self.backend.connect(reader)
            try:
                with card:
                    read = read_card(
                        conn, timeout=self.timeout, module_certificate=self._module_certificate()
                    )
                identity = identity_from_certificate(read.certificate)
                if expected_cert_sha256 not in (None, identity.cert_sha256):
                    raise CardRemoved()  # another card now: no PIN goes to it
                problem = self._problem(identity.certificate)
                if problem is not None:
                    raise problem
                challenge = self.challenges.issue()
                try:
                    with card:
                        signature = sign_challenge(
                            conn,
                            read,
                            identity,
                            buffer,
                            challenge,
                            pkcs11=self.pkcs11,
                            timeout=self.timeout,
                        )
                except (WrongPin, PinBlocked) as error:
                    refused = (identity, error)
                    raise
            finally:
                with card:
                    conn.close()
        finally:
            wipe(buffer)
            # Recorded once the PIN is wiped and the card let go.
            if refused is not None:
                self._pin_refused(*refused)
        self.challenges.verify(identity.certificate, challenge, signature)
        return identity, card.seconds

    def bind(self, proof: CardProof, person_id: str) -> LoginOutcome:
        """First login with a new card: the 身分證號 is asked once, and the card is
        bound to that ID's account if it stands for it (smis_tui.services.card_proof:
        a 自然人憑證 also needs the account's name)."""
        identity = self.accounts.proofs.consume(proof)
        person = clean_person_id(person_id)
        account = self.accounts.find_by_person_id(person.value)
        try:
            if account is None:
                if not identity.id_hint:
                    raise NotAllowed("error.card_cannot_bind")
                if not matches_person_id(identity, person.value):
                    raise NotAllowed("error.card_id_mismatch")
                outcome = self.login.outcome_for_person(person.value)
            else:
                card_for_account(identity, account, person.value)
                self.accounts.bind_card(account.id, identity.cert_sha256, str(identity.kind))
                outcome = self.login.outcome_for_certificate(identity.cert_sha256)
        except NotAllowed:
            # Whatever the typed ID's account is, the trail names only the card: the
            # row must not tell which IDs have an account.
            self._refused(identity, RefusedWhy.UNKNOWN_CARD, bound=False)
            raise
        if account is None:
            self._refused(identity, RefusedWhy.UNKNOWN_CARD, bound=False)
        else:
            self.login.record_outcome(outcome, str(identity.kind), identity.cert_sha256)
        return outcome

    def _refused(
        self,
        identity: CardIdentity,
        why: RefusedWhy,
        *,
        bound: bool = True,
        tries_left: int | None = None,
    ) -> None:
        """Record a refused login of ``identity``'s card: at its account when the card
        is bound to one (``bound``), else as the card alone."""
        account_id = None
        if bound:
            account = self.accounts.find_by_certificate(identity.cert_sha256)
            if account is not None and account.status != AccountStatus.DELETED:
                account_id = account.id
        self.login.record_refusal(
            why,
            account_id=account_id,
            card_kind=str(identity.kind),
            cert_sha256=identity.cert_sha256,
            tries_left=tries_left,
        )

    def _pin_refused(self, identity: CardIdentity, refused: WrongPin | PinBlocked) -> None:
        """A wrong or blocked PIN, recorded without the PIN. A database that cannot take
        the row does not hide the card's answer from the person: it is logged."""
        why = RefusedWhy.PIN_BLOCKED if isinstance(refused, PinBlocked) else RefusedWhy.WRONG_PIN
        tries = refused.tries_left if isinstance(refused, WrongPin) else None
        try:
            self._refused(identity, why, tries_left=tries)
        except (peewee.PeeweeException, ServiceError, DatabaseUnavailable) as exc:
            log.warning("refused login not recorded: %s", type(exc).__name__)
