"""Tests for smis_tui.core.identifiers (person IDs, phones, e-mail)."""

from __future__ import annotations

import itertools
import pickle
import string
from collections.abc import Callable

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from card.identity import masked_id_hint
from smis_tui.core.identifiers import (
    LANDLINE_AREA_CODES,
    LETTER_CODES,
    EmailError,
    IdentifierError,
    Landline,
    PersonId,
    PersonIdError,
    PersonIdKind,
    PhoneError,
    check_digit,
    generate_national_id,
    generate_new_resident_id,
    generate_old_resident_id,
    is_valid_checksum,
    parse_email,
    parse_landline,
    parse_mobile,
    parse_person_id,
)

LETTERS = string.ascii_uppercase
# Weights applied to characters 1..9 of the ID (character 0 is the letter,
# whose two code digits get weights 1 and 9).
DIGIT_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 1, 1)

letters = st.sampled_from(LETTERS)
serials = st.integers(min_value=0, max_value=9_999_999)


@st.composite
def valid_ids(draw: st.DrawFn) -> tuple[str, PersonIdKind]:
    letter = draw(letters)
    serial = draw(serials)
    kind = draw(
        st.sampled_from(
            [PersonIdKind.NATIONAL_ID, PersonIdKind.NEW_RESIDENT, PersonIdKind.OLD_RESIDENT]
        )
    )
    if kind is PersonIdKind.NATIONAL_ID:
        return generate_national_id(letter, draw(st.sampled_from([1, 2])), serial), kind
    if kind is PersonIdKind.NEW_RESIDENT:
        return generate_new_resident_id(letter, draw(st.sampled_from([8, 9])), serial), kind
    return generate_old_resident_id(letter, draw(st.sampled_from("ABCD")), serial), kind


def reference_checksum_ok(value: str) -> bool:
    """Independent re-implementation of the published algorithm."""
    code = LETTER_CODES[value[0]]
    second = value[1]
    second_digit = LETTER_CODES[second] % 10 if second.isalpha() else int(second)
    digits = [code // 10, code % 10, second_digit, *map(int, value[2:])]
    weights = [1, 9, 8, 7, 6, 5, 4, 3, 2, 1, 1]
    return sum(w * d for w, d in zip(weights, digits, strict=True)) % 10 == 0


# ----------------------------------------------------------------- known examples


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("A123456789", PersonIdKind.NATIONAL_ID),
        ("F131104093", PersonIdKind.NATIONAL_ID),
        ("A800000014", PersonIdKind.NEW_RESIDENT),
        ("AC01234567", PersonIdKind.OLD_RESIDENT),
        ("AB12345677", PersonIdKind.OLD_RESIDENT),
    ],
)
def test_known_valid_ids(text: str, kind: PersonIdKind) -> None:
    assert reference_checksum_ok(text)
    result = parse_person_id(text)
    assert result == PersonId(kind, text)
    assert result.kind is kind
    assert parse_person_id(text, allow_other=False) == result


def test_letter_table_is_the_published_one() -> None:
    assert LETTER_CODES["A"] == 10
    assert LETTER_CODES["I"] == 34
    assert LETTER_CODES["O"] == 35
    assert LETTER_CODES["W"] == 32
    assert LETTER_CODES["Z"] == 33
    assert sorted(LETTER_CODES.values()) == list(range(10, 36))
    assert set(LETTER_CODES) == set(LETTERS)


def test_check_digit_and_generators() -> None:
    assert check_digit("A12345678") == 9
    assert check_digit("a12345678") == 9
    assert generate_national_id("A", 1, 2345678) == "A123456789"
    assert generate_national_id("a", 1, 2345678) == "A123456789"
    assert is_valid_checksum("A123456789")
    assert not is_valid_checksum("A123456788")
    assert not is_valid_checksum("A12345678")
    assert not is_valid_checksum("1123456789")


@pytest.mark.parametrize("bad", ["A1234567", "1123456789", "AE2345678", "A1234567X"])
def test_check_digit_rejects_malformed_input(bad: str) -> None:
    with pytest.raises(ValueError):
        check_digit(bad)


