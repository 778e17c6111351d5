"""Domain errors. Each carries a text key and parameters so any screen can show it in
the user's language; ``str()`` gives the zh-TW text."""

from __future__ import annotations

from smis_tui.text import t


class ServiceError(Exception):
    def __init__(self, key: str, **params: object) -> None:
        self.key = key
        self.params = params
        super().__init__(t(key, "zh_TW", **params))

    def render(self, language: str = "zh_TW") -> str:
        return t(self.key, language, **self.params)


class ValidationFailed(ServiceError):
    """One message per field; the screen shows each beside its field."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = dict(errors)
        Exception.__init__(self, "；".join(self.errors.values()))
        self.key = ""
        self.params = {}

    def render(self, language: str = "zh_TW") -> str:
        return str(self)


class ConflictError(ServiceError):
    """Someone else changed the same record first; nothing was written."""


class NotAllowed(ServiceError):
    pass


class NotFound(ServiceError):
    pass
