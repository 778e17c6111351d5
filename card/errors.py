"""Card-layer errors: each a clear domain error with a zh-TW message.

No message ever contains a PIN. ``key`` and ``params`` let the UI render the same
error in another language (docs/architecture.md, "Cards").
"""

from __future__ import annotations

import datetime as dt


def aside(text: str) -> str:
    """``（text）`` to end a message with, or nothing when ``text`` is empty."""
    return f"（{text}）" if text else ""


class CardError(Exception):
    """A card error. A subclass names its ``key`` and its zh-TW ``template``, which
    is formatted with the parameters it is raised with (kept in ``params``) unless a
    whole ``message`` is given."""

    key = "card.error"
    template = ""

    def __init__(self, message: str | None = None, **params: object) -> None:
        super().__init__(self.template.format(**params) if message is None else message)
        self.params = params


class CardErrorWithDetail(CardError):
    """A card error whose message names one ``detail``."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail=detail)
        self.detail = detail


class NoReader(CardError):
    key = "card.no_reader"
    template = "找不到讀卡機，請確認讀卡機已連接"


class PcscUnavailable(CardError):
    key = "card.pcsc_unavailable"
    template = "讀卡機服務（pcscd）未啟動或無法連線"

    def __init__(self, detail: str = "") -> None:
        super().__init__(self.template + (f"：{detail}" if detail else ""))


class NoCard(CardError):
    key = "card.no_card"
    template = "請插入卡片"

    def __init__(self, reader: str = "") -> None:
        super().__init__(self.template + aside(reader), reader=reader)


class CardRemoved(CardError):
    key = "card.removed"
    template = "卡片已被移除，請重新插入卡片"


class CardReset(CardError):
    """Another program reset the card between our steps (PC/SC SCARD_W_RESET_CARD): a
    verified PIN and the selected application are gone, so the PIN must be asked again
    rather than sent a second time without the person knowing."""

    key = "card.reset"
    template = "卡片被其他程式重設，請重新輸入卡片密碼"


class CardUnresponsive(CardError):
    key = "card.unresponsive"
    template = "卡片在 {seconds:g} 秒內沒有回應，請重新插入卡片"

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds=seconds)


class UnknownCard(CardError):
    key = "card.unknown"
    template = "無法辨識此卡片：請使用醫事人員卡或自然人憑證"


class CardProtocolError(CardErrorWithDetail):
    """The card answered something that does not follow its profile."""

    key = "card.protocol"
    template = "卡片回應格式錯誤：{detail}"


class PinFormatError(CardError):
    key = "card.pin_format"
    template = "卡片密碼應為 6 至 8 碼"


class WrongPin(CardError):
    key = "card.wrong_pin"
    template = "卡片密碼錯誤，尚可嘗試 {tries_left} 次"

    def __init__(self, tries_left: int) -> None:
        super().__init__(tries_left=tries_left)
        self.tries_left = tries_left


class PinBlocked(CardError):
    key = "card.pin_blocked"
    template = "卡片密碼已鎖住，本系統無法解鎖，請洽{unblock_at}辦理解鎖"

    def __init__(self, unblock_at: str) -> None:
        super().__init__(unblock_at=unblock_at)
        self.unblock_at = unblock_at


class CertificateProblem(CardError):
    """The card's certificate cannot be used to log in; ``reason`` says why."""

    key = "card.certificate"

    def __init__(
        self, reason: str, message: str, when: dt.datetime | None = None, **details: str
    ) -> None:
        """``details``: names the message quotes (``ca``: the CA whose CRL is at fault;
        ``revoked_ca``: the issuing CA that was itself revoked), for other languages."""
        super().__init__(message, reason=reason, when=when, **details)
        self.reason = reason
        self.when = when


class SignatureInvalid(CardError):
    key = "card.signature"
    template = "卡片簽章驗證失敗，請重新插入卡片再試一次"