@pytest.mark.parametrize(
    ("call", "args"),
    [
        (generate_national_id, ("A", 3, 1)),
        (generate_national_id, ("AA", 1, 1)),
        (generate_national_id, ("1", 1, 1)),
        (generate_national_id, ("A", 1, 10_000_000)),
        (generate_national_id, ("A", 1, -1)),
        (generate_new_resident_id, ("A", 1, 1)),
        (generate_old_resident_id, ("A", "E", 1)),
    ],
)
def test_generators_reject_bad_arguments(
    call: Callable[..., str], args: tuple[object, ...]
) -> None:
    with pytest.raises(ValueError):
        call(*args)


@pytest.mark.parametrize(
    "text",
    [
        "a123456789",
        " A123456789 ",
        "Ａ１２３４５６７８９",  # full-width
        "A 1234 56789",
        "A-123-456-789",
        "A123\u2013456789",  # en dash
        "\u3000A123456789\u3000",  # ideographic spaces
    ],
)
def test_normalisation(text: str) -> None:
    assert parse_person_id(text) == PersonId(PersonIdKind.NATIONAL_ID, "A123456789")


# ------------------------------------------------------------------ property tests


@settings(max_examples=300)
@given(valid_ids())
def test_every_generated_id_parses_with_its_kind(case: tuple[str, PersonIdKind]) -> None:
    value, kind = case
    assert reference_checksum_ok(value)
    assert parse_person_id(value) == PersonId(kind, value)
    assert parse_person_id(value.lower()) == PersonId(kind, value)
    assert parse_person_id(value, allow_other=False).kind is kind


@settings(max_examples=300)
@given(valid_ids(), st.integers(min_value=1, max_value=9), st.integers(0, 9))
def test_single_digit_changes(
    case: tuple[str, PersonIdKind], position: int, new_digit: int
) -> None:
    """A single-digit change is rejected unless the checksum *cannot* see it.

    The published weights for characters 1..9 are 8, 7, 6, 5, 4, 3, 2, 1, 1.
    A change of ``delta`` at a position of weight ``w`` is invisible to the
    checksum iff ``w * delta ≡ 0 (mod 10)``: ±5 at weights 8/6/4/2 and any even
    delta at weight 5 (A123456789 → A128456789, A123656789 are both valid).
    Position 1 (weight 8) is still safe because 1↔6, 2↔7, 8↔3, 9↔4 leave the
    allowed second-digit sets.  Every other single-digit change is rejected.
    """
    value, _ = case
    old = value[position]
    assume(old.isdigit() and int(old) != new_digit)
    changed = value[:position] + str(new_digit) + value[position + 1 :]
    weight = DIGIT_WEIGHTS[position - 1]
    undetectable = position != 1 and (weight * (new_digit - int(old))) % 10 == 0
    if undetectable:
        assert parse_person_id(changed).value == changed
    else:
        with pytest.raises(PersonIdError) as info:
            parse_person_id(changed)
        assert info.value.field == "使用者身分證號"
        with pytest.raises(PersonIdError):
            parse_person_id(changed, allow_other=False)


@settings(max_examples=300)
@given(valid_ids(), st.sampled_from([1, 2, 6, 8, 9]), st.integers(1, 9))
def test_single_digit_changes_at_coprime_weight_positions_always_rejected(
    case: tuple[str, PersonIdKind], position: int, delta: int
) -> None:
    """Weights 7, 3, 1, 1 (and the second digit via the kind rule) catch every change."""
    value, _ = case
    assume(value[position].isdigit())
    new = (int(value[position]) + delta) % 10
    changed = value[:position] + str(new) + value[position + 1 :]
    with pytest.raises(PersonIdError):
        parse_person_id(changed)


def test_known_checksum_blind_spot() -> None:
    # Documented limitation of the published algorithm, not of our code.
    assert parse_person_id("A123456789").kind is PersonIdKind.NATIONAL_ID
    assert parse_person_id("A128456789").kind is PersonIdKind.NATIONAL_ID
    assert parse_person_id("A123656789").kind is PersonIdKind.NATIONAL_ID


