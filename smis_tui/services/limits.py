"""Flood limits (docs/architecture.md, "Identity at each step"): how often one kiosk
session may send applications or ask whether an ID has one under review. A session is
this process — one kiosk seat, or one SSH session — so the counts live in memory; the
limit per card counts the card's account's applications in the audit trail instead,
which every process shares."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable


class SlidingWindow:
    """At most ``limit`` events in any ``window_s`` seconds. Thread-safe."""

    def __init__(
        self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._events: deque[float] = deque()
        self._lock = threading.Lock()

    def _prune(self, now: float) -> None:
        while self._events and self._events[0] <= now - self.window_s:
            self._events.popleft()

    def take(self) -> bool:
        """Count one event if the window has room; False (nothing counted) if not."""
        with self._lock:
            now = self.clock()
            self._prune(now)
            if len(self._events) >= self.limit:
                return False
            self._events.append(now)
            return True

    def has_room(self) -> bool:
        with self._lock:
            self._prune(self.clock())
            return len(self._events) < self.limit

    def minutes_to_wait(self) -> int:
        """Whole minutes until the window has room again (at least 1)."""
        with self._lock:
            now = self.clock()
            self._prune(now)
            if len(self._events) < self.limit:
                return 1
            return max(1, math.ceil((self._events[0] + self.window_s - now) / 60))
