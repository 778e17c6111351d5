"""Texts of the form screens: zh-TW (seed texts verbatim) and English."""

ZH_TW: dict[str, str] = {}

EN: dict[str, str] = {}
