"""Card-layer errors: each a clear domain error with a zh-TW message.

No message ever contains a PIN. ``key`` and ``params`` let the UI render the same
error in another language.
"""

from __future__ import annotations

import datetime as dt


class CardError(Exception):
    key = "card.error"

    def __init__(self, message: str, **params: object) -> None:
        super().__init__(message)
        self.params = params


class NoReader(CardError):
    key = "card.no_reader"

    def __init__(self) -> None:
        super().__init__("找不到讀卡機，請確認讀卡機已連接")


class PcscUnavailable(CardError):
    key = "card.pcsc_unavailable"

    def __init__(self, detail: str = "") -> None:
        super().__init__("讀卡機服務（pcscd）未啟動或無法連線" + (f"：{detail}" if detail else ""))


class NoCard(CardError):
    key = "card.no_card"

    def __init__(self, reader: str = "") -> None:
        super().__init__("請插入卡片" + (f"（{reader}）" if reader else ""), reader=reader)


class CardRemoved(CardError):
    key = "card.removed"

    def __init__(self) -> None:
        super().__init__("卡片已被移除，請重新插入卡片")


class CardUnresponsive(CardError):
    key = "card.unresponsive"

    def __init__(self, seconds: float) -> None:
        super().__init__(f"卡片在 {seconds:g} 秒內沒有回應，請重新插入卡片", seconds=seconds)


class UnknownCard(CardError):
    key = "card.unknown"

    def __init__(self) -> None:
        super().__init__("無法辨識此卡片：請使用醫事人員卡或自然人憑證")


class CardProtocolError(CardError):
    """The card answered something that does not follow its profile."""

    key = "card.protocol"

    def __init__(self, detail: str) -> None:
        super().__init__(f"卡片回應格式錯誤：{detail}", detail=detail)


class PinFormatError(CardError):
    key = "card.pin_format"

    def __init__(self) -> None:
        super().__init__("卡片密碼應為 6 至 8 碼")


class WrongPin(CardError):
    key = "card.wrong_pin"

    def __init__(self, tries_left: int) -> None:
        super().__init__(f"卡片密碼錯誤，尚可嘗試 {tries_left} 次", tries_left=tries_left)
        self.tries_left = tries_left


class PinBlocked(CardError):
    key = "card.pin_blocked"

    def __init__(self, unblock_at: str) -> None:
        super().__init__(
            f"卡片密碼已鎖住，本系統無法解鎖，請洽{unblock_at}辦理解鎖", unblock_at=unblock_at
        )
        self.unblock_at = unblock_at


class CertificateProblem(CardError):
    """The card's certificate cannot be used to log in; ``reason`` says why."""

    key = "card.certificate"

    def __init__(self, reason: str, message: str, when: dt.datetime | None = None) -> None:
        super().__init__(message, reason=reason, when=when)
        self.reason = reason
        self.when = when


class SignatureInvalid(CardError):
    key = "card.signature"

    def __init__(self) -> None:
        super().__init__("卡片簽章驗證失敗，請重新插入卡片再試一次")


class PinNotVerified(CardError):
    """The card refused an operation that needs the PIN first (status word 6982)."""

    key = "card.pin_not_verified"

    def __init__(self) -> None:
        super().__init__("卡片尚未驗證密碼，請先輸入卡片密碼再操作")


class TrustStoreError(CardError):
    """The CA or CRL directory cannot be used (missing, unreadable, no trust anchor)."""

    key = "card.trust_store"

    def __init__(self, detail: str) -> None:
        super().__init__(f"憑證信任設定有誤：{detail}", detail=detail)


class WrongPinTriesUnknown(WrongPin):
    """A wrong PIN where the card does not say how many tries are left (a PKCS#11
    module only reports CKR_PIN_INCORRECT); ``tries_left`` is -1."""

    key = "card.wrong_pin_tries_unknown"

    def __init__(self) -> None:
        CardError.__init__(
            self, "卡片密碼錯誤，請確認後再試；連續輸入錯誤將鎖住卡片", tries_left=-1
        )
        self.tries_left = -1


class ReaderBusy(CardError):
    key = "card.reader_busy"

    def __init__(self, reader: str = "") -> None:
        super().__init__(
            "讀卡機正由其他程式使用中，請稍後再試" + (f"（{reader}）" if reader else ""),
            reader=reader,
        )


class Pkcs11Unavailable(CardError):
    """The PKCS#11 module (the card vendor's middleware) cannot be loaded or used."""

    key = "card.pkcs11_unavailable"

    def __init__(self, detail: str) -> None:
        super().__init__(f"無法使用卡片元件（PKCS#11 模組）：{detail}", detail=detail)
