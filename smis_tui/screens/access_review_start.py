"""開始權限定期檢閱: the dialog a CDC or 衛生局 管理者 starts an access review with
(docs/access-review.md). It asks the review's name, which units (below one of the
units the 管理者 may start a review of) and for how many days, shows the last day as
the days are typed, and is dismissed with a :class:`StartRequest`, or None on 取消 /
Esc. The service checks everything again when it starts the review."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, Static

from smis_tui.core.clock import utc_now
from smis_tui.core.config import MAX_ACCESS_REVIEW_DAYS
from smis_tui.core.rocdate import to_roc
from smis_tui.screens import STYLES
from smis_tui.screens.base import KioskDialog
from smis_tui.services.access_review import NAME_MAX, StartChoice, clean_name, due_on
from smis_tui.services.access_review import deadline_after as review_deadline
from smis_tui.services.errors import ValidationFailed
from smis_tui.widgets.keys_in_order import Button, Select
from smis_tui.widgets.prose import Prose
from smis_tui.widgets.safe import plain_cell
from smis_tui.widgets.safe_input import SafeInput


@dataclass(frozen=True)
class StartRequest:
    """What the 管理者 asked for: the service's :meth:`start` arguments."""

    name: str
    unit_code: str
    days: int


class AccessReviewStartDialog(KioskDialog[StartRequest | None]):
    """``choices``: the units whose units below the 管理者 may review (at least one);
    ``days``: the days offered (the setting ``access_review_days``)."""

    CSS_PATH = STYLES / "access_review.tcss"
    BINDINGS = [Binding("escape", "cancel", show=False)]

    def __init__(self, language: str, *, choices: tuple[StartChoice, ...], days: int) -> None:
        super().__init__(language)
        self.choices = choices
        self.days = days

    def compose(self) -> ComposeResult:
        with Vertical(id="areview-start") as dialog:
            dialog.border_title = self.tr("access_review.start_title")
            yield Prose(self.tr("access_review.start_prompt"), id="areview-start-prompt")
            with Horizontal(classes="areview-start-row"):
                yield Label(self.tr("access_review.name"), classes="areview-start-label")
                yield SafeInput(
                    placeholder=self.tr("access_review.name_placeholder"),
                    max_length=NAME_MAX,
                    id="areview-name",
                )
            with Horizontal(classes="areview-start-row"):
                yield Label(self.tr("access_review.unit"), classes="areview-start-label")
                options = [
                    (plain_cell(self.tr("access_review.scope_below", unit=c.name)), c.code)
                    for c in self.choices
                ]
                yield Select(
                    options, value=self.choices[0].code, allow_blank=False, id="areview-unit"
                )
            with Horizontal(classes="areview-start-row"):
                yield Label(self.tr("access_review.days"), classes="areview-start-label")
                yield SafeInput(str(self.days), restrict=r"[0-9]*", max_length=3, id="areview-days")
                yield Static("", id="areview-due", markup=False)
            yield Prose("", id="areview-start-error", classes="error-text", markup=False)
            with Horizontal(id="areview-start-buttons"):
                yield Button(
                    self.tr("access_review.start"), variant="primary", id="areview-start-ok"
                )
                yield Button(self.tr("common.cancel"), id="areview-start-cancel")

    def on_mount(self) -> None:
        self.query_one("#areview-start-error").display = False
        self._show_due()
        self.query_one("#areview-name", Input).focus()

    # ----- the days and their last day ---------------------------------------------

    def _days(self) -> int | None:
        text = self.query_one("#areview-days", Input).value.strip()
        if not text.isdigit() or not 1 <= int(text) <= MAX_ACCESS_REVIEW_DAYS:
            return None
        return int(text)

    def _date(self, day: dt.date) -> str:
        return to_roc(day) if self.language == "zh_TW" else day.isoformat()

    def _show_due(self) -> None:
        days = self._days()
        due = self.query_one("#areview-due", Static)
        if days is None:
            due.update(Text(self.tr("access_review.days_bad", most=MAX_ACCESS_REVIEW_DAYS)))
            return
        now = utc_now().replace(tzinfo=None)
        last = due_on(review_deadline(now, days))
        due.update(Text(self.tr("access_review.due_line", due=self._date(last))))

    @on(Input.Changed, "#areview-days")
    def _days_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._show_due()

    @on(Input.Changed, "#areview-name")
    def _name_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.query_one("#areview-start-error").display = False

    # ----- answering ----------------------------------------------------------------

    def _show_error(self, text: str) -> None:
        error = self.query_one("#areview-start-error", Static)
        error.update(text)
        error.display = True

    @on(Input.Submitted, "#areview-name")
    @on(Input.Submitted, "#areview-days")
    @on(Button.Pressed, "#areview-start-ok")
    def _submit(self, event: Input.Submitted | Button.Pressed) -> None:
        event.stop()
        field = self.query_one("#areview-name", Input)
        try:
            name = clean_name(field.value)
        except ValidationFailed as exc:
            self._show_error(exc.render(self.language))
            field.focus()
            return
        days = self._days()
        if days is None:
            self._show_error(self.tr("access_review.days_bad", most=MAX_ACCESS_REVIEW_DAYS))
            self.query_one("#areview-days", Input).focus()
            return
        unit = self.query_one("#areview-unit", Select).value
        code = unit if isinstance(unit, str) else self.choices[0].code
        self.dismiss(StartRequest(name=name, unit_code=code, days=days))

    @on(Button.Pressed, "#areview-start-cancel")
    def _cancel_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
