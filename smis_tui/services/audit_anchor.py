"""The audit chain's anchor outside the database (docs/architecture.md, "Audit anchor").

The hash chain (smis_tui.services.audit) shows rows changed behind the program's back
only to someone who cannot recompute it: whoever can write the database can delete a
row, re-chain every later row and rewrite the head. Two things the database cannot
forge pin the chain down:

* **The head MAC.** Every sealed head ``"<id>:<hash>"`` gets an HMAC-SHA256 under a key
  derived from the data key file with its own HKDF label (never the encryption or
  blind-index key), stored as ``Meta[audit_head_mac] = "<key id>:<hex mac>"``. The key
  id says which key wrote it, so a key rotation can check it under the old key and
  seal the head again under the new one.
* **Checkpoints.** ``<data_dir>/audit-checkpoints`` (0600, one JSON line each,
  appended, flushed and fsynced; also sent to the system log) records a sealed head's
  row id, row hash, time and a MAC. Each machine keeps its own; verify compares the
  rows with every checkpoint in the local file, which catches a roll-back to an
  earlier sealed head and an edit by someone who holds the key file too. They are
  written by `audit verify`, `maintenance`, at start-up on a machine with none, and
  by the append that passes every :data:`CHECKPOINT_EVERY` row ids.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
import logging.handlers
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from smis_tui.services.crypto import KeyFileError, KeyRing, fsync_directory, rotation_path

HEAD_MAC_KEY = "audit_head_mac"
CHECKPOINT_FILE_NAME = "audit-checkpoints"
CHECKPOINT_EVERY = 1000
_HEAD_LABEL = b"smis-tui audit head\x00"
_CHECKPOINT_LABEL = b"smis-tui audit checkpoint\x00"

log = logging.getLogger("smis_tui.audit.checkpoint")


@dataclass(frozen=True)
class Checkpoint:
    line: int
    """Its line number in the checkpoint file (1-based)."""
    row_id: int
    row_hash: str
    at: str
    mac_ok: bool | None
    """True when its MAC checks under a key of the ring, False when it does not (the
    file was edited), None when the key that wrote it is gone (a rotation's old key
    file removed): it is still compared by hash."""


def _checkpoint_message(row_id: int, row_hash: str, at: str) -> bytes:
    body = json.dumps([row_id, row_hash, at], separators=(",", ":"))
    return _CHECKPOINT_LABEL + body.encode("ascii")


class AuditAnchor:
    """The keys that seal and check the head, and this machine's checkpoint file.

    ``keys[0]`` seals; every key is tried, by its id, when checking (the old key of a
    rotation, while its file is there)."""

    every = CHECKPOINT_EVERY
    """An append that moves the head past a multiple of this many row ids checkpoints
    the head before it (0: never)."""

    def __init__(self, keys: Sequence[KeyRing], checkpoint_file: Path | None) -> None:
        if not keys:
            raise ValueError("an anchor needs a key")
        self._keys = {key.key_id.hex(): key for key in keys}
        self._sealing = keys[0]
        self.checkpoint_file = checkpoint_file

    @classmethod
    def for_key_file(cls, keys: KeyRing, key_file: Path, data_dir: Path) -> AuditAnchor:
        """The anchor of ``keys`` (the key file's), also trying the key a rotation left
        in ``<key_file>.old``."""
        ring = [keys]
        old_file = rotation_path(key_file, "old")
        if old_file.exists():
            try:
                ring.append(KeyRing.read(old_file))
            except KeyFileError:
                pass  # unreadable: checkpoints under it are still compared by hash
        return cls(ring, data_dir / CHECKPOINT_FILE_NAME)

    # ----- the head MAC ------------------------------------------------------------

    def head_mac(self, head_value: str) -> str:
        """``"<key id>:<mac>"`` over the head ``"<id>:<hash>"``, under the sealing key."""
        return self.seal(_HEAD_LABEL, head_value)

    def check_head(self, head_value: str, sealed: str) -> bool:
        """Whether ``sealed`` is a MAC over ``head_value`` under a key of the ring."""
        return self.check(_HEAD_LABEL, head_value, sealed)

    def seal(self, label: bytes, message: str) -> str:
        """``"<key id>:<mac>"`` over ``message`` under the sealing key. ``label`` keeps
        the MACs of different things apart: one never checks as another."""
        mac = self._sealing.anchor_mac(label + message.encode("utf-8"))
        return f"{self._sealing.key_id.hex()}:{mac}"

    def check(self, label: bytes, message: str, sealed: str) -> bool:
        """Whether ``sealed`` is :meth:`seal` of ``message`` under a key of the ring."""
        key_id, _, mac = sealed.partition(":")
        key = self._keys.get(key_id)
        if key is None:
            return False
        return _equal(key.anchor_mac(label + message.encode("utf-8")), mac)

    # ----- checkpoints ---------------------------------------------------------------

    def checkpoints(self) -> list[Checkpoint]:
        """Every line of the local checkpoint file, in file order; a line that does
        not parse counts as one whose MAC fails (row id 0)."""
        if self.checkpoint_file is None:
            return []
        try:
            text = self.checkpoint_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        found: list[Checkpoint] = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                fields = json.loads(line)
                row_id = int(fields["row_id"])
                row_hash = str(fields["row_hash"])
                at = str(fields["at"])
                key_id = str(fields["key_id"])
                mac = str(fields["mac"])
            except (ValueError, KeyError, TypeError):
                found.append(Checkpoint(number, 0, "", "", mac_ok=False))
                continue
            key = self._keys.get(key_id)
            mac_ok = (
                None
                if key is None
                else _equal(key.anchor_mac(_checkpoint_message(row_id, row_hash, at)), mac)
            )
            found.append(Checkpoint(number, row_id, row_hash, at, mac_ok))
        return found

    def has_checkpoints(self) -> bool:
        if self.checkpoint_file is None:
            return False
        try:
            return self.checkpoint_file.stat().st_size > 0
        except FileNotFoundError:
            return False
        except OSError:
            return True  # unreadable: assume there are, so a missing MAC is not sealed

    def write_checkpoint(self, row_id: int, row_hash: str) -> None:
        """Append one checkpoint and have it on disk before returning; a copy goes to
        the system log."""
        at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        record = {
            "row_id": row_id,
            "row_hash": row_hash,
            "at": at,
            "key_id": self._sealing.key_id.hex(),
            "mac": self._sealing.anchor_mac(_checkpoint_message(row_id, row_hash, at)),
        }
        line = json.dumps(record, separators=(",", ":")) + "\n"
        path = self.checkpoint_file
        if path is None:
            raise RuntimeError("this anchor has no checkpoint file")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        created = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_directory(path.parent)
        _syslog().info("smis-tui audit checkpoint %s", line.strip())


def _equal(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode("ascii"), given.encode("ascii", "replace"))


_syslog_ready = False


def _syslog() -> logging.Logger:
    """The checkpoint logger, with a handler to the local syslog socket when there is
    one (a copy outside the data directory, which the file's owner cannot rewrite)."""
    global _syslog_ready
    if not _syslog_ready:
        _syslog_ready = True
        if Path("/dev/log").exists():
            try:
                handler = logging.handlers.SysLogHandler(
                    address="/dev/log", facility=logging.handlers.SysLogHandler.LOG_AUTHPRIV
                )
            except OSError:
                pass
            else:
                log.addHandler(handler)
                log.setLevel(logging.INFO)
    return log
