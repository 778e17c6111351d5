"""The SMIS domain schema (docs/architecture.md, "Domain model").

The vocabulary (roles, statuses, card kinds) lives in :mod:`smis_tui.core.domain`,
shared with the layers that never touch the database; it is re-exported here.
"""

from __future__ import annotations

import datetime as dt

import peewee

from models.db import BaseModel
from smis_tui.core.domain import (
    AccountStatus,
    CardKind,
    DisabledReason,
    RequestStatus,
    Role,
    UnitKind,
)

# The vocabulary, re-exported beside the models that store it.
VOCABULARY = (AccountStatus, CardKind, DisabledReason, RequestStatus, Role, UnitKind)


def utcnow() -> dt.datetime:
    """Naive UTC timestamps everywhere: SQLite and PostgreSQL store them the same way."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Meta(BaseModel):
    """Key/value facts about the database itself: schema version, key check value."""

    key = peewee.CharField(max_length=64, primary_key=True)
    value = peewee.TextField()


class Category(BaseModel):
    code = peewee.CharField(max_length=32, unique=True)
    name = peewee.CharField(max_length=64)
    name_en = peewee.CharField(max_length=64)
    sort_order = peewee.IntegerField()


class CategoryOption(BaseModel):
    """A sub-option of a category, e.g. a disease under 新興傳染病用藥."""

    category = peewee.ForeignKeyField(Category, backref="options", on_delete="CASCADE")
    name = peewee.CharField(max_length=64)
    sort_order = peewee.IntegerField()
    active = peewee.BooleanField(default=True)

    class Meta:
        indexes = ((("category", "name"), True),)


class Unit(BaseModel):
    code = peewee.CharField(max_length=10, unique=True)
    name = peewee.CharField(max_length=128)
    county = peewee.CharField(max_length=8, index=True)
    # The county's place in the official order (臺北市 1 … 連江縣 22): pages are sorted
    # by it, and a county filter is a range on it.
    county_rank = peewee.SmallIntegerField(default=99)
    kind = peewee.CharField(max_length=24)
    parent = peewee.ForeignKeyField("self", null=True, backref="children", on_delete="RESTRICT")
    active = peewee.BooleanField(default=True)
    # Folded name (臺→台, full-width→half-width, case) for substring search.
    search_key = peewee.CharField(max_length=160)
    address = peewee.CharField(max_length=200, default="")
    phone = peewee.CharField(max_length=40, default="")
    source = peewee.CharField(max_length=16, default="generated")
    updated_at = peewee.DateTimeField(default=utcnow)
    # The NHI file's 終止合約或歇業日期 when it lies ahead: the unit is in force until
    # that day (models.unit_import.close_ended_units retires it then).
    closes_on = peewee.DateField(null=True)

    class Meta:
        indexes = (
            (("active", "county_rank", "code"), False),
            # Code-prefix search reads this index alone, never the table rows.
            (("code", "active", "county_rank"), False),
        )


class UnitGram(BaseModel):
    """Every character and character pair of an active unit's folded name, and the
    empty gram every active unit holds (the listing without a query).

    A substring search cannot use an ordinary index; this table turns the search for
    a name fragment into an index range on one of its grams, already in page order.
    Kept in step with Unit by models.unit_search.refresh_unit_grams.
    """

    gram = peewee.CharField(max_length=2)
    county_rank = peewee.SmallIntegerField()
    code = peewee.CharField(max_length=10)
    unit = peewee.ForeignKeyField(Unit, on_delete="CASCADE", backref="+")
    # The unit's folded name again: a longer query is checked against the names of its
    # rarest gram's units inside this index alone, never reading the unit table.
    search_key = peewee.CharField(max_length=160)

    class Meta:
        primary_key = False
        indexes = ((("gram", "county_rank", "code", "unit", "search_key"), True),)


class UnitGramCount(BaseModel):
    """How many units hold each gram in each county, kept with UnitGram: a page's total
    and the county it starts in come from here, not from counting index entries."""

    gram = peewee.CharField(max_length=2)
    county_rank = peewee.SmallIntegerField()
    units = peewee.IntegerField()

    class Meta:
        primary_key = peewee.CompositeKey("gram", "county_rank")


class UnitCategory(BaseModel):
    unit = peewee.ForeignKeyField(Unit, backref="unit_categories", on_delete="CASCADE")
    category = peewee.ForeignKeyField(Category, on_delete="CASCADE")

    class Meta:
        primary_key = peewee.CompositeKey("unit", "category")


class Account(BaseModel):
    # The person ID is only ever stored encrypted; look-ups go through the HMAC index.
    person_id_cipher = peewee.BlobField(null=True)
    person_id_index = peewee.CharField(max_length=64, null=True, unique=True)
    person_id_masked = peewee.CharField(max_length=24)
    person_id_kind = peewee.CharField(max_length=16)
    name = peewee.CharField(max_length=64)
    phone = peewee.CharField(max_length=40)
    phone_backup = peewee.CharField(max_length=40, default="")
    email = peewee.CharField(max_length=254)
    email_backup = peewee.CharField(max_length=254, default="")
    mobile = peewee.CharField(max_length=20, default="")
    unit = peewee.ForeignKeyField(Unit, backref="accounts", on_delete="RESTRICT")
    status = peewee.CharField(max_length=16, index=True)
    disabled_reason = peewee.CharField(max_length=16, null=True)
    disabled_at = peewee.DateTimeField(null=True)
    last_login_at = peewee.DateTimeField(null=True)
    # The 180-day rule counts from the later of the last login and the activation.
    activated_at = peewee.DateTimeField(null=True)
    language = peewee.CharField(max_length=8, default="zh_TW")
    # The account's own colours (smis_tui.core.config.THEMES), like its language.
    theme = peewee.CharField(max_length=16, default="default")
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)
    # Optimistic lock: every write says which version it read.
    version = peewee.IntegerField(default=1)


class PermissionRequest(BaseModel):
    """One requested (and later granted, rejected or withdrawn) role in one category."""

    account = peewee.ForeignKeyField(Account, backref="requests", on_delete="CASCADE")
    unit = peewee.ForeignKeyField(Unit, on_delete="RESTRICT")
    category = peewee.ForeignKeyField(Category, on_delete="RESTRICT")
    role = peewee.CharField(max_length=16)
    # Comma-separated CategoryOption ids, for 新興傳染病用藥.
    option_ids = peewee.CharField(max_length=200, default="")
    status = peewee.CharField(max_length=16, index=True)
    # Which submission of the account's application this request came from.
    revision = peewee.IntegerField()
    submitted_at = peewee.DateTimeField(default=utcnow, index=True)
    decided_at = peewee.DateTimeField(null=True)
    reviewer = peewee.ForeignKeyField(Account, null=True, on_delete="SET NULL", backref="+")
    reason = peewee.TextField(default="")

    class Meta:
        indexes = ((("account", "status"), False), (("status", "category"), False))


class CardBinding(BaseModel):
    account = peewee.ForeignKeyField(Account, backref="cards", on_delete="CASCADE")
    cert_sha256 = peewee.CharField(max_length=64, unique=True)
    card_kind = peewee.CharField(max_length=8)
    bound_at = peewee.DateTimeField(default=utcnow)


class ConsentRecord(BaseModel):
    account = peewee.ForeignKeyField(Account, backref="consents", on_delete="CASCADE")
    statement_sha256 = peewee.CharField(max_length=64)
    accepted_at = peewee.DateTimeField(default=utcnow)


class AuditEvent(BaseModel):
    """軌跡紀錄. Each row carries the hash of the previous one, so edits are detectable."""

    at = peewee.DateTimeField(default=utcnow, index=True)
    actor = peewee.ForeignKeyField(Account, null=True, on_delete="SET NULL", backref="+")
    actor_label = peewee.CharField(max_length=64)
    action = peewee.CharField(max_length=48, index=True)
    target_type = peewee.CharField(max_length=32, default="")
    target_id = peewee.CharField(max_length=64, default="")
    unit = peewee.ForeignKeyField(Unit, null=True, on_delete="SET NULL", backref="+")
    details = peewee.TextField(default="{}")
    prev_hash = peewee.CharField(max_length=64)
    row_hash = peewee.CharField(max_length=64, unique=True)


class AccessReview(BaseModel):
    """權限定期檢閱 (smis_tui.services.access_review): a review of the permissions
    granted below ``root_unit``, as they were when it started."""

    name = peewee.CharField(max_length=100)
    root_unit = peewee.ForeignKeyField(Unit, on_delete="RESTRICT", backref="+")
    started_by = peewee.ForeignKeyField(Account, null=True, on_delete="SET NULL", backref="+")
    started_at = peewee.DateTimeField(default=utcnow)
    # The first moment no decision is taken any more (the start of the Taiwan day after
    # the last day), as naive UTC like every stored time.
    deadline = peewee.DateTimeField(index=True)
    # What the unanswered items become after the deadline (keep, remove or
    # recommendation) and the days without login past which removal is recommended:
    # the settings in force when the review started.
    default_decision = peewee.CharField(max_length=16)
    inactive_days = peewee.IntegerField()
    closed_at = peewee.DateTimeField(null=True)
    # A MAC, under the key that seals the audit chain, over the review as it started
    # and its items: maintenance applies the default only to a review that matches it.
    seal = peewee.CharField(max_length=100, default="")


class AccessReviewItem(BaseModel):
    """One granted permission under review; decided once (keep, remove, or gone when it
    was no longer granted by the time it was looked at)."""

    review = peewee.ForeignKeyField(AccessReview, on_delete="CASCADE", backref="items")
    request = peewee.ForeignKeyField(PermissionRequest, on_delete="CASCADE", backref="+")
    account = peewee.ForeignKeyField(Account, on_delete="CASCADE", backref="+")
    category = peewee.ForeignKeyField(Category, on_delete="RESTRICT", backref="+")
    decision = peewee.CharField(max_length=16, null=True)
    decided_by = peewee.ForeignKeyField(Account, null=True, on_delete="SET NULL", backref="+")
    decided_at = peewee.DateTimeField(null=True)
    # Decided by the review's default after its deadline (decided_by is then empty).
    by_default = peewee.BooleanField(default=False)
    reason = peewee.TextField(default="")

    class Meta:
        indexes = ((("review", "request"), True), (("review", "decision"), False))


ALL_MODELS: list[type[BaseModel]] = [
    Meta,
    Category,
    CategoryOption,
    Unit,
    UnitGram,
    UnitGramCount,
    UnitCategory,
    Account,
    PermissionRequest,
    CardBinding,
    ConsentRecord,
    AuditEvent,
    AccessReview,
    AccessReviewItem,
]
