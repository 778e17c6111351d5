"""The one rule for what a person cannot see (smis_tui.core.chars)."""

from __future__ import annotations

import pytest

from smis_tui.core.chars import has_hidden, is_hidden, strip_hidden


@pytest.mark.parametrize(
    "ch",
    [
        "\x00",  # NUL
        "\x1b",  # ESC, the start of every terminal escape sequence
        "\x9b",  # C1 CSI
        "\u202e",  # RIGHT-TO-LEFT OVERRIDE
        "\u200b",  # ZERO WIDTH SPACE
        "\ufeff",  # BOM
        "\ue000",  # private use
        "\U000f0000",  # supplementary private use
        "\u0378",  # unassigned, in the Greek block
        "\U000e0080",  # unassigned, outside the ideographic planes
        "\U0002fffe",  # a noncharacter inside the ideographic planes
        "\ufdd0",  # a noncharacter in the BMP
    ],
)
def test_controls_formats_private_use_and_stray_unassigned_are_hidden(ch: str) -> None:
    assert is_hidden(ch)


@pytest.mark.parametrize(
    "ch",
    [
        "王",
        "\U0002a6a5",  # 𪚥, CJK Extension B
        "\U00030000",  # CJK Extension G (Unicode 13)
        "\U0002ebf0",  # CJK Extension I (Unicode 15.1)
        "\U0002ebe1",  # not yet assigned, but in the ideographic plane: a future name
        "\U00031350",  # CJK Extension H (Unicode 15)
        "é",
        " ",
    ],
)
def test_ideographs_of_real_names_are_visible_even_when_this_python_does_not_know_them(
    ch: str,
) -> None:
    assert not is_hidden(ch)


def test_strip_hidden_keeps_what_a_person_sees() -> None:
    assert strip_hidden("王\u202e小\x1b[31m明\t!\n") == "王小[31m明 !\n"
    assert strip_hidden("a\nb", keep_newlines=False) == "a b"
    assert has_hidden("王\u200b明") and not has_hidden("王\U0002ebe1明")
