"""個資聲明事項: the personal-data statement, verbatim from the source manual, and
an English translation of it.

Applicants accept a specific text; its SHA-256 is kept with their consent record, so
a change of wording is a new version that must be accepted again.

Language: the form shows the statement in the screen's language and the consent
record keeps the hash of the text actually shown (:func:`statement_for`,
:func:`statement_sha256_for`). Both hashes are current (:data:`CURRENT_STATEMENT_HASHES`);
the English text is marked as a translation and says that the zh-TW original
prevails, so a record with the English hash means "accepted the zh-TW statement
after reading this translation of it". Changing either text changes its hash and
needs a new acceptance.
"""

from __future__ import annotations

import hashlib

CONSENT_TITLE = "【個資聲明事項】"
CONSENT_TITLE_EN = "[Personal data statement — English translation]"

CONSENT_STATEMENT = """依據:本署依傳染病防治法第26條建立傳染病流行疫情監視，預警及防疫資源等相關資訊系統。

目的:本署蒐集之個人資料，作為本資訊系統權限設定、紀錄使用者之軌跡紀錄及作業聯繫需要。

利用:本署蒐集之個人資料絕不向第三人揭露或用於上述目的以外之用途；若需使用於與當初本署蒐集的目的不同時，將會在使用前徵求您的書面同意，始得進行。

權利:本署蒐集您的個人資料，受到「個人資料保護法」與相關法令法規之規範，並依據本署個資保護管理規範、蒐集、處理及利用您的個人資料，您可依個資法行使相關權利，但因法律規定、本署為執行法定職務或業務所必須者，本署得拒絕之。

義務:

1.若您的個人資料有任何異動，請主動向本署申請更正，使其保持正確、最新及完整，避免您的權益受損。
2.申請人因業務需求申請使用資訊系統，願確實遵守「個人資料保護法」及相關法令法規，保障個人隱私，並不得對外洩漏，如有違誤願負法律責任，離職後亦同。
3.申請人職務異動，或其所轄業務有所調整，應主動「重新申請帳號」或「申請刪除帳號」。

影響:若您拒絕向本署提供個人資料或不同意本聲明事項時，將無法為您開放資訊系統相關服務。"""


# A translation for applicants who read English, made for this kiosk; not an official
# text of the agency. The zh-TW statement above is the original and prevails.
CONSENT_STATEMENT_EN = """(English translation for reference. The Chinese original of this statement prevails.)

Basis: Under Article 26 of the Communicable Disease Control Act, the Agency has set up information systems for communicable disease surveillance, early warning and epidemic prevention resources.

Purpose: The personal data the Agency collects is used to set up permissions in this information system, to keep a record of its users' activity, and to contact users about their work.

Use: The Agency will never disclose the personal data it collects to third parties or use it for purposes other than the above. Should it need to use the data for a purpose different from the one it was collected for, it will ask for your written consent before doing so.

Rights: The Agency's collection of your personal data is governed by the Personal Data Protection Act and related laws and regulations, and your data is collected, processed and used under the Agency's personal data protection rules. You may exercise your rights under the Personal Data Protection Act, but the Agency may refuse where the law so provides or where it is necessary for the Agency to perform its statutory duties or business.

Obligations:

1. If any of your personal data changes, please apply to the Agency to correct it, so that it stays accurate, current and complete and your rights are not harmed.
2. Applicants who use the information system for their work undertake to comply with the Personal Data Protection Act and related laws and regulations, to protect personal privacy and not to disclose data to others; they accept legal liability for any breach, also after leaving their post.
3. When an applicant's post or duties change, they shall "apply for an account again" or "apply to delete the account".

Consequences: If you refuse to provide your personal data to the Agency or do not agree to this statement, the related services of the information system cannot be made available to you."""


def statement_sha256(text: str = CONSENT_STATEMENT) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def statement_for(language: str) -> tuple[str, str]:
    """(title, statement) as the form shows them in ``language``."""
    if language == "en":
        return CONSENT_TITLE_EN, CONSENT_STATEMENT_EN
    return CONSENT_TITLE, CONSENT_STATEMENT


def statement_sha256_for(language: str) -> str:
    """The hash of the statement shown in ``language``: what the consent record keeps."""
    return statement_sha256(statement_for(language)[1])


CURRENT_STATEMENT_SHA256 = statement_sha256()
CURRENT_STATEMENT_SHA256_EN = statement_sha256(CONSENT_STATEMENT_EN)
#: Every statement an applicant may accept now (the original and its translation).
CURRENT_STATEMENT_HASHES = frozenset({CURRENT_STATEMENT_SHA256, CURRENT_STATEMENT_SHA256_EN})
