"""申請審核中, in full: what a card's holder whose application is under review sees at
login — the login's own message, then each request of the application: its category
and role, its unit, where it stands (審核中 / 已核准 / 未通過 with the reason) and the
unit whose 管理者 decides it.

Only the card that just logged in opens it: the account service reads the requests for
that card's proof alone (AccountService.application_status), in a worker. Names and
reasons come from the database and are shown as plain text, never markup. 關閉 or Esc
closes it; the login screen then starts over, cleared."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import Static

from smis_tui.core.clock import taiwan_date
from smis_tui.core.domain import RequestStatus
from smis_tui.core.rocdate import to_roc
from smis_tui.screens import STYLES
from smis_tui.screens.base import KioskDialog
from smis_tui.text import render_error
from smis_tui.text.labels import category_label, role_label
from smis_tui.widgets.keys_in_order import Button
from smis_tui.widgets.prose import Prose

if TYPE_CHECKING:
    from smis_tui.services.accounts import AccountService
    from smis_tui.services.application_status import ApplicationStatusRow
    from smis_tui.services.card_proof import CardProof


class ApplicationStatusDialog(KioskDialog[None]):
    """The requests of the account ``proof``'s card is bound to, under ``message`` (the
    login's outcome text)."""

    CSS_PATH = STYLES / "application_status.tcss"
    BINDINGS = [
        Binding("escape", "close", "login.request_close", show=False),
        # A dialog keeps the app's keys out; taking the demo card out is wanted here.
        Binding("f4", "app.remove_demo_card", "login.demo_remove", show=False),
    ]

    def __init__(
        self, accounts: AccountService, proof: CardProof | None, language: str, message: str
    ) -> None:
        super().__init__(language)
        self.accounts = accounts
        self.proof = proof
        self.message = message

    def compose(self) -> ComposeResult:
        with Vertical(id="status-dialog") as dialog:
            dialog.border_title = self.tr("login.pending_title")
            yield Prose(self.message, id="status-message")
            with VerticalScroll(id="status-requests"):
                yield Prose(self.tr("login.request_loading"), id="status-note")
            with Horizontal(id="status-buttons"):
                yield Button(self.tr("login.request_close"), variant="primary", id="status-close")

    def on_mount(self) -> None:
        self.query_one("#status-close", Button).focus()
        accounts, proof = self.accounts, self.proof
        self.call_service(
            lambda: accounts.application_status(proof), self._show, failed=self._refused
        )

    def on_resize(self) -> None:
        self.call_after_refresh(self.fit_requests)

    def fit_requests(self) -> None:
        """The requests scroll in the rows the terminal leaves below the message and
        above 關閉, so both stay in view however many requests there are."""
        dialog = self.query_one("#status-dialog")
        kept = dialog.styles.gutter.height + sum(
            widget.outer_size.height + widget.styles.margin.height
            for widget in (self.query_one("#status-message"), self.query_one("#status-buttons"))
        )
        self.query_one("#status-requests").styles.max_height = max(3, self.size.height - kept)

    def _show(self, rows: tuple[ApplicationStatusRow, ...]) -> None:
        note = self.query_one("#status-note", Prose)
        if not rows:
            note.update(self.tr("login.request_none"))
            return
        note.remove()
        self.query_one("#status-requests").mount_all(self._request(row) for row in rows)

    def _refused(self, error: Exception) -> None:
        self.query_one("#status-note", Prose).update(render_error(error, self.language))

    def _request(self, row: ApplicationStatusRow) -> Widget:
        language = self.language
        what = self.tr(
            "login.request_what",
            category=category_label(row.category_name, row.category_name_en, language),
            role=role_label(row.role, language, row.options),
        )
        lines = [
            Horizontal(
                Prose(what, classes="status-what"),
                Static(self._status_text(row), classes="status-state", markup=False),
                classes="status-head",
            ),
            Prose(self.tr("login.request_unit", unit=row.unit_name), classes="status-line"),
            Prose(self._decider_text(row), classes="status-line"),
        ]
        if row.status == RequestStatus.REJECTED:
            lines.append(
                Prose(
                    self.tr("login.request_reason", reason=row.reason),
                    classes="status-line status-reason",
                )
            )
        return Vertical(*lines, classes=f"status-request status-{row.status}")

    def _status_text(self, row: ApplicationStatusRow) -> str:
        if row.status == RequestStatus.PENDING or row.decided_at is None:
            return self.tr("login.request_pending")
        # Stored in UTC; the applicant knows the day in Taiwan time.
        date = to_roc(taiwan_date(row.decided_at))
        return self.tr(f"login.request_{row.status}", date=date)

    def _decider_text(self, row: ApplicationStatusRow) -> str:
        if row.deciding_unit_name is None:
            return self.tr("login.request_no_decider")
        return self.tr("login.request_decider", unit=row.deciding_unit_name)

    @on(Button.Pressed, "#status-close")
    def _close_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)
