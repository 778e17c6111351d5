"""Account lifecycle (docs/architecture.md, "Lifecycle"): apply, update a pending
application, reactivate by re-applying, disable, delete, card binding, consent. No
Textual here.

Every state change is one write transaction with its audit row, guarded by the
account's version column: a writer that read an old version gets a ConflictError
and nothing is written.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from peewee import SQL, fn

from card.identity import CardIdentity
from models.db import locked, retrying, write_transaction
from models.schema import (
    Account,
    AuditEvent,
    CardBinding,
    Category,
    CategoryOption,
    ConsentRecord,
    PermissionRequest,
    Unit,
    UnitCategory,
    utcnow,
)
from smis_tui.core.chars import has_hidden
from smis_tui.core.config import LANGUAGES, THEMES, Settings
from smis_tui.core.domain import AccountStatus, DisabledReason, RequestStatus, Role, RoleChoice
from smis_tui.core.identifiers import (
    IdentifierError,
    PersonId,
    parse_email,
    parse_landline,
    parse_mobile,
    parse_person_id,
)
from smis_tui.core.reasons import REASON_MAX, reason_problem
from smis_tui.services import prepared
from smis_tui.services.application_status import (
    ApplicationStatusRow,
    application_status_rows,
)
from smis_tui.services.audit import AuditLog
from smis_tui.services.card_proof import (
    CardMatch,
    CardProof,
    CardProofs,
    ProvenCard,
    card_for_account,
    card_for_new_account,
)
from smis_tui.services.crypto import KeyRing, person_id_slot
from smis_tui.services.decisions import Decision, decisions_of
from smis_tui.services.errors import ConflictError, NotAllowed, NotFound, ValidationFailed
from smis_tui.services.limits import SlidingWindow
from smis_tui.services.prepared import slot
from smis_tui.services.scope import OptionNames, UnitTree, admin_grants, is_superior_admin
from smis_tui.text import Joined, Named, Phrase
from smis_tui.text.consent import CURRENT_STATEMENT_HASHES

NAME_MAX = 64
FIELDS = (
    "person_id",
    "unit_code",
    "name",
    "phone",
    "phone_backup",
    "email",
    "email_backup",
    "mobile",
)
# The fields' labels as the messages name them (text keys ``field.*``).
FIELD_PHRASES: dict[str, Phrase] = {name: Phrase(f"field.{name}") for name in FIELDS}


def field_label(field: str, language: str = "zh_TW") -> str:
    """The label of a personal-data field in ``language`` (the key itself if unknown)."""
    phrase = FIELD_PHRASES.get(field)
    return phrase.render(language) if phrase is not None else field


@dataclass
class ApplicationForm:
    """What an applicant fills in (steps 2–5 of the source manual)."""

    person_id: str
    unit_code: str
    name: str
    phone: str
    email: str
    phone_backup: str = ""
    email_backup: str = ""
    mobile: str = ""
    roles: Mapping[str, RoleChoice] = field(default_factory=dict)
    # SHA-256 of the statement text the applicant ticked 我同意 on (the one shown, in
    # the form's language: smis_tui.text.consent.statement_sha256_for); None = not ticked.
    consent_sha256: str | None = None
    language: str = "zh_TW"


@dataclass(frozen=True)
class PersonalData:
    name: str
    phone: str
    email: str
    phone_backup: str
    email_backup: str
    mobile: str


PERSONAL_FIELDS = tuple(f.name for f in fields(PersonalData))


def personal_data_of(account: Account) -> PersonalData:
    return PersonalData(**{name: getattr(account, name) for name in PERSONAL_FIELDS})


@dataclass(frozen=True)
class CleanRole:
    category: Category
    role: Role
    option_ids: tuple[int, ...]


@dataclass(frozen=True)
class CleanApplication:
    person: PersonId
    unit: Unit
    data: PersonalData
    roles: tuple[CleanRole, ...]
    consent_sha256: str
    language: str


class StartKind:
    """What 確定 on the ID and the unit leads to. Without a card every ID gets the same
    answer, whatever its account's state, except the seed's step 10 question for an
    application under review (limited and audited, see begin_application)."""

    NEW = "new"
    UPDATE_PENDING = "update_pending"


# The audit actions of a sent application: counted for the limit per card.
APPLICATION_ACTIONS = ("apply", "reapply", "update_application")
# The window of the per-session and per-card application limits, and of step 10's.
APPLICATION_WINDOW_S = 3600.0
PENDING_LOOKUP_WINDOW_S = 600.0


class _Flooded(Exception):
    """Raised inside a write transaction so it rolls back; the flood is then audited
    in a transaction of its own."""

    def __init__(self, account: Account) -> None:
        self.account = account


@dataclass(frozen=True)
class ApplicationStart:
    kind: str
    person_id: str
    unit_code: str
    rejected: bool = False
    """The ID's last application was rejected in full: the new form says so in one
    line, so the applicant knows why they apply afresh (see begin_application)."""


@dataclass(frozen=True)
class RequestView:
    id: int
    unit_code: str
    unit_name: str
    category_code: str
    category_name: str
    role: Role
    options: tuple[str, ...]
    status: RequestStatus
    submitted_at: dt.datetime
    reason: str = ""
    category_name_en: str = ""
    category_order: int = 0
    """The category's place in the role grid (:meth:`AccountService.categories`)."""


