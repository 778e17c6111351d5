"""審核: the review queue of a subsystem's administrators (docs/architecture.md,
"Lifecycle").

Filters at the top (物資類別 [全部] and the reviewer's categories, 單位 by code or
name, 縣市 [全部] and the counties the reviewer reaches), the pager and the page line,
a table of the pending requests in the reviewer's scope (oldest first, 20 a page),
and below it what the reviewer decides by (issue 20, item 8): the applicant, how
long the request has waited, the role they hold in its category now and the one
asked for, their contact details, the card that proved them, their other requests
under review (marked with who decides those the reviewer may not) and what was
decided about them before, with the reasons. The pane scrolls (Tab reaches it)
when that does not fit.

Space selects rows for a batch (F2 the whole page, F3 every request of the
highlighted applicant in the queue, on whichever page: the service finds them); the
selection is kept across pages. Enter or ``a`` approves the selection, or the
highlighted row when nothing is selected, after a confirmation (a batch's lists what
it decides, with 取消 focused); ``r`` rejects, after :class:`ReasonDialog` asked for
the reason. After a decision the cursor stays with the applicant, or the message
line says whose request it moved to. F5 reloads, PgUp / PgDn page, Esc goes back.

The screen is thin: every service call runs off the UI thread and only the newest
load's answer is shown. The service decides each request on its own and says what
became of it; a request decided meanwhile by someone else comes back as a conflict
and is shown as such (nothing is decided twice). Database and user text is shown as
plain text (never markup), control characters removed.
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.timer import Timer
from textual.widgets import Input, Label, Static

from smis_tui.core.clock import taiwan_date, taiwan_today
from smis_tui.core.domain import DecisionBy, RequestStatus
from smis_tui.core.rocdate import to_roc
from smis_tui.screens import STYLES
from smis_tui.screens.base import KioskScreen
from smis_tui.screens.paged import PagedList
from smis_tui.screens.reason_dialog import ReasonDialog
from smis_tui.services import Services
from smis_tui.services.accounts import AccountView
from smis_tui.services.decisions import Decision
from smis_tui.services.errors import ConflictError, ValidationFailed
from smis_tui.services.review import (
    ApplicationCard,
    BatchResult,
    Contact,
    Decider,
    DeciderPlace,
    OtherRequest,
    Outcome,
    QueueFilters,
    QueueItem,
    QueuePage,
    RequestSummary,
)
from smis_tui.text import render_error
from smis_tui.text.labels import category_label, listed, role_label, widest_role
from smis_tui.widgets.dialogs import MessageDialog
from smis_tui.widgets.keys_in_order import Select
from smis_tui.widgets.paged_table import Column, PagedTable, page_keys
from smis_tui.widgets.prose import Prose
from smis_tui.widgets.safe import plain, plain_cell
from smis_tui.widgets.safe_input import SafeInput
from smis_tui.widgets.table import DataTable

ALL = ""
"""The value of a filter's ``[全部]``."""
DETAIL_DECISIONS = 10
"""Earlier decisions listed in the detail area (newest first) before ``…另有 N 筆``."""
CONFIRM_LISTED = 5
"""Requests a batch confirmation lists before ``…另有 N 筆`` (it fits 80×24)."""


