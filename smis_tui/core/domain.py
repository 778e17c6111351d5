"""The words of the domain (docs/architecture.md, "Domain model"): kinds of unit,
roles, the states of accounts and requests, kinds of card. Every layer uses them;
the database stores their values."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class UnitKind(enum.StrEnum):
    CDC = "cdc"
    REGIONAL_CENTRE = "regional_centre"
    HEALTH_BUREAU = "health_bureau"
    HEALTH_CENTRE = "health_centre"
    HOSPITAL = "hospital"
    CLINIC = "clinic"
    PHARMACY = "pharmacy"
    OTHER = "other"


class Role(enum.StrEnum):
    """Ordered from most to least privileged."""

    ADMIN = "admin"  # 管理者
    OFFICER = "officer"  # 承辦人
    VIEWER = "viewer"  # 瀏覽者


class AccountStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    DISABLED = "disabled"
    DELETED = "deleted"


class DisabledReason(enum.StrEnum):
    INACTIVE = "inactive"  # 超過 180 天未登入
    SELF = "self"  # 自行停用所有系統權限
    SUPERIOR = "superior"  # 由上級單位停用所有系統權限


class RequestStatus(enum.StrEnum):
    PENDING = "pending"  # 審核中
    APPROVED = "approved"
    REJECTED = "rejected"
    REVOKED = "revoked"
    SUPERSEDED = "superseded"


class DecisionBy(enum.StrEnum):
    """Who decided on a permission: a 管理者 (reviewing a request, or withdrawing a
    permission from above, also in an access review), its holder (giving it up), the
    180-day rule, or an access review's default."""

    ADMIN = "admin"
    SELF = "self"
    INACTIVE = "inactive"
    REVIEW = "review"
    """Withdrawn by an access review's default: nobody decided by its deadline."""


REVIEW_DEFAULT_CAUSE = "access_review"
"""What a permission withdrawn by an access review's default keeps as its reason (with
no 管理者): its holder is told so in words (DecisionBy.REVIEW)."""


class CardKind(enum.StrEnum):
    HPC = "hpc"  # 醫事人員卡
    MOICA = "moica"  # 自然人憑證
    PIV = "piv"


@dataclass(frozen=True)
class RoleChoice:
    """The role asked for in one category, with the sub-options it covers."""

    role: Role
    options: tuple[str, ...] = ()
