"""Engine: one Plan per call, driven with hand-advanced time; exact deadlines, actions and timeline."""

from __future__ import annotations

import datetime
import textwrap
import zoneinfo

import pytest
from dialplan_fixtures import INVENTORY, SUTTON

from gateway.dialplan import (
    Answered,
    Bridge,
    CallerHungUp,
    CancelTargets,
    Confirmed,
    DialNumber,
    DialplanLoopError,
    DigitReceived,
    Done,
    FailedOver,
    Finished,
    LegAnswered,
    LegEnded,
    LegFailed,
    LegProgressed,
    Offered,
    Plan,
    PlayMessage,
    PlayPrompt,
    PromptFinished,
    PromptPlayed,
    RequireConfirm,
    Retried,
    RingStarted,
    RingTargets,
    RoomClosed,
    cause_for_status,
    load_dialplan,
    parse_dialplan,
    timeline_to_builtins,
    validate_dialplan,
)
from gateway.dialplan.engine import PROMPT_GUARD

NOON = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.UTC)
NIGHT = datetime.datetime(2026, 11, 22, 2, 10, tzinfo=datetime.UTC)
COUNCIL = ("council-cctv-1", "council-cctv-2")
T0 = 1000.0  # monotonic clocks do not start at zero


def ring(targets: tuple[str, ...], name: str, timeout: float, attempt: int = 1) -> RingTargets:
    return RingTargets(targets, name, "parallel", timeout, 4.0, attempt)


def sutton() -> Plan:
    return Plan(load_dialplan(SUTTON, INVENTORY), "hp-portland-square", version=7)


def custom(body: str) -> Plan:
    text = "name: t\nserves: {help_points: [hp-portland-square]}\n" + textwrap.dedent(body)
    return Plan(validate_dialplan(parse_dialplan(text), INVENTORY), "hp-portland-square")


def test_start_plays_prompt_and_rings_council_with_connect_timer() -> None:
    plan = sutton()
    assert plan.start(T0, NOON) == [PlayPrompt("connecting"), ring(COUNCIL, "council-cctv", 20.0)]
    assert plan.get_timer() == T0 + 4.0  # the fast connect timer, not the 20 s ring timer
    assert plan.handle(LegProgressed("council-cctv-1"), T0 + 0.2) == []
    assert plan.get_timer() == T0 + 4.0  # council-cctv-2 has not said anything yet
    assert plan.handle(LegProgressed("council-cctv-2"), T0 + 0.3) == []
    assert plan.get_timer() == T0 + 20.0


def test_ring_timeout_fails_over_to_police() -> None:
    plan = sutton()
    plan.start(T0, NOON)
    plan.handle(LegProgressed("council-cctv-1"), T0 + 0.2)
    plan.handle(LegProgressed("council-cctv-2"), T0 + 0.3)
    assert plan.handle_timer(T0 + 19.999) == []
    assert plan.handle_timer(T0 + 20.0) == [
        CancelTargets(COUNCIL, "timeout"),
        ring(("police-control-1",), "police-control", 30.0),
    ]
    assert plan.get_timer() == T0 + 24.0
    assert plan.timeline[-4:] == (
        LegEnded(at=T0 + 20, target="council-cctv-1", result="timeout"),
        LegEnded(at=T0 + 20, target="council-cctv-2", result="timeout"),
        FailedOver(at=T0 + 20, from_name="council-cctv", to_name="police-control", cause="timeout"),
        RingStarted(at=T0 + 20, name="police-control", targets=("police-control-1",), attempt=1),
    )


def test_connect_timeout_is_unreachable() -> None:
    plan = sutton()
    plan.start(T0, NOON)
    plan.handle(LegProgressed("council-cctv-2"), T0 + 1)
    assert plan.handle_timer(T0 + 4.0) == [CancelTargets(("council-cctv-1",), "connect-timeout")]
    assert plan.get_timer() == T0 + 20.0
    assert plan.timeline[-1] == LegEnded(at=T0 + 4, target="council-cctv-1", result="unreachable",
                                         detail="connect-timeout")


