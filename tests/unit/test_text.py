"""Every text exists in both languages, and the seed's texts are verbatim."""

from __future__ import annotations

import string

from smis_tui.text import CATALOGS, t


def test_every_key_exists_in_both_languages_with_the_same_fields() -> None:
    zh, en = CATALOGS["zh_TW"], CATALOGS["en"]
    assert set(zh) == set(en), set(zh) ^ set(en)
    fields = string.Formatter()
    for key in zh:
        zh_fields = {f for _, f, _, _ in fields.parse(zh[key]) if f}
        en_fields = {f for _, f, _, _ in fields.parse(en[key]) if f}
        assert zh_fields == en_fields, key


def test_seed_texts_are_verbatim() -> None:
    assert t("login.no_account") == "登入失敗，員工檔無資料或帳號未啟用"
    assert t("login.disabled") == "您的帳號已停用，請點選「確定」重新申請帳號。"
    assert t("apply.submitted") == "已送出申請，請等待審核通過。"
    assert t("apply.update_confirm") == "您有申請中的權限，是否確定更新申請？"
    assert t("units.page_line", size=20, page=1, pages=259, total=5165) == (
        "【每頁 20 筆 · 第 1 頁 共 259 頁 5165 筆】"
    )
