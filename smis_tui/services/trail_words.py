"""A 軌跡紀錄 row said in words in one language: the screen's cells, its detail view
and the CSV export all read them from here, so that the three never disagree.

Codes the service stores (actions, states, refusals, roles, card kinds) are translated
through the text catalogue; a code the catalogue does not know yet is shown as it is
rather than hidden. People are named by name and account number with their unit,
never by any part of their ID.
"""

from __future__ import annotations

from dataclasses import dataclass

from smis_tui.core.clock import to_taiwan
from smis_tui.core.rocdate import to_roc
from smis_tui.services.audit import TrailRow
from smis_tui.text import CATALOGS, t

# How much of a card's fingerprint a row shows (the detail view and CSV show all that
# was stored).
SHORT_CARD = 8


@dataclass(frozen=True)
class TrailWords:
    time: str
    actor: str
    actor_unit: str
    action: str
    target: str
    """The person, or card, the row is about, with the category and role if any."""
    target_unit: str
    change: str
    """``before → after``, and why (a refusal's reason, tries left)."""
    unit_code: str
    unit_name: str
    note: str


def _known(key: str, language: str) -> str | None:
    return t(key, language) if key in CATALOGS["zh_TW"] else None


def action_name(action: str, language: str) -> str:
    return _known(f"trail.action.{action}", language) or action


def _state(code: str, language: str) -> str:
    return _known(f"trail.state.{code}", language) or code


def _person(label: str, unit: str, language: str) -> str:
    return t("trail.person_at_unit", language, person=label, unit=unit) if unit else label


def _actor(row: TrailRow, language: str) -> str:
    if row.actor_label == "system":
        return t("trail.system", language)
    if row.actor_label == "cli":
        return t("trail.cli", language)
    if row.actor_label.startswith("kiosk "):
        return t("trail.kiosk", language, label=row.actor_label.removeprefix("kiosk "))
    return _person(row.actor_label, row.actor_unit, language)


def _target(row: TrailRow, language: str, *, whole: bool) -> str:
    if row.target_type == "card" and row.card:
        fingerprint = row.card if whole else row.card[:SHORT_CARD]
        kind = _known(f"login.card_kind.{row.card_kind}", language)
        if kind:
            return t("trail.card", language, fingerprint=fingerprint, kind=kind)
        return t("trail.card_unknown_kind", language, fingerprint=fingerprint)
    if row.target_type == "access_review":
        return t("trail.access_review", language, label=row.target_label)
    person = row.target_label
    if not row.category_name and not row.role:
        return person
    category = row.category_name_en if language == "en" and row.category_name_en else ""
    permission = t(
        "trail.permission",
        language,
        category=category or row.category_name,
        role=_known(f"role.{row.role}", language) or row.role,
    ).strip()
    return f"{person} · {permission}" if person else permission


def _change(row: TrailRow, language: str) -> str:
    parts: list[str] = []
    if row.before and row.after:
        parts.append(
            t(
                "trail.change",
                language,
                before=_state(row.before, language),
                after=_state(row.after, language),
            )
        )
    elif row.after:
        parts.append(t("trail.change_to", language, after=_state(row.after, language)))
    if row.why:
        parts.append(_known(f"trail.why.{row.why}", language) or row.why)
    if row.tries_left is not None:
        parts.append(t("trail.tries_left", language, tries=row.tries_left))
    return "；".join(parts) if language == "zh_TW" else "; ".join(parts)


def trail_words(row: TrailRow, language: str, *, whole: bool = False) -> TrailWords:
    """``row`` in ``language``; ``whole``: nothing shortened (the detail view, the CSV)."""
    local = to_taiwan(row.at)
    return TrailWords(
        time=f"{to_roc(local.date())} {local:%H:%M:%S}",
        actor=_actor(row, language),
        actor_unit=row.actor_unit,
        action=action_name(row.action, language),
        target=_target(row, language, whole=whole),
        target_unit=row.target_unit,
        change=_change(row, language),
        unit_code=row.unit_code,
        unit_name=row.unit_name,
        note=row.note,
    )
