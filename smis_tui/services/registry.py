"""The services, built once at start-up and handed to the app (no Textual here)."""

from __future__ import annotations

from dataclasses import dataclass

from models.db import open_database, write_transaction
from models.migrate import check_schema
from models.schema import Meta
from smis_tui.core.config import Settings
from smis_tui.services.access_review import AccessReviewService
from smis_tui.services.accounts import AccountService
from smis_tui.services.audit import AuditLog
from smis_tui.services.audit_anchor import AuditAnchor
from smis_tui.services.auth import LoginService
from smis_tui.services.control import AccountControl
from smis_tui.services.crypto import KeyFileError, KeyRing
from smis_tui.services.review import ReviewService
from smis_tui.services.units import UnitDirectory

KEY_CHECK = "key_check"


@dataclass(frozen=True)
class Services:
    settings: Settings
    keys: KeyRing
    audit: AuditLog
    accounts: AccountService
    login: LoginService
    review: ReviewService
    units: UnitDirectory
    control: AccountControl
    access_reviews: AccessReviewService


def check_key(keys: KeyRing) -> None:
    """The database remembers which key it was written with; a different key file is
    refused instead of writing look-up values nobody could find again."""
    stored = Meta.get_or_none(Meta.key == KEY_CHECK)
    if stored is None:
        with write_transaction():
            Meta.insert(key=KEY_CHECK, value=keys.check_value).on_conflict_ignore().execute()
        stored = Meta.get(Meta.key == KEY_CHECK)
    if stored.value.startswith("rotating:"):
        # A rotation wrote part of the rows under the new key and was stopped (its key
        # file .new may have been removed since): only finishing it makes them whole.
        raise KeyFileError(
            "資料加密金鑰輪替尚未完成：請再執行 smis-tui key rotate 完成輪替，完成前 kiosk 無法啟動。"
        )
    if stored.value != keys.check_value:
        raise KeyFileError(
            "資料加密金鑰與資料庫不符：請確認 SMIS_KEY_FILE 指向此資料庫建立時的金鑰檔。"
        )


def build_services(settings: Settings) -> Services:
    """Services over the already-opened database."""
    keys = KeyRing.from_file(settings.resolved_key_file)
    check_key(keys)
    audit = AuditLog(AuditAnchor.for_key_file(keys, settings.resolved_key_file, settings.data_dir))
    audit.first_checkpoint()
    accounts = AccountService(settings, keys, audit)
    control = AccountControl(settings, accounts, audit)
    return Services(
        settings=settings,
        keys=keys,
        audit=audit,
        accounts=accounts,
        login=LoginService(accounts),
        review=ReviewService(audit),
        units=UnitDirectory(),
        control=control,
        access_reviews=AccessReviewService(settings, audit, control),
    )


def open_services(settings: Settings) -> Services:
    """Open the database, refuse an unknown schema, load the key: ready for the app."""
    open_database(settings.database_url, settings.sqlite_path)
    check_schema()
    return build_services(settings)
