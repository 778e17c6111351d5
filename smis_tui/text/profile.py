"""Texts of the profile screens (個人資料維護): zh-TW and English (same keys in both).

Keys: ``profile.`` the ProfileScreen and the messages of AccountService's permission
changes (權限異動申請).
"""

ZH_TW: dict[str, str] = {
    # Screen and tabs
    "profile.title": "個人資料維護",
    "profile.tab_personal": "個人資料",
    "profile.tab_permissions": "權限",
    "profile.tab_delete": "申請刪除帳號",
    # Key descriptions (footer)
    "profile.key_disable": "停用帳號",
    "profile.key_delete": "刪除帳號",
    "profile.key_submit": "送出異動",
    # Personal data
    "profile.save": "儲存",
    "profile.saved": "個人資料已更新。",
    "profile.fix_errors": "資料有誤，請依欄位旁的說明修正後再儲存。",
    # Permissions
    "profile.current_title": "※目前的權限",
    "profile.status_granted": "已核准",
    "profile.status_pending": "審核中",
    "profile.no_permissions": "目前沒有任何權限",
    "profile.give_up": "放棄此權限",
    "profile.withdraw": "撤回此申請",
    "profile.give_up_confirm": "確定要放棄「{category}」的{role}權限嗎？放棄後須重新申請才能再使用。",
    "profile.give_up_last_confirm": (
        "「{category}」的{role}是您最後一項權限：放棄後帳號將停用，並立即登出。確定要放棄嗎？"
    ),
    "profile.given_up": "已放棄「{category}」的{role}權限。",
    "profile.withdraw_confirm": "確定要撤回「{category}」{role}的申請嗎？",
    "profile.withdrawn": "已撤回「{category}」的申請。",
    "profile.changes_title": "※權限異動申請",
    "profile.changes_hint": (
        "新增類別或變更權限後按「送出異動申請」，由各系統管理者審核；核准前原有權限不變。"
        "放棄權限請用上方的「放棄此權限」。"
    ),
    "profile.submit_changes": "送出異動申請",
    "profile.changes_submitted": "已送出權限異動申請，請等待審核通過。",
    # Disable / delete
    "profile.disable_text": (
        "停用帳號後，您所有的系統權限都會關閉，審核中的申請也會取消，之後無法再以此帳號登入。"
        "如需再次使用，登入時請依提示重新申請帳號。"
    ),
    "profile.disable_confirm": "確定要停用帳號嗎？所有系統權限將關閉，並立即登出。",
    "profile.disabled_done": "您的帳號已停用。如需再次使用，請重新申請帳號。",
    "profile.delete_text": (
        "申請刪除帳號後：\n"
        "・清除您的個人資料：姓名、連絡電話、電子信箱、行動電話、身分證號與卡片綁定。\n"
        "・撤銷所有權限並取消審核中的申請，之後無法再以此帳號登入。\n"
        "・依法須保存的軌跡紀錄與遮罩後的身分證號（{masked_id}）仍予保留。"
    ),
    "profile.delete_confirm": "{text}\n\n確定要刪除帳號嗎？此操作無法復原。",
    "profile.deleted_done": "您的帳號已刪除，個人資料已清除。",
    # Outcomes and errors
    "profile.busy": "處理中，請稍候…",
    "profile.conflict": (
        "此帳號的資料已在其他地方更新，這次的變更沒有儲存。"
        "畫面已重新讀取最新的權限；您輸入的內容仍保留，請確認後再送出。"
    ),
    "profile.conflict_fields": "其他地方已更新：{fields}",
    "profile.account_gone": "您的帳號已停用或刪除，請重新登入。",
    "profile.error_not_active": "帳號未啟用，無法異動權限。",
    "profile.error_no_change": "沒有任何權限異動：請選擇新的類別或不同的權限後再送出。",
    "profile.error_request_not_pending": "此申請已不在審核中。",
}

EN: dict[str, str] = {
    "profile.title": "Personal data",
    "profile.tab_personal": "Personal data",
    "profile.tab_permissions": "Permissions",
    "profile.tab_delete": "Delete account",
    "profile.key_disable": "Disable",
    "profile.key_delete": "Delete",
    "profile.key_submit": "Request",
    "profile.save": "Save",
    "profile.saved": "Your personal data has been updated.",
    "profile.fix_errors": "Some fields are not valid; correct them as shown beside each and save again.",
    "profile.current_title": "※Current permissions",
    "profile.status_granted": "Granted",
    "profile.status_pending": "Under review",
    "profile.no_permissions": "No permissions",
    "profile.give_up": "Give up this permission",
    "profile.withdraw": "Withdraw this request",
    "profile.give_up_confirm": (
        "Give up your {role} permission in {category}? You would have to apply again to get it back."
    ),
    "profile.give_up_last_confirm": (
        "{role} in {category} is your last permission: giving it up disables your account "
        "and logs you out. Give it up?"
    ),
    "profile.given_up": "You gave up your {role} permission in {category}.",
    "profile.withdraw_confirm": "Withdraw your request for {role} in {category}?",
    "profile.withdrawn": "Your request in {category} has been withdrawn.",
    "profile.changes_title": "※Request permission changes",
    "profile.changes_hint": (
        "Choose a new category or another role, then press Request changes; each subsystem's "
        "administrators review it and your current permissions stay until then. "
        "To drop a permission, use Give up above."
    ),
    "profile.submit_changes": "Request changes",
    "profile.changes_submitted": "Your permission changes have been sent for review.",
    "profile.disable_text": (
        "Disabling your account turns off all your permissions and cancels the requests under "
        "review; you can no longer log in with it. To use the system again, apply again when "
        "you log in."
    ),
    "profile.disable_confirm": (
        "Disable your account? All your permissions are turned off and you are logged out."
    ),
    "profile.disabled_done": "Your account is disabled. Apply again to use the system again.",
    "profile.delete_text": (
        "Deleting your account:\n"
        "・erases your personal data: name, phones, e-mails, mobile, ID number and card bindings;\n"
        "・revokes all permissions and cancels the requests under review; you can no longer log in;\n"
        "・keeps the audit trail the law requires, and your masked ID ({masked_id})."
    ),
    "profile.delete_confirm": "{text}\n\nDelete your account? This cannot be undone.",
    "profile.deleted_done": "Your account has been deleted and your personal data erased.",
    "profile.busy": "Working…",
    "profile.conflict": (
        "This account was changed elsewhere meanwhile; nothing was saved. The permissions shown "
        "are now the latest; what you typed is kept: check it and send again."
    ),
    "profile.conflict_fields": "Changed elsewhere: {fields}",
    "profile.account_gone": "Your account has been disabled or deleted; please log in again.",
    "profile.error_not_active": "The account is not active; its permissions cannot be changed.",
    "profile.error_no_change": (
        "Nothing to change: choose a new category or another role before sending."
    ),
    "profile.error_request_not_pending": "This request is no longer under review.",
}
