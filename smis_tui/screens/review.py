"""審核: the review queue of a subsystem's administrators (DESIGN §3, §5).

Filters at the top (物資類別 [全部] and the reviewer's categories, 單位 by code or
name, 縣市 [全部] and the counties the reviewer reaches), the pager and the page line,
a table of the pending requests in the reviewer's scope (oldest first, 20 a page),
and below it the highlighted request's applicant with their other pending requests.

Space selects rows for a batch (F2 the whole page); Enter or ``a`` approves the
selection, or the highlighted row when nothing is selected, after a confirmation;
``r`` rejects, after :class:`ReasonDialog` asked for the reason (an empty one is
refused). F5 reloads, PgUp / PgDn page, Esc goes back.

The screen is thin: every database call runs in a worker thread (its own connection)
and posts a message back. Each load carries a sequence number and only the newest
one's answer is shown. The service decides each request on its own and says what
became of it; a request decided meanwhile by someone else comes back as a conflict
and is shown as such (nothing is decided twice). Database and user text is shown as
plain text (never markup), control characters removed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.timer import Timer
from textual.widgets import Button, DataTable, Input, Label, Select, Static

from models.db import database_proxy
from models.schema import RequestStatus
from smis_tui.core.rocdate import to_roc
from smis_tui.screens import STYLES
from smis_tui.services import Services
from smis_tui.services.accounts import AccountView
from smis_tui.services.errors import ConflictError, ServiceError, ValidationFailed
from smis_tui.services.review import (
    REASON_MAX,
    BatchResult,
    Outcome,
    QueueFilters,
    QueueItem,
    QueuePage,
)
from smis_tui.text import t
from smis_tui.widgets.bars import KeyBar, TitleBar
from smis_tui.widgets.dialogs import MessageDialog
from smis_tui.widgets.localised import Localised
from smis_tui.widgets.pager import Pager, page_bindings
from smis_tui.widgets.safe import plain, plain_cell
from smis_tui.widgets.safe_input import SafeInput

log = logging.getLogger("smis_tui.review")

STYLESHEET = STYLES / "review.tcss"
ALL = ""
"""The value of a filter's ``[全部]``."""
DETAIL_OTHERS = 3
"""Other pending requests listed in the detail area before ``…另有 N 筆``."""


def role_text(role: str, options: tuple[str, ...], language: str) -> str:
    label = t(f"role.{role}", language)
    if not options:
        return label
    joined = t("review.option_separator", language).join(options)
    return t("review.role_options", language, role=label, options=joined)


def category_text(name: str, name_en: str, language: str) -> str:
    return name_en if language == "en" and name_en else name


class ReasonDialog(Localised, ModalScreen[str | None]):
    """Asks why requests are rejected; dismisses with the reason, or None on 取消/Esc.

    An empty (or blank) reason is refused in place: the dialog stays open and says
    that a reason is required.
    """

    CSS_PATH = STYLESHEET
    BINDINGS = [Binding("escape", "cancel", show=False)]

    def __init__(self, prompt: str, language: str) -> None:
        super().__init__()
        self.prompt = prompt
        self.language = language

    def compose(self) -> ComposeResult:
        with Vertical(id="review-reason-dialog") as dialog:
            dialog.border_title = t("review.reason_title", self.language)
            yield Static(plain(self.prompt), id="review-reason-prompt")
            yield SafeInput(
                placeholder=t("review.reason_placeholder", self.language),
                max_length=REASON_MAX,
                id="review-reason",
            )
            yield Static("", id="review-reason-error", markup=False)
            with Horizontal(id="review-reason-buttons"):
                yield Button(
                    t("review.reason_submit", self.language),
                    variant="error",
                    id="review-reason-submit",
                )
                yield Button(t("review.reason_cancel", self.language), id="review-reason-cancel")

    def on_mount(self) -> None:
        self.query_one("#review-reason-error").display = False
        self.query_one("#review-reason", Input).focus()

    @on(Input.Submitted, "#review-reason")
    @on(Button.Pressed, "#review-reason-submit")
    def _submit(self, event: Input.Submitted | Button.Pressed) -> None:
        event.stop()
        reason = self.query_one("#review-reason", Input).value.strip()
        if not reason:
            error = self.query_one("#review-reason-error", Static)
            error.update(t("review.reason_required", self.language))
            error.display = True
            self.query_one("#review-reason", Input).focus()
            return
        self.dismiss(reason)

    @on(Button.Pressed, "#review-reason-cancel")
    def _cancel_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


