"""Every action the program writes to 軌跡紀錄 has a name in both languages: a row
read as 「set_language」 tells a person nothing (issue 20)."""

from __future__ import annotations

import re
from pathlib import Path

import smis_tui
from smis_tui.services.accounts import APPLICATION_ACTIONS
from smis_tui.services.auth import REFUSED_LOGIN
from smis_tui.text import CATALOGS

# How the code names an action where it writes a row: record("…"), _audit("…"),
# _record_flood("…"), _record_pending_lookup(account, "…"), one of two actions chosen
# in the call ("approve_request" if … else "reject_request"), or a parameter's
# default (action: str = "…").
_WRITES = (
    re.compile(r'(?:\.record|\._audit|\._record_flood)\(\s*"(\w+)"'),
    re.compile(r'_record_pending_lookup\(\s*\w+,\s*"(\w+)"'),
    re.compile(r'\.record\(\s*"(\w+)"\s+if\s+\w+\s+else\s+"(\w+)"'),
    re.compile(r'\baction: str = "(\w+)"'),
)


def _written_actions() -> set[str]:
    found: set[str] = set()
    for path in Path(smis_tui.__file__).parent.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for pattern in _WRITES:
            for match in pattern.finditer(text):
                found |= set(match.groups())
    return found | set(APPLICATION_ACTIONS) | {REFUSED_LOGIN}


def test_every_written_action_is_named_in_both_languages() -> None:
    actions = _written_actions()
    # The scan finds what it must, so it cannot pass by finding nothing.
    assert {"login", "set_language", "approve_request", "reject_request"} <= actions
    assert {"pending_lookup", "rejected_lookup", "units_import", "export_trail"} <= actions
    for language, catalog in CATALOGS.items():
        missing = sorted(a for a in actions if f"trail.action.{a}" not in catalog)
        assert not missing, (language, missing)
