"""Every screen and dialog of the kiosk, reached as a person reaches it, at a typical SSH
terminal's 80×24, at 100×30 and at 120×36, in 中文 and in English: nothing cut off, no text
needing more room than it has, nothing drawn over something else, every footer key on
screen; and each at 80×24 as its picture in docs/screens/ shows it."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Awaitable, Callable

import pytest
from textual.pilot import Pilot
from textual.widgets import Button, Checkbox, Input, RadioButton

from card.identity import identity_from_certificate
from models.db import write_transaction
from models.schema import Account, Category, PermissionRequest, utcnow
from smis_tui.app import SmisApp
from smis_tui.core.domain import RequestStatus
from smis_tui.screens.access_review_items import AccessReviewItemsScreen
from smis_tui.screens.access_review_start import AccessReviewStartDialog
from smis_tui.screens.access_reviews import AccessReviewsScreen
from smis_tui.screens.application_form import ApplicationFormScreen
from smis_tui.screens.card_auth import CardAuthScreen
from smis_tui.screens.home import HomeScreen
from smis_tui.screens.new_account import NewAccountScreen
from smis_tui.screens.profile import ProfileScreen
from smis_tui.screens.unit_search import UnitSearchScreen
from smis_tui.widgets.bars import KeyBar
from smis_tui.widgets.dialogs import MessageDialog
from smis_tui.widgets.idle import IdleWarning
from tests.helpers import branch, make_admin
from tests.layout import layout_faults
from tests.pictures import check_picture, comparable
from tests.review_history import reviewers_at, with_history
from tests.tui.conftest import (
    Demo,
    card,
    insert,
    kiosk_app,
    log_in,
    prove_with_card,
    settle,
)
from tests.tui.test_application_form import VALID, fill
from tests.tui.test_new_account import _newcomer, _person_id_of
from tests.tui.test_remote_login import remote_app

Scene = Callable[[Pilot[None], Demo], Awaitable[None]]

# Looks at the screen until it stops changing: how many at most, and the pause between.
STEADY_LOOKS = 100
STEADY_PAUSE = 0.02


async def _quiet(pilot: Pilot[None]) -> None:
    await settle(pilot)
    # Every screen's fields: one under a dialog is drawn too, cursor on or off.
    for screen in pilot.app.screen_stack:
        for field in screen.query(Input):
            field.cursor_blink = False
    # A pressed button is drawn pressed for 0.2 s: whether a picture caught it
    # depended on how busy the machine was.
    for screen in pilot.app.screen_stack:
        for button in screen.query(Button):
            button.remove_class("-active")
    # Some widgets finish drawing when they are next idle (a table sizes its columns
    # to rows added just before): wait until two looks in a row are the same, however
    # busy the machine is.
    previous = None
    for _ in range(STEADY_LOOKS):
        await pilot.pause(STEADY_PAUSE)
        now = pilot.app.export_screenshot()
        if previous is not None and comparable(now) == comparable(previous):
            return
        previous = now
    raise AssertionError(f"the screen kept changing for {STEADY_LOOKS} looks")


async def login(pilot: Pilot[None], demo: Demo) -> None:
    """The login screen with no card in the reader."""


async def login_card_in(pilot: Pilot[None], demo: Demo) -> None:
    insert(demo[1], card(demo[2], "moica"))


async def login_refused(pilot: Pilot[None], demo: Demo) -> None:
    """登入失敗: a card with no account behind it."""
    await log_in(pilot, "newcomer")


async def login_pending(pilot: Pilot[None], demo: Demo) -> None:
    """A card whose application is under review: its requests and who decides them."""
    await log_in(pilot, "moica2")


async def login_disabled(pilot: Pilot[None], demo: Demo) -> None:
    await log_in(pilot, "hpc2")


async def login_expired_card(pilot: Pilot[None], demo: Demo) -> None:
    insert(demo[1], card(demo[2], "expired"))


async def demo_picker(pilot: Pilot[None], demo: Demo) -> None:
    await pilot.press("f5")


async def new_account(pilot: Pilot[None], demo: Demo) -> None:
    await pilot.press("f2")
    await settle(pilot)
    assert isinstance(pilot.app.screen, NewAccountScreen)


async def new_account_errors(pilot: Pilot[None], demo: Demo) -> None:
    await new_account(pilot, demo)
    pilot.app.screen.query_one("#person-id", Input).value = "A12345678"
    pilot.app.screen.query_one("#confirm").press()


async def unit_search(pilot: Pilot[None], demo: Demo) -> None:
    await new_account(pilot, demo)
    pilot.app.screen.query_one("#choose-unit").press()
    await settle(pilot)
    assert isinstance(pilot.app.screen, UnitSearchScreen)
    pilot.app.screen.query_one("#unit-search-query", Input).value = "衛生局"
    await pilot.pause(0.5)


async def choose_unit_in_search(pilot: Pilot[None], name: str) -> None:
    """On 新帳號申請: 選擇, find ``name`` in 單位查詢 and take it."""
    pilot.app.screen.query_one("#choose-unit").press()
    await settle(pilot)
    pilot.app.screen.query_one("#unit-search-query", Input).value = name
    await pilot.pause(0.5)
    await settle(pilot)
    pilot.app.screen.query_one("#unit-search-table").focus()
    await pilot.press("enter")
    await settle(pilot)
    assert isinstance(pilot.app.screen, NewAccountScreen)


async def application_form(pilot: Pilot[None], demo: Demo) -> None:
    _, person_id = _newcomer(demo)
    await new_account(pilot, demo)
    await choose_unit_in_search(pilot, "金門縣衛生局")
    pilot.app.screen.query_one("#person-id", Input).value = person_id
    pilot.app.screen.query_one("#confirm").press()
    await settle(pilot)
    assert isinstance(pilot.app.screen, ApplicationFormScreen)


async def application_form_errors(pilot: Pilot[None], demo: Demo) -> None:
    await application_form(pilot, demo)
    form = pilot.app.screen
    fill(form, name="", phone="02-2395", email="wang@", mobile="09")  # type: ignore[arg-type]
    form.query_one("#consent-agree", Checkbox).value = True
    await pilot.press("f10")


async def card_check(pilot: Pilot[None], demo: Demo) -> None:
    newcomer, _ = _newcomer(demo)
    await application_form(pilot, demo)
    form = pilot.app.screen
    fill(form, **{**VALID, "name": newcomer.holder})  # type: ignore[arg-type]
    form.query_one("#role-ppe-officer", RadioButton).value = True
    form.query_one("#consent-agree", Checkbox).value = True
    await pilot.press("f10")
    await settle(pilot)
    assert isinstance(pilot.app.screen, CardAuthScreen)


async def application_sent(pilot: Pilot[None], demo: Demo) -> None:
    newcomer, _ = _newcomer(demo)
    await card_check(pilot, demo)
    await prove_with_card(pilot, demo[1], newcomer)
    assert isinstance(pilot.app.screen, MessageDialog)


async def update_question(pilot: Pilot[None], demo: Demo) -> None:
    """Step 10: 新帳號申請 of an ID whose application is under review."""
    services, _, cards = demo
    await new_account(pilot, demo)
    await choose_unit_in_search(pilot, "金門縣衛生局")
    pilot.app.screen.query_one("#person-id", Input).value = _person_id_of(
        services, card(cards, "moica2")
    )
    pilot.app.screen.query_one("#confirm").press()
    await settle(pilot)
    assert isinstance(pilot.app.screen, MessageDialog)


async def update_form(pilot: Pilot[None], demo: Demo) -> None:
    """Step 12: 更新申請權限, after the card proved the applicant."""
    await update_question(pilot, demo)
    await pilot.press("enter")
    await settle(pilot)
    await prove_with_card(pilot, demo[1], card(demo[2], "moica2"))
    assert isinstance(pilot.app.screen, ApplicationFormScreen)


async def idle_warning(pilot: Pilot[None], demo: Demo) -> None:
    await home_user(pilot, demo)
    await pilot.app.push_screen(IdleWarning(30, pilot.app.language, ends_session=True))


async def remote_login(pilot: Pilot[None], demo: Demo) -> None:
    """An SSH session: the card is in the staff member's own computer."""
    insert(demo[1], card(demo[2], "moica"))


