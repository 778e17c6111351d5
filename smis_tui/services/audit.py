"""軌跡紀錄: an append-only audit trail chained by SHA-256.

Every row stores the previous row's hash and its own hash over its content, and the
database keeps the hash and id of the newest row, so an edited, deleted or inserted
row — or a cut-off tail — is found by :meth:`AuditLog.verify`. Whoever can write the
database could recompute all of that; the head's MAC under a key outside the database
and the checkpoints in a local file (smis_tui.services.audit_anchor) are what such a
person cannot forge.

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
import logging
import operator
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import peewee

from models.db import (
    bulk_insert,
    database_proxy,
    defer_until_commit,
    is_postgres,
    lock_chain,
    write_transaction,
)
from models.schema import Account, AuditEvent, Category, PermissionRequest, Unit, utcnow
from smis_tui.core.clock import taiwan_day_start
from smis_tui.core.domain import UnitKind
from smis_tui.services.audit_anchor import HEAD_MAC_KEY, AuditAnchor
from smis_tui.services.crypto import KeyRing
from smis_tui.services.errors import NotAllowed
from smis_tui.services.paging import Paged, page_bounds, page_of
from smis_tui.services.scope import admin_requests

log = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
HEAD_KEY = "audit_head"
TRAIL_PAGE_SIZE = 20
# Rows read at a time for the CSV export.
EXPORT_CHUNK = 500


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
    # "prev_hash", "row_hash", "head_missing", "head_mismatch", "head_mac" or
    # "checkpoint" ("" when ok).
    code: str = ""
    # False when the chain verifies but its head carries no MAC yet: a database of the
    # version before the anchor, which the next seal anchors (not tampering, unless
    # this machine already holds a checkpoint: then a missing MAC fails).
    anchored: bool = True


_HEAD_MAC_BAD = "紀錄鏈末端簽章不符：自此筆起的紀錄無法確認未遭竄改（刪除、修改或插入後重新串接）"
_HEAD_MAC_MISSING = "缺少紀錄鏈末端簽章：自此筆起的紀錄無法確認未遭竄改"
_CHECKPOINT_DIFFERS = "與本機檢查點不符：自此筆起的紀錄被修改、刪除或插入"


_EVENT_COLUMNS = (
    "at",
    "actor_id",
    "actor_label",
    "action",
    "target_type",
    "target_id",
    "unit_id",
    "details",
    "prev_hash",
    "row_hash",
)
_EVENT_FIELDS = tuple(AuditEvent._meta.columns[column] for column in _EVENT_COLUMNS)


def _event_values(event: AuditEvent) -> tuple[object, ...]:
    """The row as the database stores it (each field's own conversion). The raw values:
    ``getattr`` on the actor and unit fields would read those rows back, under the
    chain's lock."""
    return tuple(field.db_value(event.__data__.get(field.name)) for field in _EVENT_FIELDS)


def _head_and_mac() -> tuple[str | None, str | None]:
    """The head and its MAC, read in one statement (a consistent pair)."""
    db = database_proxy.obj
    cursor = db.execute_sql(
        f'SELECT "key", "value" FROM "meta" WHERE "key" IN ({db.param}, {db.param})',  # noqa: S608
        (HEAD_KEY, HEAD_MAC_KEY),
    )
    values = dict(cursor.fetchall())
    return values.get(HEAD_KEY), values.get(HEAD_MAC_KEY)


def _store_meta(values: dict[str, str]) -> None:
    """Insert or replace these facts in one statement (the same SQL on both backends)."""
    db = database_proxy.obj
    rows = ", ".join([f"({db.param}, {db.param})"] * len(values))
    db.execute_sql(
        f'INSERT INTO "meta" ("key", "value") VALUES {rows} '  # noqa: S608 - constants
        'ON CONFLICT ("key") DO UPDATE SET "value" = EXCLUDED."value"',
        [item for pair in values.items() for item in pair],
    )


def _store_head_mac(sealed: str) -> None:
    _store_meta({HEAD_MAC_KEY: sealed})


def reseal_head(old: KeyRing, new: KeyRing) -> bool:
    """A key rotation's switch, in its transaction: the head's MAC checked under the old
    key and written again under the new one. A MAC that does not check is left as it
    is, so that a rotation never turns a tampered head into a sealed one. True when
    the head was sealed again."""
    lock_chain()
    head, sealed = _head_and_mac()
    if head is None or sealed is None:
        return False
    if not AuditAnchor([old], None).check_head(head, sealed):
        return False
    _store_head_mac(AuditAnchor([new], None).head_mac(head))
    return True


class AuditLog:
    def __init__(self, anchor: AuditAnchor) -> None:
        """``anchor``: the key that seals the chain's head and this machine's
        checkpoint file. Every writer has one: a head written without its MAC would
        fail verification."""
        self._anchor = anchor

    @property
    def anchor(self) -> AuditAnchor:
        return self._anchor

    @property
    def checkpoint_file(self) -> Path | None:
        return self._anchor.checkpoint_file

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
        """Append one row, as part of the caller's write transaction.

        In a :func:`~models.db.write_transaction` the row is linked into the chain
        just before that transaction commits, under the chain's lock: changes run in
        parallel and only their appends to the chain take turns. The row's time is
        the time of the change."""
        db = database_proxy.obj
        if not db.in_transaction():
            raise RuntimeError("audit rows are written inside the state change's transaction")
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
            prev_hash="",
            row_hash="",
        )
        if not defer_until_commit(self._append, event):
            self._append([event])
        return event

    def _append(self, events: list[AuditEvent]) -> None:
        """Link ``events`` to the chain's head, in order, and move the head and its MAC.

        This is the part of every change that takes turns (under the chain's lock, until
        the commit right after it), so it is four statements of plain SQL: the lock, the
        head and its MAC, the rows, the new head and MAC."""
        lock_chain()
        head, sealed = _head_and_mac()
        prev_hash = head.split(":", 1)[1] if head else GENESIS_HASH
        for event in events:
            event.prev_hash = prev_hash
            event.row_hash = _row_hash(event)
            prev_hash = event.row_hash
        ids = sorted(
            int(str(row[0]))
            for row in bulk_insert(
                "audit_event", _EVENT_COLUMNS, [_event_values(e) for e in events], "id"
            )
        )
        for event, event_id in zip(events, ids, strict=True):
            event.id = event_id
        head_value = f"{ids[-1]}:{prev_hash}"
        new_seal = self._seal_head(head, sealed, head_value)
        _store_meta({HEAD_KEY: head_value} | ({HEAD_MAC_KEY: new_seal} if new_seal else {}))

    def _seal_head(self, previous: str | None, sealed: str | None, head_value: str) -> str | None:
        """The new head's MAC, if the head it was linked to was sealed (None if not): a
        head re-chained behind the program's back keeps its stale MAC (and fails
        verification) instead of being laundered by the next change. A head with no
        MAC at all is from the version before the anchor, unless this machine has
        checkpoints.

        Every ``anchor.every`` rows the previous head, committed and its MAC just
        checked, goes to this machine's checkpoint file as well (one fsync under the
        lock that often); the new head cannot, as it is not committed yet."""
        if previous is not None:
            if sealed is None:
                if self._anchor.has_checkpoints():
                    return None
            elif not self._anchor.check_head(previous, sealed):
                return None
            else:
                self._periodic_checkpoint(previous, head_value)
        return self._anchor.head_mac(head_value)

    def _periodic_checkpoint(self, previous: str, head_value: str) -> None:
        every = self._anchor.every
        previous_id, previous_hash = previous.split(":", 1)
        if every <= 0 or int(previous_id) // every == int(head_value.split(":", 1)[0]) // every:
            return
        try:
            self._anchor.write_checkpoint(int(previous_id), previous_hash)
        except OSError as exc:
            # The change goes on: `maintenance` and `audit verify` write one later.
            log.warning("audit checkpoint not written: %s", exc)

    def verify(self) -> VerifyResult:
        """Check the chain row by row, every checkpoint of this machine's file, and the
        head's MAC; the first row that no longer matches is named. A changed row that
        was re-chained can be placed only between anchors: the row named is then the
        first one after the last row a checkpoint vouches for.

        On PostgreSQL the rows and the head are read in one snapshot, so that kiosks
        appending meanwhile (in parallel) never look like a cut-off tail."""
        db = database_proxy.obj
        if is_postgres(db) and not db.in_transaction():
            with db.atomic():
                db.execute_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                return self._verify()
        return self._verify()

    def _verify(self) -> VerifyResult:
        pending = sorted(self._anchor.checkpoints(), key=lambda c: (c.row_id, c.line))
        for point in pending:
            if point.mac_ok is False:
                return VerifyResult(
                    False,
                    0,
                    point.row_id,
                    f"檢查點檔第 {point.line} 行簽章不符：檢查點檔遭修改",
                    "checkpoint",
                )
        expected_prev = GENESIS_HASH
        checked = 0
        last_id: int | None = None
        # The first row after the last one a checkpoint vouches for, and how many
        # rows come before it.
        unvouched: int | None = None
        unvouched_after = 0
        index = 0
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
            vouched = False
            while index < len(pending) and pending[index].row_id <= event.id:
                point = pending[index]
                if point.row_id < event.id or point.row_hash != event.row_hash:
                    # A checkpointed row gone or changed, and the chain re-linked.
                    if unvouched is None:
                        return VerifyResult(
                            False, checked, event.id, _CHECKPOINT_DIFFERS, "checkpoint"
                        )
                    return VerifyResult(
                        False, unvouched_after, unvouched, _CHECKPOINT_DIFFERS, "checkpoint"
                    )
                index += 1
                vouched = True
            expected_prev = event.row_hash
            last_id = event.id
            checked += 1
            if vouched:
                unvouched = None
            elif unvouched is None:
                unvouched, unvouched_after = event.id, checked - 1
        if index < len(pending):
            gone = pending[index].row_id
            return VerifyResult(
                False,
                checked,
                gone,
                f"檢查點記錄的紀錄 #{gone} 已不存在：紀錄鏈末端被截斷",
                "checkpoint",
            )
        head, sealed = _head_and_mac()
        if head is None:
            if checked:
                return VerifyResult(False, checked, last_id, "缺少紀錄鏈末端資訊", "head_missing")
            if sealed is not None:
                return VerifyResult(False, 0, None, "缺少紀錄鏈末端資訊", "head_missing")
            return VerifyResult(True, 0)
        head_id, head_hash = head.split(":", 1)
        if head_hash != expected_prev:
            bad = int(head_id)
            return VerifyResult(
                False,
                checked,
                bad,
                "紀錄鏈末端不符：最後的紀錄被刪除或修改",
                "head_mismatch",
            )
        if unvouched is None:
            unvouched, unvouched_after = int(head_id), max(checked - 1, 0)
        if sealed is None:
            if pending:
                return VerifyResult(
                    False, unvouched_after, unvouched, _HEAD_MAC_MISSING, "head_mac"
                )
            return VerifyResult(True, checked, anchored=False)
        if not self._anchor.check_head(head, sealed):
            return VerifyResult(False, unvouched_after, unvouched, _HEAD_MAC_BAD, "head_mac")
        return VerifyResult(True, checked)

    def checkpoint(self) -> VerifyResult:
        """Write a checkpoint of the sealed head to this machine's file (`audit verify`,
        `maintenance`). A head with no MAC yet (a database of the version before the
        anchor) is verified and sealed first. Nothing is written for a head whose MAC
        does not check: the result says why."""
        head, sealed = _head_and_mac()
        if head is None:
            return VerifyResult(True, 0)
        if sealed is None:
            result = self.verify()
            if not result.ok:
                return result
            with write_transaction():
                lock_chain()
                current, sealed = _head_and_mac()
                if current == head and sealed is None:
                    sealed = self._anchor.head_mac(head)
                    _store_head_mac(sealed)
            head = current
            if head is None or sealed is None:
                return VerifyResult(False, 0, None, _HEAD_MAC_MISSING, "head_mac")
        head_id, head_hash = head.split(":", 1)
        if not self._anchor.check_head(head, sealed):
            return VerifyResult(False, 0, int(head_id), _HEAD_MAC_BAD, "head_mac")
        self._anchor.write_checkpoint(int(head_id), head_hash)
        return VerifyResult(True, 0)

    def first_checkpoint(self) -> None:
        """At start-up: a machine with no checkpoint yet writes one of a sealed head, so
        that from then on a MAC removed from the database is noticed here."""
        if self._anchor.has_checkpoints():
            return
        head, sealed = _head_and_mac()
        if head is not None and sealed is not None and self._anchor.check_head(head, sealed):
            head_id, head_hash = head.split(":", 1)
            try:
                self._anchor.write_checkpoint(int(head_id), head_hash)
            except OSError as exc:
                # Not a reason to keep the kiosk down: `audit verify` writes one later.
                log.warning("audit checkpoint not written: %s", exc)

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
        return self._page(self._search_condition(query), page, page_size)

    @staticmethod
    def _search_condition(query: TrailQuery) -> Any:
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
        return functools.reduce(operator.and_, conditions) if conditions else None

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
        rows = _describe(events)
        return TrailPage(rows, page=page, pages=pages, total=total, page_size=page_size)

    def export_rows(self, viewer_id: int, query: TrailQuery) -> Iterator[TrailRow]:
        """Every row a search finds, newest first, for the CSV export (CDC 管理者 only,
        checked here and at once, before any file is made: the screen's check is a
        convenience). Read a chunk at a time so a long trail never sits in memory."""
        self.require_cdc_admin(viewer_id)
        return self._rows_in_chunks(self._search_condition(query))

    @staticmethod
    def _rows_in_chunks(condition: Any) -> Iterator[TrailRow]:
        below: int | None = None
        while True:
            chunk = AuditEvent.select(AuditEvent, Unit).join(
                Unit, peewee.JOIN.LEFT_OUTER, on=AuditEvent.unit == Unit.id
            )
            if condition is not None:
                chunk = chunk.where(condition)
            if below is not None:
                chunk = chunk.where(AuditEvent.id < below)
            events = list(chunk.order_by(AuditEvent.id.desc()).limit(EXPORT_CHUNK))
            if not events:
                return
            yield from _describe(events)
            below = events[-1].id


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
    """One row of the trail, with what it is about named in words: the screens and the
    CSV export translate the codes (states, refusals) in the reader's language."""

    id: int
    at: dt.datetime
    """Naive UTC, as stored; screens show it in Taiwan time."""
    actor_label: str
    """The person who acted, ``王小明 #12`` (``#12`` when the account is deleted), or
    the label of a change no person made: ``system``, ``cli``, a kiosk session."""
    action: str
    target_type: str
    target_label: str
    """The person the row is about (the target account, or the account of the target
    permission request), named as :attr:`actor_label` names a person; else ``#id``,
    or "" for a card (:attr:`card`)."""
    unit_code: str
    unit_name: str
    note: str
    """The reason or note written with the change (text typed by a person: show it
    as plain text)."""
    actor_unit: str = ""
    """The acting account's unit (its name)."""
    target_unit: str = ""
    """The unit of the person the row is about."""
    category_name: str = ""
    category_name_en: str = ""
    role: str = ""
    """The role the row is about (a :class:`~smis_tui.core.domain.Role` value)."""
    before: str = ""
    after: str = ""
    """The state before and after the change, as codes (``pending``, ``approved``,
    ``active``, ``disabled``, a language …); "" when not known."""
    why: str = ""
    """Why, as a code: a refused login's reason (``wrong_pin``, ``pending`` …) or a
    disabled account's (``inactive``, ``self``, ``superior``)."""
    tries_left: int | None = None
    card: str = ""
    """A card that stands for nobody (a refused login): the start of its certificate's
    SHA-256, never anything of its holder."""
    card_kind: str = ""


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


