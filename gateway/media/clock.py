"""The 20 ms media clock schedule (pure).

Tick ``k`` is due at ``start + k * interval``: an absolute schedule, so a late
wake-up never shifts later ticks (aiortc ``mediastreams.py`` pacing).  When
the shell wakes late it produces at most ``max_burst`` frames at once (one
frame plus one catch-up frame) and catches up over the following ticks; ticks
more than ``max_backlog`` behind are skipped and counted, never burst out.
"""

from __future__ import annotations

import math


class TickSchedule:
    """Which ticks are due at ``now``; the shell sleeps until :meth:`next_deadline`."""

    def __init__(self, start: float, interval: float = 0.02, *, max_burst: int = 2, max_backlog: int = 10) -> None:
        self.start = start
        self.interval = interval
        self.max_burst = max_burst
        self.max_backlog = max_backlog
        #: Ticks produced or skipped so far (the index of the next tick to produce).
        self.produced = 0
        #: Ticks skipped because the shell was far behind.
        self.skipped = 0
        self._due = 0

    def due(self, now: float) -> int:
        """Number of ticks whose time is <= ``now``."""
        return max(0, math.floor((now - self.start) / self.interval + 1e-9) + 1)

    def poll(self, now: float) -> tuple[int, int]:
        """``(frames, skipped)`` to produce at ``now``: frames <= ``max_burst``."""
        self._due = self.due(now)
        backlog = self._due - self.produced
        if backlog <= 0:
            return 0, 0
        skipped = max(0, backlog - self.max_backlog)
        frames = min(backlog - skipped, self.max_burst)
        self.produced += skipped + frames
        self.skipped += skipped
        return frames, skipped

    def next_deadline(self) -> float:
        """When to wake next: the next tick, or the next grid point if still catching up."""
        return self.start + max(self.produced, self._due) * self.interval

    def tick_time(self, k: int) -> float:
        """The scheduled time of tick ``k``."""
        return self.start + k * self.interval