@dataclass(frozen=True)
class CategoryView:
    """A category (subsystem) as the role grid offers it, with its sub-options."""

    code: str
    name: str
    name_en: str
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class AccountView:
    id: int
    version: int
    status: AccountStatus
    disabled_reason: str | None
    masked_id: str
    unit_code: str
    unit_name: str
    data: PersonalData
    last_login_at: dt.datetime | None
    language: str
    theme: str
    requests: tuple[RequestView, ...]
    decisions: tuple[Decision, ...] = ()
    """What was decided about the account's permissions, newest first."""

    def pending(self) -> tuple[RequestView, ...]:
        return tuple(r for r in self.requests if r.status == RequestStatus.PENDING)

    def granted(self) -> tuple[RequestView, ...]:
        return tuple(r for r in self.requests if r.status == RequestStatus.APPROVED)

    def pending_choices(self) -> dict[str, RoleChoice]:
        """Category code → the role asked for and still under review."""
        return {r.category_code: RoleChoice(r.role, r.options) for r in self.pending()}

    def current_choices(self) -> dict[str, RoleChoice]:
        """Category code → what it has now: the wish under review where there is one
        (the latest word), otherwise the granted role."""
        choices = {r.category_code: RoleChoice(r.role, r.options) for r in self.granted()}
        choices.update(self.pending_choices())
        return choices


# Field → its message (a Phrase). Typed loosely so callers may pass the plain
# dict[str, str] they used before the messages became Phrases.
Errors = dict[str, Any]


# How each personal-data field is read: required or not, and the parser of its kind
# (None: free text, at most NAME_MAX characters and nothing hidden).
_PERSONAL_RULES: dict[str, tuple[bool, Callable[..., object] | None]] = {
    "name": (True, None),
    "phone": (True, parse_landline),
    "email": (True, parse_email),
    "phone_backup": (False, parse_landline),
    "email_backup": (False, parse_email),
    "mobile": (False, parse_mobile),
}


def _clean_personal_field(name: str, value: str) -> tuple[str, Phrase | None]:
    """``value`` as it is stored, and what is wrong with it (None: nothing)."""
    required, parser = _PERSONAL_RULES[name]
    label = FIELD_PHRASES[name]
    if not value.strip():
        return "", Phrase("error.field_required", field=label) if required else None
    if parser is not None:
        try:
            return str(parser(value, field=label)), None
        except IdentifierError as exc:
            return "", exc.phrase()
    value = value.strip()
    if has_hidden(value):
        return value, Phrase("error.field_control_chars", field=label)
    if len(value) > NAME_MAX:
        return value, Phrase("error.field_too_long", field=label, limit=NAME_MAX)
    return value, None


def check_personal_field(name: str, value: str) -> Phrase | None:
    """What is wrong with one personal-data field (``name``, ``phone``, ..., a phone
    with its ``#`` extension), or None: the very rule that :meth:`AccountService.validate`
    and :meth:`AccountService.update_personal_data` apply, so a screen checking a field
    as the cursor leaves it says what the submit would say."""
    return _clean_personal_field(name, value)[1]


def clean_personal_data(data: ApplicationForm | PersonalData, errors: Errors) -> PersonalData:
    """``data`` as it is stored; each field's message goes into ``errors``."""
    values: dict[str, str] = {}
    for name in PERSONAL_FIELDS:
        values[name], problem = _clean_personal_field(name, getattr(data, name))
        if problem is not None:
            errors[name] = problem
    return PersonalData(**values)


def checked_personal_data(data: PersonalData) -> PersonalData:
    """``data`` as it is stored, or ValidationFailed with each field's message."""
    errors: Errors = {}
    clean = clean_personal_data(data, errors)
    if errors:
        raise ValidationFailed(errors)
    return clean


def clean_person_id(text: str) -> PersonId:
    try:
        return parse_person_id(text, field=FIELD_PHRASES["person_id"])
    except IdentifierError as exc:
        raise ValidationFailed({"person_id": exc.phrase()}) from None


def _find_unit(code: str, errors: Errors) -> Unit | None:
    unit = (
        prepared.first(
            "unit_by_code",
            Unit.select().where(Unit.code == slot(0)).limit(1),
            (code.strip().upper(),),
        )
        if code.strip()
        else None
    )
    if unit is None:
        errors["unit_code"] = (
            Phrase("error.unit_unknown")
            if code.strip()
            else Phrase("error.field_required", field=FIELD_PHRASES["unit_code"])
        )
        return None
    if not unit.active:
        errors["unit_code"] = Phrase("error.unit_inactive")
        return None
    return unit


def _account_by_index(index: str) -> Account | None:
    """The account of a person ID's blind index (unique), or None."""
    return prepared.first(
        "account_by_index",
        Account.select().where(Account.person_id_index == slot(0)).limit(1),
        (index,),
    )


def _category_name(category: Category) -> Named:
    return Named(category.name, category.name_en)


def clean_roles(
    unit: Unit | None, roles: Mapping[str, RoleChoice], errors: Errors
) -> tuple[CleanRole, ...]:
    if not roles:
        errors["roles"] = Phrase("error.no_role")
        return ()
    # The chosen categories (each marked whether the unit handles it) in one read and
    # their active sub-options in another, whatever the number of roles.
    # Slots: the unit (if any), then the codes; the SQL is built once per shape.
    codes = list(roles)
    query = Category.select(Category)
    first_code = 0
    if unit is not None:
        handled = UnitCategory.select(SQL("1")).where(
            (UnitCategory.unit == slot(0)) & (UnitCategory.category == Category.id)
        )
        query = Category.select(Category, fn.EXISTS(handled).alias("in_unit"))
        first_code = 1
    query = query.where(Category.code.in_([slot(first_code + i) for i in range(len(codes))]))
    found = {
        c.code: c
        for c in prepared.run(
            f"roles_categories:{first_code}:{len(codes)}",
            query,
            ([unit.id] if unit is not None else []) + codes,
        )
    }
    unit_categories = {c.id for c in found.values() if getattr(c, "in_unit", False)}
    active_options: dict[int, dict[str, int]] = {c.id: {} for c in found.values()}
    if found:
        wanted = sorted(active_options)
        for category_id, name, option_id in prepared.run(
            f"roles_options:{len(wanted)}",
            CategoryOption.select(CategoryOption.category, CategoryOption.name, CategoryOption.id)
            .where(
                CategoryOption.category.in_([slot(i) for i in range(len(wanted))])
                & CategoryOption.active
            )
            .tuples(),
            wanted,
        ):
            active_options[category_id][name] = option_id
    cleaned: list[CleanRole] = []
    messages: list[Phrase] = []
    for code, choice in roles.items():
        category = found.get(code)
        if category is None:
            messages.append(Phrase("error.category_unknown", category=code))
            continue
        try:
            role = Role(choice.role)
        except ValueError:
            messages.append(Phrase("error.role_unknown", category=_category_name(category)))
            continue
        if unit is not None and category.id not in unit_categories:
            messages.append(
                Phrase(
                    "error.category_not_in_unit",
                    category=_category_name(category),
                    no_business=Phrase("apply.no_business"),
                )
            )
            continue
        options = active_options[category.id]
        chosen = tuple(dict.fromkeys(choice.options))
        if options and not chosen:
            messages.append(Phrase("error.options_required", category=_category_name(category)))
            continue
        if not options and chosen:
            messages.append(Phrase("error.options_not_allowed", category=_category_name(category)))
            continue
        if any(name not in options for name in chosen):
            messages.append(Phrase("error.option_unknown", category=_category_name(category)))
            continue
        cleaned.append(CleanRole(category, role, tuple(sorted(options[n] for n in chosen))))
    if messages:
        errors["roles"] = messages[0] if len(messages) == 1 else Joined(messages)
    return tuple(sorted(cleaned, key=lambda r: r.category.sort_order))


