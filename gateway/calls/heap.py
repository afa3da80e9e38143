"""When to freeze the heap and when to collect it in full (pure; the service executes the verdicts).

Every call leaves a few hundred container objects alive for its whole life plus ``LINGER`` seconds
(the Call, its messages, dialogs, transactions, media legs).  CPython's cyclic collector walks every
one of them again in each full (generation 2) collection; at a couple of hundred calls per second
that is a million objects and a pause of half a second or more, long enough for SIPp and real
intercoms to retransmit and for the gateway to fall behind.  Its young-generation collections walk
them too, while they are alive, for nothing (4 % of the event loop's time at 300 calls/s, in pauses of
10-30 ms).  A call leaves no reference cycles (tests/store/test_records.py and the README say how that
is checked), so its garbage is freed by reference counting alone, and the gateway therefore:

* runs with the automatic collections off (``gc.disable()``, in ``gateway serve``);
* freezes the heap (``gc.freeze()``) every ``freeze_interval`` seconds, so that a collection started by
  anything else walks only what is younger; frozen objects are still freed by reference counting;
* collects in full (``gc.unfreeze(); gc.collect(); gc.freeze()``) at the first quiet moment (no new
  call for ``quiet_after`` seconds) once ``quiet_interval`` seconds have passed since the last full collection and at least
  ``min_growth`` objects were frozen since, which reclaims reference cycles that became garbage while
  frozen (an idle gateway does not collect at all);
* collects in full regardless of load once ``max_frozen`` objects are frozen beyond what the calls it
  holds account for (``per_call`` for each call up or lingering), so memory stays bounded when the
  gateway is never quiet.  The allowance matters: the calls of a busy gateway are live data, not
  garbage (the per-call objects form no reference cycles), and a full collection that walks a
  million of them to free nothing is a pause of most of a second, during which SIP messages queue,
  the socket buffer overflows and every phone retransmits.

"Objects frozen" is whatever growth measure the caller's ``frozen()`` returns.  The service measures
resident memory (KiB): counting the frozen objects themselves (``gc.get_freeze_count()``) walks all of
them, tens of milliseconds with a million frozen, and that would be a stall of the loop on every check.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass


class HeapAction(enum.Enum):
    """What the service does to the collector now."""

    NOTHING = "nothing"
    FREEZE = "freeze"
    COLLECT = "collect"


@dataclass
class HeapPolicy:
    """Decides, from the time, the calls in progress and the frozen count, what the collector does.

    Counting the frozen objects walks them all, so ``frozen`` is a callable asked only when a
    full collection could be due: at a quiet moment, or every ``check_interval`` seconds under load.
    """

    #: Seconds between freezes (the longest an object stays visible to the automatic collections).
    freeze_interval: float = 0.5
    #: Seconds after a full collection before a quiet moment triggers the next one.
    quiet_interval: float = 10.0
    #: Objects frozen since the last full collection before a quiet moment is worth one.
    min_growth: int = 100_000
    #: Frozen objects (beyond the live heap of the last full collection) that force a full collection
    #: even while calls are in progress.
    max_frozen: int = 1_500_000
    #: Growth allowed for each call held (up or lingering) on top of ``max_frozen``.
    per_call: int = 0
    #: Seconds between checks of ``max_frozen`` under load.
    check_interval: float = 5.0
    #: When the last freeze, full collection and load check ran (``now`` units; None: never).
    last_freeze: float | None = None
    last_collect: float | None = None
    last_check: float | None = None
    #: Objects still frozen right after the last full collection (the live heap then).
    baseline: int = 0

    #: Seconds without a new call before the gateway counts as quiet.
    quiet_after: float = 2.0
    #: The ``calls_started`` count last seen, and when it last changed.
    seen_started: int = -1
    last_busy: float = 0.0

    def decide(self, now: float, calls_started: int, frozen: Callable[[], int],
               in_progress: Callable[[], int] = lambda: 0, held: Callable[[], int] = lambda: 0) -> HeapAction:
        """The action due at ``now``; the caller runs it (then :meth:`collected` after a COLLECT).

        ``calls_started`` counts calls ever started, ``in_progress()`` the calls up now: quiet means no
        new call for ``quiet_after`` seconds (short calls come and go between two looks) *and* no call in
        progress (a full collection pauses the loop, and with it the audio of every call).
        ``held()`` counts the calls whose objects are still alive (up or lingering for late messages).
        """
        if calls_started != self.seen_started:
            self.seen_started = calls_started
            self.last_busy = now
        quiet = now - self.last_busy >= self.quiet_after and in_progress() == 0
        quiet_due = quiet and (self.last_collect is None or now - self.last_collect >= self.quiet_interval)
        check_due = self.last_check is None or now - self.last_check >= self.check_interval
        if quiet_due or check_due:
            self.last_check = now
            growth = frozen() - self.baseline
            bound = self.max_frozen + (self.per_call * held() if self.per_call else 0)
            if growth > bound or (quiet_due and growth >= self.min_growth):
                self.last_collect = self.last_freeze = now
                return HeapAction.COLLECT
            if quiet_due:
                self.last_collect = now  # nothing worth collecting: look again after another interval
        if self.last_freeze is None or now - self.last_freeze >= self.freeze_interval:
            self.last_freeze = now
            return HeapAction.FREEZE
        return HeapAction.NOTHING

    def collected(self, frozen: int) -> None:
        """A full collection ran and ``frozen`` objects (the live heap) are frozen again."""
        self.baseline = frozen
