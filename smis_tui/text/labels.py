"""How roles, their sub-options and categories are named on every screen."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.cells import cell_len

from smis_tui.core.domain import Role
from smis_tui.text import t


def listed(items: Iterable[str], language: str) -> str:
    """``items`` as a list in running text: 「甲、乙」 in 中文, "A, B" in English."""
    return t("label.list_separator", language).join(items)


def role_label(role: str, language: str, options: Sequence[str] = ()) -> str:
    """``承辦人``, or with sub-options ``瀏覽者(猴痘(M痘)、COVID-19)``."""
    label = t(f"role.{role}", language)
    if not options:
        return label
    joined = listed(options, language)
    return t("label.role_options", language, role=label, options=joined)


def widest_role(language: str) -> int:
    """How many cells the widest role takes without sub-options (管理者, Administrator):
    a column of roles that narrows keeps every one whole."""
    return max(cell_len(role_label(role, language)) for role in Role)


def category_label(name: str, name_en: str, language: str) -> str:
    """A category as the data names it: its English name in English where it has one."""
    return name_en if language == "en" and name_en else name