# What each action changed, when the row's action alone says it.
_CHANGES: dict[str, tuple[str, str]] = {
    "approve_request": ("pending", "approved"),
    "reject_request": ("pending", "rejected"),
    "withdraw_request": ("pending", "withdrawn"),
    "give_up_permission": ("granted", "revoked"),
    "disable_permission": ("granted", "revoked"),
    "disable_account": ("active", "disabled"),
    "delete_account": ("", "deleted"),
}


def _details(event: AuditEvent) -> dict[str, Any]:
    try:
        details = json.loads(event.details)
    except ValueError:
        return {}
    return details if isinstance(details, dict) else {}


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _describe(events: list[AuditEvent]) -> tuple[TrailRow, ...]:
    """The rows of ``events`` in words: the people (name and unit, from the accounts as
    they are now), the permission request's category and role, the change. A few
    queries for the whole page, none per row."""
    details = {e.id: _details(e) for e in events}
    request_ids = {
        int(e.target_id) for e in events if e.target_type == "permission" and e.target_id.isdigit()
    } | {r for d in details.values() if (r := _int(d.get("request"))) is not None}
    requests: dict[int, tuple[int, int, str]] = (
        {
            row[0]: (row[1], row[2], row[3])
            for row in PermissionRequest.select(
                PermissionRequest.id,
                PermissionRequest.account,
                PermissionRequest.category,
                PermissionRequest.role,
            )
            .where(PermissionRequest.id.in_(sorted(request_ids)))
            .tuples()
        }
        if request_ids
        else {}
    )
    subjects: dict[int, int | None] = {}
    for event in events:
        if event.target_type == "account" and event.target_id.isdigit():
            subjects[event.id] = int(event.target_id)
        elif event.target_type == "permission" and event.target_id.isdigit():
            request = requests.get(int(event.target_id))
            account = _int(details[event.id].get("account"))
            subjects[event.id] = request[0] if request is not None else account
        else:
            subjects[event.id] = None
    people = {e.actor_id for e in events if e.actor_id is not None} | {
        who for who in subjects.values() if who is not None
    }
    accounts: dict[int, tuple[str, str]] = (
        {
            row[0]: (row[1], row[2] or "")
            for row in Account.select(Account.id, Account.name, Unit.name)
            .join(Unit, peewee.JOIN.LEFT_OUTER, on=Account.unit == Unit.id)
            .where(Account.id.in_(sorted(people)))
            .tuples()
        }
        if people
        else {}
    )
    categories = _categories()
    return tuple(
        _trail_row(e, details[e.id], subjects[e.id], accounts, requests, categories) for e in events
    )


