"""PIN verification and signing through a PKCS#11 module (python-pkcs11).

HiCOS cards (MOICA 自然人憑證, HPC 醫事人員卡) do not publish their PIN APDUs, so the
PIN and the signature go through the card vendor's PKCS#11 module (``SMIS_PKCS11_MODULE``;
token label "HiCOS PKI Smart Card", keys SIGN and KEYX). SoftHSM2 stands in for it in
the tests.

A login is one call: open a session, log in, sign, log out, close. Nothing is kept
between calls, and the PIN never appears in a message, an exception or a log. python-
pkcs11 takes the PIN as a ``str``, so it cannot be wiped; it is dropped right after use.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pkcs11
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass, TokenFlag
from pkcs11 import exceptions as p11

from card.errors import (
    CardError,
    CardRemoved,
    NoCard,
    PinBlocked,
    PinFormatError,
    Pkcs11Unavailable,
    WrongPin,
    WrongPinTriesUnknown,
)
from card.pin import check_pin_format, wipe

__all__ = [
    "HICOS_TOKEN_LABEL",
    "MODULE_ENV",
    "Pkcs11Signer",
    "map_pkcs11_error",
]

MODULE_ENV = "SMIS_PKCS11_MODULE"
HICOS_TOKEN_LABEL = "HiCOS PKI Smart Card"
UNBLOCK_HPC = "醫事憑證管理中心"
UNBLOCK_MOICA = "自然人憑證管理中心"

# DigestInfo prefix for SHA-256 (RFC 8017 §9.2), for modules without CKM_SHA256_RSA_PKCS.
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")

# One PKCS#11 operation at a time per process: the module is process-global, and a
# re-initialisation (after a failed login, or to see a newly inserted token) must not
# pull a session from under another thread.
_LOCK = threading.RLock()


def map_pkcs11_error(exc: BaseException, unblock_at: str, *, final_try: bool = False) -> CardError:
    """The card.errors error for a python-pkcs11 exception (never mentions a PIN)."""
    if isinstance(exc, p11.PinIncorrect):
        return WrongPin(1) if final_try else WrongPinTriesUnknown()
    if isinstance(exc, p11.PinLocked):
        return PinBlocked(unblock_at)
    if isinstance(exc, p11.PinLenRange | p11.PinInvalid):
        return PinFormatError()
    if isinstance(exc, p11.PinExpired):
        return CardError("卡片密碼已過期，請洽" + unblock_at)
    if isinstance(exc, p11.DeviceRemoved | p11.SessionHandleInvalid | p11.SessionClosed):
        return CardRemoved()
    if isinstance(exc, p11.TokenNotPresent | p11.NoSuchToken | p11.TokenNotRecognised):
        return NoCard()
    if isinstance(exc, p11.NoSuchKey | p11.MultipleObjectsReturned):
        return CardError("卡片上找不到可用的簽章金鑰")
    return Pkcs11Unavailable(type(exc).__name__)


class Pkcs11Signer:
    """Sign with a key on a PKCS#11 token after logging in with the card PIN.

    ``module_path`` defaults to ``$SMIS_PKCS11_MODULE``; ``token_label`` None takes
    the first token present. ``unblock_at`` names where a locked PIN is unblocked
    (醫事憑證管理中心 for HPC, 自然人憑證管理中心 for MOICA).
    """

    def __init__(
        self,
        module_path: str | None = None,
        token_label: str | None = None,
        *,
        unblock_at: str = UNBLOCK_HPC,
    ) -> None:
        path = module_path if module_path is not None else os.environ.get(MODULE_ENV, "")
        if not path:
            raise Pkcs11Unavailable(f"未設定 {MODULE_ENV}")
        self.module_path = path
        self.token_label = token_label
        self.unblock_at = unblock_at
        self._lib: Any = None

    def __repr__(self) -> str:
        return f"Pkcs11Signer(module_path={self.module_path!r}, token_label={self.token_label!r})"

    # ------------------------------------------------------------------ module and token

    def _library(self) -> Any:
        if self._lib is None:
            if not os.path.exists(self.module_path):
                raise Pkcs11Unavailable(f"找不到 {self.module_path}")
            try:
                self._lib = pkcs11.lib(self.module_path)
            except p11.PKCS11Error as exc:
                raise Pkcs11Unavailable(
                    f"無法載入 {self.module_path}（{type(exc).__name__}）"
                ) from None
        return self._lib

    def _find_token(self) -> Any:
        lib = self._library()
        for attempt in range(2):
            try:
                tokens = list(
                    lib.get_tokens(
                        token_label=self.token_label, token_flags=TokenFlag.TOKEN_INITIALIZED
                    )
                )
            except p11.PKCS11Error as exc:
                raise map_pkcs11_error(exc, self.unblock_at) from None
            if tokens:
                # Several readers may each hold a card with the same label: the first one.
                return tokens[0]
            if attempt == 0:
                # Some modules (SoftHSM2) only see tokens that existed at C_Initialize.
                self._reinitialize()
        raise NoCard()

    def _reinitialize(self) -> None:
        try:
            self._library().reinitialize()
        except p11.PKCS11Error:
            pass

    @contextmanager
    def _session(self, pin: str | bytes | bytearray | None) -> Iterator[Any]:
        with _LOCK:
            token = self._find_token()
            if pin is None:
                try:
                    session = token.open()
                except p11.PKCS11Error as exc:
                    raise map_pkcs11_error(exc, self.unblock_at) from None
            else:
                session = self._login(token, pin)
            try:
                yield session
            finally:
                try:
                    session.close()
                except p11.PKCS11Error:
                    pass

    def _login(self, token: Any, pin: str | bytes | bytearray) -> Any:
        checked = check_pin_format(pin)  # PinFormatError before the card sees anything
        try:
            text = checked.decode("ascii")
        finally:
            wipe(checked)
        try:
            return token.open(user_pin=text)
        except p11.PKCS11Error as exc:
            error = exc
        finally:
            del text
        # python-pkcs11 leaves the session open when C_Login fails; re-initialising the
        # module closes it (nothing else can be using the module: we hold _LOCK).
        self._reinitialize()
        final_try = False
        if isinstance(error, p11.PinIncorrect):
            flags = self._pin_flags()
            if flags & TokenFlag.USER_PIN_LOCKED:  # that was the last try
                raise PinBlocked(self.unblock_at) from None
            final_try = bool(flags & TokenFlag.USER_PIN_FINAL_TRY)
        raise map_pkcs11_error(error, self.unblock_at, final_try=final_try) from None

    def _pin_flags(self) -> int:
        try:
            return int(self._find_token().flags)
        except (CardError, p11.PKCS11Error):
            return 0

    # ------------------------------------------------------------------ operations

    def token_present(self) -> bool:
        try:
            with _LOCK:
                self._find_token()
        except NoCard:
            return False
        return True

    def sign(self, pin: str | bytes | bytearray, data: bytes, *, key_label: str = "SIGN") -> bytes:
        """Log in with ``pin`` and sign ``data`` with the private key ``key_label``:
        RSA PKCS#1 v1.5 with SHA-256, or ECDSA with SHA-256 (DER-encoded, as
        cryptography's ``verify`` expects).

        WrongPin (tries left unknown, or 1 when the token says it is the final try),
        PinBlocked, PinFormatError, NoCard, CardRemoved, Pkcs11Unavailable."""
        with self._session(pin) as session:
            key = self._private_key(session, key_label)
            try:
                return _sign_with(session, key, data)
            except p11.PKCS11Error as exc:
                raise map_pkcs11_error(exc, self.unblock_at) from None

    def certificate(self, key_label: str = "SIGN") -> bytes | None:
        """The DER certificate stored with ``key_label`` (by label, else by ID), or None."""
        with self._session(None) as session:
            try:
                for attrs in ({Attribute.LABEL: key_label}, {Attribute.ID: key_label.encode()}):
                    for cert in session.get_objects(
                        {Attribute.CLASS: ObjectClass.CERTIFICATE, **attrs}
                    ):
                        return bytes(cert[Attribute.VALUE])
            except p11.PKCS11Error as exc:
                raise map_pkcs11_error(exc, self.unblock_at) from None
        return None

    def _private_key(self, session: Any, key_label: str) -> Any:
        try:
            for attrs in ({Attribute.LABEL: key_label}, {Attribute.ID: key_label.encode()}):
                keys = list(
                    session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, **attrs})
                )
                if keys:
                    return keys[0]
        except p11.PKCS11Error as exc:
            raise map_pkcs11_error(exc, self.unblock_at) from None
        raise CardError("卡片上找不到可用的簽章金鑰", key_label=key_label)


def _sign_with(session: Any, key: Any, data: bytes) -> bytes:
    key_type = key.key_type
    if key_type == KeyType.RSA:
        try:
            return bytes(key.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS))
        except p11.MechanismInvalid:
            # Older card modules only do raw PKCS#1 v1.5: hash and wrap here.
            digest_info = _SHA256_DIGEST_INFO + hashlib.sha256(data).digest()
            return bytes(key.sign(digest_info, mechanism=Mechanism.RSA_PKCS))
    if key_type == KeyType.EC:
        raw = bytes(key.sign(hashlib.sha256(data).digest(), mechanism=Mechanism.ECDSA))
        half = len(raw) // 2
        return encode_dss_signature(
            int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
        )
    raise CardError("卡片金鑰類型不支援簽章", key_type=str(key_type))


if TYPE_CHECKING:  # mypy checks that it keeps to card.signing.Pkcs11Signing
    from card.signing import Pkcs11Signing

    _signer: type[Pkcs11Signing] = Pkcs11Signer
