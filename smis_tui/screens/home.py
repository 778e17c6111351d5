"""Home after login: who is logged in, granted roles per subsystem, pending requests,
and the way to 個人資料維護, 審核, 帳號管理 and 軌跡紀錄."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, DataTable, Static

from smis_tui.text import t
from smis_tui.widgets.bars import KeyBar, TitleBar
from smis_tui.widgets.localised import Localised
from smis_tui.widgets.role_grid import category_label
from smis_tui.widgets.safe import plain

if TYPE_CHECKING:
    from smis_tui.services import Services
    from smis_tui.services.accounts import AccountView

log = logging.getLogger(__name__)


def role_label(view_role: str, options: tuple[str, ...], language: str) -> str:
    label = t(f"role.{view_role}", language)
    return f"{label}({', '.join(options)})" if options else label


class HomeScreen(Localised, Screen[None]):
    # Nothing focused on arrival: an Enter still on its way from the PIN must not
    # press a button here (Tab or the F-keys reach them).
    AUTO_FOCUS = ""
    BINDINGS = [
        Binding("f5", "profile", "home.profile"),
        Binding("f6", "review", "home.review"),
        Binding("f7", "control", "home.control"),
        Binding("f8", "trail", "home.trail"),
        Binding("f3", "language", "login.language"),
        Binding("f10", "logout", "home.logout"),
    ]

    @dataclass
    class Reloaded(Message):
        view: AccountView | None

    @dataclass
    class LanguageSaved(Message):
        language: str
        ok: bool

    def __init__(self, view: AccountView, language: str, services: Services | None = None) -> None:
        super().__init__()
        self.view = view
        self.language = language
        self.services = services

    @property
    def is_admin(self) -> bool:
        return any(request.role == "admin" for request in self.view.granted())

    def compose(self) -> ComposeResult:
        language = self.language
        yield TitleBar()
        with Vertical(id="home"):
            yield Static(t("home.title", language), classes="screen-title")
            yield Static(self._who(), id="home-who")
            with Horizontal(id="home-actions"):
                yield Button(t("home.profile", language), id="profile")
                yield Button(t("home.review", language), id="review")
                yield Button(t("home.control", language), id="control")
                yield Button(t("home.trail", language), id="trail")
                yield Button(t("login.language", language), id="language")
                yield Button(t("home.logout", language), id="logout")
            yield Static(t("home.granted", language), classes="section-title")
            yield DataTable(id="granted", cursor_type="none")
            yield Static(t("home.pending", language), classes="section-title")
            yield DataTable(id="pending", cursor_type="none")
        yield KeyBar()

    def _who(self) -> Text:
        view = self.view
        return plain(
            t(
                "home.who",
                self.language,
                name=view.data.name,
                masked_id=view.masked_id,
                unit=view.unit_name,
            )
        )

    def on_mount(self) -> None:
        for table_id in ("#granted", "#pending"):
            self.query_one(table_id, DataTable).add_columns(
                *(
                    t(k, self.language)
                    for k in ("home.col_unit", "home.col_category", "home.col_role")
                )
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
                table.add_row(
                    plain(request.unit_name),
                    plain(
                        category_label(request.category_code, request.category_name, self.language)
                    ),
                    plain(role_label(request.role, request.options, self.language)),
                )
            if not requests:
                table.add_row(t("home.none", self.language), "", "")
        self.query_one("#home-who", Static).update(self._who())
        # Reviewing and account control are for 管理者 only.
        for button_id in ("#review", "#control"):
            self.query_one(button_id, Button).display = self.is_admin
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("review", "control"):
            return self.is_admin
        if action in ("profile", "trail") and self.services is None:
            return False
        return True

    # ----- back from another screen: what it changed shows here ----------------------

    def on_screen_resume(self) -> None:
        if self.services is not None and self.is_mounted:
            self._reload(self.view.id)

    @work(thread=True, exclusive=True, group="home", exit_on_error=False)
    def _reload(self, account_id: int) -> None:
        assert self.services is not None
        try:
            view: AccountView | None = self.services.accounts.view(account_id)
        except Exception:
            log.exception("home: reloading the account failed")
            view = None
        self.post_message(self.Reloaded(view))

    @on(Reloaded)
    def _reloaded(self, message: Reloaded) -> None:
        if message.view is not None:
            self.view = message.view
            self._show()

    # ----- actions --------------------------------------------------------------------

    @on(Button.Pressed, "#profile")
    def action_profile(self) -> None:
        from smis_tui.screens.profile import ProfileScreen

        if self.services is not None:
            self.app.push_screen(ProfileScreen(self.services, self.view, self.language))

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

    @work(thread=True, exclusive=True, group="home-language", exit_on_error=False)
    def _save_language(self, language: str) -> None:
        assert self.services is not None
        try:
            self.services.accounts.set_language(self.view.id, language)
        except Exception:
            log.exception("home: saving the language failed")
            self.post_message(self.LanguageSaved(language, False))
            return
        self.post_message(self.LanguageSaved(language, True))

    @on(LanguageSaved)
    def _language_saved(self, message: LanguageSaved) -> None:
        if not message.ok:
            self.notify(t("error.unexpected", self.language), severity="error")
            return
        self.app.set_language(message.language)  # type: ignore[attr-defined]
        self.app.switch_screen(HomeScreen(self.view, message.language, self.services))

    @on(Button.Pressed, "#logout")
    def action_logout(self) -> None:
        self.app.logout()  # type: ignore[attr-defined]
