"""Retention decisions with hand-made dates (no clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.records import (
    DEFAULT_RETENTION,
    RetentionCandidate,
    RetentionPolicy,
    decide_retention,
    retention_until,
)

START = datetime(2026, 1, 10, 23, 59, tzinfo=UTC)


def cand(aid: str, classification: str | None = None, outcome: str = "answered", hold: bool = False,
         started: datetime = START) -> RetentionCandidate:
    return RetentionCandidate(aid, started, outcome, classification, hold)


@pytest.mark.parametrize("classification, days", [
    ("false", 31), ("prank", 31), ("accidental", 31), ("test", 31), ("silent", 31), ("fault", 31),
    ("genuine", 365), (None, 31),
])
def test_default_periods(classification: str | None, days: int) -> None:
    assert retention_until(START, classification, "answered", False) == START + timedelta(days=days)


def test_hold_and_in_progress_are_kept_forever() -> None:
    assert retention_until(START, "prank", "answered", True) is None
    assert retention_until(START, None, "in-progress", False) is None
    far = START + timedelta(days=100 * 365)
    assert decide_retention([cand("h", "prank", hold=True), cand("p", outcome="in-progress")], far) == []


def test_due_exactly_at_the_boundary_not_a_second_before() -> None:
    due = START + timedelta(days=31)
    assert decide_retention([cand("a", "prank")], due - timedelta(seconds=1)) == []
    (decision,) = decide_retention([cand("a", "prank")], due)
    assert decision.activation_id == "a" and decision.due_at == due
    assert decision.reason == "classified prank: 31 days, due 2026-02-10T23:59:00+00:00"


def test_outcome_rules_apply_only_to_unclassified() -> None:
    policy = RetentionPolicy(by_outcome={"unanswered": 14, "answered": 90}, unclassified_days=60)
    now = START + timedelta(days=20)
    due = decide_retention([cand("u", outcome="unanswered"), cand("a"), cand("f", outcome="failed"),
                            cand("c", "accidental", outcome="unanswered")], now, policy)
    assert [(d.activation_id, d.reason.split(":")[0]) for d in due] == [("u", "unclassified, unanswered")]
    later = decide_retention([cand("f", outcome="failed"), cand("a")], START + timedelta(days=60), policy)
    assert [d.activation_id for d in later] == ["f"]
    assert policy.shortest_days == 14 and DEFAULT_RETENTION.shortest_days == 31


def test_genuine_kept_a_year_across_a_leap_day() -> None:
    start = datetime(2027, 3, 1, tzinfo=UTC)
    assert retention_until(start, "genuine", "answered", False) == datetime(2028, 2, 29, tzinfo=UTC)


@pytest.mark.parametrize("kwargs", [{"unclassified_days": 0}, {"by_classification": {"genuine": -1}},
                                    {"by_outcome": {"answered": 1.5}}])
def test_policy_refuses_nonsense(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="whole number of days"):
        RetentionPolicy(**kwargs)  # type: ignore[arg-type]