class ReviewScreen(PagedList, KioskScreen[None]):
    """The pending requests ``reviewer`` may decide; Esc pops the screen."""

    CSS_PATH = STYLES / "review.tcss"
    DEBOUNCE_SECONDS = 0.3

    # Letters typed into the unit filter stay in the field (the field takes them first).
    BINDINGS = [
        Binding("escape", "back", "common.back", key_display="Esc"),
        Binding("space", "toggle_select", "common.select", key_display="Space"),
        Binding("a", "approve", "review.approve", key_display="a"),
        Binding("r", "reject", "review.key_reject", key_display="r"),
        Binding("f2", "select_page", "review.key_select_page", key_display="F2"),
        Binding("f3", "select_applicant", "review.key_select_applicant", key_display="F3"),
        Binding("f5", "refresh", "review.key_refresh", key_display="F5"),
        *page_keys("common.previous_page", "common.next_page"),
    ]

    def __init__(self, services: Services, reviewer: AccountView, language: str) -> None:
        super().__init__(language)
        self.services = services
        self.reviewer = reviewer
        self.page: QueuePage | None = None
        """The page on display (None until the first answer, or after a failure)."""
        self.filters: QueueFilters | None = None
        """The reviewer's filter choices (None until loaded, or when loading failed)."""
        self._filters_answered = False
        self.selected: set[int] = set()
        """Request ids selected for a batch, on any page."""
        self._selected_items: dict[int, QueueItem] = {}
        """The selected requests as last listed: what a batch confirmation names."""
        self._follow: int | None = None
        """The applicant (account id) whose request was decided: the cursor stays with
        them when the page comes back."""
        self.deciding = False
        self._choosing_applicant = False
        """F3's question (every request of one applicant) is under way."""
        self._detail_of: int | None = None
        """The request the detail pane shows."""
        self._items: dict[str, QueueItem] = {}
        self._category_code: str | None = None
        self._county: str | None = None
        self._unit = ""
        self._loading = False
        self._load_failed = False
        self._cursor_note = ""
        """Said after the outcome of a decision: where the cursor went."""
        self._said = ("", "info")
        """The message line's text and kind."""
        self._debounce: Timer | None = None
        self.paged = PagedTable(
            [
                Column("mark", self.tr("review.column_mark")),
                Column("date", self.tr("common.apply_date")),
                Column("name", self.tr("common.name")),
                Column("id", self.tr("common.id")),
                Column("unit", self.tr("common.unit")),
                Column("category", self.tr("common.category")),
                Column("role", self.tr("review.column_role"), floor=widest_role(language)),
            ],
            line_key="review.page_line",
            empty=self.tr("review.empty"),
            language=language,
            # When the columns are too wide these give way; the detail area shows them whole.
            give_way=("unit", "category", "role", "name"),
            id="review-list",
        )

    # ------------------------------------------------------------------ names

    def _category(self, request: QueueItem | OtherRequest) -> str:
        return category_label(request.category_name, request.category_name_en, self.language)

    def _role(self, request: QueueItem | OtherRequest) -> str:
        return role_label(request.role, self.language, request.options)

    # ------------------------------------------------------------------ layout

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="review-heading"):
            yield Static(
                plain(
                    self.tr(
                        "review.who", name=self.reviewer.data.name, unit=self.reviewer.unit_name
                    )
                ),
                id="review-who",
            )
            yield Static("", id="review-selected", markup=False)
        with Horizontal(id="review-filters"):
            yield Label(self.tr("common.category"), markup=False, classes="review-label")
            yield Select(
                self._category_options(), value=ALL, allow_blank=False, id="review-category"
            )
            yield Label(self.tr("common.unit"), markup=False, classes="review-label")
            yield SafeInput(placeholder=self.tr("common.unit_placeholder"), id="review-unit")
            yield Label(self.tr("common.county"), markup=False, classes="review-label")
            yield Select(self._county_options(), value=ALL, allow_blank=False, id="review-county")
        yield self.paged
        # Focusable, so that the keys scroll what does not fit (long reasons at 80×24).
        with VerticalScroll(id="review-detail") as detail:
            detail.border_title = self.tr("review.detail_title")
            yield Prose("", id="review-detail-text")
        yield Prose("", id="review-message", markup=False)

    def on_mount(self) -> None:
        self.sub_title = self.tr("review.title")
        self.paged.table.focus()
        self._load_filters()
        self.load_page(1)

    def _category_options(self) -> list[tuple[Text, str]]:
        options = [(Text(self.tr("common.all")), ALL)]
        if self.filters is not None:
            options += [
                (plain_cell(category_label(c.name, c.name_en, self.language)), c.code)
                for c in self.filters.categories
            ]
        return options

    def _county_options(self) -> list[tuple[Text, str]]:
        options = [(Text(self.tr("common.all")), ALL)]
        if self.filters is not None:
            options += [(plain_cell(county), county) for county in self.filters.counties]
        return options

    # ------------------------------------------------------------------ state

    @property
    def is_loading(self) -> bool:
        """True while typing has not settled or the newest load is unanswered."""
        return self._debounce is not None or self._loading

    @property
    def is_busy(self) -> bool:
        return (
            self.is_loading
            or self.deciding
            or self._choosing_applicant
            or not self._filters_answered
        )

    # ------------------------------------------------------------------ loading

    def _load_filters(self) -> None:
        reviewer = self.reviewer.id
        self.call_service(
            lambda: self.services.review.filters(reviewer),
            self._show_filters,
            group="filters",
            failed=lambda _error: self._show_filters(None),
        )

    def _show_filters(self, filters: QueueFilters | None) -> None:
        self._filters_answered = True
        self.filters = filters
        if filters is not None:
            self.query_one("#review-category", Select).set_options(self._category_options())
            self.query_one("#review-county", Select).set_options(self._county_options())
        self._show_state()

    def load_page(self, page: int) -> None:
        """Ask for the current filters' ``page``."""
        if self._debounce is not None:
            self._debounce.stop()
            self._debounce = None
        self.paged.page = page
        self._loading = True
        reviewer, category, county = self.reviewer.id, self._category_code, self._county
        unit = self._unit.strip() or None
        self.call_service(
            lambda: self.services.review.queue(
                reviewer, category=category, unit=unit, county=county, page=page
            ),
            self._show_page,
            group="queue",
            failed=lambda _error: self._show_page(None),
        )

    def _show_page(self, page: QueuePage | None) -> None:
        self._loading = False
        self._load_failed = page is None
        self.page = page
        items = page.items if page is not None else ()
        self._items = {str(item.request_id): item for item in items}
        # A selection outlives paging: what is listed again is named as it is now.
        for item in items:
            if item.request_id in self.selected:
                self._selected_items[item.request_id] = item
        if page is None:
            self.paged.show_failure(self.tr("review.load_failed"))
        else:
            rows = [(str(item.request_id), self._cells(item)) for item in items]
            self.paged.show_page(page, rows, cursor=self._cursor_after_load(items))
        if self._cursor_note:
            text, kind = self._said
            self._say(f"{text} {self._cursor_note}" if text else self._cursor_note, kind)
            self._cursor_note = ""
        self._show_state()
        self._show_detail()

    def _cursor_after_load(self, items: tuple[QueueItem, ...]) -> int:
        """The row the cursor goes to: after a decision, the first request of the same
        applicant, or (they have none left here) the same row, saying whose it is."""
        row = self.paged.table.cursor_row
        follow, self._follow = self._follow, None
        if follow is None or not items:
            return row
        for index, item in enumerate(items):
            if item.account_id == follow:
                return index
        row = min(row, len(items) - 1)
        self._cursor_note = self.tr("review.cursor_moved", name=items[row].applicant_name)
        return row

    def _cells(self, item: QueueItem) -> tuple[Text, ...]:
        return (
            Text(
                self.tr("review.mark_selected") if item.request_id in self.selected else "",
                end="",
            ),
            plain_cell(to_roc(item.submitted_on)),
            plain_cell(item.applicant_name),
            plain_cell(item.masked_id),
            plain_cell(item.unit_name),
            plain_cell(self._category(item)),
            plain_cell(self._role(item)),
        )

    def _show_state(self) -> None:
        """In the table's place, when there is nothing to list: no scope, a failed
        load, an empty queue. The message line stays for what the reviewer did."""
        text = ""
        if self.filters is not None and not self.filters.has_scope:
            text = self.tr("review.no_scope")
        elif self._load_failed or (self._filters_answered and self.filters is None):
            text = self.tr("review.load_failed")
        elif self.page is not None and not self.page.items:
            text = self.tr("review.empty")
        self.paged.show_notice(text, error=self._load_failed)
        if self.paged.table.display and self.focused is None:
            self.paged.table.focus()

    def _say(self, text: str, kind: str) -> None:
        self._said = (text, kind)
        message = self.query_one("#review-message", Static)
        message.update(plain(text))
        for name in ("-info", "-ok", "-error"):
            message.set_class(name == f"-{kind}", name)

    def _show_selected_count(self) -> None:
        self.query_one("#review-selected", Static).update(
            self.tr("review.selected_count", count=len(self.selected)) if self.selected else ""
        )

    def _current(self) -> QueueItem | None:
        key = self.paged.current_key
        return self._items.get(key) if key is not None else None

    def _card_line(self, card: ApplicationCard | None) -> str:
        """Which card proved the applicant, and how it matched the ID: approving
        confirms that identity."""
        if card is None:
            return self.tr("review.card_unproven")
        if card.match == "full_id":
            match = self.tr("review.card_full_id")
        elif card.match == "name_and_last4":
            match = self.tr("review.card_name_and_last4")
        else:
            kind = (
                self.tr(f"login.card_kind.{card.kind}")
                if card.kind in ("hpc", "moica", "piv")
                else card.kind
            )
            match = self.tr("review.card_bound", kind=kind)
        fingerprint = ":".join(card.cert_sha256[i : i + 2] for i in range(0, 16, 2)).upper()
        return self.tr("review.card_line", match=match, fingerprint=fingerprint)

    def _show_detail(self) -> None:
        self._show_selected_count()
        detail = self.query_one("#review-detail-text", Prose)
        item = self._current()
        if item is None:
            detail.update(self.tr("review.detail_empty") if self.page and self.page.items else "")
            return
        lines = [
            self.tr(
                "review.detail_applicant",
                request=item.request_id,
                name=item.applicant_name,
                masked_id=item.masked_id,
                unit_code=item.unit_code,
                unit_name=item.unit_name,
                county=item.county,
            ),
            self._waited_line(item),
            self.tr(
                "review.detail_change",
                category=self._category(item),
                current=self._current_roles(item),
                requested=self._role(item),
            ),
            *self._contact_lines(item.contact),
            self._card_line(item.card),
            *self._other_lines(item.other_pending),
            *self._decision_lines(item.decisions),
        ]
        # One line each, whatever the data holds (a line break in a name stays out);
        # never markup, hidden characters removed.
        detail.update("\n".join(plain_cell(line).plain for line in lines))
        if item.request_id != self._detail_of:
            # Another request: read from its top, not where the last one was left.
            self._detail_of = item.request_id
            self.query_one("#review-detail", VerticalScroll).scroll_home(animate=False)

    def _waited_line(self, item: QueueItem) -> str:
        """How long it has waited, in calendar days in Taiwan, counted today."""
        days = item.waited_days(taiwan_today())
        date = to_roc(item.submitted_on)
        if days == 0:
            return self.tr("review.detail_waited_today", date=date)
        key = "review.detail_waited_one" if days == 1 else "review.detail_waited"
        return self.tr(key, days=days, date=date)

    def _current_roles(self, request: RequestSummary) -> str:
        """The roles held in the request's category now (無 when none), each with its
        unit when that is not the request's."""
        if not request.current:
            return self.tr("review.role_none")
        return listed(
            (
                role_label(held.role, self.language, held.options)
                if held.unit_code == request.unit_code
                else self.tr(
                    "review.detail_role_elsewhere",
                    role=role_label(held.role, self.language, held.options),
                    unit=held.unit_name,
                )
                for held in request.current
            ),
            self.language,
        )

    def _contact_lines(self, contact: Contact | None) -> list[str]:
        """The telephones on one line, the e-mail addresses on the next, as stored."""
        if contact is None:
            return []
        phones = [
            self.tr(key, value=value)
            for key, value in (
                ("review.detail_phone", contact.phone),
                ("review.detail_phone_backup", contact.phone_backup),
                ("review.detail_mobile", contact.mobile),
            )
            if value
        ]
        mails = [
            self.tr(key, value=value)
            for key, value in (
                ("review.detail_email", contact.email),
                ("review.detail_email_backup", contact.email_backup),
            )
            if value
        ]
        separator = self.tr("review.detail_separator")
        return [separator.join(part) for part in (phones, mails) if part]

    def _other_lines(self, others: tuple[OtherRequest, ...]) -> list[str]:
        """The applicant's other requests under review, each one the reviewer may not
        decide marked with who does."""
        if not others:
            return [self.tr("review.detail_none")]
        lines = [self.tr("review.detail_others")]
        for other in others:
            line = self.tr(
                "review.detail_other",
                request=other.request_id,
                date=to_roc(other.submitted_on),
                unit_name=other.unit_name,
                category=self._category(other),
                role=self._role(other),
            )
            if other.decider is not None:
                line += self.tr("review.detail_separator") + self._decider_text(other.decider)
            lines.append(line)
        return lines

    def _decider_text(self, decider: Decider) -> str:
        if decider.place == DeciderPlace.CDC:
            return self.tr("review.decider_cdc")
        if decider.place == DeciderPlace.SUPERIOR:
            return self.tr("review.decider_superior", unit=decider.unit_name)
        if decider.place == DeciderPlace.UNIT:
            return self.tr("review.decider_unit", unit=decider.unit_name)
        return self.tr("review.decider_nobody")

    def _decision_lines(self, decisions: tuple[Decision, ...]) -> list[str]:
        """What was decided about the applicant before, newest first: each decision
        with who made it, and the reason of a refusal or a withdrawal on its own line."""
        if not decisions:
            return [self.tr("review.detail_decisions_none")]
        lines = [self.tr("review.detail_decisions")]
        for decision in decisions[:DETAIL_DECISIONS]:
            line = self.tr(
                "review.detail_decision",
                state=self.tr(f"decision.{decision.status}"),
                date=to_roc(taiwan_date(decision.decided_at)),
                category=category_label(
                    decision.category_name, decision.category_name_en, self.language
                ),
                role=role_label(decision.role, self.language, decision.options),
                unit=decision.unit_name,
            )
            who = self._decided_by(decision)
            lines.append(line + self.tr("review.detail_separator") + who if who else line)
            if decision.reason:
                lines.append(self.tr("review.detail_reason", reason=decision.reason))
        hidden = len(decisions) - DETAIL_DECISIONS
        if hidden > 0:
            lines.append(self.tr("review.detail_more", count=hidden))
        return lines

    def _decided_by(self, decision: Decision) -> str:
        """Who made ``decision``, told to a reviewer (the holder reads it in the second
        person: smis_tui.widgets.decisions)."""
        if decision.by == DecisionBy.SELF:
            return self.tr("review.decision_by_self")
        if decision.by == DecisionBy.INACTIVE:
            return self.tr("decision.by_inactive")
        withdrawn = decision.status == RequestStatus.REVOKED
        if decision.deciding_unit_name is None:
            if decision.status == RequestStatus.APPROVED:
                return ""  # granted at installation: nobody to name
            return self.tr("decision.disabled_by_admin" if withdrawn else "decision.by_admin")
        return self.tr(
            "decision.disabled_by_unit" if withdrawn else "decision.by_unit",
            unit=decision.deciding_unit_name,
        )

    # ------------------------------------------------------------------ deciding

    def _chosen(self) -> tuple[QueueItem, ...]:
        """The selection, oldest first (as the queue lists it), or else the
        highlighted request."""
        if self.selected:
            chosen = (self._selected_items[i] for i in self.selected if i in self._selected_items)
            return tuple(sorted(chosen, key=lambda item: (item.submitted_at, item.request_id)))
        current = self._current()
        return (current,) if current is not None else ()

    def _listed(self, items: tuple[QueueItem, ...]) -> str:
        """The requests a batch decides, one line each, as many as fit."""
        lines = [
            self.tr("review.batch_line", request=item.request_id, **self._describe(item))
            for item in items[:CONFIRM_LISTED]
        ]
        if len(items) > CONFIRM_LISTED:
            lines.append(self.tr("review.detail_more", count=len(items) - CONFIRM_LISTED))
        return "\n".join(plain_cell(line).plain for line in lines)

    def _ready_to_decide(self) -> tuple[QueueItem, ...]:
        if self.deciding:
            self._say(self.tr("review.busy"), "error")
            return ()
        chosen = self._chosen()
        if not chosen:
            self._say(self.tr("review.nothing_chosen"), "error")
        return chosen

    def _describe(self, item: QueueItem) -> dict[str, object]:
        return {
            "name": item.applicant_name,
            "unit_name": item.unit_name,
            "category": self._category(item),
            "role": self._role(item),
        }

    def action_approve(self) -> None:
        chosen = self._ready_to_decide()
        if not chosen:
            return
        many = len(chosen) > 1
        text = (
            self.tr("review.confirm_approve_many", count=len(chosen), items=self._listed(chosen))
            if many
            else self.tr("review.confirm_approve_one", **self._describe(chosen[0]))
        )

        def confirmed(answer: bool | None) -> None:
            if answer:
                self._decide(True, chosen, "")

        self.app.push_screen(
            MessageDialog(
                text,
                language=self.language,
                cancel=True,
                title=self.tr("review.title"),
                ok_label=self.tr("review.approve"),
                # Many decisions at once: one stray Enter must not make them.
                destructive=many,
            ),
            confirmed,
        )

    def action_reject(self) -> None:
        chosen = self._ready_to_decide()
        if not chosen:
            return
        prompt = (
            self.tr("review.reason_prompt_one", **self._describe(chosen[0]))
            if len(chosen) == 1
            else self.tr("review.reason_prompt_many", count=len(chosen), items=self._listed(chosen))
        )

        def answered(reason: str | None) -> None:
            if reason:
                self._decide(False, chosen, reason)

        self.app.push_screen(
            ReasonDialog(
                self.language,
                title=self.tr("review.reason_title"),
                prompt=prompt,
                placeholder=self.tr("review.reason_placeholder"),
                submit=self.tr("review.key_reject"),
            ),
            answered,
        )

    def _decide(self, approve: bool, items: tuple[QueueItem, ...], reason: str) -> None:
        if self.deciding:
            self._say(self.tr("review.busy"), "error")
            return
        self.deciding = True
        current = self._current()
        self._follow = current.account_id if current is not None else None
        self._say(self.tr("review.deciding"), "info")
        ids = [item.request_id for item in items]
        reviewer = self.reviewer.id
        self.call_service(
            lambda: self.services.review.decide_many(reviewer, ids, approve=approve, reason=reason),
            lambda result: self._show_decision(approve, items, result),
            group="decide",
            failed=self._decision_failed,
        )

    def _decision_failed(self, error: Exception) -> None:
        self.deciding = False
        if isinstance(error, ValidationFailed):
            text = render_error(error, self.language)
        else:
            text = self.tr("review.decide_failed")
        self._say(text, "error")
        if self.is_current:
            self.app.push_screen(MessageDialog(text, language=self.language))

    def _show_decision(
        self, approve: bool, items: tuple[QueueItem, ...], result: BatchResult
    ) -> None:
        self.deciding = False
        self.selected -= set(result.decided)
        for request_id in result.decided:
            self._selected_items.pop(request_id, None)
        done = self.tr(
            "review.approved" if approve else "review.rejected", count=len(result.decided)
        )
        problems = [
            self._problem_text(item, result.outcomes.get(item.request_id), result)
            for item in items
            if result.outcomes.get(item.request_id) != Outcome.DECIDED
        ]
        if problems:
            self._say(" ".join([done, *problems]) if result.decided else problems[0], "error")
            lines = [done, *problems] if result.decided else problems
            if self.is_current:
                self.app.push_screen(
                    MessageDialog(
                        "\n".join(lines),
                        language=self.language,
                        title=self.tr("review.not_decided_title"),
                    )
                )
        else:
            self._say(done, "ok")
        self.load_page(self.paged.page)

    def _problem_text(self, item: QueueItem, outcome: Outcome | None, result: BatchResult) -> str:
        params = {"request": item.request_id, "name": item.applicant_name}
        error = result.failed.get(item.request_id)
        if outcome == Outcome.CONFLICT and isinstance(error, ConflictError):
            status = str(error.params.get("status", ""))
            decided = status in (RequestStatus.APPROVED, RequestStatus.REJECTED)
            known = status in set(RequestStatus)
            return self.tr(
                "review.conflict_decided" if decided else "review.conflict_withdrawn",
                status=self.tr(f"review.status_{status}") if known else status,
                **params,
            )
        if outcome == Outcome.NOT_FOUND:
            return self.tr("review.not_found", **params)
        if outcome == Outcome.OUT_OF_SCOPE:
            return self.tr("review.out_of_scope", **params)
        return error.render(self.language) if error is not None else self.tr("review.decide_failed")

    # ------------------------------------------------------------------ events

    @on(Select.Changed, "#review-category")
    def _category_changed(self, event: Select.Changed) -> None:
        event.stop()
        value = event.value if isinstance(event.value, str) and event.value else None
        if value != self._category_code:
            self._category_code = value
            self.load_page(1)

    @on(Select.Changed, "#review-county")
    def _county_changed(self, event: Select.Changed) -> None:
        event.stop()
        value = event.value if isinstance(event.value, str) and event.value else None
        if value != self._county:
            self._county = value
            self.load_page(1)

    @on(Input.Changed, "#review-unit")
    def _unit_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._unit = event.value
        if self._debounce is not None:
            self._debounce.stop()
        self._debounce = self.set_timer(self.DEBOUNCE_SECONDS, self._typing_settled)

    def _typing_settled(self) -> None:
        self._debounce = None
        self.load_page(1)

    @on(Input.Submitted, "#review-unit")
    def _unit_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._unit = event.value
        self.load_page(1)
        self.paged.table.focus()

    @on(DataTable.RowHighlighted, "#review-list DataTable")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._show_detail()

    @on(DataTable.RowSelected, "#review-list DataTable")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row: approve (the selection, or this row)."""
        event.stop()
        self.action_approve()

    # ------------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("toggle_select", "select_page", "select_applicant"):
            # Space belongs to the field or list that has the focus.
            return isinstance(self.focused, DataTable)
        return super().check_action(action, parameters)

    def action_toggle_select(self) -> None:
        item = self._current()
        if item is None:
            return
        self._select([item], item.request_id not in self.selected)
        table = self.paged.table
        if table.cursor_row < table.row_count - 1:
            table.move_cursor(row=table.cursor_row + 1, animate=False)
        self._show_detail()

    def action_select_page(self) -> None:
        items = list(self._items.values())
        self._select(items, not {item.request_id for item in items} <= self.selected)
        self._show_detail()

    def action_select_applicant(self) -> None:
        """Every request of the highlighted applicant in the queue (as filtered), on
        this page or another, all on or all off. The service finds them: the screen
        knows only the page it shows."""
        current = self._current()
        if current is None or self._choosing_applicant:
            return
        self._choosing_applicant = True
        reviewer, account_id, name = self.reviewer.id, current.account_id, current.applicant_name
        category, county, unit = self._category_code, self._county, self._unit.strip() or None
        self.call_service(
            lambda: self.services.review.applicant_requests(
                reviewer, account_id, category=category, unit=unit, county=county
            ),
            lambda items: self._show_applicant_chosen(name, items),
            group="applicant",
            failed=self._applicant_failed,
        )

    def _show_applicant_chosen(self, name: str, items: tuple[QueueItem, ...]) -> None:
        self._choosing_applicant = False
        if not items:
            # Decided meanwhile, or no longer the reviewer's.
            self._say(self.tr("review.applicant_none", name=name), "error")
            return
        on = not {item.request_id for item in items} <= self.selected
        self._select(list(items), on)
        key = "review.applicant_selected" if on else "review.applicant_unselected"
        self._say(self.tr(key, name=name, count=len(items)), "info")
        self._show_detail()

    def _applicant_failed(self, _error: Exception) -> None:
        self._choosing_applicant = False
        self._say(self.tr("review.applicant_failed"), "error")

    def _select(self, items: list[QueueItem], on: bool) -> None:
        for item in items:
            if on:
                self.selected.add(item.request_id)
                self._selected_items[item.request_id] = item
            else:
                self.selected.discard(item.request_id)
                self._selected_items.pop(item.request_id, None)
            self._refresh_mark(item)

    def _refresh_mark(self, item: QueueItem) -> None:
        """The row's mark, when the row is on the page shown (a selection may reach
        other pages: they show their marks when listed)."""
        key = str(item.request_id)
        if key not in self._items:
            return
        mark = self.tr("review.mark_selected") if item.request_id in self.selected else ""
        self.paged.table.update_cell(key, "mark", Text(mark, end=""))

    def action_refresh(self) -> None:
        if self._filters_answered and self.filters is None:
            self._filters_answered = False
            self._load_filters()
        self.load_page(self.paged.page)

    def action_back(self) -> None:
        self.app.pop_screen()
