"""權限定期檢閱: the access reviews that concern a 管理者 (docs/access-review.md).

One row per review, newest first: its name, the units it covers, its last day, its
state (進行中, 已截止 until maintenance applies the defaults, 已結束), how many of its
items are decided, and how many wait for this 管理者. Enter opens the review's items
(:class:`AccessReviewItemsScreen`); F2 starts a review (a 疾管署 or 衛生局 管理者 only,
:class:`AccessReviewStartDialog`); F5 reloads; PgUp / PgDn page; Esc goes back. Names
typed by people are shown as plain text.
"""

from __future__ import annotations

import datetime as dt

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Static

from smis_tui.core.rocdate import to_roc
from smis_tui.screens import STYLES
from smis_tui.screens.access_review_start import AccessReviewStartDialog, StartRequest
from smis_tui.screens.base import KioskScreen
from smis_tui.screens.paged import PagedList
from smis_tui.services import Services
from smis_tui.services.access_review import ReviewPage, ReviewSummary, StartChoice
from smis_tui.services.accounts import AccountView
from smis_tui.text import render_error
from smis_tui.widgets.dialogs import MessageDialog
from smis_tui.widgets.paged_table import Column, PagedTable, page_keys
from smis_tui.widgets.prose import Prose
from smis_tui.widgets.safe import plain_cell
from smis_tui.widgets.table import DataTable

NAME_COLUMN_MAX = 24


def review_date(day: dt.date, language: str) -> str:
    """A day as people read it here: 民國 in Chinese, ISO in English."""
    return to_roc(day) if language == "zh_TW" else day.isoformat()


