"""軌跡紀錄: an append-only audit trail chained by SHA-256.

Every row stores the previous row's hash and its own hash over its content, and the
database keeps the hash and id of the newest row, so an edited, deleted or inserted
row — or a cut-off tail — is found by :meth:`AuditLog.verify`.

A row names the person who acted by their account number alone (``#12``): the chain is
never rewritten, while a name is erased when its account is deleted, and no part of a
person's ID belongs in a trail that others read. The trail shows a person as
``王小明 #12`` from the account as it is now (``#12`` once it is deleted); rows of
earlier versions stored a masked ID as the label, which is never shown.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import operator
from dataclasses import dataclass
from typing import Any

import peewee

from models.db import database_proxy
from models.schema import Account, AuditEvent, Meta, PermissionRequest, Unit, utcnow
from smis_tui.core.clock import taiwan_day_start
from smis_tui.core.domain import UnitKind
from smis_tui.services.errors import NotAllowed
from smis_tui.services.paging import Paged, page_bounds, page_of
from smis_tui.services.scope import admin_requests

GENESIS_HASH = "0" * 64
HEAD_KEY = "audit_head"
TRAIL_PAGE_SIZE = 20


def _row_hash(event: AuditEvent) -> str:
    """SHA-256 over the row's content and the previous row's hash, as canonical JSON."""
    payload = [
        event.prev_hash,
        event.at.strftime("%Y-%m-%dT%H:%M:%S.%f"),
        event.actor_id,
        event.actor_label,
        event.action,
        event.target_type,
        event.target_id,
        event.unit_id,
        event.details,
    ]
    canonical = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    first_bad_id: int | None = None
    reason: str = ""
    # Which check failed, for screens that say it in the user's language:
    # "prev_hash", "row_hash", "head_missing" or "head_mismatch" ("" when ok).
    code: str = ""


class AuditLog:
    def record(
        self,
        action: str,
        *,
        actor: Account | None,
        target_type: str = "",
        target_id: object = "",
        unit: Unit | int | None = None,
        details: dict[str, Any] | None = None,
        actor_label: str | None = None,
    ) -> AuditEvent:
        """Append one row. Must run inside the caller's write transaction."""
        db = database_proxy.obj
        if not db.in_transaction():
            raise RuntimeError("audit rows are written inside the state change's transaction")
        head = Meta.get_or_none(Meta.key == HEAD_KEY)
        prev_hash = head.value.split(":", 1)[1] if head else GENESIS_HASH
        unit_id = unit.id if isinstance(unit, Unit) else unit
        event = AuditEvent(
            at=utcnow(),
            actor=actor.id if actor is not None else None,
            actor_label=actor_label
            if actor_label is not None
            else (f"#{actor.id}" if actor is not None else "system"),
            action=action,
            target_type=target_type,
            target_id=str(target_id),
            unit=unit_id,
            details=json.dumps(details or {}, ensure_ascii=False, sort_keys=True),
            prev_hash=prev_hash,
            row_hash="",
        )
        event.row_hash = _row_hash(event)
        event.save(force_insert=True)
        head_value = f"{event.id}:{event.row_hash}"
        Meta.insert(key=HEAD_KEY, value=head_value).on_conflict(
            conflict_target=[Meta.key], update={Meta.value: head_value}
        ).execute()
        return event

    def verify(self) -> VerifyResult:
        expected_prev = GENESIS_HASH
        checked = 0
        last_id: int | None = None
        for event in AuditEvent.select().order_by(AuditEvent.id).iterator():
            if event.prev_hash != expected_prev:
                return VerifyResult(
                    False,
                    checked,
                    event.id,
                    "前一筆雜湊不符：其前方有紀錄被刪除或插入",
                    "prev_hash",
                )
            if _row_hash(event) != event.row_hash:
                return VerifyResult(
                    False, checked, event.id, "內容雜湊不符：此筆紀錄已被修改", "row_hash"
                )
            expected_prev = event.row_hash
            last_id = event.id
            checked += 1
        head = Meta.get_or_none(Meta.key == HEAD_KEY)
        if head is None:
            if checked:
                return VerifyResult(False, checked, last_id, "缺少紀錄鏈末端資訊", "head_missing")
            return VerifyResult(True, 0)
        head_id, head_hash = head.value.split(":", 1)
        if head_hash != expected_prev:
            bad = int(head_id)
            return VerifyResult(
                False,
                checked,
                bad,
                "紀錄鏈末端不符：最後的紀錄被刪除或修改",
                "head_mismatch",
            )
        return VerifyResult(True, checked)

    # ----- reading the trail (軌跡紀錄) ----------------------------------------------

    def trail_of(
        self, account_id: int, page: int = 1, page_size: int = TRAIL_PAGE_SIZE
    ) -> TrailPage:
        """The trail of one person: what they did, and what was done to their account
        and their permission requests. Newest first. Anyone may read their own."""
        return self._page(_about_account(account_id), page, page_size)

    def search(
        self, viewer_id: int, query: TrailQuery, page: int = 1, page_size: int = TRAIL_PAGE_SIZE
    ) -> TrailPage:
        """軌跡紀錄查詢 for a CDC 管理者 only; anyone else gets NotAllowed."""
        self.require_cdc_admin(viewer_id)
        conditions: list[Any] = []
        if query.account_id is not None:
            conditions.append(_about_account(query.account_id))
        if query.unit.strip():
            text = query.unit.strip()
            conditions.append(
                AuditEvent.unit.in_(
                    Unit.select(Unit.id).where(
                        (Unit.code == text.upper()) | contains_text(Unit.name, text)
                    )
                )
            )
        if query.action:
            conditions.append(AuditEvent.action == query.action)
        if query.since is not None:
            conditions.append(AuditEvent.at >= taiwan_day_start(query.since))
        if query.until is not None:
            conditions.append(AuditEvent.at < taiwan_day_start(query.until + dt.timedelta(days=1)))
        condition = functools.reduce(operator.and_, conditions) if conditions else None
        return self._page(condition, page, page_size)

    @staticmethod
    def is_cdc_admin(account_id: int) -> bool:
        """An active account holding an approved 管理者 role at the CDC (the top unit)."""
        return bool(
            admin_requests(account_id)
            .switch(PermissionRequest)
            .join(Unit, on=PermissionRequest.unit == Unit.id)
            .where(Unit.kind == UnitKind.CDC)
            .exists()
        )

    def require_cdc_admin(self, account_id: int) -> None:
        if not self.is_cdc_admin(account_id):
            raise NotAllowed("trail.error_not_cdc")

    def _page(self, condition: Any, page: int, page_size: int) -> TrailPage:
        query = AuditEvent.select()
        if condition is not None:
            query = query.where(condition)
        total = query.count()
        page, pages = page_bounds(page, total, page_size)
        events = list(
            page_of(
                query.select(AuditEvent, Unit)
                .join(Unit, peewee.JOIN.LEFT_OUTER, on=AuditEvent.unit == Unit.id)
                .order_by(AuditEvent.id.desc()),
                page,
                page_size,
            )
        )
        people = {e.actor_id for e in events if e.actor_id is not None} | {
            int(e.target_id) for e in events if e.target_type == "account" and e.target_id.isdigit()
        }
        names = (
            dict(Account.select(Account.id, Account.name).where(Account.id.in_(people)).tuples())
            if people
            else {}
        )
        rows = tuple(_trail_row(e, names) for e in events)
        return TrailPage(rows, page=page, pages=pages, total=total, page_size=page_size)