async def home_admin(pilot: Pilot[None], demo: Demo) -> None:
    await log_in(pilot, "hpc")
    assert isinstance(pilot.app.screen, HomeScreen)


async def home_user(pilot: Pilot[None], demo: Demo) -> None:
    await log_in(pilot, "moica")
    assert isinstance(pilot.app.screen, HomeScreen)


async def profile(pilot: Pilot[None], demo: Demo) -> None:
    await home_user(pilot, demo)
    await pilot.press("f5")
    await settle(pilot)
    assert isinstance(pilot.app.screen, ProfileScreen)


async def _profile_tab(pilot: Pilot[None], demo: Demo, key: str) -> None:
    await profile(pilot, demo)
    await pilot.press(key)


async def profile_permissions(pilot: Pilot[None], demo: Demo) -> None:
    await _profile_tab(pilot, demo, "f3")


async def profile_disable(pilot: Pilot[None], demo: Demo) -> None:
    await _profile_tab(pilot, demo, "f5")


async def profile_disable_confirm(pilot: Pilot[None], demo: Demo) -> None:
    await profile_disable(pilot, demo)
    await settle(pilot)
    pilot.app.screen.query_one("#disable").press()


async def profile_delete(pilot: Pilot[None], demo: Demo) -> None:
    await _profile_tab(pilot, demo, "f6")


