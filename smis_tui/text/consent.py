"""個資聲明事項: the personal-data statement, verbatim from the source manual.

Applicants accept a specific text; its SHA-256 is kept with their consent record, so
a change of wording is a new version that must be accepted again.
"""

from __future__ import annotations

import hashlib

CONSENT_TITLE = "【個資聲明事項】"

CONSENT_STATEMENT = """依據:本署依傳染病防治法第26條建立傳染病流行疫情監視，預警及防疫資源等相關資訊系統。

目的:本署蒐集之個人資料，作為本資訊系統權限設定、紀錄使用者之軌跡紀錄及作業聯繫需要。

利用:本署蒐集之個人資料絕不向第三人揭露或用於上述目的以外之用途；若需使用於與當初本署蒐集的目的不同時，將會在使用前徵求您的書面同意，始得進行。

權利:本署蒐集您的個人資料，受到「個人資料保護法」與相關法令法規之規範，並依據本署個資保護管理規範、蒐集、處理及利用您的個人資料，您可依個資法行使相關權利，但因法律規定、本署為執行法定職務或業務所必須者，本署得拒絕之。

義務:

1.若您的個人資料有任何異動，請主動向本署申請更正，使其保持正確、最新及完整，避免您的權益受損。
2.申請人因業務需求申請使用資訊系統，願確實遵守「個人資料保護法」及相關法令法規，保障個人隱私，並不得對外洩漏，如有違誤願負法律責任，離職後亦同。
3.申請人職務異動，或其所轄業務有所調整，應主動「重新申請帳號」或「申請刪除帳號」。

影響:若您拒絕向本署提供個人資料或不同意本聲明事項時，將無法為您開放資訊系統相關服務。"""


def statement_sha256(text: str = CONSENT_STATEMENT) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


CURRENT_STATEMENT_SHA256 = statement_sha256()