@settings(max_examples=200)
@given(letters, st.sampled_from("ABCD"), st.sampled_from("ABCD"), serials)
def test_changing_old_arc_second_letter_is_rejected(
    first: str, second: str, replacement: str, serial: int
) -> None:
    assume(second != replacement)
    value = generate_old_resident_id(first, second, serial)
    with pytest.raises(PersonIdError, match="檢查碼錯誤"):
        parse_person_id(value[0] + replacement + value[2:])


@settings(max_examples=300)
@given(st.text(alphabet=LETTERS + string.digits, min_size=10, max_size=10))
def test_ten_char_id_shapes_never_silently_become_other(text: str) -> None:
    looks_like_id = text[0].isalpha() and (
        text[1].isdigit() or (text[1].isalpha() and text[2:].isdigit())
    )
    try:
        result = parse_person_id(text)
    except PersonIdError:
        return
    if looks_like_id:
        assert result.kind is not PersonIdKind.OTHER
        assert reference_checksum_ok(result.value)
    else:
        assert result.kind is PersonIdKind.OTHER


# ------------------------------------------------------------------------ errors


def assert_refused(
    parse: Callable[[str], object],
    text: str,
    error: type[IdentifierError],
    field: str,
    fragment: str,
) -> None:
    """``parse(text)`` raises ``error``, whose message names ``field`` first and says
    ``fragment``."""
    with pytest.raises(error) as info:
        parse(text)
    assert str(info.value).startswith(f"{field}：")
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "請輸入"),
        ("   ", "請輸入"),
        ("A123456788", "檢查碼錯誤"),
        ("A323456789", "第二碼"),
        ("A023456789", "第二碼"),
        ("AE12345678", "第二碼"),
        ("AB12345678", "檢查碼錯誤"),
        ("A12345678O", "第 3 至 10 碼應為數字"),
        ("A1234", "長度應為 10 碼"),
        ("A" * 21, "長度應為 10 碼"),
        ("ABCDEFGH", "應包含數字"),
        ("A12345678\u00e9", "只能包含英文字母與數字"),
        ("護照123456", "只能包含英文字母與數字"),
        ("A1234\x006789", "控制字元"),
        ("A1234\t56789", "控制字元"),
        ("\u202eA123456789", "控制字元"),
        ("A123\u200b456789", "控制字元"),
    ],
)
def test_person_id_errors(text: str, fragment: str) -> None:
    with pytest.raises(PersonIdError) as info:
        parse_person_id(text)
    message = str(info.value)
    assert message.startswith("使用者身分證號：")
    assert fragment in message
    assert info.value.field == "使用者身分證號"
    assert isinstance(info.value, IdentifierError)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("A12345678", "長度應為 10 碼"),
        ("A1234567890", "長度應為 10 碼"),
        ("1234567890", "第一碼應為英文字母"),
        ("A323456789", "第二碼"),
        ("A12345678X", "第 3 至 10 碼應為數字"),
        ("A123456788", "檢查碼錯誤"),
        ("X1234567", "長度應為 10 碼"),
    ],
)
def test_strict_mode_errors(text: str, fragment: str) -> None:
    with pytest.raises(PersonIdError, match=fragment):
        parse_person_id(text, allow_other=False)


def test_custom_field_name_and_no_value_echo() -> None:
    with pytest.raises(PersonIdError) as info:
        parse_person_id("A123456788", field="代理人身分證號")
    assert str(info.value) == "代理人身分證號：檢查碼錯誤，請確認是否輸入正確"
    assert info.value.field == "代理人身分證號"
    assert info.value.problem == "檢查碼錯誤，請確認是否輸入正確"
    assert "A123456788" not in str(info.value)


def test_error_pickles() -> None:
    err = PhoneError("主要連絡電話", "區碼錯誤")
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is PhoneError
    assert str(clone) == str(err)
    assert clone.field == err.field