@dataclass(frozen=True)
class _Query:
    category: str | None
    unit: str
    county: str | None
    page: int


class ReviewScreen(Localised, Screen[None]):
    """The pending requests ``reviewer`` may decide; Esc pops the screen."""

    CSS_PATH = STYLESHEET
    DEBOUNCE_SECONDS = 0.3

    _DESCRIPTIONS = {
        "back": "review.key_back",
        "toggle_select": "review.key_select",
        "select_page": "review.key_select_page",
        "approve": "review.key_approve",
        "reject": "review.key_reject",
        "refresh": "review.key_refresh",
        "previous_page": "review.key_previous",
        "next_page": "review.key_next",
    }
    # In zh-TW here; __init__ puts the descriptions in the screen's language. Letters
    # typed into the unit filter stay in the field (the field takes them first).
    BINDINGS = [
        Binding("escape", "back", _DESCRIPTIONS["back"], key_display="Esc"),
        Binding("space", "toggle_select", _DESCRIPTIONS["toggle_select"], key_display="Space"),
        Binding("a", "approve", _DESCRIPTIONS["approve"], key_display="a"),
        Binding("r", "reject", _DESCRIPTIONS["reject"], key_display="r"),
        Binding("f2", "select_page", _DESCRIPTIONS["select_page"], key_display="F2"),
        Binding("f5", "refresh", _DESCRIPTIONS["refresh"], key_display="F5"),
        *page_bindings(_DESCRIPTIONS["previous_page"], _DESCRIPTIONS["next_page"]),
    ]

    class FiltersLoaded(Message):
        def __init__(self, filters: QueueFilters | None) -> None:
            super().__init__()
            self.filters = filters

    class Loaded(Message):
        """A worker's answer to load number ``sequence`` (None if it failed)."""

        def __init__(self, sequence: int, page: QueuePage | None) -> None:
            super().__init__()
            self.sequence = sequence
            self.page = page

    class Decided(Message):
        """What became of a decision on ``items`` (``error`` when it failed as a whole)."""

        def __init__(
            self,
            approve: bool,
            items: tuple[QueueItem, ...],
            result: BatchResult | None,
            error: ServiceError | None = None,
        ) -> None:
            super().__init__()
            self.approve = approve
            self.items = items
            self.result = result
            self.error = error

    def __init__(self, services: Services, reviewer: AccountView, language: str) -> None:
        super().__init__()
        self.services = services
        self.reviewer = reviewer
        self.language = language
        self.page: QueuePage | None = None
        """The page on display (None until the first answer, or after a failure)."""
        self.filters: QueueFilters | None = None
        """The reviewer's filter choices (None until loaded, or when loading failed)."""
        self._filters_answered = False
        self.selected: set[int] = set()
        """Request ids selected for a batch (on the page on display)."""
        self.deciding = False
        self._items: dict[str, QueueItem] = {}
        self._category: str | None = None
        self._county: str | None = None
        self._unit = ""
        self._page_number = 1
        self._sequence = 0
        self._answered = 0
        self._debounce: Timer | None = None

    def _t(self, key: str, **params: object) -> str:
        return t(key, self.language, **params)

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield TitleBar()
        with Horizontal(id="review-heading"):
            yield Static(
                plain(
                    self._t(
                        "review.who", name=self.reviewer.data.name, unit=self.reviewer.unit_name
                    )
                ),
                id="review-who",
            )
            yield Static("", id="review-selected", markup=False)
        with Horizontal(id="review-filters"):
            yield Label(self._t("review.filter_category"), markup=False, classes="review-label")
            yield Select(
                self._category_options(), value=ALL, allow_blank=False, id="review-category"
            )
            yield Label(self._t("review.filter_unit"), markup=False, classes="review-label")
            yield SafeInput(placeholder=self._t("review.filter_unit_placeholder"), id="review-unit")
            yield Label(self._t("review.filter_county"), markup=False, classes="review-label")
            yield Select(self._county_options(), value=ALL, allow_blank=False, id="review-county")
        with Horizontal(id="review-paging"):
            yield Pager(id="review-pager")
            yield Static("", id="review-page-line", markup=False)
        yield DataTable(id="review-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="review-notice", markup=False)
        with Vertical(id="review-detail") as detail:
            detail.border_title = self._t("review.detail_title")
            yield Static("", id="review-detail-text", markup=False)
        yield Static("", id="review-message", markup=False)
        yield KeyBar()

    def on_mount(self) -> None:
        self.sub_title = self._t("review.title")
        self._fill_table(())
        self.query_one("#review-notice").display = False
        self.query_one("#review-table", DataTable).focus()
        self._load_filters()
        self._load(1)

    def _category_options(self) -> list[tuple[Text, str]]:
        options = [(Text(self._t("review.filter_all")), ALL)]
        if self.filters is not None:
            options += [
                (plain_cell(category_text(c.name, c.name_en, self.language)), c.code)
                for c in self.filters.categories
            ]
        return options

    def _county_options(self) -> list[tuple[Text, str]]:
        options = [(Text(self._t("review.filter_all")), ALL)]
        if self.filters is not None:
            options += [(plain_cell(county), county) for county in self.filters.counties]
        return options

    # ------------------------------------------------------------------ state

    @property
    def is_loading(self) -> bool:
        """True while typing has not settled or the newest load is unanswered."""
        return self._debounce is not None or self._answered != self._sequence

    @property
    def is_busy(self) -> bool:
        return self.is_loading or self.deciding or not self._filters_answered

    # ------------------------------------------------------------------ loading

    @work(thread=True, exclusive=True, group="review-filters", exit_on_error=False)
    def _load_filters(self) -> None:
        filters: QueueFilters | None
        try:
            with database_proxy.obj.connection_context():
                filters = self.services.review.filters(self.reviewer.id)
        except Exception:
            log.exception("loading the review filters failed")
            filters = None
        self.post_message(self.FiltersLoaded(filters))

    @on(FiltersLoaded)
    def _show_filters(self, message: FiltersLoaded) -> None:
        message.stop()
        self._filters_answered = True
        self.filters = message.filters
        if message.filters is None:
            self._show_state()
            return
        self.query_one("#review-category", Select).set_options(self._category_options())
        self.query_one("#review-county", Select).set_options(self._county_options())
        self._show_state()

    def _load(self, page: int) -> None:
        """Start load number n+1 for the current filters and ``page``."""
        if self._debounce is not None:
            self._debounce.stop()
            self._debounce = None
        self._page_number = page
        self._sequence += 1
        self._run_load(
            self._sequence, _Query(self._category, self._unit.strip(), self._county, page)
        )

    @work(thread=True, exclusive=True, group="review-load", exit_on_error=False)
    def _run_load(self, sequence: int, query: _Query) -> None:
        page: QueuePage | None
        try:
            with database_proxy.obj.connection_context():
                page = self.services.review.queue(
                    self.reviewer.id,
                    category=query.category,
                    unit=query.unit or None,
                    county=query.county,
                    page=query.page,
                )
        except Exception:
            log.exception("loading the review queue failed")
            page = None
        self.post_message(self.Loaded(sequence, page))

    @on(Loaded)
    def _show_page(self, message: Loaded) -> None:
        message.stop()
        if message.sequence != self._sequence:
            return  # an older load answering late: a newer one is on its way
        self._answered = message.sequence
        self.page = message.page
        items = message.page.items if message.page is not None else ()
        self._page_number = message.page.page if message.page is not None else 1
        self._items = {str(item.request_id): item for item in items}
        self.selected &= {item.request_id for item in items}
        self._fill_table(items)
        pager = self.query_one(Pager)
        if message.page is not None:
            pager.pages = message.page.pages
            pager.page = message.page.page
            self.query_one("#review-page-line", Static).update(
                self._t(
                    "review.page_line",
                    size=message.page.page_size,
                    page=message.page.page,
                    pages=message.page.pages,
                    total=message.page.total,
                )
            )
        self._show_state()
        self._show_detail()
        self.refresh_bindings()

    def _fill_table(self, items: tuple[QueueItem, ...]) -> None:
        """Show ``items``. Column widths are measured here (DataTable measures later, on
        idle); the unit column takes what is left and the detail area shows it whole."""
        rows = [self._cells(item) for item in items]
        table = self.query_one("#review-table", DataTable)
        cursor = table.cursor_row
        table.clear(columns=True)
        columns = (
            ("mark", "review.column_mark"),
            ("date", "review.column_date"),
            ("name", "review.column_name"),
            ("id", "review.column_id"),
            ("unit", "review.column_unit"),
            ("category", "review.column_category"),
            ("role", "review.column_role"),
        )
        headers = [Text(self._t(label), end="") for _, label in columns]
        widths = [
            max([header.cell_len, *(row[index].cell_len for row in rows)])
            for index, header in enumerate(headers)
        ]
        # Room for a vertical scrollbar is kept whether or not one shows. When the
        # columns are too wide, the unit, category, role and name columns give way
        # (in that order, down to their headers); the detail area shows them whole.
        available = (table.scrollable_content_region.width or self.app.size.width) - 2
        excess = sum(widths) + 2 * len(columns) - available
        keys = [key for key, _ in columns]
        for key in ("unit", "category", "role", "name"):
            if excess <= 0:
                break
            index = keys.index(key)
            give = min(excess, widths[index] - max(headers[index].cell_len, 4))
            if give > 0:
                widths[index] -= give
                excess -= give
        for (key, _), header, width in zip(columns, headers, widths, strict=True):
            table.add_column(header, width=width, key=key)
        for item, row in zip(items, rows, strict=True):
            table.add_row(*row, key=str(item.request_id))
        if items:
            table.move_cursor(row=min(max(cursor, 0), len(items) - 1), animate=False)

    def _cells(self, item: QueueItem) -> tuple[Text, ...]:
        return (
            Text(
                self._t("review.mark_selected") if item.request_id in self.selected else "",
                end="",
            ),
            plain_cell(to_roc(item.submitted_on)),
            plain_cell(item.applicant_name),
            plain_cell(item.masked_id),
            plain_cell(item.unit_name),
            plain_cell(category_text(item.category_name, item.category_name_en, self.language)),
            plain_cell(role_text(item.role, item.options, self.language)),
        )

    def _show_state(self) -> None:
        """In the table's place, when there is nothing to list: no scope, a failed
        load, an empty queue. The message line stays for what the reviewer did."""
        load_failed = bool(
            self.page is None and self._answered and self._answered == self._sequence
        )
        notice_text = ""
        if self.filters is not None and not self.filters.has_scope:
            notice_text = self._t("review.no_scope")
        elif load_failed or (self._filters_answered and self.filters is None):
            notice_text = self._t("review.load_failed")
        elif self.page is not None and not self.page.items:
            notice_text = self._t("review.empty")
        notice = self.query_one("#review-notice", Static)
        notice.update(notice_text)
        notice.set_class(load_failed, "-error")
        notice.display = bool(notice_text)
        table = self.query_one("#review-table", DataTable)
        table.display = not notice_text
        if table.display and self.focused is None:
            table.focus()

    def _say(self, text: str, kind: str) -> None:
        message = self.query_one("#review-message", Static)
        message.update(plain(text))
        for name in ("-info", "-ok", "-error"):
            message.set_class(name == f"-{kind}", name)

    def _show_selected_count(self) -> None:
        self.query_one("#review-selected", Static).update(
            self._t("review.selected_count", count=len(self.selected)) if self.selected else ""
        )

    def _current(self) -> QueueItem | None:
        table = self.query_one("#review-table", DataTable)
        if not table.row_count:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return self._items.get(str(row_key.value))

    def _show_detail(self) -> None:
        self._show_selected_count()
        detail = self.query_one("#review-detail-text", Static)
        item = self._current()
        if item is None:
            detail.update(self._t("review.detail_empty") if self.page and self.page.items else "")
            return
        lines = [
            self._t(
                "review.detail_applicant",
                request=item.request_id,
                name=item.applicant_name,
                masked_id=item.masked_id,
                unit_code=item.unit_code,
                unit_name=item.unit_name,
                county=item.county,
            )
        ]
        for other in item.other_pending[:DETAIL_OTHERS]:
            lines.append(
                self._t(
                    "review.detail_other",
                    request=other.request_id,
                    date=to_roc(other.submitted_on),
                    unit_name=other.unit_name,
                    category=category_text(
                        other.category_name, other.category_name_en, self.language
                    ),
                    role=role_text(other.role, other.options, self.language),
                )
            )
        hidden = len(item.other_pending) - DETAIL_OTHERS
        if hidden > 0:
            lines.append(self._t("review.detail_more", count=hidden))
        if not item.other_pending:
            lines.append(self._t("review.detail_none"))
        # One line each, whatever the data holds; shown as plain text.
        detail.update(Text("\n".join(plain_cell(line).plain for line in lines)))

    # ------------------------------------------------------------------ deciding

    def _chosen(self) -> tuple[QueueItem, ...]:
        """The selection in page order, or else the highlighted request."""
        if self.selected:
            return tuple(item for item in self._items.values() if item.request_id in self.selected)
        current = self._current()
        return (current,) if current is not None else ()

    def _ready_to_decide(self) -> tuple[QueueItem, ...]:
        if self.deciding:
            self._say(self._t("review.busy"), "error")
            return ()
        chosen = self._chosen()
        if not chosen:
            self._say(self._t("review.nothing_chosen"), "error")
        return chosen

    def _describe(self, item: QueueItem) -> dict[str, object]:
        return {
            "name": item.applicant_name,
            "unit_name": item.unit_name,
            "category": category_text(item.category_name, item.category_name_en, self.language),
            "role": role_text(item.role, item.options, self.language),
        }

    def action_approve(self) -> None:
        chosen = self._ready_to_decide()
        if not chosen:
            return
        text = (
            self._t("review.confirm_approve_one", **self._describe(chosen[0]))
            if len(chosen) == 1
            else self._t("review.confirm_approve_many", count=len(chosen))
        )

        def confirmed(answer: bool | None) -> None:
            if answer:
                self._decide(True, chosen, "")

        self.app.push_screen(
            MessageDialog(
                text,
                language=self.language,
                cancel=True,
                title=self._t("review.title"),
                ok_label=self._t("review.approve"),
                cancel_label=self._t("review.reason_cancel"),
            ),
            confirmed,
        )

    def action_reject(self) -> None:
        chosen = self._ready_to_decide()
        if not chosen:
            return
        prompt = (
            self._t("review.reason_prompt_one", **self._describe(chosen[0]))
            if len(chosen) == 1
            else self._t("review.reason_prompt_many", count=len(chosen))
        )

        def answered(reason: str | None) -> None:
            if reason:
                self._decide(False, chosen, reason)

        self.app.push_screen(ReasonDialog(prompt, self.language), answered)

    def _decide(self, approve: bool, items: tuple[QueueItem, ...], reason: str) -> None:
        if self.deciding:
            self._say(self._t("review.busy"), "error")
            return
        self.deciding = True
        self._say(self._t("review.deciding"), "info")
        self._run_decision(approve, items, reason)

    @work(thread=True, exclusive=True, group="review-decide", exit_on_error=False)
    def _run_decision(self, approve: bool, items: tuple[QueueItem, ...], reason: str) -> None:
        ids = [item.request_id for item in items]
        try:
            with database_proxy.obj.connection_context():
                result = self.services.review.decide_many(
                    self.reviewer.id, ids, approve=approve, reason=reason
                )
        except ServiceError as error:
            self.post_message(self.Decided(approve, items, None, error))
            return
        except Exception:
            log.exception("a review decision failed")
            self.post_message(self.Decided(approve, items, None))
            return
        self.post_message(self.Decided(approve, items, result))

    @on(Decided)
    def _show_decision(self, message: Decided) -> None:
        message.stop()
        self.deciding = False
        result = message.result
        if result is None:
            if isinstance(message.error, ValidationFailed):
                text = self._t("review.reason_invalid", limit=REASON_MAX)
            else:
                text = self._t("review.decide_failed")
            self._say(text, "error")
            if self.is_current:
                self.app.push_screen(MessageDialog(text, language=self.language))
            return
        self.selected -= set(result.decided)
        done = self._t(
            "review.approved" if message.approve else "review.rejected",
            count=len(result.decided),
        )
        problems = [
            self._problem_text(item, result.outcomes.get(item.request_id), result)
            for item in message.items
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
                        title=self._t("review.not_decided_title"),
                    )
                )
        else:
            self._say(done, "ok")
        self._load(self._page_number)

    def _problem_text(self, item: QueueItem, outcome: Outcome | None, result: BatchResult) -> str:
        params = {"request": item.request_id, "name": item.applicant_name}
        error = result.failed.get(item.request_id)
        if outcome == Outcome.CONFLICT and isinstance(error, ConflictError):
            status = str(error.params.get("status", ""))
            decided = status in (RequestStatus.APPROVED, RequestStatus.REJECTED)
            known = status in set(RequestStatus)
            return self._t(
                "review.conflict_decided" if decided else "review.conflict_withdrawn",
                status=self._t(f"review.status_{status}") if known else status,
                **params,
            )
        if outcome == Outcome.NOT_FOUND:
            return self._t("review.not_found", **params)
        if outcome == Outcome.OUT_OF_SCOPE:
            return self._t("review.out_of_scope", **params)
        return error.render(self.language) if error is not None else self._t("review.decide_failed")

    # ------------------------------------------------------------------ events

    @on(Select.Changed, "#review-category")
    def _category_changed(self, event: Select.Changed) -> None:
        event.stop()
        value = event.value if isinstance(event.value, str) and event.value else None
        if value != self._category:
            self._category = value
            self._load(1)

    @on(Select.Changed, "#review-county")
    def _county_changed(self, event: Select.Changed) -> None:
        event.stop()
        value = event.value if isinstance(event.value, str) and event.value else None
        if value != self._county:
            self._county = value
            self._load(1)

    @on(Input.Changed, "#review-unit")
    def _unit_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._unit = event.value
        if self._debounce is not None:
            self._debounce.stop()
        self._debounce = self.set_timer(self.DEBOUNCE_SECONDS, self._typing_settled)

    def _typing_settled(self) -> None:
        self._debounce = None
        self._load(1)

    @on(Input.Submitted, "#review-unit")
    def _unit_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._unit = event.value
        self._load(1)
        self.query_one("#review-table", DataTable).focus()

    @on(Pager.PageChosen)
    def _page_chosen(self, event: Pager.PageChosen) -> None:
        event.stop()
        self._load(event.page)

    @on(DataTable.RowHighlighted, "#review-table")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._show_detail()

    @on(DataTable.RowSelected, "#review-table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row: approve (the selection, or this row)."""
        event.stop()
        self.action_approve()

    # ------------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("previous_page", "next_page"):
            if any(select.expanded for select in self.query(Select).results(Select)):
                return False  # an open list pages itself
            if self.page is None:
                return None
            if action == "previous_page":
                return True if self._page_number > 1 else None
            return True if self._page_number < self.page.pages else None
        if action in ("toggle_select", "select_page"):
            # Space belongs to the field or list that has the focus.
            return isinstance(self.focused, DataTable)
        return True

    def action_toggle_select(self) -> None:
        item = self._current()
        if item is None:
            return
        self.selected ^= {item.request_id}
        self._refresh_mark(item)
        table = self.query_one("#review-table", DataTable)
        if table.cursor_row < table.row_count - 1:
            table.move_cursor(row=table.cursor_row + 1, animate=False)
        self._show_detail()

    def action_select_page(self) -> None:
        ids = {item.request_id for item in self._items.values()}
        self.selected = set() if ids and ids <= self.selected else ids
        for item in self._items.values():
            self._refresh_mark(item)
        self._show_detail()

    def _refresh_mark(self, item: QueueItem) -> None:
        table = self.query_one("#review-table", DataTable)
        mark = self._t("review.mark_selected") if item.request_id in self.selected else ""
        table.update_cell(str(item.request_id), "mark", Text(mark, end=""))

    def action_refresh(self) -> None:
        if self._filters_answered and self.filters is None:
            self._filters_answered = False
            self._load_filters()
        self._load(self._page_number)

    def action_previous_page(self) -> None:
        if self._page_number > 1:
            self._load(self._page_number - 1)

    def action_next_page(self) -> None:
        if self.page is not None and self._page_number < self.page.pages:
            self._load(self._page_number + 1)

    def action_back(self) -> None:
        self.app.pop_screen()
