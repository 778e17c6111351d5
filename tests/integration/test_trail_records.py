"""軌跡紀錄 says what happened (issue 20, items 7 and 6), on SQLite and PostgreSQL:
refused logins are recorded without the PIN or any part of a person ID, and never
tell more about a typed ID than the screen did; rows name people, categories, roles
and the change in words; a CDC 管理者 alone exports a search as CSV, written safely."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from card.errors import PinBlocked, WrongPin
from card.sim.inprocess import InProcessBackend
from card.sim.testpki import TestPki, make_test_pki
from card.validation import CertificateValidator
from models.schema import Account, AuditEvent, Role, Unit, UnitKind
from smis_tui.services import Services, trail_export
from smis_tui.services.accounts import RoleChoice
from smis_tui.services.audit import TrailQuery
from smis_tui.services.auth import CARD_PREFIX
from smis_tui.services.card_login import CardLoginService
from smis_tui.services.errors import NotAllowed
from smis_tui.services.trail_export import EXPORT_DIR, ExportPlaceUnsafe, neutralise
from tests.helpers import (
    apply_for,
    approved_applicant,
    card_proof,
    form,
    make_admin,
    new_person_id,
    send_application,
    unit_of_kind,
)
from tests.integration.test_card_login import PIN, READER, approved_account, insert
from tests.integration.test_remote_login import READER as REMOTE_READER
from tests.integration.test_remote_login import FakeAgent
from tests.integration.test_remote_login import kiosk as remote_kiosk

WRONG_PIN = "864209"


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


def _refusals(after: int = 0) -> list[AuditEvent]:
    return list(
        AuditEvent.select()
        .where((AuditEvent.action == "login_refused") & (AuditEvent.id > after))
        .order_by(AuditEvent.id)
    )


def _last_id() -> int:
    return AuditEvent.select(AuditEvent.id).order_by(AuditEvent.id.desc()).scalar() or 0


def _row_text(event: AuditEvent) -> str:
    """The row's words with the two that are known not to be personal masked: the
    seat's label (its host name and process number) and the card's fingerprint start.
    Their digits would otherwise match a run of a random ID now and then."""
    text = " ".join(
        str(v) for v in (event.actor_label, event.target_type, event.target_id, event.details)
    )
    seat = event.actor_label or ""
    assert seat.startswith("kiosk ") or seat == "", seat
    card = json.loads(event.details or "{}").get("card")
    masked = text.replace(seat, "<seat>") if seat else text
    if card is not None:
        assert len(card) == CARD_PREFIX and set(card) <= set("0123456789abcdef"), card
        masked = masked.replace(card, "<card>")
    return masked


def _id_runs(person_id: str) -> set[str]:
    """Every run of four or more of the ID's digits: no row may hold one."""
    tail = person_id[1:]
    return {tail[i:j] for i in range(len(tail)) for j in range(i + 4, len(tail) + 1)}


# ----------------------------------------------------------------- refused logins


def test_wrong_and_blocked_pins_are_recorded_at_the_account_without_the_pin(
    services: Services, cards: CardLoginService, backend: InProcessBackend, pki: TestPki
) -> None:
    user = pki.user("moica")
    account_id = approved_account(services, user.person_id)
    insert(backend, user)
    first = cards.authenticate(READER, PIN)
    assert first.needs_person_id is not None
    cards.bind(first.needs_person_id, user.person_id)
    before = _last_id()
    for _ in range(2):
        with pytest.raises(WrongPin):
            cards.authenticate(READER, WRONG_PIN)
    with pytest.raises(PinBlocked):
        cards.authenticate(READER, WRONG_PIN)
    rows = _refusals(before)
    assert [json.loads(r.details)["why"] for r in rows] == ["wrong_pin", "wrong_pin", "pin_blocked"]
    assert [json.loads(r.details).get("tries_left") for r in rows] == [2, 1, None]
    for row in rows:
        assert (row.target_type, row.target_id) == ("account", str(account_id))
        assert row.actor_id is None
        text = _row_text(row)
        assert WRONG_PIN not in text and PIN not in text
        assert not any(run in text for run in _id_runs(user.person_id))
    assert services.audit.verify().ok


