"""Texts of the unit search screens: zh-TW (seed texts verbatim) and English.

The page line itself is ``units.page_line`` in the base catalogues.
"""

ZH_TW: dict[str, str] = {
    "unit_search.title": "單位查詢",
    "unit_search.name": "單位名稱",
    "unit_search.placeholder": "輸入單位名稱或醫事機構代碼",
    "unit_search.column_code": "單位/醫事機構代碼",
    "unit_search.column_name": "名稱",
    "unit_search.empty": "查無符合條件的單位",
    "unit_search.failed": "查詢失敗，請稍後再試",
    # The page-number bar's keys (smis_tui.widgets.pager; shared by every paged list).
    "pager.choose": "選頁",
    "pager.open": "前往",
    "pager.first_page": "第一頁",
    "pager.last_page": "最後一頁",
}

EN: dict[str, str] = {
    "unit_search.title": "Unit search",
    "unit_search.name": "Unit name",
    "unit_search.placeholder": "Name or institution code",
    "unit_search.column_code": "Unit / institution code",
    "unit_search.column_name": "Name",
    "unit_search.empty": "No unit matches",
    "unit_search.failed": "The search failed; please try again",
    "pager.choose": "Choose page",
    "pager.open": "Open",
    "pager.first_page": "First page",
    "pager.last_page": "Last page",
}
