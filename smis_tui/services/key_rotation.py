"""`smis-tui key rotate`: a new data key, every encrypted value and blind index
re-written with it, resumable after a crash.

The steps, each one safe to repeat, and what is on disk and in the database after each
(``K`` is the key file, ``Meta`` the database's facts about itself):

1. **Start.** ``K.old`` gets a copy of the current key and ``K.new`` a fresh key, both
   0600 and on disk before anything is re-written (a ``K.new`` left by a crash before
   step 2 is taken as the new key: nothing was written with it yet).
2. **Record.** One transaction: ``Meta[key_rotation]`` names both keys' check values
   and the last account id done (0), and ``Meta[key_check]`` names no single key, so
   no kiosk starts on rows that are under two keys.
3. **Re-write.** Accounts in id order, one transaction per batch: the person ID read
   with the old key (or found already under the new one), encrypted for its row with
   the new key, its blind index recomputed, and the last id done recorded in the same
   transaction.
4. **Verify.** Every account decrypts with the new key and its blind index matches.
   A row still under the old key (written by a kiosk left running) sends the rotation
   back to step 3 from the first account.
5. **Switch.** One transaction: ``Meta[key_check]`` becomes the new key's and the
   rotation record goes. Then ``K.new`` is renamed over ``K`` (atomic); ``K.old`` stays
   until the operator has backed it up and removes it.

While ``K.new`` exists the key file is refused at start-up with a message that says to
run `smis-tui key rotate` again (smis_tui.services.crypto.KeyRing.from_file).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from models.db import write_transaction
from models.schema import Account, Meta
from smis_tui.services.access_review import reseal_reviews
from smis_tui.services.audit import reseal_head
from smis_tui.services.audit_anchor import AuditAnchor
from smis_tui.services.crypto import (
    KeyFileError,
    KeyRing,
    create_key_file,
    fsync_directory,
    person_id_slot,
    rotation_path,
)
from smis_tui.services.registry import KEY_CHECK

ROTATION_KEY = "key_rotation"
_ROTATING = "rotating:"


@dataclass(frozen=True)
class RotationResult:
    rewritten: int
    verified: int
    old_key_file: Path
    resumed: bool


@dataclass
class _State:
    old: str
    new: str
    last_id: int

    def save(self) -> None:
        value = json.dumps({"old": self.old, "new": self.new, "last_id": self.last_id})
        Meta.insert(key=ROTATION_KEY, value=value).on_conflict(
            conflict_target=[Meta.key], update={Meta.value: value}
        ).execute()


def _load_state() -> _State | None:
    row = Meta.get_or_none(Meta.key == ROTATION_KEY)
    if row is None:
        return None
    fields = json.loads(row.value)
    return _State(str(fields["old"]), str(fields["new"]), int(fields["last_id"]))


def _stored_check() -> str | None:
    row = Meta.get_or_none(Meta.key == KEY_CHECK)
    return None if row is None else str(row.value)


def rotate_key(
    key_file: Path,
    *,
    batch_size: int = 200,
    after_batch: Callable[[int], None] | None = None,
) -> RotationResult:
    """Rotate the data key of the open database (steps above); resumes an unfinished
    rotation. ``after_batch`` is called with the last account id done after each
    committed batch."""
    new_file = rotation_path(key_file, "new")
    old_file = rotation_path(key_file, "old")
    current = KeyRing.read(key_file)
    state = _load_state()
    stored = _stored_check()
    if stored is None and state is None:
        # A database that never met a key yet (smis_tui.services.registry.check_key).
        with write_transaction():
            Meta.insert(key=KEY_CHECK, value=current.check_value).execute()
        stored = current.check_value
    resumed = state is not None or new_file.exists()
    if state is None and stored != current.check_value:
        if new_file.exists() and stored == KeyRing.read(new_file).check_value:
            _switch_files(new_file, key_file)  # step 5 was cut between its two halves
            return RotationResult(0, 0, old_file, resumed=True)
        raise KeyFileError(
            "資料加密金鑰與資料庫不符：請確認 SMIS_KEY_FILE 指向此資料庫建立時的金鑰檔。"
        )
    if state is None:
        new = _start(current, key_file, new_file, old_file)
        state = _State(old=current.check_value, new=new.check_value, last_id=0)
        with write_transaction():
            state.save()
            Meta.update(value=_ROTATING + new.check_value).where(Meta.key == KEY_CHECK).execute()
        old = current
    else:
        if current.check_value != state.old:
            raise KeyFileError(
                f"資料加密金鑰檔 {key_file} 不是輪替前的金鑰：請還原原本的金鑰檔後再執行 "
                "smis-tui key rotate。"
            )
        old = current
        new = _read_new_key(new_file, state)
    rewritten = 0
    while True:
        rewritten += _rewrite_batch(old, new, state, batch_size)
        if state.last_id < 0:
            break
        if after_batch is not None:
            after_batch(state.last_id)
    verified = _verify(old, new, state)
    with write_transaction():
        Meta.update(value=new.check_value).where(Meta.key == KEY_CHECK).execute()
        Meta.delete().where(Meta.key == ROTATION_KEY).execute()
        reseal_head(old, new)  # the audit chain's head MAC, now under the new key
        # Open access reviews too: maintenance applies only a review its seal vouches for.
        reseal_reviews(AuditAnchor([old], None), AuditAnchor([new], None))
    _switch_files(new_file, key_file)
    return RotationResult(rewritten, verified, old_file, resumed)


def _start(current: KeyRing, key_file: Path, new_file: Path, old_file: Path) -> KeyRing:
    if old_file.exists() and KeyRing.read(old_file).check_value != current.check_value:
        raise KeyFileError(
            f"上次輪替留下的舊金鑰檔 {old_file} 仍在：請備份後移除，再執行 smis-tui key rotate。"
        )
    create_key_file(old_file, copy_of=key_file)
    create_key_file(new_file)  # kept as it is when a crash left one before step 2
    fsync_directory(key_file.parent)
    new = KeyRing.read(new_file)
    if new.check_value == current.check_value:
        raise KeyFileError(
            f"新金鑰檔 {new_file} 與現用金鑰相同：請移除後再執行 smis-tui key rotate。"
        )
    return new


def _read_new_key(new_file: Path, state: _State) -> KeyRing:
    try:
        new = KeyRing.read(new_file)
    except KeyFileError as exc:
        raise KeyFileError(
            f"輪替中的新金鑰檔 {new_file} 無法使用（{exc}）：已以新金鑰寫入的身分證號需要它，"
            "請自備份還原該檔後再執行 smis-tui key rotate。"
        ) from None
    if new.check_value != state.new:
        raise KeyFileError(
            f"新金鑰檔 {new_file} 不是此次輪替的新金鑰：請自備份還原該檔後再執行 smis-tui key rotate。"
        )
    return new


def _rewrite_batch(old: KeyRing, new: KeyRing, state: _State, batch_size: int) -> int:
    """One batch of step 3 in one transaction; ``state.last_id`` becomes -1 when no
    account is left."""
    rewritten = 0
    with write_transaction():
        rows = list(
            Account.select(Account.id, Account.person_id_cipher, Account.person_id_index)
            .where((Account.id > state.last_id) & Account.person_id_cipher.is_null(False))
            .order_by(Account.id)
            .limit(batch_size)
        )
        if not rows:
            state.last_id = -1
            return 0
        for row in rows:
            slot = person_id_slot(row.id)
            blob = bytes(row.person_id_cipher)
            if new.wrote(blob):
                person_id = new.decrypt(blob, slot)
                if new.blind_index(person_id) != row.person_id_index:
                    Account.update(person_id_index=new.blind_index(person_id)).where(
                        Account.id == row.id
                    ).execute()
                continue
            person_id = old.decrypt(blob, slot)
            Account.update(
                person_id_cipher=new.encrypt(person_id, slot),
                person_id_index=new.blind_index(person_id),
            ).where(Account.id == row.id).execute()
            rewritten += 1
        state.last_id = int(rows[-1].id)
        state.save()
    return rewritten


def _verify(old: KeyRing, new: KeyRing, state: _State) -> int:
    verified = 0
    last_id = 0
    while True:
        rows = list(
            Account.select(Account.id, Account.person_id_cipher, Account.person_id_index)
            .where((Account.id > last_id) & Account.person_id_cipher.is_null(False))
            .order_by(Account.id)
            .limit(500)
        )
        if not rows:
            return verified
        for row in rows:
            blob = bytes(row.person_id_cipher)
            stale = old.wrote(blob)
            if not stale:
                person_id = new.decrypt(blob, person_id_slot(row.id))
                stale = new.blind_index(person_id) != row.person_id_index
            if stale:
                # Written behind the rotation (a kiosk left running): step 3 again.
                with write_transaction():
                    state.last_id = 0
                    state.save()
                raise KeyFileError(
                    f"帳號 {row.id} 在輪替期間以舊金鑰寫入：請停止所有 kiosk 後再執行 "
                    "smis-tui key rotate。"
                )
            verified += 1
        last_id = int(rows[-1].id)


def _switch_files(new_file: Path, key_file: Path) -> None:
    os.replace(new_file, key_file)
    fsync_directory(key_file.parent)