# ------------------------------------------------------------------- other / mask


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("E12345678", "E12345678"),  # 9 chars: passport, not an ID shape
        ("300123456", "300123456"),  # Taiwanese passport: 9 digits
        ("ea1234567", "EA1234567"),
        ("1234567890", "1234567890"),
        ("AB1234", "AB1234"),
        ("HPC-2024-000123", "HPC2024000123"),
        ("A" * 19 + "1", "A" * 19 + "1"),
    ],
)
def test_other_accepted(text: str, value: str) -> None:
    assert parse_person_id(text) == PersonId(PersonIdKind.OTHER, value)


def test_other_rejected_in_strict_mode() -> None:
    with pytest.raises(PersonIdError):
        parse_person_id("E12345678", allow_other=False)


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("A123456789", "A1******89"),
        ("AB12345677", "AB******77"),
        ("E12345678", "E1*****78"),
        ("300123456", "30*****56"),
        ("AB1234", "******"),
        ("AB12345", "A*****5"),
        ("ABCDEFG1", "A******1"),
        ("A" * 19 + "1", "AA" + "*" * 16 + "A1"),
        ("AB", "*****"),
        ("", "*****"),
    ],
)
def test_masking(value: str, masked: str) -> None:
    assert PersonId(PersonIdKind.OTHER, value).masked() == masked


@settings(max_examples=200)
@given(st.text(alphabet=LETTERS + string.digits, min_size=0, max_size=20))
def test_masking_hides_at_least_five_characters_and_never_more_than_half_shown(
    value: str,
) -> None:
    masked = PersonId(PersonIdKind.OTHER, value).masked()
    shown = sum(1 for ch in masked if ch != "*")
    assert masked.count("*") >= 5
    assert shown <= len(value) // 2
    head, *_, tail = masked.split("*")
    assert len(head) <= 2 and len(tail) <= 2 and head + tail == masked.replace("*", "")
    if shown:  # the value's own first and last characters, in place
        assert len(masked) == len(value)
        assert all(m in ("*", v) for m, v in zip(masked, value, strict=True))


_SECOND_CHARACTERS = "1289ABCD"  # national ID, new resident number, old ARC number


def _checksum_terms(position: int, ch: str) -> int:
    """What ``ch`` at ``position`` adds to the published checksum (mod 10)."""
    if position == 0:
        code = LETTER_CODES[ch]
        return code // 10 + 9 * (code % 10)
    value = LETTER_CODES[ch] % 10 if ch.isalpha() else int(ch)
    return DIGIT_WEIGHTS[position - 1] * value


def _valid_ids_fitting(mask: str) -> int:
    """How many valid checksummed IDs show ``mask``, by brute force: every hidden
    position takes every character it may hold, and each candidate's checksum is
    computed in full."""
    terms = [
        [_checksum_terms(position, ch)]
        if ch != "*"
        else [
            _checksum_terms(position, option)
            for option in (
                LETTERS if position == 0 else _SECOND_CHARACTERS if position == 1 else string.digits
            )
        ]
        for position, ch in enumerate(mask)
    ]
    return sum(1 for candidate in itertools.product(*terms) if sum(candidate) % 10 == 0)


def test_the_brute_force_count_agrees_with_the_checksum() -> None:
    person_id = generate_national_id("K", 2, 5_550_123)
    mask = person_id[:5] + "**" + person_id[7:]
    fitting = [
        person_id[:5] + f"{n:02d}" + person_id[7:]
        for n in range(100)
        if is_valid_checksum(person_id[:5] + f"{n:02d}" + person_id[7:])
    ]
    assert _valid_ids_fitting(mask) == len(fitting) == 10


@pytest.mark.parametrize(
    "person_id",
    [
        generate_national_id("A", 1, 2_345_678),
        generate_national_id("Z", 2, 9_081_726),
        generate_new_resident_id("F", 8, 1_357_924),
        generate_old_resident_id("T", "C", 4_040_404),
    ],
)
def test_a_masked_id_fits_at_least_a_hundred_thousand_valid_ids(person_id: str) -> None:
    mask = parse_person_id(person_id).masked()
    assert _valid_ids_fitting(mask) >= 100_000


