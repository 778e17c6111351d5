"""The skeleton of the screens that list pages (審核, 帳號管理, 權限定期檢閱 and its
items, 軌跡紀錄, 單位查詢). Kept apart from screens.base so that the login screen's
first frame does not import the table widgets."""

from __future__ import annotations

from smis_tui.widgets.paged_table import OPEN_END, TURN_PAGE, PagedTable


class PagedList:
    """Mixed into a screen that lists pages in a PagedTable (``self.paged``): PgUp /
    PgDn, Home / End from the table and the pager's page numbers load a page through
    :meth:`load_page`."""

    paged: PagedTable

    def load_page(self, page: int) -> None:
        raise NotImplementedError

    def on_paged_table_page_wanted(self, event: PagedTable.PageWanted) -> None:
        event.stop()
        self.load_page(event.page)

    def action_turn_page(self, step: int) -> None:
        self.paged.turn(step)

    def action_open_end(self, end: int) -> None:
        self.paged.open_end(end)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == TURN_PAGE:
            return self.paged.turn_allowed(parameters)
        if action == OPEN_END:
            return self.paged.end_allowed(parameters)
        return True
