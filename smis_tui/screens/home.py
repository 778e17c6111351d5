"""Home after login: who is logged in, granted roles per subsystem, pending requests."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Header, Static

from smis_tui.services.accounts import AccountView
from smis_tui.text import t
from smis_tui.widgets.safe import plain


def role_label(view_role: str, options: tuple[str, ...], language: str) -> str:
    label = t(f"role.{view_role}", language)
    return f"{label}({', '.join(options)})" if options else label


class HomeScreen(Screen[None]):
    BINDINGS = [Binding("f10", "logout", t("home.logout"))]

    def __init__(self, view: AccountView, language: str) -> None:
        super().__init__()
        self.view = view
        self.language = language

    def compose(self) -> ComposeResult:
        view, language = self.view, self.language
        yield Header()
        with Vertical(id="home"):
            yield Static(t("home.title", language), classes="screen-title")
            yield Static(
                plain(
                    t(
                        "home.who",
                        language,
                        name=view.data.name,
                        masked_id=view.masked_id,
                        unit=view.unit_name,
                    )
                ),
                id="home-who",
            )
            yield Static(t("home.granted", language), classes="section-title")
            yield DataTable(id="granted", cursor_type="none")
            yield Static(t("home.pending", language), classes="section-title")
            yield DataTable(id="pending", cursor_type="none")
            yield Button(t("home.logout", language), id="logout")
        yield Footer()

    def on_mount(self) -> None:
        for table_id, requests in (
            ("#granted", self.view.granted()),
            ("#pending", self.view.pending()),
        ):
            table = self.query_one(table_id, DataTable)
            table.add_columns(
                *(
                    t(k, self.language)
                    for k in ("home.col_unit", "home.col_category", "home.col_role")
                )
            )
            for request in requests:
                table.add_row(
                    plain(request.unit_name),
                    plain(request.category_name),
                    plain(role_label(request.role, request.options, self.language)),
                )
            if not requests:
                table.add_row(t("home.none", self.language), "", "")

    @on(Button.Pressed, "#logout")
    def action_logout(self) -> None:
        self.app.logout()  # type: ignore[attr-defined]
