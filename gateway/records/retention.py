"""Retention: how long an activation's recordings and personal data are kept, and what is due.

UK Surveillance Camera Code principles 6 and 7 and the ICO's CCTV guidance: keep evidence only as
long as needed, then delete it, and be able to show what was deleted and why.

Rules, applied in this order:

1. An activation under a *hold* (placed by an auditor) is kept, however old.
2. An activation still ``in-progress`` is kept (the call may still be recording).
3. A *classified* activation is kept ``by_classification[classification]`` days
   (default: genuine 365, every other classification 31).
4. An *unclassified* activation is kept ``by_outcome[outcome]`` days when its outcome is listed,
   else ``unclassified_days`` (default 31).

Days count from the activation's start.  What is deleted when the period ends: the recording
files (their rows stay, with ``deleted_at``, so the file's hash remains as evidence of what
existed) and the activation's personal data (location, camera URL, operator note).  The rest of
the activation row stays: it is the statistics councils report.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType

#: The activation fields that are personal data and are cleared when retention ends.
PersonalData: tuple[str, ...] = ("location", "camera_url", "note")

_DEFAULT_BY_CLASSIFICATION = MappingProxyType({
    "genuine": 365,
    "false": 31,
    "prank": 31,
    "accidental": 31,
    "silent": 31,
    "test": 31,
    "fault": 31,
})


@dataclass(frozen=True)
class RetentionPolicy:
    """Retention periods in days (see the module docstring for the order they apply in)."""

    by_classification: Mapping[str, int] = field(default_factory=lambda: _DEFAULT_BY_CLASSIFICATION)
    """Days per classification; a classification not listed gets ``unclassified_days``."""
    by_outcome: Mapping[str, int] = field(default_factory=dict)
    """Days per outcome for activations nobody classified (e.g. ``{"answered": 90}``)."""
    unclassified_days: int = 31
    """Days for an unclassified activation whose outcome is not in ``by_outcome``."""

    def __post_init__(self) -> None:
        for name, days in (*self.by_classification.items(), *self.by_outcome.items(),
                           ("unclassified_days", self.unclassified_days)):
            if not isinstance(days, int) or days < 1:
                raise ValueError(f"retention for {name} must be a whole number of days >= 1 (got {days!r})")

    def days_for(self, classification: str | None, outcome: str) -> tuple[int, str]:
        """The retention period in days and the rule that gave it, e.g. ``(31, "classified prank")``."""
        if classification is not None:
            return self.by_classification.get(classification, self.unclassified_days), f"classified {classification}"
        if outcome in self.by_outcome:
            return self.by_outcome[outcome], f"unclassified, {outcome}"
        return self.unclassified_days, "unclassified"

    @property
    def shortest_days(self) -> int:
        """The shortest period any rule gives (nothing younger than this can be due)."""
        return min((*self.by_classification.values(), *self.by_outcome.values(), self.unclassified_days))


DEFAULT_RETENTION = RetentionPolicy()


def retention_until(started_at: datetime, classification: str | None, outcome: str, hold: bool,
                    policy: RetentionPolicy = DEFAULT_RETENTION) -> datetime | None:
    """When an activation's recordings and personal data become due for deletion; None = kept."""
    if hold or outcome == "in-progress":
        return None
    days, _ = policy.days_for(classification, outcome)
    return started_at + timedelta(days=days)


@dataclass(frozen=True, slots=True)
class RetentionCandidate:
    """What the decision needs to know about one activation that still holds personal data."""

    activation_id: str
    started_at: datetime
    outcome: str
    classification: str | None
    hold: bool


@dataclass(frozen=True, slots=True)
class RetentionDecision:
    """An activation whose recordings and personal data must now be deleted, and why."""

    activation_id: str
    due_at: datetime
    reason: str
    """e.g. ``"classified prank: 31 days, due 2026-12-02T12:00:00+00:00"``."""


def decide_retention(candidates: Iterable[RetentionCandidate], now: datetime,
                     policy: RetentionPolicy = DEFAULT_RETENTION) -> list[RetentionDecision]:
    """The candidates due for deletion at ``now`` (same order as given)."""
    due = []
    for candidate in candidates:
        until = retention_until(candidate.started_at, candidate.classification, candidate.outcome,
                                candidate.hold, policy)
        if until is None or until > now:
            continue
        days, rule = policy.days_for(candidate.classification, candidate.outcome)
        due.append(RetentionDecision(candidate.activation_id, until,
                                     f"{rule}: {days} days, due {until.isoformat()}"))
    return due