def test_confirmed_answer_bridges_and_cancels_the_other_leg() -> None:
    plan = sutton()
    plan.start(T0, NOON)
    plan.handle(LegProgressed("council-cctv-1"), T0 + 0.1)
    plan.handle(LegProgressed("council-cctv-2"), T0 + 0.1)
    assert plan.handle(LegAnswered("council-cctv-1"), T0 + 5) == [RequireConfirm("council-cctv-1", "1", 10.0)]
    assert plan.get_timer() == T0 + 15.0
    assert plan.handle(DigitReceived("council-cctv-1", "2"), T0 + 6) == []  # wrong digit
    assert plan.handle(DigitReceived("council-cctv-2", "1"), T0 + 6) == []  # not answered
    assert plan.handle(DigitReceived("council-cctv-1", "1"), T0 + 7) == [
        CancelTargets(("council-cctv-2",), "answered-elsewhere"),
        Bridge("council-cctv-1"),
        Done("answered", "council-cctv-1"),
    ]
    assert plan.done and plan.outcome == Done("answered", "council-cctv-1") and plan.get_timer() is None
    assert plan.handle(LegFailed("council-cctv-2", "busy"), T0 + 8) == []  # late: ignored
    assert plan.timeline[-4:] == (
        Answered(at=T0 + 5, target="council-cctv-1"),
        Confirmed(at=T0 + 7, target="council-cctv-1"),
        LegEnded(at=T0 + 7, target="council-cctv-2", result="cancelled", detail="answered-elsewhere"),
        Finished(at=T0 + 7, outcome="answered", target="council-cctv-1"),
    )


def test_unconfirmed_answer_fails_that_leg_only() -> None:
    plan = sutton()
    plan.start(T0, NOON)
    plan.handle(LegProgressed("council-cctv-1"), T0 + 0.1)
    plan.handle(LegProgressed("council-cctv-2"), T0 + 0.1)
    plan.handle(LegAnswered("council-cctv-2"), T0 + 12)  # an auto-answering softphone
    assert plan.get_timer() == T0 + 20.0
    assert plan.handle_timer(T0 + 20) == [CancelTargets(("council-cctv-1",), "timeout")]  # -2 awaits its digit
    assert plan.get_timer() == T0 + 22.0
    assert plan.handle_timer(T0 + 22) == [
        CancelTargets(("council-cctv-2",), "unconfirmed"),
        ring(("police-control-1",), "police-control", 30.0),
    ]
    assert plan.timeline[-2] == FailedOver(at=T0 + 22, from_name="council-cctv", to_name="police-control",
                                           cause="unconfirmed")


def test_closed_room_is_skipped_at_night_and_full_failure_path_is_safe() -> None:
    plan = sutton()
    assert plan.start(T0, NIGHT) == [PlayPrompt("connecting"), ring(("police-control-1",), "police-control", 30.0)]
    assert plan.timeline == (
        Offered(at=T0, help_point="hp-portland-square", dialplan="sutton", version=7),
        PromptPlayed(at=T0, prompt="connecting", message=False),
        RoomClosed(at=T0, room="council-cctv"),
        FailedOver(at=T0, from_name="council-cctv", to_name="police-control", cause="closed"),
        RingStarted(at=T0, name="police-control", targets=("police-control-1",), attempt=1),
    )
    # police busy at once: retry spaced by retry_interval (5 s) from the attempt's start
    assert plan.handle(LegFailed("police-control-1", "busy", "486 Busy Here"), T0 + 1) == []
    assert plan.timeline[-1] == Retried(at=T0 + 1, name="police-control", cause="busy", attempt=2)
    assert plan.get_timer() == T0 + 5.0
    assert plan.handle_timer(T0 + 5.0) == [ring(("police-control-1",), "police-control", 30.0, attempt=2)]
    plan.handle(LegProgressed("police-control-1"), T0 + 5.5)
    assert plan.get_timer() == T0 + 35.0
    assert plan.handle_timer(T0 + 35.0) == [
        CancelTargets(("police-control-1",), "timeout"),
        ring(("police-control-1",), "police-control", 30.0, attempt=3),
    ]
    assert plan.handle(LegFailed("police-control-1", "server_error"), T0 + 36) == [
        PlayMessage("all-rooms-unavailable", final=False),
    ]
    assert plan.get_timer() == T0 + 36 + PROMPT_GUARD  # waiting for the message: only its guard
    assert plan.handle(PromptFinished("connecting"), T0 + 37) == []
    assert plan.handle(PromptFinished("all-rooms-unavailable"), T0 + 40) == [
        ring(("police-control-1",), "police-control", 30.0),
    ]
    for attempt in range(2, 12):  # repeat: forever, one attempt every ring_timeout
        started = T0 + 40 + 30 * (attempt - 2)
        plan.handle(LegProgressed("police-control-1"), started)
        assert plan.get_timer() == started + 30
        assert plan.handle_timer(started + 30) == [
            CancelTargets(("police-control-1",), "timeout"),
            ring(("police-control-1",), "police-control", 30.0, attempt=attempt),
        ]
    assert not plan.done


