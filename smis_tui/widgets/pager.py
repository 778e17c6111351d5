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
(component classes ``pager--current`` and ``pager--cursor``, and the ``link-*`` rules
for the links).

A pager made with ``focusable=True`` is also worked from the keyboard: Tab reaches it,
←/→ move a highlight over the labels (shown only while it has the focus), Enter opens
the highlighted one, Home / End open the first / last page and PgUp / PgDn the page
before / after. After every page change the highlight is back on the current page.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual import events
from textual.binding import Binding
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.style import Style
from textual.widget import Widget

from smis_tui.widgets.keys_in_order import FOCUS_MARK, OwnKeysInOrder

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


class Pager(OwnKeysInOrder, Widget):
    """Page numbers to click (or, when focusable, to choose with the keyboard); see the
    module documentation for the labels and the keys."""

    COMPONENT_CLASSES = {"pager--current", "pager--cursor"}
    DEFAULT_CSS = """
    Pager > .pager--cursor {
        background: $block-cursor-background;
        color: $block-cursor-foreground;
        text-style: bold;
    }
    """
    # Binding descriptions are text keys (smis_tui.text), shown by the key bar. PgUp /
    # PgDn are not listed: the screens that list pages show them already.
    BINDINGS = [
        Binding("left", "move(-1)", "pager.choose", key_display="←→"),
        Binding("right", "move(1)", "pager.choose", show=False),
        Binding("enter", "open", "pager.open", key_display="Enter"),
        Binding("home", "go(1)", "pager.first_page", key_display="Home"),
        Binding("end", "go_last", "pager.last_page", key_display="End"),
        Binding("pageup", "step(-1)", show=False),
        Binding("pagedown", "step(1)", show=False),
    ]

    page: reactive[int] = reactive(1, layout=True)
    pages: reactive[int] = reactive(1, layout=True)

    class PageChosen(Message):
        """A page number or arrow was clicked or opened; ``page`` is the page it opens."""

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
        focusable: bool = False,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        if window < 1:
            raise ValueError("window must be at least 1")
        self.window = window
        self.can_focus = focusable
        self.set_reactive(Pager.pages, max(1, pages))
        self.set_reactive(Pager.page, min(max(1, page), max(1, pages)))
        self.highlighted = self._current_index()
        """The index in :attr:`items` of the label Enter opens."""

    @property
    def items(self) -> list[PagerItem]:
        return pager_items(self.page, self.pages, self.window)

    @property
    def labels(self) -> list[str]:
        return pager_labels(self.page, self.pages, self.window)

    @property
    def text(self) -> str:
        """The pager as plain text, e.g. ``[1] 2 3 4 5 6 7 8 9 10 > >>``."""
        return " ".join(self.labels)

    @property
    def highlighted_label(self) -> str | None:
        """The label under the highlight while the pager has the focus, else None."""
        return self.items[self.highlighted].label if self.has_focus else None

    def _current_index(self) -> int:
        return next(index for index, item in enumerate(self.items) if item.target is None)

    def _pages_changed(self) -> None:
        self.highlighted = self._current_index()
        if self.is_attached:
            self.refresh_bindings()

    def watch_page(self) -> None:
        self._pages_changed()

    def watch_pages(self) -> None:
        self._pages_changed()

    def on_focus(self, event: events.Focus) -> None:
        self.refresh()

    def on_blur(self, event: events.Blur) -> None:
        self.refresh()

    def render(self) -> Content:
        current = self.get_visual_style("pager--current", partial=True)
        # Not partial: a partial style loses an opaque component background.
        cursor = self.get_visual_style("pager--cursor")
        parts = []
        for index, item in enumerate(self.items):
            if index == self.highlighted and self.has_focus:
                # No "@click" here: the link colour is laid over every link and would
                # hide the highlight; on_click opens it instead.
                style = cursor + Style.from_meta({"pager_highlight": True})
            elif item.target is None:
                style = current
            else:
                style = Style.from_meta({"@click": f"go({item.target:d})"})
            parts.append(Content.styled(item.label, style))
        # The highlight has a shape as well as its colour: ▶ in the blank before the
        # label (a blank is kept before the first one, so nothing moves).
        shown = Content("")
        for index, part in enumerate(parts):
            pointed = self.has_focus and index == self.highlighted
            shown += Content(FOCUS_MARK if pointed else " ") + part
        return shown

    def on_click(self, event: events.Click) -> None:
        if event.style.meta.get("pager_highlight"):
            event.stop()
            self.action_open()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Keys that would open the page on display are shown dimmed."""
        if action == "go" and parameters:
            return None if parameters[0] == self.page else True
        if action == "go_last":
            return None if self.page == self.pages else True
        if action == "open":
            return None if self.items[self.highlighted].target is None else True
        return True

    def action_go(self, page: int) -> None:
        """Ask the owner for ``page`` (the links' click action)."""
        if isinstance(page, int) and 1 <= page <= self.pages and page != self.page:
            self.post_message(self.PageChosen(self, page))

    def action_go_last(self) -> None:
        self.action_go(self.pages)

    def action_step(self, step: int) -> None:
        self.action_go(self.page + step)

    def action_move(self, step: int) -> None:
        """Move the highlight ``step`` labels; it stops at either end."""
        highlighted = min(max(0, self.highlighted + step), len(self.items) - 1)
        if highlighted != self.highlighted:
            self.highlighted = highlighted
            self.refresh()
            self.refresh_bindings()

    def action_open(self) -> None:
        target = self.items[self.highlighted].target
        if target is not None:
            self.action_go(target)
