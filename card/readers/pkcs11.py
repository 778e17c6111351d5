"""PIN verification and signing through a PKCS#11 module (python-pkcs11).

HiCOS cards (MOICA 自然人憑證, HPC 醫事人員卡) do not publish their PIN APDUs, so the
PIN and the signature go through the card vendor's PKCS#11 module (``SMIS_PKCS11_MODULE``;
token label "HiCOS PKI Smart Card", keys SIGN and KEYX). SoftHSM2 stands in for it in
the tests.

Which token is which card. A kiosk may have several readers, each holding a card whose
token has the same label, and a PIN sent to the wrong token costs that card a try. So:

* the certificate a person is shown comes from the card in *their* reader: read with
  APDUs for a first-generation card, or, for a second-generation 自然人憑證, from the
  token in the slot whose slotDescription names the reader (PC/SC-backed modules such
  as HiCOS and OpenSC describe a slot by its reader's name), or from the token whose
  serial number ``reader_tokens`` (``SMIS_PKCS11_READER_TOKENS``) gives for the reader,
  for modules that do not name readers. With neither, the kiosk refuses rather than
  guesses (ReaderTokenUnknown);
* the PIN and the signature go only to the one token holding a certificate equal (DER)
  to the one shown, found by opening sessions without logging in (certificates are
  public objects). No such token, or more than one: CardTokenNotFound, and no C_Login
  on any token.

A login is one call: open a session, log in, sign, log out, close. Nothing is kept
between calls, and the PIN never appears in a message, an exception or a log. python-
pkcs11 takes the PIN as a ``str``, so it cannot be wiped; it is dropped right after use.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pkcs11
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass, TokenFlag
from pkcs11 import exceptions as p11

from card.errors import (
    CardError,
    CardRemoved,
    CardTokenNotFound,
    CertificateProblem,
    NoCard,
    PinBlocked,
    PinFormatError,
    Pkcs11Unavailable,
    ReaderTokenUnknown,
    WrongPin,
    WrongPinTriesUnknown,
)
from card.pin import check_pin_format, wipe

__all__ = [
    "HICOS_TOKEN_LABEL",
    "MODULE_ENV",
    "READER_TOKENS_ENV",
    "Pkcs11Signer",
    "map_pkcs11_error",
    "reader_tokens_from_env",
    "slot_names_reader",
]

MODULE_ENV = "SMIS_PKCS11_MODULE"
# A JSON object: PC/SC reader name → serial number of the token the module shows for the
# card in that reader, for modules whose slot descriptions do not name readers.
READER_TOKENS_ENV = "SMIS_PKCS11_READER_TOKENS"
# CK_SLOT_INFO.slotDescription is 64 bytes, blank-padded: a longer reader name is cut.
_SLOT_DESCRIPTION_SIZE = 64
HICOS_TOKEN_LABEL = "HiCOS PKI Smart Card"
UNBLOCK_HPC = "醫事憑證管理中心"
UNBLOCK_MOICA = "自然人憑證管理中心"

# DigestInfo prefix for SHA-256 (RFC 8017 §9.2), for modules without CKM_SHA256_RSA_PKCS.
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")

# One PKCS#11 operation at a time per process: the module is process-global, and a
# re-initialisation (after a failed login, or to see a newly inserted token) must not
# pull a session from under another thread.
_LOCK = threading.RLock()


def slot_names_reader(description: str, reader: str) -> bool:
    """True when a slot's description is the PC/SC reader's name (cut to the 64 bytes
    of CK_SLOT_INFO.slotDescription when the name is longer)."""
    description = description.strip()
    reader = reader.strip()
    if not description:
        return False
    if description == reader:
        return True
    cut = reader.encode()[:_SLOT_DESCRIPTION_SIZE].decode(errors="ignore").strip()
    return len(reader.encode()) > _SLOT_DESCRIPTION_SIZE and description == cut


def reader_tokens_from_env() -> dict[str, str]:
    """``$SMIS_PKCS11_READER_TOKENS`` (a JSON object of reader name → token serial)."""
    text = os.environ.get(READER_TOKENS_ENV, "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise Pkcs11Unavailable(f"{READER_TOKENS_ENV} 應為讀卡機名稱對應卡片序號的 JSON 物件")
    return {k: v.strip() for k, v in value.items()}


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

    ``module_path`` defaults to ``$SMIS_PKCS11_MODULE``; ``token_label`` None considers
    every token, whatever its label. ``unblock_at`` names where a locked PIN is unblocked
    (醫事憑證管理中心 for HPC, 自然人憑證管理中心 for MOICA). ``reader_tokens`` maps a
    reader name to the serial number of its card's token, for modules whose slots do not
    name their readers (see the module's description).
    """

    def __init__(
        self,
        module_path: str | None = None,
        token_label: str | None = None,
        *,
        unblock_at: str = UNBLOCK_HPC,
        reader_tokens: Mapping[str, str] | None = None,
    ) -> None:
        path = module_path if module_path is not None else os.environ.get(MODULE_ENV, "")
        if not path:
            raise Pkcs11Unavailable(f"未設定 {MODULE_ENV}")
        self.module_path = path
        self.token_label = token_label
        self.unblock_at = unblock_at
        self.reader_tokens = dict(reader_tokens or {})
        self._lib: Any = None

    def __repr__(self) -> str:
        return f"Pkcs11Signer(module_path={self.module_path!r}, token_label={self.token_label!r})"

    # ------------------------------------------------------------------ module and tokens

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

    def _tokens(self) -> list[Any]:
        try:
            return list(
                self._library().get_tokens(
                    token_label=self.token_label, token_flags=TokenFlag.TOKEN_INITIALIZED
                )
            )
        except p11.PKCS11Error as exc:
            raise map_pkcs11_error(exc, self.unblock_at) from None

    def _find_tokens(self, wanted: Callable[[Any], bool]) -> list[Any]:
        """The tokens ``wanted(token)`` accepts; the module is initialised afresh once
        when none is, because some modules (SoftHSM2) only see tokens that existed at
        C_Initialize."""
        for attempt in range(2):
            found = [token for token in self._tokens() if wanted(token)]
            if found or attempt:
                return found
            self._reinitialize()
        return []

    def _reinitialize(self) -> None:
        try:
            self._library().reinitialize()
        except p11.PKCS11Error:
            pass

    def _in_reader(self, token: Any, reader: str) -> bool:
        serial = self.reader_tokens.get(reader)
        if serial is not None:  # configured: the slot description is not consulted
            return _serial(token) == serial
        try:
            return slot_names_reader(str(token.slot.slot_description), reader)
        except p11.PKCS11Error:
            return False

    def _certificates(self, token: Any) -> list[tuple[bytes, bytes, str]]:
        """Every certificate on ``token`` as (DER, CKA_ID, CKA_LABEL), read in a session
        without login: certificates are public objects."""
        try:
            with token.open() as session:
                found = []
                for cert in session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE}):
                    found.append(
                        (
                            bytes(cert[Attribute.VALUE]),
                            _attribute(cert, Attribute.ID, b""),
                            str(_attribute(cert, Attribute.LABEL, "")),
                        )
                    )
                return found
        except p11.PKCS11Error as exc:
            raise map_pkcs11_error(exc, self.unblock_at) from None

    def _token_of(self, certificate: bytes, reader: str) -> tuple[Any, bytes]:
        """The one token that holds ``certificate`` (DER) *and* is the card in
        ``reader``, with that certificate's CKA_ID.

        Certificates are public: a rogue card in one reader can show the certificate of
        a card in another, so certificate equality alone would send a PIN typed at one
        reader to someone else's card. Where the module names readers (slot
        descriptions) or ``reader_tokens`` maps this reader, the token must be that
        reader's; where nothing ties tokens to readers, the only token present is
        accepted and two or more are refused: nothing is guessed."""
        ids: dict[str, bytes] = {}

        def holds(token: Any) -> bool:
            try:
                certificates = self._certificates(token)
            except CardError:  # a card leaving another reader is not this one
                return False
            for der, cka_id, _ in certificates:
                if der == certificate:
                    ids[_serial(token)] = cka_id
                    return True
            return False

        with _LOCK:
            present = self._find_tokens(lambda token: True)
            in_reader = [token for token in present if self._in_reader(token, reader)]
            if not in_reader and (len(present) != 1 or reader in self.reader_tokens):
                raise CardTokenNotFound()
            tokens = [token for token in in_reader or present if holds(token)]
        if len(tokens) != 1:
            # None, or the same certificate twice: no token may be guessed at.
            raise CardTokenNotFound()
        return tokens[0], ids[_serial(tokens[0])]

    # ------------------------------------------------------------------ operations

    def token_present(self) -> bool:
        with _LOCK:
            return bool(self._find_tokens(lambda token: True))

    def reader_certificate(self, reader: str, key_label: str = "SIGN") -> bytes:
        """The DER certificate ``key_label`` (by label, else by ID) on the token of the
        card in ``reader``, read without a PIN. ReaderTokenUnknown when no single token
        is known to be that reader's; NoCard when it is configured but absent."""
        with _LOCK:
            tokens = self._find_tokens(lambda token: self._in_reader(token, reader))
            if len(tokens) != 1:
                if not tokens and reader in self.reader_tokens:
                    raise NoCard(reader)
                raise ReaderTokenUnknown(reader)
            certificates = self._certificates(tokens[0])
        found = [der for der, _, label in certificates if label == key_label] or [
            der for der, cka_id, _ in certificates if cka_id == key_label.encode()
        ]
        if found:
            return found[0]
        raise CertificateProblem("missing", "卡片中沒有可用於登入的憑證")

    def sign(
        self,
        pin: str | bytes | bytearray,
        data: bytes,
        *,
        certificate: bytes,
        reader: str,
        key_label: str = "SIGN",
    ) -> bytes:
        """Log in with ``pin`` to the one token that holds ``certificate`` (the DER the
        person was shown) and is the card in ``reader`` (see :meth:`_token_of`), and sign ``data`` with that certificate's private key (same
        CKA_ID; ``key_label`` when the certificate has none): RSA PKCS#1 v1.5 with
        SHA-256, or ECDSA with SHA-256 (DER-encoded, as cryptography's ``verify`` expects).

        CardTokenNotFound (no PIN sent anywhere), WrongPin (tries left unknown, or 1 when
        the token says it is the final try), PinBlocked, PinFormatError, NoCard,
        CardRemoved, Pkcs11Unavailable."""
        wipe(check_pin_format(pin))  # PinFormatError before any token is looked at
        with _LOCK:
            token, cka_id = self._token_of(certificate, reader)
            session = self._login(token, pin)
            try:
                key = self._private_key(session, cka_id, key_label)
                try:
                    return _sign_with(session, key, data)
                except p11.PKCS11Error as exc:
                    raise map_pkcs11_error(exc, self.unblock_at) from None
            finally:
                try:
                    session.close()
                except p11.PKCS11Error:
                    pass

    def _login(self, token: Any, pin: str | bytes | bytearray) -> Any:
        checked = check_pin_format(pin)
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
        serial = _serial(token)
        # python-pkcs11 leaves the session open when C_Login fails; re-initialising the
        # module closes it (nothing else can be using the module: we hold _LOCK).
        self._reinitialize()
        final_try = False
        if isinstance(error, p11.PinIncorrect):
            flags = self._pin_flags(serial)
            if flags & TokenFlag.USER_PIN_LOCKED:  # that was the last try
                raise PinBlocked(self.unblock_at) from None
            final_try = bool(flags & TokenFlag.USER_PIN_FINAL_TRY)
        raise map_pkcs11_error(error, self.unblock_at, final_try=final_try) from None

    def _pin_flags(self, serial: str) -> int:
        """The flags of the token with ``serial``: the one just logged in to."""
        try:
            for token in self._tokens():
                if _serial(token) == serial:
                    return int(token.flags)
        except (CardError, p11.PKCS11Error):
            pass
        return 0

    def _private_key(self, session: Any, cka_id: bytes, key_label: str) -> Any:
        # PKCS#11 pairs a certificate with its private key by CKA_ID.
        wanted: list[dict[Attribute, Any]] = (
            [{Attribute.ID: cka_id}]
            if cka_id
            else [{Attribute.LABEL: key_label}, {Attribute.ID: key_label.encode()}]
        )
        try:
            for attrs in wanted:
                keys = list(
                    session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, **attrs})
                )
                if keys:
                    return keys[0]
        except p11.PKCS11Error as exc:
            raise map_pkcs11_error(exc, self.unblock_at) from None
        raise CardError("卡片上找不到可用的簽章金鑰", key_label=key_label)


def _serial(token: Any) -> str:
    serial = token.serial
    text = serial.decode("ascii", errors="replace") if isinstance(serial, bytes) else str(serial)
    return text.strip()


def _attribute(obj: Any, attribute: Attribute, default: Any) -> Any:
    try:
        return obj[attribute]
    except (p11.AttributeTypeInvalid, p11.AttributeSensitive):
        return default


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
