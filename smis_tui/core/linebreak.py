"""Line breaking for Chinese text mixed with Latin words, measured in terminal cells.

The rules are those of Chinese and Japanese typesetting (JIS X 4051, and the W3C
"Requirements for Chinese Text Layout" (clreq), 3.1.7 "Prohibition Rules for Line
Start and Line End"): a line may break between any two ideographs, but closing
brackets and most punctuation never start a line and opening brackets never end one.
When such a character would start a line, the character before it moves down with
it (clreq's "push out"), so no line is wider than asked. Latin words break only at
the spaces between them; the spaces of a break are dropped. A word or a run of
characters that must stay together and is wider than the line is cut where it has to
be, still keeping the rules wherever the cut can move.
"""

from __future__ import annotations

from rich.cells import cell_len

# Closing brackets, stops, commas, colons, ellipses and interpuncts: never at a line's
# start (full-width forms, then their half-width counterparts).
NO_LINE_START = frozenset("，。、：；！？）」』〉》】〕］｝〗”’．…‥％‧·,.:;!?)]}%")
# Opening brackets: never at a line's end.
NO_LINE_END = frozenset("（「『〈《【〔［｛〖“‘([{")

_BREAK_SPACE = " "


def break_lines(text: str, width: int) -> list[str]:
    """``text`` broken into lines of at most ``width`` cells by the rules above.

    Explicit newlines stay line ends. A line is wider than ``width`` only when one
    character is (a two-cell ideograph when ``width`` is 1). A ``width`` below 1 means
    no room is known yet: each paragraph is one line.
    """
    lines: list[str] = []
    for paragraph in text.split("\n"):
        if width < 1:
            lines.append(paragraph)
        else:
            lines.extend(_break_paragraph(paragraph, width))
    return lines


def _may_break(before: str, after: str, *, across_spaces: bool) -> bool:
    """Whether a line may end after the character ``before`` and the next begin with
    ``after`` (with only spaces between them when ``across_spaces``)."""
    if before in NO_LINE_END or after in NO_LINE_START:
        return False
    if cell_len(after) == 0:
        return False  # a combining mark belongs to the character before it
    if across_spaces:
        return True
    # Next to an ideograph (or any full-width character) a line may break; between two
    # narrow characters only at a space, so Latin words, numbers and addresses stay whole.
    return cell_len(before) == 2 or cell_len(after) == 2


def _segments(paragraph: str) -> list[tuple[str, str]]:
    """``paragraph`` cut at every place a line may break: (text, spaces after it).

    The spaces are those dropped if the line breaks there; spaces where no line may
    break (before a closing bracket, say) stay inside the text.
    """
    segments: list[tuple[str, str]] = []
    body: list[str] = []
    last_char = ""  # the last character other than a space
    after_kept_spaces = False
    index = 0
    while index < len(paragraph) and paragraph[index] == _BREAK_SPACE:
        index += 1
    body.append(paragraph[:index])  # indentation stays with the first word
    while index < len(paragraph):
        char = paragraph[index]
        if char == _BREAK_SPACE:
            end = index
            while end < len(paragraph) and paragraph[end] == _BREAK_SPACE:
                end += 1
            spaces = paragraph[index:end]
            following = paragraph[end] if end < len(paragraph) else ""
            if not following or (
                last_char and _may_break(last_char, following, across_spaces=True)
            ):
                segments.append(("".join(body), spaces))
                body = []
                after_kept_spaces = False
            else:
                body.append(spaces)
                after_kept_spaces = True
            index = end
            continue
        if (
            last_char
            and body
            and not after_kept_spaces
            and _may_break(last_char, char, across_spaces=False)
        ):
            segments.append(("".join(body), ""))
            body = []
        body.append(char)
        last_char = char
        after_kept_spaces = False
        index += 1
    if body or not segments:
        segments.append(("".join(body), ""))
    return segments


def _break_paragraph(paragraph: str, width: int) -> list[str]:
    lines: list[str] = []
    line = ""
    pending_spaces = ""  # spaces after ``line``, dropped if the line breaks there
    for text, spaces in _segments(paragraph):
        if not text:
            pending_spaces += spaces
            continue
        if cell_len(line) + len(pending_spaces) + cell_len(text) <= width:
            line += pending_spaces + text
        else:
            if line:
                lines.append(line)
            pieces = [text] if cell_len(text) <= width else _cut(text, width)
            lines.extend(pieces[:-1])
            line = pieces[-1]
        pending_spaces = spaces
    if pending_spaces and cell_len(line) + len(pending_spaces) <= width:
        line += pending_spaces
    lines.append(line)
    return lines


def _units(text: str) -> list[str]:
    """``text`` as characters, each with the combining marks that follow it."""
    units: list[str] = []
    for char in text:
        if units and cell_len(char) == 0:
            units[-1] += char
        else:
            units.append(char)
    return units


def _cut(text: str, width: int) -> list[str]:
    """``text``, which has no place to break and is wider than ``width``, in pieces that
    fit, cut where the line-start and line-end rules allow if anywhere on the line."""
    units = _units(text)
    pieces: list[str] = []
    start = 0
    while start < len(units):
        end = start
        used = 0
        while end < len(units) and used + cell_len(units[end]) <= width:
            used += cell_len(units[end])
            end += 1
        if end == len(units):
            pieces.append("".join(units[start:end]))
            break
        end = max(end, start + 1)  # a single character wider than the line
        cut = _allowed_cut(units, start, end)
        piece = "".join(units[start:cut]).rstrip(_BREAK_SPACE)
        pieces.append(piece)
        start = cut
        while start < len(units) and units[start] == _BREAK_SPACE:
            start += 1
    return pieces


def _allowed_cut(units: list[str], start: int, end: int) -> int:
    """The last place in ``units[start + 1 : end + 1]`` where a line may end by the
    rules, else ``end``. Spaces around the cut do not count: they are dropped."""
    for cut in range(end, start, -1):
        before = _last_visible(units, start, cut)
        if before is None:
            break
        after = _first_visible(units, cut)
        if after is None:
            return cut
        if before[0] not in NO_LINE_END and after[0] not in NO_LINE_START:
            return cut
    return end


def _last_visible(units: list[str], start: int, stop: int) -> str | None:
    for index in range(stop - 1, start - 1, -1):
        if units[index] != _BREAK_SPACE:
            return units[index]
    return None


def _first_visible(units: list[str], start: int) -> str | None:
    for unit in units[start:]:
        if unit != _BREAK_SPACE:
            return unit
    return None
