"""權限檢閱: the items of one access review that this 管理者 may decide
(docs/access-review.md).

At the top, the review's scope, last day and progress; a filter (待決定 / 全部); 20
items a page with the holder, unit, category, role, last login (or 從未登入), the
recommendation and the decision; below, the highlighted item whole. Space selects
items for a batch (F2 the whole page), kept across pages. ``k`` keeps the selection
(or the highlighted item) after a confirmation; ``r`` removes it after
:class:`ReasonDialog` asked why and a confirmation that names every account whose last
permission it takes (that account is disabled with it). An item someone else decided
first comes back as a conflict naming who, and is decided only once. F5 reloads, PgUp
/ PgDn page, Esc goes back.

The screen is thin: the service decides each item on its own and says what became of
it. Names, units and reasons are shown as plain text, never markup.
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Static

from smis_tui.core.clock import taiwan_date
from smis_tui.screens import STYLES
from smis_tui.screens.access_reviews import review_date
from smis_tui.screens.base import KioskScreen
from smis_tui.screens.paged import PagedList
from smis_tui.screens.reason_dialog import ReasonDialog
from smis_tui.services import Services
from smis_tui.services.access_review import (
    DecideResult,
    ItemDecision,
    ItemFilter,
    ItemPage,
    Outcome,
    ReviewItem,
    ReviewState,
    ReviewSummary,
)
from smis_tui.services.accounts import AccountView
from smis_tui.services.errors import ValidationFailed
from smis_tui.text import render_error
from smis_tui.text.labels import category_label, listed, role_label
from smis_tui.widgets.dialogs import MessageDialog
from smis_tui.widgets.keys_in_order import Select
from smis_tui.widgets.paged_table import Column, PagedTable, page_keys
from smis_tui.widgets.prose import Prose
from smis_tui.widgets.safe import plain, plain_cell
from smis_tui.widgets.table import DataTable

CONFIRM_LISTED = 5
"""Items a batch's dialogs list before ``…另有 N 項`` (they fit 80×24)."""


