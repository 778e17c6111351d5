"""Hostile text against every field validator, the display helpers and the search
folding: Rich markup, ANSI/OSC escapes, C0/C1 controls, bidi
overrides, zero-width and combining characters, NULs, long strings.

Every validator either returns a clean value or raises its own error, whose message
never echoes the input and carries no control character; plain()/plain_cell() never
turn text into markup and never let a control or bidi character through.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console
from rich.text import Text

from models.db import open_database
from models.schema import Account, AuditEvent, PermissionRequest
from models.textfold import fold
from smis_tui.core.config import Settings
from smis_tui.core.identifiers import (
    IdentifierError,
    generate_national_id,
    parse_email,
    parse_landline,
    parse_mobile,
    parse_person_id,
)
from smis_tui.core.rocdate import RocDateError, from_roc
from smis_tui.services import Services, build_services
from smis_tui.services.accounts import ApplicationForm, RoleChoice, clean_person_id
from smis_tui.services.errors import ServiceError, ValidationFailed
from smis_tui.services.units import UnitDirectory
from smis_tui.text.consent import CURRENT_STATEMENT_SHA256
from smis_tui.widgets.safe import plain, plain_cell, strip_controls
from tests.helpers import card_proof
from tests.hostile import NASTY, examples, hidden_chars, hostile_text

PARSERS: dict[str, Callable[[str], object]] = {
    "person_id": parse_person_id,
    "person_id_strict": lambda s: parse_person_id(s, allow_other=False),
    "landline": parse_landline,
    "mobile": parse_mobile,
    "email": parse_email,
}


def _no_echo(message: str, value: str) -> None:
    """The message is clean text and does not quote a (non-trivial) hostile input."""
    assert not hidden_chars(message), message
    stripped = value.strip()
    if len(stripped) >= 4 and stripped not in ("[/]",):
        assert stripped not in message, (message, value)


# --------------------------------------------------------------------------- identifiers


@pytest.mark.parametrize("parser", sorted(PARSERS))
@examples(150)
@given(value=hostile_text)
def test_identifier_parsers_return_clean_values_or_their_error(parser: str, value: str) -> None:
    try:
        result = PARSERS[parser](value)
    except IdentifierError as exc:
        _no_echo(str(exc), value)
        return
    shown = str(getattr(result, "value", result))
    assert not hidden_chars(shown, allow="")
    assert "[" not in shown and "]" not in shown and "\\" not in shown
    assert len(shown) <= 254


@pytest.mark.parametrize("value", NASTY)
def test_nasty_strings_never_pass_as_identifiers(value: str) -> None:
    for name, parser in PARSERS.items():
        if name == "email" and value.startswith("%"):
            continue
        with pytest.raises(IdentifierError):
            parser(value)


@examples(100)
@given(value=hostile_text)
def test_roc_dates_refuse_hostile_text(value: str) -> None:
    try:
        from_roc(value, field="日期")
    except RocDateError as exc:
        _no_echo(str(exc), value)


# --------------------------------------------------------------------------- display helpers


def _render(text: Text) -> str:
    """What a 24-bit colour terminal would receive for ``text``."""
    console = Console(
        force_terminal=True, color_system="truecolor", width=120, legacy_windows=False
    )
    with console.capture() as capture:
        console.print(text, end="")
    return capture.get()


@examples(300)
@given(value=hostile_text)
def test_plain_is_literal_text_without_controls(value: str) -> None:
    for shown, allow in ((plain(value), "\n"), (plain_cell(value), "")):
        assert not shown.spans and not shown.style
        assert not hidden_chars(shown.plain, allow=allow)
        # Brackets stay brackets: nothing of the text was taken as markup.
        assert shown.plain.count("[") == value.count("[")
        assert shown.plain.count("]") == value.count("]")
        rendered = _render(shown)
        assert "\x1b" not in rendered and "\x9b" not in rendered and "\x07" not in rendered
    assert strip_controls(strip_controls(value)) == strip_controls(value)


@pytest.mark.parametrize("value", NASTY)
def test_plain_keeps_markup_literal(value: str) -> None:
    shown = plain_cell(value)
    assert shown.plain == strip_controls(value, keep_newlines=False)
    assert "\x1b" not in _render(shown)


def test_markup_in_plain_is_never_interpreted() -> None:
    assert plain("[bold red]x[/]").plain == "[bold red]x[/]"
    assert plain("[link=https://evil.example/]x[/link]").plain.startswith("[link=")
    osc8 = "\x1b]8;;https://evil.example/\x1b\\link\x1b]8;;\x1b\\"
    assert "\x1b" not in plain_cell(osc8).plain and "evil" in plain_cell(osc8).plain


# --------------------------------------------------------------------------- folding


@examples(300)
@given(value=hostile_text)
def test_fold_is_idempotent_and_never_crashes(value: str) -> None:
    folded = fold(value)
    assert fold(folded) == folded or fold(fold(folded)) == fold(folded)


# --------------------------------------------------------------------------- with a database


@pytest.fixture
def svc(sqlite_settings: Settings) -> Iterator[Services]:
    open_database(sqlite_settings.database_url, sqlite_settings.sqlite_path)
    yield build_services(sqlite_settings)


def _form(**overrides: object) -> ApplicationForm:
    values: dict[str, object] = {
        "person_id": "A123456789",
        "unit_code": "",
        "name": "王小明",
        "phone": "02-23959825#1234",
        "email": "wang@example.tw",
        "roles": {"ppe": RoleChoice("officer")},  # type: ignore[arg-type]
        "consent_sha256": CURRENT_STATEMENT_SHA256,
    }
    values.update(overrides)
    return ApplicationForm(**values)  # type: ignore[arg-type]


FORM_FIELDS = ("person_id", "unit_code", "name", "phone", "email", "phone_backup")
FORM_FIELDS_MORE = ("email_backup", "mobile")


@examples(25)
@given(
    field=st.sampled_from(FORM_FIELDS + FORM_FIELDS_MORE),
    value=hostile_text,
)
def test_application_form_refuses_or_keeps_hostile_text_literally(
    svc: Services, field: str, value: str
) -> None:
    """Every field of the application form: a clear per-field error that does not
    quote the input, or a clean value (a name may be ``[bold]`` — shown literally)."""
    from models.schema import Unit

    unit = Unit.select().where(Unit.active).order_by(Unit.code).first()
    form = _form(**{"unit_code": unit.code, field: value})
    before = (Account.select().count(), AuditEvent.select().count())
    try:
        clean = svc.accounts.validate(form)
    except ValidationFailed as exc:
        for message in exc.errors.values():
            _no_echo(message, value)
        assert not hidden_chars(str(exc))
    except ServiceError as exc:  # pragma: no cover - validate only raises ValidationFailed
        pytest.fail(f"unexpected {exc!r}")
    else:
        for text in vars(clean.data).values():
            assert not hidden_chars(text, allow=""), (field, value)
    assert (Account.select().count(), AuditEvent.select().count()) == before


@pytest.mark.parametrize("value", NASTY)
def test_hostile_names_are_refused_or_stored_literally(svc: Services, value: str) -> None:
    from models.schema import Unit, UnitCategory

    unit = Unit.select().join(UnitCategory).where(Unit.active).order_by(Unit.code).first()
    codes = [uc.category.code for uc in unit.unit_categories]
    roles = {codes[0]: RoleChoice("viewer")}  # type: ignore[arg-type]
    pid = generate_national_id("B", 1, zlib.crc32(value.encode()) % 10**7)
    try:
        account_id = svc.accounts.apply(
            _form(person_id=pid, unit_code=unit.code, name=value, roles=roles),
            card_proof(svc, pid),
        )
    except ValidationFailed as exc:
        assert set(exc.errors) == {"name"}
        assert Account.select().count() == 0
        return
    stored = Account.get_by_id(account_id).name
    assert stored == value.strip()  # literal: brackets kept, nothing interpreted
    assert not hidden_chars(stored, allow="")


@examples(40)
@given(query=hostile_text, county=st.one_of(st.none(), hostile_text))
def test_unit_search_takes_any_text(svc: Services, query: str, county: str | None) -> None:
    started = time.monotonic()
    page = UnitDirectory().search(query, county=county)
    assert page.page == 1 and page.pages >= 1 and len(page.rows) <= page.page_size
    assert time.monotonic() - started < 5


@examples(15)
@given(text=hostile_text)
def test_review_control_and_trail_searches_take_any_text(svc: Services, text: str) -> None:
    """The search fields of 審核, 帳號管理 and 軌跡紀錄 as the services see them, for a
    reviewer with no grants (nothing to see) and no rights (NotAllowed, cleanly)."""
    nobody = 10**9
    assert svc.review.queue(nobody, unit=text, category=text, county=text).total == 0
    for call in (
        lambda: svc.control.accounts_below(nobody, name=text, unit=text),
        lambda: svc.control.search_trail(nobody, person_id=text, unit=text, since=text),
    ):
        with pytest.raises(ServiceError) as caught:
            call()
        assert not hidden_chars(str(caught.value))
    try:
        clean_person_id(text)
    except ValidationFailed as exc:
        _no_echo(str(exc), text)
    assert PermissionRequest.select().count() == 0
