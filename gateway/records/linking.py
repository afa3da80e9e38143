"""Repeat presses: a press within ``window`` seconds of the previous press of the same help point
is linked to the *first* press of that chain.

Rules:

* The window slides: presses at 0 s, 100 s and 200 s with a 120 s window form one chain (each is
  within 120 s of the one before), and the second and third both link to the first.
* A press more than ``window`` seconds after the previous one starts a new chain (``None``).
* Presses of different help points never link.
* Times are wall-clock epoch seconds (what ``CallSummary.started_at`` holds); a press "before" the
  previous one (clock step backwards) is treated as simultaneous, so it links.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Press:
    """One activation as the linker remembers it."""

    activation_id: str
    started_at: float
    linked_to: str | None = None

    @property
    def chain_head(self) -> str:
        """The first activation of this press's chain."""
        return self.linked_to or self.activation_id


def link_repeat(previous: Press | None, started_at: float, window: float) -> str | None:
    """The activation a press at ``started_at`` links to, given the help point's ``previous`` press."""
    if previous is None or window <= 0:
        return None
    if started_at - previous.started_at <= window:
        return previous.chain_head
    return None


class RepeatLinker:
    """The last press of each help point, and the link each new press gets.  Pure state."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._last: dict[str, Press] = {}

    def seed(self, help_point: str, press: Press) -> None:
        """Remember a press read back from the database (at start), if newer than what is known."""
        known = self._last.get(help_point)
        if known is None or press.started_at >= known.started_at:
            self._last[help_point] = press

    def press(self, help_point: str, activation_id: str, started_at: float) -> str | None:
        """Record a new press; return the activation id it links to, or None."""
        linked_to = link_repeat(self._last.get(help_point), started_at, self.window)
        self._last[help_point] = Press(activation_id, started_at, linked_to)
        return linked_to
