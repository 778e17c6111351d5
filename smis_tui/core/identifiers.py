"""Validation and normalisation of Taiwanese personal identifiers.

Pure standard-library code (never imports Textual) so the services layer and
the UI can share it.  Every failure raises an :class:`IdentifierError` whose
``str()`` is a complete zh-TW sentence of the form ``"<欄位>：<問題>"``; it also
carries the problem's text key (``ident.*`` in :mod:`smis_tui.text.identifiers`)
so a screen shows it in its own language (:meth:`IdentifierError.render`). The
offending value itself is never echoed (it is personal data).

Covered formats:

* 身分證字號 (national ID): letter + 1|2 + 8 digits, checksummed.
* 新式統一證號 (resident UI number, since 2021): letter + 8|9 + 8 digits, same checksum.
* 舊式居留證統一證號 (old ARC number): letter + A-D + 8 digits; the second
  letter's code value mod 10 takes the place of the second digit.
* Anything else that is 6–20 characters of ``[A-Z0-9]`` with at least one
  digit is accepted as :attr:`PersonIdKind.OTHER` (passport / HPC numbers),
  *unless* it has the 10-character shape of one of the checksummed formats,
  in which case it must pass that format's rules.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass

from smis_tui.core.chars import has_hidden
from smis_tui.text import CATALOGS, DEFAULT_LANGUAGE, Phrase, t

__all__ = [
    "DEFAULT_EMAIL_FIELD",
    "DEFAULT_ID_FIELD",
    "DEFAULT_LANDLINE_FIELD",
    "DEFAULT_MOBILE_FIELD",
    "LANDLINE_AREA_CODES",
    "LETTER_CODES",
    "MASK_MAX_EDGE",
    "MASK_MIN_HIDDEN",
    "EmailError",
    "IdentifierError",
    "Landline",
    "PersonId",
    "PersonIdError",
    "PersonIdKind",
    "PhoneError",
    "check_digit",
    "generate_national_id",
    "generate_new_resident_id",
    "generate_old_resident_id",
    "is_valid_checksum",
    "mask_edge",
    "mask_person_id",
    "normalise_person_id",
    "parse_email",
    "parse_landline",
    "parse_mobile",
    "parse_person_id",
]

DEFAULT_ID_FIELD = t("field.person_id")  # 使用者身分證號
DEFAULT_LANDLINE_FIELD = t("field.phone")  # 主要連絡電話
DEFAULT_MOBILE_FIELD = t("field.mobile")  # 行動電話
DEFAULT_EMAIL_FIELD = t("field.email")  # 主要電子信箱

#: zh-TW label → its text key, so a label given as a plain string is still shown
#: in English when it is one of the catalogue's field labels.
_LABEL_KEYS = {
    text: key for key, text in CATALOGS[DEFAULT_LANGUAGE].items() if key.startswith("field.")
}

Field = str | Phrase


# --------------------------------------------------------------------------- errors


class IdentifierError(ValueError):
    """Base error: ``str(e)`` is ``f"{field}：{problem}"`` (zh-TW).

    ``field`` is the field's label: a Phrase (shown in the screen's language) or a
    string; ``problem`` is an ``ident.*`` text key (or, for callers outside the
    catalogue, a zh-TW sentence shown as it is). ``.field`` and ``.problem`` are the
    zh-TW texts; ``.key`` and ``.params`` render the problem in any language.
    """

    def __init__(self, field: Field, problem: str, **params: object) -> None:
        self.key = problem if problem in CATALOGS[DEFAULT_LANGUAGE] else ""
        self.params = params
        self.label: Phrase | None = (
            field
            if isinstance(field, Phrase)
            else Phrase(_LABEL_KEYS[field])
            if field in _LABEL_KEYS
            else None
        )
        self.field = str(field)
        self.problem = t(self.key, DEFAULT_LANGUAGE, **params) if self.key else problem
        super().__init__(self.render())

    def problem_text(self, language: str = DEFAULT_LANGUAGE) -> str:
        """The problem alone (no field label) in ``language``."""
        return t(self.key, language, **self.params) if self.key else self.problem

    def render(self, language: str = DEFAULT_LANGUAGE, field_label: str | None = None) -> str:
        """``"<label>：<problem>"`` in ``language``; ``field_label`` replaces the label."""
        if field_label is None:
            field_label = self.label.render(language) if self.label is not None else self.field
        return t("ident.message", language, field=field_label, problem=self.problem_text(language))

    def phrase(self, field: Field | None = None) -> Phrase:
        """The message as a Phrase (``field`` replaces the label)."""
        label: Field = field if field is not None else (self.label or self.field)
        problem = Phrase(self.key, **self.params) if self.key else self.problem
        return Phrase("ident.message", field=label, problem=problem)

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild,
            (type(self), self.label or self.field, self.key or self.problem, self.params),
        )


def _rebuild(
    cls: type[IdentifierError], field: Field, problem: str, params: dict[str, object]
) -> IdentifierError:
    return cls(field, problem, **params)


class PersonIdError(IdentifierError):
    """Invalid 身分證字號 / 統一證號 / passport number."""


class PhoneError(IdentifierError):
    """Invalid landline or mobile number."""


class EmailError(IdentifierError):
    """Invalid e-mail address."""


# --------------------------------------------------------------------------- helpers

# Hyphen-like characters users paste from word processors (NFKC maps the
# full-width one to '-', but not these).
_HYPHENS = "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212"
_ASCII_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_DIGITS = frozenset("0123456789")


def _prepare(text: str, field: Field, error: type[IdentifierError]) -> str:
    """Strip, reject empty / control chars, then NFKC-normalise."""
    stripped = text.strip()
    if not stripped:
        raise error(field, "ident.required")
    if has_hidden(stripped):
        raise error(field, "ident.forbidden_chars")
    return unicodedata.normalize("NFKC", stripped).strip()


def _is_digits(text: str) -> bool:
    return bool(text) and all(ch in _DIGITS for ch in text)


# ------------------------------------------------------------------------ person IDs

#: Published letter → two-digit code table (I, O, W–Z are out of order).
LETTER_CODES: dict[str, int] = {
    "A": 10, "B": 11, "C": 12, "D": 13, "E": 14, "F": 15, "G": 16, "H": 17,
    "I": 34, "J": 18, "K": 19, "L": 20, "M": 21, "N": 22, "O": 35, "P": 23,
    "Q": 24, "R": 25, "S": 26, "T": 27, "U": 28, "V": 29, "W": 32, "X": 30,
    "Y": 31, "Z": 33,
}  # fmt: skip

_WEIGHTS = (1, 9, 8, 7, 6, 5, 4, 3, 2, 1, 1)
_OLD_ARC_SECOND = frozenset("ABCD")
_NATIONAL_SECOND = frozenset("12")
_NEW_RESIDENT_SECOND = frozenset("89")


class PersonIdKind(enum.StrEnum):
    NATIONAL_ID = "national_id"  # 身分證字號
    NEW_RESIDENT = "new_resident"  # 新式統一證號 (2021–)
    OLD_RESIDENT = "old_resident"  # 舊式居留證統一證號
    OTHER = "other"  # 護照號碼 / 醫事人員證書號碼

    @property
    def label(self) -> str:
        return self.label_in(DEFAULT_LANGUAGE)

    def label_in(self, language: str) -> str:
        return t(f"ident.kind.{self.value}", language)


#: Characters a mask always hides: with a national ID's check digit shown, five hidden
#: digits still leave 10^5 valid IDs that fit the mask.
MASK_MIN_HIDDEN = 5
#: Characters a mask shows at most at each end.
MASK_MAX_EDGE = 2


def mask_edge(length: int) -> int:
    """How many characters a mask shows at each end of a value of ``length``: at most
    :data:`MASK_MAX_EDGE`, never more than half the value, and at least
    :data:`MASK_MIN_HIDDEN` hidden (a 10-character ID shows 2 + 2 and hides 6)."""
    return max(0, min(MASK_MAX_EDGE, (length - MASK_MIN_HIDDEN) // 2, length // 4))


def mask_person_id(value: str) -> str:
    """The mask of ``value`` (see :meth:`PersonId.masked`); a mask given as ``value``
    comes back unchanged, and an older, wider mask comes back masked by this rule."""
    keep = mask_edge(len(value))
    stars = "*" * max(MASK_MIN_HIDDEN, len(value) - 2 * keep)
    if keep == 0:
        return stars
    return f"{value[:keep]}{stars}{value[-keep:]}"


@dataclass(frozen=True)
class PersonId:
    kind: PersonIdKind
    value: str

    def masked(self) -> str:
        """``"A1******89"`` for a 10-character ID: the first two and the last two.

        Every mask hides at least five characters (a Taiwanese ID's six hidden digits,
        one fixed by the check digit shown, leave 10^5 valid IDs that fit), shows at most
        two at each end and never more than half; values of six characters or fewer
        are all stars. Masks are idempotent: masking a mask changes nothing, so a stored
        mask is brought to this rule from the stored mask alone."""
        return mask_person_id(self.value)

    def __repr__(self) -> str:  # keep raw IDs out of logs and tracebacks
        return f"PersonId(kind={self.kind!r}, value={self.masked()!r})"


def _second_digit(ch: str) -> int:
    if ch in _DIGITS:
        return int(ch)
    if ch in _OLD_ARC_SECOND:
        return LETTER_CODES[ch] % 10
    raise ValueError(f"invalid second character {ch!r}")


def _checksum_sum(first: str, second: str, rest: str) -> int:
    code = LETTER_CODES[first]
    digits = [code // 10, code % 10, _second_digit(second), *(int(c) for c in rest)]
    return sum(w * d for w, d in zip(_WEIGHTS, digits, strict=True))


def check_digit(first9: str) -> int:
    """Check digit for the first nine characters of a checksummed ID.

    ``first9`` is letter + (digit or A–D) + 7 digits, e.g. ``"A12345678"`` → 9.
    Raises plain :class:`ValueError` for malformed input.
    """
    s = first9.upper()
    if (
        len(s) != 9
        or s[0] not in LETTER_CODES
        or not (s[1] in _DIGITS or s[1] in _OLD_ARC_SECOND)
        or not _is_digits(s[2:])
    ):
        raise ValueError("first9 must be a letter, a digit or A-D, then 7 digits")
    partial = _checksum_sum(s[0], s[1], s[2:] + "0")
    return (10 - partial % 10) % 10


def is_valid_checksum(value: str) -> bool:
    """True if the 10-character ``value`` passes the published checksum."""
    s = value.upper()
    try:
        return len(s) == 10 and s[9] in _DIGITS and check_digit(s[:9]) == int(s[9])
    except ValueError:
        return False


def _generate(letter: str, second: str, serial: int) -> str:
    letter = letter.upper()
    if len(letter) != 1 or letter not in LETTER_CODES:
        raise ValueError("letter must be a single A-Z letter")
    if not 0 <= serial <= 9_999_999:
        raise ValueError("serial must be in 0..9999999")
    first9 = f"{letter}{second}{serial:07d}"
    return f"{first9}{check_digit(first9)}"


def generate_national_id(letter: str, gender_digit: int, serial: int) -> str:
    """Valid 身分證字號: ``letter`` + 1|2 + 7-digit ``serial`` + check digit."""
    if gender_digit not in (1, 2):
        raise ValueError("gender_digit must be 1 or 2 for a national ID")
    return _generate(letter, str(gender_digit), serial)


def generate_new_resident_id(letter: str, gender_digit: int, serial: int) -> str:
    """Valid 新式統一證號: ``letter`` + 8|9 + 7-digit ``serial`` + check digit."""
    if gender_digit not in (8, 9):
        raise ValueError("gender_digit must be 8 or 9 for a new-format resident number")
    return _generate(letter, str(gender_digit), serial)


def generate_old_resident_id(letter: str, second_letter: str, serial: int) -> str:
    """Valid 舊式居留證號: ``letter`` + A–D + 7-digit ``serial`` + check digit."""
    second = second_letter.upper()
    if len(second) != 1 or second not in _OLD_ARC_SECOND:
        raise ValueError("second_letter must be one of A, B, C, D")
    return _generate(letter, second, serial)


def _validate_checksummed(s: str, field: Field) -> PersonId:
    """Validate a 10-character candidate of one of the checksummed formats."""
    if s[0] not in LETTER_CODES:
        raise PersonIdError(field, "ident.first_letter")
    second = s[1]
    if second in _NATIONAL_SECOND:
        kind = PersonIdKind.NATIONAL_ID
    elif second in _NEW_RESIDENT_SECOND:
        kind = PersonIdKind.NEW_RESIDENT
    elif second in _OLD_ARC_SECOND:
        kind = PersonIdKind.OLD_RESIDENT
    else:
        raise PersonIdError(field, "ident.second_char")
    if not _is_digits(s[2:]):
        raise PersonIdError(field, "ident.digits_3_10")
    if _checksum_sum(s[0], s[1], s[2:]) % 10 != 0:
        raise PersonIdError(field, "ident.checksum")
    return PersonId(kind, s)


def _looks_checksummed(s: str) -> bool:
    """10 chars, letter first, and either a digit second or letter + 8 digits."""
    if len(s) != 10 or not s[0].isalpha():
        return False
    return s[1] in _DIGITS or (s[1].isalpha() and _is_digits(s[2:]))


def normalise_person_id(text: str) -> str:
    """NFKC, strip, drop spaces and hyphens, upper-case (ASCII only)."""
    s = unicodedata.normalize("NFKC", text).strip()
    s = "".join(ch for ch in s if not ch.isspace() and ch not in _HYPHENS)
    return s.upper() if all(ch in _ASCII_ALNUM for ch in s) else s


def parse_person_id(
    text: str, *, field: Field = DEFAULT_ID_FIELD, allow_other: bool = True
) -> PersonId:
    """Normalise and validate a 身分證字號 / 統一證號 / passport / HPC number.

    With ``allow_other=False`` only the three checksummed Taiwanese formats
    are accepted (strict mode, every message is specific to those formats).
    """
    _prepare(text, field, PersonIdError)
    s = normalise_person_id(text)
    if not s:
        raise PersonIdError(field, "ident.required")
    if not all(ch in _ASCII_ALNUM for ch in s):
        raise PersonIdError(field, "ident.alnum_only")

    if not allow_other:
        if len(s) != 10:
            raise PersonIdError(field, "ident.length_10")
        if s[0] not in LETTER_CODES:
            raise PersonIdError(field, "ident.first_letter")
        return _validate_checksummed(s, field)

    if _looks_checksummed(s):
        return _validate_checksummed(s, field)
    if not 6 <= len(s) <= 20:
        raise PersonIdError(field, "ident.length_other")
    if not any(ch in _DIGITS for ch in s):
        raise PersonIdError(field, "ident.other_needs_digit")
    return PersonId(PersonIdKind.OTHER, s)


# --------------------------------------------------------------------------- phones

#: Taiwan landline area codes (longest prefix wins: 037 before 03, 0826 before 082).
LANDLINE_AREA_CODES: tuple[str, ...] = (
    "02", "03", "037", "04", "049", "05", "06", "07", "08", "089", "082", "0826", "0836",
)  # fmt: skip
_AREA_BY_LENGTH = sorted(LANDLINE_AREA_CODES, key=len, reverse=True)

_EXTENSION_MARKERS = re.compile(r"#|分機|轉|ext\.?|x", re.IGNORECASE)
_PHONE_SEPARATORS = frozenset(" ().") | frozenset(_HYPHENS)


@dataclass(frozen=True)
class Landline:
    area_code: str
    number: str
    extension: str | None = None

    @property
    def digits(self) -> str:
        return self.area_code + self.number

    def __str__(self) -> str:
        ext = f"#{self.extension}" if self.extension else ""
        return f"{self.area_code}-{self.number}{ext}"


def _phone_digits(main: str, field: Field) -> str:
    """Remove separators; convert +886 / 886 prefixes to a leading 0."""
    s = main.strip()
    international = s.startswith("+")
    if international:
        s = s[1:]
    if not all(ch in _DIGITS or ch in _PHONE_SEPARATORS for ch in s):
        raise PhoneError(field, "ident.phone_chars")
    digits = "".join(ch for ch in s if ch in _DIGITS)
    if not digits:
        raise PhoneError(field, "ident.required")
    if international and not digits.startswith("886"):
        raise PhoneError(field, "ident.phone_taiwan_only")
    if digits.startswith("886") and (international or len(digits) >= 11):
        digits = digits[3:]
        if not digits.startswith("0"):
            digits = "0" + digits
    return digits


def parse_landline(text: str, *, field: Field = DEFAULT_LANDLINE_FIELD) -> Landline:
    """Parse ``"02-12345678"``, ``"(02)12345678#123"``, ``"0212345678"``, ``"+886-2-…"``.

    A bare ``"#"`` (empty extension) is accepted and gives ``extension=None``.
    """
    s = _prepare(text, field, PhoneError)
    main, extension = s, None
    marker = _EXTENSION_MARKERS.search(s)
    if marker is not None:
        main, ext = s[: marker.start()], s[marker.end() :].strip()
        if ext:
            if not _is_digits(ext):
                raise PhoneError(field, "ident.extension_digits")
            if len(ext) > 8:
                raise PhoneError(field, "ident.extension_long")
            extension = ext
    digits = _phone_digits(main, field)
    if not digits.startswith("0"):
        raise PhoneError(field, "ident.area_code_missing")
    if digits.startswith("09"):
        raise PhoneError(field, "ident.area_code_mobile")
    area = next((a for a in _AREA_BY_LENGTH if digits.startswith(a)), None)
    if area is None:
        raise PhoneError(field, "ident.area_code")
    number = digits[len(area) :]
    if not (5 <= len(number) <= 8 and 9 <= len(digits) <= 10):
        raise PhoneError(field, "ident.phone_length")
    return Landline(area, number, extension)


def parse_mobile(text: str, *, field: Field = DEFAULT_MOBILE_FIELD) -> str:
    """Normalise a Taiwan mobile number to ``"0912-345-678"``."""
    s = _prepare(text, field, PhoneError)
    digits = _phone_digits(s, field)
    if not digits.startswith("09"):
        raise PhoneError(field, "ident.mobile_prefix")
    if len(digits) != 10:
        raise PhoneError(field, "ident.mobile_length")
    return f"{digits[:4]}-{digits[4:7]}-{digits[7:]}"


# --------------------------------------------------------------------------- e-mail

_LOCAL_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}")
_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_TLD_RE = re.compile(r"[A-Za-z]{2,63}")


def parse_email(text: str, *, field: Field = DEFAULT_EMAIL_FIELD) -> str:
    """Pragmatic e-mail validation; returns the address with the domain lower-cased."""
    s = _prepare(text, field, EmailError)
    if any(ch.isspace() for ch in s):
        raise EmailError(field, "ident.email_spaces")
    if s.count("@") != 1:
        raise EmailError(field, "ident.email_format")
    if len(s) > 254:
        raise EmailError(field, "ident.email_long")
    local, domain = s.split("@")
    if not local or not domain:
        raise EmailError(field, "ident.email_format")
    if len(local) > 64:
        raise EmailError(field, "ident.email_local_long")
    if (
        not _LOCAL_RE.fullmatch(local)
        or local.startswith(".")
        or local.endswith(".")
        or ".." in local
    ):
        raise EmailError(field, "ident.email_format")
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL_RE.fullmatch(label) for label in labels):
        raise EmailError(field, "ident.email_format")
    if not _TLD_RE.fullmatch(labels[-1]):
        raise EmailError(field, "ident.email_format")
    return f"{local}@{domain.lower()}"
