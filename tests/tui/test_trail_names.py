"""The 軌跡紀錄 screen names people by name and account number, never by any part of
their ID: not on a person's own trail, not on the CDC 管理者's (demo accounts of
tests/tui/test_control_screens.py)."""

from __future__ import annotations

from textual.widgets import Input

from models.schema import Account
from tests.tui.conftest import Demo
from tests.tui.test_control_screens import Accounts, opened_trail, rows, search


def _id_parts(person_id: str) -> set[str]:
    """The ID's masks of this and earlier versions, and every run of three or more of
    its characters after the letter (shorter runs are found in account numbers)."""
    tail = person_id[1:]
    runs = {tail[i:j] for i in range(len(tail)) for j in range(i + 3, len(tail) + 1)}
    return runs | {
        f"{person_id[:3]}****{person_id[-3:]}",
        f"{person_id[:2]}******{person_id[-2:]}",
        person_id[-2:] + "）",
    }


async def test_own_and_cdc_trails_show_names_and_account_numbers_not_ids(
    demo: Demo, demo_accounts: Accounts
) -> None:
    services = demo[0]
    officer, cdc = demo_accounts["moica"], demo_accounts["hpc"]
    names = {who: Account.get_by_id(who).name for who in (officer, cdc)}
    parts = set().union(
        *(_id_parts(services.accounts.person_id_for(who)) for who in (officer, cdc))
    )
    async with opened_trail(demo, officer) as (_pilot, screen):
        own = rows(screen.paged.table)
    # The CDC 管理者 looks the officer up by their full ID.
    async with opened_trail(demo, cdc) as (pilot, screen):
        screen.query_one("#trail-person", Input).value = services.accounts.person_id_for(officer)
        await search(pilot)
        searched = rows(screen.paged.table)
    for table in (own, searched):
        people = [cell for row in table for cell in (row[1], row[3])]
        assert f"{names[cdc]} #{cdc}" in people
        assert f"{names[officer]} #{officer}" in people
        assert not any("*" in cell for cell in people)
        assert not any(part in cell for cell in people for part in parts)