@pytest.mark.parametrize(
    ("hint", "shown"),
    [("A123456789", "A1******89"), ("6789", "****"), ("", ""), (None, None)],
)
def test_a_card_id_hint_is_masked_like_a_stored_id(hint: str | None, shown: str | None) -> None:
    assert masked_id_hint(hint) == shown


def test_repr_does_not_leak_the_id() -> None:
    pid = parse_person_id("A123456789")
    assert "A123456789" not in repr(pid)
    assert "A1******89" in repr(pid)
    assert pid.kind == "national_id"  # StrEnum
    assert PersonIdKind.NATIONAL_ID.label == "身分證字號"


# ----------------------------------------------------------------------- landline


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("02-12345678", Landline("02", "12345678")),
        ("(02)12345678", Landline("02", "12345678")),
        ("(02) 1234-5678", Landline("02", "12345678")),
        ("0212345678", Landline("02", "12345678")),
        ("02-12345678#123", Landline("02", "12345678", "123")),
        ("02-12345678#", Landline("02", "12345678")),
        ("02-12345678 分機 45", Landline("02", "12345678", "45")),
        ("04-23456789 ext. 5", Landline("04", "23456789", "5")),
        ("０２－１２３４５６７８＃９", Landline("02", "12345678", "9")),
        ("+886-2-1234-5678", Landline("02", "12345678")),
        ("886 2 12345678", Landline("02", "12345678")),
        ("03-4567890", Landline("03", "4567890")),
        ("037-123456", Landline("037", "123456")),
        ("037123456", Landline("037", "123456")),
        ("03-7123456", Landline("037", "123456")),  # canonical: longest prefix
        ("049-2345678", Landline("049", "2345678")),
        ("05-2345678", Landline("05", "2345678")),
        ("06-2345678", Landline("06", "2345678")),
        ("07-2345678", Landline("07", "2345678")),
        ("08-7654321", Landline("08", "7654321")),
        ("089-123456", Landline("089", "123456")),
        ("082-123456", Landline("082", "123456")),
        ("0826-12345", Landline("0826", "12345")),
        ("(0836)12345", Landline("0836", "12345")),
    ],
)
def test_landline_valid(text: str, expected: Landline) -> None:
    assert parse_landline(text) == expected


def test_landline_str() -> None:
    assert str(Landline("02", "12345678", "123")) == "02-12345678#123"
    assert str(Landline("02", "12345678")) == "02-12345678"
    assert str(parse_landline("02-12345678#")) == "02-12345678"
    assert parse_landline("(037)123456").digits == "037123456"
    assert set(LANDLINE_AREA_CODES) >= {"02", "037", "0826", "0836"}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "請輸入"),
        ("02-0000#", "號碼長度不正確"),  # as written by the seed data
        ("02-123456789", "號碼長度不正確"),
        ("02-1234", "號碼長度不正確"),
        ("01-2345678", "區碼錯誤"),
        ("0912345678", "區碼錯誤"),
        ("12345678", "區碼"),
        ("02-12345678#12a", "分機只能是數字"),
        ("02-12345678#-1", "分機只能是數字"),
        ("02-1234567a", "只能包含數字"),
        ("+1-202-555-0100", "+886"),
        ("02-1234\x005678", "控制字元"),
        ("\u202e02-12345678", "控制字元"),
    ],
)
def test_landline_invalid(text: str, fragment: str) -> None:
    assert_refused(parse_landline, text, PhoneError, "主要連絡電話", fragment)


def test_landline_custom_field() -> None:
    with pytest.raises(PhoneError, match="^公務電話：區碼錯誤$"):
        parse_landline("01-2345678", field="公務電話")


# ------------------------------------------------------------------------- mobile


@pytest.mark.parametrize(
    "text",
    [
        "0912-345-678",
        "0912345678",
        "0912-345678",
        "0912 345 678",
        "+886912345678",
        "+886 912 345 678",
        "886-912-345-678",
        "+886-0912-345-678",
        "０９１２－３４５－６７８",
    ],
)
def test_mobile_valid(text: str) -> None:
    assert parse_mobile(text) == "0912-345-678"


