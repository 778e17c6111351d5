"""Texts of the login screens: zh-TW (seed texts verbatim) and English."""

ZH_TW: dict[str, str] = {}

EN: dict[str, str] = {}
