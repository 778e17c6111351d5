"""Paging, the same for every paged list: the review queue, account control, the
audit trail and the unit directory."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeVar

from peewee import ModelSelect

Query = TypeVar("Query", bound=ModelSelect)


@dataclass(frozen=True, kw_only=True)
class Paged:
    """Where one page of a list stands: its number (from 1), how many pages and rows
    the whole list has, and how many rows a page holds."""

    page: int
    pages: int
    total: int
    page_size: int


def page_bounds(page: int, total: int, page_size: int) -> tuple[int, int]:
    """``page`` clamped to the pages ``total`` rows fill (always at least one page,
    so an emptied last page shows the one before), and how many pages there are."""
    pages = max(1, math.ceil(total / page_size))
    return min(max(page, 1), pages), pages


def page_offset(page: int, page_size: int) -> int:
    """How many rows come before ``page``."""
    return (page - 1) * page_size


def page_of(query: Query, page: int, page_size: int) -> Query:
    """The rows of ``page`` of ``query`` (a page already clamped by :func:`page_bounds`)."""
    return query.limit(page_size).offset(page_offset(page, page_size))
