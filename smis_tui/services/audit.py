"""軌跡紀錄: an append-only audit trail chained by SHA-256.

Every row stores the previous row's hash and its own hash over its content, and the
database keeps the hash and id of the newest row, so an edited, deleted or inserted
row — or a cut-off tail — is found by :meth:`AuditLog.verify`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from models.db import database_proxy
from models.schema import Account, AuditEvent, Meta, Unit, utcnow

GENESIS_HASH = "0" * 64
HEAD_KEY = "audit_head"


def _canonical(
    *,
    prev_hash: str,
    at: dt.datetime,
    actor_id: int | None,
    actor_label: str,
    action: str,
    target_type: str,
    target_id: str,
    unit_id: int | None,
    details: str,
) -> bytes:
    payload = [
        prev_hash,
        at.strftime("%Y-%m-%dT%H:%M:%S.%f"),
        actor_id,
        actor_label,
        action,
        target_type,
        target_id,
        unit_id,
        details,
    ]
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _row_hash(event: AuditEvent) -> str:
    return hashlib.sha256(
        _canonical(
            prev_hash=event.prev_hash,
            at=event.at,
            actor_id=event.actor_id,
            actor_label=event.actor_label,
            action=event.action,
            target_type=event.target_type,
            target_id=event.target_id,
            unit_id=event.unit_id,
            details=event.details,
        )
    ).hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    first_bad_id: int | None = None
    reason: str = ""


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
            else (f"{actor.person_id_masked}" if actor is not None else "system"),
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
                )
            if _row_hash(event) != event.row_hash:
                return VerifyResult(False, checked, event.id, "內容雜湊不符：此筆紀錄已被修改")
            expected_prev = event.row_hash
            last_id = event.id
            checked += 1
        head = Meta.get_or_none(Meta.key == HEAD_KEY)
        if head is None:
            if checked:
                return VerifyResult(False, checked, last_id, "缺少紀錄鏈末端資訊")
            return VerifyResult(True, 0)
        head_id, head_hash = head.value.split(":", 1)
        if head_hash != expected_prev:
            bad = int(head_id)
            return VerifyResult(
                False,
                checked,
                bad,
                "紀錄鏈末端不符：最後的紀錄被刪除或修改",
            )
        return VerifyResult(True, checked)

    def for_actor(self, account_id: int, limit: int = 200) -> list[AuditEvent]:
        return list(
            AuditEvent.select()
            .where(
                (AuditEvent.actor == account_id)
                | (
                    (AuditEvent.target_type == "account")
                    & (AuditEvent.target_id == str(account_id))
                )
            )
            .order_by(AuditEvent.id.desc())
            .limit(limit)
        )
