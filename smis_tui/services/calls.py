"""One way to run a service call off the UI thread: its own connection scope, and
what it raised sorted into what a person is told.

Screens call services through :meth:`smis_tui.screens.base.KioskScreen.call_service`,
which runs :func:`run_call` in a thread worker; nothing above the services layer
touches the database connection (docs/architecture.md, "Layers").
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from smis_tui.services.errors import ServiceError

T = TypeVar("T")
log = logging.getLogger("smis_tui.services")


@dataclass(frozen=True)
class CallResult(Generic[T]):
    """The value of a call, or the error to show for it (never both)."""

    value: T | None = None
    error: Exception | None = None
    unexpected: bool = False
    """The error is a bug or an unknown failure, logged with its traceback; the person
    is told only that something went wrong."""


def expected_errors() -> tuple[type[Exception], ...]:
    """What a call may raise that is the person's business: a domain error, a card
    error, the database being unreachable or read-only."""
    from card.errors import CardError
    from models.db import DatabaseUnavailable

    return (ServiceError, CardError, DatabaseUnavailable)


def run_call(call: Callable[[], T]) -> CallResult[T]:
    """``call()`` inside a worker connection scope; never raises an Exception."""
    from models.db import database_failure, worker_connection

    try:
        with worker_connection():
            return CallResult(call())
    except expected_errors() as error:
        return CallResult(error=error)
    except Exception as error:
        failure = database_failure(error)
        if failure is not None:
            return CallResult(error=failure)
        log.exception(
            "a service call failed unexpectedly: %s", getattr(call, "__qualname__", repr(call))
        )
        return CallResult(error=ServiceError("error.unexpected"), unexpected=True)


def is_database_failure(error: BaseException) -> bool:
    """Is ``error`` (as :func:`run_call` reports it) the database being down, restarting
    or read-only? Then nothing was written and the same call may simply be made again."""
    from models.db import DatabaseUnavailable

    return isinstance(error, DatabaseUnavailable)
