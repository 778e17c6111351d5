"""What was decided about a person's own permissions (審核結果), one block each: the
outcome and its day, the category and role, the unit, which unit's 管理者 decided, and
the reason. Reasons are text a 管理者 typed (up to 500 characters): shown by Prose,
broken into lines at the width there is, never markup."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import Vertical

from smis_tui.core.clock import taiwan_date
from smis_tui.core.domain import DecisionBy, RequestStatus
from smis_tui.core.rocdate import to_roc
from smis_tui.text import t
from smis_tui.text.labels import category_label, role_label
from smis_tui.widgets.prose import Prose

if TYPE_CHECKING:
    from smis_tui.services.decisions import Decision


def decision_text(decision: Decision, language: str) -> str:
    """The decision as its holder reads it, in lines."""
    # Stored in UTC; people know the day in Taiwan time, in 民國 years in Chinese.
    day = taiwan_date(decision.decided_at)
    date = to_roc(day) if language == "zh_TW" else day.isoformat()
    lines = [
        t(
            "decision.head",
            language,
            state=t(f"decision.{decision.status}", language),
            date=date,
            category=category_label(decision.category_name, decision.category_name_en, language),
            role=role_label(decision.role, language, decision.options),
        ),
        t("decision.unit", language, unit=decision.unit_name),
    ]
    who = _who(decision, language)
    if who:
        lines.append(who)
    if decision.reason:
        lines.append(t("decision.reason", language, reason=decision.reason))
    return "\n".join(lines)


def _who(decision: Decision, language: str) -> str:
    if decision.by == DecisionBy.SELF:
        return t("decision.by_self", language)
    if decision.by == DecisionBy.INACTIVE:
        return t("decision.by_inactive", language)
    if decision.by == DecisionBy.REVIEW:
        return t("decision.by_review", language)
    withdrawn = decision.status == RequestStatus.REVOKED
    if decision.deciding_unit_name is None and decision.status == RequestStatus.APPROVED:
        # Granted at installation (smis-tui's first 管理者): nobody to name.
        return ""
    if decision.deciding_unit_name is None:
        return t("decision.disabled_by_admin" if withdrawn else "decision.by_admin", language)
    return t(
        "decision.disabled_by_unit" if withdrawn else "decision.by_unit",
        language,
        unit=decision.deciding_unit_name,
    )


class DecisionList(Vertical):
    """The ``decisions`` given, newest first, or ``empty`` when there are none."""

    DEFAULT_CSS = """
    DecisionList {
        height: auto;
    }
    DecisionList > .decision {
        margin-bottom: 1;
    }
    DecisionList > .decision-rejected, DecisionList > .decision-revoked {
        color: $text-warning;
    }
    """

    def __init__(
        self,
        decisions: Sequence[Decision],
        language: str,
        *,
        empty: str = "",
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.decisions = tuple(decisions)
        self.language = language
        self.empty = empty

    def compose(self) -> ComposeResult:
        for decision in self.decisions:
            yield Prose(
                decision_text(decision, self.language),
                classes=f"decision decision-{decision.status}",
            )
        if not self.decisions and self.empty:
            yield Prose(self.empty, classes="decision-none")

    def show(self, decisions: Sequence[Decision]) -> None:
        """Show ``decisions`` instead."""
        self.decisions = tuple(decisions)
        self.refresh(recompose=True)