class PinNotVerified(CardError):
    """The card refused an operation that needs the PIN first (status word 6982)."""

    key = "card.pin_not_verified"
    template = "卡片尚未驗證密碼，請先輸入卡片密碼再操作"


class TrustStoreError(CardErrorWithDetail):
    """The CA or CRL directory cannot be used (missing, unreadable, no trust anchor)."""

    key = "card.trust_store"
    template = "憑證信任設定有誤：{detail}"


class WrongPinTriesUnknown(WrongPin):
    """A wrong PIN where the card does not say how many tries are left (a PKCS#11
    module only reports CKR_PIN_INCORRECT); ``tries_left`` is -1."""

    key = "card.wrong_pin_tries_unknown"
    template = "卡片密碼錯誤，請確認後再試；連續輸入錯誤將鎖住卡片"

    def __init__(self) -> None:
        super().__init__(tries_left=-1)


class ReaderBusy(CardError):
    key = "card.reader_busy"
    template = "讀卡機正由其他程式使用中，請稍後再試"

    def __init__(self, reader: str = "") -> None:
        super().__init__(self.template + aside(reader), reader=reader)


class Pkcs11Unavailable(CardErrorWithDetail):
    """The PKCS#11 module (the card vendor's middleware) cannot be loaded or used."""

    key = "card.pkcs11_unavailable"
    template = "無法使用卡片元件（PKCS#11 模組）：{detail}"


class NotPersonalCard(CardError):
    """The certificate's subject type names an organisation, a unit or a server:
    the card belongs to a place, and nobody can log in as a place."""

    key = "card.not_personal"
    template = (
        "此卡片是機關、機構或伺服器的憑證，不是個人憑證，無法用於登入：請使用醫事人員卡或自然人憑證"
    )

    def __init__(self, subject_type: str) -> None:
        super().__init__(subject_type=subject_type)
        self.subject_type = subject_type


class UnsupportedHicosVersion(CardError):
    """A HiCOS card whose version string (EF 0905) is none the kiosk knows."""

    key = "card.hicos_version"
    template = "不支援此版本的 HiCOS 卡片（{version}），請改用其他醫事人員卡或自然人憑證"

    def __init__(self, version: str) -> None:
        super().__init__(version=version)
        self.version = version


class CardMiddlewareNeeded(CardError):
    """A second-generation 自然人憑證: only the vendor's PKCS#11 module can use it."""

    key = "card.middleware_needed"
    template = (
        "此為新式自然人憑證，需安裝讀卡機元件（HiCOS 卡片管理工具，PKCS#11 模組）才能使用，"
        "請洽櫃檯人員"
    )


class ReaderTokenUnknown(CardError):
    """The PKCS#11 module does not say which of its tokens is the card in this reader."""

    key = "card.reader_token_unknown"
    template = "無法確認讀卡機元件中哪一張卡片位於讀卡機「{reader}」，請洽櫃檯人員設定"

    def __init__(self, reader: str) -> None:
        super().__init__(reader=reader)


class CardTokenNotFound(CardError):
    """No single PKCS#11 token holds the certificate the person was shown: no PIN sent."""

    key = "card.token_not_found"
    template = "讀卡機元件中找不到畫面所示憑證的卡片，密碼未送出，請重新插入卡片再試"


class ProofCancelled(CardError):
    """The remote login proof was cancelled, at the staff computer or at the kiosk."""

    key = "card.proof_cancelled"
    template = "已取消：卡片密碼未輸入，未登入"


class ProofTimedOut(CardError):
    """Nobody typed the PIN at the staff computer in time."""

    key = "card.proof_timeout"
    template = "等候您在電腦上輸入卡片密碼已逾 {seconds:g} 秒，未登入；請重新登入"

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds=seconds)


class NotTheCardShown(CardError):
    """A login proof was asked of a card whose certificate is not the one the person
    was shown (another card went in meanwhile): no PIN is asked."""

    key = "card.not_the_card_shown"
    template = "讀卡機中的卡片不是畫面上所示的卡片，未要求輸入密碼；請重新插入卡片再試"
