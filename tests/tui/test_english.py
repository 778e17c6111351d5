"""Every screen in English shows no Chinese but the data; in zh-TW, no text key leaks.

Each screen is opened with language="en" on the demo data, its validation messages
and a few dialogs are brought up, and the screenshot's text is searched for CJK
characters. Runs of CJK that are part of a data value (a unit, county, person,
category option or demo-card name: data has no English) are allowed; anything else
fails, listing the offending text with its line.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable

import pytest
from textual.pilot import Pilot
from textual.widgets import Checkbox, Input

from card import errors as card_errors
from card.agent.protocol import (
    AgentBusy,
    AgentProtocolError,
    AgentUnavailable,
    CommandRefused,
    DirectAccessRefused,
    InsecureSocket,
    TooManyProofs,
)
from models.schema import Account, Category, CategoryOption, Unit
from smis_tui.app import SmisApp
from smis_tui.core.identifiers import (
    IdentifierError,
    parse_email,
    parse_landline,
    parse_mobile,
    parse_person_id,
)
from smis_tui.demo import DemoCard, virtual_card
from smis_tui.screens.account_control import AccountControlScreen
from smis_tui.screens.application_form import ApplicationFormScreen
from smis_tui.screens.audit_trail import AuditTrailScreen
from smis_tui.screens.card_auth import CardAuthScreen
from smis_tui.screens.home import HomeScreen
from smis_tui.screens.new_account import NewAccountScreen
from smis_tui.screens.person_id_prompt import PersonIdPrompt
from smis_tui.screens.profile import ProfileScreen
from smis_tui.screens.review import ReviewScreen
from smis_tui.screens.unit_search import UnitSearchScreen
from smis_tui.services import Services
from smis_tui.services.accounts import ApplicationForm, RoleChoice, check_personal_field
from smis_tui.services.card_login import ProofForOtherServer
from smis_tui.services.card_runtime import DEMO_READER, CardRuntime
from smis_tui.services.errors import ValidationFailed
from smis_tui.services.units import UnitRow
from smis_tui.text import CATALOGS, render_error, t
from smis_tui.text.consent import (
    CONSENT_STATEMENT,
    CONSENT_STATEMENT_EN,
    CURRENT_STATEMENT_HASHES,
    CURRENT_STATEMENT_SHA256,
    CURRENT_STATEMENT_SHA256_EN,
    statement_sha256_for,
)
from smis_tui.widgets.dialogs import MessageDialog
from smis_tui.widgets.idle import IdleWarning
from tests.helpers import form, new_person_id
from tests.tui.conftest import card, demo_proof, settle

Demo = tuple[Services, CardRuntime, list[DemoCard]]
SIZE = (120, 40)
CJK_RUN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\uff00-\uffef\u3000-\u303f]+")
# zh-TW UI words never shown by themselves as data (a leak if found on an English screen
# even inside a data value's span): checked separately so data cannot hide them.
KEY_LIKE = re.compile(
    r"\b(?:login|home|form|apply|error|ident|field|card|control|trail|review|profile|"
    r"unit_search|grid|dialog|kiosk|common|auth|role|units)\.[a-z_]+(?:\.[a-z_]+)*\b"
)


# ----------------------------------------------------------------------- helpers


def screen_text(app: SmisApp) -> str:
    """The text of the current screenshot, one line per terminal row."""
    text = re.sub(r"<[^>]+>", "", app.export_screenshot())
    for entity, char in (("&#160;", " "), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">")):
        text = text.replace(entity, char)
    return text


def data_values(cards: Iterable[DemoCard]) -> list[str]:
    """Values from the database (and the demo) that are Chinese in every language."""
    values: set[str] = {DEMO_READER, "中文"}  # 中文: the way back names its language
    for unit in Unit.select(Unit.name, Unit.county):
        values.update((unit.name, unit.county))
    values.update(a.name for a in Account.select(Account.name) if a.name)
    values.update(o.name for o in CategoryOption.select(CategoryOption.name))
    values.update(c.name for c in Category.select(Category.name, Category.name_en) if not c.name_en)
    for demo_card in cards:
        values.update((demo_card.holder, demo_card.label))
    return sorted(values, key=len, reverse=True)


def leaks(text: str, data: list[str]) -> list[str]:
    """CJK runs that are not part of any data value, each with its context."""
    found = []
    for match in CJK_RUN.finditer(text):
        run = match.group()
        if any(run in value for value in data):
            continue
        start, end = max(0, match.start() - 20), min(len(text), match.end() + 20)
        found.append(f"{run!r} in …{text[start:end]!r}…")
    return found


def assert_english(app: SmisApp, data: list[str], where: str) -> None:
    text = screen_text(app)
    import os

    if os.environ.get("DUMP_EN"):
        print(
            "=====",
            where,
            "\n",
            text[text.find("</style>") + 8 :] if "</style>" in text else text[-3000:],
        )
    bad = leaks(text, data)
    assert not bad, f"{where}: Chinese text on an English screen:\n  " + "\n  ".join(bad)
    keys = KEY_LIKE.findall(text)
    assert not keys, f"{where}: text keys shown instead of texts: {keys}"


def assert_no_keys(app: SmisApp, where: str) -> None:
    text = screen_text(app)
    keys = KEY_LIKE.findall(text)
    assert not keys, f"{where}: text keys shown instead of texts: {keys}"
    # The English catalogue's own sentences must not appear on a zh-TW screen.
    english = [
        value
        for key, value in CATALOGS["en"].items()
        if len(value) > 12 and " " in value and "{" not in value and value in text
    ]
    assert not english, f"{where}: English texts on a zh-TW screen: {english}"


def account_named(cards: list[DemoCard], user: str) -> Account:
    holder = next(card.holder for card in cards if card.user == user)
    return Account.get(Account.name == holder)


def some_unit(services: Services) -> UnitRow:
    unit = Unit.select().where(Unit.active & (Unit.kind == "clinic")).order_by(Unit.code).first()
    assert unit is not None
    page = services.units.search(unit.code)
    return next(row for row in page.rows if row.code == unit.code)


async def type_into(pilot: Pilot[None], selector: str, text: str) -> None:
    widget = pilot.app.screen.query_one(selector, Input)
    widget.focus()
    widget.value = text
    await pilot.pause()


async def insert(pilot: Pilot[None], runtime: CardRuntime, demo_card: DemoCard) -> None:
    assert runtime.demo_backend is not None and runtime.demo_pki is not None
    runtime.demo_backend.remove(DEMO_READER)
    await settle(pilot)
    runtime.demo_backend.insert(DEMO_READER, virtual_card(runtime.demo_pki, demo_card))
    await settle(pilot)


async def close_dialog(pilot: Pilot[None]) -> None:
    await pilot.press("escape")
    await settle(pilot)


# ----------------------------------------------------------------------- screens


@pytest.fixture
def english(demo: Demo) -> tuple[SmisApp, Demo, list[str]]:
    services, runtime, cards = demo
    return SmisApp(services, runtime, demo_cards=cards), demo, data_values(cards)


async def test_login_and_card_messages_in_english(english) -> None:  # type: ignore[no-untyped-def]
    app, (services, runtime, cards), data = english
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("f3")
        await settle(pilot)
        assert app.screen.language == "en"  # type: ignore[attr-defined]
        assert_english(app, data, "login")
        # A card whose certificate has expired: the problem is said in English.
        await insert(pilot, runtime, card(cards, "expired"))
        assert_english(app, data, "login with an expired card")
        text = screen_text(app)
        assert "expired" in text, text
        # A wrong PIN.
        officer = card(cards, "moica")
        await insert(pilot, runtime, officer)
        await pilot.press(*"000000", "enter")
        await settle(pilot)
        assert_english(app, data, "login after a wrong PIN")
        assert "Wrong PIN" in screen_text(app)
        # The first login with an unbound card asks the ID: a bad one is explained.
        app.push_screen(PersonIdPrompt("en"))
        await settle(pilot)
        await type_into(pilot, "#person-id", "A123456780")
        await pilot.press("enter")
        await settle(pilot)
        assert_english(app, data, "person ID prompt")
        assert "check digit" in screen_text(app)


async def test_new_account_unit_search_and_card_auth_in_english(english) -> None:  # type: ignore[no-untyped-def]
    app, (services, runtime, cards), data = english
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.set_language("en")  # as the login screen's F3 does
        app.push_screen(NewAccountScreen(services, runtime, "en", None))
        await settle(pilot)
        await type_into(pilot, "#person-id", "Z9")
        await pilot.click("#confirm")
        await settle(pilot)
        assert_english(app, data, "new account with a bad ID and no unit")
        app.push_screen(UnitSearchScreen(services.units, "en"))
        await settle(pilot)
        assert_english(app, data, "unit search")
        await type_into(pilot, "#unit-search-query", "zzzz-no-such-unit")
        await pilot.press("enter")
        await settle(pilot)
        assert_english(app, data, "unit search without results")
        await pilot.press("escape")
        await settle(pilot)
        app.push_screen(CardAuthScreen(runtime, "en", lambda proof: proof))
        await settle(pilot)
        assert_english(app, data, "card check")


async def test_application_form_its_checks_and_the_consent_in_english(english) -> None:  # type: ignore[no-untyped-def]
    app, (services, runtime, cards), data = english
    async with app.run_test(size=(120, 80)) as pilot:
        await settle(pilot)
        app.set_language("en")
        screen = ApplicationFormScreen(services, runtime, "A123456789", some_unit(services), "en")
        app.push_screen(screen)
        await settle(pilot)
        assert_english(app, data, "application form")
        assert "Chinese original" in screen_text(app)  # the consent, marked a translation
        for field, value in (
            ("name", ""),
            ("phone", "09-1234"),
            ("email", "not an address"),
            ("mobile", "0212345678"),
        ):
            await type_into(pilot, f"#input-{field}", value)
            screen.focus_next()
            await pilot.pause()
        await settle(pilot)
        assert_english(app, data, "application form with invalid fields")
        assert "Name: required" in screen_text(app)
        # Submitted anyway (consent ticked): the service's messages, in English.
        screen.query_one("#consent-agree", Checkbox).value = True
        await settle(pilot)
        screen.action_submit()
        await settle(pilot)
        assert_english(app, data, "application form after a refused submit")
        # Leaving with typed data asks first.
        screen.action_back()
        await settle(pilot)
        assert isinstance(app.screen, MessageDialog)
        assert_english(app, data, "discard dialog")
        await close_dialog(pilot)


async def test_home_profile_and_dialogs_in_english(english) -> None:  # type: ignore[no-untyped-def]
    app, demo, data = english
    services, runtime, cards = demo
    officer = account_named(cards, "moica")
    async with app.run_test(size=(120, 50)) as pilot:
        await settle(pilot)
        app.set_language("en")  # as after the login of an account in English
        view = services.accounts.view(officer.id)
        app.push_screen(HomeScreen(view, "en", services))
        await settle(pilot)
        assert_english(app, data, "home")
        profile = ProfileScreen(
            services, view, "en", cards=runtime, proof=demo_proof(demo, "moica")
        )
        app.push_screen(profile)
        await settle(pilot)
        assert_english(app, data, "profile: personal data")
        await type_into(pilot, "#input-phone", "12345")
        await type_into(pilot, "#input-email", "x@")
        profile.focus_next()
        await settle(pilot)
        assert_english(app, data, "profile with invalid fields")
        for tab in ("f3", "f5", "f6"):
            await pilot.press(tab)
            await settle(pilot)
            assert_english(app, data, f"profile tab {tab}")
        app.push_screen(IdleWarning(25, "en", ends_session=False))
        await settle(pilot)
        assert_english(app, data, "idle warning")


async def test_review_control_and_trail_in_english(english) -> None:  # type: ignore[no-untyped-def]
    app, (services, runtime, cards), data = english
    admin = account_named(cards, "hpc")
    async with app.run_test(size=(140, 45)) as pilot:
        await settle(pilot)
        app.set_language("en")
        view = services.accounts.view(admin.id)
        app.push_screen(ReviewScreen(services, view, "en"))
        await settle(pilot)
        assert_english(app, data, "review")
        await pilot.press("r")  # reject: the reason dialog
        await settle(pilot)
        assert_english(app, data, "review: reason dialog")
        await pilot.press("escape")
        await settle(pilot)
        app.push_screen(AccountControlScreen(services, view, "en"))
        await settle(pilot)
        assert_english(app, data, "account control")
        app.push_screen(AuditTrailScreen(services, view, "en"))
        await settle(pilot)
        assert_english(app, data, "audit trail")


async def test_zh_tw_screens_show_no_keys_or_english(english) -> None:  # type: ignore[no-untyped-def]
    app, demo, data = english
    services, runtime, cards = demo
    officer = account_named(cards, "moica")
    admin = account_named(cards, "hpc")
    async with app.run_test(size=(120, 80)) as pilot:
        await settle(pilot)
        assert_no_keys(app, "login")
        application = ApplicationFormScreen(
            services, runtime, "A123456789", some_unit(services), "zh_TW"
        )
        app.push_screen(application)
        await settle(pilot)
        await type_into(pilot, "#input-mobile", "0212345678")
        application.focus_next()
        await settle(pilot)
        assert_no_keys(app, "application form")
        shown = str(application.query_one("#error-mobile").render())
        assert shown == "✖ 行動電話：應以 09 開頭，例如 0912-345-678"
        app.push_screen(
            ProfileScreen(
                services,
                services.accounts.view(officer.id),
                "zh_TW",
                cards=runtime,
                proof=demo_proof(demo, "moica"),
            )
        )
        await settle(pilot)
        assert_no_keys(app, "profile")
        for screen in (ReviewScreen, AccountControlScreen, AuditTrailScreen):
            app.push_screen(screen(services, services.accounts.view(admin.id), "zh_TW"))
            await settle(pilot)
            assert_no_keys(app, screen.__name__)


# ----------------------------------------------------------------------- messages

CARD_ERRORS: list[card_errors.CardError] = [
    card_errors.CardError("讀卡代理程式回報錯誤"),
    card_errors.NoReader(),
    card_errors.PcscUnavailable("連線被拒"),
    card_errors.NoCard("讀卡機 0"),
    card_errors.CardRemoved(),
    card_errors.CardUnresponsive(2.5),
    card_errors.UnknownCard(),
    card_errors.CardProtocolError("讀取憑證失敗（SW 6A82）"),
    card_errors.PinFormatError(),
    card_errors.WrongPin(2),
    card_errors.WrongPinTriesUnknown(),
    card_errors.PinBlocked("醫事憑證管理中心"),
    card_errors.SignatureInvalid(),
    card_errors.PinNotVerified(),
    card_errors.TrustStoreError("找不到目錄"),
    card_errors.ReaderBusy("讀卡機 0"),
    card_errors.Pkcs11Unavailable("無法載入"),
    card_errors.CertificateProblem(
        "expired", "憑證已於 113/01/01 到期", dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    ),
    card_errors.CertificateProblem("revoked", "憑證已於 113/01/01 廢止"),  # no date (agent)
    card_errors.CertificateProblem("untrusted", "憑證簽發單位不受信任"),
    card_errors.CertificateProblem("something_new", "新的問題"),
    AgentProtocolError("格式錯誤"),
    AgentUnavailable("連線被拒"),
    InsecureSocket("權限過寬"),
    CommandRefused(0x24),
    AgentBusy(),
    card_errors.CardReset(),
    card_errors.NotPersonalCard("2.16.886.1.100.3.2.21"),
    card_errors.UnsupportedHicosVersion("CHT V99X"),
    card_errors.CardMiddlewareNeeded(),
    card_errors.ReaderTokenUnknown("Reader 0"),
    card_errors.CardTokenNotFound(),
    card_errors.ProofCancelled(),
    card_errors.ProofTimedOut(120.0),
    card_errors.NotTheCardShown(),
    ProofForOtherServer("other.example"),
    TooManyProofs(3, 60),
    DirectAccessRefused(),
    card_errors.CertificateProblem(
        "crl_missing", "找不到「Test CA」的憑證廢止清冊（CRL）", ca="Test CA"
    ),
]


@pytest.mark.parametrize("error", CARD_ERRORS, ids=lambda e: type(e).__name__)
def test_card_errors_render_in_english_and_stay_verbatim_in_zh_tw(
    error: card_errors.CardError,
) -> None:
    english = render_error(error, "en")
    assert english and not CJK_RUN.search(english), english
    assert render_error(error, "zh_TW") == str(error)
    assert error.key in CATALOGS["en"], error.key


def test_card_catalogue_texts_match_the_card_layer() -> None:
    """The zh-TW catalogue mirrors card.errors word for word (without details)."""
    for error in (
        card_errors.NoReader(),
        card_errors.PcscUnavailable(),
        card_errors.NoCard(),
        card_errors.CardRemoved(),
        card_errors.UnknownCard(),
        card_errors.PinFormatError(),
        card_errors.WrongPin(3),
        card_errors.WrongPinTriesUnknown(),
        card_errors.PinBlocked("發卡單位"),
        card_errors.SignatureInvalid(),
        card_errors.PinNotVerified(),
        card_errors.ReaderBusy(),
        AgentUnavailable(),
        AgentBusy(),
    ):
        assert t(error.key, "zh_TW", **error.params) == str(error)


BAD_VALUES = [
    (parse_person_id, ""),
    (parse_person_id, "A12345\u200b6789"),
    (parse_person_id, "12"),
    (parse_person_id, "A1234"),
    (parse_person_id, "AX23456789"),
    (parse_person_id, "A1234567X9"),
    (parse_person_id, "A123456780"),
    (parse_person_id, "身分證"),
    (parse_person_id, "ABCDEFGH"),
    (parse_landline, "02-1234#12a"),
    (parse_landline, "02-1234#123456789"),
    (parse_landline, "12345678"),
    (parse_landline, "0912345678"),
    (parse_landline, "+1 212 555 0100"),
    (parse_landline, "02-12"),
    (parse_landline, "(02)abc"),
    (parse_mobile, "0212345678"),
    (parse_mobile, "09123"),
    (parse_email, "a b@c.tw"),
    (parse_email, "abc"),
    (parse_email, "a" * 65 + "@example.tw"),
    (parse_email, "a@" + "b" * 250 + ".tw"),
]


@pytest.mark.parametrize(("parser", "value"), BAD_VALUES)
def test_identifier_errors_carry_a_key_and_render_in_english(parser, value: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(IdentifierError) as info:
        parser(value)
    error = info.value
    assert error.key.startswith("ident."), error.key
    assert str(error) == f"{error.field}：{error.problem}"
    assert error.render() == str(error)
    english = error.render("en")
    assert not CJK_RUN.search(english), english
    assert error.render("en", field_label="Phone").startswith("Phone: ")


def test_field_checks_and_validation_failed_in_both_languages() -> None:
    phone = check_personal_field("phone", "0912345678")
    assert phone is not None
    assert phone.render() == "主要連絡電話：區碼錯誤（09 開頭為行動電話）"
    assert phone.render("en") == "Phone: wrong area code (09 is a mobile number)"
    name = check_personal_field("name", "")
    assert name is not None and name.render("en") == "Name: required"
    assert check_personal_field("mobile", "") is None
    try:
        raise ValidationFailed({"reason": "已翻譯的字串", "name": name})
    except ValidationFailed as exc:
        assert exc.errors["name"] == "使用者姓名：請輸入"
        assert exc.message("name", "en") == "Name: required"
        assert exc.message("reason", "en") == "已翻譯的字串"  # a plain string is kept
        assert str(exc) == "已翻譯的字串；使用者姓名：請輸入"
        assert exc.render("en") == "已翻譯的字串; Name: required"


def test_service_validation_speaks_both_languages(demo: Demo) -> None:
    services, _, _ = demo
    unit = some_unit(services)
    with pytest.raises(ValidationFailed) as info:
        services.accounts.validate(
            ApplicationForm(
                person_id="A123456780",
                unit_code=unit.code,
                name="",
                phone="0912345678",
                email="x",
                roles={"no_such": RoleChoice("admin")},  # type: ignore[arg-type]
            )
        )
    error = info.value
    assert set(error.errors) == {"person_id", "name", "phone", "email", "roles", "consent"}
    for field, message in error.rendered("en").items():
        assert not CJK_RUN.search(message), (field, message)
    assert error.errors["person_id"] == "使用者身分證號：檢查碼錯誤，請確認是否輸入正確"


def test_consent_in_english_is_a_translation_and_its_hash_is_accepted(demo: Demo) -> None:
    assert CONSENT_STATEMENT_EN.startswith("(English translation")
    assert not CJK_RUN.search(CONSENT_STATEMENT_EN)
    assert statement_sha256_for("zh_TW") == CURRENT_STATEMENT_SHA256
    assert statement_sha256_for("en") == CURRENT_STATEMENT_SHA256_EN
    assert CURRENT_STATEMENT_HASHES == {CURRENT_STATEMENT_SHA256, CURRENT_STATEMENT_SHA256_EN}
    assert "傳染病防治法第26條" in CONSENT_STATEMENT  # the original is untouched
    services, _, _ = demo
    unit = some_unit(services)
    assert "ppe" in services.units.categories_of(unit.id)
    english = form(new_person_id(), unit, consent_sha256=CURRENT_STATEMENT_SHA256_EN, language="en")
    # The record keeps the hash of what was shown: here the translation.
    assert services.accounts.validate(english).consent_sha256 == CURRENT_STATEMENT_SHA256_EN


def test_the_test_finds_leaks() -> None:
    data = ["臺北市立聯合醫院"]
    assert leaks("Unit: 臺北市立聯合醫院 (Taipei)", data) == []
    assert leaks("Unit: 臺北市立聯…", data) == []  # a truncated data value
    found = leaks("Name: 請輸入", data)
    assert found and "請輸入" in found[0]
