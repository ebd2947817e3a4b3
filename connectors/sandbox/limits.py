"""Rate-limit windows: calls per sliding window, calls in flight, calls per day."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterable


class Window:
    """A sliding window of ``limit`` calls per ``span`` seconds (callers hold the emulator's lock)."""

    def __init__(self, limit: int | None, span: float = 60.0) -> None:
        self.limit = limit
        self.span = float(span)
        self.times: deque[float] = deque()

    def prune(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        while self.times and now - self.times[0] >= self.span:
            self.times.popleft()

    def full(self, now: float | None = None) -> bool:
        """Whether one more call would exceed the limit (prunes first; ``limit=None`` never is)."""
        self.prune(now)
        return self.limit is not None and len(self.times) >= self.limit

    def retry_after(self, now: float | None = None) -> float:
        """Seconds until the oldest call leaves the window."""
        now = time.monotonic() if now is None else now
        return self.span - (now - self.times[0]) if self.times else 0.0

    def retry_after_seconds(self, now: float | None = None) -> int:
        """:meth:`retry_after` as a ``Retry-After`` value (whole seconds, at least 1)."""
        return max(1, math.ceil(self.retry_after(now)))

    def add(self, now: float | None = None) -> None:
        self.times.append(time.monotonic() if now is None else now)

    def admit(self, now: float | None = None) -> bool:
        """Count the call unless the window is full; ``False`` = over the limit (not counted)."""
        now = time.monotonic() if now is None else now
        if self.full(now):
            return False
        self.add(now)
        return True

    def remaining(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - len(self.times))

    def __len__(self) -> int:
        return len(self.times)

    def __bool__(self) -> bool:
        return bool(self.times)


class Concurrency:
    """Calls in flight against ``limit``."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.inflight = 0

    def full(self) -> bool:
        return self.limit is not None and self.inflight >= self.limit

    def enter(self) -> None:
        self.inflight += 1

    def leave(self) -> None:
        self.inflight -= 1


def day_window(limit: int | None) -> Window:
    """A 24-hour sliding window (daily call limits)."""
    return Window(limit, 86400.0)


def first_full(windows: Iterable[tuple[str, Window]], now: float | None = None) -> tuple[str, float] | None:
    """Prune every window, then ``(name, retry_after seconds)`` of the first full one; ``None``: room in all.

    For systems that check several limits in a fixed order and name the one that was hit.
    """
    now = time.monotonic() if now is None else now
    named = list(windows)
    for _, window in named:
        window.prune(now)
    for name, window in named:
        if window.full(now):
            return name, window.retry_after(now)
    return None


def add_all(windows: Iterable[Window], now: float | None = None) -> None:
    """Count one call in each of ``windows`` (after :func:`first_full` found room in all)."""
    now = time.monotonic() if now is None else now
    for window in windows:
        window.add(now)
