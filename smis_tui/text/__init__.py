"""Every user-visible string, in zh-TW (default) and English.

Code refers to strings by key; :func:`t` renders one in a language. Texts quoted
from the source manual are kept verbatim in zh-TW. Each screen family keeps its
strings in its own module here (``ZH_TW`` and ``EN`` dicts), merged below.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from types import ModuleType

from smis_tui.core.clock import taiwan_date
from smis_tui.text import (
    access_review,
    control,
    en,
    form,
    identifiers,
    login,
    profile,
    review,
    trail,
    unit_search,
    zh_TW,
)

DEFAULT_LANGUAGE = "zh_TW"
LANGUAGES = ("zh_TW", "en")
_AREAS: tuple[ModuleType, ...] = (
    login,
    unit_search,
    form,
    review,
    profile,
    control,
    trail,
    identifiers,
    access_review,
)


def _merge(base: dict[str, str], attribute: str) -> dict[str, str]:
    merged = dict(base)
    for area in _AREAS:
        for key, value in getattr(area, attribute).items():
            if key in merged:
                raise KeyError(f"text key {key!r} defined twice")
            merged[key] = value
    return merged


CATALOGS: dict[str, dict[str, str]] = {
    "zh_TW": _merge(zh_TW.TEXT, "ZH_TW"),
    "en": _merge(en.TEXT, "EN"),
}


def t(key: str, language: str = DEFAULT_LANGUAGE, /, **params: object) -> str:
    catalog = CATALOGS.get(language, CATALOGS[DEFAULT_LANGUAGE])
    template = catalog.get(key) or CATALOGS[DEFAULT_LANGUAGE][key]
    return template.format(**params) if params else template


def describe_key(description: str, language: str = DEFAULT_LANGUAGE) -> str:
    """A key binding's description: bindings carry a text key, shown in ``language``;
    a description that is no key is shown as it is."""
    if description in CATALOGS[DEFAULT_LANGUAGE]:
        return t(description, language)
    return description


class Phrase:
    """A text by key and parameters, rendered in either language when shown.

    Parameters that are Phrases themselves (a field label inside a message) are
    rendered in the same language. ``str()`` is the zh-TW text.
    """

    __slots__ = ("key", "params")

    def __init__(self, key: str, /, **params: object) -> None:
        self.key = key
        self.params = params

    def render(self, language: str = DEFAULT_LANGUAGE) -> str:
        params = {
            name: value.render(language) if isinstance(value, Phrase) else value
            for name, value in self.params.items()
        }
        return t(self.key, language, **params)

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        return f"Phrase({self.key!r}, **{self.params!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Phrase):
            return (self.key, self.params) == (other.key, other.params)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.key)

    def __reduce__(self) -> tuple[object, ...]:
        return (_phrase, (self.key, self.params))


def _phrase(key: str, params: dict[str, object]) -> Phrase:
    return Phrase(key, **params)


class Verbatim(Phrase):
    """A text that has no key (from outside the catalogue): the same in every
    language."""

    __slots__ = ()

    def __init__(self, text: str) -> None:
        super().__init__("", text=text)

    def render(self, language: str = DEFAULT_LANGUAGE) -> str:
        return str(self.params["text"])

    def __reduce__(self) -> tuple[object, ...]:
        return (Verbatim, (self.params["text"],))


class Joined(Phrase):
    """Several phrases shown as one, with the language's separator (``error.separator``)."""

    __slots__ = ("parts",)

    def __init__(self, parts: Iterable[Phrase | str], separator: str = "error.separator") -> None:
        super().__init__(separator)
        self.parts = tuple(as_phrase(p) for p in parts)

    def render(self, language: str = DEFAULT_LANGUAGE) -> str:
        return t(self.key, language).join(p.render(language) for p in self.parts)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Joined):
            return (self.key, self.parts) == (other.key, other.parts)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.parts)

    def __reduce__(self) -> tuple[object, ...]:
        return (Joined, (self.parts, self.key))


class Named(Phrase):
    """A name from the data that has one per language (a category's ``name`` and
    ``name_en``): not a catalogue text, but shown in the screen's language."""

    __slots__ = ()

    def __init__(self, zh_tw: str, en: str) -> None:
        super().__init__("", zh_TW=zh_tw, en=en or zh_tw)

    def render(self, language: str = DEFAULT_LANGUAGE) -> str:
        return str(self.params.get(language) or self.params[DEFAULT_LANGUAGE])

    def __reduce__(self) -> tuple[object, ...]:
        return (Named, (self.params["zh_TW"], self.params["en"]))


def as_phrase(value: Phrase | str) -> Phrase:
    """A Phrase as it is; a plain string (already rendered, zh-TW) as a Verbatim."""
    return value if isinstance(value, Phrase) else Verbatim(value)


# The card layer (card.errors) may import nothing from smis_tui: its errors carry a
# ``key`` and ``params`` and a zh-TW message of their own; they are shown from here.
_CA_NAMES = {CATALOGS["zh_TW"][key]: key for key in ("card.ca.hpc", "card.ca.moica", "card.ca.piv")}


#: Names a CertificateProblem may quote, and the message variant each one asks for.
_CERTIFICATE_NAMES = {
    "ca": None,
    "revoked_ca": "revoked_ca",
    "crl_dir": "crl_dir_missing",
    "undated_ca": "crl_undated",
}


def _card_text(error: BaseException, language: str) -> str | None:
    key = getattr(error, "key", None)
    params = getattr(error, "params", None)
    if not isinstance(key, str) or not key.startswith("card.") or not isinstance(params, dict):
        return None
    if language == DEFAULT_LANGUAGE or key not in CATALOGS.get(language, {}):
        return str(error)  # the card layer's own zh-TW message, with its details
    if key == "card.certificate":
        reason = params.get("reason")
        when = params.get("when")
        names = {k: str(params[k]) for k in _CERTIFICATE_NAMES if k in params}
        # A name that changes what the message is about has a message of its own.
        variant = next((_CERTIFICATE_NAMES[k] for k in names if _CERTIFICATE_NAMES[k]), reason)
        specific = f"card.certificate.{variant}"
        template = CATALOGS[language].get(specific)
        if template is not None and all(
            f"{{{k}}}" not in template or k in names for k in _CERTIFICATE_NAMES
        ):
            if "{date}" not in template:
                return t(specific, language, **names)
            if isinstance(when, dt.datetime):
                date = taiwan_date(when) if when.tzinfo else when.date()
                return t(specific, language, date=date.isoformat(), **names)
        return t(key, language)
    if key == "card.pin_blocked":
        unblock_at = str(params.get("unblock_at", ""))
        ca = _CA_NAMES.get(unblock_at)
        return t(key, language, unblock_at=t(ca, language) if ca else unblock_at)
    if key in ("card.unresponsive", "card.proof_timeout"):
        seconds = params.get("seconds", 0)
        return t(key, language, seconds=f"{seconds:g}" if isinstance(seconds, float) else seconds)
    template = CATALOGS[language][key]
    try:
        return template.format(**params)
    except (KeyError, IndexError, ValueError):
        return t(key, language)


def render_error(error: BaseException, language: str = DEFAULT_LANGUAGE) -> str:
    """What a screen shows for an error: a ServiceError / IdentifierError by its key
    (``render``), a card error by its ``key`` and ``params``, anything else as
    ``str()``."""
    render = getattr(error, "render", None)
    if callable(render):
        return str(render(language))
    card = _card_text(error, language)
    if card is not None:
        return card
    return str(error)
