"""Triage vocabulary: activation outcomes, operator classifications and their DTMF digits.

An activation's *outcome* is what the gateway saw (answered, unanswered...); its *classification*
is what a person decided afterwards (genuine, prank...).  A silent call is never dropped or
classified automatically: only an operator (or the API) classifies.
"""

from __future__ import annotations

#: Outcomes a talk-down's row ends with (the gateway calling a help point to play a warning).
TALKDOWN_OUTCOMES: tuple[str, ...] = ("talkdown-played", "talkdown-unanswered", "talkdown-failed",
                                      "talkdown-interrupted")

#: Outcomes an activation row can hold.  ``in-progress`` while the call runs; ``interrupted`` when
#: the gateway stopped (crash, kill -9) before the call ended and the next start found it open.
OUTCOMES: tuple[str, ...] = ("in-progress", "answered", "unanswered", "abandoned", "failed", "interrupted",
                             *TALKDOWN_OUTCOMES)

#: Classifications an operator may give an activation.
CLASSIFICATIONS: tuple[str, ...] = ("genuine", "false", "prank", "accidental", "silent", "test", "fault")

#: The filter value meaning "no classification yet" (``GET /api/activations?classification=unclassified``).
UNCLASSIFIED = "unclassified"

#: Digits an operator presses after ``#`` on the softphone to classify the call (``#3``: accidental;
#: RFC 4733 events; documented in the README and docs/api.md).  ``0``, ``8`` and ``9`` are unused so a
#: stray press does nothing.  The call layer reads this table (gateway.calls.call.CLASSIFY_DIGITS).
DTMF_CLASSIFICATION: dict[str, str] = {
    "1": "genuine",
    "2": "false",
    "3": "accidental",
    "4": "silent",
    "5": "test",
    "6": "fault",
    "7": "prank",
}


def parse_classification(value: object) -> str:
    """``value`` as a classification; ``ValueError`` naming the allowed values otherwise."""
    if isinstance(value, str) and value in CLASSIFICATIONS:
        return value
    raise ValueError(f"must be one of {', '.join(CLASSIFICATIONS)} (got {value!r})")


def classification_for_digit(digit: str) -> str | None:
    """The classification an operator's DTMF digit means, or None for any other digit."""
    return DTMF_CLASSIFICATION.get(digit)
