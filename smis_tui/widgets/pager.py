"""A page-number bar in the seed's form: ``[1] 2 3 4 5 6 7 8 9 10 > >>``.

Page numbers come in fixed windows of ``window`` pages (1–10, 11–20, …). The current
page is shown in brackets and is not a link; every other label is clickable:

* ``<<`` first page and ``<`` last page of the previous window, shown when the
  current window is not the first;
* ``>`` first page of the next window and ``>>`` last page, shown when more pages
  follow the current window.

So page 15 of 259 reads ``<< < 11 12 13 14 [15] 16 17 18 19 20 > >>`` and a single
page reads ``[1]``. The widget only shows pages: its owner sets ``page`` and
``pages`` (attributes down) and hears :class:`Pager.PageChosen` (messages up).
All its text is generated from integers; its looks live in the stylesheet
(component class ``pager--current``, and the ``link-*`` rules for the links).
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.style import Style
from textual.widget import Widget

PAGE_WINDOW = 10


@dataclass(frozen=True)
class PagerItem:
    label: str
    target: int | None
    """The page this label goes to; None for the current page."""


def pager_items(page: int, pages: int, window: int = PAGE_WINDOW) -> list[PagerItem]:
    """The labels of the pager for ``page`` of ``pages``, with the page each opens.

    ``pages`` below 1 counts as 1 and ``page`` is clamped to 1..pages.
    """
    if window < 1:
        raise ValueError("window must be at least 1")
    pages = max(1, pages)
    page = min(max(1, page), pages)
    first = (page - 1) // window * window + 1
    last = min(first + window - 1, pages)
    items: list[PagerItem] = []
    if first > 1:
        items += [PagerItem("<<", 1), PagerItem("<", first - 1)]
    for number in range(first, last + 1):
        items.append(
            PagerItem(f"[{number}]", None) if number == page else PagerItem(str(number), number)
        )
    if last < pages:
        items += [PagerItem(">", last + 1), PagerItem(">>", pages)]
    return items


def pager_labels(page: int, pages: int, window: int = PAGE_WINDOW) -> list[str]:
    """E.g. ``["[1]", "2", …, "10", ">", ">>"]`` for page 1 of 259."""
    return [item.label for item in pager_items(page, pages, window)]


class Pager(Widget):
    """Clickable page numbers; see the module documentation for the labels."""

    COMPONENT_CLASSES = {"pager--current"}

    page: reactive[int] = reactive(1, layout=True)
    pages: reactive[int] = reactive(1, layout=True)

    class PageChosen(Message):
        """A page number or arrow was clicked; ``page`` is the page it opens."""

        def __init__(self, pager: Pager, page: int) -> None:
            super().__init__()
            self.pager = pager
            self.page = page

        @property
        def control(self) -> Pager:
            return self.pager

    def __init__(
        self,
        page: int = 1,
        pages: int = 1,
        *,
        window: int = PAGE_WINDOW,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        if window < 1:
            raise ValueError("window must be at least 1")
        self.window = window
        self.set_reactive(Pager.pages, max(1, pages))
        self.set_reactive(Pager.page, min(max(1, page), max(1, pages)))

    @property
    def labels(self) -> list[str]:
        return pager_labels(self.page, self.pages, self.window)

    @property
    def text(self) -> str:
        """The pager as plain text, e.g. ``[1] 2 3 4 5 6 7 8 9 10 > >>``."""
        return " ".join(self.labels)

    def render(self) -> Content:
        current = self.get_visual_style("pager--current", partial=True)
        parts = [
            Content.styled(item.label, current)
            if item.target is None
            else Content.styled(item.label, Style.from_meta({"@click": f"go({item.target:d})"}))
            for item in pager_items(self.page, self.pages, self.window)
        ]
        return Content(" ").join(parts)

    def action_go(self, page: int) -> None:
        """Ask the owner for ``page`` (the links' click action)."""
        if isinstance(page, int) and 1 <= page <= self.pages and page != self.page:
            self.post_message(self.PageChosen(self, page))