async def review(pilot: Pilot[None], demo: Demo) -> None:
    await home_admin(pilot, demo)
    await pilot.press("f6")
    await settle(pilot)
    await pilot.press("space")


async def review_detail(pilot: Pilot[None], demo: Demo) -> None:
    """審核 of an applicant with a past (tests/integration/test_review_detail.py): the
    role held now, the contact details, other requests decided by a superior unit, the
    clinic itself and 疾管署, earlier decisions with their reasons, scrolled to the end.
    The demo's 疾管署 管理者 keeps only ppe here, another one takes emerging."""
    services, _, cards = demo
    tree = branch()
    account_id = with_history(services, tree, reviewers_at(services, tree))
    make_admin(services, tree["cdc"], ["emerging"])
    reviewer = Account.get(Account.name == card(cards, "hpc").holder)
    with write_transaction():
        PermissionRequest.update(status=RequestStatus.REVOKED).where(
            (PermissionRequest.account == reviewer.id)
            & (PermissionRequest.category.in_(Category.select().where(Category.code != "ppe")))
        ).execute()
        # Days before the demo's requests (listed first), whatever the hour of the run.
        PermissionRequest.update(submitted_at=utcnow() - dt.timedelta(days=3)).where(
            (PermissionRequest.account == account_id)
            & (PermissionRequest.status == RequestStatus.PENDING)
        ).execute()
    await home_admin(pilot, demo)
    await pilot.press("f6")
    await settle(pilot)
    # Tab to the pane and End: its last lines (the review scene shows its first).
    await pilot.press("tab", "end")


async def review_reason(pilot: Pilot[None], demo: Demo) -> None:
    await review(pilot, demo)
    await settle(pilot)
    await pilot.press("r")


async def account_control(pilot: Pilot[None], demo: Demo) -> None:
    await home_admin(pilot, demo)
    await pilot.press("f7")


async def audit_trail(pilot: Pilot[None], demo: Demo) -> None:
    await home_admin(pilot, demo)
    await pilot.press("f8")
    await settle(pilot)
    await pilot.press("f9")


def _demo_admin(demo: Demo) -> int:
    """The demo's 疾管署 管理者 (the card of PKI user hpc)."""
    services, runtime, _ = demo
    assert runtime.demo_pki is not None
    pem = (runtime.demo_pki / "users" / "hpc.pem").read_bytes()
    account = services.accounts.find_by_certificate(identity_from_certificate(pem).cert_sha256)
    assert account is not None
    return int(account.id)


async def access_reviews(pilot: Pilot[None], demo: Demo) -> None:
    """權限定期檢閱 with one review under way, started by the 疾管署 管理者."""
    demo[0].access_reviews.start(_demo_admin(demo), "113 年上半年權限檢閱")
    await home_admin(pilot, demo)
    await pilot.press("f2")
    await settle(pilot)
    assert isinstance(pilot.app.screen, AccessReviewsScreen)


async def access_review_start(pilot: Pilot[None], demo: Demo) -> None:
    await home_admin(pilot, demo)
    await pilot.press("f2")
    await settle(pilot)
    await pilot.press("f2")
    await settle(pilot)
    assert isinstance(pilot.app.screen, AccessReviewStartDialog)
    pilot.app.screen.query_one("#areview-name", Input).value = "113 年上半年權限檢閱"


async def access_review_items(pilot: Pilot[None], demo: Demo) -> None:
    """One review's items, one of them selected."""
    await access_reviews(pilot, demo)
    await pilot.press("enter")
    await settle(pilot)
    assert isinstance(pilot.app.screen, AccessReviewItemsScreen)
    await pilot.press("space")


