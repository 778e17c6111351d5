"""Taiwan time. Timestamps are stored as naive UTC; people read days in Taiwan time.

Taiwan has kept UTC+8 without daylight saving since 1980, so a fixed offset is exact
for every date the system holds.
"""

from __future__ import annotations

import datetime as dt

TAIWAN = dt.timezone(dt.timedelta(hours=8), "Asia/Taipei")
TAIWAN_OFFSET = dt.timedelta(hours=8)


def utc_now() -> dt.datetime:
    """Now, aware UTC. What the screens read "today" from, looked up at each call so
    that a test can fix the day."""
    return dt.datetime.now(dt.UTC)


def taiwan_today() -> dt.date:
    """Today in Taiwan."""
    return taiwan_date(utc_now())


def to_taiwan(when: dt.datetime) -> dt.datetime:
    """``when`` as naive Taiwan wall-clock time; a naive ``when`` is taken as UTC."""
    if when.tzinfo is None:
        return when + TAIWAN_OFFSET
    return when.astimezone(TAIWAN).replace(tzinfo=None)


def taiwan_date(when: dt.datetime) -> dt.date:
    """The day ``when`` falls on in Taiwan; a naive ``when`` is taken as UTC."""
    return to_taiwan(when).date()


def taiwan_day_start(day: dt.date) -> dt.datetime:
    """00:00 Taiwan time of ``day``, as naive UTC (how rows are stored)."""
    return dt.datetime.combine(day, dt.time.min) - TAIWAN_OFFSET