@settings(max_examples=200)
@given(st.integers(min_value=0, max_value=99_999_999))
def test_mobile_roundtrip(n: int) -> None:
    digits = f"09{n:08d}"
    formatted = parse_mobile(digits)
    assert formatted.replace("-", "") == digits
    assert parse_mobile(formatted) == formatted


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "請輸入"),
        ("0812345678", "09 開頭"),
        ("02-12345678", "09 開頭"),
        ("091234567", "長度應為 10 碼"),
        ("09123456789", "長度應為 10 碼"),
        ("0912-abc-678", "只能包含數字"),
        ("+1 912345678", "+886"),
        ("0912\x00345678", "控制字元"),
    ],
)
def test_mobile_invalid(text: str, fragment: str) -> None:
    assert_refused(parse_mobile, text, PhoneError, "行動電話", fragment)


# -------------------------------------------------------------------------- email


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name@example.tw", "name@example.tw"),
        ("Name@Example.TW", "Name@example.tw"),  # only the domain is lower-cased
        ("  a.b+tag@mail.cdc.gov.tw  ", "a.b+tag@mail.cdc.gov.tw"),
        ("o'brien_x-y@sub-domain.example.com", "o'brien_x-y@sub-domain.example.com"),
        ("ｎａｍｅ＠ｅｘａｍｐｌｅ．ｔｗ", "name@example.tw"),
        ("a" * 64 + "@example.tw", "a" * 64 + "@example.tw"),
        ("x@1.example.tw", "x@1.example.tw"),
    ],
)
def test_email_valid(text: str, expected: str) -> None:
    assert parse_email(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "請輸入"),
        ("name.example.tw", "格式不正確，例如 name@example.tw"),
        ("a@@example.tw", "格式不正確"),
        ("a@b@example.tw", "格式不正確"),
        ("@example.tw", "格式不正確"),
        ("name@", "格式不正確"),
        ("name@example", "格式不正確"),
        ("name@example.t", "格式不正確"),
        ("name@example.t1", "格式不正確"),
        ("name@-example.tw", "格式不正確"),
        ("name@example-.tw", "格式不正確"),
        ("name@example..tw", "格式不正確"),
        ("name@exa_mple.tw", "格式不正確"),
        (".name@example.tw", "格式不正確"),
        ("name.@example.tw", "格式不正確"),
        ("na..me@example.tw", "格式不正確"),
        ("na(me@example.tw", "格式不正確"),
        ("王小明@example.tw", "格式不正確"),
        ("name@例子.tw", "格式不正確"),
        ("na me@example.tw", "不可包含空白"),
        ("name@exam ple.tw", "不可包含空白"),
        ("a" * 65 + "@example.tw", "64"),
        ("a@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 63 + "." + "e" * 63 + ".tw", "254"),
        ("name@example.tw\x00", "控制字元"),
        ("name\u202e@example.tw", "控制字元"),
        ("name@exa\x7fmple.tw", "控制字元"),
    ],
)
def test_email_invalid(text: str, fragment: str) -> None:
    assert_refused(parse_email, text, EmailError, "主要電子信箱", fragment)


# ---------------------------------------------------------------- shared behaviour


@pytest.mark.parametrize(
    ("func", "default_field"),
    [
        (parse_person_id, "使用者身分證號"),
        (parse_landline, "主要連絡電話"),
        (parse_mobile, "行動電話"),
        (parse_email, "主要電子信箱"),
    ],
)
@pytest.mark.parametrize("bad", ["", "\x00", "abc\x07", "\u202dxyz", "x\u2066y"])
def test_every_parser_names_its_field(
    func: Callable[..., object], default_field: str, bad: str
) -> None:
    with pytest.raises(IdentifierError) as info:
        func(bad)
    assert info.value.field == default_field
    assert str(info.value).startswith(default_field + "：")
    with pytest.raises(IdentifierError) as custom:
        func(bad, field="測試欄位")
    assert str(custom.value).startswith("測試欄位：")