def test_caller_hang_up_cancels_everything() -> None:
    plan = sutton()
    plan.start(T0, NOON)
    assert plan.handle(CallerHungUp(), T0 + 3) == [CancelTargets(COUNCIL, "caller-hung-up"), Done("abandoned")]
    assert plan.done and plan.get_timer() is None
    assert plan.handle(LegAnswered("council-cctv-1"), T0 + 4) == []
    assert plan.handle_timer(T0 + 100) == []
    assert isinstance(plan.timeline[-1], Finished) and plan.timeline[-1].outcome == "abandoned"


def test_sequential_hunt_and_final_message() -> None:
    plan = custom("""\
    steps:
      - ring:
          positions: [council-cctv-2, duty-manager]
          strategy: sequential
          ring_timeout: 15
          connect_timeout: 2
      - message: all-rooms-unavailable
    """)
    first = RingTargets(("council-cctv-2",), "council-cctv-2+duty-manager", "sequential", 15.0, 2.0, 1)
    assert plan.start(T0, NOON) == [first]
    plan.handle(LegProgressed("council-cctv-2"), T0 + 1)
    assert plan.handle_timer(T0 + 15) == [
        CancelTargets(("council-cctv-2",), "timeout"),
        RingTargets(("duty-manager",), "council-cctv-2+duty-manager", "sequential", 15.0, 2.0, 1),
    ]
    assert plan.get_timer() == T0 + 17.0
    assert plan.handle(LegFailed("duty-manager", "decline"), T0 + 16) == [
        PlayMessage("all-rooms-unavailable", final=True)
    ]
    assert plan.timeline[-2] == FailedOver(at=T0 + 16, from_name="council-cctv-2+duty-manager", to_name=None,
                                           cause="decline")
    assert plan.handle(PromptFinished("all-rooms-unavailable"), T0 + 20) == [Done("unanswered")]


def test_dial_last_resort_and_answer_without_confirm() -> None:
    plan = custom("""\
    steps:
      - ring: {room: police-control}
      - dial: {number: "+441623000000", ring_timeout: 45}
    """)
    plan.start(T0, NOON)
    plan.handle(LegProgressed("police-control-1"), T0)
    assert plan.handle_timer(T0 + 20) == [
        CancelTargets(("police-control-1",), "timeout"),
        DialNumber("+441623000000", 45.0, 8.0, 1),
    ]
    assert plan.handle(LegFailed("+441623000000", "unreachable", "503 from trunk"), T0 + 21) == []
    assert plan.get_timer() == T0 + 25.0
    assert plan.handle_timer(T0 + 25) == [DialNumber("+441623000000", 45.0, 8.0, 2)]
    assert plan.handle(LegAnswered("+441623000000"), T0 + 30) == [
        Bridge("+441623000000"), Done("answered", "+441623000000"),
    ]


def test_schedule_follows_the_call_through_time() -> None:
    """Wall time at ``now`` is start wall + elapsed monotonic time: council opens at 07:00 mid-call."""
    plan = custom("""\
    rooms:
      council-cctv:
        schedule: {open: [{hours: "07:00-23:00"}]}
    steps:
      - ring: {room: police-control, ring_timeout: 30}
      - ring: {room: council-cctv}
      - message: all-rooms-unavailable
    """)
    plan.start(T0, datetime.datetime(2026, 11, 23, 6, 59, 45, tzinfo=datetime.UTC))
    plan.handle(LegProgressed("police-control-1"), T0)
    assert plan.handle_timer(T0 + 30)[-1] == ring(COUNCIL, "council-cctv", 20.0)  # 07:00:15: open


def test_plan_requires_aware_wall_clock_and_single_start() -> None:
    plan = sutton()
    with pytest.raises(ValueError, match="timezone-aware"):
        plan.start(T0, datetime.datetime(2026, 11, 23, 12, 0))
    plan.start(T0, NOON)
    with pytest.raises(RuntimeError):
        plan.start(T0, NOON)