class AccessReviewsScreen(PagedList, KioskScreen[None]):
    """The reviews that concern ``viewer``; Esc pops the screen."""

    CSS_PATH = STYLES / "access_review.tcss"
    BINDINGS = [
        Binding("escape", "back", "common.back", key_display="Esc"),
        # A priority key: the table's own Enter (hidden) would take it first.
        Binding("enter", "open", "access_review.open", key_display="Enter", priority=True),
        Binding("f2", "start", "access_review.start"),
        Binding("f5", "refresh", "access_review.key_refresh"),
        *page_keys("common.previous_page", "common.next_page"),
    ]

    def __init__(self, services: Services, viewer: AccountView, language: str) -> None:
        super().__init__(language)
        self.services = services
        self.viewer = viewer
        self.result: ReviewPage | None = None
        """The page on display (None until the first answer, or after a failure)."""
        self.choices: tuple[StartChoice, ...] | None = None
        """Where the viewer may start a review (None until known)."""
        self.starting = False
        self._rows: dict[str, ReviewSummary] = {}
        self.paged = PagedTable(
            [
                Column("name", self.tr("access_review.col_name"), most=NAME_COLUMN_MAX),
                Column("scope", self.tr("access_review.col_scope")),
                Column("due", self.tr("access_review.col_due")),
                Column("state", self.tr("access_review.col_state")),
                Column("progress", self.tr("access_review.col_progress")),
                Column("mine", self.tr("access_review.col_mine")),
            ],
            line_key="access_review.page_line",
            empty=self.tr("access_review.empty"),
            language=language,
            give_way=("scope", "name"),
            id="areview-list",
        )

    # ------------------------------------------------------------------ layout

    def compose_body(self) -> ComposeResult:
        settings = self.services.settings
        default = self.tr(f"access_review.default_{settings.access_review_default}")
        with Vertical(id="areview-body"):
            yield Static(self.tr("access_review.title"), id="areview-title")
            yield Prose(
                self.tr(
                    "access_review.intro",
                    days=settings.access_review_inactive_days,
                    default=default,
                ),
                id="areview-intro",
                markup=False,
            )
            yield self.paged
            yield Prose("", id="areview-message", markup=False)

    def on_mount(self) -> None:
        self.sub_title = self.tr("access_review.title")
        self.paged.table.focus()
        viewer = self.viewer.id
        self.call_service(
            lambda: self.services.access_reviews.start_choices(viewer),
            self._choices_known,
            group="choices",
            failed=lambda _error: self._choices_known(()),
        )
        self.load_page(1)

    def _choices_known(self, choices: tuple[StartChoice, ...]) -> None:
        self.choices = choices
        self.refresh_bindings()

    # ------------------------------------------------------------------ loading

    def load_page(self, page: int) -> None:
        self.paged.page = page
        viewer = self.viewer.id
        self.call_service(
            lambda: self.services.access_reviews.reviews(viewer, page=page),
            self._loaded,
            group="reviews",
            failed=self._load_failed,
        )

    def _load_failed(self, error: Exception) -> None:
        self.result = None
        self._rows = {}
        self.paged.show_failure(self.tr("access_review.load_failed"))

    def _loaded(self, result: ReviewPage, select: int | None = None) -> None:
        self.result = result
        previous = self.paged.current_key
        self._rows = {str(review.review_id): review for review in result.reviews}
        keys = list(self._rows)
        wanted = str(select) if select is not None else previous
        cursor = keys.index(wanted) if wanted in keys else 0
        self.paged.show_page(
            result,
            [(key, self._cells(review)) for key, review in self._rows.items()],
            cursor=cursor,
        )
        self.refresh_bindings()

    def _cells(self, review: ReviewSummary) -> tuple[Text, ...]:
        mine = "" if review.mine_open is None else str(review.mine_open)
        texts = (
            review.name,
            self.tr("access_review.scope_below", unit=review.unit_name),
            review_date(review.due_on, self.language),
            self.tr(f"access_review.state_{review.state}"),
            self.tr("access_review.progress", decided=review.decided, total=review.total),
            mine,
        )
        return tuple(plain_cell(text) for text in texts)

    def _current(self) -> ReviewSummary | None:
        key = self.paged.current_key
        return self._rows.get(key) if key is not None else None

    def _say(self, text: str) -> None:
        self.query_one("#areview-message", Prose).update(text)

    # ------------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "start":
            return None if self.starting or not self.choices else True
        if action == "open":
            return None if self._current() is None else True
        return super().check_action(action, parameters)

    @on(DataTable.RowSelected, "#areview-list DataTable")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    @on(DataTable.RowHighlighted, "#areview-list DataTable")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self.refresh_bindings()

    def action_open(self) -> None:
        from smis_tui.screens.access_review_items import AccessReviewItemsScreen

        review = self._current()
        if review is not None:
            self.app.push_screen(
                AccessReviewItemsScreen(self.services, self.viewer, self.language, review)
            )

    def action_start(self) -> None:
        if not self.choices:
            self._say(self.tr("access_review.cannot_start"))
            return
        self.app.push_screen(
            AccessReviewStartDialog(
                self.language,
                choices=self.choices,
                days=self.services.settings.access_review_days,
            ),
            self._start,
        )

    def _start(self, request: StartRequest | None) -> None:
        if request is None or self.starting:
            return
        self.starting = True
        self.refresh_bindings()
        self._say(self.tr("access_review.starting"))
        reviews, viewer = self.services.access_reviews, self.viewer.id

        def start() -> tuple[int, ReviewPage]:
            review_id = reviews.start(
                viewer, request.name, days=request.days, unit_code=request.unit_code
            )
            return review_id, reviews.reviews(viewer)

        self.call_service(start, self._started, group="start", failed=self._start_failed)

    def _started(self, answer: tuple[int, ReviewPage]) -> None:
        review_id, page = answer
        self.starting = False
        self._say("")
        self._loaded(page, select=review_id)
        review = self._rows.get(str(review_id))
        if review is not None:
            self.app.push_screen(
                MessageDialog(
                    self.tr(
                        "access_review.started",
                        name=review.name,
                        items=review.total,
                        due=review_date(review.due_on, self.language),
                    ),
                    language=self.language,
                )
            )

    def _start_failed(self, error: Exception) -> None:
        self.starting = False
        self._say("")
        self.refresh_bindings()
        self.app.push_screen(
            MessageDialog(render_error(error, self.language), language=self.language)
        )

    def action_refresh(self) -> None:
        self.load_page(self.paged.page)

    def action_back(self) -> None:
        self.app.pop_screen()

    def on_screen_resume(self) -> None:
        """Back from a review's items: its progress as it is now."""
        if self.is_mounted and self.result is not None:
            self.load_page(self.paged.page)
