"""Home after login: who is logged in, granted roles per subsystem, the latest
decisions against them (未通過 and 已停用, with the reason and the deciding unit),
pending requests, and the way to 個人資料維護, 審核, 帳號管理, 權限定期檢閱 and
軌跡紀錄."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Static

from smis_tui.core.clock import taiwan_date
from smis_tui.core.domain import RequestStatus, Role
from smis_tui.core.rocdate import to_roc
from smis_tui.screens import STYLES
from smis_tui.screens.base import KioskScreen, SessionEnded
from smis_tui.text.labels import category_label, role_label
from smis_tui.widgets.decisions import DecisionList
from smis_tui.widgets.keys_in_order import Button
from smis_tui.widgets.prose import Prose
from smis_tui.widgets.safe import plain
from smis_tui.widgets.table import DataTable

if TYPE_CHECKING:
    from smis_tui.services import Services
    from smis_tui.services.accounts import AccountView
    from smis_tui.services.card_notice import CertificateExpiry
    from smis_tui.services.card_proof import CardProof
    from smis_tui.services.card_runtime import CardRuntime
    from smis_tui.services.decisions import Decision

# Home shows this many of the newest decisions that took something away or refused
# it; 個人資料維護 → 權限 lists them all.
HOME_DECISIONS = 3


class HomeScreen(KioskScreen[None]):
    CSS_PATH = STYLES / "home.tcss"
    # Nothing focused on arrival: an Enter still on its way from the PIN must not
    # press a button here (Tab or the F-keys reach them).
    AUTO_FOCUS = ""
    BINDINGS = [
        Binding("f5", "profile", "home.profile"),
        Binding("f6", "review", "review.title"),
        Binding("f7", "control", "home.control"),
        Binding("f2", "access_review", "access_review.short"),
        Binding("f8", "trail", "trail.title"),
        Binding("f3", "language", "login.language"),
        Binding("f9", "theme", "login.theme"),
        Binding("f10", "logout", "home.logout"),
    ]

    @dataclass
    class ThemeChosen(Message):
        """The account's colours were saved: the app shows them from now on."""

        theme: str

    @dataclass
    class LanguageChosen(Message):
        """The account's language was saved: the app speaks it from now on."""

        view: AccountView
        language: str

    def __init__(
        self,
        view: AccountView,
        language: str,
        services: Services | None = None,
        card_expiry: CertificateExpiry | None = None,
        *,
        cards: CardRuntime | None = None,
        proof: CardProof | None = None,
    ) -> None:
        """``cards`` and ``proof`` (the login's card) are handed on to 個人資料維護,
        whose every change goes with a card."""
        super().__init__(language)
        self.view = view
        self.services = services
        self.card_expiry = card_expiry
        self.cards = cards
        self.proof = proof

    @property
    def is_admin(self) -> bool:
        return any(request.role == Role.ADMIN for request in self.view.granted())

    @staticmethod
    def _listing(table_id: str) -> DataTable[str]:
        """A list to read, not to move in: no cursor and not a Tab stop (the page
        scrolls as a whole, #home taking the focus)."""
        table: DataTable[str] = DataTable(id=table_id, cursor_type="none")
        table.can_focus = False
        return table

    def compose_body(self) -> ComposeResult:
        # Focusable, so that the keys scroll what does not fit (long reasons at 80×24).
        with VerticalScroll(id="home"):
            yield Static(self.tr("home.title"), classes="screen-title")
            yield Static(self._who(), id="home-who")
            if self.card_expiry is not None:
                yield Prose(self._expiry_notice(self.card_expiry), id="home-card-expiry")
            with Horizontal(id="home-actions"):
                yield Button(self.tr("home.profile"), id="profile")
                yield Button(self.tr("review.title"), id="review")
                yield Button(self.tr("home.control"), id="control")
                yield Button(self.tr("access_review.short"), id="access-review")
                yield Button(self.tr("trail.title"), id="trail")
                yield Button(self.tr("login.language"), id="language")
                yield Button(self.tr("home.logout"), id="logout")
            yield Static(self.tr("home.granted"), classes="section-title")
            yield self._listing("granted")
            yield Static(self.tr("decision.title"), classes="section-title", id="decisions-title")
            yield DecisionList(self._decisions(), self.language, id="decisions")
            yield Prose("", id="decisions-more")
            yield Static(self.tr("home.pending"), classes="section-title")
            yield self._listing("pending")

    def _refusals(self) -> tuple[Decision, ...]:
        """Decisions that are not an approval still in force, newest first."""
        return tuple(d for d in self.view.decisions if d.status != RequestStatus.APPROVED)

    def _decisions(self) -> tuple[Decision, ...]:
        return self._refusals()[:HOME_DECISIONS]

    def _show_decisions(self) -> None:
        shown = self._decisions()
        self.query_one("#decisions", DecisionList).show(shown)
        more = len(self._refusals()) - len(shown)
        notice = self.query_one("#decisions-more", Prose)
        notice.update(self.tr("decision.more", count=more) if more else "")
        notice.display = more > 0
        # Nothing decided against the account: no section at all.
        for widget_id in ("#decisions-title", "#decisions"):
            self.query_one(widget_id).display = bool(shown)

    def _who(self) -> Text:
        view = self.view
        return plain(
            self.tr("home.who", name=view.data.name, masked_id=view.masked_id, unit=view.unit_name)
        )

    def _expiry_notice(self, expiry: CertificateExpiry) -> str:
        day = taiwan_date(expiry.not_after)
        date = to_roc(day) if self.language == "zh_TW" else day.isoformat()
        where = self.tr(expiry.renew_at_key)
        return self.tr("home.card_expiring", date=date, days=expiry.days_left, where=where)

    def on_mount(self) -> None:
        for table_id in ("#granted", "#pending"):
            self.query_one(table_id, DataTable).add_columns(
                *(self.tr(k) for k in ("home.col_unit", "common.category", "common.role"))
            )
        self._show()

    def _show(self) -> None:
        for table_id, requests in (
            ("#granted", self.view.granted()),
            ("#pending", self.view.pending()),
        ):
            table = self.query_one(table_id, DataTable)
            table.clear()
            for request in requests:
                category = category_label(
                    request.category_name, request.category_name_en, self.language
                )
                table.add_row(
                    plain(request.unit_name),
                    plain(category),
                    plain(role_label(request.role, self.language, request.options)),
                )
            if not requests:
                table.add_row(self.tr("home.none"), "", "")
        self._show_decisions()
        self.query_one("#home-who", Static).update(self._who())
        # Reviewing, account control and access reviews are for 管理者 only.
        for button_id in ("#review", "#control", "#access-review"):
            self.query_one(button_id, Button).display = self.is_admin
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("review", "control", "access_review"):
            return self.is_admin
        if action in ("profile", "trail") and self.services is None:
            return False
        return True

    # ----- back from another screen: what it changed shows here ----------------------

    def on_screen_resume(self) -> None:
        if self.services is not None and self.is_mounted:
            accounts, account_id = self.services.accounts, self.view.id
            self.call_service(
                lambda: accounts.view(account_id),
                self._reloaded,
                group="home",
                failed=self._not_reloaded,
            )

    def _reloaded(self, view: AccountView) -> None:
        self.view = view
        self._show()

    def _not_reloaded(self, error: Exception) -> None:
        """The screen keeps showing the account as last read; coming back to it again
        reads it again."""

    # ----- actions --------------------------------------------------------------------

    @on(Button.Pressed, "#profile")
    def action_profile(self) -> None:
        from smis_tui.screens.profile import ProfileScreen

        if self.services is not None:
            self.app.push_screen(
                ProfileScreen(
                    self.services, self.view, self.language, cards=self.cards, proof=self.proof
                )
            )

    @on(Button.Pressed, "#review")
    def action_review(self) -> None:
        from smis_tui.screens.review import ReviewScreen

        if self.services is not None and self.is_admin:
            self.app.push_screen(ReviewScreen(self.services, self.view, self.language))

    @on(Button.Pressed, "#control")
    def action_control(self) -> None:
        from smis_tui.screens.account_control import AccountControlScreen

        if self.services is not None and self.is_admin:
            self.app.push_screen(AccountControlScreen(self.services, self.view, self.language))

    @on(Button.Pressed, "#access-review")
    def action_access_review(self) -> None:
        from smis_tui.screens.access_reviews import AccessReviewsScreen

        if self.services is not None and self.is_admin:
            self.app.push_screen(AccessReviewsScreen(self.services, self.view, self.language))

    @on(Button.Pressed, "#trail")
    def action_trail(self) -> None:
        from smis_tui.screens.audit_trail import AuditTrailScreen

        if self.services is not None:
            self.app.push_screen(AuditTrailScreen(self.services, self.view, self.language))

    @on(Button.Pressed, "#language")
    def action_language(self) -> None:
        """zh-TW ⇄ English for this account: kept for its next logins too."""
        if self.services is not None:
            self._save_language("en" if self.language == "zh_TW" else "zh_TW")

    def _save_language(self, language: str) -> None:
        assert self.services is not None
        accounts, account_id = self.services.accounts, self.view.id
        self.call_service(
            lambda: accounts.set_language(account_id, language),
            lambda _: self._language_saved(language),
            group="language",
            failed=self._language_not_saved,
        )

    def action_theme(self) -> None:
        """Normal colours ⇄ high contrast for this account: kept for its next logins."""
        if self.services is None:
            return
        theme = (
            "high-contrast"
            if getattr(self.app, "theme_name", "default") == "default"
            else "default"
        )
        accounts, account_id = self.services.accounts, self.view.id
        self.call_service(
            lambda: accounts.set_theme(account_id, theme),
            lambda _: self._theme_saved(theme),
            group="theme",
            failed=self._language_not_saved,
        )

    def _theme_saved(self, theme: str) -> None:
        self.post_message(self.ThemeChosen(theme))

    def _language_saved(self, language: str) -> None:
        self.post_message(self.LanguageChosen(self.view, language))

    def _language_not_saved(self, error: Exception) -> None:
        self.notify(self.tr("error.unexpected"), severity="error")

    @on(Button.Pressed, "#logout")
    def action_logout(self) -> None:
        self.post_message(SessionEnded())
