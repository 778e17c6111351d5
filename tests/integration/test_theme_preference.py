"""An account's colours (issue 21) are kept like its language: on SQLite and on
PostgreSQL, audited, refused when unknown; a database of the version before gets the
column on upgrade, every account on the normal colours."""

from __future__ import annotations

import pytest

from models.db import database_proxy
from models.migrate import ACCOUNT_THEME_VERSION, SCHEMA_VERSION, current_version, upgrade
from models.schema import Account, AuditEvent, Meta, Unit
from smis_tui.services import Services
from smis_tui.services.errors import NotAllowed
from tests.helpers import approved_applicant, make_admin


def test_the_theme_is_the_accounts_own_and_audited(
    services: Services, tree: dict[str, Unit]
) -> None:
    admin = make_admin(services, tree["cdc"])
    account = approved_applicant(services, tree["clinic"], admin.id)
    assert services.accounts.view(account).theme == "default"
    version = Account.get_by_id(account).version
    services.accounts.set_theme(account, "high-contrast")
    assert services.accounts.view(account).theme == "high-contrast"
    # A preference: an open form of the account does not go stale.
    assert Account.get_by_id(account).version == version
    events = AuditEvent.select().where(AuditEvent.action == "set_theme")
    assert [e.target_id for e in events] == [str(account)]
    services.accounts.set_theme(account, "high-contrast")  # no change, no second row
    assert events.count() == 1
    with pytest.raises(NotAllowed):
        services.accounts.set_theme(account, "neon")


def test_a_version_5_database_gets_the_theme_column(
    services: Services, tree: dict[str, Unit]
) -> None:
    admin = make_admin(services, tree["cdc"])
    account = approved_applicant(services, tree["clinic"], admin.id)
    database = database_proxy.obj
    database.execute_sql("ALTER TABLE account DROP COLUMN theme")
    Meta.update(value=str(ACCOUNT_THEME_VERSION - 1)).where(Meta.key == "schema_version").execute()
    assert upgrade() == (ACCOUNT_THEME_VERSION - 1, SCHEMA_VERSION)
    assert current_version() == SCHEMA_VERSION
    assert services.accounts.view(account).theme == "default"