def test_disabled_and_pending_accounts_refused_at_login_are_recorded(
    services: Services, cards: CardLoginService, backend: InProcessBackend, pki: TestPki
) -> None:
    hpc, moica = pki.user("hpc"), pki.user("moica")
    clinic = unit_of_kind(UnitKind.CLINIC, with_category="ppe")
    pending = send_application(services, form(hpc.person_id, clinic, name=hpc.cn))
    disabled = approved_account(services, moica.person_id)
    for user, account_id in ((hpc, pending), (moica, disabled)):
        insert(backend, user)
        first = cards.authenticate(READER, PIN)
        assert first.needs_person_id is not None
        cards.bind(first.needs_person_id, user.person_id)
        if account_id == disabled:
            account = Account.get_by_id(disabled)
            services.accounts.disable_self(
                disabled, account.version, card_proof(services, moica.person_id, moica.cn)
            )
        before = _last_id()
        result = cards.authenticate(READER, PIN)
        assert result.outcome is not None
        (row,) = _refusals(before)
        why = "pending" if account_id == pending else "disabled"
        assert json.loads(row.details)["why"] == why
        assert (row.target_type, row.target_id) == ("account", str(account_id))
        assert not any(run in _row_text(row) for run in _id_runs(user.person_id))
        backend.remove(READER)
    assert services.audit.verify().ok


def test_an_unknown_card_is_recorded_as_the_card_whatever_id_is_typed_with_it(
    services: Services, cards: CardLoginService, backend: InProcessBackend, pki: TestPki
) -> None:
    """The attack: a card that stands for nobody, with someone else's ID typed at the
    first login. The screen refuses an ID with an account and one without alike; the
    trail must not tell them apart either (nor name the account, nor hold the ID)."""
    user = pki.user("hpc")
    clinic = unit_of_kind(UnitKind.CLINIC, with_category="ppe")
    someone = new_person_id()
    someones_account = send_application(services, form(someone, clinic))
    nobody = new_person_id()
    insert(backend, user)
    shapes = []
    for typed in (someone, nobody):
        before = _last_id()
        proof = cards.authenticate(READER, PIN).needs_person_id
        assert proof is not None
        with pytest.raises(NotAllowed):
            cards.bind(proof, typed)
        (row,) = _refusals(before)
        details = json.loads(row.details)
        assert details["why"] == "unknown_card"
        assert details["card"] == hashlib.sha256(user.cert_der).hexdigest()[:CARD_PREFIX]
        assert row.target_type == "card" and row.unit_id is None
        assert str(someones_account) not in (row.target_id, str(row.unit_id))
        text = _row_text(row)
        assert not any(run in text for run in _id_runs(typed) | _id_runs(user.person_id))
        shapes.append((row.actor_label, row.target_type, row.target_id, row.details))
    assert shapes[0] == shapes[1]
    # The card's own holder with no account: the same row again.
    before = _last_id()
    proof = cards.authenticate(READER, PIN).needs_person_id
    assert proof is not None
    cards.bind(proof, user.person_id)
    (row,) = _refusals(before)
    assert (row.actor_label, row.target_type, row.target_id, row.details) == shapes[0]
    assert services.audit.verify().ok


def test_a_wrong_pin_typed_at_the_staff_computer_is_recorded_too(
    services: Services, pki: TestPki
) -> None:
    """An SSH session's PIN is typed at the staff member's own computer; its agent
    reports the wrong PIN, and the kiosk records it like its own (no PIN ever here)."""
    user = pki.user("moica")
    agent = FakeAgent(user, failure=WrongPin(1))
    remote = remote_kiosk(services, pki, agent)
    before = _last_id()
    with pytest.raises(WrongPin):
        remote.authenticate(REMOTE_READER)
    (row,) = _refusals(before)
    assert json.loads(row.details) == {
        "why": "wrong_pin",
        "card_kind": "moica",
        "card": row.target_id,
        "tries_left": 1,
    }
    fingerprint = hashlib.sha256(user.cert_der).hexdigest()
    assert row.target_type == "card" and fingerprint.startswith(row.target_id)
    assert services.audit.verify().ok


# ----------------------------------------------------------------- rows in words


def test_rows_name_the_person_unit_category_role_and_change(services: Services) -> None:
    cdc = unit_of_kind(UnitKind.CDC)
    admin = make_admin(services, cdc)
    clinic = unit_of_kind(UnitKind.CLINIC, with_category="ppe")
    account_id, request_id = apply_for(services, clinic, Role.VIEWER, name="林美華")
    services.review.approve(admin.id, request_id)
    services.accounts.set_language(account_id, "en")
    page = services.control.own_trail(account_id)
    approved = next(r for r in page.rows if r.action == "approve_request")
    assert approved.actor_label == f"{admin.name} #{admin.id}" and approved.actor_unit == cdc.name
    assert approved.target_label == f"林美華 #{account_id}"
    assert approved.target_unit == clinic.name
    assert (approved.category_name, approved.role) == ("個人防護裝備", "viewer")
    assert (approved.before, approved.after) == ("pending", "approved")
    language = next(r for r in page.rows if r.action == "set_language")
    assert (language.before, language.after) == ("zh_TW", "en")


