"""Texts of the profile screens: zh-TW and English (same keys in both)."""

ZH_TW: dict[str, str] = {}

EN: dict[str, str] = {}
