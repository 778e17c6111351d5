"""The one rule for a reason a person types (rejecting a request, disabling a
permission or an account): required, at most REASON_MAX characters, nothing hidden."""

from __future__ import annotations

import enum

from smis_tui.core.chars import has_hidden

REASON_MAX = 500


class ReasonProblem(enum.StrEnum):
    REQUIRED = "reason.required"
    HIDDEN = "reason.hidden"
    TOO_LONG = "reason.too_long"
    """The values are the text keys of what the person is told."""


def reason_problem(reason: str) -> ReasonProblem | None:
    """What is wrong with ``reason`` (after stripping), or None when it is fine."""
    clean = reason.strip()
    if not clean:
        return ReasonProblem.REQUIRED
    if has_hidden(clean):
        return ReasonProblem.HIDDEN
    if len(clean) > REASON_MAX:
        return ReasonProblem.TOO_LONG
    return None