# ----------------------------------------------------------------- CSV export


def _cdc_admin(services: Services) -> Account:
    return make_admin(services, unit_of_kind(UnitKind.CDC))


def test_only_a_cdc_admin_exports_and_nothing_is_written_for_anyone_else(
    services: Services, tree: dict[str, Unit]
) -> None:
    bureau_admin = make_admin(services, tree["bureau"])
    with pytest.raises(NotAllowed):
        services.control.export_trail(bureau_admin.id, "zh_TW")
    with pytest.raises(NotAllowed):
        services.audit.export_rows(bureau_admin.id, TrailQuery())  # at once, not lazily
    assert not (services.settings.data_dir / EXPORT_DIR).exists()


def test_export_is_excel_ready_private_and_neutralises_formulas(services: Services) -> None:
    admin = _cdc_admin(services)
    cdc = unit_of_kind(UnitKind.CDC)
    officer = approved_applicant(
        services,
        unit_of_kind(UnitKind.CLINIC, with_category="ppe"),
        admin.id,
        {"ppe": RoleChoice(Role.OFFICER)},
    )
    request = services.accounts.view(officer).granted()[0]
    services.control.disable_permission(
        admin.id, officer, request.id, Account.get_by_id(officer).version, '=HYPERLINK("x")'
    )
    result = services.control.export_trail(admin.id, "zh_TW", unit=cdc.code)
    result_all = services.control.export_trail(admin.id, "en")
    assert result.path.parent == services.settings.data_dir / EXPORT_DIR
    assert stat.S_IMODE(result.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(result.path.parent.stat().st_mode) == 0o700
    raw = result_all.path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw
    text = raw.decode("utf-8-sig")
    assert "'=HYPERLINK" in text and ",=HYPERLINK" not in text and '"=HYPERLINK' not in text
    assert "Permission disabled" in text
    assert result_all.rows == text.count("\r\n") - 1 - text.count("\r\n\r\n")
    assert result.path != result_all.path
    # The export is in the trail, without the ID searched for.
    services.control.export_trail(
        admin.id, "zh_TW", person_id=services.accounts.person_id_for(officer)
    )
    last = AuditEvent.select().order_by(AuditEvent.id.desc()).get()
    assert last.action == "export_trail" and last.actor_id == admin.id
    assert services.accounts.person_id_for(officer) not in last.details
    assert services.audit.verify().ok


def test_an_export_that_fails_midway_leaves_no_file_and_no_row(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = _cdc_admin(services)
    before = _last_id()

    def broken(*_args: object, **_kwargs: object) -> object:
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(trail_export, "trail_words", broken)
    with pytest.raises(RuntimeError):
        services.control.export_trail(admin.id, "zh_TW")
    assert list((services.settings.data_dir / EXPORT_DIR).iterdir()) == []
    assert _last_id() == before


def test_neutralise_prefixes_every_formula_start() -> None:
    for cell in ("=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"):
        assert neutralise(cell) == "'" + cell
    assert neutralise("王小明") == "王小明" and neutralise("") == ""


def test_export_follows_no_link_and_refuses_an_unsafe_directory(
    services: Services, tmp_path: Path
) -> None:
    admin = _cdc_admin(services)
    exports = services.settings.data_dir / EXPORT_DIR
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    exports.symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ExportPlaceUnsafe):
        services.control.export_trail(admin.id, "zh_TW")
    assert list(elsewhere.iterdir()) == []
    exports.unlink()
    exports.mkdir(mode=0o700)
    os.chmod(exports, 0o777)
    with pytest.raises(ExportPlaceUnsafe):
        services.control.export_trail(admin.id, "zh_TW")
    os.chmod(exports, 0o700)
    # A link waiting at every name the export could take this second: never followed.
    victim = tmp_path / "victim"
    victim.write_text("keep")
    first = services.control.export_trail(admin.id, "zh_TW")
    first.path.unlink()
    (exports / first.path.name).symlink_to(victim)
    again = services.control.export_trail(admin.id, "zh_TW")
    assert victim.read_text() == "keep"
    assert not again.path.is_symlink() and again.path.read_bytes().startswith(b"\xef\xbb\xbf")