def _categories() -> dict[object, tuple[str, str]]:
    """Every category by id and by code (rows name it either way): a handful of rows."""
    found: dict[object, tuple[str, str]] = {}
    for cid, code, name, name_en in Category.select(
        Category.id, Category.code, Category.name, Category.name_en
    ).tuples():
        found[cid] = found[code] = (name, name_en)
    return found


def _actor_label(event: AuditEvent, names: dict[int, str]) -> str:
    if event.actor_id is not None:
        return person_label(event.actor_id, names.get(event.actor_id, ""))
    # A label stored for a person whose account is gone is a masked ID (earlier
    # versions): never shown.
    return "#?" if "*" in event.actor_label else event.actor_label


def _trail_row(
    event: AuditEvent,
    details: dict[str, Any],
    subject: int | None,
    accounts: dict[int, tuple[str, str]],
    requests: dict[int, tuple[int, int, str]],
    categories: dict[object, tuple[str, str]],
) -> TrailRow:
    names = {who: name for who, (name, _unit) in accounts.items()}
    note = details.get("note") or (
        "" if event.action == "disable_account" else details.get("reason")
    )
    if subject is not None:
        target = person_label(subject, names.get(subject, ""))
    elif event.target_id and event.target_type != "card":
        target = f"#{event.target_id}"
    else:
        target = ""
    request = None
    if event.target_type == "permission" and event.target_id.isdigit():
        request = requests.get(int(event.target_id))
    elif (number := _int(details.get("request"))) is not None:
        request = requests.get(number)
    category_key: object = details.get("category")
    if category_key is None and request is not None:
        category_key = request[1]
    category = categories.get(category_key, ("", "")) if category_key is not None else ("", "")
    role = details.get("role") or (request[2] if request is not None else "")
    before, after = _CHANGES.get(event.action, ("", ""))
    if event.action == "set_language":
        before, after = str(details.get("previous") or ""), str(details.get("language") or "")
    if event.action == "set_theme":
        before, after = str(details.get("previous") or ""), str(details.get("theme") or "")
    why = details.get("why") or (details.get("reason") if event.action == "disable_account" else "")
    tries = _int(details.get("tries_left"))
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
        actor_unit=accounts.get(event.actor_id, ("", ""))[1] if event.actor_id else "",
        target_unit=accounts.get(subject, ("", ""))[1] if subject is not None else "",
        category_name=category[0],
        category_name_en=category[1],
        role=role if isinstance(role, str) else "",
        before=before,
        after=after,
        why=why if isinstance(why, str) else "",
        tries_left=tries,
        card=str(details.get("card") or "") if event.target_type == "card" else "",
        card_kind=str(details.get("card_kind") or ""),
    )