def test_unvalidated_zero_time_loop_is_caught() -> None:
    dialplan = parse_dialplan("name: t\nserves: {help_points: [x]}\nsteps: [{label: a, goto: a}]\n")
    with pytest.raises(DialplanLoopError):
        Plan(dialplan, "x").start(T0, NOON)


def test_timeline_encodes_for_the_records_layer() -> None:
    plan = sutton()
    plan.start(T0, NIGHT)
    assert timeline_to_builtins(plan.timeline)[:3] == [
        {"type": "Offered", "at": T0, "help_point": "hp-portland-square", "dialplan": "sutton", "version": 7},
        {"type": "PromptPlayed", "at": T0, "prompt": "connecting", "message": False},
        {"type": "RoomClosed", "at": T0, "room": "council-cctv"},
    ]


@pytest.mark.parametrize(
    ("status", "cause"),
    [(486, "busy"), (600, "busy"), (603, "decline"), (606, "decline"), (408, "unreachable"),
     (480, "unreachable"), (404, "unreachable"), (500, "server_error"), (503, "server_error"),
     (403, "server_error")],
)
def test_cause_for_status(status: int, cause: str) -> None:
    assert cause_for_status(status) == cause


def test_play_with_wait_asks_for_its_end_to_be_reported() -> None:
    """``PlayPrompt`` is fire-and-forget (nobody reports its end), so a ``wait: true`` play that emitted it
    left the plan waiting for a PromptFinished that never came: no timer, nobody rung, the caller in silence."""
    plan = custom("""\
    steps:
      - play: {prompt: call-recorded, wait: true}
      - ring: {room: police-control, repeat: forever}
    """)
    assert plan.start(T0, NOON) == [PlayMessage("call-recorded", final=False)]
    assert plan.timeline[-1] == PromptPlayed(at=T0, prompt="call-recorded", message=False)
    assert plan.get_timer() == T0 + PROMPT_GUARD
    assert plan.handle(PromptFinished("call-recorded"), T0 + 2) == [
        RingTargets(("police-control-1",), "police-control", "parallel", 20.0, 4.0, 1),
    ]


def test_schedules_follow_elapsed_time_across_a_dst_change_whatever_the_zone_of_wall() -> None:
    """``gateway dialplan simulate`` passes a Europe/London wall time; aware datetime + timedelta is wall-clock
    arithmetic in that zone, so 60 s after 01:59:30 BST on 2026-10-25 came out as 02:00:30 GMT, an hour late."""
    plan = custom("""\
    rooms:
      council-cctv: {schedule: {open: [{hours: "02:00-23:00"}]}}
    steps:
      - ring: {room: police-control, ring_timeout: 60}
      - ring: {room: council-cctv}
      - ring: {room: police-control, repeat: forever}
    """)
    london = datetime.datetime(2026, 10, 25, 1, 59, 30, tzinfo=zoneinfo.ZoneInfo("Europe/London"))  # 00:59:30 UTC
    plan.start(T0, london)
    plan.handle(LegProgressed("police-control-1"), T0 + 1)
    assert plan.handle_timer(T0 + 60) == [
        CancelTargets(("police-control-1",), "timeout"),
        RingTargets(("police-control-1",), "police-control", "parallel", 20.0, 4.0, 1),
    ]  # 01:00:30 GMT, the second 01:00: council not open yet
    assert RoomClosed(at=T0 + 60, room="council-cctv") in plan.timeline


def test_a_prompt_whose_end_is_never_reported_does_not_stall_the_plan() -> None:
    """A fault in the media plane loses the end report of a message the plan waits for: after the guard
    (longer than any prompt) the plan goes on, noted in its timeline, instead of leaving the caller in
    silence for ever."""
    from gateway.dialplan.model import PromptTimedOut

    plan = custom("""\
    steps:
      - message: all-rooms-unavailable
      - ring: {room: police-control, repeat: forever}
    """)
    assert plan.start(T0, NOON) == [PlayMessage("all-rooms-unavailable", final=False)]
    assert plan.handle_timer(T0 + PROMPT_GUARD - 1) == []
    assert plan.handle_timer(T0 + PROMPT_GUARD) == [
        RingTargets(("police-control-1",), "police-control", "parallel", 20.0, 4.0, 1),
    ]
    assert PromptTimedOut(at=T0 + PROMPT_GUARD, prompt="all-rooms-unavailable") in plan.timeline
    assert plan.handle(PromptFinished("all-rooms-unavailable"), T0 + PROMPT_GUARD + 1) == []  # too late: ignored
