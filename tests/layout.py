"""What a person would see as broken on a screen: a widget cut off by its container
with no way to scroll to the rest, text that needs more rows or columns than it has,
widgets drawn over each other, footer keys pushed off the edge, table columns beyond
the table. Read from Textual's own layout of the screen as it is shown."""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual.css.query import NoMatches
from textual.errors import NoWidget
from textual.geometry import Region, Size
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Button, DataTable, Footer, Input
from textual.widgets._footer import FooterKey

# Widgets that scroll their own content: their text is allowed to exceed them.
_SCROLLING = (Input, DataTable)


def _shown(screen: Screen[object]) -> list[tuple[Widget, Region, Region]]:
    """Every widget of ``screen`` laid out on it: (widget, region, clip)."""
    shown = []
    for widget in screen.walk_children(with_self=False):
        if not isinstance(widget, Widget) or not widget.display or not widget.visible:
            continue
        if any(not a.display for a in widget.ancestors if isinstance(a, Widget)):
            continue
        try:
            geometry = screen.find_widget(widget)
        except (NoWidget, NoMatches):
            continue
        if geometry.region.area:
            shown.append((widget, geometry.region, geometry.clip))
    return shown


def _can_scroll_to(widget: Widget) -> bool:
    """Whether some container around ``widget`` lets the user scroll to its hidden part."""
    for ancestor in widget.ancestors:
        if isinstance(ancestor, Widget) and (
            ancestor.allow_vertical_scroll or ancestor.allow_horizontal_scroll
        ):
            return True
    return False


def _name(widget: Widget) -> str:
    label = f"#{widget.id}" if widget.id else ""
    classes = "".join(f".{c}" for c in sorted(widget.classes))[:40]
    return f"{type(widget).__name__}{label}{classes}"


def _is_leaf(widget: Widget) -> bool:
    return not any(child.display for child in widget.children)


def _text_faults(widget: Widget) -> list[str]:
    if isinstance(widget, _SCROLLING) or widget.is_container or widget.is_scrollable:
        return []
    content = widget.content_region
    if not content.width or not content.height:
        return []
    container = widget.parent.size if isinstance(widget.parent, Widget) else widget.size
    viewport = widget.app.size
    faults = []
    needed_rows = widget.get_content_height(container, viewport, content.width)
    if needed_rows > content.height:
        faults.append(f"{_name(widget)} needs {needed_rows} rows, has {content.height}")
    rendered = widget.render()
    if isinstance(rendered, Text) and rendered.no_wrap:
        # A widget drawing its own one-line text (a choice line, the key bar) cuts it
        # with an ellipsis where it is too narrow.
        needed_columns = max(cell_len(line) for line in rendered.plain.split("\n"))
        if needed_columns > content.width:
            faults.append(f"{_name(widget)} needs {needed_columns} columns, has {content.width}")
    elif widget.styles.text_wrap == "nowrap" or isinstance(widget, (Button, FooterKey)):
        needed_columns = widget.get_content_width(Size(10_000, 1), viewport)
        if needed_columns > content.width:
            faults.append(f"{_name(widget)} needs {needed_columns} columns, has {content.width}")
    return faults


def _placeholder_fault(field: Input) -> list[str]:
    width = field.content_region.width
    if not field.value and field.placeholder and cell_len(field.placeholder) > width:
        return [f"{_name(field)} placeholder needs {cell_len(field.placeholder)} columns"]
    return []


def layout_faults(screen: Screen[object]) -> list[str]:
    """What is broken on ``screen`` as laid out now (empty when nothing is)."""
    faults: list[str] = []
    shown = _shown(screen)
    leaves: list[tuple[Widget, Region]] = []
    for widget, region, clip in shown:
        visible = region.intersection(clip)
        if visible != region and not _can_scroll_to(widget):
            faults.append(f"{_name(widget)} cut: {region} shown as {visible}")
        faults.extend(_text_faults(widget))
        if isinstance(widget, Input):
            faults.extend(_placeholder_fault(widget))
        # Columns past the table's edge are out of sight, even where a scrollbar could
        # bring them in: a person reads a row across, they do not scroll it.
        if isinstance(widget, DataTable):
            if widget.virtual_size.width > widget.scrollable_content_region.width:
                faults.append(
                    f"{_name(widget)} columns need {widget.virtual_size.width},"
                    f" has {widget.scrollable_content_region.width}"
                )
        if isinstance(widget, Footer) and widget.allow_horizontal_scroll:
            faults.append(f"{_name(widget)} keys go past the edge")
        if _is_leaf(widget) and visible.area and widget.styles.overlay != "screen":
            leaves.append((widget, visible))
    for index, (widget, region) in enumerate(leaves):
        for other, other_region in leaves[index + 1 :]:
            if region.overlaps(other_region):
                faults.append(f"{_name(widget)} overlaps {_name(other)}")
    return faults