class AccessReviewItemsScreen(PagedList, KioskScreen[None]):
    """The items of ``review`` that ``reviewer`` may decide; Esc pops the screen."""

    CSS_PATH = STYLES / "access_review.tcss"
    BINDINGS = [
        Binding("escape", "back", "common.back", key_display="Esc"),
        Binding("space", "toggle_select", "common.select", key_display="Space"),
        Binding("k", "keep", "access_review.keep", key_display="k"),
        Binding("r", "remove", "access_review.remove", key_display="r"),
        Binding("f2", "select_page", "review.key_select_page", key_display="F2"),
        Binding("f5", "refresh", "access_review.key_refresh", key_display="F5"),
        *page_keys("common.previous_page", "common.next_page"),
    ]

    def __init__(
        self, services: Services, reviewer: AccountView, language: str, review: ReviewSummary
    ) -> None:
        super().__init__(language)
        self.services = services
        self.reviewer = reviewer
        self.review = review
        self.page: ItemPage | None = None
        """The page on display (None until the first answer, or after a failure)."""
        self.show = ItemFilter.OPEN
        self.selected: dict[int, ReviewItem] = {}
        """Items selected for a batch, on any page, as last listed."""
        self.deciding = False
        self._items: dict[str, ReviewItem] = {}
        self.paged = PagedTable(
            [
                Column("mark", self.tr("access_review.col_mark")),
                Column("holder", self.tr("access_review.col_holder")),
                Column("unit", self.tr("common.unit")),
                Column("category", self.tr("common.category")),
                Column("role", self.tr("common.role")),
                Column("login", self.tr("access_review.col_last_login")),
                Column("advice", self.tr("access_review.col_advice")),
                Column("decision", self.tr("access_review.col_decision")),
            ],
            line_key="access_review.items_page_line",
            empty=self.tr("access_review.items_empty"),
            language=language,
            # When the columns are too wide these give way; the detail area shows them whole.
            give_way=("unit", "category", "role", "holder"),
            id="areview-items",
        )

    # ------------------------------------------------------------------ names

    def _category(self, item: ReviewItem) -> str:
        return category_label(item.category_name, item.category_name_en, self.language)

    def _role(self, item: ReviewItem) -> str:
        return role_label(item.role, self.language, item.options)

    def _permission(self, item: ReviewItem) -> str:
        return self.tr("control.permission", category=self._category(item), role=self._role(item))

    def _login(self, item: ReviewItem) -> str:
        if item.last_login_at is None:
            return self.tr("access_review.never")
        return review_date(taiwan_date(item.last_login_at), self.language)

    def _decision(self, item: ReviewItem) -> str:
        if item.decision is None:
            return self.tr("access_review.undecided")
        word = self.tr(f"access_review.decision_{item.decision}")
        return (
            self.tr("access_review.decision_by_default", decision=word) if item.by_default else word
        )

    # ------------------------------------------------------------------ layout

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="areview-heading"):
            yield Static(
                plain(self.tr("access_review.items_title", name=self.review.name)),
                id="areview-items-title",
            )
            yield Static("", id="areview-selected", markup=False)
        yield Prose("", id="areview-head", markup=False)
        with Horizontal(id="areview-filters"):
            yield Label(self.tr("common.status"), markup=False, classes="areview-label")
            yield Select(
                [
                    (Text(self.tr("access_review.show_open")), str(ItemFilter.OPEN)),
                    (Text(self.tr("access_review.show_all")), str(ItemFilter.ALL)),
                ],
                value=str(ItemFilter.OPEN),
                allow_blank=False,
                id="areview-show",
            )
        yield self.paged
        with Vertical(id="areview-detail") as detail:
            detail.border_title = self.tr("access_review.detail_title")
            yield Static("", id="areview-detail-text", markup=False)
        yield Prose("", id="areview-items-message", markup=False)

    def on_mount(self) -> None:
        self.sub_title = self.tr("access_review.title")
        self._show_head(self.review, None)
        self.paged.table.focus()
        self.load_page(1)

    def _show_head(self, review: ReviewSummary, page: ItemPage | None) -> None:
        self.review = review
        head = self.tr(
            "access_review.items_head",
            unit=review.unit_name,
            due=review_date(review.due_on, self.language),
            state=self.tr(f"access_review.state_{review.state}"),
            decided=review.decided,
            total=review.total,
            open=page.mine_open if page is not None else "…",
            mine=page.mine if page is not None else "…",
        )
        self.query_one("#areview-head", Prose).update(head)

    # ------------------------------------------------------------------ loading

    def load_page(self, page: int) -> None:
        self.paged.page = page
        reviewer, review_id, show = self.reviewer.id, self.review.review_id, self.show
        self.call_service(
            lambda: self.services.access_reviews.items(reviewer, review_id, show=show, page=page),
            self._loaded,
            group="items",
            failed=self._load_failed,
        )

    def _load_failed(self, error: Exception) -> None:
        self.page = None
        self._items = {}
        self.paged.show_failure(render_error(error, self.language))
        self._show_detail()

    def _loaded(self, page: ItemPage) -> None:
        self.page = page
        previous = self.paged.current_key
        self._items = {str(item.item_id): item for item in page.items}
        for item in page.items:
            if item.item_id in self.selected:
                self.selected[item.item_id] = item
        keys = list(self._items)
        cursor = (
            keys.index(previous)
            if previous in keys
            else min(self.paged.table.cursor_row, max(len(keys) - 1, 0))
        )
        self.paged.empty = self.tr(
            "access_review.items_empty"
            if self.show == ItemFilter.OPEN
            else "access_review.items_empty_all"
        )
        self.paged.show_page(
            page, [(key, self._cells(item)) for key, item in self._items.items()], cursor=cursor
        )
        self._show_head(page.review, page)
        self._show_detail()
        self.refresh_bindings()

    def _cells(self, item: ReviewItem) -> tuple[Text, ...]:
        mark = self.tr("access_review.mark_selected") if item.item_id in self.selected else ""
        return (
            Text(mark, end=""),
            plain_cell(item.holder_name),
            plain_cell(item.unit_name),
            plain_cell(self._category(item)),
            plain_cell(self._role(item)),
            plain_cell(self._login(item)),
            plain_cell(self.tr(f"access_review.advice_{item.recommendation}")),
            plain_cell(self._decision(item)),
        )

    def _current(self) -> ReviewItem | None:
        key = self.paged.current_key
        return self._items.get(key) if key is not None else None

    def _show_detail(self) -> None:
        self.query_one("#areview-selected", Static).update(
            self.tr("access_review.selected_count", count=len(self.selected))
            if self.selected
            else ""
        )
        detail = self.query_one("#areview-detail-text", Static)
        item = self._current()
        if item is None:
            detail.update(self.tr("access_review.detail_pick") if self._items else "")
            return
        lines = [
            self.tr(
                "access_review.detail_holder",
                name=item.holder_name,
                masked_id=item.masked_id,
                unit_code=item.unit_code,
                unit_name=item.unit_name,
            ),
            self.tr(
                "access_review.detail_permission",
                category=self._category(item),
                role=self._role(item),
                login=self._login(item),
                advice=self.tr(f"access_review.advice_{item.recommendation}"),
                days=self.review.inactive_days,
            ),
        ]
        if item.decision is not None:
            by = item.decided_by or self.tr("access_review.system")
            date = (
                review_date(taiwan_date(item.decided_at), self.language) if item.decided_at else ""
            )
            key = (
                "access_review.detail_decided_reason"
                if item.reason
                else "access_review.detail_decided"
            )
            lines.append(
                self.tr(key, decision=self._decision(item), by=by, date=date, reason=item.reason)
            )
        elif not item.granted:
            lines.append(self.tr("access_review.detail_not_granted"))
        elif item.permissions_left == 1:
            lines.append(self.tr("access_review.detail_last"))
        # One line each, whatever the data holds; shown as plain text.
        detail.update(Text("\n".join(plain_cell(line).plain for line in lines)))

    def _say(self, text: str, kind: str = "info") -> None:
        message = self.query_one("#areview-items-message", Prose)
        message.update(text)
        for name in ("-info", "-ok", "-error"):
            message.set_class(name == f"-{kind}", name)

    # ------------------------------------------------------------------ choosing

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("toggle_select", "select_page"):
            # Space belongs to the list that has the focus.
            return isinstance(self.focused, DataTable)
        if action in ("keep", "remove"):
            if self.review.state != ReviewState.OPEN:
                return None
            return (
                None if self.deciding or (self._current() is None and not self.selected) else True
            )
        return super().check_action(action, parameters)

    def _select(self, items: list[ReviewItem], on: bool) -> None:
        table = self.paged.table
        for item in items:
            if on:
                self.selected[item.item_id] = item
            else:
                self.selected.pop(item.item_id, None)
            mark = self.tr("access_review.mark_selected") if on else ""
            table.update_cell(str(item.item_id), "mark", Text(mark, end=""))
        self._show_detail()
        self.refresh_bindings()

    def action_toggle_select(self) -> None:
        item = self._current()
        if item is None:
            return
        self._select([item], item.item_id not in self.selected)
        table = self.paged.table
        if table.cursor_row < table.row_count - 1:
            table.move_cursor(row=table.cursor_row + 1, animate=False)

    def action_select_page(self) -> None:
        items = list(self._items.values())
        self._select(items, not {item.item_id for item in items} <= set(self.selected))

    def _chosen(self) -> tuple[ReviewItem, ...]:
        if self.selected:
            return tuple(self.selected.values())
        current = self._current()
        return (current,) if current is not None else ()

    def _ready(self) -> tuple[ReviewItem, ...]:
        if self.deciding:
            self._say(self.tr("access_review.busy"), "error")
            return ()
        if self.review.state != ReviewState.OPEN:
            self._say(self.tr("access_review.not_open"), "error")
            return ()
        chosen = self._chosen()
        if not chosen:
            self._say(self.tr("access_review.nothing_chosen"), "error")
        return chosen

    def _names(self, item: ReviewItem) -> dict[str, object]:
        return {
            "name": item.holder_name,
            "unit": item.unit_name,
            "permission": self._permission(item),
        }

    def _listed(self, items: tuple[ReviewItem, ...]) -> str:
        lines = [
            self.tr("access_review.item_line", **self._names(i)) for i in items[:CONFIRM_LISTED]
        ]
        if len(items) > CONFIRM_LISTED:
            lines.append(self.tr("access_review.more", count=len(items) - CONFIRM_LISTED))
        return "\n".join(plain_cell(line).plain for line in lines)

    @staticmethod
    def _last_permissions(items: tuple[ReviewItem, ...]) -> list[str]:
        """The holders whose every permission still in force is among ``items``: removing
        them disables their account."""
        chosen: dict[int, int] = {}
        holders: dict[int, ReviewItem] = {}
        for item in items:
            if item.granted and item.decision is None:
                chosen[item.account_id] = chosen.get(item.account_id, 0) + 1
                holders[item.account_id] = item
        return [
            holders[account].holder_name
            for account, count in chosen.items()
            if 0 < holders[account].permissions_left <= count
        ]

    # ------------------------------------------------------------------ deciding

    def _confirm(
        self,
        text: str,
        decision: ItemDecision,
        chosen: tuple[ReviewItem, ...],
        reason: str,
        *,
        destructive: bool,
    ) -> None:
        """Ask ``text``; on 確定 (labelled with the decision) decide ``chosen``."""

        def confirmed(answer: bool | None) -> None:
            if answer:
                self._decide(decision, chosen, reason)

        self.app.push_screen(
            MessageDialog(
                text,
                language=self.language,
                cancel=True,
                title=self.tr("access_review.title"),
                ok_label=self.tr(
                    "access_review.keep"
                    if decision is ItemDecision.KEEP
                    else "access_review.remove"
                ),
                destructive=destructive,
            ),
            confirmed,
        )

    def action_keep(self) -> None:
        chosen = self._ready()
        if not chosen:
            return
        many = len(chosen) > 1
        text = (
            self.tr(
                "access_review.confirm_keep_many", count=len(chosen), items=self._listed(chosen)
            )
            if many
            else self.tr("access_review.confirm_keep_one", **self._names(chosen[0]))
        )

        self._confirm(text, ItemDecision.KEEP, chosen, "", destructive=many)

    def action_remove(self) -> None:
        chosen = self._ready()
        if not chosen:
            return
        prompt = (
            self.tr("access_review.reason_one", **self._names(chosen[0]))
            if len(chosen) == 1
            else self.tr("access_review.reason_many", count=len(chosen), items=self._listed(chosen))
        )
        last = self._last_permissions(chosen)

        def reasoned(reason: str | None) -> None:
            if not reason:
                return
            text = (
                self.tr(
                    "access_review.confirm_remove_last",
                    count=len(chosen),
                    names=listed(last, self.language),
                    reason=reason,
                )
                if last
                else self.tr("access_review.confirm_remove", count=len(chosen), reason=reason)
            )
            self._confirm(text, ItemDecision.REMOVE, chosen, reason, destructive=True)

        self.app.push_screen(
            ReasonDialog(
                self.language,
                title=self.tr("access_review.reason_title"),
                prompt=prompt,
                placeholder=self.tr("access_review.reason_placeholder"),
                submit=self.tr("access_review.remove"),
            ),
            reasoned,
        )

    def _decide(self, decision: ItemDecision, items: tuple[ReviewItem, ...], reason: str) -> None:
        if self.deciding:
            self._say(self.tr("access_review.busy"), "error")
            return
        self.deciding = True
        self.refresh_bindings()
        self._say(self.tr("access_review.deciding"))
        ids = [item.item_id for item in items]
        reviewer = self.reviewer.id
        self.call_service(
            lambda: self.services.access_reviews.decide(reviewer, ids, decision, reason),
            lambda result: self._decided(decision, items, result),
            group="decide",
            failed=self._decide_failed,
        )

    def _decide_failed(self, error: Exception) -> None:
        self.deciding = False
        self.refresh_bindings()
        text = (
            render_error(error, self.language)
            if isinstance(error, ValidationFailed)
            else self.tr("access_review.decide_failed")
        )
        self._say(text, "error")
        if self.is_current:
            self.app.push_screen(MessageDialog(text, language=self.language))

    def _decided(
        self, decision: ItemDecision, items: tuple[ReviewItem, ...], result: DecideResult
    ) -> None:
        self.deciding = False
        for item_id in result.outcomes:
            if result.outcomes[item_id] in (Outcome.DECIDED, Outcome.GONE, Outcome.CONFLICT):
                self.selected.pop(item_id, None)
        count = len(result.decided)
        if decision == ItemDecision.KEEP:
            done = self.tr("access_review.kept", count=count)
        elif result.disabled:
            done = self.tr(
                "access_review.removed_disabled", count=count, accounts=len(result.disabled)
            )
        else:
            done = self.tr("access_review.removed", count=count)
        # One line per kind of problem: a review refused as a whole says so once.
        problems = list(
            dict.fromkeys(
                self._problem(item, result)
                for item in items
                if result.outcomes.get(item.item_id) not in (None, Outcome.DECIDED)
            )
        )
        if problems:
            lines = [done, *problems] if count else problems
            self._say(" ".join(lines), "error")
            if self.is_current:
                self.app.push_screen(
                    MessageDialog(
                        "\n".join(lines),
                        language=self.language,
                        title=self.tr("access_review.not_decided_title"),
                    )
                )
        else:
            self._say(done, "ok")
        self.load_page(self.paged.page)

    def _problem(self, item: ReviewItem, result: DecideResult) -> str:
        if result.outcomes.get(item.item_id) == Outcome.GONE:
            return self.tr("access_review.gone", name=item.holder_name)
        error = result.failed.get(item.item_id)
        return (
            error.render(self.language)
            if error is not None
            else self.tr("access_review.decide_failed")
        )

    # ------------------------------------------------------------------ events

    @on(Select.Changed, "#areview-show")
    def _show_changed(self, event: Select.Changed) -> None:
        event.stop()
        value = ItemFilter(event.value) if event.value in set(ItemFilter) else ItemFilter.OPEN
        if value != self.show:
            self.show = value
            self.load_page(1)

    @on(DataTable.RowHighlighted, "#areview-items DataTable")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._show_detail()
        self.refresh_bindings()

    @on(DataTable.RowSelected, "#areview-items DataTable")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter does nothing here: each decision has its own key."""
        event.stop()

    def action_refresh(self) -> None:
        self.load_page(self.paged.page)

    def action_back(self) -> None:
        self.app.pop_screen()