class AccountService:
    def __init__(
        self,
        settings: Settings,
        keys: KeyRing,
        audit: AuditLog,
        proofs: CardProofs | None = None,
    ) -> None:
        """``proofs``: the card proofs the card login service issues; every change to
        an account redeems one (smis_tui.services.card_proof)."""
        self.settings = settings
        self.keys = keys
        self.audit = audit
        self.proofs = proofs or CardProofs()
        # This process is one kiosk seat or one SSH session.
        self.session_label = f"kiosk {socket.gethostname()}:{os.getpid()}"
        self.session_applications = SlidingWindow(
            settings.applications_per_session_hour, APPLICATION_WINDOW_S
        )
        self.pending_lookups = SlidingWindow(
            settings.pending_lookups_per_session, PENDING_LOOKUP_WINDOW_S
        )

    # ----- look-ups -------------------------------------------------------------

    def find_by_person_id(self, person_id: str) -> Account | None:
        person = clean_person_id(person_id)
        return _account_by_index(self.keys.blind_index(person.value))

    def find_by_certificate(self, cert_sha256: str) -> Account | None:
        binding = CardBinding.get_or_none(CardBinding.cert_sha256 == cert_sha256.lower())
        return binding.account if binding is not None else None

    def person_id_for(self, account_id: int) -> str:
        account = Account.get_or_none(Account.id == account_id)
        if account is None:
            raise NotFound("error.account_not_found")
        return self.person_id_of(account)

    def person_id_of(self, account: Account) -> str:
        if account.person_id_cipher is None:
            raise NotFound("error.account_deleted")
        return self.keys.decrypt(account.person_id_cipher, person_id_slot(account.id))

    def seal_person_id(self, account: Account, person_id: str) -> None:
        """Store the encrypted ``person_id`` of an account just inserted, in the insert's
        transaction: the ciphertext is bound to the row's id, known only after the insert."""
        cipher = self.keys.encrypt(person_id, person_id_slot(account.id))
        prepared.rows_changed(
            "seal_person_id",
            Account.update(person_id_cipher=slot(0)).where(Account.id == slot(1)),
            (Account.person_id_cipher.db_value(cipher), account.id),
        )
        account.person_id_cipher = cipher

    def view(self, account_id: int) -> AccountView:
        account = Account.get_or_none(Account.id == account_id)
        if account is None:
            raise NotFound("error.account_not_found")
        option_names = OptionNames()
        requests = (
            PermissionRequest.select(PermissionRequest, Unit, Category)
            .join(Unit, on=PermissionRequest.unit == Unit.id)
            .switch(PermissionRequest)
            .join(Category)
            .where(PermissionRequest.account == account)
            .order_by(PermissionRequest.submitted_at, Category.sort_order)
        )
        return AccountView(
            id=account.id,
            version=account.version,
            status=AccountStatus(account.status),
            disabled_reason=account.disabled_reason,
            masked_id=account.person_id_masked,
            unit_code=account.unit.code,
            unit_name=account.unit.name,
            data=personal_data_of(account),
            last_login_at=account.last_login_at,
            language=account.language,
            theme=account.theme,
            requests=tuple(
                RequestView(
                    id=r.id,
                    unit_code=r.unit.code,
                    unit_name=r.unit.name,
                    category_code=r.category.code,
                    category_name=r.category.name,
                    category_name_en=r.category.name_en,
                    category_order=r.category.sort_order,
                    role=Role(r.role),
                    options=option_names.of(r.option_ids),
                    status=RequestStatus(r.status),
                    submitted_at=r.submitted_at,
                    reason=r.reason,
                )
                for r in requests
            ),
            decisions=decisions_of(account.id),
        )

    @staticmethod
    def categories() -> tuple[CategoryView, ...]:
        """Every category in the role grid's order, each with its active sub-options."""
        options: dict[int, list[str]] = {}
        for option in (
            CategoryOption.select()
            .where(CategoryOption.active)
            .order_by(CategoryOption.sort_order, CategoryOption.id)
        ):
            options.setdefault(option.category_id, []).append(option.name)
        return tuple(
            CategoryView(c.code, c.name, c.name_en, tuple(options.get(c.id, ())))
            for c in Category.select().order_by(Category.sort_order)
        )

    # ----- applying -------------------------------------------------------------

    def begin_application(self, person_id: str, unit_code: str) -> ApplicationStart:
        """Steps 2–4 and 9–10: the ID and the unit. Every ID gets the same answer —
        go on to the form — whether it has no account, an active or a disabled one:
        only the card at 送出申請 may learn more. The one exception is the seed's own
        step 10 (您有申請中的權限，是否確定更新申請？), which needs no card: it is
        limited per kiosk session, counting every look-up whatever its answer (a
        refusal only for pending IDs would tell the same), and audited. An application
        whose every request was rejected is its other side and is told the same way:
        a fresh form, with one line saying the last application was rejected (never
        the reviewer's reason, which only the applicant's card may read at login)."""
        errors: Errors = {}
        try:
            person = clean_person_id(person_id)
        except ValidationFailed as exc:
            errors.update(exc.messages)
            person = None
        unit = _find_unit(unit_code, errors)
        if errors or person is None or unit is None:
            raise ValidationFailed(errors)
        self._take_pending_lookup()
        account = _account_by_index(self.keys.blind_index(person.value))
        if account is not None and account.status == AccountStatus.PENDING:
            if self._has_pending(account.id):
                self._record_pending_lookup(account)
                return ApplicationStart(StartKind.UPDATE_PENDING, person.value, unit.code)
            # Every request rejected: the seed's step 10 answers "under review" here
            # and would keep the applicant waiting for nobody. Said like step 10's
            # answer (same look-up limit, audited); the reason stays for their card.
            self._record_pending_lookup(account, "rejected_lookup")
            return ApplicationStart(StartKind.NEW, person.value, unit.code, rejected=True)
        return ApplicationStart(StartKind.NEW, person.value, unit.code)

    def _take_pending_lookup(self) -> None:
        if not self.pending_lookups.take():
            self._record_flood("pending_lookup_limited", None, "session")
            raise NotAllowed(
                "error.lookup_too_often", minutes=self.pending_lookups.minutes_to_wait()
            )

    def _record_pending_lookup(self, account: Account, action: str = "pending_lookup") -> None:
        def run() -> None:
            with write_transaction():
                self.audit.record(
                    action,
                    actor=None,
                    actor_label=self.session_label,
                    target_type="account",
                    target_id=account.id,
                    unit=account.unit_id,
                )

        retrying(run)

    def _record_flood(self, action: str, account: Account | None, scope: str) -> None:
        """A refused flood, for the CDC 管理者's 軌跡紀錄."""

        def run() -> None:
            with write_transaction():
                self.audit.record(
                    action,
                    actor=None,
                    actor_label=self.session_label,
                    target_type="account" if account is not None else "session",
                    target_id=account.id if account is not None else "",
                    unit=account.unit_id if account is not None else None,
                    details={"scope": scope},
                )

        retrying(run)

    def _check_card_flood(self, account: Account) -> None:
        """The card's account sent too many applications within the hour (inside the
        write transaction: raises _Flooded to roll it back)."""
        since = utcnow() - dt.timedelta(seconds=APPLICATION_WINDOW_S)
        sent = (
            AuditEvent.select()
            .where(
                (AuditEvent.actor == account.id)
                & AuditEvent.action.in_(APPLICATION_ACTIONS)
                & (AuditEvent.at >= since)
            )
            .count()
        )
        if sent >= self.settings.applications_per_card_hour:
            raise _Flooded(account)

    def _take_session_application(self) -> None:
        if not self.session_applications.take():
            self._record_flood("apply_limited", None, "session")
            raise NotAllowed(
                "error.apply_too_often_session",
                minutes=self.session_applications.minutes_to_wait(),
            )

    def _sent(self, write: Callable[[], int]) -> int:
        """Run one application write; a flood from its card is audited and refused."""
        try:
            return retrying(write)
        except _Flooded as flood:
            self._record_flood("apply_limited", flood.account, "card")
            raise NotAllowed("error.apply_too_often_card", minutes=60) from None

    def validate(self, form: ApplicationForm) -> CleanApplication:
        errors: Errors = {}
        person: PersonId | None = None
        try:
            person = clean_person_id(form.person_id)
        except ValidationFailed as exc:
            errors.update(exc.messages)
        unit = _find_unit(form.unit_code, errors)
        data = clean_personal_data(form, errors)
        roles = clean_roles(unit, form.roles, errors)
        if form.consent_sha256 is None:
            errors["consent"] = Phrase("error.consent_required")
        elif form.consent_sha256 not in CURRENT_STATEMENT_HASHES:
            errors["consent"] = Phrase("error.consent_outdated")
        if errors or person is None or unit is None or form.consent_sha256 is None:
            raise ValidationFailed(errors)
        # The record keeps the hash of the statement the applicant was shown (the
        # zh-TW original or its English translation, see smis_tui.text.consent).
        return CleanApplication(person, unit, data, roles, form.consent_sha256, form.language)

    def apply(self, form: ApplicationForm, proof: CardProof | None) -> int:
        """新帳號申請, or a disabled account's holder applying again; returns the account
        id. ``proof``: the applicant's card, proved at 送出申請 (or at the login that
        found the account disabled). It must stand for the ID (card_proof's rule) and
        is bound to the account with the application; the reviewer sees how it
        matched."""
        clean = self.validate(form)
        identity = self.proofs.identity(proof)
        self._take_session_application()
        account_id = self._sent(lambda: self._apply(clean, identity))
        self.proofs.forget(proof)
        return account_id

    def _apply(self, clean: CleanApplication, identity: CardIdentity) -> int:
        index = self.keys.blind_index(clean.person.value)
        with write_transaction():
            account = prepared.first(
                "account_by_index",
                locked(Account.select().where(Account.person_id_index == slot(0)).limit(1)),
                (index,),
            )
            now = utcnow()
            if account is None:
                card = card_for_new_account(identity, clean.person.value, clean.data.name)
                (account,) = prepared.insert(
                    Account,
                    [
                        {
                            "person_id_cipher": None,
                            "person_id_index": index,
                            "person_id_masked": clean.person.masked(),
                            "person_id_kind": str(clean.person.kind),
                            "unit": clean.unit,
                            "status": AccountStatus.PENDING,
                            "language": clean.language,
                            "created_at": now,
                            "updated_at": now,
                            **vars(clean.data),
                        }
                    ],
                )
                self.seal_person_id(account, clean.person.value)
                action = "apply"
            else:
                # The card first: only its holder may learn the account's state.
                card = card_for_account(identity, account, clean.person.value)
                status = AccountStatus(account.status)
                if status == AccountStatus.ACTIVE:
                    raise NotAllowed("error.account_active")
                if status == AccountStatus.PENDING and self._has_pending(account.id):
                    raise NotAllowed("error.account_pending")
                self._check_card_flood(account)
                account = self._write_account(
                    account,
                    account.version,
                    unit=clean.unit,
                    status=AccountStatus.PENDING,
                    disabled_reason=None,
                    language=clean.language,
                    **vars(clean.data),
                )
                action = "reapply"
            self._bind_proven(account, card)
            self._insert_requests(account, clean, now)
            prepared.insert(
                ConsentRecord,
                [
                    {
                        "account": account,
                        "statement_sha256": clean.consent_sha256,
                        "accepted_at": now,
                    }
                ],
            )
            self._audit(
                action,
                account,
                account,
                {
                    "revision": account.version,
                    "roles": self._roles_detail(clean.roles),
                    "card": card.detail(),
                },
            )
            return int(account.id)

    def _bind_proven(self, account: Account, card: ProvenCard) -> None:
        """The card that just stood for ``account`` is bound to it (in the caller's
        transaction), so it logs in once the application is approved."""
        if card.match == CardMatch.BOUND:
            return
        prepared.insert(
            CardBinding,
            [{"account": account, "cert_sha256": card.cert_sha256, "card_kind": card.kind}],
        )
        self._audit("bind_card", account, account, card.detail())

    def previous_data(self, proof: CardProof | None, person_id: str) -> PersonalData | None:
        """What a disabled or rejected account's holder sent last time, to fill the form
        of their new application with — only for the card that stands for the account.
        None in every other case alike (no account, another card, an active account or
        one under review), so the answer tells nobody anything."""
        identity = self.proofs.identity(proof)
        person = clean_person_id(person_id)
        account = _account_by_index(self.keys.blind_index(person.value))
        if account is None:
            return None
        try:
            card_for_account(identity, account, person.value)
        except NotAllowed:
            return None
        status = AccountStatus(account.status)
        if status == AccountStatus.ACTIVE or self._has_pending(account.id):
            return None
        if status not in (AccountStatus.DISABLED, AccountStatus.PENDING):
            return None
        return personal_data_of(account)

    def pending_application(self, proof: CardProof | None, person_id: str) -> AccountView:
        """Step 12: the application under review, to fill 更新申請權限 with — shown
        only to the card that stands for the ID (step 11)."""
        identity = self.proofs.identity(proof)
        person = clean_person_id(person_id)
        # A look-up by a typed ID like step 10's: counted in the same window, so one
        # card cannot try IDs sharing its last 4 digits at leisure.
        self._take_pending_lookup()
        account = _account_by_index(self.keys.blind_index(person.value))
        if account is None:
            raise NotAllowed("error.account_not_pending")
        card_for_account(identity, account, person.value)
        if account.status != AccountStatus.PENDING or not self._has_pending(account.id):
            raise NotAllowed("error.account_not_pending")
        return self.view(account.id)

    def application_status(self, proof: CardProof | None) -> tuple[ApplicationStatusRow, ...]:
        """The applicant's own requests at login (申請審核中): each one's status and the
        unit whose 管理者 decides it. Only for the card bound to the account — the card
        that sent the application or has logged in to it — so no ID typed in, nor a card
        merely carrying the same ID, shows anyone's application."""
        identity = self.proofs.identity(proof)
        account = self.find_by_certificate(identity.cert_sha256)
        if account is None or account.status == AccountStatus.DELETED:
            raise NotAllowed("error.account_not_found")
        card_for_account(identity, account, self.person_id_of(account))
        return application_status_rows(account.id)

    def update_pending(
        self, form: ApplicationForm, expected_version: int, proof: CardProof | None
    ) -> int:
        """更新申請權限: replaces the pending requests and the personal data.
        ``proof``: the applicant's card (step 11), standing for the ID;
        ``expected_version`` is the version the applicant's screen was filled from."""
        clean = self.validate(form)
        identity = self.proofs.identity(proof)
        self._take_session_application()
        account_id = self._sent(lambda: self._update_pending(clean, expected_version, identity))
        self.proofs.forget(proof)
        return account_id

    def _update_pending(
        self, clean: CleanApplication, expected_version: int, identity: CardIdentity
    ) -> int:
        index = self.keys.blind_index(clean.person.value)
        with write_transaction():
            account = prepared.first(
                "account_by_index",
                locked(Account.select().where(Account.person_id_index == slot(0)).limit(1)),
                (index,),
            )
            if account is None:
                raise NotAllowed("error.account_not_pending")
            card = card_for_account(identity, account, clean.person.value)
            if account.status != AccountStatus.PENDING or not self._has_pending(account.id):
                raise NotAllowed("error.account_not_pending")
            self._check_card_flood(account)
            now = utcnow()
            account = self._write_account(
                account,
                expected_version,
                unit=clean.unit,
                language=clean.language,
                **vars(clean.data),
            )
            superseded = (
                PermissionRequest.update(status=RequestStatus.SUPERSEDED, decided_at=now)
                .where(
                    (PermissionRequest.account == account)
                    & (PermissionRequest.status == RequestStatus.PENDING)
                )
                .execute()
            )
            self._bind_proven(account, card)
            self._insert_requests(account, clean, now)
            prepared.insert(
                ConsentRecord,
                [
                    {
                        "account": account,
                        "statement_sha256": clean.consent_sha256,
                        "accepted_at": now,
                    }
                ],
            )
            self._audit(
                "update_application",
                account,
                account,
                {
                    "revision": account.version,
                    "superseded": superseded,
                    "roles": self._roles_detail(clean.roles),
                    "card": card.detail(),
                },
            )
            return int(account.id)

    def confirm_owner(self, account_id: int, proof: CardProof | None) -> None:
        """身份驗證 in 個人資料維護: the card stands for the account, or NotAllowed.
        Writes nothing; each change checks its card again in its own transaction."""
        self.prove_owner(self._live_account(account_id), proof)

    def prove_owner(self, account: Account, proof: CardProof | None) -> ProvenCard:
        """The card behind a change in 個人資料維護 stands for the logged-in account
        (inside the change's transaction, so no screen can skip it)."""
        identity = self.proofs.identity(proof)
        return card_for_account(identity, account, self.person_id_of(account))

    def _audit(
        self,
        action: str,
        account: Account,
        actor: Account | None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """The audit row of a change to ``account``; ``actor`` None is the system."""
        self.audit.record(
            action,
            actor=actor,
            actor_label=None if actor is not None else "system",
            target_type="account",
            target_id=account.id,
            unit=account.unit_id,
            details=details,
        )

    def _has_pending(self, account_id: int) -> bool:
        found = prepared.first(
            "has_pending",
            PermissionRequest.select(SQL("1"))
            .where(
                (PermissionRequest.account == slot(0))
                & (PermissionRequest.status == RequestStatus.PENDING)
            )
            .limit(1)
            .tuples(),
            (account_id,),
        )
        return found is not None

    def _insert_requests(self, account: Account, clean: CleanApplication, now: dt.datetime) -> None:
        prepared.insert(
            PermissionRequest,
            [
                {
                    "account": account.id,
                    "unit": clean.unit.id,
                    "category": role.category.id,
                    "role": str(role.role),
                    "option_ids": ",".join(str(i) for i in role.option_ids),
                    "status": RequestStatus.PENDING,
                    "revision": account.version,
                    "submitted_at": now,
                }
                for role in clean.roles
            ],
        )

    @staticmethod
    def _roles_detail(roles: tuple[CleanRole, ...]) -> list[list[object]]:
        return [[r.category.code, str(r.role), list(r.option_ids)] for r in roles]

    def _write_account(self, account: Account, expected_version: int, **changes: Any) -> Account:
        """Apply ``changes`` only if nobody wrote the account since ``expected_version``."""
        changes["updated_at"] = utcnow()
        written = (
            Account.update(version=Account.version + 1, **changes)
            .where((Account.id == account.id) & (Account.version == expected_version))
            .execute()
        )
        fresh: Account = prepared.get(
            "account_by_id", Account.select().where(Account.id == slot(0)).limit(1), (account.id,)
        )
        if written != 1:
            raise ConflictError(
                "error.conflict_account", expected=expected_version, found=fresh.version
            )
        return fresh

    # ----- personal data (個人資料維護) ---------------------------------------------

    def update_personal_data(
        self,
        account_id: int,
        expected_version: int,
        data: PersonalData,
        proof: CardProof | None,
    ) -> None:
        clean = checked_personal_data(data)

        def run() -> None:
            with write_transaction():
                account = self._live_account(account_id)
                self.prove_owner(account, proof)
                self._write_account(account, expected_version, **vars(clean))
                self._audit(
                    "update_personal_data",
                    account,
                    account,
                    {
                        "fields": sorted(
                            k for k, v in vars(clean).items() if getattr(account, k) != v
                        )
                    },
                )

        retrying(run)

    # ----- permission changes (權限異動申請) -------------------------------------------

    def request_changes(
        self,
        account_id: int,
        roles: Mapping[str, RoleChoice],
        expected_version: int,
        proof: CardProof | None,
    ) -> tuple[int, ...]:
        """權限異動申請 of an active account: a role in a new category, or another role
        (or other sub-options) in a granted one. Returns the new requests' ids.

        ``roles`` maps category code → the wanted role; categories left out are not
        touched (giving a permission up is :meth:`give_up_permission`). A wish equal to
        what the category has now is no change. A new wish replaces the category's
        earlier pending one; wishing the granted role back withdraws that pending one.
        The new requests go to the review queue like an application's, and approving
        one replaces the granted request of its category (ReviewService). Nothing at
        all to change is a ValidationFailed on ``roles``.
        """
        return retrying(
            lambda: self._request_changes(account_id, dict(roles), expected_version, proof)
        )

    def _request_changes(
        self,
        account_id: int,
        roles: dict[str, RoleChoice],
        expected_version: int,
        proof: CardProof | None,
    ) -> tuple[int, ...]:
        with write_transaction():
            account = self._live_account(account_id)
            self.prove_owner(account, proof)
            if account.status != AccountStatus.ACTIVE:
                raise NotAllowed("profile.error_not_active")
            unit: Unit = account.unit
            errors: Errors = {}
            if not roles:
                raise ValidationFailed({"roles": Phrase("profile.error_no_change")})
            if not unit.active:
                raise ValidationFailed({"roles": Phrase("error.unit_inactive")})
            wanted = clean_roles(unit, roles, errors)
            if errors:
                raise ValidationFailed(errors)
            granted: dict[int, tuple[str, str]] = {}
            pending: dict[int, list[PermissionRequest]] = {}
            for request in PermissionRequest.select().where(
                (PermissionRequest.account == account.id)
                & PermissionRequest.status.in_([RequestStatus.APPROVED, RequestStatus.PENDING])
            ):
                if request.status == RequestStatus.APPROVED:
                    granted[request.category_id] = (request.role, request.option_ids)
                else:
                    pending.setdefault(request.category_id, []).append(request)
            new: list[CleanRole] = []
            replaced: list[int] = []
            for role in wanted:
                key = (str(role.role), ",".join(str(i) for i in role.option_ids))
                open_requests = pending.get(role.category.id, [])
                if any((r.role, r.option_ids) == key for r in open_requests):
                    continue  # already asked for, under review
                if not open_requests and granted.get(role.category.id) == key:
                    continue  # already granted
                replaced += [r.id for r in open_requests]
                if granted.get(role.category.id) != key:
                    new.append(role)
            if not new and not replaced:
                raise ValidationFailed({"roles": Phrase("profile.error_no_change")})
            account = self._write_account(account, expected_version)
            now = utcnow()
            if replaced:
                PermissionRequest.update(
                    status=RequestStatus.SUPERSEDED, decided_at=now, reason="changed"
                ).where(
                    PermissionRequest.id.in_(replaced)
                    & (PermissionRequest.status == RequestStatus.PENDING)
                ).execute()
            created = tuple(
                int(
                    PermissionRequest.create(
                        account=account.id,
                        unit=unit.id,
                        category=role.category.id,
                        role=str(role.role),
                        option_ids=",".join(str(i) for i in role.option_ids),
                        status=RequestStatus.PENDING,
                        revision=account.version,
                        submitted_at=now,
                    ).id
                )
                for role in new
            )
            self._audit(
                "request_changes",
                account,
                account,
                {
                    "revision": account.version,
                    "requests": list(created),
                    "replaced": replaced,
                    "roles": self._roles_detail(tuple(new)),
                },
            )
            return created

    def withdraw_request(
        self, account_id: int, request_id: int, expected_version: int, proof: CardProof | None
    ) -> None:
        """Take back one of the account's own requests still under review."""

        def run() -> None:
            with write_transaction():
                account = self._live_account(account_id)
                self.prove_owner(account, proof)
                if account.status != AccountStatus.ACTIVE:
                    raise NotAllowed("profile.error_not_active")
                account = self._write_account(account, expected_version)
                changed = (
                    PermissionRequest.update(
                        status=RequestStatus.SUPERSEDED, decided_at=utcnow(), reason="withdrawn"
                    )
                    .where(
                        (PermissionRequest.id == request_id)
                        & (PermissionRequest.account == account.id)
                        & (PermissionRequest.status == RequestStatus.PENDING)
                    )
                    .execute()
                )
                if changed != 1:
                    raise NotFound("profile.error_request_not_pending")
                self.audit.record(
                    "withdraw_request",
                    actor=account,
                    target_type="permission",
                    target_id=request_id,
                    unit=account.unit_id,
                )

        retrying(run)

    def _live_account(self, account_id: int, share: bool = False) -> Account:
        """The account, not deleted; locked for the change when read in one (``share``:
        the account acting on another, which only must not change meanwhile)."""
        account = locked(Account.select().where(Account.id == account_id), share).first()
        if account is None:
            raise NotFound("error.account_not_found")
        if account.status == AccountStatus.DELETED:
            raise NotAllowed("error.account_deleted")
        return account

    # ----- disabling and deleting ----------------------------------------------

    def _disable(
        self,
        account: Account,
        expected_version: int,
        reason: DisabledReason,
        actor: Account | None,
        note: str = "",
    ) -> None:
        now = utcnow()
        self._write_account(
            account,
            expected_version,
            status=AccountStatus.DISABLED,
            disabled_reason=str(reason),
            disabled_at=now,
        )
        # Each permission withdrawn names who withdrew it (a superior unit's 管理者, or
        # nobody), not who once approved it: its holder is told which unit withdrew it
        # (smis_tui.services.decisions).
        by = actor.id if reason == DisabledReason.SUPERIOR and actor is not None else None
        revoked = self._withdraw_all(account.id, now, note or str(reason), by)
        self._audit(
            "disable_account",
            account,
            actor,
            {"reason": str(reason), "note": note, "revoked": revoked},
        )

    @staticmethod
    def _withdraw_all(account_id: int, now: dt.datetime, note: str, by: int | None = None) -> int:
        revoked = (
            PermissionRequest.update(
                status=RequestStatus.REVOKED, decided_at=now, reason=note, reviewer=by
            )
            .where(
                (PermissionRequest.account == account_id)
                & (PermissionRequest.status == RequestStatus.APPROVED)
            )
            .execute()
        )
        PermissionRequest.update(status=RequestStatus.SUPERSEDED, decided_at=now).where(
            (PermissionRequest.account == account_id)
            & (PermissionRequest.status == RequestStatus.PENDING)
        ).execute()
        return int(revoked)

    def disable_self(self, account_id: int, expected_version: int, proof: CardProof | None) -> None:
        """停用帳號: the user turns off all their permissions."""

        def run() -> None:
            with write_transaction():
                account = self._live_account(account_id)
                self.prove_owner(account, proof)
                self._disable(account, expected_version, DisabledReason.SELF, account)

        retrying(run)

    def disable_by_superior(
        self, actor_id: int, account_id: int, expected_version: int, reason: str
    ) -> None:
        problem = reason_problem(reason)
        if problem is not None:
            raise ValidationFailed({"reason": Phrase(problem.value, limit=REASON_MAX)})
        note = reason.strip()

        def run() -> None:
            with write_transaction():
                actor = self._live_account(actor_id, share=True)
                account = self._live_account(account_id)
                if not is_superior_admin(admin_grants(actor.id), UnitTree(), account.unit_id):
                    raise NotAllowed("error.not_superior")
                self._disable(account, expected_version, DisabledReason.SUPERIOR, actor, note)

        retrying(run)

    def disable_withdrawn(self, account_id: int, expected_version: int, note: str) -> None:
        """The account whose last permission the system withdrew (an access review's
        default after its deadline): disabled as from a superior unit, by nobody, in
        the caller's write transaction."""
        with write_transaction():
            account = self._live_account(account_id)
            self._disable(account, expected_version, DisabledReason.SUPERIOR, None, note)

    def give_up_permission(
        self, account_id: int, request_id: int, expected_version: int, proof: CardProof | None
    ) -> None:
        """Drop one granted permission; dropping the last one disables the account
        (the seed's 自行停用所有系統權限)."""

        def run() -> None:
            with write_transaction():
                account = self._live_account(account_id)
                self.prove_owner(account, proof)
                now = utcnow()
                changed = (
                    PermissionRequest.update(
                        status=RequestStatus.REVOKED, decided_at=now, reason="self", reviewer=None
                    )
                    .where(
                        (PermissionRequest.id == request_id)
                        & (PermissionRequest.account == account.id)
                        & (PermissionRequest.status == RequestStatus.APPROVED)
                    )
                    .execute()
                )
                if changed != 1:
                    raise NotFound("error.permission_not_found")
                remaining = (
                    PermissionRequest.select()
                    .where(
                        (PermissionRequest.account == account.id)
                        & (PermissionRequest.status == RequestStatus.APPROVED)
                    )
                    .exists()
                )
                self.audit.record(
                    "give_up_permission",
                    actor=account,
                    target_type="permission",
                    target_id=request_id,
                    unit=account.unit_id,
                )
                if remaining:
                    self._write_account(account, expected_version)
                else:
                    self._disable(account, expected_version, DisabledReason.SELF, account)

        retrying(run)

    def delete_account(
        self, account_id: int, expected_version: int, proof: CardProof | None
    ) -> None:
        """申請刪除帳號: personal data erased; the masked ID and the audit trail stay."""

        def run() -> None:
            with write_transaction():
                account = self._live_account(account_id)
                self.prove_owner(account, proof)
                now = utcnow()
                revoked = self._withdraw_all(account.id, now, "deleted")
                self._write_account(
                    account,
                    expected_version,
                    status=AccountStatus.DELETED,
                    person_id_cipher=None,
                    person_id_index=None,
                    name="",
                    phone="",
                    phone_backup="",
                    email="",
                    email_backup="",
                    mobile="",
                    disabled_at=now,
                )
                cards = CardBinding.delete().where(CardBinding.account == account.id).execute()
                self._audit(
                    "delete_account",
                    account,
                    account,
                    {"revoked": revoked, "cards_unbound": cards},
                )

        retrying(run)

    # ----- inactivity (the 180-day rule) -----------------------------------------

    def inactivity_cutoff(
        self, now: dt.datetime | None = None, days: int | None = None
    ) -> dt.datetime:
        return (now or utcnow()) - dt.timedelta(days=days or self.settings.inactive_days)

    def _inactive_query(self, cutoff: dt.datetime) -> Any:
        last = Account.last_login_at
        activated = Account.activated_at
        # The later of the last login and the activation counts (a reactivated account
        # starts afresh). Written without COALESCE/GREATEST so both backends compare
        # timestamps, not strings.
        return Account.select().where(
            (Account.status == AccountStatus.ACTIVE)
            & (last.is_null() | (last < cutoff))
            & (activated.is_null() | (activated < cutoff))
            & (last.is_null(False) | activated.is_null(False) | (Account.created_at < cutoff))
        )

    def is_inactive(self, account: Account, now: dt.datetime | None = None) -> bool:
        seen = [d for d in (account.last_login_at, account.activated_at) if d is not None]
        last = max(seen) if seen else account.created_at
        return bool(last < self.inactivity_cutoff(now))

    def run_maintenance(self, now: dt.datetime | None = None) -> int:
        """Disable every active account past the inactivity limit. Idempotent."""
        cutoff = self.inactivity_cutoff(now)
        disabled = 0
        for account_id in [a.id for a in self._inactive_query(cutoff)]:

            def run(account_id: int = account_id) -> bool:
                with write_transaction():
                    account = locked(Account.select().where(Account.id == account_id)).get()
                    if account.status != AccountStatus.ACTIVE or not self.is_inactive(account, now):
                        return False
                    self._disable(
                        account,
                        account.version,
                        DisabledReason.INACTIVE,
                        None,
                        f"{self.settings.inactive_days} 天未登入",
                    )
                    return True

            disabled += retrying(run)
        return disabled

    def inactive_below(self, actor_id: int, days: int | None = None) -> list[Account]:
        """Accounts under the actor's superior units with no login for ``days`` days."""
        grants = admin_grants(actor_id)
        tree = UnitTree()
        cutoff = self.inactivity_cutoff(days=days or self.settings.inactive_warning_days)
        return [
            account
            for account in self._inactive_query(cutoff).order_by(Account.last_login_at)
            if is_superior_admin(grants, tree, account.unit_id)
        ]

    # ----- cards ------------------------------------------------------------------

    def set_language(self, account_id: int, language: str) -> None:
        """The account's own language (zh_TW or en), used from its next screen on.
        A preference, not account data: no version bump, so no open form goes stale."""
        if language not in LANGUAGES:
            raise NotAllowed("error.language_unknown")

        def run() -> None:
            with write_transaction():
                account = self._live_account(account_id)
                if account.language == language:
                    return
                Account.update(language=language).where(Account.id == account.id).execute()
                self._audit(
                    "set_language",
                    account,
                    account,
                    {"language": language, "previous": account.language},
                )

        retrying(run)

    def set_theme(self, account_id: int, theme: str) -> None:
        """The account's own colours (THEMES), from its next screen on: a preference
        like the language (no version bump)."""
        if theme not in THEMES:
            raise NotAllowed("error.theme_unknown")

        def run() -> None:
            with write_transaction():
                account = self._live_account(account_id)
                if account.theme == theme:
                    return
                Account.update(theme=theme).where(Account.id == account.id).execute()
                self._audit(
                    "set_theme", account, account, {"theme": theme, "previous": account.theme}
                )

        retrying(run)

    def bind_card(self, account_id: int, cert_sha256: str, card_kind: str) -> None:
        cert_sha256 = cert_sha256.lower()

        def run() -> None:
            with write_transaction():
                account = self._live_account(account_id)
                existing = CardBinding.get_or_none(CardBinding.cert_sha256 == cert_sha256)
                if existing is not None:
                    if existing.account_id != account.id:
                        raise NotAllowed("error.card_bound_elsewhere")
                    return
                CardBinding.create(account=account, cert_sha256=cert_sha256, card_kind=card_kind)
                self._audit(
                    "bind_card",
                    account,
                    account,
                    {"cert_sha256": cert_sha256, "card_kind": card_kind},
                )

        retrying(run)
