"""Domain errors. Each carries a text key and parameters so any screen can show it in
the user's language; ``str()`` gives the zh-TW text."""

from __future__ import annotations

from collections.abc import Mapping

from smis_tui.core.reasons import REASON_MAX, reason_problem
from smis_tui.text import Joined, Phrase, as_phrase, t


class ServiceError(Exception):
    def __init__(self, key: str, **params: object) -> None:
        self.key = key
        self.params = params
        super().__init__(t(key, "zh_TW", **params))

    def render(self, language: str = "zh_TW") -> str:
        return t(self.key, language, **self.params)


class ValidationFailed(ServiceError):
    """One message per field; the screen shows each beside its field.

    Each message is a :class:`~smis_tui.text.Phrase` (a text key and its parameters),
    so :meth:`message` and :meth:`render` give it in either language. A plain string
    is accepted too (already rendered: shown as it is in every language).
    ``errors`` maps each field to its zh-TW text, as ``str()`` joins them.
    """

    def __init__(self, errors: Mapping[str, Phrase | str]) -> None:
        self.messages: dict[str, Phrase] = {
            field: as_phrase(message) for field, message in errors.items()
        }
        self.errors = {field: message.render() for field, message in self.messages.items()}
        Exception.__init__(self, "；".join(self.errors.values()))
        self.key = ""
        self.params = {}

    def message(self, field: str, language: str = "zh_TW") -> str | None:
        """The message of one field in ``language``, or None when it has none."""
        phrase = self.messages.get(field)
        return phrase.render(language) if phrase is not None else None

    def rendered(self, language: str = "zh_TW") -> dict[str, str]:
        """Field → message, in ``language``."""
        return {field: phrase.render(language) for field, phrase in self.messages.items()}

    def __reduce__(self) -> tuple[object, ...]:
        return (ValidationFailed, (self.messages,))

    def render(self, language: str = "zh_TW") -> str:
        return Joined(self.messages.values()).render(language)


class ConflictError(ServiceError):
    """Someone else changed the same record first; nothing was written."""


class NotAllowed(ServiceError):
    pass


class NotFound(ServiceError):
    pass


def clean_reason(reason: str) -> str:
    """``reason`` stripped, or :class:`ValidationFailed` on its ``reason`` field when the
    one reason rule (:func:`smis_tui.core.reasons.reason_problem`) refuses it."""
    problem = reason_problem(reason)
    if problem is not None:
        raise ValidationFailed({"reason": Phrase(problem.value, limit=REASON_MAX)})
    return reason.strip()
