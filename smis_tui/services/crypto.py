"""Protection of the person ID at rest: AES-GCM for the value, HMAC for look-ups.

One 32-byte master key lives in a key file (mode 0600); HKDF derives separate keys
for encryption, the blind index and the key check value that the database keeps so
that a wrong key file is noticed before anything is written with it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_FILE_HEADER = "smis-tui-data-key-v1"
_PERSON_ID_AAD = b"smis-tui person-id v1"
_NONCE_BYTES = 12


class KeyFileError(RuntimeError):
    """The key file is missing, unreadable or does not match the database."""


def _derive(master: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(master)


def create_key_file(path: Path) -> bool:
    """Create a new key file if there is none; returns True when one was created."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    encoded = base64.b64encode(secrets.token_bytes(32)).decode("ascii")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(f"{KEY_FILE_HEADER}\n{encoded}\n")
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

    @classmethod
    def from_file(cls, path: Path) -> KeyRing:
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

    def blind_index(self, person_id: str) -> str:
        return hmac.new(self._index_key, person_id.encode("utf-8"), hashlib.sha256).hexdigest()

    def encrypt(self, person_id: str) -> bytes:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, person_id.encode("utf-8"), _PERSON_ID_AAD)

    def decrypt(self, blob: bytes) -> str:
        try:
            plain = self._aead.decrypt(
                bytes(blob[:_NONCE_BYTES]), bytes(blob[_NONCE_BYTES:]), _PERSON_ID_AAD
            )
        except InvalidTag:
            raise KeyFileError("身分證號無法解密：金鑰與資料庫不符。") from None
        return plain.decode("utf-8")
