"""Protection of the person ID at rest: AES-GCM for the value, HMAC for look-ups.

One 32-byte master key lives in a key file (mode 0600); HKDF derives separate keys
for encryption, the blind index and the key check value that the database keeps so
that a wrong key file is noticed before anything is written with it.

Every ciphertext is bound to the cell it lives in: the AES-GCM associated data names
the table, the column and the row's primary key (:class:`CipherSlot`), so a value
copied into another row fails its integrity check there instead of being read as that
row's. A blob starts with a format tag and the fingerprint of the key that wrote it,
which tells a wrong key (:class:`KeyFileError`) from a moved or altered value
(:class:`DataIntegrityError`), and lets a key rotation see which key each row is under.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from smis_tui.services.errors import ServiceError

KEY_FILE_HEADER = "smis-tui-data-key-v1"
# Schema version 1 bound nothing: every value had this same associated data. Only the
# upgrade to row-bound values (models.migrate) still reads such blobs.
_LEGACY_AAD = b"smis-tui person-id v1"
_BLOB_TAG = b"SMv2"
_KEY_ID_BYTES = 8
_NONCE_BYTES = 12
_HEADER_BYTES = len(_BLOB_TAG) + _KEY_ID_BYTES


class KeyFileError(RuntimeError):
    """The key file is missing, unreadable or does not match the database."""


class DataIntegrityError(ServiceError):
    """An encrypted value does not belong to the row it was read from (moved, copied
    or altered behind the program's back)."""

    def __init__(self, slot: CipherSlot) -> None:
        super().__init__("error.cipher_not_this_row", id=slot.row_id)
        self.slot = slot


class CipherSlot(NamedTuple):
    """Where an encrypted value lives: its table, its column and its row's primary key."""

    table: str
    column: str
    row_id: int

    def associated_data(self) -> bytes:
        return f"smis-tui:{self.table}.{self.column}:{self.row_id}".encode("ascii")


def person_id_slot(account_id: int) -> CipherSlot:
    """The cell holding an account's encrypted person ID (``account.person_id_cipher``)."""
    return CipherSlot("account", "person_id_cipher", int(account_id))


def rotation_path(key_file: Path, suffix: str) -> Path:
    """``<key_file>.new`` or ``<key_file>.old``, the files of a key rotation."""
    return key_file.with_name(f"{key_file.name}.{suffix}")


def fsync_directory(path: Path) -> None:
    """Make a file created or renamed in ``path`` survive a crash (the directory entry
    is on disk too)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _derive(master: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(master)


def create_key_file(path: Path, *, copy_of: Path | None = None) -> bool:
    """Create a new key file if there is none (a fresh random key, or the key file
    ``copy_of`` as it is); returns True when one was created. The file is on disk when
    this returns."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if copy_of is None:
        encoded = base64.b64encode(secrets.token_bytes(32)).decode("ascii")
        content = f"{KEY_FILE_HEADER}\n{encoded}\n".encode("ascii")
    else:
        content = copy_of.read_bytes()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    return True


class KeyRing:
    def __init__(self, master: bytes) -> None:
        if len(master) != 32:
            raise KeyFileError("金鑰長度錯誤")
        self._aead = AESGCM(_derive(master, b"person-id encryption"))
        self._index_key = _derive(master, b"person-id blind index")
        self.check_value = hmac.new(
            _derive(master, b"key check"), b"smis-tui", hashlib.sha256
        ).hexdigest()
        self.key_id = bytes.fromhex(self.check_value)[:_KEY_ID_BYTES]
        # Its own HKDF label: a MAC under it tells nothing about the other keys
        # (smis_tui.services.audit_anchor).
        self._anchor_key = _derive(master, b"smis-tui audit anchor v1")

    @classmethod
    def from_file(cls, path: Path) -> KeyRing:
        """The key in ``path``, refused while a rotation of it is unfinished (its rows
        are then under two keys; `smis-tui key rotate` finishes the rotation)."""
        pending = rotation_path(path, "new")
        if pending.exists():
            raise KeyFileError(
                f"資料加密金鑰輪替尚未完成（{pending} 存在）："
                "請再執行 smis-tui key rotate 完成輪替，完成前 kiosk 無法啟動。"
            )
        return cls.read(path)

    @classmethod
    def read(cls, path: Path) -> KeyRing:
        """The key in ``path``, whatever the state of a rotation."""
        try:
            lines = path.read_text(encoding="ascii").split()
        except FileNotFoundError:
            raise KeyFileError(
                f"找不到資料加密金鑰檔 {path}：請先執行 smis-tui db init，或設定 SMIS_KEY_FILE。"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyFileError(f"無法讀取資料加密金鑰檔 {path}：{exc}") from None
        if len(lines) != 2 or lines[0] != KEY_FILE_HEADER:
            raise KeyFileError(f"資料加密金鑰檔 {path} 格式錯誤。")
        try:
            master = base64.b64decode(lines[1], validate=True)
        except ValueError:
            raise KeyFileError(f"資料加密金鑰檔 {path} 格式錯誤。") from None
        if path.stat().st_mode & 0o077:
            raise KeyFileError(f"資料加密金鑰檔 {path} 權限過寬，請設為 0600。")
        return cls(master)

    def anchor_mac(self, message: bytes) -> str:
        """HMAC-SHA256 of ``message`` under the audit anchor key."""
        return hmac.new(self._anchor_key, message, hashlib.sha256).hexdigest()

    def blind_index(self, person_id: str) -> str:
        return hmac.new(self._index_key, person_id.encode("utf-8"), hashlib.sha256).hexdigest()

    def encrypt(self, person_id: str, slot: CipherSlot) -> bytes:
        """``person_id`` encrypted for the one cell ``slot``."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, person_id.encode("utf-8"), slot.associated_data())
        return _BLOB_TAG + self.key_id + nonce + sealed

    def wrote(self, blob: bytes) -> bool:
        """Whether ``blob`` is in the row-bound format and says it was written with this
        key (its integrity is checked only by :meth:`decrypt`)."""
        blob = bytes(blob)
        return blob.startswith(_BLOB_TAG) and blob[len(_BLOB_TAG) : _HEADER_BYTES] == self.key_id

    def decrypt(self, blob: bytes, slot: CipherSlot) -> str:
        """The value of the cell ``slot``; :class:`KeyFileError` when another key wrote
        it, :class:`DataIntegrityError` when it was written for another cell, altered,
        or is in the unbound format of schema version 1."""
        blob = bytes(blob)
        if not blob.startswith(_BLOB_TAG):
            raise DataIntegrityError(slot)
        if not self.wrote(blob):
            raise KeyFileError("身分證號無法解密：金鑰與資料庫不符。")
        body = blob[_HEADER_BYTES:]
        try:
            plain = self._aead.decrypt(
                body[:_NONCE_BYTES], body[_NONCE_BYTES:], slot.associated_data()
            )
        except InvalidTag:
            raise DataIntegrityError(slot) from None
        return plain.decode("utf-8")

    def bind_legacy(self, blob: bytes, slot: CipherSlot) -> bytes | None:
        """The upgrade to row-bound values: ``blob`` (read from ``slot``) re-encrypted
        for its cell, or None when it already is (checked, so that running the upgrade
        again changes nothing and a moved value is still refused)."""
        blob = bytes(blob)
        refused: Exception = KeyFileError("身分證號無法解密：金鑰與資料庫不符。")
        if blob.startswith(_BLOB_TAG):
            try:
                self.decrypt(blob, slot)
                return None
            except (KeyFileError, DataIntegrityError) as exc:
                # A version-1 blob's random nonce starts with the tag once in 2**32.
                refused = exc
        try:
            plain = self._aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], _LEGACY_AAD)
        except InvalidTag:
            raise refused from None
        return self.encrypt(plain.decode("utf-8"), slot)