async def access_review_remove(pilot: Pilot[None], demo: Demo) -> None:
    """移除: the reason, then the confirmation naming the account it disables."""
    await access_reviews(pilot, demo)
    await pilot.press("enter")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, AccessReviewItemsScreen)
    last = next(i for i, item in enumerate(screen._items.values()) if item.permissions_left == 1)
    screen.paged.table.move_cursor(row=last, animate=False)
    await settle(pilot)
    await pilot.press("r")
    await settle(pilot)
    pilot.app.screen.query_one("#reason-input", Input).value = "已離職"
    pilot.app.screen.query_one("#reason-submit").press()


SCENES: dict[str, Scene] = {
    scene.__name__: scene
    for scene in (
        login,
        login_card_in,
        login_refused,
        login_pending,
        login_disabled,
        login_expired_card,
        demo_picker,
        new_account,
        new_account_errors,
        unit_search,
        application_form,
        application_form_errors,
        card_check,
        application_sent,
        update_question,
        update_form,
        idle_warning,
        remote_login,
        home_admin,
        home_user,
        profile,
        profile_permissions,
        profile_disable,
        profile_disable_confirm,
        profile_delete,
        review,
        review_detail,
        review_reason,
        account_control,
        audit_trail,
        access_reviews,
        access_review_start,
        access_review_items,
        access_review_remove,
    )
}
LANGUAGES = ("zh_TW", "en")
# Scenes of an SSH session, whose card agent is on the staff member's computer.
REMOTE = {"remote_login"}


def scene_app(demo: Demo, name: str) -> SmisApp:
    return remote_app(demo)[0] if name in REMOTE else kiosk_app(demo)


def _before(scene: Scene, demo: Demo, language: str) -> Callable[[Pilot[None]], Awaitable[None]]:
    """Choose ``language`` at the login screen (and as every account's own, which a
    login switches to), then play ``scene``; the focused field's cursor stops blinking."""

    async def run_before(pilot: Pilot[None]) -> None:
        # A picture taken halfway through a fade would differ from run to run.
        pilot.app.animation_level = "none"
        with write_transaction():
            Account.update(language=language).execute()
        await settle(pilot)
        if language != pilot.app.language:
            await pilot.press("f3")
            await settle(pilot)
        await scene(pilot, demo)
        await _quiet(pilot)
        assert pilot.app.language == language

    return run_before


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", list(SCENES))
async def test_fits_80_by_24(demo: Demo, name: str, language: str) -> None:
    """At 80×24 nothing is cut or overlaps, and the screen looks as its picture."""
    async with scene_app(demo, name).run_test(size=(80, 24)) as pilot:
        await _before(SCENES[name], demo, language)(pilot)
        assert layout_faults(pilot.app.screen) == []
        check_picture(pilot.app, f"{name}-{language}")


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", list(SCENES))
async def test_fits_100_by_30(demo: Demo, name: str, language: str) -> None:
    """Nothing cut or overlapping at 100×30, and the key bar names function keys as
    the keyboard and the screen's own hints do (F5, never f5)."""
    async with scene_app(demo, name).run_test(size=(100, 30)) as pilot:
        await _before(SCENES[name], demo, language)(pilot)
        assert layout_faults(pilot.app.screen) == []
        shown = [key.display for bar in pilot.app.screen.query(KeyBar) for key in bar.keys]
        assert not [key for key in shown if re.fullmatch(r"f\d+", key)], shown


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", list(SCENES))
async def test_fits_120_by_36(demo: Demo, name: str, language: str) -> None:
    """A wide terminal: the wide layouts (filters on one line, 帳號管理's permissions
    beside the list) fit as well as the narrow ones."""
    async with scene_app(demo, name).run_test(size=(120, 36)) as pilot:
        await _before(SCENES[name], demo, language)(pilot)
        assert layout_faults(pilot.app.screen) == []


# The high-contrast theme (F9), for the screens a person with low vision meets first.
HIGH_CONTRAST_SCENES = ("login", "application_form", "review")


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", HIGH_CONTRAST_SCENES)
async def test_high_contrast_at_80_by_24(demo: Demo, name: str, language: str) -> None:
    app = scene_app(demo, name)
    app.apply_theme("high-contrast")
    async with app.run_test(size=(80, 24)) as pilot:
        await _before(SCENES[name], demo, language)(pilot)
        assert pilot.app.theme == "smis-high-contrast"
        assert layout_faults(pilot.app.screen) == []
        check_picture(pilot.app, f"{name}-high_contrast-{language}")