@dataclass(frozen=True)
class TrailQuery:
    """What a CDC 管理者 searches for; empty fields do not filter.

    ``account_id`` is the person's account, which the caller finds from the person ID
    (the ID is stored encrypted, looked up by its blind index with the key ring).
    ``unit`` is a unit code or part of a unit name. ``since``/``until`` are Taiwan
    calendar days, both included.
    """

    account_id: int | None = None
    unit: str = ""
    action: str = ""
    since: dt.date | None = None
    until: dt.date | None = None


@dataclass(frozen=True)
class TrailRow:
    id: int
    at: dt.datetime
    """Naive UTC, as stored; screens show it in Taiwan time."""
    actor_label: str
    """The person who acted, ``王小明 #12`` (``#12`` when the account is deleted), or
    the label of a change no person made: ``system``, ``cli``, a kiosk session."""
    action: str
    target_type: str
    target_label: str
    """A target account named as :attr:`actor_label` names a person, otherwise ``#id``."""
    unit_code: str
    unit_name: str
    note: str
    """The reason or note written with the change (text typed by a person: show it
    as plain text)."""


@dataclass(frozen=True)
class TrailPage(Paged):
    rows: tuple[TrailRow, ...]


def contains_text(field: Any, text: str) -> Any:
    """``field`` contains ``text``, case-folded, with ``%`` and ``_`` taken literally;
    the same SQL on SQLite and PostgreSQL."""
    escaped = text.lower().replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return peewee.NodeList(
        (peewee.fn.LOWER(field), peewee.SQL("LIKE"), f"%{escaped}%", peewee.SQL("ESCAPE '!'"))
    )


def _about_account(account_id: int) -> Any:
    request_ids = [
        str(row[0])
        for row in PermissionRequest.select(PermissionRequest.id)
        .where(PermissionRequest.account == account_id)
        .tuples()
    ]
    condition = (AuditEvent.actor == account_id) | (
        (AuditEvent.target_type == "account") & (AuditEvent.target_id == str(account_id))
    )
    if request_ids:
        condition |= (AuditEvent.target_type == "permission") & (
            AuditEvent.target_id.in_(request_ids)
        )
    return condition


def person_label(account_id: int, name: str) -> str:
    """How the trail names a person: ``王小明 #12``, or ``#12`` with no name."""
    return f"{name} #{account_id}" if name else f"#{account_id}"


def _actor_label(event: AuditEvent, names: dict[int, str]) -> str:
    if event.actor_id is not None:
        return person_label(event.actor_id, names.get(event.actor_id, ""))
    # A label stored for a person whose account is gone is a masked ID (earlier
    # versions): never shown.
    return "#?" if "*" in event.actor_label else event.actor_label


def _trail_row(event: AuditEvent, names: dict[int, str]) -> TrailRow:
    try:
        details = json.loads(event.details)
    except ValueError:
        details = {}
    if not isinstance(details, dict):
        details = {}
    note = details.get("note") or (
        "" if event.action == "disable_account" else details.get("reason")
    )
    if event.target_type == "account" and event.target_id.isdigit():
        target = person_label(int(event.target_id), names.get(int(event.target_id), ""))
    elif event.target_id:
        target = f"#{event.target_id}"
    else:
        target = ""
    unit = event.unit if event.unit_id is not None else None
    return TrailRow(
        id=event.id,
        at=event.at,
        actor_label=_actor_label(event, names),
        action=event.action,
        target_type=event.target_type,
        target_label=target,
        unit_code=unit.code if unit is not None else "",
        unit_name=unit.name if unit is not None else "",
        note=note if isinstance(note, str) else "",
    )
